package events

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// TypeKeyAccess is the type of KeyAccess.
const TypeKeyAccess = "dev.keyward.audit.key_access.v1"

// KeyAccess records one decision of the key broker: a release of an asset's
// key, or a refusal, with who asked and why. The broker publishes it on
// keyward.audit.key_access.<tenant> (stream KW_AUDIT) for every release and
// refusal of a known tenant's asset.
type KeyAccess struct {
	TenantID string `json:"tenant_id"`
	AssetID  string `json:"asset_id"`
	// Service is the asset's service, when the broker knows the asset.
	Service string `json:"service,omitempty"`
	// Purpose is the purpose the request gave (Purposes), empty when it
	// gave none.
	Purpose string `json:"purpose,omitempty"`
	// Caller is who asked, as NATS authenticated it.
	Caller KeyAccessCaller `json:"caller"`
	// Result is KeyAccessReleased or KeyAccessRefused.
	Result string `json:"result"`
	// Code is the refusal code (the broker's error code, e.g.
	// purpose_denied): required when refused, empty when released.
	Code string `json:"code,omitempty"`
	// Detail is a human explanation, at most 512 characters.
	Detail string `json:"detail,omitempty"`
	// KeyURI is the key the asset is encrypted under.
	KeyURI string `json:"key_uri,omitempty"`
	// Mode is the asset's mode (customer, fallback or platform) when
	// released.
	Mode string    `json:"mode,omitempty"`
	At   time.Time `json:"at"`
}

// KeyAccessCaller is the requester as NATS authenticated it (the server-set
// Nats-Request-Info), never as the request body claims. Every field is
// empty when the broker runs without authentication.
type KeyAccessCaller struct {
	// Name is the identity's name (its credential's name).
	Name string `json:"name,omitempty"`
	// User is its user nkey (public key, U...).
	User string `json:"user,omitempty"`
	// Account is its account's public key or name.
	Account string `json:"account,omitempty"`
	// Role is its role (pkg/access), from the credential's tags.
	Role string `json:"role,omitempty"`
}

// The results of a KeyAccess.
const (
	KeyAccessReleased = "released"
	KeyAccessRefused  = "refused"
)

// Limits of KeyAccess's free text, in characters (Unicode code points, as
// JSON Schema's maxLength counts them).
const (
	maxKeyAccessDetail = 512
	maxCallerField     = 256
)

// Validate checks every field: tenant and asset ids; the result is released
// or refused; a refusal has a code (a snake_case token of at most 64
// characters) and a release has none; purpose, service and mode, when
// given, are members of their sets; at is set; the free text is bounded.
func (e *KeyAccess) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.add(ValidateAssetID(e.AssetID))
	if e.Service != "" {
		v.add(ValidateService(e.Service))
	}
	if e.Purpose != "" {
		v.add(ValidatePurpose(e.Purpose))
	}
	v.chars("caller.name", e.Caller.Name, maxCallerField)
	v.chars("caller.user", e.Caller.User, maxCallerField)
	v.chars("caller.account", e.Caller.Account, maxCallerField)
	v.chars("caller.role", e.Caller.Role, maxCallerField)
	switch e.Result {
	case KeyAccessReleased:
		if e.Code != "" {
			v.add(fieldErr("code", fmt.Sprintf("is %q but the key was released", clip(e.Code)), "give a code only with result refused"))
		}
	case KeyAccessRefused:
		switch {
		case e.Code == "":
			v.add(fieldErr("code", "is required when the result is refused", "give the refusal code, e.g. purpose_denied"))
		case !validToken(e.Code):
			v.add(fieldErr("code", fmt.Sprintf("%q is not a refusal code", clip(e.Code)), "use a snake_case code of a-z, 0-9 and '_', at most 64 characters"))
		}
	default:
		v.add(fieldErr("result", fmt.Sprintf("%q is not a result", clip(e.Result)), "use released or refused"))
	}
	v.chars("detail", e.Detail, maxKeyAccessDetail)
	if e.KeyURI != "" {
		v.add(validateKeyURIField("key_uri", e.KeyURI))
	}
	if e.Mode != "" && !Mode(e.Mode).Valid() {
		v.add(fieldErr("mode", fmt.Sprintf("%q is not a mode", clip(e.Mode)), "use customer, fallback or platform"))
	}
	v.time("at", e.At)
	return v.err()
}

// chars bounds an optional free-text field to max characters.
func (v *validator) chars(field, s string, max int) {
	if n := utf8.RuneCountInString(s); n > max {
		v.add(fieldErr(field, fmt.Sprintf("is %d characters long, more than %d", n, max), "shorten it"))
	}
}

// DecodeKeyAccess decodes and validates a KeyAccess record. The error
// matches ErrUndecodable or ErrInvalid.
func DecodeKeyAccess(data []byte) (*KeyAccess, error) {
	return decodeValidated[KeyAccess](TypeKeyAccess, data)
}
