package kms

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// redacted is what every printing, logging and marshalling path of a Secret
// shows instead of its bytes.
const redacted = "kms.Secret(redacted)"

// ErrSecretNotSerializable is returned by Secret.MarshalJSON and
// Secret.MarshalText: a secret is never serialised by accident.
var ErrSecretNotSerializable = errors.New("kms: a Secret cannot be marshalled; copy Bytes() explicitly where that is intended")

// Secret holds key bytes: a data key, a seed or a plaintext to wrap. It
// cannot be printed (fmt, %v/%+v/%#v/%s/%x/%q and every other verb), logged
// (slog) or marshalled (encoding/json, encoding/text) by accident: all show
// "kms.Secret(redacted)" or fail. Destroy zeroes the bytes.
//
// Pass it as *Secret. The methods are nil-safe (a nil *Secret is empty and
// prints redacted too); a Secret value copied out of its pointer prints as a
// struct holding an address, never the bytes. Copies share the bytes; Clone
// makes an independent copy. A Secret is not synchronised: Destroy must not
// run concurrently with other use of the same Secret.
type Secret struct {
	// k is a pointer to a pointer: where fmt cannot call the methods below
	// (a Secret value, or one in an unexported field) it prints the fields
	// by reflection, and for a bad verb it expands a pointer to a struct
	// one level deep. A pointer to a pointer is only ever printed as an
	// address.
	k **secretBytes
}

type secretBytes struct{ b []byte }

// NewSecret returns a Secret holding b. It takes ownership of b: the caller
// must not use or modify b afterwards (Destroy zeroes it).
func NewSecret(b []byte) *Secret {
	sb := &secretBytes{b: b}
	return &Secret{k: &sb}
}

// Bytes returns the live key bytes, not a copy: do not retain or modify them
// beyond the Secret's life, since Destroy zeroes them in place. It returns
// nil for a nil, zero or destroyed Secret.
func (s *Secret) Bytes() []byte {
	if s == nil || s.k == nil || *s.k == nil {
		return nil
	}
	return (*s.k).b
}

// Len returns the number of key bytes (0 once destroyed).
func (s *Secret) Len() int { return len(s.Bytes()) }

// Clone returns an independent copy that must be destroyed separately.
func (s *Secret) Clone() *Secret {
	b := s.Bytes()
	if b == nil {
		return NewSecret(nil)
	}
	return NewSecret(append(make([]byte, 0, len(b)), b...))
}

// Equal reports in constant time (for equal lengths) whether s and o hold the
// same bytes.
func (s *Secret) Equal(o *Secret) bool {
	return subtle.ConstantTimeCompare(s.Bytes(), o.Bytes()) == 1
}

// Destroy zeroes the key bytes and empties the Secret. It is safe to call
// more than once and on nil.
func (s *Secret) Destroy() {
	if s == nil || s.k == nil || *s.k == nil {
		return
	}
	clear((*s.k).b)
	(*s.k).b = nil
}

// String implements fmt.Stringer without revealing the bytes.
func (*Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v) without revealing the bytes.
func (*Secret) GoString() string { return redacted }

// Format implements fmt.Formatter: every verb prints "kms.Secret(redacted)".
func (*Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer without revealing the bytes.
func (*Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON refuses: it always returns ErrSecretNotSerializable.
func (*Secret) MarshalJSON() ([]byte, error) { return nil, ErrSecretNotSerializable }

// MarshalText refuses: it always returns ErrSecretNotSerializable.
func (*Secret) MarshalText() ([]byte, error) { return nil, ErrSecretNotSerializable }
