module github.com/keyward/keyward/services/encryptor

go 1.26.0

require github.com/keyward/keyward/pkg v0.0.0

replace github.com/keyward/keyward/pkg => ../../pkg
