package cobblestone

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"1MiB", 1 << 20},
	{"256MiB", 256 << 20},
}

// benchInput is the 1 MiB block every benchmark writes repeatedly.
var benchInput = sync.OnceValue(func() []byte { return message(1 << 20) })

// BenchmarkRawAESGCMSeal is the baseline: plain AES-256-GCM on one core, in
// 16 KiB pieces (what Cobblestone does per chunk) and as one Seal call.
func BenchmarkRawAESGCMSeal(b *testing.B) {
	block, err := aes.NewCipher(testKey)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, NonceSize)
	for _, s := range benchSizes {
		src := bytes.Repeat(benchInput(), s.size>>20)
		b.Run(s.name+"/16KiB-pieces", func(b *testing.B) {
			out := make([]byte, EncryptedChunkSize)
			b.SetBytes(int64(s.size))
			b.ReportAllocs()
			for b.Loop() {
				for p := src; len(p) > 0; p = p[min(len(p), ChunkSize):] {
					nonce[11]++
					aead.Seal(out[:0], nonce, p[:min(len(p), ChunkSize)], nil)
				}
			}
		})
		b.Run(s.name+"/one-Seal", func(b *testing.B) {
			out := make([]byte, len(src)+TagSize)
			b.SetBytes(int64(s.size))
			b.ReportAllocs()
			for b.Loop() {
				nonce[11]++
				aead.Seal(out[:0], nonce, src, nil)
			}
		})
	}
}

func BenchmarkWriter(b *testing.B) {
	in := benchInput()
	for _, s := range benchSizes {
		for _, conc := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/conc=%d", s.name, conc), func(b *testing.B) {
				b.SetBytes(int64(s.size))
				b.ReportAllocs()
				for b.Loop() {
					w, err := NewWriter(io.Discard, testKey, testCtx, WithConcurrency(conc))
					if err != nil {
						b.Fatal(err)
					}
					for range s.size / len(in) {
						if _, err := w.Write(in); err != nil {
							b.Fatal(err)
						}
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkReader(b *testing.B) {
	for _, s := range benchSizes {
		var ct bytes.Buffer
		w, err := NewWriter(&ct, testKey, testCtx, WithConcurrency(2))
		if err != nil {
			b.Fatal(err)
		}
		for range s.size >> 20 {
			_, _ = w.Write(benchInput())
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		for _, conc := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/conc=%d", s.name, conc), func(b *testing.B) {
				b.SetBytes(int64(s.size))
				b.ReportAllocs()
				for b.Loop() {
					r, err := NewReader(bytes.NewReader(ct.Bytes()), testKey, testCtx, WithConcurrency(conc))
					if err != nil {
						b.Fatal(err)
					}
					if n, err := io.Copy(io.Discard, r); err != nil || n != int64(s.size) {
						b.Fatal(n, err)
					}
				}
			})
		}
	}
}

func BenchmarkReaderAtRandom4KiB(b *testing.B) {
	const size = 64 << 20
	var ct bytes.Buffer
	w, err := NewWriter(&ct, testKey, testCtx)
	if err != nil {
		b.Fatal(err)
	}
	for range size >> 20 {
		_, _ = w.Write(benchInput())
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	ra, err := NewReaderAt(bytes.NewReader(ct.Bytes()), int64(ct.Len()), testKey, testCtx)
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 1))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ra.ReadAt(p, rng.Int64N(size-int64(len(p)))); err != nil {
			b.Fatal(err)
		}
	}
}

// patternReader generates n bytes without holding them.
type patternReader struct{ n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], benchInput())
	}
	r.n -= int64(n)
	return n, nil
}

// peakHeap runs f while sampling the bytes of live heap objects every
// 200µs and returns the peak.
func peakHeap(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
	}
	read()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				read()
			}
		}
	})
	f()
	read()
	close(stop)
	wg.Wait()
	return peak.Load()
}

func encryptGenerated(tb testing.TB, size int64, conc int) {
	w, err := NewWriter(io.Discard, testKey, testCtx, WithConcurrency(conc))
	if err != nil {
		tb.Fatal(err)
	}
	if n, err := io.Copy(w, &patternReader{n: size}); err != nil || n != size {
		tb.Fatal(n, err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkWriterPeakHeap streams 256 MiB from a generating reader through a
// Writer into io.Discard and reports the peak live heap of the process.
func BenchmarkWriterPeakHeap(b *testing.B) {
	for _, conc := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("256MiB/conc=%d", conc), func(b *testing.B) {
			benchInput()
			b.SetBytes(256 << 20)
			var peak uint64
			for b.Loop() {
				peak = max(peak, peakHeap(func() { encryptGenerated(b, 256<<20, conc) }))
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
		})
	}
}

func TestPeakHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	benchInput()
	for _, conc := range []int{1, 4} {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		peak := peakHeap(func() { encryptGenerated(t, 256<<20, conc) })
		growth := int64(peak) - int64(base)
		t.Logf("conc=%d: peak live heap %.1f MiB (%.2f MiB above the %.1f MiB baseline)", conc,
			float64(peak)/(1<<20), float64(growth)/(1<<20), float64(base)/(1<<20))
		if growth > 4<<20 {
			t.Errorf("conc=%d: encrypting 256 MiB grew the heap by %d bytes, want O(chunk × conc)", conc, growth)
		}
	}
}
