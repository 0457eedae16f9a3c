package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Format constants of envelope versions 1 and 2 (docs/envelope.md, byte by
// byte). Both versions have the same byte layout; they differ only in the
// Cobblestone context (Context).
const (
	// Magic starts every Keyward ciphertext: "KWRD".
	Magic = "KWRD"
	// Version1 binds the key URI and the SHA-256 of the whole header into
	// the payload's key: any header change, a rewrap included, fails the
	// commitment. Still read, and written only on request
	// (Header.Version = Version1).
	Version1 = 1
	// Version2 binds only the identity (tenant, asset, service); the key
	// URI, key version and wrapped seed are routing data the key commitment
	// checks (the wrong seed fails it), so a header can be rewrapped under
	// a new key without re-encrypting the content (Prefix.Rewrap).
	Version2 = 2
	// CurrentVersion is the version written when Header.Version is zero.
	CurrentVersion = Version2
	// SuiteCobblestone256 is the only payload suite of versions 1 and 2:
	// c2sp.org/chunked-encryption with HKDF-SHA-512 and AES-256-GCM.
	SuiteCobblestone256 = 1

	// fixedLen is magic, version, suite and the header length field.
	fixedLen = 4 + 1 + 1 + 2
	// MinHeaderLen is the smallest valid header (one-byte key URI, key
	// version and wrapped seed).
	MinHeaderLen = fixedLen + 2 + 1 + 1 + 1 + 2 + 1
	// MaxKeyURILen, MaxKeyVersionLen and MaxWrappedSeedLen bound the
	// variable fields; a header claiming more is refused before anything
	// is allocated.
	MaxKeyURILen      = 1024
	MaxKeyVersionLen  = 255
	MaxWrappedSeedLen = 4096
	// MaxHeaderLen is the largest valid header.
	MaxHeaderLen = fixedLen + 2 + MaxKeyURILen + 1 + MaxKeyVersionLen + 2 + MaxWrappedSeedLen
)

// Sentinel errors of header parsing. Payload errors are those of
// cobblestone, re-exported in envelope.go.
var (
	// ErrMalformedHeader: the bytes are not a valid header. The error is a
	// *HeaderError naming the field.
	ErrMalformedHeader = errors.New("envelope: malformed header")
	// ErrUnsupportedVersion: a header of a version or suite this build does
	// not read (written by a newer Keyward).
	ErrUnsupportedVersion = errors.New("envelope: unsupported version")
	// ErrRewrapUnsupported: Prefix.Rewrap was asked to rewrap a version-1
	// ciphertext, whose header is bound into its key: such an asset is
	// rotated by re-encrypting its content.
	ErrRewrapUnsupported = errors.New("envelope: rewrap unsupported: version 1 assets need content re-encryption")
)

// HeaderError names the header field that is wrong.
type HeaderError struct {
	Field   string
	Problem string
	err     error // ErrMalformedHeader, ErrUnsupportedVersion or ErrTruncated
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("envelope header: %s %s", e.Field, e.Problem)
}

func (e *HeaderError) Unwrap() error { return e.err }

func malformed(field, problem string) error {
	return &HeaderError{Field: field, Problem: problem, err: ErrMalformedHeader}
}

// Header is Keyward's header in front of every ciphertext: which key wrapped
// the seed, and the wrapped seed. It holds no secret.
type Header struct {
	// Version is the format version (Version1 or Version2). ParseHeader
	// and ReadHeader fill it in; zero means CurrentVersion when writing.
	Version uint8
	// KeyURI names the KMS key that wrapped the seed (canonical form).
	KeyURI string
	// KeyVersion is the provider key version that wrapped it.
	KeyVersion string
	// WrappedSeed is the KMS ciphertext of the 32-byte seed.
	WrappedSeed []byte
}

// Len is the encoded length of h.
func (h *Header) Len() int {
	return fixedLen + 2 + len(h.KeyURI) + 1 + len(h.KeyVersion) + 2 + len(h.WrappedSeed)
}

// version is the version h is written as.
func (h *Header) version() uint8 {
	if h.Version == 0 {
		return CurrentVersion
	}
	return h.Version
}

func supportedVersion(v uint8) bool { return v == Version1 || v == Version2 }

// Validate checks the version and the field bounds.
func (h *Header) Validate() error {
	var errs []error
	if v := h.version(); !supportedVersion(v) {
		errs = append(errs, &HeaderError{Field: "version", Problem: fmt.Sprintf("%d is not supported (this build writes versions %d and %d)", v, Version1, Version2), err: ErrUnsupportedVersion})
	}
	check := func(field string, n, max int) {
		if n == 0 || n > max {
			errs = append(errs, malformed(field, fmt.Sprintf("is %d bytes, want 1..%d", n, max)))
		}
	}
	check("key URI", len(h.KeyURI), MaxKeyURILen)
	check("key version", len(h.KeyVersion), MaxKeyVersionLen)
	check("wrapped seed", len(h.WrappedSeed), MaxWrappedSeedLen)
	if !utf8.ValidString(h.KeyURI) {
		errs = append(errs, malformed("key URI", "is not UTF-8"))
	}
	return errors.Join(errs...)
}

// MarshalBinary encodes the header, as CurrentVersion if h.Version is zero.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, h.Len())
	b = append(b, Magic...)
	b = append(b, h.version(), SuiteCobblestone256)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Len()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.KeyURI)))
	b = append(b, h.KeyURI...)
	b = append(b, byte(len(h.KeyVersion)))
	b = append(b, h.KeyVersion...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.WrappedSeed)))
	b = append(b, h.WrappedSeed...)
	return b, nil
}

// HeaderLen reads the total header length from the first 8 bytes of a
// ciphertext (magic, version, suite, length), validating them. It lets a
// reader fetch exactly the header with one more read.
func HeaderLen(prefix []byte) (int, error) {
	if len(prefix) < fixedLen {
		return 0, &HeaderError{Field: "header", Problem: fmt.Sprintf("is cut short: %d of at least %d bytes", len(prefix), fixedLen), err: ErrTruncated}
	}
	if string(prefix[:4]) != Magic {
		return 0, malformed("magic", "is not \"KWRD\": not a Keyward ciphertext")
	}
	if !supportedVersion(prefix[4]) {
		return 0, &HeaderError{Field: "version", Problem: fmt.Sprintf("%d is not supported (this build reads versions %d and %d)", prefix[4], Version1, Version2), err: ErrUnsupportedVersion}
	}
	if prefix[5] != SuiteCobblestone256 {
		return 0, &HeaderError{Field: "suite", Problem: fmt.Sprintf("%d is not supported (this build reads suite %d)", prefix[5], SuiteCobblestone256), err: ErrUnsupportedVersion}
	}
	n := int(binary.BigEndian.Uint16(prefix[6:8]))
	if n < MinHeaderLen || n > MaxHeaderLen {
		return 0, malformed("header length", fmt.Sprintf("%d is outside %d..%d", n, MinHeaderLen, MaxHeaderLen))
	}
	return n, nil
}

// ParseHeader decodes the header at the start of b and returns it with its
// encoded length. b may continue with the payload. Every length is checked
// against its bound and against the header length before use.
func ParseHeader(b []byte) (*Header, int, error) {
	n, err := HeaderLen(b)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < n {
		return nil, 0, &HeaderError{Field: "header", Problem: fmt.Sprintf("is cut short: %d of %d bytes", len(b), n), err: ErrTruncated}
	}
	p := b[fixedLen:n]
	field := func(name string, lenBytes, max int) ([]byte, error) {
		if len(p) < lenBytes {
			return nil, malformed(name+" length", "runs past the header")
		}
		var l int
		if lenBytes == 1 {
			l = int(p[0])
		} else {
			l = int(binary.BigEndian.Uint16(p))
		}
		p = p[lenBytes:]
		if l == 0 || l > max {
			return nil, malformed(name, fmt.Sprintf("length %d is outside 1..%d", l, max))
		}
		if l > len(p) {
			return nil, malformed(name, "runs past the header")
		}
		v := p[:l]
		p = p[l:]
		return v, nil
	}
	uri, err := field("key URI", 2, MaxKeyURILen)
	if err != nil {
		return nil, 0, err
	}
	ver, err := field("key version", 1, MaxKeyVersionLen)
	if err != nil {
		return nil, 0, err
	}
	seed, err := field("wrapped seed", 2, MaxWrappedSeedLen)
	if err != nil {
		return nil, 0, err
	}
	if len(p) != 0 {
		return nil, 0, malformed("header", fmt.Sprintf("has %d unexpected trailing bytes", len(p)))
	}
	if !utf8.Valid(uri) {
		return nil, 0, malformed("key URI", "is not UTF-8")
	}
	h := &Header{Version: b[4], KeyURI: string(uri), KeyVersion: string(ver), WrappedSeed: append([]byte(nil), seed...)}
	return h, n, nil
}

// ReadHeader reads exactly one header from r and returns it with its raw
// bytes (whose digest a version-1 payload binds into its key derivation).
func ReadHeader(r io.Reader) (*Header, []byte, error) {
	raw := make([]byte, fixedLen, MaxHeaderLen)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, readErr(err)
	}
	n, err := HeaderLen(raw)
	if err != nil {
		return nil, nil, err
	}
	raw = raw[:n]
	if _, err := io.ReadFull(r, raw[fixedLen:]); err != nil {
		return nil, nil, readErr(err)
	}
	h, _, err := ParseHeader(raw)
	if err != nil {
		return nil, nil, err
	}
	return h, raw, nil
}

func readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &HeaderError{Field: "header", Problem: "is cut short", err: ErrTruncated}
	}
	return fmt.Errorf("envelope: reading header: %w", err)
}
