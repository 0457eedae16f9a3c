package envelope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/kms"
)

// Payload errors, from the Cobblestone layer. Callers classify with
// errors.Is.
var (
	// ErrCommitment: the seed does not open this ciphertext for this
	// identity — the wrong seed (including one unwrapped from a header that
	// names another key or carries a wrap of another seed), a ciphertext
	// moved to another asset, tenant or service, a version byte changed, or
	// (version 1) any modified header. Nothing was decrypted.
	ErrCommitment = cobblestone.ErrCommitment
	// ErrAuthentication: a chunk was modified, reordered or swapped.
	ErrAuthentication = cobblestone.ErrAuthentication
	// ErrTruncated: the ciphertext is cut short or has trailing data.
	ErrTruncated = cobblestone.ErrTruncated
	// ErrInvalidSeed: the seed is not 32 bytes.
	ErrInvalidSeed = cobblestone.ErrInvalidKeySize
)

// SeedSize is the size of a seed (the Cobblestone input key).
const SeedSize = cobblestone.KeySize

// PayloadPrefixLen is the salt and commitment at the start of the payload.
const PayloadPrefixLen = cobblestone.HeaderSize

// contextLabelV1 and contextLabelV2 domain-separate Keyward's contexts
// inside the Cobblestone key derivation. Because they differ, a ciphertext
// relabelled with the other version fails the commitment.
const (
	contextLabelV1 = "keyward.dev/envelope/v1"
	contextLabelV2 = "keyward.dev/envelope/v2"
)

// Identity is what a ciphertext is bound to besides its key: the tenant, the
// asset and the service. A ciphertext copied to another asset id, tenant or
// service fails to decrypt (ErrCommitment).
type Identity struct {
	TenantID string
	AssetID  string
	Service  string
}

func (id Identity) validate() error {
	if id.TenantID == "" || id.AssetID == "" || id.Service == "" {
		return errors.New("envelope: identity needs a tenant, an asset id and a service")
	}
	if len(id.TenantID) > 0xffff || len(id.AssetID) > 0xffff || len(id.Service) > 0xffff {
		return errors.New("envelope: identity field too long")
	}
	return nil
}

// Context is the Cobblestone context of a ciphertext whose encoded header
// is rawHeader, an unambiguous length-prefixed encoding (docs/envelope.md):
//
//   - version 1: the identity, keyURI and the SHA-256 of rawHeader, so any
//     header change fails the commitment;
//   - version 2: the identity only (keyURI and the rest of rawHeader are not
//     bound), so the header can be rewrapped; a header naming another key
//     or carrying a wrap of another seed still fails the commitment,
//     because the seed it yields is not the one the payload commits to.
//
// The version is rawHeader's version byte.
func Context(id Identity, keyURI string, rawHeader []byte) []byte {
	if len(rawHeader) > 4 && rawHeader[4] == Version2 {
		return appendIdentity(contextLabelV2, id, 0)
	}
	sum := sha256.Sum256(rawHeader)
	b := appendIdentity(contextLabelV1, id, 2+len(keyURI)+len(sum))
	b = binary.BigEndian.AppendUint16(b, uint16(len(keyURI)))
	b = append(b, keyURI...)
	return append(b, sum[:]...)
}

// appendIdentity encodes label, 0x00 and the length-prefixed identity, with
// room for extra more bytes.
func appendIdentity(label string, id Identity, extra int) []byte {
	b := make([]byte, 0, len(label)+1+6+len(id.TenantID)+len(id.AssetID)+len(id.Service)+extra)
	b = append(b, label...)
	b = append(b, 0)
	for _, f := range []string{id.TenantID, id.AssetID, id.Service} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// Writer encrypts one asset: it writes the header, then the Cobblestone
// payload as plaintext is written. Close must be called.
type Writer struct {
	cw        *cobblestone.Writer
	headerSum [32]byte
	headerLen int
}

// NewWriter writes h to w and returns a Writer that encrypts under seed for
// id. opts are passed to Cobblestone (cobblestone.WithConcurrency to seal
// chunks on several cores). The seed is not retained beyond the derived
// per-asset key.
func NewWriter(w io.Writer, h *Header, seed *kms.Secret, id Identity, opts ...cobblestone.Option) (*Writer, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	if seed == nil || seed.Len() != SeedSize {
		return nil, fmt.Errorf("%w: want a %d-byte seed", ErrInvalidSeed, SeedSize)
	}
	raw, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(raw); err != nil {
		return nil, fmt.Errorf("envelope: writing header: %w", err)
	}
	cw, err := cobblestone.NewWriter(w, seed.Bytes(), Context(id, h.KeyURI, raw), opts...)
	if err != nil {
		return nil, err
	}
	return &Writer{cw: cw, headerSum: sha256.Sum256(raw), headerLen: len(raw)}, nil
}

// Write encrypts p.
func (w *Writer) Write(p []byte) (int, error) { return w.cw.Write(p) }

// ReadFrom encrypts everything r yields.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) { return w.cw.ReadFrom(r) }

// Close seals the final chunk. It does not close the underlying writer.
func (w *Writer) Close() error { return w.cw.Close() }

// HeaderSHA256 is the digest of the header written, bound into the payload.
func (w *Writer) HeaderSHA256() [32]byte { return w.headerSum }

// HeaderLen is the length of the header written.
func (w *Writer) HeaderLen() int { return w.headerLen }

// CiphertextSize is the exact size of the ciphertext of a plaintextSize-byte
// asset under h.
func CiphertextSize(h *Header, plaintextSize int64) int64 {
	return int64(h.Len()) + cobblestone.CiphertextSize(plaintextSize)
}

// PlaintextSize is the plaintext size of a ciphertext of ciphertextSize bytes
// whose header is headerLen bytes long.
func PlaintextSize(headerLen int, ciphertextSize int64) (int64, error) {
	return cobblestone.PlaintextSize(ciphertextSize - int64(headerLen))
}

// Unwrapper turns a header's wrapped seed back into the seed, through the
// KMS (or a cache of it). The caller of the returned secret destroys it.
type Unwrapper interface {
	Unwrap(ctx context.Context, h *Header) (*kms.Secret, error)
}

// UnwrapFunc adapts a function to Unwrapper.
type UnwrapFunc func(ctx context.Context, h *Header) (*kms.Secret, error)

// Unwrap calls f.
func (f UnwrapFunc) Unwrap(ctx context.Context, h *Header) (*kms.Secret, error) { return f(ctx, h) }

// Reader decrypts a whole ciphertext as a stream.
type Reader struct {
	*cobblestone.Reader
	Header *Header
}

// NewReader reads the header from r, unwraps the seed and checks the key
// commitment for id before returning; Read then yields authenticated
// plaintext only.
func NewReader(ctx context.Context, r io.Reader, id Identity, u Unwrapper, opts ...cobblestone.Option) (*Reader, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	h, raw, seed, err := openHeader(ctx, r, u)
	if err != nil {
		return nil, err
	}
	defer seed.Destroy()
	cr, err := cobblestone.NewReader(r, seed.Bytes(), Context(id, h.KeyURI, raw), opts...)
	if err != nil {
		return nil, err
	}
	return &Reader{Reader: cr, Header: h}, nil
}

// openHeader reads the header from r and unwraps its seed.
func openHeader(ctx context.Context, r io.Reader, u Unwrapper) (*Header, []byte, *kms.Secret, error) {
	h, raw, err := ReadHeader(r)
	if err != nil {
		return nil, nil, nil, err
	}
	seed, err := u.Unwrap(ctx, h)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("envelope: unwrapping the seed: %w", err)
	}
	return h, raw, seed, nil
}

// ReaderAt decrypts byte ranges of a ciphertext held by an io.ReaderAt,
// reading only the chunks each range needs.
type ReaderAt struct {
	*cobblestone.ReaderAt
	Header    *Header
	HeaderLen int
}

// NewReaderAt reads the header of the size-byte ciphertext in r, unwraps the
// seed, and checks the commitment for id.
func NewReaderAt(ctx context.Context, r io.ReaderAt, size int64, id Identity, u Unwrapper, opts ...cobblestone.Option) (*ReaderAt, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	h, raw, seed, err := openHeader(ctx, io.NewSectionReader(r, 0, size), u)
	if err != nil {
		return nil, err
	}
	defer seed.Destroy()
	n := int64(len(raw))
	cr, err := cobblestone.NewReaderAt(io.NewSectionReader(r, n, size-n), size-n, seed.Bytes(), Context(id, h.KeyURI, raw), opts...)
	if err != nil {
		return nil, err
	}
	return &ReaderAt{ReaderAt: cr, Header: h, HeaderLen: len(raw)}, nil
}

// Prefix is the start of a ciphertext a key broker needs: the header and the
// payload's salt and commitment.
type Prefix struct {
	Header    *Header
	RawHeader []byte
	Payload   []byte // salt || commitment, PayloadPrefixLen bytes
}

// Len is the number of ciphertext bytes the prefix covers: the body (the
// chunks) starts at this offset.
func (p *Prefix) Len() int { return len(p.RawHeader) + len(p.Payload) }

// Bytes is the prefix as it is stored, RawHeader ‖ Payload, in a fresh
// slice.
func (p *Prefix) Bytes() []byte {
	b := make([]byte, 0, p.Len())
	return append(append(b, p.RawHeader...), p.Payload...)
}

// Rewrap returns a new prefix whose header names keyURI and keyVersion and
// carries wrappedSeed (the same seed wrapped under another key), with the
// same salt and commitment. p is not modified.
//
// Only a version-2 prefix can be rewrapped; for a version-1 prefix the error
// matches ErrRewrapUnsupported (its header is bound into its key: rotate it
// by re-encrypting the content). Invalid fields are *HeaderError matching
// ErrMalformedHeader.
//
// The body is byte-identical after a rewrap, so the rewrapped object is
//
//	newPrefix.Bytes() ‖ oldObject[oldPrefix.Len():]
//
// It opens only if wrappedSeed unwraps to the seed the payload was
// encrypted under; anything else fails with ErrCommitment.
func (p *Prefix) Rewrap(keyURI, keyVersion string, wrappedSeed []byte) (*Prefix, error) {
	if v := p.version(); v != Version2 {
		return nil, fmt.Errorf("%w (prefix is version %d)", ErrRewrapUnsupported, v)
	}
	if len(p.Payload) != PayloadPrefixLen {
		return nil, fmt.Errorf("%w: payload prefix is %d bytes, want %d", ErrTruncated, len(p.Payload), PayloadPrefixLen)
	}
	h := &Header{Version: Version2, KeyURI: keyURI, KeyVersion: keyVersion, WrappedSeed: bytes.Clone(wrappedSeed)}
	raw, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	payload := bytes.Clone(p.Payload)
	return &Prefix{Header: h, RawHeader: raw, Payload: payload}, nil
}

// version is the version of the encoded header (what the payload is bound
// to), falling back to Header.Version.
func (p *Prefix) version() uint8 {
	if len(p.RawHeader) > 4 {
		return p.RawHeader[4]
	}
	if p.Header != nil {
		return p.Header.version()
	}
	return 0
}

// ParsePrefix parses the header and payload prefix at the start of b.
func ParsePrefix(b []byte) (*Prefix, error) {
	h, n, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if len(b) < n+PayloadPrefixLen {
		return nil, fmt.Errorf("%w: %d bytes, want the %d-byte header and the %d-byte payload prefix", ErrTruncated, len(b), n, PayloadPrefixLen)
	}
	return &Prefix{Header: h, RawHeader: b[:n:n], Payload: b[n : n+PayloadPrefixLen : n+PayloadPrefixLen]}, nil
}

// ReadPrefix reads the prefix of a ciphertext from r.
func ReadPrefix(r io.ReaderAt, size int64) (*Prefix, error) {
	h, raw, err := ReadHeader(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, err
	}
	payload := make([]byte, PayloadPrefixLen)
	if _, err := r.ReadAt(payload, int64(len(raw))); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: ciphertext ends inside the payload prefix", ErrTruncated)
		}
		return nil, fmt.Errorf("envelope: reading payload prefix: %w", err)
	}
	return &Prefix{Header: h, RawHeader: raw, Payload: payload}, nil
}

// MessageKey derives the per-asset key from the seed, checking the key
// commitment for id: what a key broker hands to a reader (sealed), so the
// reader can decrypt this one asset without ever holding the seed.
func (p *Prefix) MessageKey(seed *kms.Secret, id Identity) (*cobblestone.MessageKey, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	if seed == nil || seed.Len() != SeedSize {
		return nil, fmt.Errorf("%w: want a %d-byte seed", ErrInvalidSeed, SeedSize)
	}
	return cobblestone.OpenHeader(seed.Bytes(), Context(id, p.Header.KeyURI, p.RawHeader), p.Payload)
}

// NewRawReaderAt decrypts ranges of the size-byte ciphertext in r with a
// message key obtained from a broker for the prefix p.
func NewRawReaderAt(r io.ReaderAt, size int64, p *Prefix, key *cobblestone.MessageKey, opts ...cobblestone.Option) (*cobblestone.ReaderAt, error) {
	off := int64(p.Len())
	if size < off {
		return nil, fmt.Errorf("%w: ciphertext shorter than its prefix", ErrTruncated)
	}
	return cobblestone.NewRawReaderAt(io.NewSectionReader(r, off, size-off), size-off, key, opts...)
}
