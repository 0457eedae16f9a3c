package kms

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Encryption context keys written by NewEncryptionContext.
const (
	ContextKeyTenant  = "keyward:tenant"
	ContextKeyPurpose = "keyward:purpose"
)

// Purposes named in the encryption context (ContextKeyPurpose).
const (
	PurposeAssetSeed = "asset-seed" // a seed that encrypts customer assets
	PurposeProbe     = "key-probe"  // a health probe of a key (no data behind it)
)

// Bounds checked by EncryptionContext.Validate. They are well inside every
// provider's limits (AWS KMS allows 8192 characters of context in total).
const (
	MaxContextPairs    = 16   // pairs in one context
	MaxContextKeyLen   = 256  // bytes in one key
	MaxContextValueLen = 1024 // bytes in one value
	MaxContextLen      = 4096 // bytes of Canonical() in total
)

// EncryptionContext is the non-secret, authenticated context of a key wrap:
// a wrapped key only unwraps with the context it was wrapped with, and the
// context is written to the customer's KMS audit log (AWS, OCI). It names the
// tenant and purpose; never put secrets in it.
type EncryptionContext map[string]string

// NewEncryptionContext returns the context Keyward uses for tenantID and
// purpose (PurposeAssetSeed, PurposeProbe).
func NewEncryptionContext(tenantID, purpose string) EncryptionContext {
	return EncryptionContext{ContextKeyTenant: tenantID, ContextKeyPurpose: purpose}
}

// Tenant returns the tenant named in the context ("" if none).
func (ec EncryptionContext) Tenant() string { return ec[ContextKeyTenant] }

// Purpose returns the purpose named in the context ("" if none).
func (ec EncryptionContext) Purpose() string { return ec[ContextKeyPurpose] }

// Clone returns a copy of ec (nil for nil).
func (ec EncryptionContext) Clone() EncryptionContext {
	if ec == nil {
		return nil
	}
	c := make(EncryptionContext, len(ec))
	for k, v := range ec {
		c[k] = v
	}
	return c
}

// Canonical returns an unambiguous encoding of ec for use as AAD or as a
// cache key: the number of pairs, then each pair in ascending byte order of
// keys as length-prefixed key and value, every length a 4-byte big-endian
// integer:
//
//	u32(n) || u32(len k1) || k1 || u32(len v1) || v1 || ... || u32(len kn) || kn || u32(len vn) || vn
//
// Two different contexts never encode equal; nil and empty encode equal
// (four zero bytes).
func (ec EncryptionContext) Canonical() []byte {
	keys := make([]string, 0, len(ec))
	size := 4
	for k, v := range ec {
		keys = append(keys, k)
		size += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		v := ec[k]
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// ErrInvalidContext is matched (errors.Is) by every error of Validate.
var ErrInvalidContext = errors.New("invalid encryption context")

// Validate checks that ec can be sent to every provider: at most
// MaxContextPairs pairs; keys non-empty and at most MaxContextKeyLen bytes;
// values non-empty (an empty tenant or purpose is always a bug) and at most
// MaxContextValueLen bytes; all valid UTF-8 without NUL; Canonical() at most
// MaxContextLen bytes. An empty context is valid. Errors match
// ErrInvalidContext and name the offending key (context keys and values are
// not secret).
func (ec EncryptionContext) Validate() error {
	if len(ec) > MaxContextPairs {
		return fmt.Errorf("%w: %d pairs, at most %d allowed", ErrInvalidContext, len(ec), MaxContextPairs)
	}
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	slices.Sort(keys) // report problems deterministically
	total := 4
	for _, k := range keys {
		v := ec[k]
		total += 8 + len(k) + len(v)
		switch {
		case k == "":
			return fmt.Errorf("%w: empty key", ErrInvalidContext)
		case len(k) > MaxContextKeyLen:
			return fmt.Errorf("%w: key %.32q... is %d bytes, at most %d allowed", ErrInvalidContext, k, len(k), MaxContextKeyLen)
		case !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0:
			return fmt.Errorf("%w: key %.64q is not UTF-8 text without NUL", ErrInvalidContext, k)
		case v == "":
			return fmt.Errorf("%w: key %q has an empty value", ErrInvalidContext, k)
		case len(v) > MaxContextValueLen:
			return fmt.Errorf("%w: value of key %q is %d bytes, at most %d allowed", ErrInvalidContext, k, len(v), MaxContextValueLen)
		case !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0:
			return fmt.Errorf("%w: value of key %q is not UTF-8 text without NUL", ErrInvalidContext, k)
		}
	}
	if total > MaxContextLen {
		return fmt.Errorf("%w: %d bytes encoded, at most %d allowed", ErrInvalidContext, total, MaxContextLen)
	}
	return nil
}
