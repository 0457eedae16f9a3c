//go:build race

package reencryptor_test

const raceEnabled = true
