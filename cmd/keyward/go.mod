module github.com/keyward/keyward/cmd/keyward

go 1.26.8
