package cobblestone

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// fuzzKey is the input key of the Wycheproof vectors, so that the seed
// corpus starts from ciphertexts whose commitment checks out.
var fuzzKey = []byte("YELLOW SUBMARINE YELLOW SUBMARIN")

const maxSeedCiphertext = 64 << 10

func addVectorSeeds(f *testing.F, add func(v *vector)) {
	for _, v := range loadVectors(f) {
		if v.valid() && !bytes.Equal(v.key, fuzzKey) {
			f.Fatalf("tcId %d: key %x is not fuzzKey", v.TcID, v.key)
		}
		if len(v.ct) <= maxSeedCiphertext {
			add(v)
		}
	}
}

// boundedStep keeps a fuzzed I/O size from turning one input into millions
// of calls: at most 1024 pieces of n bytes (0, meaning WriteTo, stays 0).
func boundedStep(step, n int) int {
	if step == 0 {
		return 0
	}
	return max(step, n/1024+1)
}

func requireSentinel(t *testing.T, err error, allowed ...error) {
	t.Helper()
	for _, s := range allowed {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("err = %v, want one of %v", err, allowed)
}

// sealFullChunks returns the ciphertext of plaintext (whole chunks) under
// key, without a final chunk: what a valid stream prefix looks like.
func sealFullChunks(t *testing.T, key *MessageKey, plaintext []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewRawWriter(&buf, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plaintext); err != nil { // concurrency 1 flushes each full chunk
		t.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzReader(f *testing.F) {
	addVectorSeeds(f, func(v *vector) {
		f.Add(v.ct, v.ctx, uint8(0), uint16(1000))
		f.Add(v.ct, v.ctx, uint8(2), uint16(0))
	})
	f.Fuzz(func(t *testing.T, ct, ctx []byte, concSel uint8, readSize uint16) {
		conc := int(concSel%4) + 1
		r, err := NewReader(bytes.NewReader(ct), fuzzKey, ctx, WithConcurrency(conc))
		if err != nil {
			requireSentinel(t, err, ErrTruncated, ErrCommitment)
			return
		}
		out, err := readStream(t, r, boundedStep(int(readSize), len(ct)))
		key, herr := OpenHeader(fuzzKey, ctx, ct)
		if herr != nil {
			t.Fatalf("NewReader accepted a header OpenHeader rejects: %v", herr)
		}
		atOut, atErr := decryptAtKey(ct, ctx, conc)
		if err == io.EOF {
			// Success: the plaintext must re-encrypt to exactly this ciphertext.
			var re bytes.Buffer
			w, werr := NewWriter(&re, fuzzKey, ctx, WithSalt(ct[:SaltSize]))
			if werr != nil {
				t.Fatal(werr)
			}
			writeInPieces(t, w, out, 4096)
			if !bytes.Equal(re.Bytes(), ct) {
				t.Fatalf("decrypted %d bytes that do not re-encrypt to the ciphertext", len(out))
			}
			if atErr != nil || !bytes.Equal(atOut, out) {
				t.Fatalf("ReaderAt disagrees with Reader: %d bytes, %v", len(atOut), atErr)
			}
			return
		}
		requireSentinel(t, err, ErrAuthentication, ErrTruncated, ErrTooLarge)
		// Released plaintext: whole chunks that authenticate at their index.
		if len(out)%ChunkSize != 0 {
			t.Fatalf("released %d bytes before an error: not whole chunks", len(out))
		}
		if prefix := sealFullChunks(t, key, out); !bytes.Equal(prefix, ct[HeaderSize:HeaderSize+len(prefix)]) {
			t.Fatalf("released %d bytes that are not the authenticated prefix", len(out))
		}
		if atErr == nil {
			t.Fatalf("ReaderAt accepted what Reader rejected (%v)", err)
		}
	})
}

func decryptAtKey(ct, ctx []byte, conc int) ([]byte, error) {
	ra, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), fuzzKey, ctx, WithConcurrency(conc))
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

// oracle decrypts chunks of a chunk stream the obvious way, independently of
// the package's nonce and range code.
type oracle struct {
	aead cipher.AEAD
	base []byte
	body []byte
	size int64
}

func newOracle(t *testing.T, key *MessageKey, body []byte) *oracle {
	kb := key.Bytes()
	block, err := aes.NewCipher(kb[:KeySize])
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	size, err := PlaintextSize(int64(HeaderSize + len(body)))
	if err != nil {
		t.Fatal(err)
	}
	return &oracle{aead: aead, base: kb[KeySize:], body: body, size: size}
}

func (o *oracle) chunk(i int64) ([]byte, bool) {
	start := i * EncryptedChunkSize
	end := min(start+EncryptedChunkSize, int64(len(o.body)))
	nonce := bytes.Clone(o.base)
	binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(nonce[4:])^uint64(i))
	pt, err := o.aead.Open(nil, nonce, o.body[start:end], nil)
	return pt, err == nil
}

func FuzzReaderAt(f *testing.F) {
	addVectorSeeds(f, func(v *vector) {
		f.Add(v.ct, v.ctx, int64(0), uint32(70000), uint8(0))
		f.Add(v.ct, v.ctx, int64(16380), uint32(10), uint8(1))
		f.Add(v.ct, v.ctx, int64(16384), uint32(1), uint8(2))
	})
	f.Fuzz(func(t *testing.T, ct, ctx []byte, off int64, n uint32, concSel uint8) {
		conc := int(concSel%4) + 1
		ra, err := NewReaderAt(bytes.NewReader(ct), int64(len(ct)), fuzzKey, ctx, WithConcurrency(conc))
		if err != nil {
			requireSentinel(t, err, ErrTruncated, ErrCommitment, ErrTooLarge)
			return
		}
		key, err := OpenHeader(fuzzKey, ctx, ct)
		if err != nil {
			t.Fatal(err)
		}
		o := newOracle(t, key, ct[HeaderSize:])
		last := o.size / ChunkSize
		_, finalOK := o.chunk(last)

		p := make([]byte, int(n%(3*ChunkSize)))
		for i := range p {
			p[i] = 0xaa
		}
		got, err := ra.ReadAt(p, off)
		switch {
		case off < 0:
			if got != 0 || err == nil || err == io.EOF {
				t.Fatalf("ReadAt(off %d) = %d, %v", off, got, err)
			}
		case off >= o.size:
			if finalOK && (got != 0 || err != io.EOF) {
				t.Fatalf("ReadAt(off %d ≥ size) = %d, %v; want 0, io.EOF", off, got, err)
			}
			if !finalOK && !errors.Is(err, ErrAuthentication) {
				t.Fatalf("ReadAt(off %d ≥ size) err = %v; the final chunk is bad", off, err)
			}
		case len(p) == 0:
			if got != 0 || err != nil {
				t.Fatalf("ReadAt(empty, %d) = %d, %v", off, got, err)
			}
		default:
			end := min(off+int64(len(p)), o.size)
			lastChunk := (end - 1) / ChunkSize
			if end == o.size {
				lastChunk = last
			}
			var want []byte
			bad := int64(-1)
			for i := off / ChunkSize; i <= lastChunk; i++ {
				pt, ok := o.chunk(i)
				if !ok {
					bad = i
					break
				}
				lo, hi := max(off, i*ChunkSize), min(end, i*ChunkSize+int64(len(pt)))
				want = append(want, pt[lo-i*ChunkSize:hi-i*ChunkSize]...)
			}
			if bad < 0 {
				wantErr := error(nil)
				if len(want) < len(p) {
					wantErr = io.EOF
				}
				if got != len(want) || err != wantErr || !bytes.Equal(p[:got], want) {
					t.Fatalf("ReadAt(%d bytes, off %d) = %d, %v; want %d, %v", len(p), off, got, err, len(want), wantErr)
				}
				if end == o.size {
					if s, err := ra.Size(); s != o.size || err != nil {
						t.Fatalf("Size() = %d, %v after reading to the end", s, err)
					}
				}
			} else {
				if !errors.Is(err, ErrAuthentication) || got != len(want) || !bytes.Equal(p[:got], want) {
					t.Fatalf("ReadAt(%d bytes, off %d) = %d, %v; want %d, ErrAuthentication (chunk %d)", len(p), off, got, err, len(want), bad)
				}
				if !bytes.Equal(p[got:], make([]byte, len(p)-got)) {
					t.Fatal("ReadAt left bytes past n after an error")
				}
			}
		}
		s, err := ra.Size()
		if finalOK != (err == nil) || (err == nil && s != o.size) {
			t.Fatalf("Size() = %d, %v; final chunk valid: %v", s, err, finalOK)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(""), []byte(""), uint8(0), uint8(0), uint16(0))
	f.Add([]byte("hello"), []byte("ctx"), uint8(1), uint8(0), uint16(3))
	f.Add(bytes.Repeat([]byte{1}, 4096), []byte{0}, uint8(2), uint8(3), uint16(1000))   // exactly one chunk
	f.Add(bytes.Repeat([]byte{2}, 4097), []byte{}, uint8(3), uint8(7), uint16(16384))   // 32776: two chunks + short
	f.Add(bytes.Repeat([]byte{3}, 8192), []byte("x"), uint8(1), uint8(13), uint16(777)) // 7 full chunks + empty
	f.Fuzz(func(t *testing.T, unit, ctx []byte, concSel, rep uint8, step uint16) {
		msg := bytes.Repeat(unit, 1+int(rep%40))
		conc := int(concSel%4) + 1
		salt := bytes.Repeat([]byte{rep}, SaltSize)

		var a bytes.Buffer
		w, err := NewWriter(&a, fuzzKey, ctx, WithSalt(salt))
		if err != nil {
			t.Fatal(err)
		}
		piece := boundedStep(int(step)+1, len(msg))
		writeInPieces(t, w, msg, piece)
		ct := a.Bytes()
		if int64(len(ct)) != CiphertextSize(int64(len(msg))) {
			t.Fatalf("%d-byte message gave %d bytes, CiphertextSize says %d", len(msg), len(ct), CiphertextSize(int64(len(msg))))
		}

		var b bytes.Buffer
		w, err = NewWriter(&b, fuzzKey, ctx, WithSalt(salt), WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.ReadFrom(bytes.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), ct) {
			t.Fatalf("conc=%d ReadFrom ciphertext differs from conc=1 Write", conc)
		}

		r, err := NewReader(bytes.NewReader(ct), fuzzKey, ctx, WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := readStream(t, r, piece); err != io.EOF || !bytes.Equal(out, msg) {
			t.Fatalf("Reader = %d bytes, %v", len(out), err)
		}
		if out, err := decryptAtKey(ct, ctx, conc); err != nil || !bytes.Equal(out, msg) {
			t.Fatalf("ReaderAt = %d bytes, %v", len(out), err)
		}
		mk, err := OpenHeader(fuzzKey, ctx, ct)
		if err != nil {
			t.Fatal(err)
		}
		rr, err := NewRawReader(bytes.NewReader(ct[HeaderSize:]), mk, WithConcurrency(conc))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := io.ReadAll(rr); err != nil || !bytes.Equal(out, msg) {
			t.Fatalf("raw Reader = %d bytes, %v", len(out), err)
		}
		if len(ctx) > 0 {
			other := append(bytes.Clone(ctx[:len(ctx)-1]), ctx[len(ctx)-1]^1)
			if _, err := NewReader(bytes.NewReader(ct), fuzzKey, other); !errors.Is(err, ErrCommitment) {
				t.Fatalf("other context err = %v", err)
			}
		}
	})
}
