package envelope_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/kms"
)

var update = flag.Bool("update", false, "regenerate the known-answer file (never needed: it must decrypt forever)")

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

// seedFor returns an Unwrapper that hands out seed for exactly header h.
func unwrapper(seed *kms.Secret) envelope.Unwrapper {
	return envelope.UnwrapFunc(func(_ context.Context, h *envelope.Header) (*kms.Secret, error) {
		return seed.Clone(), nil
	})
}

func plaintext(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func encrypt(t testing.TB, p []byte, id envelope.Identity, opts ...cobblestone.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, testHdr, testSeed(), id, opts...)
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
	for _, n := range []int{0, 1, cobblestone.ChunkSize - 1, cobblestone.ChunkSize, cobblestone.ChunkSize + 1, 3*cobblestone.ChunkSize + 17} {
		for _, conc := range []int{1, 4} {
			p := plaintext(n)
			ct := encrypt(t, p, testID, cobblestone.WithConcurrency(conc))
			r, err := envelope.NewReader(ctx, bytes.NewReader(ct), testID, unwrapper(testSeed()))
			if err != nil {
				t.Fatalf("n=%d: NewReader: %v", n, err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, p) {
				t.Fatalf("n=%d conc=%d: stream round trip: %d bytes, err %v", n, conc, len(got), err)
			}
			if r.Header.KeyURI != testHdr.KeyURI || !bytes.Equal(r.Header.WrappedSeed, testHdr.WrappedSeed) {
				t.Fatalf("header round trip: %+v", r.Header)
			}
			size, err := envelope.PlaintextSize(testHdr.Len(), int64(len(ct)))
			if err != nil || size != int64(n) {
				t.Fatalf("PlaintextSize = %d, %v; want %d", size, err, n)
			}
		}
	}
}

func TestReaderAtRanges(t *testing.T) {
	ctx := context.Background()
	const c = cobblestone.ChunkSize
	p := plaintext(5*c + 100)
	ct := encrypt(t, p, testID)
	ra, err := envelope.NewReaderAt(ctx, bytes.NewReader(ct), int64(len(ct)), testID, unwrapper(testSeed()))
	if err != nil {
		t.Fatal(err)
	}
	if size, err := ra.Size(); err != nil || size != int64(len(p)) {
		t.Fatalf("Size = %d, %v", size, err)
	}
	for _, r := range [][2]int{{0, 1}, {c - 1, c + 1}, {c, 2 * c}, {2*c - 5, 4*c + 5}, {len(p) - 1, len(p)}, {0, len(p)}, {5 * c, 5*c + 100}} {
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
	ct := encrypt(t, p, testID)
	prefix, err := envelope.ReadPrefix(bytes.NewReader(ct), int64(len(ct)))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := envelope.ParsePrefix(ct[:prefix.Len()])
	if err != nil || parsed.Len() != prefix.Len() {
		t.Fatalf("ParsePrefix = %v, %v", parsed, err)
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
		t.Fatalf("raw read: %d bytes, %v", len(got), err)
	}
	// The broker refuses to derive a key for another identity.
	other := testID
	other.AssetID = "rec-2"
	if _, err := prefix.MessageKey(testSeed(), other); !errors.Is(err, envelope.ErrCommitment) {
		t.Fatalf("MessageKey for another asset = %v, want ErrCommitment", err)
	}
}

func TestTampering(t *testing.T) {
	ctx := context.Background()
	const c = cobblestone.ChunkSize
	p := plaintext(3*c + 10)
	ct := encrypt(t, p, testID)
	hlen := testHdr.Len()
	payload := hlen + cobblestone.HeaderSize
	ec := cobblestone.EncryptedChunkSize

	decrypt := func(ct []byte, id envelope.Identity) error {
		r, err := envelope.NewReader(ctx, bytes.NewReader(ct), id, unwrapper(testSeed()))
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
			ra, err := envelope.NewReaderAt(ctx, bytes.NewReader(tt.ct), int64(len(tt.ct)), tt.id, unwrapper(testSeed()))
			if err == nil {
				_, err = io.ReadAll(io.NewSectionReader(ra, 0, int64(len(p))+1))
				if err == nil {
					_, err = ra.Size()
				}
			}
			if err == nil {
				t.Fatalf("random access accepted the tampered ciphertext")
			}
		})
	}
	// The wrong seed fails the commitment before anything is decrypted.
	wrong := kms.NewSecret(bytes.Repeat([]byte{9}, 32))
	if _, err := envelope.NewReader(ctx, bytes.NewReader(ct), testID, unwrapper(wrong)); !errors.Is(err, envelope.ErrCommitment) {
		t.Fatalf("wrong seed: err = %v, want ErrCommitment", err)
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

// The known-answer file was written once by this code and must decrypt
// forever: a change that breaks it breaks every stored asset.
type katFile struct {
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
	dir := "testdata"
	kat := katFile{
		TenantID: "kat-tenant", AssetID: "kat-asset-0001", Service: "cloud_recording",
		KeyURI: "localkms:///keyward/kat/platform.key", KeyVersion: "1",
		WrappedSeedHex:  hex.EncodeToString([]byte("KAT wrapped seed: not a real KMS ciphertext")),
		SeedHex:         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		SaltHex:         "4b6579776172642d6b6e6f776e2d616e737765722d763100",
		PlaintextLength: 2*cobblestone.ChunkSize + 1000,
		Ciphertext:      "kat-v1.kwe",
		Note:            "plaintext byte i is byte(i*7 + i/251); see envelope_test.go",
	}
	p := plaintext(kat.PlaintextLength)
	sum := sha256.Sum256(p)
	kat.PlaintextSHA256 = hex.EncodeToString(sum[:])
	wrapped, _ := hex.DecodeString(kat.WrappedSeedHex)
	seedBytes, _ := hex.DecodeString(kat.SeedHex)
	salt, _ := hex.DecodeString(kat.SaltHex)
	hdr := &envelope.Header{KeyURI: kat.KeyURI, KeyVersion: kat.KeyVersion, WrappedSeed: wrapped}
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
	if *update {
		os.WriteFile(filepath.Join(dir, kat.Ciphertext), buf.Bytes(), 0o644)
		j, _ := json.MarshalIndent(kat, "", "  ")
		os.WriteFile(filepath.Join(dir, "kat-v1.json"), append(j, '\n'), 0o644)
	}

	pinned, err := os.ReadFile(filepath.Join(dir, "kat-v1.kwe"))
	if err != nil {
		t.Fatal(err)
	}
	var want katFile
	j, err := os.ReadFile(filepath.Join(dir, "kat-v1.json"))
	if err != nil || json.Unmarshal(j, &want) != nil {
		t.Fatalf("reading kat-v1.json: %v", err)
	}
	if sum := sha256.Sum256(pinned); hex.EncodeToString(sum[:]) != want.CiphertextSHA {
		t.Fatalf("kat-v1.kwe does not match the digest recorded in kat-v1.json")
	}
	// 1. The pinned ciphertext decrypts with the pinned seed.
	seed, _ := hex.DecodeString(want.SeedHex)
	r, err := envelope.NewReader(context.Background(), bytes.NewReader(pinned),
		envelope.Identity{TenantID: want.TenantID, AssetID: want.AssetID, Service: want.Service},
		unwrapper(kms.NewSecret(seed)))
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
	// 2. Today's writer still produces the same bytes from the same inputs.
	if !bytes.Equal(buf.Bytes(), pinned) {
		t.Fatalf("encrypting the known-answer inputs no longer yields kat-v1.kwe (format changed?)")
	}
}
