package envelope_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/keyward/keyward/pkg/envelope"
)

func FuzzParseHeader(f *testing.F) {
	for _, v := range versions {
		good, _ := hdrAs(v).MarshalBinary()
		f.Add(good)
		f.Add(good[:9])
	}
	f.Add([]byte("KWRD\x01\x01\x00\x0f\x00\x01u\x01v\x00\x01s"))
	f.Add([]byte("KWRD\x02\x01\x00\x0f\x00\x01u\x01v\x00\x01s"))
	f.Add([]byte("KWRD\x03\x01\x00\x0f\x00\x01u\x01v\x00\x01s"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := envelope.ParseHeader(b)
		if err != nil {
			if !errors.Is(err, envelope.ErrMalformedHeader) && !errors.Is(err, envelope.ErrTruncated) && !errors.Is(err, envelope.ErrUnsupportedVersion) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if n > len(b) || n > envelope.MaxHeaderLen {
			t.Fatalf("header length %d out of bounds (input %d)", n, len(b))
		}
		// A parsed header re-encodes to exactly the bytes it came from.
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed header does not marshal: %v", err)
		}
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
	})
}

// FuzzReader feeds arbitrary bytes to the decrypter, seeded with real
// ciphertexts: it must never panic, and never return plaintext for bytes
// that are not exactly a ciphertext this seed and identity produced.
func FuzzReader(f *testing.F) {
	for _, v := range versions {
		for _, n := range []int{0, 5, 20000} {
			f.Add(encryptAs(f, v, plaintext(n), testID))
		}
	}
	f.Add([]byte("KWRD"))
	f.Fuzz(func(t *testing.T, ct []byte) {
		ctx := context.Background()
		r, err := envelope.NewReader(ctx, bytes.NewReader(ct), testID, unwrapper(testSeed()))
		var out []byte
		if err == nil {
			out, err = io.ReadAll(r)
		}
		if err == nil {
			// Accepted: it must be the honest encryption of out.
			h, _, perr := envelope.ParseHeader(ct)
			if perr != nil {
				t.Fatalf("accepted a ciphertext whose header does not parse: %v", perr)
			}
			if int64(len(ct)) != envelope.CiphertextSize(h, int64(len(out))) {
				t.Fatalf("accepted %d bytes decrypting to %d", len(ct), len(out))
			}
		}
		ra, err := envelope.NewReaderAt(ctx, bytes.NewReader(ct), int64(len(ct)), testID, unwrapper(testSeed()))
		if err == nil {
			buf := make([]byte, 100)
			for _, off := range []int64{0, 16383, 16384, 1 << 20} {
				_, _ = ra.ReadAt(buf, off)
			}
			_, _ = ra.Size()
		}
	})
}
