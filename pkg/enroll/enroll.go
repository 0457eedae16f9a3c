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
//
// The same service changes a tenant's keys over their lifecycle, selected by
// Request.Op (absent or "add": enroll, as above):
//
//   - "rotate" (`keyward tenant key rotate`): the new key passes the same
//     checks and round trip, then in one revision-checked update of
//     KW_TENANTS it becomes the primary and the old primary (and its
//     replicas) become retiring; RotationStarted is published on
//     KW_LIFECYCLE. The re-encryptor then rewraps every asset to the new key
//     and publishes RotationCompleted, after which the retired keys may be
//     disabled.
//   - "deprovision_schedule" (`keyward tenant deprovision schedule`): from
//     the given time on (now when it is in the past) new assets go under the
//     platform key and the re-encryptor moves every stored asset there;
//     DeprovisionScheduled is published. Rescheduling before that time
//     replaces it.
//   - "deprovision_cancel" (`keyward tenant deprovision cancel`): clears a
//     schedule whose time has not come; DeprovisionCancelled is published.
//     A started deprovisioning cannot be cancelled: it completes with
//     DeprovisionCompleted.
//   - "apply" (`keyward tenant apply`): stores a whole tenant document
//     (Request.Tenant), validated and revision-checked.
//   - "recipients" (`keyward tenant recipients add|remove`): removes
//     Request.Remove from and adds Request.Add to the tenant's recipients.
//   - "phone_settings" (`keyward tenant phone --drop-calls`): sets
//     drop_calls; PhoneSettingsChanged is published.
//
// Every change stored, whatever its op, is announced by TenantChanged
// (keyward.lifecycle.tenant_changed.<tenant>, Nats-Msg-Id
// tenant_changed.<tenant>.<revision>) naming the caller as NATS
// authenticated it and the document before and after.
//
// Refusals are *Error values with a stable Code; conflicts with the
// tenant's state are CodeConflict and their message says what to do.
package enroll

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/tenant"
)

// Operations of the service (Request.Op).
const (
	// OpAdd enrolls a key as primary or replica ("" means OpAdd).
	OpAdd = "add"
	// OpRotate makes a new key the primary; the old one retires.
	OpRotate = "rotate"
	// OpDeprovisionSchedule schedules (or reschedules) the tenant's
	// deprovisioning at Request.At.
	OpDeprovisionSchedule = "deprovision_schedule"
	// OpDeprovisionCancel cancels a scheduled deprovisioning that has not
	// started.
	OpDeprovisionCancel = "deprovision_cancel"
	// OpApply stores a whole tenant document (Request.Tenant).
	OpApply = "apply"
	// OpRecipients changes the tenant's email recipients (Request.Add,
	// Request.Remove).
	OpRecipients = "recipients"
	// OpPhoneSettings changes the tenant's phone settings
	// (Request.DropCalls).
	OpPhoneSettings = "phone_settings"
)

// Request asks the service for one operation on a tenant's keys. Op ""
// (older clients) is OpAdd.
type Request struct {
	Op       string         `json:"op,omitempty"`
	TenantID string         `json:"tenant_id"`
	KeyURI   string         `json:"key_uri,omitempty"`
	Role     tenant.KeyRole `json:"role,omitempty"`
	// At is when a scheduled deprovisioning starts (OpDeprovisionSchedule
	// only); a time in the past means now.
	At *time.Time `json:"at,omitempty"`
	// Tenant is the whole tenant document to store (OpApply only), as
	// `keyward tenant apply -f` reads it.
	Tenant json.RawMessage `json:"tenant,omitempty"`
	// Add and Remove are the email recipients to add and to remove
	// (OpRecipients only).
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
	// DropCalls is the drop_calls setting to store (OpPhoneSettings only).
	DropCalls *bool `json:"drop_calls,omitempty"`
}

// RotateRequest asks to rotate a tenant's primary key to KeyURI.
type RotateRequest struct {
	TenantID string
	KeyURI   string
}

// ScheduleDeprovisionRequest asks to deprovision a tenant at At (a time in
// the past, or the zero time, means now).
type ScheduleDeprovisionRequest struct {
	TenantID string
	At       time.Time
}

// Response is the outcome: the stored key, or an error.
type Response struct {
	Key        *tenant.Key         `json:"key,omitempty"`
	Revision   uint64              `json:"revision,omitempty"`
	KeyVersion string              `json:"key_version,omitempty"`
	Identities []platform.Identity `json:"identities,omitempty"`
	// Probe times the round trip, per operation, in milliseconds.
	Probe map[string]float64 `json:"probe_ms,omitempty"`
	// Retiring are the keys a rotation made retiring (the old primary
	// first, then its replicas).
	Retiring []string `json:"retiring,omitempty"`
	// Deprovision is the tenant's deprovisioning as scheduled
	// (OpDeprovisionSchedule) or as it was before it was cancelled
	// (OpDeprovisionCancel).
	Deprovision *tenant.Deprovision `json:"deprovision,omitempty"`
	// Warning says what did not work although the change is stored, e.g.
	// the lifecycle event could not be published.
	Warning string `json:"warning,omitempty"`
	// Tenant is the document stored (OpApply, OpRecipients,
	// OpPhoneSettings).
	Tenant *tenant.Config `json:"tenant,omitempty"`
	// NoChange: the request asked for what the tenant has already; nothing
	// was written or published (Revision is the current one).
	NoChange bool `json:"no_change,omitempty"`
	// Recipients are the tenant's recipients after the change (OpRecipients;
	// on a CodeNotRecipient refusal, those listed). Added, Removed and
	// Unchanged are the addresses added, removed, and asked to be added but
	// listed already (as listed); Absent those asked to be removed but not
	// listed.
	Recipients []string `json:"recipients,omitempty"`
	Added      []string `json:"added,omitempty"`
	Removed    []string `json:"removed,omitempty"`
	Unchanged  []string `json:"unchanged,omitempty"`
	Absent     []string `json:"absent,omitempty"`
	// Previous is the drop_calls setting before (OpPhoneSettings), EventID
	// the Nats-Msg-Id of the PhoneSettingsChanged published.
	Previous *bool  `json:"previous,omitempty"`
	EventID  string `json:"event_id,omitempty"`
	Error    *Error `json:"error,omitempty"`
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
	CodeConflict            = "conflict"             // the tenant's state does not allow it (a primary exists, no primary for a replica or a rotation, a deprovisioning scheduled or started)
	CodeNotAuthorized       = "not_authorized"       // the caller is neither an operator nor an admin of this tenant
	CodeKeyInUse            = "key_in_use"           // another tenant has enrolled this key; each tenant enrolls a key of its own
	CodeInvalidDocument     = "invalid_document"     // the tenant document of an apply is not valid; the message lists every problem
	CodeUnknownTenant       = "unknown_tenant"       // the tenant has no configuration to change
	CodeNotRecipient        = "not_recipient"        // an address to remove is not a recipient; nothing was removed
	CodeInternal            = "internal"
)

// Error is a refusal of the service.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Op is the KMS operation that failed, when one did.
	Op string `json:"op,omitempty"`

	// request is the Request.Op refused; it only words Error().
	request string
}

func (e *Error) Error() string {
	what := "enrollment"
	switch e.request {
	case OpRotate:
		what = "rotation"
	case OpDeprovisionSchedule:
		what = "deprovisioning"
	case OpDeprovisionCancel:
		what = "cancellation"
	case OpApply:
		what = "apply"
	case OpRecipients:
		what = "recipients change"
	case OpPhoneSettings:
		what = "phone settings change"
	}
	if e.Op != "" {
		return fmt.Sprintf("%s refused (%s during %s): %s", what, e.Code, e.Op, e.Message)
	}
	return fmt.Sprintf("%s refused (%s): %s", what, e.Code, e.Message)
}
