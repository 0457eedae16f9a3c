package phonepolicy

import (
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// PhoneService is the service name phone recordings are stored under; a
// tenant covers calls when it selected it (or "*").
const PhoneService = "phone_recording"

// Decide is the admission decision for a call of tenant cfg (non-nil), with
// statusOf giving the effective status of each of the tenant's keys (key
// status and endpoint breaker combined). It is a pure function of its
// inputs — no I/O — and follows the encryption decision (tenant.DecideKeys)
// for a phone recording of the call's user created now:
//
//	recording not requested                     → no_record  (recording_not_requested)
//	not covered (not enrolled, service not      → record, platform key (the coverage)
//	  selected, user not licensed, ...)
//	covered, key usable                         → record, customer key (covered)
//	covered, key away, fallback applies         → record_fallback, fallback key (customer_key_unavailable|revoked)
//	covered, key away, no fallback, drop_calls  → drop       (customer_key_unavailable|revoked)
//	covered, key away, no fallback              → no_record  (customer_key_unavailable|revoked)
func Decide(cfg *tenant.Config, a *events.CallAdmission, statusOf func(keyURI string) events.KeyStatus, now time.Time) events.CallDecision {
	d := events.CallDecision{CallID: a.CallID}
	if !a.RecordingRequested {
		d.Decision, d.Reason = events.DecisionNoRecord, "recording_not_requested"
		return d
	}
	kd := tenant.DecideKeys(cfg, tenant.Asset{Service: PhoneService, OwnerUserID: a.UserID, Origin: events.OriginCloud, CreatedAt: now}, statusOf)
	switch {
	case kd.Reject:
		d.Decision, d.Reason = events.DecisionNoRecord, string(kd.Reason)
		if cfg.Phone.DropCalls {
			d.Decision = events.DecisionDrop
		}
	case kd.Mode == events.ModeFallback:
		d.Decision, d.Mode, d.Reason = events.DecisionRecordFallback, events.ModeFallback, awayReason(cfg, statusOf)
	default:
		d.Decision, d.Mode, d.Reason = events.DecisionRecord, kd.Mode, string(kd.Coverage)
	}
	return d
}

// awayReason names why the customer key is not used.
func awayReason(cfg *tenant.Config, statusOf func(string) events.KeyStatus) string {
	if k, ok := cfg.PrimaryKey(); ok && statusOf(k.URI) == events.KeyStatusRevoked {
		return string(events.ReasonCustomerKeyRevoked)
	}
	return string(events.ReasonCustomerKeyUnavailable)
}
