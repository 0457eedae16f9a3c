package cobblestone

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	testKey  = bytes.Repeat([]byte{0x42}, KeySize)
	testCtx  = []byte("tenant=acme asset=rec-1")
	testSalt = bytes.Repeat([]byte{0x5a}, SaltSize)
)

// message returns n deterministic pseudo-random bytes.
func message(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b
}

func encrypt(t testing.TB, msg []byte, opts ...Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testKey, testCtx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decryptStream(ct []byte, conc int) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(ct), testKey, testCtx, WithConcurrency(conc))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func decryptAt(ct []byte, conc int) ([]byte, error) {
	ra, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), testKey, testCtx, WithConcurrency(conc))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, ra.size+1)
	n, err := ra.ReadAt(buf, 0)
	if err == io.EOF {
		err = nil
	}
	return buf[:n], err
}

var roundTripSizes = []int{0, 1, 100, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3 * ChunkSize, 3*ChunkSize + 5, 9*ChunkSize - 1, 3<<20 + 7}

func TestRoundTrip(t *testing.T) {
	for _, size := range roundTripSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			msg := message(size)
			want := encrypt(t, msg, WithSalt(testSalt))
			if int64(len(want)) != CiphertextSize(int64(size)) {
				t.Fatalf("ciphertext is %d bytes, CiphertextSize says %d", len(want), CiphertextSize(int64(size)))
			}
			if !bytes.Equal(want[:SaltSize], testSalt) {
				t.Fatal("WithSalt ignored")
			}
			for _, conc := range []int{1, 2, 4} {
				// Same salt, same bytes, whatever the concurrency and write pattern.
				if got := encrypt(t, msg, WithSalt(testSalt), WithConcurrency(conc)); !bytes.Equal(got, want) {
					t.Fatalf("conc=%d: ciphertext differs from conc=1", conc)
				}
				var buf bytes.Buffer
				w, err := NewWriter(&buf, testKey, testCtx, WithSalt(testSalt), WithConcurrency(conc))
				if err != nil {
					t.Fatal(err)
				}
				writeInPieces(t, w, msg, 1000+conc)
				if !bytes.Equal(buf.Bytes(), want) {
					t.Fatalf("conc=%d, 1000-byte writes: ciphertext differs", conc)
				}
				buf.Reset()
				w, err = NewWriter(&buf, testKey, testCtx, WithSalt(testSalt), WithConcurrency(conc))
				if err != nil {
					t.Fatal(err)
				}
				if n, err := io.Copy(w, iotestHalfReader{bytes.NewReader(msg)}); err != nil || n != int64(size) {
					t.Fatalf("io.Copy = %d, %v", n, err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf.Bytes(), want) {
					t.Fatalf("conc=%d, ReadFrom: ciphertext differs", conc)
				}

				got, err := decryptStream(want, conc)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("conc=%d: Reader = %d bytes, %v; want the message", conc, len(got), err)
				}
				got, err = decryptAt(want, conc)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("conc=%d: ReaderAt = %d bytes, %v; want the message", conc, len(got), err)
				}
			}
			// Raw mode round trip with the same message key.
			mk, _, err := DeriveKey(testKey, testSalt, testCtx)
			if err != nil {
				t.Fatal(err)
			}
			var raw bytes.Buffer
			rw, err := NewRawWriter(&raw, mk)
			if err != nil {
				t.Fatal(err)
			}
			writeInPieces(t, rw, msg, 20000)
			if !bytes.Equal(raw.Bytes(), want[HeaderSize:]) {
				t.Fatal("raw ciphertext differs from the chunk stream")
			}
			rr, err := NewRawReader(bytes.NewReader(raw.Bytes()), mk)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(rr); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("raw Reader = %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestRandomSalt(t *testing.T) {
	a, b := encrypt(t, []byte("x")), encrypt(t, []byte("x"))
	if bytes.Equal(a[:SaltSize], b[:SaltSize]) {
		t.Fatal("two messages got the same salt")
	}
	seed := [32]byte{1}
	c := encrypt(t, []byte("x"), WithRand(rand.NewChaCha8(seed)))
	d := encrypt(t, []byte("x"), WithRand(rand.NewChaCha8(seed)))
	if !bytes.Equal(c, d) {
		t.Fatal("WithRand: same source, different ciphertexts")
	}
	failing := errors.New("entropy gone")
	if _, err := NewWriter(io.Discard, testKey, nil, WithRand(errReader{failing})); !errors.Is(err, failing) {
		t.Fatalf("NewWriter with failing rand err = %v, want %v", err, failing)
	}
	if _, err := NewWriter(io.Discard, testKey, nil, WithSalt(make([]byte, SaltSize-1))); err == nil {
		t.Fatal("NewWriter accepted a 23-byte salt")
	}
}

func TestContextBinding(t *testing.T) {
	ct := encrypt(t, []byte("hello"))
	for _, tc := range []struct {
		name     string
		key, ctx []byte
	}{
		{"wrong key", bytes.Repeat([]byte{0x43}, KeySize), testCtx},
		{"wrong context", testKey, []byte("tenant=evil asset=rec-1")},
		{"empty context", testKey, nil},
		{"context prefix", testKey, testCtx[:len(testCtx)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewReader(bytes.NewReader(ct), tc.key, tc.ctx); !errors.Is(err, ErrCommitment) {
				t.Fatalf("NewReader err = %v, want ErrCommitment", err)
			}
			if _, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), tc.key, tc.ctx); !errors.Is(err, ErrCommitment) {
				t.Fatalf("NewReaderAt err = %v, want ErrCommitment", err)
			}
			if _, err := OpenHeader(tc.key, tc.ctx, ct[:HeaderSize]); !errors.Is(err, ErrCommitment) {
				t.Fatalf("OpenHeader err = %v, want ErrCommitment", err)
			}
		})
	}
}

func TestInvalidKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		key := make([]byte, n)
		if _, err := NewWriter(io.Discard, key, nil); !errors.Is(err, ErrInvalidKeySize) {
			t.Errorf("NewWriter(%d-byte key) err = %v", n, err)
		}
		if _, err := NewReader(bytes.NewReader(nil), key, nil); !errors.Is(err, ErrInvalidKeySize) {
			t.Errorf("NewReader(%d-byte key) err = %v", n, err)
		}
		if _, err := NewReaderAt(bytes.NewReader(nil), 0, key, nil); !errors.Is(err, ErrInvalidKeySize) {
			t.Errorf("NewReaderAt(%d-byte key) err = %v", n, err)
		}
		if _, _, err := DeriveKey(key, testSalt, nil); !errors.Is(err, ErrInvalidKeySize) {
			t.Errorf("DeriveKey(%d-byte key) err = %v", n, err)
		}
		if _, err := OpenHeader(key, nil, make([]byte, HeaderSize)); !errors.Is(err, ErrInvalidKeySize) {
			t.Errorf("OpenHeader(%d-byte key) err = %v", n, err)
		}
		if _, err := MessageKeyFromBytes(make([]byte, n)); !errors.Is(err, ErrInvalidKeySize) {
			t.Errorf("MessageKeyFromBytes(%d bytes) err = %v", n, err)
		}
	}
	if _, _, err := DeriveKey(testKey, testSalt[:10], nil); err == nil {
		t.Error("DeriveKey accepted a 10-byte salt")
	}
}

func TestReadAtRanges(t *testing.T) {
	const size = 6*ChunkSize + 100
	msg := message(size)
	ct := encrypt(t, msg)
	for _, conc := range []int{1, 4} {
		t.Run(fmt.Sprintf("conc=%d", conc), func(t *testing.T) {
			ra, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), testKey, testCtx, WithConcurrency(conc))
			if err != nil {
				t.Fatal(err)
			}
			check := func(off, n int) {
				t.Helper()
				p := make([]byte, n)
				got, err := ra.ReadAt(p, int64(off))
				wantN := max(0, min(n, size-off))
				var wantErr error
				if wantN < n {
					wantErr = io.EOF
				}
				if got != wantN || err != wantErr {
					t.Fatalf("ReadAt(%d bytes, off %d) = %d, %v; want %d, %v", n, off, got, err, wantN, wantErr)
				}
				if !bytes.Equal(p[:got], msg[off:off+got]) {
					t.Fatalf("ReadAt(%d bytes, off %d): wrong plaintext", n, off)
				}
			}
			for edge := 0; edge <= size; edge += ChunkSize {
				for _, d := range []int{-ChunkSize - 1, -ChunkSize, -17, -1, 0, 1, 17} {
					off := edge + d
					if off < 0 || off > size {
						continue
					}
					for _, n := range []int{1, 2, 16, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2*ChunkSize + 3, size} {
						check(off, n)
					}
				}
			}
			check(size, 10)
			check(size-100, 100)
			check(size-100, 101)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 500 {
				off := rng.IntN(size + 1)
				check(off, rng.IntN(3*ChunkSize)+1)
			}
			// Concurrent readers share the ReaderAt.
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 9))
					p := make([]byte, 5000)
					for range 50 {
						off := rng.IntN(size - len(p))
						if n, err := ra.ReadAt(p, int64(off)); err != nil || !bytes.Equal(p[:n], msg[off:off+n]) {
							t.Errorf("concurrent ReadAt(off %d) = %d, %v", off, n, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if n, err := ra.Size(); n != size || err != nil {
				t.Fatalf("Size() = %d, %v", n, err)
			}
			if n, err := ra.ReadAt(make([]byte, 4), math.MaxInt64); n != 0 || err != io.EOF {
				t.Fatalf("ReadAt(off MaxInt64) = %d, %v; want 0, io.EOF", n, err)
			}
			if n, err := ra.ReadAt(make([]byte, 4), -1); n != 0 || err == nil {
				t.Fatalf("ReadAt(off -1) = %d, %v; want an error", n, err)
			}
			if n, err := ra.ReadAt(nil, 5); n != 0 || err != nil {
				t.Fatalf("ReadAt(nil, 5) = %d, %v", n, err)
			}
		})
	}
}

// countingReaderAt counts the bytes read from the ciphertext.
type countingReaderAt struct {
	r    io.ReaderAt
	mu   sync.Mutex
	read int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.read += int64(len(p))
	c.mu.Unlock()
	return c.r.ReadAt(p, off)
}

func TestReadAtTouchesOnlyNeededChunks(t *testing.T) {
	msg := message(40 * ChunkSize)
	ct := encrypt(t, msg)
	c := &countingReaderAt{r: bytes.NewReader(ct)}
	ra, err := NewReaderAt(c, int64(len(ct)), testKey, testCtx)
	if err != nil {
		t.Fatal(err)
	}
	if c.read != HeaderSize {
		t.Fatalf("NewReaderAt read %d bytes, want only the header", c.read)
	}
	p := make([]byte, 100)
	if _, err := ra.ReadAt(p, 20*ChunkSize-50); err != nil {
		t.Fatal(err)
	}
	if want := int64(HeaderSize + 2*EncryptedChunkSize); c.read != want {
		t.Fatalf("ReadAt across one boundary read %d bytes, want %d", c.read, want)
	}
	if _, err := ra.Size(); err != nil {
		t.Fatal(err)
	}
	if _, err := ra.Size(); err != nil {
		t.Fatal(err)
	}
	if want := int64(HeaderSize + 2*EncryptedChunkSize + TagSize); c.read != want {
		t.Fatalf("two Size calls read %d bytes, want %d (the empty final chunk, once)", c.read, want)
	}
}

// chunkSpan returns the ciphertext offsets of chunk i.
func chunkSpan(ct []byte, i int) (int, int) {
	start := HeaderSize + i*EncryptedChunkSize
	return start, min(start+EncryptedChunkSize, len(ct))
}

func TestTampering(t *testing.T) {
	msg := message(3*ChunkSize + 84) // chunks 0..2 full, chunk 3 of 100 ciphertext bytes
	ct := encrypt(t, msg)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(ct)) }
	flip := func(i int) []byte { return mutate(func(b []byte) []byte { b[i] ^= 0x01; return b }) }
	c0s, c0e := chunkSpan(ct, 0)
	c1s, c1e := chunkSpan(ct, 1)
	c2s, c2e := chunkSpan(ct, 2)
	c3s, _ := chunkSpan(ct, 3)
	cases := []struct {
		name   string
		ct     []byte
		want   error
		prefix int   // plaintext a streaming reader may release
		wantAt error // for ReaderAt, if not want
	}{
		{"salt bit", flip(3), ErrCommitment, 0, nil},
		{"commitment bit", flip(SaltSize + 31), ErrCommitment, 0, nil},
		{"chunk 0 body", flip(c0s + 100), ErrAuthentication, 0, nil},
		{"chunk 0 tag", flip(c0e - 1), ErrAuthentication, 0, nil},
		{"chunk 1 body", flip(c1s), ErrAuthentication, ChunkSize, nil},
		{"chunk 2 tag", flip(c2e - TagSize), ErrAuthentication, 2 * ChunkSize, nil},
		{"final chunk body", flip(c3s + 5), ErrAuthentication, 3 * ChunkSize, nil},
		{"final chunk tag", flip(len(ct) - 1), ErrAuthentication, 3 * ChunkSize, nil},
		{"swap chunks 0 and 1", mutate(func(b []byte) []byte {
			copy(b[c0s:c0e], ct[c1s:c1e])
			copy(b[c1s:c1e], ct[c0s:c0e])
			return b
		}), ErrAuthentication, 0, nil},
		{"chunk 0 duplicated over chunk 1", mutate(func(b []byte) []byte {
			copy(b[c1s:c1e], ct[c0s:c0e])
			return b
		}), ErrAuthentication, ChunkSize, nil},
		{"chunk 1 inserted again", mutate(func(b []byte) []byte {
			return append(b[:c2s:c2s], append(bytes.Clone(ct[c1s:c1e]), ct[c2s:]...)...)
		}), ErrAuthentication, 2 * ChunkSize, nil},
		{"chunk 1 dropped", mutate(func(b []byte) []byte {
			return append(b[:c1s:c1s], ct[c1e:]...)
		}), ErrAuthentication, ChunkSize, nil},
		{"final chunk dropped", ct[:c3s], ErrTruncated, 3 * ChunkSize, nil},
		{"final chunk cut to 15 bytes", ct[:c3s+15], ErrTruncated, 3 * ChunkSize, nil},
		{"final chunk cut to 16 bytes", ct[:c3s+16], ErrAuthentication, 3 * ChunkSize, nil},
		{"one byte cut", ct[:len(ct)-1], ErrAuthentication, 3 * ChunkSize, nil},
		{"header only", ct[:HeaderSize], ErrTruncated, 0, nil},
		{"half a header", ct[:HeaderSize/2], ErrTruncated, 0, nil},
		{"empty", nil, ErrTruncated, 0, nil},
		{"1 garbage byte appended", append(bytes.Clone(ct), 0), ErrAuthentication, 3 * ChunkSize, nil},
		// The last piece becomes 5 bytes long: an impossible length, which
		// ReaderAt sees up front, while a stream first meets chunk 3 made full
		// by the garbage.
		{"garbage appended to an impossible length", append(bytes.Clone(ct), make([]byte, EncryptedChunkSize-100+5)...), ErrAuthentication, 3 * ChunkSize, ErrTruncated},
		{"a valid chunk appended", append(bytes.Clone(ct), ct[c1s:c1e]...), ErrAuthentication, 3 * ChunkSize, nil},
		{"final chunk of another message appended", append(bytes.Clone(ct), encrypt(t, []byte("x"))[HeaderSize:]...), ErrAuthentication, 3 * ChunkSize, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, conc := range []int{1, 4} {
				r, err := NewReader(bytes.NewReader(tc.ct), testKey, testCtx, WithConcurrency(conc))
				var out []byte
				if err == nil {
					out, err = readStream(t, r, 4096)
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("conc=%d: Reader err = %v, want %v", conc, err, tc.want)
				}
				if !bytes.Equal(out, msg[:tc.prefix]) {
					t.Fatalf("conc=%d: Reader released %d bytes, want the %d-byte valid prefix", conc, len(out), tc.prefix)
				}
				wantAt := tc.want
				if tc.wantAt != nil {
					wantAt = tc.wantAt
				}
				if _, err := decryptAt(tc.ct, conc); !errors.Is(err, wantAt) {
					t.Fatalf("conc=%d: ReaderAt err = %v, want %v", conc, err, wantAt)
				}
			}
		})
	}
}

func TestEveryTruncation(t *testing.T) {
	msg := message(2*ChunkSize + 1)
	ct := encrypt(t, msg)
	step := 1
	if testing.Short() {
		step = 97
	}
	for n := 0; n < len(ct); n += step {
		_, err := decryptStream(ct[:n], 1)
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrAuthentication) {
			t.Fatalf("Reader of %d/%d bytes: err = %v", n, len(ct), err)
		}
		_, err2 := decryptAt(ct[:n], 2)
		if !errors.Is(err2, ErrTruncated) && !errors.Is(err2, ErrAuthentication) {
			t.Fatalf("ReaderAt of %d/%d bytes: err = %v", n, len(ct), err2)
		}
		_, shapeErr := PlaintextSize(int64(n))
		if (shapeErr != nil) != errors.Is(err2, ErrTruncated) {
			t.Fatalf("ReaderAt of %d bytes: err = %v, shape error %v", n, err2, shapeErr)
		}
	}
}

func TestSizes(t *testing.T) {
	if MaxPlaintextSize != maxChunks*ChunkSize-1 {
		t.Fatalf("MaxPlaintextSize = %d, want 2^38 chunks of %d bytes - 1", int64(MaxPlaintextSize), ChunkSize)
	}
	for _, n := range []int64{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 1 << 30, 1<<40 + 3, MaxPlaintextSize - 1, MaxPlaintextSize} {
		c := CiphertextSize(n)
		if c < n+HeaderSize+TagSize {
			t.Fatalf("CiphertextSize(%d) = %d", n, c)
		}
		if got, err := PlaintextSize(c); got != n || err != nil {
			t.Fatalf("PlaintextSize(CiphertextSize(%d) = %d) = %d, %v", n, c, got, err)
		}
	}
	if got := CiphertextSize(MaxPlaintextSize); got != HeaderSize+maxChunks*EncryptedChunkSize-1 {
		t.Fatalf("CiphertextSize(max) = %d", got)
	}
	for _, n := range []int64{-1, math.MinInt64, MaxPlaintextSize + 1, math.MaxInt64} {
		if got := CiphertextSize(n); got != -1 {
			t.Errorf("CiphertextSize(%d) = %d, want -1", n, got)
		}
	}
	for _, tc := range []struct {
		size int64
		want error
	}{
		{math.MinInt64, ErrTruncated},
		{-1, ErrTruncated},
		{0, ErrTruncated},
		{HeaderSize - 1, ErrTruncated},
		{HeaderSize, ErrTruncated},
		{HeaderSize + TagSize - 1, ErrTruncated},
		{HeaderSize + EncryptedChunkSize, ErrTruncated},
		{HeaderSize + EncryptedChunkSize + 15, ErrTruncated},
		{HeaderSize + maxChunks*EncryptedChunkSize, ErrTooLarge},
		{math.MaxInt64, ErrTooLarge},
		{math.MaxInt64 - 1, ErrTooLarge},
	} {
		if got, err := PlaintextSize(tc.size); !errors.Is(err, tc.want) {
			t.Errorf("PlaintextSize(%d) = %d, %v; want %v", tc.size, got, err, tc.want)
		}
	}
}

func TestMaliciousReaderAtSizes(t *testing.T) {
	ct := encrypt(t, message(ChunkSize+10))
	for _, size := range []int64{math.MinInt64, -1, 0, HeaderSize - 1, HeaderSize, math.MaxInt64, math.MaxInt64 - 15,
		HeaderSize + maxChunks*EncryptedChunkSize, HeaderSize + maxChunks*EncryptedChunkSize - 1,
		int64(len(ct)) + 3*EncryptedChunkSize, int64(len(ct)) - 1, int64(len(ct)) + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			ra, err := NewReaderAt(bytes.NewReader(ct), size, testKey, testCtx, WithConcurrency(2))
			if err != nil {
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("NewReaderAt err = %v", err)
				}
				return
			}
			if size == int64(len(ct)) {
				return
			}
			// The claimed size is a lie about the source: every read that needs
			// the end must fail, none may panic.
			if _, err := ra.Size(); err == nil {
				t.Fatal("Size() authenticated a wrong length")
			}
			for _, off := range []int64{0, 1, ChunkSize, ra.size - 1, ra.size, math.MaxInt64, -5} {
				p := make([]byte, 3*ChunkSize)
				if n, err := ra.ReadAt(p, off); err == nil && off+int64(n) >= ra.size {
					t.Fatalf("ReadAt(off %d) = %d, nil up to the claimed end", off, n)
				}
			}
		})
	}
	if _, err := NewRawReaderAt(bytes.NewReader(nil), math.MaxInt64, mustMessageKey(t)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("NewRawReaderAt(MaxInt64) err = %v", err)
	}
	if _, err := NewRawReaderAt(bytes.NewReader(nil), -1, mustMessageKey(t)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("NewRawReaderAt(-1) err = %v", err)
	}
}

func mustMessageKey(t testing.TB) *MessageKey {
	t.Helper()
	mk, _, err := DeriveKey(testKey, testSalt, testCtx)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// failWriter accepts limit bytes, then fails.
type failWriter struct {
	limit int
	err   error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, f.err
	}
	f.limit -= len(p)
	return len(p), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestWriterErrors(t *testing.T) {
	boom := errors.New("disk full")
	if _, err := NewWriter(&failWriter{limit: 10, err: boom}, testKey, nil); !errors.Is(err, boom) {
		t.Fatalf("NewWriter with failing header write err = %v", err)
	}
	msg := message(10 * ChunkSize)
	for _, conc := range []int{1, 4} {
		for _, limit := range []int{HeaderSize, HeaderSize + 100, HeaderSize + 3*EncryptedChunkSize, int(CiphertextSize(int64(len(msg)))) - 1} {
			t.Run(fmt.Sprintf("conc=%d/limit=%d", conc, limit), func(t *testing.T) {
				w, err := NewWriter(&failWriter{limit: limit, err: boom}, testKey, nil, WithConcurrency(conc))
				if err != nil {
					t.Fatal(err)
				}
				var werr error
				for p := msg; len(p) > 0 && werr == nil; p = p[min(len(p), 5000):] {
					_, werr = w.Write(p[:min(len(p), 5000)])
				}
				cerr := w.Close()
				if werr == nil && cerr == nil {
					t.Fatal("no error from a failing io.Writer")
				}
				if werr != nil && !errors.Is(werr, boom) {
					t.Fatalf("Write err = %v, want %v", werr, boom)
				}
				if !errors.Is(cerr, boom) {
					t.Fatalf("Close err = %v, want %v", cerr, boom)
				}
				if _, err := w.Write([]byte("more")); err == nil {
					t.Fatal("Write after a failed Close succeeded")
				}
			})
		}
	}
	// A writer that reports a short write without an error.
	w, err := NewWriter(&shortWriter{}, testKey, nil, WithSalt(testSalt))
	if err == nil {
		err = w.Close()
	}
	if !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write err = %v, want io.ErrShortWrite", err)
	}
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestWriterUseAfterClose(t *testing.T) {
	for _, conc := range []int{1, 3} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testKey, nil, WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		n := buf.Len()
		if _, err := w.Write([]byte("again")); !errors.Is(err, errWriterClosed) {
			t.Fatalf("Write after Close err = %v", err)
		}
		if _, err := w.ReadFrom(strings.NewReader("again")); !errors.Is(err, errWriterClosed) {
			t.Fatalf("ReadFrom after Close err = %v", err)
		}
		if err := w.Close(); !errors.Is(err, errWriterClosed) {
			t.Fatalf("second Close err = %v", err)
		}
		if buf.Len() != n {
			t.Fatal("writes after Close reached the io.Writer")
		}
	}
}

func TestReaderSourceErrors(t *testing.T) {
	boom := errors.New("connection reset")
	if _, err := NewReader(io.MultiReader(bytes.NewReader(make([]byte, 10)), errReader{boom}), testKey, nil); !errors.Is(err, boom) || errors.Is(err, ErrTruncated) {
		t.Fatalf("NewReader with a failing source err = %v", err)
	}
	msg := message(5 * ChunkSize)
	ct := encrypt(t, msg)
	for _, conc := range []int{1, 2} {
		src := io.MultiReader(bytes.NewReader(ct[:HeaderSize+2*EncryptedChunkSize+7]), errReader{boom})
		r, err := NewReader(src, testKey, testCtx, WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		out, err := readStream(t, r, 1000)
		if !errors.Is(err, boom) {
			t.Fatalf("conc=%d: err = %v, want %v", conc, err, boom)
		}
		if !bytes.Equal(out, msg[:len(out)]) || len(out) > 2*ChunkSize {
			t.Fatalf("conc=%d: released %d bytes", conc, len(out))
		}
	}
	ra, err := NewReaderAt(failingReaderAt{bytes.NewReader(ct), boom, HeaderSize + 1}, int64(len(ct)), testKey, testCtx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ra.ReadAt(make([]byte, 10), ChunkSize); !errors.Is(err, boom) {
		t.Fatalf("ReadAt with a failing source err = %v", err)
	}
	if _, err := ra.Size(); !errors.Is(err, boom) {
		t.Fatalf("Size with a failing source err = %v", err)
	}
}

// failingReaderAt fails every read at or after off.
type failingReaderAt struct {
	r   io.ReaderAt
	err error
	off int64
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.off {
		return 0, f.err
	}
	return f.r.ReadAt(p, off)
}

func TestChunkCounterLimit(t *testing.T) {
	mk := mustMessageKey(t)
	// A writer positioned at the last allowed chunk counter.
	atLast := func(buf *bytes.Buffer) *Writer {
		w, err := NewRawWriter(buf, mk)
		if err != nil {
			t.Fatal(err)
		}
		w.next, w.total = maxChunks-1, (maxChunks-1)*ChunkSize
		return w
	}
	var buf bytes.Buffer
	w := atLast(&buf)
	if _, err := w.Write(make([]byte, ChunkSize-1)); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write([]byte{1}); n != 0 || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write past the max = %d, %v; want ErrTooLarge", n, err)
	}
	if err := w.Close(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Close after ErrTooLarge = %v", err)
	}
	if _, err := atLast(&buf).ReadFrom(bytes.NewReader(make([]byte, ChunkSize))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadFrom past the max err = %v", err)
	}

	buf.Reset()
	w = atLast(&buf)
	last := message(ChunkSize - 1)
	if _, err := w.ReadFrom(bytes.NewReader(last)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewRawReader(bytes.NewReader(buf.Bytes()), mk)
	if err != nil {
		t.Fatal(err)
	}
	r.next = maxChunks - 1
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, last) {
		t.Fatalf("reading chunk 2^38-1 = %d bytes, %v", len(got), err)
	}

	// A reader must stop before using counter 2^38, even for a chunk that would
	// authenticate.
	st, err := newAEADState(mk)
	if err != nil {
		t.Fatal(err)
	}
	b := newBatch(2)
	b.reset(maxChunks - 1)
	b.full, b.final, b.tail = 1, true, 0
	st.seal(b)
	for _, conc := range []int{1, 2} {
		r, err := NewRawReader(bytes.NewReader(b.buf[:b.sealedLen()]), mk, WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		r.next = maxChunks - 1
		out, err := readStream(t, r, 100)
		if !errors.Is(err, ErrTooLarge) || len(out) != ChunkSize {
			t.Fatalf("conc=%d: reading past counter 2^38-1 = %d bytes, %v; want ErrTooLarge", conc, len(out), err)
		}
	}
}

func TestMessageKey(t *testing.T) {
	mk := mustMessageKey(t)
	raw := mk.Bytes()
	if len(raw) != KeySize+NonceSize {
		t.Fatalf("Bytes() is %d bytes", len(raw))
	}
	hexKey := fmt.Sprintf("%x", raw[:8])
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("k", "key", mk, "value", *mk)
	holder := struct {
		K  MessageKey
		k  MessageKey
		p  *MessageKey
		PP *MessageKey
	}{*mk, *mk, mk, mk}
	outputs := []string{
		fmt.Sprint(mk), fmt.Sprint(*mk), fmt.Sprintf("%v %+v %#v %s %x %X %q %d", mk, mk, mk, mk, mk, mk, mk, mk),
		fmt.Sprintf("%v %+v %#v", *mk, *mk, *mk), fmt.Sprintf("%v %+v %#v", holder, holder, holder),
		mk.String(), mk.GoString(), logged.String(), mk.LogValue().String(),
	}
	for _, out := range outputs {
		if strings.Contains(strings.ToLower(out), hexKey) || bytes.Contains([]byte(out), raw[:8]) {
			t.Fatalf("key material printed: %s", out)
		}
	}
	if !strings.Contains(fmt.Sprint(mk), "cobblestone.MessageKey(redacted)") || !strings.Contains(logged.String(), "cobblestone.MessageKey(redacted)") {
		t.Fatalf("redacted placeholder missing: %s / %s", fmt.Sprint(mk), logged.String())
	}

	back, err := MessageKeyFromBytes(raw)
	if err != nil || !bytes.Equal(back.Bytes(), raw) {
		t.Fatalf("MessageKeyFromBytes round trip = %x, %v", back.Bytes(), err)
	}
	clear(raw)
	if bytes.Equal(back.Bytes(), raw) {
		t.Fatal("MessageKeyFromBytes kept the caller's slice")
	}
	got := back.Bytes()
	got[0] ^= 1
	if bytes.Equal(back.Bytes(), got) {
		t.Fatal("Bytes returned internal storage")
	}

	m := back.m
	copied := *back
	back.Destroy()
	if _, err := NewRawReader(bytes.NewReader(nil), &copied); !errors.Is(err, errKeyDestroyed) {
		t.Fatalf("a copy of a destroyed key was accepted: %v", err)
	}
	back.Destroy()
	if back.Bytes() != nil || !bytes.Equal(m[:], make([]byte, len(m))) {
		t.Fatal("Destroy did not zero the key")
	}
	if _, err := NewRawWriter(io.Discard, back); err == nil {
		t.Fatal("NewRawWriter accepted a destroyed key")
	}
	if _, err := NewRawReader(bytes.NewReader(nil), nil); err == nil {
		t.Fatal("NewRawReader accepted a nil key")
	}
	if _, err := NewRawReaderAt(bytes.NewReader(nil), 16, &MessageKey{}); err == nil {
		t.Fatal("NewRawReaderAt accepted a zero MessageKey")
	}
	var nilKey *MessageKey
	nilKey.Destroy()
	if nilKey.Bytes() != nil {
		t.Fatal("nil key has bytes")
	}

	// A key handed over by a broker decrypts the message without the input key.
	ct := encrypt(t, []byte("brokered"), WithSalt(testSalt))
	hk, err := OpenHeader(testKey, testCtx, ct)
	if err != nil {
		t.Fatal(err)
	}
	handed, err := MessageKeyFromBytes(hk.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	hk.Destroy()
	r, err := NewRawReader(bytes.NewReader(ct[HeaderSize:]), handed)
	if err != nil {
		t.Fatal(err)
	}
	handed.Destroy() // the Reader keeps only the AEAD
	if got, err := io.ReadAll(r); err != nil || string(got) != "brokered" {
		t.Fatalf("brokered read = %q, %v", got, err)
	}
}

func TestDeriveKeyDomainSeparation(t *testing.T) {
	seen := map[string]string{}
	for _, tc := range []struct {
		name string
		salt []byte
		ctx  []byte
	}{
		{"base", testSalt, []byte("ab")},
		{"other ctx", testSalt, []byte("ac")},
		{"empty ctx", testSalt, nil},
		{"nul ctx", testSalt, []byte{0}},
		{"other salt", bytes.Repeat([]byte{1}, SaltSize), []byte("ab")},
	} {
		mk, c, err := DeriveKey(testKey, tc.salt, tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%x%x", mk.Bytes(), c)
		if prev, dup := seen[k]; dup {
			t.Fatalf("%s and %s derive the same key", prev, tc.name)
		}
		seen[k] = tc.name
	}
}

func TestWithConcurrencyDefault(t *testing.T) {
	o := buildOptions([]Option{WithConcurrency(0)})
	if o.concurrency != runtime.GOMAXPROCS(0) {
		t.Fatalf("WithConcurrency(0) = %d, want GOMAXPROCS", o.concurrency)
	}
	if o := buildOptions([]Option{WithConcurrency(-3), nil}); o.concurrency != runtime.GOMAXPROCS(0) {
		t.Fatalf("WithConcurrency(-3) = %d", o.concurrency)
	}
	if o := buildOptions(nil); o.concurrency != 1 {
		t.Fatalf("default concurrency = %d", o.concurrency)
	}
}

func TestReaderSmallReads(t *testing.T) {
	msg := message(2*ChunkSize + 77)
	ct := encrypt(t, msg)
	for _, conc := range []int{1, 4} {
		r, err := NewReader(bytes.NewReader(ct), testKey, testCtx, WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := r.Read(nil); n != 0 || err != nil {
			t.Fatalf("Read(nil) = %d, %v", n, err)
		}
		out, err := readStream(t, r, 1)
		if err != io.EOF || !bytes.Equal(out, msg) {
			t.Fatalf("conc=%d: 1-byte reads = %d bytes, %v", conc, len(out), err)
		}
		if h := sha512.Sum512(out); h != sha512.Sum512(msg) {
			t.Fatal("hash mismatch")
		}
	}
}

func TestWriterDoesNotRetainInput(t *testing.T) {
	// 7 chunks are copied; with 150 chunks, most are sealed straight from p.
	msg := message(400*ChunkSize + 123)
	for _, tc := range []struct{ conc, chunks int }{{1, 7}, {4, 7}, {1, 150}, {2, 150}, {4, 150}} {
		conc := tc.conc
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testKey, testCtx, WithConcurrency(conc), WithSalt(testSalt))
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, tc.chunks*ChunkSize+5)
		for rest := msg; len(rest) > 0; {
			k := copy(p, rest)
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			for i := range p { // scribble: the Writer must not read p any more
				p[i] = 0xff
			}
			rest = rest[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := decryptStream(buf.Bytes(), 1); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("conc=%d: %d bytes, %v; the Writer read p after Write returned", conc, len(got), err)
		}
	}
	// Same after an error of the destination in the middle of a Write.
	boom := errors.New("boom")
	w, err := NewWriter(&failWriter{limit: HeaderSize + 20*EncryptedChunkSize, err: boom}, testKey, testCtx, WithConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Clone(msg)
	if _, err := w.Write(p); !errors.Is(err, boom) {
		t.Fatalf("Write err = %v", err)
	}
	clear(p) // with -race, flags any goroutine still reading p
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close err = %v", err)
	}
}

// TestConcurrentStreams runs many streams with different keys at once:
// recycled batch buffers must never mix them up.
func TestConcurrentStreams(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			key := bytes.Repeat([]byte{byte(g + 1)}, KeySize)
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for range 6 {
				msg := message(rng.IntN(20 * batchChunks * ChunkSize / 8))
				conc := 1 + rng.IntN(4)
				var ct bytes.Buffer
				w, err := NewWriter(&ct, key, testCtx, WithConcurrency(conc))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := w.Write(msg); err != nil {
					t.Error(err)
					return
				}
				if err := w.Close(); err != nil {
					t.Error(err)
					return
				}
				r, err := NewReader(bytes.NewReader(ct.Bytes()), key, testCtx, WithConcurrency(5-conc))
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, msg) {
					t.Errorf("stream %d: %d bytes, %v", g, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
}
