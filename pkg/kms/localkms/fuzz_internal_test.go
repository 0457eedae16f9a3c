package localkms

import (
	"strings"
	"testing"
)

func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte(`{"format":"keyward-localkms/v1","key_id":"00112233445566778899aabbccddeeff","disabled":false,` +
		`"versions":[{"id":"1","created_at":"2025-01-02T03:04:05Z","material":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"versions":[{"id":"01"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := parseKeyFile(data)
		if err != nil {
			if strings.Contains(err.Error(), "AAAAAAAAAAAAAAAA") {
				t.Fatalf("error %q quotes key material", err)
			}
			return
		}
		if len(kf.Versions) == 0 || kf.Format != Format || len(kf.KeyID) != 32 {
			t.Fatalf("accepted an invalid key file: %+v", kf)
		}
		for i := range kf.Versions {
			if _, err := kf.Versions[i].aead(); err != nil {
				t.Fatalf("accepted version %s whose material does not make a key: %v", kf.Versions[i].ID, err)
			}
		}
	})
}

func FuzzParseCiphertext(f *testing.F) {
	f.Add([]byte("KWL1\x011" + strings.Repeat("n", 12) + strings.Repeat("s", 48)))
	f.Add([]byte("KWL1"))
	f.Add([]byte("KWL1\xff"))
	f.Fuzz(func(t *testing.T, ct []byte) {
		vid, nonce, sealed, err := parseCiphertext(ct)
		if err != nil {
			return
		}
		if len(vid) == 0 || len(nonce) != nonceSize || len(sealed) < tagSize ||
			len(Magic)+1+len(vid)+len(nonce)+len(sealed) != len(ct) {
			t.Fatalf("parseCiphertext(%x) = %q, %d-byte nonce, %d sealed", ct, vid, len(nonce), len(sealed))
		}
	})
}
