package tenant

import (
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// Asset is what the encryption decision needs to know about one asset
// (taken from its AssetCreated event).
type Asset struct {
	Service     string
	OwnerUserID string
	Origin      events.Origin
	// CreatedAt is when the asset was created. A zero time is before any
	// enrollment, so such an asset is never covered; AssetCreated
	// validation requires the field.
	CreatedAt time.Time
}

// Coverage says why an asset is, or is not, covered by the tenant's
// customer-managed key.
type Coverage string

const (
	// CoverageNotEnrolled: no configuration, or no primary key.
	CoverageNotEnrolled Coverage = "not_enrolled"
	// CoverageDeprovisioned: the tenant's deprovisioning is scheduled and
	// the asset was created at or after its date (Deprovision.At).
	CoverageDeprovisioned Coverage = "deprovisioned"
	// CoverageBeforeEnrollment: created before the tenant's CoveredSince.
	CoverageBeforeEnrollment Coverage = "before_enrollment"
	// CoverageServiceNotSelected: the asset's service is not in Services.
	CoverageServiceNotSelected Coverage = "service_not_selected"
	// CoverageUserNotLicensed: the asset's owner is not in LicensedUsers.
	CoverageUserNotLicensed Coverage = "user_not_licensed"
	// CoverageLocalUpload: an uploaded local recording; never covered.
	CoverageLocalUpload Coverage = "local_upload"
	// CoverageCovered: the asset belongs under the customer key.
	CoverageCovered Coverage = "covered"
)

// Covered reports whether cv is CoverageCovered.
func (cv Coverage) Covered() bool { return cv == CoverageCovered }

// Decision is the outcome of Decide for one asset.
type Decision struct {
	// Mode is the key the asset is encrypted under; "" when Reject.
	Mode events.Mode
	// Reject: do not store the asset (delete the staging copy, publish
	// AssetRejected with Reason).
	Reject bool
	// Reason, when Reject: events.ReasonCustomerKeyUnavailable or
	// events.ReasonCustomerKeyRevoked.
	Reason events.Reason
	// Coverage says why the asset is or is not covered.
	Coverage Coverage
	// KeyURI is the customer key when Mode is events.ModeCustomer, "" for
	// the platform and fallback modes (the caller knows its platform keys).
	KeyURI string
	// Replica is true when KeyURI is a replica used because the primary is
	// unavailable.
	Replica bool
	// Hold, when not zero, is the tenant's hold window: the decision is a
	// fallback or a rejection because the customer key is unreachable (an
	// outage, not a revocation), and the tenant asked to keep assets
	// pending up to this long before either.
	Hold time.Duration
}

// Coverage reports whether the asset is covered by the tenant's customer key
// and, if not, why. cfg nil means the tenant never enrolled. The checks run
// in this order and the first that fails names the result: enrolled (a
// primary key), created at or after CoveredSince, service selected, owner
// licensed, origin not local_upload. Right after enrolled comes the
// deprovisioning: a tenant whose deprovisioning is scheduled covers no asset
// created at or after Deprovision.At.
func (c *Config) Coverage(a Asset) Coverage {
	switch {
	case !c.Enrolled():
		return CoverageNotEnrolled
	case c.Deprovision != nil && !a.CreatedAt.Before(c.Deprovision.At):
		return CoverageDeprovisioned
	case a.CreatedAt.Before(c.CoveredSince()):
		return CoverageBeforeEnrollment
	case !c.CoversService(a.Service):
		return CoverageServiceNotSelected
	case !c.LicensesUser(a.OwnerUserID):
		return CoverageUserNotLicensed
	case a.Origin == events.OriginLocalUpload:
		return CoverageLocalUpload
	}
	return CoverageCovered
}

// Decide is the encryption decision for one asset of the tenant configured
// by cfg (nil: never enrolled), given status, the status of the tenant's
// primary key (from KW_KEY_STATUS, overridden by what live KMS calls showed:
// the encryptor takes a call its endpoint's open breaker refused as
// events.KeyStatusUnavailable). It does no I/O.
//
//	coverage (Config.Coverage)  status                      fallback          decision
//	not covered (any reason)    any                         any               ModePlatform
//	covered                     unknown/available/degraded  any               ModeCustomer, KeyURI = primary
//	covered                     unavailable                 on                ModeFallback
//	covered                     unavailable                 off               Reject, customer_key_unavailable
//	covered                     revoked                     on, fallback_on   ModeFallback
//	                                                          = any
//	covered                     revoked                     otherwise         Reject, customer_key_revoked
//	covered                     anything else               as for unavailable
//
// A revocation is the customer's decision, so by default it rejects even
// when fallback is on; a tenant may choose fallback_on "any". A status this
// build does not know is treated as unavailable: the key is not used, and
// the tenant's fallback choice applies. An outage decision (fallback or
// customer_key_unavailable) carries the tenant's hold window in
// Decision.Hold.
//
// When the call to the customer key then fails, the caller classifies the
// failure into the status it observed (unavailable for an unreachable
// endpoint, revoked for a disabled, denied or deleted key) and calls Decide
// again with that status; there is no separate after-failure decision.
func Decide(cfg *Config, a Asset, status events.KeyStatus) Decision {
	// One status for all of the tenant's keys: replicas share the primary's.
	return DecideKeys(cfg, a, func(string) events.KeyStatus { return status })
}

// DecideKeys is Decide for a tenant with replicas: statusOf gives the status
// of any of the tenant's keys. When the primary is unavailable (an outage,
// not a revocation), the first usable replica — the same key material served
// by another endpoint — is used before the fallback key:
//
//	primary usable                         → customer, primary
//	primary revoked                        → fallback under fallback_on "any", else reject
//	                                         customer_key_revoked (replicas are not used: a
//	                                         revocation is the customer's decision)
//	primary unavailable, a replica usable  → customer, that replica (Decision.Replica)
//	primary unavailable, no usable replica → fallback if allowed, else reject
//	                                         customer_key_unavailable (both with Decision.Hold)
//
// Retiring keys (a rotation's old primaries) are never used for new assets:
// they only decrypt until the re-encryptor has moved their assets.
func DecideKeys(cfg *Config, a Asset, statusOf func(keyURI string) events.KeyStatus) Decision {
	cov := cfg.Coverage(a)
	if !cov.Covered() {
		return Decision{Mode: events.ModePlatform, Coverage: cov}
	}
	primary, _ := cfg.PrimaryKey()
	status := statusOf(primary.URI)
	switch {
	case status.Usable():
		return Decision{Mode: events.ModeCustomer, Coverage: cov, KeyURI: primary.URI}
	case status == events.KeyStatusRevoked:
		if cfg.FallbackCovers(status) {
			return Decision{Mode: events.ModeFallback, Coverage: cov}
		}
		return Decision{Reject: true, Reason: events.ReasonCustomerKeyRevoked, Coverage: cov}
	}
	for _, k := range cfg.Keys {
		if k.Role == RoleReplica && statusOf(k.URI).Usable() {
			return Decision{Mode: events.ModeCustomer, Coverage: cov, KeyURI: k.URI, Replica: true}
		}
	}
	hold := cfg.HoldWindow.Std()
	if cfg.FallbackCovers(events.KeyStatusUnavailable) {
		return Decision{Mode: events.ModeFallback, Coverage: cov, Hold: hold}
	}
	return Decision{Reject: true, Reason: events.ReasonCustomerKeyUnavailable, Coverage: cov, Hold: hold}
}
