package envelope_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"testing"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
)

var benchSizes = []struct {
	name string
	n    int
}{{"1MiB", 1 << 20}, {"256MiB", 256 << 20}}

// BenchmarkRawAESGCMSeal is the baseline: AES-256-GCM Seal of the same bytes
// in 16 KiB pieces on one core, no envelope.
func BenchmarkRawAESGCMSeal(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 32))
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			src := make([]byte, cobblestone.ChunkSize)
			dst := make([]byte, 0, cobblestone.EncryptedChunkSize)
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				for done := 0; done < sz.n; done += len(src) {
					dst = aead.Seal(dst[:0], nonce, src, nil)
				}
			}
		})
	}
}

// BenchmarkEncrypt streams a Keyward envelope (header + Cobblestone-256) of
// the asset to io.Discard, reading the plaintext 1 MiB at a time.
func BenchmarkEncrypt(b *testing.B) {
	buf := make([]byte, 1<<20)
	for _, sz := range benchSizes {
		for _, conc := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/conc=%d", sz.name, conc), func(b *testing.B) {
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					w, err := envelope.NewWriter(io.Discard, testHdr, testSeed(), testID, cobblestone.WithConcurrency(conc))
					if err != nil {
						b.Fatal(err)
					}
					for done := 0; done < sz.n; done += len(buf) {
						w.Write(buf)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecrypt streams the plaintext of an envelope back out.
func BenchmarkDecrypt(b *testing.B) {
	for _, sz := range benchSizes {
		ct := encrypt(b, make([]byte, sz.n), testID)
		for _, conc := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/conc=%d", sz.name, conc), func(b *testing.B) {
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					r, err := envelope.NewReader(context.Background(), bytes.NewReader(ct), testID, unwrapper(testSeed()), cobblestone.WithConcurrency(conc))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
