package events

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of the identifiers in the contract.
const (
	MaxTenantIDLen = 63
	MaxAssetIDLen  = 128
)

// ErrInvalid is matched (errors.Is) by every validation error of this
// package: a malformed identifier, a missing or ill-formed event field.
var ErrInvalid = errors.New("invalid")

// FieldError names one field of a document, what is wrong with it and how to
// fix it. Validation functions join several FieldErrors with errors.Join so
// a producer sees every problem at once.
type FieldError struct {
	Field   string // JSON path of the field, e.g. "content.object"
	Problem string // what is wrong, e.g. "is required"
	Fix     string // what to do instead; may be empty
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Field)
	b.WriteByte(' ')
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString(": ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, problem, fix string) *FieldError {
	return &FieldError{Field: field, Problem: problem, Fix: fix}
}

// ValidateTenantID checks a tenant id against [a-z0-9][a-z0-9-]{0,62}. A valid
// tenant id is a single safe subject token: no '.', '*', '>' or whitespace.
func ValidateTenantID(id string) error { return validateTenantField("tenant_id", id) }

func validateTenantField(field, id string) error {
	const fix = "use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
	switch {
	case id == "":
		return fieldErr(field, "is required", fix)
	case len(id) > MaxTenantIDLen:
		return fieldErr(field, fmt.Sprintf("is %d characters long, more than %d", len(id), MaxTenantIDLen), fix)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (c == '-' && i > 0)
		if !ok {
			return fieldErr(field, fmt.Sprintf("has %s at position %d", describeByte(c), i), fix)
		}
	}
	return nil
}

// ValidateAssetID checks an asset id against [A-Za-z0-9][A-Za-z0-9._-]{0,127}.
func ValidateAssetID(id string) error { return validateAssetField("asset_id", id) }

func validateAssetField(field, id string) error {
	const fix = "use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
	switch {
	case id == "":
		return fieldErr(field, "is required", fix)
	case len(id) > MaxAssetIDLen:
		return fieldErr(field, fmt.Sprintf("is %d characters long, more than %d", len(id), MaxAssetIDLen), fix)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		ok := alnum || (i > 0 && (c == '.' || c == '_' || c == '-'))
		if !ok {
			return fieldErr(field, fmt.Sprintf("has %s at position %d", describeByte(c), i), fix)
		}
	}
	return nil
}

func describeByte(c byte) string {
	if c >= 0x21 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
