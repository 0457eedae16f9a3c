package cobblestone

import (
	"bytes"
	"compress/zlib"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
)

// vector is one Wycheproof ChunkedEncryption test, decoded.
type vector struct {
	TcID      int      `json:"tcId"`
	Comment   string   `json:"comment"`
	KeyHex    string   `json:"key"`
	CtxHex    string   `json:"ctx"`
	CtHex     string   `json:"ct"`
	AEADKey   string   `json:"aeadKey"`
	BaseNonce string   `json:"baseNonce"`
	MsgLength *int64   `json:"msgLength"`
	MsgSha512 string   `json:"msgSha512"`
	Result    string   `json:"result"`
	Flags     []string `json:"flags"`

	key, ctx, ct []byte
	msgHash      []byte
}

func (v *vector) name() string { return fmt.Sprintf("%d/%s", v.TcID, v.Comment) }
func (v *vector) has(flag string) bool {
	return slices.Contains(v.Flags, flag)
}
func (v *vector) valid() bool { return v.Result == "valid" }

// prefixLen is the length of the message (valid) or of its longest valid
// prefix (invalid with PartialPlaintext); 0 otherwise.
func (v *vector) prefixLen() int64 {
	if v.MsgLength == nil {
		return 0
	}
	return *v.MsgLength
}

// checkPrefix checks that out is at most the valid prefix; our
// implementation outputs all of it, so out must be exactly the prefix.
func (v *vector) checkPrefix(t *testing.T, out []byte) {
	t.Helper()
	want := v.prefixLen()
	if int64(len(out)) != want {
		t.Fatalf("output %d bytes, want the %d-byte valid prefix", len(out), want)
	}
	if v.msgHash == nil {
		return
	}
	if got := sha512.Sum512(out); !bytes.Equal(got[:], v.msgHash) {
		t.Fatalf("output SHA-512 %x, want %x", got, v.msgHash)
	}
}

// messageKey returns the vector's raw-mode key, if it has one.
func (v *vector) messageKey(t *testing.T) *MessageKey {
	t.Helper()
	b := mustHex(t, v.AEADKey+v.BaseNonce)
	k, err := MessageKeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantErr is the sentinel a decryption of the invalid vector must wrap: the
// header errors first, then the length shape, then chunk authentication.
func (v *vector) wantErr() error {
	switch {
	case v.has("InvalidKeySize"):
		return ErrInvalidKeySize
	case v.has("HeaderFailure") && len(v.ct) < HeaderSize:
		return ErrTruncated
	case v.has("HeaderFailure"):
		return ErrCommitment
	}
	if _, err := PlaintextSize(int64(len(v.ct))); err != nil {
		return ErrTruncated
	}
	return ErrAuthentication
}

type vectorFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		Type  string    `json:"type"`
		AEAD  string    `json:"aead"`
		SHA   string    `json:"sha"`
		Tests []*vector `json:"tests"`
	} `json:"testGroups"`
}

var loadVectorsOnce = sync.OnceValues(func() ([]*vector, error) {
	data, err := os.ReadFile("testdata/c2sp_chunked_encryption_aes_256_gcm_test.json")
	if err != nil {
		return nil, err
	}
	var f vectorFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Algorithm != "Cobblestone-256" {
		return nil, fmt.Errorf("algorithm %q", f.Algorithm)
	}
	var vs []*vector
	for _, g := range f.TestGroups {
		if g.Type != "ChunkedEncryption" || g.AEAD != AEADName || g.SHA != "SHA-512" {
			return nil, fmt.Errorf("unexpected group %s/%s/%s", g.Type, g.AEAD, g.SHA)
		}
		for _, v := range g.Tests {
			if v.key, err = hex.DecodeString(v.KeyHex); err != nil {
				return nil, err
			}
			if v.ctx, err = hex.DecodeString(v.CtxHex); err != nil {
				return nil, err
			}
			if v.MsgSha512 != "" {
				if v.msgHash, err = hex.DecodeString(v.MsgSha512); err != nil {
					return nil, err
				}
			}
			z, err := hex.DecodeString(v.CtHex)
			if err != nil {
				return nil, err
			}
			zr, err := zlib.NewReader(bytes.NewReader(z))
			if err != nil {
				return nil, fmt.Errorf("tcId %d: %w", v.TcID, err)
			}
			if v.ct, err = io.ReadAll(zr); err != nil {
				return nil, fmt.Errorf("tcId %d: %w", v.TcID, err)
			}
			if v.ct == nil {
				v.ct = []byte{}
			}
			vs = append(vs, v)
		}
	}
	if len(vs) != f.NumberOfTests {
		return nil, fmt.Errorf("loaded %d vectors, file says %d", len(vs), f.NumberOfTests)
	}
	return vs, nil
})

func loadVectors(t testing.TB) []*vector {
	t.Helper()
	vs, err := loadVectorsOnce()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readStream drains r with Read calls of bufSize bytes (or WriteTo when
// bufSize is 0), then checks that the error is sticky.
func readStream(t *testing.T, r *Reader, bufSize int) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	var err error
	if bufSize == 0 {
		_, err = r.WriteTo(&out)
		if err == nil {
			err = io.EOF
		}
	} else {
		buf := make([]byte, bufSize)
		for {
			var n int
			n, err = r.Read(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("Read returned n = %d", n)
			}
			out.Write(buf[:n])
			if err != nil {
				break
			}
		}
	}
	for range 3 {
		n, again := r.Read(make([]byte, 100))
		if n != 0 || again != err {
			t.Fatalf("Read after error %v = %d, %v; want 0, the same error", err, n, again)
		}
	}
	return out.Bytes(), err
}

var streamModes = []struct {
	name    string
	conc    int
	bufSize int
}{
	{"conc=1/Read=1000", 1, 1000},
	{"conc=1/WriteTo", 1, 0},
	{"conc=3/Read=70000", 3, 70000},
	{"conc=3/WriteTo", 3, 0},
}

func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) != 35 {
		t.Fatalf("loaded %d vectors, want 35", len(vs))
	}
	for _, v := range vs {
		t.Run(v.name(), func(t *testing.T) {
			t.Run("OpenHeader", func(t *testing.T) { testVectorHeader(t, v) })
			t.Run("Reader", func(t *testing.T) { testVectorReader(t, v) })
			t.Run("ReaderAt", func(t *testing.T) { testVectorReaderAt(t, v) })
			if !v.has("HeaderFailure") {
				t.Run("Raw", func(t *testing.T) { testVectorRaw(t, v) })
			}
			if v.valid() {
				t.Run("Encrypt", func(t *testing.T) { testVectorEncrypt(t, v) })
			}
		})
	}
}

func testVectorHeader(t *testing.T, v *vector) {
	key, err := OpenHeader(v.key, v.ctx, v.ct)
	if v.has("HeaderFailure") {
		if want := v.wantErr(); !errors.Is(err, want) {
			t.Fatalf("OpenHeader err = %v, want %v", err, want)
		}
		return
	}
	if err != nil {
		t.Fatalf("OpenHeader err = %v", err)
	}
	if got, want := key.Bytes(), mustHex(t, v.AEADKey+v.BaseNonce); !bytes.Equal(got, want) {
		t.Fatalf("message key %x, want %x", got, want)
	}
	mk, commitment, err := DeriveKey(v.key, v.ct[:SaltSize], v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mk.Bytes(), key.Bytes()) || !bytes.Equal(commitment[:], v.ct[SaltSize:HeaderSize]) {
		t.Fatalf("DeriveKey = %x, %x; want %x, %x", mk.Bytes(), commitment, key.Bytes(), v.ct[SaltSize:HeaderSize])
	}
}

func testVectorReader(t *testing.T, v *vector) {
	for _, m := range streamModes {
		t.Run(m.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(v.ct), v.key, v.ctx, WithConcurrency(m.conc))
			if v.has("HeaderFailure") {
				if want := v.wantErr(); !errors.Is(err, want) {
					t.Fatalf("NewReader err = %v, want %v", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewReader err = %v", err)
			}
			out, err := readStream(t, r, m.bufSize)
			if v.valid() {
				if err != io.EOF {
					t.Fatalf("stream err = %v, want io.EOF", err)
				}
				v.checkPrefix(t, out)
				return
			}
			if want := v.wantErr(); !errors.Is(err, want) {
				t.Fatalf("stream err = %v, want %v", err, want)
			}
			v.checkPrefix(t, out)
		})
	}
}

func testVectorReaderAt(t *testing.T, v *vector) {
	for _, conc := range []int{1, 3} {
		t.Run(fmt.Sprintf("conc=%d", conc), func(t *testing.T) {
			ra, err := NewReaderAt(bytes.NewReader(v.ct), int64(len(v.ct)), v.key, v.ctx, WithConcurrency(conc))
			checkVectorReaderAt(t, v, ra, err)
		})
	}
}

func testVectorRaw(t *testing.T, v *vector) {
	body := v.ct[HeaderSize:]
	for _, m := range streamModes {
		t.Run("Reader/"+m.name, func(t *testing.T) {
			r, err := NewRawReader(bytes.NewReader(body), v.messageKey(t), WithConcurrency(m.conc))
			if err != nil {
				t.Fatal(err)
			}
			out, err := readStream(t, r, m.bufSize)
			if v.valid() {
				if err != io.EOF {
					t.Fatalf("stream err = %v, want io.EOF", err)
				}
			} else if want := v.wantErr(); !errors.Is(err, want) {
				t.Fatalf("stream err = %v, want %v", err, want)
			}
			v.checkPrefix(t, out)
		})
	}
	for _, conc := range []int{1, 3} {
		t.Run(fmt.Sprintf("ReaderAt/conc=%d", conc), func(t *testing.T) {
			ra, err := NewRawReaderAt(bytes.NewReader(body), int64(len(body)), v.messageKey(t), WithConcurrency(conc))
			checkVectorReaderAt(t, v, ra, err)
		})
	}
	if v.valid() {
		msg := v.decrypt(t)
		for _, conc := range []int{1, 3} {
			t.Run(fmt.Sprintf("Writer/conc=%d", conc), func(t *testing.T) {
				var buf bytes.Buffer
				w, err := NewRawWriter(&buf, v.messageKey(t), WithConcurrency(conc))
				if err != nil {
					t.Fatal(err)
				}
				writeInPieces(t, w, msg, 5000)
				if !bytes.Equal(buf.Bytes(), body) {
					t.Fatalf("raw re-encryption differs from the vector (%d vs %d bytes)", buf.Len(), len(body))
				}
			})
		}
	}
}

// checkVectorReaderAt applies a vector to a ReaderAt (or its construction
// error): whole-message reads, Size, and reads of the valid prefix.
func checkVectorReaderAt(t *testing.T, v *vector, ra *ReaderAt, err error) {
	t.Helper()
	if v.has("HeaderFailure") {
		if want := v.wantErr(); !errors.Is(err, want) {
			t.Fatalf("NewReaderAt err = %v, want %v", err, want)
		}
		return
	}
	if err != nil {
		if v.valid() {
			t.Fatalf("NewReaderAt err = %v", err)
		}
		if want := v.wantErr(); !errors.Is(err, want) {
			t.Fatalf("NewReaderAt err = %v, want %v", err, want)
		}
		return
	}
	if v.valid() {
		size, err := ra.Size()
		if err != nil || size != v.prefixLen() {
			t.Fatalf("Size() = %d, %v; want %d", size, err, v.prefixLen())
		}
		buf := make([]byte, size+1)
		n, err := ra.ReadAt(buf, 0)
		if int64(n) != size || err != io.EOF {
			t.Fatalf("ReadAt(whole+1) = %d, %v; want %d, io.EOF", n, err, size)
		}
		v.checkPrefix(t, buf[:n])
		n, err = ra.ReadAt(buf[:size], 0)
		if size == 0 && err == io.EOF {
			err = nil // off == size is the end, like bytes.Reader
		}
		if int64(n) != size || err != nil {
			t.Fatalf("ReadAt(whole) = %d, %v; want %d, nil", n, err, size)
		}
		if n, err := ra.ReadAt(buf[:1], size); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt(end) = %d, %v; want 0, io.EOF", n, err)
		}
		return
	}
	want := v.wantErr()
	// Size authenticates the final chunk only.
	size, serr := ra.Size()
	if v.has("ValidFinalChunk") {
		if serr != nil {
			t.Fatalf("Size() err = %v; the final chunk is valid", serr)
		}
	} else if !errors.Is(serr, want) {
		t.Fatalf("Size() = %d, %v; want %v", size, serr, want)
	}
	implied := ra.size
	buf := make([]byte, implied+1)
	n, err := ra.ReadAt(buf, 0)
	if !errors.Is(err, want) {
		t.Fatalf("ReadAt(whole) = %d, %v; want %v", n, err, want)
	}
	if int64(n) > v.prefixLen() {
		t.Fatalf("ReadAt(whole) returned %d bytes, beyond the %d-byte valid prefix", n, v.prefixLen())
	}
	if !bytes.Equal(buf[n:], make([]byte, len(buf)-n)) {
		t.Fatal("ReadAt left bytes after n in p")
	}
	if p := v.prefixLen(); p > 0 && p < implied {
		// A range covered by valid chunks may be read.
		n, err := ra.ReadAt(buf[:p], 0)
		if err != nil {
			t.Fatalf("ReadAt(valid prefix) = %d, %v", n, err)
		}
		v.checkPrefix(t, buf[:n])
	}
}

// decrypt returns the plaintext of a valid vector.
func (v *vector) decrypt(t *testing.T) []byte {
	t.Helper()
	r, err := NewReader(bytes.NewReader(v.ct), v.key, v.ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	v.checkPrefix(t, msg)
	return msg
}

func testVectorEncrypt(t *testing.T, v *vector) {
	msg := v.decrypt(t)
	salt := v.ct[:SaltSize]
	for _, conc := range []int{1, 3} {
		for _, mode := range []string{"Write", "ReadFrom"} {
			t.Run(fmt.Sprintf("%s/conc=%d", mode, conc), func(t *testing.T) {
				var buf bytes.Buffer
				w, err := NewWriter(&buf, v.key, v.ctx, WithSalt(salt), WithConcurrency(conc))
				if err != nil {
					t.Fatal(err)
				}
				if mode == "Write" {
					writeInPieces(t, w, msg, 7777)
				} else {
					if n, err := w.ReadFrom(iotestHalfReader{bytes.NewReader(msg)}); err != nil || n != int64(len(msg)) {
						t.Fatalf("ReadFrom = %d, %v", n, err)
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(buf.Bytes(), v.ct) {
					t.Fatalf("re-encryption differs from the vector (%d vs %d bytes)", buf.Len(), len(v.ct))
				}
				if got := CiphertextSize(int64(len(msg))); got != int64(len(v.ct)) {
					t.Fatalf("CiphertextSize(%d) = %d, want %d", len(msg), got, len(v.ct))
				}
				if got, err := PlaintextSize(int64(len(v.ct))); err != nil || got != int64(len(msg)) {
					t.Fatalf("PlaintextSize(%d) = %d, %v; want %d", len(v.ct), got, err, len(msg))
				}
			})
		}
	}
}

// writeInPieces writes msg in pieces of step bytes and closes w.
func writeInPieces(t *testing.T, w *Writer, msg []byte, step int) {
	t.Helper()
	for p := msg; len(p) > 0; {
		k := min(step, len(p))
		if n, err := w.Write(p[:k]); n != k || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// iotestHalfReader returns at most half of each requested read (at least 1),
// to exercise short reads.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:(len(p)+1)/2]
	}
	return h.r.Read(p)
}
