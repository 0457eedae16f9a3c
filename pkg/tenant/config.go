package tenant

import (
	"fmt"
	"slices"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// DefaultServices is the platform's default service catalog: the data types
// a tenant can select for customer-managed keys. A platform with other
// services passes its own list with WithServiceCatalog.
var DefaultServices = []string{
	"cloud_recording",
	"meeting_chat",
	"team_chat",
	"phone_recording",
	"phone_voicemail",
	"whiteboard",
}

// All is the wildcard entry of Services and LicensedUsers: every service the
// platform offers, every user of the tenant. It is never mixed with names.
const All = "*"

// MaxKeys bounds the keys a tenant can enroll (a primary, its replicas and
// the keys being retired).
const MaxKeys = 16

// Config is a tenant's customer-managed-key configuration: the document
// `keyward tenant apply -f tenant.json` takes and the value stored in KV
// bucket KW_TENANTS under the tenant id. Field names are stable.
//
// A *Config handed out by a Cache is shared: treat it as read-only and Clone
// it before changing anything.
type Config struct {
	TenantID    string `json:"tenant_id"`
	DisplayName string `json:"display_name,omitempty"`
	// Keys are the enrolled customer keys; exactly one is the primary when
	// any are enrolled.
	Keys []Key `json:"keys,omitempty"`
	// Services are the covered services; ["*"] covers every service the
	// platform offers; empty covers none.
	Services []string `json:"services,omitempty"`
	// LicensedUsers are the covered users (owner user ids); ["*"] covers
	// every user; empty covers none.
	LicensedUsers []string `json:"licensed_users,omitempty"`
	// Recipients are the email addresses told of every key status change.
	Recipients []string `json:"recipients,omitempty"`
	// Fallback: use the platform fallback key while the customer key is
	// unreachable (the asset is re-encrypted when the key returns) instead
	// of refusing to store the asset.
	Fallback bool `json:"fallback_enabled"`
	// FallbackOn says which losses of the customer key the fallback key
	// covers when Fallback is on: FallbackOnOutage (the default; "" means
	// it) or FallbackOnAny (a revoked key too).
	FallbackOn FallbackOn `json:"fallback_on,omitempty"`
	// HoldWindow: during an outage of the customer key, keep an asset
	// pending up to this long (counted from its publication) before falling
	// back or rejecting it, so a short blip leaves no fallback copy and
	// loses no recording. 0 (the default) decides at once.
	HoldWindow Duration      `json:"hold_window,omitempty"`
	Phone      PhoneSettings `json:"phone"`
	// DeniedPurposes are purposes (events.Purposes) for which the key
	// broker never releases this tenant's keys, whatever the reader's own
	// grant (like Key Access Justifications' denied reasons): the tenant's
	// setting wins over the platform's. Empty denies none.
	DeniedPurposes []string `json:"denied_purposes,omitempty"`
	// Deprovision, when set, schedules the tenant's deprovisioning: from
	// Deprovision.At on, new assets go under the platform key (coverage
	// "deprovisioned") and the re-encryptor moves every stored asset there.
	// Set and cleared by the enrollment service (`keyward tenant
	// deprovision schedule|cancel`).
	Deprovision *Deprovision `json:"deprovision,omitempty"`
	// DeprovisionedAt is set by the re-encryptor when the deprovisioning
	// completed: every asset is under the platform key and the
	// configuration has no keys any more.
	DeprovisionedAt *time.Time `json:"deprovisioned_at,omitempty"`
	// CoveredFrom keeps the enrollment time of keys that left the
	// configuration: when a rotation completes, the re-encryptor removes
	// the retired keys and records their earliest enrolled_at here, so
	// CoveredSince does not move forward (an asset created before the
	// rotation but processed after it is still covered).
	CoveredFrom *time.Time `json:"covered_from,omitempty"`
	// UpdatedAt is set by the Store on every write.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Revision is the KV revision the document was read at (0: not read
	// from the store). It is not part of the document.
	Revision uint64 `json:"-"`
}

// Deprovision is a scheduled deprovisioning of the tenant.
type Deprovision struct {
	// At is when it starts: assets created at or after At go under the
	// platform key, and the re-encryptor moves the stored ones there.
	At time.Time `json:"at"`
	// ScheduledAt is when the admin scheduled (or last rescheduled) it.
	ScheduledAt time.Time `json:"scheduled_at"`
}

// Deprovisioning reports whether the tenant's deprovisioning has started
// and is not completed: one is scheduled, now is at or after its At, and
// DeprovisionedAt is not set. Workers (the re-encryptor) use it to know
// that the tenant's assets are to be moved to the platform key.
func (c *Config) Deprovisioning(now time.Time) bool {
	return c != nil && c.Deprovision != nil && c.DeprovisionedAt == nil && !now.Before(c.Deprovision.At)
}

// Deprovisioned reports whether the tenant's deprovisioning completed.
func (c *Config) Deprovisioned() bool { return c != nil && c.DeprovisionedAt != nil }

// KeysWithRole returns the tenant's keys of role r, in document order.
func (c *Config) KeysWithRole(r KeyRole) []Key {
	if c == nil {
		return nil
	}
	var out []Key
	for _, k := range c.Keys {
		if k.Role == r {
			out = append(out, k)
		}
	}
	return out
}

// FallbackOn names the losses of the customer key the fallback key covers.
type FallbackOn string

const (
	// FallbackOnOutage: only an unreachable key (an outage) falls back; a
	// revoked key (disabled, access denied, deleted) rejects the asset. A
	// revocation is the customer's decision, and content the customer has
	// just cut off is not kept under a key the platform holds.
	FallbackOnOutage FallbackOn = "outage"
	// FallbackOnAny: a revoked key falls back too. The asset is stored
	// under the platform's fallback key and re-encrypted if the key comes
	// back; choose it only when keeping content matters more than the
	// customer's ability to cut the platform off at once.
	FallbackOnAny FallbackOn = "any"
)

// MaxHoldWindow bounds Config.HoldWindow: holding an asset longer delays
// every outcome for the tenant and keeps plaintext staged longer.
const MaxHoldWindow = 5 * time.Minute

// Duration is a time.Duration written in JSON as Go duration text ("10s",
// "1m30s").
type Duration time.Duration

// MarshalText writes d as Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it like 10s or 1m30s", clip(string(b)))
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// FallbackCovers reports whether the tenant's fallback key covers a customer
// key in status st: fallback is on and the loss is an outage, or any loss
// under FallbackOnAny.
func (c *Config) FallbackCovers(st events.KeyStatus) bool {
	if !c.Fallback {
		return false
	}
	if st == events.KeyStatusRevoked {
		return c.FallbackOn == FallbackOnAny
	}
	return true
}

// PhoneSettings are the tenant's choices for live phone calls.
type PhoneSettings struct {
	// DropCalls: when a covered call cannot be recorded (customer key
	// unreachable and no fallback, or revoked), drop the call instead of
	// continuing it without a recording.
	DropCalls bool `json:"drop_calls"`
}

// KeyRole says what an enrolled key is used for.
type KeyRole string

const (
	// RolePrimary encrypts new assets. Exactly one key is the primary when
	// any key is enrolled.
	RolePrimary KeyRole = "primary"
	// RoleReplica is the same key material on another endpoint (e.g. an AWS
	// multi-region replica), used while the primary's endpoint is down.
	RoleReplica KeyRole = "replica"
	// RoleRetiring still decrypts while its assets are rewrapped to the
	// primary (a rotation). It never encrypts new assets; a tenant may
	// have several retiring keys while rotations follow each other.
	RoleRetiring KeyRole = "retiring"
)

// Valid reports whether r is a defined role.
func (r KeyRole) Valid() bool { return r == RolePrimary || r == RoleReplica || r == RoleRetiring }

// Key is one enrolled customer key.
type Key struct {
	// URI names the key in canonical form (kms.KeyURI.String), e.g.
	// awskms://arn:aws:kms:eu-west-2:111122223333:key/<id>.
	URI  string  `json:"uri"`
	Role KeyRole `json:"role"`
	// EnrolledAt is when the key was enrolled. Assets created before the
	// earliest EnrolledAt of a tenant stay on the platform key.
	EnrolledAt time.Time `json:"enrolled_at"`
}

// PrimaryKey returns the key that encrypts new assets, and false when no
// key is the primary (the tenant is not enrolled).
func (c *Config) PrimaryKey() (Key, bool) {
	if c == nil {
		return Key{}, false
	}
	for _, k := range c.Keys {
		if k.Role == RolePrimary {
			return k, true
		}
	}
	return Key{}, false
}

// Enrolled reports whether the tenant has a primary key.
func (c *Config) Enrolled() bool {
	_, ok := c.PrimaryKey()
	return ok
}

// CoveredSince is the earliest EnrolledAt of the tenant's keys, whatever
// their role, or CoveredFrom when that is earlier (a rotation does not move
// it, even after the retired keys are removed). Assets created before it
// stay on the platform key. It is the zero time when no key is enrolled.
func (c *Config) CoveredSince() time.Time {
	var since time.Time
	if c == nil {
		return since
	}
	if len(c.Keys) == 0 {
		return since
	}
	for _, k := range c.Keys {
		if since.IsZero() || k.EnrolledAt.Before(since) {
			since = k.EnrolledAt
		}
	}
	if c.CoveredFrom != nil && c.CoveredFrom.Before(since) {
		since = *c.CoveredFrom
	}
	return since
}

// CoversService reports whether the tenant selected service s (or "*").
// An empty Services list covers no service.
func (c *Config) CoversService(s string) bool {
	return c != nil && (slices.Contains(c.Services, All) || slices.Contains(c.Services, s))
}

// LicensesUser reports whether user u is licensed (or every user is, "*").
// User ids are compared exactly. An empty LicensedUsers list licenses no
// user.
func (c *Config) LicensesUser(u string) bool {
	return c != nil && (slices.Contains(c.LicensedUsers, All) || slices.Contains(c.LicensedUsers, u))
}

// PurposeDenied reports whether the tenant denies purpose p
// (DeniedPurposes): the key broker then releases none of its keys for p,
// whatever the reader's grant. A nil *Config denies nothing.
func (c *Config) PurposeDenied(p string) bool {
	return c != nil && slices.Contains(c.DeniedPurposes, p)
}

// Clone returns a deep copy of c, Revision included.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := *c
	n.Keys = slices.Clone(c.Keys)
	n.Services = slices.Clone(c.Services)
	n.LicensedUsers = slices.Clone(c.LicensedUsers)
	n.Recipients = slices.Clone(c.Recipients)
	n.DeniedPurposes = slices.Clone(c.DeniedPurposes)
	if c.Deprovision != nil {
		d := *c.Deprovision
		n.Deprovision = &d
	}
	if c.CoveredFrom != nil {
		t := *c.CoveredFrom
		n.CoveredFrom = &t
	}
	if c.DeprovisionedAt != nil {
		t := *c.DeprovisionedAt
		n.DeprovisionedAt = &t
	}
	return &n
}
