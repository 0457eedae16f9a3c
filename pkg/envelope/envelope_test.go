package envelope_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/kms"
)

var update = flag.Bool("update", false, "write known-answer files that do not exist yet (existing ones are never regenerated: they must decrypt forever)")

var (
	testID  = envelope.Identity{TenantID: "acme", AssetID: "rec-1", Service: "cloud_recording"}
	testHdr = &envelope.Header{
		KeyURI:      "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		KeyVersion:  "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		WrappedSeed: bytes.Repeat([]byte{0xAB}, 184),
	}
)

func testSeed() *kms.Secret {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return kms.NewSecret(b)
}

// unwrapper returns an Unwrapper that hands out seed whatever the header.
func unwrapper(seed *kms.Secret) envelope.Unwrapper {
	return envelope.UnwrapFunc(func(_ context.Context, h *envelope.Header) (*kms.Secret, error) {
		return seed.Clone(), nil
	})
}

// kmsUnwrapper stands in for a KMS: the wrap in header h (key URI, key
// version, wrapped seed) unwraps to seed; any other wrap unwraps to another
// seed, as a header naming another key or carrying a wrap of another seed
// would.
func kmsUnwrapper(seed *kms.Secret, h *envelope.Header) envelope.Unwrapper {
	return envelope.UnwrapFunc(func(_ context.Context, got *envelope.Header) (*kms.Secret, error) {
		if got.KeyURI == h.KeyURI && got.KeyVersion == h.KeyVersion && bytes.Equal(got.WrappedSeed, h.WrappedSeed) {
			return seed.Clone(), nil
		}
		other := sha256.Sum256(bytes.Join([][]byte{[]byte(got.KeyURI), []byte(got.KeyVersion), got.WrappedSeed}, []byte{0}))
		return kms.NewSecret(other[:]), nil
	})
}

// versions are the format versions this build writes and reads.
var versions = []uint8{envelope.Version1, envelope.Version2}

// hdrAs is testHdr written as version v.
func hdrAs(v uint8) *envelope.Header {
	h := *testHdr
	h.Version = v
	return &h
}

func plaintext(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// encrypt encrypts p under testHdr as the current version.
func encrypt(t testing.TB, p []byte, id envelope.Identity, opts ...cobblestone.Option) []byte {
	t.Helper()
	return encryptAs(t, 0, p, id, opts...)
}

// encryptAs encrypts p under testHdr as version v (0: the current one).
func encryptAs(t testing.TB, v uint8, p []byte, id envelope.Identity, opts ...cobblestone.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, hdrAs(v), testSeed(), id, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := int64(buf.Len()), envelope.CiphertextSize(testHdr, int64(len(p))); got != want {
		t.Fatalf("ciphertext is %d bytes, CiphertextSize says %d", got, want)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, v := range versions {
		for _, n := range []int{0, 1, cobblestone.ChunkSize - 1, cobblestone.ChunkSize, cobblestone.ChunkSize + 1, 3*cobblestone.ChunkSize + 17} {
			for _, conc := range []int{1, 4} {
				p := plaintext(n)
				ct := encryptAs(t, v, p, testID, cobblestone.WithConcurrency(conc))
				if ct[4] != v {
					t.Fatalf("v%d: version byte is %d", v, ct[4])
				}
				r, err := envelope.NewReader(ctx, bytes.NewReader(ct), testID, unwrapper(testSeed()))
				if err != nil {
					t.Fatalf("v%d n=%d: NewReader: %v", v, n, err)
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("v%d n=%d conc=%d: stream round trip: %d bytes, err %v", v, n, conc, len(got), err)
				}
				if r.Header.Version != v || r.Header.KeyURI != testHdr.KeyURI || !bytes.Equal(r.Header.WrappedSeed, testHdr.WrappedSeed) {
					t.Fatalf("v%d: header round trip: %+v", v, r.Header)
				}
				size, err := envelope.PlaintextSize(testHdr.Len(), int64(len(ct)))
				if err != nil || size != int64(n) {
					t.Fatalf("PlaintextSize = %d, %v; want %d", size, err, n)
				}
			}
		}
	}
}

// TestCurrentVersion: a header without a version is written as version 2.
func TestCurrentVersion(t *testing.T) {
	if envelope.CurrentVersion != envelope.Version2 {
		t.Fatalf("CurrentVersion = %d, want %d", envelope.CurrentVersion, envelope.Version2)
	}
	b, err := testHdr.MarshalBinary()
	if err != nil || b[4] != envelope.Version2 {
		t.Fatalf("MarshalBinary of a zero-version header: version byte %d, err %v; want 2", b[4], err)
	}
	h, _, err := envelope.ParseHeader(b)
	if err != nil || h.Version != envelope.Version2 {
		t.Fatalf("ParseHeader = %+v, %v; want version 2", h, err)
	}
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, testHdr, testSeed(), testID)
	if err != nil || w.Close() != nil || buf.Bytes()[4] != envelope.Version2 {
		t.Fatalf("NewWriter with a zero-version header: %v, version byte %d", err, buf.Bytes()[4])
	}
	for _, v := range []uint8{3, 0xff} {
		if _, err := hdrAs(v).MarshalBinary(); !errors.Is(err, envelope.ErrUnsupportedVersion) {
			t.Errorf("MarshalBinary(version %d) err = %v, want ErrUnsupportedVersion", v, err)
		}
	}
}

func TestReaderAtRanges(t *testing.T) {
	ctx := context.Background()
	const c = cobblestone.ChunkSize
	p := plaintext(5*c + 100)
	for _, v := range versions {
		ct := encryptAs(t, v, p, testID)
		ra, err := envelope.NewReaderAt(ctx, bytes.NewReader(ct), int64(len(ct)), testID, unwrapper(testSeed()))
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if ra.Header.Version != v {
			t.Fatalf("v%d: ReaderAt header version %d", v, ra.Header.Version)
		}
		checkRanges(t, ra, p)
	}
}

// checkRanges reads ranges of p through ra.
func checkRanges(t *testing.T, ra interface {
	io.ReaderAt
	Size() (int64, error)
}, p []byte) {
	t.Helper()
	const c = cobblestone.ChunkSize
	if size, err := ra.Size(); err != nil || size != int64(len(p)) {
		t.Fatalf("Size = %d, %v", size, err)
	}
	for _, r := range [][2]int{{0, 1}, {c - 1, c + 1}, {c, 2 * c}, {2*c - 5, 4*c + 5}, {len(p) - 1, len(p)}, {0, len(p)}, {5 * c, 5*c + 100}} {
		if r[1] > len(p) {
			continue
		}
		buf := make([]byte, r[1]-r[0])
		n, err := ra.ReadAt(buf, int64(r[0]))
		if err != nil && !(err == io.EOF && r[1] == len(p)) {
			t.Fatalf("ReadAt %v: %v", r, err)
		}
		if n != len(buf) || !bytes.Equal(buf, p[r[0]:r[1]]) {
			t.Fatalf("ReadAt %v returned wrong bytes", r)
		}
	}
}

// TestBrokerPath: a broker derives the per-asset key from the prefix; a
// reader with only that key decrypts ranges, never seeing the seed.
func TestBrokerPath(t *testing.T) {
	p := plaintext(3*cobblestone.ChunkSize + 3)
	for _, v := range versions {
		ct := encryptAs(t, v, p, testID)
		prefix, err := envelope.ReadPrefix(bytes.NewReader(ct), int64(len(ct)))
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := envelope.ParsePrefix(ct[:prefix.Len()])
		if err != nil || parsed.Len() != prefix.Len() || parsed.Header.Version != v {
			t.Fatalf("v%d: ParsePrefix = %v, %v", v, parsed, err)
		}
		if !bytes.Equal(prefix.Bytes(), ct[:prefix.Len()]) {
			t.Fatalf("v%d: Prefix.Bytes is not the start of the ciphertext", v)
		}
		key, err := prefix.MessageKey(testSeed(), testID)
		if err != nil {
			t.Fatal(err)
		}
		// The key travels as bytes (sealed with HPKE in real life).
		key2, err := cobblestone.MessageKeyFromBytes(key.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ra, err := envelope.NewRawReaderAt(bytes.NewReader(ct), int64(len(ct)), prefix, key2)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(ra, 0, int64(len(p))))
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("v%d: raw read: %d bytes, %v", v, len(got), err)
		}
		// The broker refuses to derive a key for another identity.
		other := testID
		other.AssetID = "rec-2"
		if _, err := prefix.MessageKey(testSeed(), other); !errors.Is(err, envelope.ErrCommitment) {
			t.Fatalf("v%d: MessageKey for another asset = %v, want ErrCommitment", v, err)
		}
	}
}

// TestTampering runs against both versions. Version 1 binds the header into
// the key, so a changed header fails the commitment whatever seed it yields.
// Version 2 binds the seed: a changed header fails because the KMS unwraps
// it to another seed (kmsUnwrapper).
func TestTampering(t *testing.T) {
	for _, v := range versions {
		u := unwrapper(testSeed())
		if v == envelope.Version2 {
			u = kmsUnwrapper(testSeed(), testHdr)
		}
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testTampering(t, v, u) })
	}
}

func testTampering(t *testing.T, v uint8, u envelope.Unwrapper) {
	ctx := context.Background()
	const c = cobblestone.ChunkSize
	p := plaintext(3*c + 10)
	ct := encryptAs(t, v, p, testID)
	hlen := testHdr.Len()
	payload := hlen + cobblestone.HeaderSize
	ec := cobblestone.EncryptedChunkSize

	decrypt := func(ct []byte, id envelope.Identity) error {
		r, err := envelope.NewReader(ctx, bytes.NewReader(ct), id, u)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(r)
		return err
	}
	flip := func(i int) []byte {
		b := bytes.Clone(ct)
		b[i] ^= 0x01
		return b
	}
	swap := func() []byte {
		b := bytes.Clone(ct)
		c0 := bytes.Clone(b[payload : payload+ec])
		copy(b[payload:payload+ec], b[payload+ec:payload+2*ec])
		copy(b[payload+ec:payload+2*ec], c0)
		return b
	}
	otherTenant, otherAsset, otherService := testID, testID, testID
	otherTenant.TenantID = "globex"
	otherAsset.AssetID = "rec-2"
	otherService.Service = "team_chat"
	tests := []struct {
		name string
		ct   []byte
		id   envelope.Identity
		want error
	}{
		{"bit in key URI", flip(12), testID, envelope.ErrCommitment},
		{"bit in key version", flip(12 + len(testHdr.KeyURI) + 2), testID, envelope.ErrCommitment},
		{"bit in wrapped seed", flip(hlen - 1), testID, envelope.ErrCommitment},
		{"bit in magic", flip(0), testID, envelope.ErrMalformedHeader},
		{"version", flip(4), testID, envelope.ErrUnsupportedVersion},
		{"bit in salt", flip(hlen + 3), testID, envelope.ErrCommitment},
		{"bit in commitment", flip(hlen + 30), testID, envelope.ErrCommitment},
		{"bit in first chunk", flip(payload + 100), testID, envelope.ErrAuthentication},
		{"bit in last tag", flip(len(ct) - 1), testID, envelope.ErrAuthentication},
		{"swapped chunks", swap(), testID, envelope.ErrAuthentication},
		{"truncated by a byte", ct[:len(ct)-1], testID, envelope.ErrAuthentication},
		{"final chunk dropped", ct[:payload+3*ec], testID, envelope.ErrTruncated},
		{"truncated header", ct[:hlen-3], testID, envelope.ErrTruncated},
		{"trailing garbage", append(bytes.Clone(ct), 1, 2, 3), testID, envelope.ErrAuthentication},
		{"copied to another tenant", ct, otherTenant, envelope.ErrCommitment},
		{"copied to another asset", ct, otherAsset, envelope.ErrCommitment},
		{"claimed by another service", ct, otherService, envelope.ErrCommitment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decrypt(tt.ct, tt.id)
			if !errors.Is(err, tt.want) {
				t.Fatalf("decrypt err = %v, want %v", err, tt.want)
			}
			// Random access refuses too (at open or when reading all).
			ra, err := envelope.NewReaderAt(ctx, bytes.NewReader(tt.ct), int64(len(tt.ct)), tt.id, u)
			if err == nil {
				_, err = io.ReadAll(io.NewSectionReader(ra, 0, int64(len(p))+1))
				if err == nil {
					_, err = ra.Size()
				}
			}
			if err == nil {
				t.Fatalf("random access accepted the tampered ciphertext")
			}
			// So does the broker path, for a prefix it can parse.
			if tt.want == envelope.ErrCommitment {
				prefix, err := envelope.ParsePrefix(tt.ct)
				if err != nil {
					t.Fatal(err)
				}
				seed, err := u.Unwrap(ctx, prefix.Header)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := prefix.MessageKey(seed, tt.id); !errors.Is(err, envelope.ErrCommitment) {
					t.Fatalf("MessageKey err = %v, want ErrCommitment", err)
				}
			}
		})
	}
	// The wrong seed fails the commitment before anything is decrypted.
	wrong := kms.NewSecret(bytes.Repeat([]byte{9}, 32))
	if _, err := envelope.NewReader(ctx, bytes.NewReader(ct), testID, unwrapper(wrong)); !errors.Is(err, envelope.ErrCommitment) {
		t.Fatalf("wrong seed: err = %v, want ErrCommitment", err)
	}
}

// TestVersionRelabelled: the two versions' contexts have different labels,
// so a ciphertext whose version byte is changed to the other version fails
// the commitment, by every read path.
func TestVersionRelabelled(t *testing.T) {
	ctx := context.Background()
	p := plaintext(cobblestone.ChunkSize + 5)
	for _, c := range []struct{ from, to uint8 }{{envelope.Version1, envelope.Version2}, {envelope.Version2, envelope.Version1}} {
		ct := encryptAs(t, c.from, p, testID)
		ct[4] = c.to
		if _, err := envelope.NewReader(ctx, bytes.NewReader(ct), testID, unwrapper(testSeed())); !errors.Is(err, envelope.ErrCommitment) {
			t.Errorf("v%d relabelled v%d: NewReader err = %v, want ErrCommitment", c.from, c.to, err)
		}
		if _, err := envelope.NewReaderAt(ctx, bytes.NewReader(ct), int64(len(ct)), testID, unwrapper(testSeed())); !errors.Is(err, envelope.ErrCommitment) {
			t.Errorf("v%d relabelled v%d: NewReaderAt err = %v, want ErrCommitment", c.from, c.to, err)
		}
		prefix, err := envelope.ParsePrefix(ct)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := prefix.MessageKey(testSeed(), testID); !errors.Is(err, envelope.ErrCommitment) {
			t.Errorf("v%d relabelled v%d: MessageKey err = %v, want ErrCommitment", c.from, c.to, err)
		}
	}
}

// rotatedHdr names another key and version and carries another wrap (of the
// same seed, in the rewrap tests).
var rotatedHdr = &envelope.Header{
	Version:     envelope.Version2,
	KeyURI:      "ocikms://ocid1.key.oc1.eu-frankfurt-1.aaaa/ocid1.vault.oc1.eu-frankfurt-1.bbbb",
	KeyVersion:  "ocid1.keyversion.oc1.eu-frankfurt-1.cccc",
	WrappedSeed: bytes.Repeat([]byte{0xCD}, 120),
}

// rewrap rewraps the ciphertext ct under rotatedHdr and returns the
// rewrapped object: newPrefix.Bytes() ‖ ct[oldPrefix.Len():].
func rewrap(t *testing.T, ct []byte) (*envelope.Prefix, []byte) {
	t.Helper()
	old, err := envelope.ParsePrefix(ct)
	if err != nil {
		t.Fatal(err)
	}
	oldRaw := bytes.Clone(old.RawHeader)
	np, err := old.Rewrap(rotatedHdr.KeyURI, rotatedHdr.KeyVersion, rotatedHdr.WrappedSeed)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if !bytes.Equal(old.RawHeader, oldRaw) || old.Header.KeyURI != testHdr.KeyURI {
		t.Fatal("Rewrap modified the old prefix")
	}
	if np.Header.Version != envelope.Version2 || np.Header.KeyURI != rotatedHdr.KeyURI || np.Header.KeyVersion != rotatedHdr.KeyVersion || !bytes.Equal(np.Header.WrappedSeed, rotatedHdr.WrappedSeed) {
		t.Fatalf("rewrapped header = %+v", np.Header)
	}
	if !bytes.Equal(np.Payload, old.Payload) {
		t.Fatal("Rewrap changed the salt or the commitment")
	}
	want, _ := rotatedHdr.MarshalBinary()
	if !bytes.Equal(np.RawHeader, want) || np.Len() != len(want)+envelope.PayloadPrefixLen {
		t.Fatalf("rewrapped raw header = %x, want %x", np.RawHeader, want)
	}
	out := append(np.Bytes(), ct[old.Len():]...)
	if parsed, err := envelope.ParsePrefix(out); err != nil || !bytes.Equal(parsed.Bytes(), np.Bytes()) {
		t.Fatalf("rewrapped object's prefix = %v, %v", parsed, err)
	}
	return np, out
}

// TestRewrap: a version-2 ciphertext rewrapped under another key (the same
// seed, wrapped differently) opens by every read path to the same plaintext,
// with the same per-asset key, and stays bound to its identity.
func TestRewrap(t *testing.T) {
	ctx := context.Background()
	p := plaintext(5*cobblestone.ChunkSize + 100)
	ct := encryptAs(t, envelope.Version2, p, testID)
	np, out := rewrap(t, ct)
	u := kmsUnwrapper(testSeed(), rotatedHdr)

	r, err := envelope.NewReader(ctx, bytes.NewReader(out), testID, u)
	if err != nil {
		t.Fatalf("NewReader(rewrapped) = %v", err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("rewrapped stream: %d bytes, %v", len(got), err)
	}
	if r.Header.KeyURI != rotatedHdr.KeyURI {
		t.Fatalf("rewrapped stream header names %s", r.Header.KeyURI)
	}
	ra, err := envelope.NewReaderAt(ctx, bytes.NewReader(out), int64(len(out)), testID, u)
	if err != nil {
		t.Fatalf("NewReaderAt(rewrapped) = %v", err)
	}
	checkRanges(t, ra, p)

	oldPrefix, _ := envelope.ParsePrefix(ct)
	oldKey, err := oldPrefix.MessageKey(testSeed(), testID)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := np.MessageKey(testSeed(), testID)
	if err != nil {
		t.Fatalf("MessageKey(rewrapped) = %v", err)
	}
	if !bytes.Equal(oldKey.Bytes(), newKey.Bytes()) {
		t.Fatal("a rewrap changed the per-asset key")
	}
	raw, err := envelope.NewRawReaderAt(bytes.NewReader(out), int64(len(out)), np, newKey)
	if err != nil {
		t.Fatal(err)
	}
	checkRanges(t, raw, p)

	// The old header's wrap no longer applies; the identity still binds.
	other := testID
	other.TenantID = "globex"
	if _, err := envelope.NewReader(ctx, bytes.NewReader(out), other, u); !errors.Is(err, envelope.ErrCommitment) {
		t.Fatalf("rewrapped, moved to another tenant: err = %v, want ErrCommitment", err)
	}
	// Rewrapping twice, back to the first key, restores the ciphertext.
	back, err := np.Rewrap(testHdr.KeyURI, testHdr.KeyVersion, testHdr.WrappedSeed)
	if err != nil || !bytes.Equal(append(back.Bytes(), out[np.Len():]...), ct) {
		t.Fatalf("rewrapping back does not restore the ciphertext: %v", err)
	}
}

// TestRewrapOtherSeed: a rewrap whose wrap unwraps to another seed (a wrap
// of the wrong seed, or a header pointing at another key) fails the
// commitment, by every read path.
func TestRewrapOtherSeed(t *testing.T) {
	ctx := context.Background()
	p := plaintext(cobblestone.ChunkSize + 1)
	ct := encryptAs(t, envelope.Version2, p, testID)
	np, out := rewrap(t, ct)
	otherSeed := kms.NewSecret(bytes.Repeat([]byte{0x42}, envelope.SeedSize))
	u := kmsUnwrapper(otherSeed, rotatedHdr)
	if _, err := envelope.NewReader(ctx, bytes.NewReader(out), testID, u); !errors.Is(err, envelope.ErrCommitment) {
		t.Errorf("NewReader err = %v, want ErrCommitment", err)
	}
	if _, err := envelope.NewReaderAt(ctx, bytes.NewReader(out), int64(len(out)), testID, u); !errors.Is(err, envelope.ErrCommitment) {
		t.Errorf("NewReaderAt err = %v, want ErrCommitment", err)
	}
	if _, err := np.MessageKey(otherSeed, testID); !errors.Is(err, envelope.ErrCommitment) {
		t.Errorf("MessageKey err = %v, want ErrCommitment", err)
	}
}

// TestRewrapV1: a version-1 header is bound into the key; Rewrap refuses.
func TestRewrapV1(t *testing.T) {
	ct := encryptAs(t, envelope.Version1, plaintext(10), testID)
	prefix, err := envelope.ParsePrefix(ct)
	if err != nil {
		t.Fatal(err)
	}
	np, err := prefix.Rewrap(rotatedHdr.KeyURI, rotatedHdr.KeyVersion, rotatedHdr.WrappedSeed)
	if !errors.Is(err, envelope.ErrRewrapUnsupported) || np != nil {
		t.Fatalf("Rewrap(v1) = %v, %v; want ErrRewrapUnsupported", np, err)
	}
}

// TestRewrapValidation: the new header's fields are checked like any
// header's, with the same typed errors.
func TestRewrapValidation(t *testing.T) {
	ct := encryptAs(t, envelope.Version2, plaintext(10), testID)
	prefix, err := envelope.ParsePrefix(ct)
	if err != nil {
		t.Fatal(err)
	}
	long := func(n int) string { return string(bytes.Repeat([]byte("a"), n)) }
	tests := []struct {
		name, uri, version string
		wrap               []byte
		field              string
	}{
		{"empty key URI", "", "1", []byte{1}, "key URI"},
		{"key URI too long", long(envelope.MaxKeyURILen + 1), "1", []byte{1}, "key URI"},
		{"key URI not UTF-8", "localkms:///\xff", "1", []byte{1}, "key URI"},
		{"empty key version", "x", "", []byte{1}, "key version"},
		{"key version too long", "x", long(envelope.MaxKeyVersionLen + 1), []byte{1}, "key version"},
		{"empty wrapped seed", "x", "1", nil, "wrapped seed"},
		{"wrapped seed too long", "x", "1", make([]byte, envelope.MaxWrappedSeedLen+1), "wrapped seed"},
	}
	for _, tt := range tests {
		np, err := prefix.Rewrap(tt.uri, tt.version, tt.wrap)
		var he *envelope.HeaderError
		if !errors.Is(err, envelope.ErrMalformedHeader) || !errors.As(err, &he) || he.Field != tt.field || np != nil {
			t.Errorf("%s: Rewrap = %v, %v; want a *HeaderError for %q matching ErrMalformedHeader", tt.name, np, err, tt.field)
		}
	}
	// The largest fields are accepted.
	np, err := prefix.Rewrap(long(envelope.MaxKeyURILen), long(envelope.MaxKeyVersionLen), make([]byte, envelope.MaxWrappedSeedLen))
	if err != nil || len(np.RawHeader) != envelope.MaxHeaderLen {
		t.Fatalf("Rewrap with maximal fields = %v", err)
	}
}

func TestUnwrapErrorsPropagate(t *testing.T) {
	ct := encrypt(t, plaintext(10), testID)
	sentinel := kms.ErrKeyDisabled
	u := envelope.UnwrapFunc(func(context.Context, *envelope.Header) (*kms.Secret, error) { return nil, sentinel })
	_, err := envelope.NewReader(context.Background(), bytes.NewReader(ct), testID, u)
	if !errors.Is(err, kms.ErrKeyDisabled) {
		t.Fatalf("err = %v, want the unwrapper's error", err)
	}
}

func TestParseHeaderBounds(t *testing.T) {
	good, err := testHdr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h, n, err := envelope.ParseHeader(append(bytes.Clone(good), "payload"...))
	if err != nil || n != len(good) || h.KeyURI != testHdr.KeyURI || h.KeyVersion != testHdr.KeyVersion {
		t.Fatalf("ParseHeader = %+v, %d, %v", h, n, err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":                  {},
		"short":                  good[:7],
		"length below minimum":   mutate(func(b []byte) []byte { b[6], b[7] = 0, 5; return b }),
		"length above maximum":   mutate(func(b []byte) []byte { b[6], b[7] = 0xff, 0xff; return b }),
		"uri length zero":        mutate(func(b []byte) []byte { b[8], b[9] = 0, 0; return b }),
		"uri length huge":        mutate(func(b []byte) []byte { b[8], b[9] = 0xff, 0xff; return b }),
		"uri runs past header":   mutate(func(b []byte) []byte { b[9] += 200; return b }),
		"declared longer":        mutate(func(b []byte) []byte { b[7]++; return b }),
		"declared shorter":       mutate(func(b []byte) []byte { b[7]--; return b }),
		"invalid utf8 uri":       mutate(func(b []byte) []byte { b[10] = 0xff; return b }),
		"unknown suite":          mutate(func(b []byte) []byte { b[5] = 2; return b }),
		"seed length field gone": good[:len(good)-len(testHdr.WrappedSeed)-1],
	}
	for name, b := range cases {
		if _, _, err := envelope.ParseHeader(b); err == nil {
			t.Errorf("%s: ParseHeader accepted %x", name, b)
		} else if !errors.Is(err, envelope.ErrMalformedHeader) && !errors.Is(err, envelope.ErrTruncated) && !errors.Is(err, envelope.ErrUnsupportedVersion) {
			t.Errorf("%s: err %v is not classified", name, err)
		}
	}
	for _, h := range []*envelope.Header{
		{KeyURI: "", KeyVersion: "1", WrappedSeed: []byte{1}},
		{KeyURI: "x", KeyVersion: "", WrappedSeed: []byte{1}},
		{KeyURI: "x", KeyVersion: "1"},
		{KeyURI: string(bytes.Repeat([]byte("a"), envelope.MaxKeyURILen+1)), KeyVersion: "1", WrappedSeed: []byte{1}},
		{KeyURI: "x", KeyVersion: "1", WrappedSeed: make([]byte, envelope.MaxWrappedSeedLen+1)},
	} {
		if _, err := h.MarshalBinary(); !errors.Is(err, envelope.ErrMalformedHeader) {
			t.Errorf("MarshalBinary(%d/%d/%d) err = %v", len(h.KeyURI), len(h.KeyVersion), len(h.WrappedSeed), err)
		}
	}
	// The largest header round-trips.
	big := &envelope.Header{
		KeyURI:      string(bytes.Repeat([]byte("u"), envelope.MaxKeyURILen)),
		KeyVersion:  string(bytes.Repeat([]byte("v"), envelope.MaxKeyVersionLen)),
		WrappedSeed: make([]byte, envelope.MaxWrappedSeedLen),
	}
	b, err := big.MarshalBinary()
	if err != nil || len(b) != envelope.MaxHeaderLen {
		t.Fatalf("max header: %d bytes, %v", len(b), err)
	}
	if _, _, err := envelope.ParseHeader(b); err != nil {
		t.Fatalf("max header does not parse: %v", err)
	}
}

// The known-answer files were written once by this code and must decrypt
// forever: a change that breaks one breaks every stored asset of its
// version.
type katFile struct {
	Version         int    `json:"version,omitempty"` // absent: 1
	TenantID        string `json:"tenant_id"`
	AssetID         string `json:"asset_id"`
	Service         string `json:"service"`
	KeyURI          string `json:"key_uri"`
	KeyVersion      string `json:"key_version"`
	WrappedSeedHex  string `json:"wrapped_seed_hex"`
	SeedHex         string `json:"seed_hex"`
	SaltHex         string `json:"salt_hex"`
	PlaintextLength int    `json:"plaintext_length"`
	PlaintextSHA256 string `json:"plaintext_sha256"`
	Ciphertext      string `json:"ciphertext_file"`
	CiphertextSHA   string `json:"ciphertext_sha256"`
	Note            string `json:"note"`
}

func TestKnownAnswer(t *testing.T) {
	for _, kat := range []katFile{{
		TenantID: "kat-tenant", AssetID: "kat-asset-0001", Service: "cloud_recording",
		KeyURI: "localkms:///keyward/kat/platform.key", KeyVersion: "1",
		WrappedSeedHex:  hex.EncodeToString([]byte("KAT wrapped seed: not a real KMS ciphertext")),
		SeedHex:         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		SaltHex:         "4b6579776172642d6b6e6f776e2d616e737765722d763100", // "Keyward-known-answer-v1\x00"
		PlaintextLength: 2*cobblestone.ChunkSize + 1000,
		Ciphertext:      "kat-v1.kwe",
		Note:            "plaintext byte i is byte(i*7 + i/251); see envelope_test.go",
	}, {
		Version:  envelope.Version2,
		TenantID: "kat-tenant", AssetID: "kat-asset-0002", Service: "cloud_recording",
		KeyURI: "localkms:///keyward/kat/platform.key", KeyVersion: "1",
		WrappedSeedHex:  hex.EncodeToString([]byte("KAT wrapped seed: not a real KMS ciphertext")),
		SeedHex:         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		SaltHex:         "4b6579776172642d6b6e6f776e2d616e737765722d763200", // "Keyward-known-answer-v2\x00"
		PlaintextLength: 2*cobblestone.ChunkSize + 1000,
		Ciphertext:      "kat-v2.kwe",
		Note:            "plaintext byte i is byte(i*7 + i/251); see envelope_test.go",
	}} {
		t.Run(kat.Ciphertext, func(t *testing.T) { knownAnswer(t, kat) })
	}
}

func knownAnswer(t *testing.T, kat katFile) {
	dir := "testdata"
	jsonName := strings.TrimSuffix(kat.Ciphertext, ".kwe") + ".json"
	version := uint8(envelope.Version1)
	if kat.Version != 0 {
		version = uint8(kat.Version)
	}
	p := plaintext(kat.PlaintextLength)
	sum := sha256.Sum256(p)
	kat.PlaintextSHA256 = hex.EncodeToString(sum[:])
	wrapped, _ := hex.DecodeString(kat.WrappedSeedHex)
	seedBytes, _ := hex.DecodeString(kat.SeedHex)
	salt, _ := hex.DecodeString(kat.SaltHex)
	hdr := &envelope.Header{Version: version, KeyURI: kat.KeyURI, KeyVersion: kat.KeyVersion, WrappedSeed: wrapped}
	id := envelope.Identity{TenantID: kat.TenantID, AssetID: kat.AssetID, Service: kat.Service}

	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, hdr, kms.NewSecret(bytes.Clone(seedBytes)), id, cobblestone.WithSalt(salt))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(p)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ctSum := sha256.Sum256(buf.Bytes())
	kat.CiphertextSHA = hex.EncodeToString(ctSum[:])
	if _, err := os.Stat(filepath.Join(dir, kat.Ciphertext)); *update && errors.Is(err, os.ErrNotExist) {
		// Only a missing file is written: a pinned one is never regenerated.
		os.WriteFile(filepath.Join(dir, kat.Ciphertext), buf.Bytes(), 0o644)
		j, _ := json.MarshalIndent(kat, "", "  ")
		os.WriteFile(filepath.Join(dir, jsonName), append(j, '\n'), 0o644)
	}

	pinned, err := os.ReadFile(filepath.Join(dir, kat.Ciphertext))
	if err != nil {
		t.Fatal(err)
	}
	var want katFile
	j, err := os.ReadFile(filepath.Join(dir, jsonName))
	if err != nil || json.Unmarshal(j, &want) != nil {
		t.Fatalf("reading %s: %v", jsonName, err)
	}
	if sum := sha256.Sum256(pinned); hex.EncodeToString(sum[:]) != want.CiphertextSHA {
		t.Fatalf("%s does not match the digest recorded in %s", kat.Ciphertext, jsonName)
	}
	if pinned[4] != version {
		t.Fatalf("%s has version byte %d, want %d", kat.Ciphertext, pinned[4], version)
	}
	// 1. The pinned ciphertext decrypts with the pinned seed, streaming and
	// by random access.
	seed, _ := hex.DecodeString(want.SeedHex)
	wantID := envelope.Identity{TenantID: want.TenantID, AssetID: want.AssetID, Service: want.Service}
	r, err := envelope.NewReader(context.Background(), bytes.NewReader(pinned), wantID, unwrapper(kms.NewSecret(bytes.Clone(seed))))
	if err != nil {
		t.Fatalf("pinned ciphertext does not open: %v", err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("pinned ciphertext does not decrypt: %v", err)
	}
	gotSum := sha256.Sum256(got)
	if len(got) != want.PlaintextLength || hex.EncodeToString(gotSum[:]) != want.PlaintextSHA256 {
		t.Fatalf("pinned ciphertext decrypts to %d bytes %x, want %d bytes %s", len(got), gotSum, want.PlaintextLength, want.PlaintextSHA256)
	}
	ra, err := envelope.NewReaderAt(context.Background(), bytes.NewReader(pinned), int64(len(pinned)), wantID, unwrapper(kms.NewSecret(bytes.Clone(seed))))
	if err != nil {
		t.Fatalf("pinned ciphertext does not open by random access: %v", err)
	}
	checkRanges(t, ra, got)
	// 2. Today's writer still produces the same bytes from the same inputs.
	if !bytes.Equal(buf.Bytes(), pinned) {
		t.Fatalf("encrypting the known-answer inputs no longer yields %s (format changed?)", kat.Ciphertext)
	}
}
