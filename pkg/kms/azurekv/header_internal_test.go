package azurekv

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/pkg/kms"
)

const testKID = "https://acme-kv.vault.azure.net/keys/tenant-key/0123456789abcdef0123456789abcdef"

func mustCiphertext(t testing.TB, alg azkeys.EncryptionAlgorithm, kid string, wrapped []byte) []byte {
	t.Helper()
	ct, err := appendCiphertext(nil, alg, kid, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func TestCiphertextLayout(t *testing.T) {
	wrapped := bytes.Repeat([]byte{0xAB}, 256)
	ct := mustCiphertext(t, AlgorithmRSAOAEP256, testKID, wrapped)
	want := append([]byte("KWAZ\x01\x01"), 0, byte(len(testKID)))
	want = append(want, testKID...)
	want = append(want, wrapped...)
	if !bytes.Equal(ct, want) {
		t.Fatalf("appendCiphertext = %x, want %x", ct, want)
	}
	h, err := parseCiphertext(ct)
	if err != nil {
		t.Fatal(err)
	}
	if h.alg != AlgorithmRSAOAEP256 || h.kid != testKID || h.host != "acme-kv.vault.azure.net" ||
		h.name != "tenant-key" || h.version != "0123456789abcdef0123456789abcdef" || !bytes.Equal(h.wrapped, wrapped) {
		t.Fatalf("parseCiphertext = %+v", h)
	}
	key := kms.MustParseKeyURI("azurekv://acme-kv.vault.azure.net/keys/Tenant-Key")
	if !h.names(key) {
		t.Errorf("header does not name %s (names are case-insensitive)", key)
	}
	if h.names(kms.MustParseKeyURI("azurekv://other-kv.vault.azure.net/keys/tenant-key")) {
		t.Error("header names the same key name in another vault")
	}
}

func TestParseCiphertextRejects(t *testing.T) {
	good := mustCiphertext(t, AlgorithmA256KW, testKID, make([]byte, 88))
	kidLen := func(n uint16) []byte {
		c := bytes.Clone(good)
		binary.BigEndian.PutUint16(c[6:], n)
		return c
	}
	withKID := func(kid string) []byte {
		c, _ := appendCiphertext(nil, AlgorithmA256KW, kid, make([]byte, 88))
		return c
	}
	set := func(i int, b byte) []byte { c := bytes.Clone(good); c[i] = b; return c }
	cases := map[string][]byte{
		"empty":                    nil,
		"magic only":               []byte(Magic),
		"bad magic":                set(0, 'X'),
		"format version 0":         set(4, 0),
		"format version 2":         set(4, 2),
		"algorithm 0":              set(5, 0),
		"algorithm 3":              set(5, 3),
		"kid length 0":             kidLen(0),
		"kid length 0xffff":        kidLen(0xffff),
		"kid longer than the rest": kidLen(uint16(len(good))),
		"kid one byte short":       kidLen(uint16(len(testKID) - 1)),
		"no wrapped value":         good[:headerFixedLen+len(testKID)],
		"A256KW value not 8n":      good[:len(good)-1],
		"A256KW value too short":   good[:headerFixedLen+len(testKID)+56],
		"http kid":                 withKID(strings.Replace(testKID, "https", "http", 1)),
		"kid without version":      withKID("https://acme-kv.vault.azure.net/keys/tenant-key"),
		"kid with short version":   withKID(testKID[:len(testKID)-1]),
		"kid with upper version":   withKID(strings.ToUpper(testKID[:len(testKID)-32]) + "0123456789ABCDEF0123456789ABCDEF"),
		"kid secrets path":         withKID(strings.Replace(testKID, "/keys/", "/secrets/", 1)),
		"kid with query":           withKID(testKID + "?x=1"),
		"kid with userinfo":        withKID(strings.Replace(testKID, "https://", "https://u@", 1)),
		"kid with bad name":        withKID(strings.Replace(testKID, "tenant-key", "tenant_key", 1)),
		"kid with extra segment":   withKID(testKID + "/x"),
		"kid with bad port":        withKID(strings.Replace(testKID, ".net/", ".net:x/", 1)),
		"wrapped value too long": func() []byte {
			c, _ := appendCiphertext(nil, AlgorithmRSAOAEP256, testKID, make([]byte, maxWrappedLen+1))
			return c
		}(),
	}
	for name, ct := range cases {
		if h, err := parseCiphertext(ct); err == nil {
			t.Errorf("parseCiphertext(%s) = %+v, want an error", name, h)
		} else if strings.Contains(err.Error(), "tenant-key") {
			t.Errorf("parseCiphertext(%s) error %q quotes the input", name, err)
		}
	}
	if _, err := appendCiphertext(nil, "RSA1_5", testKID, []byte{1}); err == nil {
		t.Error("appendCiphertext recorded an unsupported algorithm")
	}
	if _, err := appendCiphertext(nil, AlgorithmA256KW, strings.Repeat("k", maxKIDLen+1), []byte{1}); err == nil {
		t.Error("appendCiphertext accepted an oversized kid")
	}
}

func FuzzParseCiphertext(f *testing.F) {
	f.Add(mustCiphertext(f, AlgorithmRSAOAEP256, testKID, bytes.Repeat([]byte{1}, 256)))
	f.Add(mustCiphertext(f, AlgorithmA256KW, "https://acme-hsm.managedhsm.azure.net:443/keys/k/0123456789abcdef0123456789abcdef", make([]byte, 88)))
	f.Add([]byte("KWAZ\x01\x02\xff\xff"))
	f.Add([]byte("KWAZ"))
	f.Fuzz(func(t *testing.T, ct []byte) {
		h, err := parseCiphertext(ct)
		if err != nil {
			return
		}
		if _, _, _, err := parseKID(h.kid); err != nil || !validName(h.name) || !validVersion(h.version) || !validHost(h.host) {
			t.Fatalf("parseCiphertext(%x) accepted kid %q", ct, h.kid)
		}
		if len(h.wrapped) == 0 || len(h.wrapped) > maxWrappedLen {
			t.Fatalf("parseCiphertext(%x) accepted a %d-byte wrapped value", ct, len(h.wrapped))
		}
		again, err := appendCiphertext(nil, h.alg, h.kid, h.wrapped)
		if err != nil || !bytes.Equal(again, ct) {
			t.Fatalf("parseCiphertext(%x) does not round-trip: %x, %v", ct, again, err)
		}
	})
}

func TestMessage(t *testing.T) {
	key := kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	seed := bytes.Repeat([]byte{7}, kms.DataKeySize)
	m1, m2 := sealMessage(seed, ec), sealMessage(seed, ec)
	if len(m1) != 80 || len(m1)%8 != 0 || bytes.Equal(m1, m2) {
		t.Fatalf("sealMessage = %d bytes (want 80), equal twice: %v", len(m1), bytes.Equal(m1, m2))
	}
	s, err := openMessage(kms.OpDecrypt, key, m1, ec)
	if err != nil || !bytes.Equal(s.Bytes(), seed) {
		t.Fatalf("openMessage = %v, %v", s, err)
	}
	for name, m := range map[string][]byte{
		"other context": sealMessage(seed, kms.NewEncryptionContext("globex", kms.PurposeAssetSeed)),
		"digest only":   m1[nonceSize:][:digestSize],
		"flipped digest": func() []byte {
			c := bytes.Clone(m1)
			c[len(c)-1] ^= 1
			return c
		}(),
	} {
		if _, err := openMessage(kms.OpDecrypt, key, m, ec); kms.CodeOf(err) != kms.CodeInvalidCiphertext {
			t.Errorf("openMessage(%s) err = %v, want invalid_ciphertext", name, err)
		}
	}
}
