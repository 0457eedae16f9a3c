module github.com/keyward/keyward/services/encryptor

go 1.26.8
