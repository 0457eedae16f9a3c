// Package enroll admits a tenant's key only after it has proven to work for
// the platform: the URI is valid, its region is served, and a live round
// trip through the KMS — GenerateDataKey, Decrypt, Encrypt, Decrypt, compare
// — succeeds with the platform's own identity under the tenant's encryption
// context. Then, and only then, the key is stored in the tenant's
// configuration with its enrollment time. On failure nothing is stored and
// the error says precisely what is wrong and what to change.
//
// The service runs inside a worker that holds the platform's KMS
// credentials (the encryptor), on request-reply keyward.key.enroll.<tenant>;
// `keyward tenant key add` is its client.
package enroll

import (
	"fmt"

	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/tenant"
)

// Request asks to enroll a key for a tenant.
type Request struct {
	TenantID string         `json:"tenant_id"`
	KeyURI   string         `json:"key_uri"`
	Role     tenant.KeyRole `json:"role"`
}

// Response is the outcome: the stored key, or an error.
type Response struct {
	Key        *tenant.Key         `json:"key,omitempty"`
	Revision   uint64              `json:"revision,omitempty"`
	KeyVersion string              `json:"key_version,omitempty"`
	Identities []platform.Identity `json:"identities,omitempty"`
	// Probe times the round trip, per operation, in milliseconds.
	Probe map[string]float64 `json:"probe_ms,omitempty"`
	Error *Error             `json:"error,omitempty"`
}

// Error codes.
const (
	CodeInvalidRequest      = "invalid_request"      // malformed request, bad tenant id or role
	CodeInvalidKeyURI       = "invalid_key_uri"      // the URI does not parse; the message says which part
	CodeUnsupportedProvider = "unsupported_provider" // this deployment has no provider for the scheme
	CodeRegionNotServed     = "region_not_served"    // the platform does not serve that region for that provider
	CodePermissionMissing   = "permission_missing"   // the key policy denies an operation Keyward needs
	CodeKeyUnusable         = "key_unusable"         // disabled, pending deletion, or not found
	CodeUnreachable         = "endpoint_unreachable" // the endpoint could not be reached (wrong endpoint or region, outage)
	CodeThrottled           = "throttled"            // the KMS throttled the probe; try again
	CodeRoundTrip           = "round_trip_failed"    // the KMS answered but the round trip did not give the key back
	CodeConflict            = "conflict"             // the tenant's keys do not allow this role (a primary exists, no primary for a replica)
	CodeInternal            = "internal"
)

// Error is an enrollment refusal.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Op is the KMS operation that failed, when one did.
	Op string `json:"op,omitempty"`
}

func (e *Error) Error() string {
	if e.Op != "" {
		return fmt.Sprintf("enrollment refused (%s during %s): %s", e.Code, e.Op, e.Message)
	}
	return fmt.Sprintf("enrollment refused (%s): %s", e.Code, e.Message)
}
