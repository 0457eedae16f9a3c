package notifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// Kind is what a notification is about; each kind has its templates.
type Kind string

// Kinds of notification.
const (
	KindKeyStatus             Kind = "key_status"
	KindKeyEnrolled           Kind = "key_enrolled"
	KindRotationStarted       Kind = "rotation_started"
	KindRotationCompleted     Kind = "rotation_completed"
	KindDeprovisionScheduled  Kind = "deprovision_scheduled"
	KindDeprovisionCancelled  Kind = "deprovision_cancelled"
	KindDeprovisionCompleted  Kind = "deprovision_completed"
	KindReencryptionCompleted Kind = "reencryption_completed"
	KindReencryptionStopped   Kind = "reencryption_stopped"
	KindContentRejected       Kind = "content_rejected"
	KindTenantChanged         Kind = "tenant_changed"
)

// Notice is one event turned into what its email says. Fields the
// templates use are exported; nothing here is secret (key URIs name keys,
// they are not key material; query parameters are dropped).
type Notice struct {
	Kind      Kind
	EventType string // ce-type, the X-Keyward-Event header
	EventID   string // Nats-Msg-Id of the event
	TenantID  string
	// KeyURI is the key the notice is about (without query parameters).
	KeyURI string
	// DigestKey groups notices of one subject for digests: the same key's
	// status changes, a tenant's rejections.
	DigestKey string
	At        time.Time
	// Fields by kind.
	Status, Previous       string
	Reason                 string // stable code
	ReasonText             string // the reason in plain words
	Doing                  string // what Keyward is doing about it
	Action                 string // what the admin should do
	AssetID, Service       string
	Purpose                string
	Done, Failed           int64
	Keys                   []string
	FromKeyURI, ToKeyURI   string
	Scheduled, ScheduledAt time.Time
	Subject                string
	// TenantChanged: the operation, who made it and the fields changed.
	Op, ChangedBy string
	Fields        []string
	// Recipients, when set, are who the notice goes to instead of the
	// tenant's current recipients: for a TenantChanged, those before and
	// after the change, so a change that replaces them still reaches the
	// old ones.
	Recipients []string
}

// tenantChangeMailed are the fields of a tenant document whose change is
// emailed: who is told, which keys, what happens when a key is lost, and
// the deprovisioning.
var tenantChangeMailed = []string{"keys", "recipients", "fallback_enabled", "fallback_on", "deprovision"}

// tenantOpsMailedOwn are the TenantChanged ops whose change is emailed by
// their own lifecycle event already (KeyEnrolled, RotationStarted,
// DeprovisionScheduled, DeprovisionCancelled, to the same recipients: these
// ops do not change them).
var tenantOpsMailedOwn = []string{events.TenantOpKeyEnrolled, events.TenantOpRotation, events.TenantOpDeprovisionScheduled, events.TenantOpDeprovisionCancelled}

// errUnknownSubject: the message is not one the notifier handles.
var errUnknownSubject = errors.New("not a notification subject")

// decodeNotice turns one stored event into a notice, with the tenant's
// configuration (nil when unknown) for what Keyward does about it.
func decodeNotice(subject, eventID string, data []byte, cfg *tenant.Config) (*Notice, error) {
	tenantID, err := events.TenantFromSubject(subject)
	if err != nil {
		return nil, err
	}
	n := &Notice{TenantID: tenantID, EventID: eventID}
	check := func(eventTenant string) error {
		if eventTenant != tenantID {
			return fmt.Errorf("event for tenant %q on the subject of tenant %q", eventTenant, tenantID)
		}
		return nil
	}
	switch {
	case subject == events.SubjectKeyStatus(tenantID):
		e, err := events.DecodeKeyStatusChanged(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		if e.Previous == "" && e.Status == events.KeyStatusAvailable {
			return nil, nil // a new key's first status: KeyEnrolled told them
		}
		n.Kind, n.EventType, n.At = KindKeyStatus, events.TypeKeyStatusChanged, e.Since
		n.KeyURI, n.Status, n.Previous, n.Reason = plainKey(e.KeyURI), string(e.Status), string(e.Previous), e.Reason
		n.DigestKey = "status|" + n.KeyURI
		n.ReasonText = reasonText(e.Reason)
		n.Doing, n.Action = statusConsequences(e.Status, cfg)
		n.Subject = fmt.Sprintf("Keyward: your key for %s is %s", tenantID, e.Status)
	case subject == events.SubjectKeyEnrolled(tenantID):
		e, err := events.DecodeKeyEnrolled(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindKeyEnrolled, events.TypeKeyEnrolled, e.EnrolledAt
		n.KeyURI, n.Status = plainKey(e.KeyURI), string(e.Role)
		n.Subject = fmt.Sprintf("Keyward: a %s key was enrolled for %s", e.Role, tenantID)
	case subject == events.SubjectRotationStarted(tenantID):
		e, err := events.DecodeRotationStarted(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindRotationStarted, events.TypeRotationStarted, e.StartedAt
		n.FromKeyURI, n.ToKeyURI = plainKey(e.FromKeyURI), plainKey(e.ToKeyURI)
		n.Subject = fmt.Sprintf("Keyward: key rotation started for %s", tenantID)
	case subject == events.SubjectRotationCompleted(tenantID):
		e, err := events.DecodeRotationCompleted(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindRotationCompleted, events.TypeRotationCompleted, e.CompletedAt
		n.ToKeyURI, n.Keys, n.Done = plainKey(e.ToKeyURI), plainKeys(e.RetiredKeyURIs), e.Assets
		n.Subject = fmt.Sprintf("Keyward: key rotation completed for %s: the old key may be disabled", tenantID)
	case subject == events.SubjectDeprovisionScheduled(tenantID):
		e, err := events.DecodeDeprovisionScheduled(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindDeprovisionScheduled, events.TypeDeprovisionScheduled, e.ScheduledAt
		n.Scheduled, n.ScheduledAt = e.At, e.ScheduledAt
		n.Subject = fmt.Sprintf("Keyward: deprovisioning of %s scheduled for %s", tenantID, e.At.UTC().Format(time.RFC3339))
	case subject == events.SubjectDeprovisionCancelled(tenantID):
		e, err := events.DecodeDeprovisionCancelled(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindDeprovisionCancelled, events.TypeDeprovisionCancelled, e.CancelledAt
		n.Scheduled = e.At
		n.Subject = fmt.Sprintf("Keyward: deprovisioning of %s cancelled", tenantID)
	case subject == events.SubjectDeprovisionCompleted(tenantID):
		e, err := events.DecodeDeprovisionCompleted(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindDeprovisionCompleted, events.TypeDeprovisionCompleted, e.CompletedAt
		n.Keys, n.Done = plainKeys(e.KeyURIs), e.Assets
		n.Subject = fmt.Sprintf("Keyward: deprovisioning of %s completed: your keys may be disabled", tenantID)
	case subject == events.SubjectTenantChanged(tenantID):
		e, err := events.DecodeTenantChanged(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		if slices.Contains(tenantOpsMailedOwn, e.Op) || !slices.ContainsFunc(e.Fields, func(f string) bool { return slices.Contains(tenantChangeMailed, f) }) {
			return nil, nil
		}
		n.Kind, n.EventType, n.At = KindTenantChanged, events.TypeTenantChanged, e.At
		n.Op, n.ChangedBy = e.Op, changedBy(e.ChangedBy)
		for _, f := range e.Fields {
			if slices.Contains(tenantChangeMailed, f) {
				n.Fields = append(n.Fields, f)
			}
		}
		n.Recipients = unionRecipients(e.Before, e.After)
		n.Subject = fmt.Sprintf("Keyward: the configuration of %s was changed (%s)", tenantID, strings.Join(n.Fields, ", "))
	case subject == events.SubjectReencryptCompleted(tenantID):
		e, err := events.DecodeReencryptionCompleted(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		n.Kind, n.EventType, n.At = KindReencryptionCompleted, events.TypeReencryptionCompleted, e.CompletedAt
		n.Purpose, n.ToKeyURI, n.Keys, n.Done, n.Failed = string(e.Purpose), plainKey(e.ToKeyURI), plainKeys(e.FromKeyURIs), e.Done, e.Failed
		n.Subject = fmt.Sprintf("Keyward: %s completed for %s (%d assets)", purposeText(e.Purpose), tenantID, e.Done)
	case subject == events.SubjectReencryptProgress(tenantID):
		e, err := events.DecodeReencryptionProgress(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		if e.State != events.JobStopped {
			return nil, nil // progress is not mailed; a stopped job is
		}
		n.Kind, n.EventType, n.At = KindReencryptionStopped, events.TypeReencryptionProgress, e.At
		n.Purpose, n.ToKeyURI, n.Keys, n.Done, n.Failed = string(e.Purpose), plainKey(e.ToKeyURI), plainKeys(e.FromKeyURIs), e.Done, e.Left
		n.Reason, n.ReasonText = e.Reason, reasonText(e.Reason)
		n.Subject = fmt.Sprintf("Keyward: %s stopped for %s: %s", purposeText(e.Purpose), tenantID, n.ReasonText)
	case subject == events.SubjectAssetRejected(tenantID):
		e, err := events.DecodeAssetRejected(data)
		if err != nil {
			return nil, err
		}
		if err := check(e.TenantID); err != nil {
			return nil, err
		}
		if e.Reason != events.ReasonCustomerKeyUnavailable && e.Reason != events.ReasonCustomerKeyRevoked {
			return nil, nil // bad input is the producer's business, not the key admin's
		}
		n.Kind, n.EventType, n.At = KindContentRejected, events.TypeAssetRejected, e.RejectedAt
		n.AssetID, n.Service, n.Reason, n.ReasonText = e.AssetID, e.Service, string(e.Reason), reasonText(string(e.Reason))
		n.DigestKey = "rejected"
		n.Subject = fmt.Sprintf("Keyward: content of %s was not stored (%s)", tenantID, n.ReasonText)
	default:
		return nil, errUnknownSubject
	}
	return n, nil
}

// changedBy says who made a change, as NATS authenticated them.
func changedBy(by *events.ChangedBy) string {
	if by == nil || *by == (events.ChangedBy{}) {
		return "unknown (this deployment does not authenticate its clients)"
	}
	s := by.Name
	if s == "" {
		s = by.User
	}
	if by.Role != "" {
		s += " (" + by.Role + ")"
	}
	return s
}

// unionRecipients are the recipients of the documents before and after a
// change, each once (regardless of case), before's first.
func unionRecipients(docs ...[]byte) []string {
	var out []string
	for _, raw := range docs {
		if raw == nil {
			continue
		}
		var c struct {
			Recipients []string `json:"recipients"`
		}
		if json.Unmarshal(raw, &c) != nil {
			continue
		}
		for _, r := range c.Recipients {
			if !slices.ContainsFunc(out, func(x string) bool { return strings.EqualFold(x, r) }) {
				out = append(out, r)
			}
		}
	}
	return out
}

// plainKey drops a key URI's query (an emulator endpoint, never a secret,
// but not the key's name either).
func plainKey(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if u, err := url.Parse(uri); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return uri
}

func plainKeys(uris []string) []string {
	out := make([]string, len(uris))
	for i, u := range uris {
		out[i] = plainKey(u)
	}
	return out
}

func purposeText(p events.ReencryptPurpose) string {
	switch p {
	case events.PurposeHeal:
		return "re-encryption of fallback copies under your key"
	case events.PurposeRotation:
		return "key rotation (rewrapping)"
	case events.PurposeDeprovision:
		return "deprovisioning (moving to the platform key)"
	}
	return string(p)
}

// reasonText says a status reason or rejection code in plain words.
func reasonText(code string) string {
	base, detail, _ := strings.Cut(code, ":")
	var s string
	switch base {
	case "ok":
		s = "the key answers normally"
	case "slow":
		s = "the key answers, but slowly"
	case "endpoint_unreachable":
		s = "the key's KMS endpoint cannot be reached"
	case "throttled":
		s = "the KMS is throttling requests"
	case "key_disabled":
		s = "the key is disabled"
	case "access_denied":
		s = "the key's policy denies Keyward's access"
	case "key_not_found":
		s = "the key was not found (deleted?)"
	case "customer_key_unavailable":
		s = "your key could not be reached"
	case "customer_key_revoked":
		s = "your key is revoked (disabled, access denied or deleted)"
	case "":
		s = "no reason given"
	default:
		s = strings.ReplaceAll(base, "_", " ")
	}
	if detail != "" {
		s += " (" + strings.ReplaceAll(detail, "_", " ") + ")"
	}
	return s
}

// statusConsequences says what Keyward does while a key is in st, and what
// the admin should do, for the tenant's settings.
func statusConsequences(st events.KeyStatus, cfg *tenant.Config) (doing, action string) {
	fallback, dropCalls := false, false
	if cfg != nil {
		fallback, dropCalls = cfg.FallbackCovers(st), cfg.Phone.DropCalls
	}
	calls := "Phone calls continue without recording."
	if dropCalls {
		calls = "Covered phone calls are dropped, as your settings ask."
	}
	switch st {
	case events.KeyStatusAvailable:
		return "New content is encrypted under your key again. Anything stored under the platform fallback key meanwhile is being re-encrypted under your key.",
			"Nothing: this message confirms the key is back."
	case events.KeyStatusDegraded:
		return "Content is still encrypted under your key; Keyward watches the key more closely.",
			"Check the key's KMS for latency or throttling if this lasts."
	case events.KeyStatusUnavailable:
		if fallback {
			return "New content is encrypted under the platform fallback key and will be re-encrypted under your key as soon as it is back. Reading content stored under your key fails until then. Phone calls are recorded under the fallback key.",
				"Restore access to the key's KMS endpoint (network, region, outage)."
		}
		return "New content is NOT stored: Keyward refuses to keep it without your key. Reading content stored under your key fails until it is back. " + calls,
			"Restore access to the key's KMS endpoint (network, region, outage)."
	case events.KeyStatusRevoked:
		if fallback {
			return "New content is encrypted under the platform fallback key (your settings allow it for a revoked key). Reading content stored under your key fails.",
				"If the revocation was not intended, re-enable the key or restore Keyward's access in its policy."
		}
		return "New content is NOT stored: a revoked key is your decision, so Keyward does not fall back. Reading content stored under your key fails. " + calls,
			"If the revocation was not intended, re-enable the key or restore Keyward's access in its policy."
	}
	return "", ""
}
