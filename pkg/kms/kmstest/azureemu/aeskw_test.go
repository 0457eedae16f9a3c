package azureemu

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// RFC 3394 section 4: the published test vectors.
var rfc3394Vectors = []struct {
	name, kek, data, wrapped string
}{
	{"4.1 128-bit KEK, 128-bit key data",
		"000102030405060708090A0B0C0D0E0F",
		"00112233445566778899AABBCCDDEEFF",
		"1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
	{"4.2 192-bit KEK, 128-bit key data",
		"000102030405060708090A0B0C0D0E0F1011121314151617",
		"00112233445566778899AABBCCDDEEFF",
		"96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D"},
	{"4.3 256-bit KEK, 128-bit key data",
		"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
		"00112233445566778899AABBCCDDEEFF",
		"64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"},
	{"4.4 192-bit KEK, 192-bit key data",
		"000102030405060708090A0B0C0D0E0F1011121314151617",
		"00112233445566778899AABBCCDDEEFF0001020304050607",
		"031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2"},
	{"4.5 256-bit KEK, 192-bit key data",
		"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
		"00112233445566778899AABBCCDDEEFF0001020304050607",
		"A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1"},
	{"4.6 256-bit KEK, 256-bit key data",
		"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
		"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
		"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAESKeyWrapRFC3394Vectors(t *testing.T) {
	for _, v := range rfc3394Vectors {
		t.Run(v.name, func(t *testing.T) {
			kek, data, want := unhex(t, v.kek), unhex(t, v.data), unhex(t, v.wrapped)
			got, err := wrapKey(kek, data)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("wrapKey(%X) = %X, %v; want %X", data, got, err, want)
			}
			back, err := unwrapKey(kek, want)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("unwrapKey(%X) = %X, %v; want %X", want, back, err, data)
			}
		})
	}
}

func TestAESKeyUnwrapRejects(t *testing.T) {
	v := rfc3394Vectors[len(rfc3394Vectors)-1]
	kek, wrapped := unhex(t, v.kek), unhex(t, v.wrapped)
	for i := range wrapped {
		c := bytes.Clone(wrapped)
		c[i] ^= 0x80
		if _, err := unwrapKey(kek, c); !errors.Is(err, errKeyWrapIntegrity) {
			t.Fatalf("unwrapKey with byte %d flipped err = %v, want %v", i, err, errKeyWrapIntegrity)
		}
	}
	other := bytes.Clone(kek)
	other[31] ^= 1
	if _, err := unwrapKey(other, wrapped); !errors.Is(err, errKeyWrapIntegrity) {
		t.Fatalf("unwrapKey under another KEK err = %v, want %v", err, errKeyWrapIntegrity)
	}
	for _, n := range []int{0, 8, 16, 23, 25, 41} {
		if _, err := unwrapKey(kek, make([]byte, n)); !errors.Is(err, errKeyWrapInput) {
			t.Errorf("unwrapKey(%d bytes) err = %v, want %v", n, err, errKeyWrapInput)
		}
	}
	for _, n := range []int{0, 8, 15, 17, 33} {
		if _, err := wrapKey(kek, make([]byte, n)); !errors.Is(err, errKeyWrapInput) {
			t.Errorf("wrapKey(%d bytes) err = %v, want %v", n, err, errKeyWrapInput)
		}
	}
}
