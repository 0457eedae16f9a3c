package azureemu

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// AES key wrap, RFC 3394 section 2.2, with the default initial value of
// section 2.2.3.1. Managed HSM's A256KW is this algorithm with a 256-bit
// key.

// defaultIV is RFC 3394's default initial value, A6A6A6A6A6A6A6A6.
var defaultIV = [8]byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

var (
	errKeyWrapInput     = errors.New("aes key wrap: input must be at least 16 bytes and a multiple of 8")
	errKeyWrapIntegrity = errors.New("aes key wrap: integrity check failed")
)

// wrapKey wraps plaintext (n ≥ 2 64-bit blocks) under kek (16, 24 or 32
// bytes), RFC 3394 section 2.2.1, "index based" form:
//
//	A = IV, R[i] = P[i]
//	for j = 0..5, for i = 1..n:
//	    B = AES(K, A | R[i]); A = MSB64(B) ^ t, t = n*j + i; R[i] = LSB64(B)
//	C = A | R[1] | ... | R[n]
func wrapKey(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext) < 16 || len(plaintext)%8 != 0 {
		return nil, errKeyWrapInput
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(plaintext) / 8
	out := make([]byte, 8+len(plaintext))
	copy(out[8:], plaintext)
	a := binary.BigEndian.Uint64(defaultIV[:])
	var b [16]byte
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			binary.BigEndian.PutUint64(b[:8], a)
			copy(b[8:], r)
			block.Encrypt(b[:], b[:])
			a = binary.BigEndian.Uint64(b[:8]) ^ uint64(n*j+i)
			copy(r, b[8:])
		}
	}
	binary.BigEndian.PutUint64(out[:8], a)
	clear(b[:])
	return out, nil
}

// unwrapKey reverses wrapKey, RFC 3394 section 2.2.2, and checks the
// initial value (section 2.2.3) in constant time:
//
//	A = C[0], R[i] = C[i]
//	for j = 5..0, for i = n..1:
//	    B = AES-1(K, (A ^ t) | R[i]), t = n*j + i; A = MSB64(B); R[i] = LSB64(B)
//	A == IV, else the key or the ciphertext is wrong
func unwrapKey(kek, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < 24 || len(ciphertext)%8 != 0 {
		return nil, errKeyWrapInput
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(ciphertext)/8 - 1
	out := make([]byte, len(ciphertext)-8)
	copy(out, ciphertext[8:])
	a := binary.BigEndian.Uint64(ciphertext[:8])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := out[8*(i-1) : 8*i]
			binary.BigEndian.PutUint64(b[:8], a^uint64(n*j+i))
			copy(b[8:], r)
			block.Decrypt(b[:], b[:])
			a = binary.BigEndian.Uint64(b[:8])
			copy(r, b[8:])
		}
	}
	clear(b[:])
	var got [8]byte
	binary.BigEndian.PutUint64(got[:], a)
	if subtle.ConstantTimeCompare(got[:], defaultIV[:]) != 1 {
		clear(out)
		return nil, errKeyWrapIntegrity
	}
	return out, nil
}
