package events

import (
	"fmt"
	"strings"
	"time"
)

// Stream, bucket and subject names: the contract between Keyward's workers,
// its producers and its operators. Every name used on the wire is declared
// here and nowhere else.
const (
	// StreamIngest holds AssetCreated events from producers.
	StreamIngest = "KW_INGEST"
	// StreamAssets is the log of record: AssetEncrypted, AssetRejected and
	// AssetReencrypted events. Ledgers are projections of it.
	StreamAssets = "KW_ASSETS"
	// StreamDLQ holds dead letters: messages no worker could process, with
	// the reason, the original subject, headers and bytes.
	StreamDLQ = "KW_DLQ"
	// StreamKeys holds KeyStatusChanged and BreakerStateChanged events,
	// retained for replay.
	StreamKeys = "KW_KEYS"
	// StreamReencrypt holds the progress and completion events of
	// re-encryption jobs (ReencryptionProgress, ReencryptionCompleted),
	// kept 30 days.
	StreamReencrypt = "KW_REENCRYPT"
	// StreamLifecycle holds a tenant's key lifecycle events: key enrolled,
	// rotation started and completed, deprovisioning scheduled, cancelled
	// and completed; retained like KW_KEYS for audit and replay.
	StreamLifecycle = "KW_LIFECYCLE"
	// StreamAudit holds the audit records: the key broker's KeyAccess
	// records (every release and refusal of an asset's key), kept a year
	// like KW_KEYS.
	StreamAudit = "KW_AUDIT"

	// BucketStaging is the Object Store bucket producers stage plaintext in.
	BucketStaging = "KW_STAGING"
	// BucketVault is the Object Store bucket holding ciphertext, one object
	// per asset named "<tenant>/<asset_id>".
	BucketVault = "KW_VAULT"
	// BucketTenants is the KV bucket of tenant configurations, keyed by
	// tenant id.
	BucketTenants = "KW_TENANTS"
	// BucketKeyStatus is the KV bucket of the current status of every
	// enrolled key.
	BucketKeyStatus = "KW_KEY_STATUS"
	// BucketKeyHealthLeases is the KV bucket in which key-health-monitor
	// instances hold leases on tenant partitions and announce themselves
	// (heartbeats); entries expire after KeyHealthLeaseTTL unless renewed.
	BucketKeyHealthLeases = "KW_KEY_HEALTH_LEASES"
	// BucketReencryptJobs is the KV bucket of the re-encryptor's jobs
	// (state and cursor of each heal, rotation or deprovision job), one
	// revision per job, no expiry.
	BucketReencryptJobs = "KW_REENCRYPT_JOBS"

	// SubjectRoot is the first token of every Keyward subject.
	SubjectRoot = "keyward"
)

// Subject prefixes. A full subject appends one validated token (a tenant id
// or a dead-letter reason).
const (
	prefixAssetCreated     = "keyward.asset.created."
	prefixAssetEncrypted   = "keyward.asset.encrypted."
	prefixAssetRejected    = "keyward.asset.rejected."
	prefixAssetReencrypted = "keyward.asset.reencrypted."
	prefixKeyStatus        = "keyward.key.status."
	prefixKeyObserved      = "keyward.key.observed."
	prefixBreaker          = "keyward.kms.breaker."
	prefixKeyUnwrap        = "keyward.key.unwrap."
	prefixKeyEnroll        = "keyward.key.enroll."
	prefixDLQ              = "keyward.dlq."
	prefixPhoneAdmit       = "keyward.phone.admit."
	prefixCallStarted      = "keyward.phone.call.started."
	prefixCallEnded        = "keyward.phone.call.ended."
	prefixCallAction       = "keyward.phone.action."

	prefixReencryptProgress    = "keyward.reencrypt.progress."
	prefixReencryptCompleted   = "keyward.reencrypt.completed."
	prefixRotationStarted      = "keyward.lifecycle.rotation_started."
	prefixRotationCompleted    = "keyward.lifecycle.rotation_completed."
	prefixDeprovisionScheduled = "keyward.lifecycle.deprovision_scheduled."
	prefixDeprovisionCancelled = "keyward.lifecycle.deprovision_cancelled."
	prefixDeprovisionCompleted = "keyward.lifecycle.deprovision_completed."
	prefixKeyEnrolled          = "keyward.lifecycle.key_enrolled."
	prefixTenantChanged        = "keyward.lifecycle.tenant_changed."
	prefixKeyAccess            = "keyward.audit.key_access."
)

// Wildcard subjects, for stream definitions and subscriptions.
const (
	SubjectAssetCreatedAll     = prefixAssetCreated + "*"
	SubjectAssetEncryptedAll   = prefixAssetEncrypted + "*"
	SubjectAssetRejectedAll    = prefixAssetRejected + "*"
	SubjectAssetReencryptedAll = prefixAssetReencrypted + "*"
	SubjectKeyStatusAll        = prefixKeyStatus + "*"
	SubjectKeyObservedAll      = prefixKeyObserved + "*"
	SubjectBreakerAll          = prefixBreaker + "*"
	SubjectKeyUnwrapAll        = prefixKeyUnwrap + "*"
	SubjectKeyEnrollAll        = prefixKeyEnroll + "*"
	SubjectDLQAll              = prefixDLQ + "*"

	SubjectReencryptProgressAll  = prefixReencryptProgress + "*"
	SubjectReencryptCompletedAll = prefixReencryptCompleted + "*"
	// SubjectReencryptAll is every re-encryption job event of every tenant.
	SubjectReencryptAll = "keyward.reencrypt.>"
	// SubjectLifecycleAll is every lifecycle event (enrollment, rotation,
	// deprovisioning) of every tenant: keyward.lifecycle.<event>.<tenant>.
	SubjectLifecycleAll = "keyward.lifecycle.>"
	// SubjectLifecycleEvents is the subject filter of stream KW_LIFECYCLE:
	// keyward.lifecycle.<event>.<tenant>.
	SubjectLifecycleEvents = subjectLifecycleAny + "*"

	subjectLifecycleAny = "keyward.lifecycle.*."

	// SubjectAuditAll is every audit record of every tenant
	// (keyward.audit.<record>.<tenant>): the subject filter of stream
	// KW_AUDIT.
	SubjectAuditAll = "keyward.audit.>"
	// SubjectKeyAccessAll is every KeyAccess record of every tenant.
	SubjectKeyAccessAll = prefixKeyAccess + "*"
)

// SubjectLifecycleTenant matches every lifecycle event of tenant.
func SubjectLifecycleTenant(tenant string) string { return subjectLifecycleAny + tenant }

// SubjectReencryptProgress is where the re-encryptor publishes
// ReencryptionProgress for tenant.
func SubjectReencryptProgress(tenant string) string { return prefixReencryptProgress + tenant }

// SubjectReencryptCompleted is where the re-encryptor publishes
// ReencryptionCompleted for tenant.
func SubjectReencryptCompleted(tenant string) string { return prefixReencryptCompleted + tenant }

// SubjectRotationStarted is where RotationStarted is published for tenant.
func SubjectRotationStarted(tenant string) string { return prefixRotationStarted + tenant }

// SubjectRotationCompleted is where RotationCompleted is published for tenant.
func SubjectRotationCompleted(tenant string) string { return prefixRotationCompleted + tenant }

// SubjectKeyEnrolled is where KeyEnrolled is published for tenant.
func SubjectKeyEnrolled(tenant string) string { return prefixKeyEnrolled + tenant }

// SubjectTenantChanged is where TenantChanged is published for tenant
// (stream KW_LIFECYCLE, which captures keyward.lifecycle.*.*).
func SubjectTenantChanged(tenant string) string { return prefixTenantChanged + tenant }

// SubjectKeyAccess is where the key broker records its decisions on
// tenant's assets (KeyAccess, stream KW_AUDIT).
func SubjectKeyAccess(tenant string) string { return prefixKeyAccess + tenant }

// SubjectDeprovisionScheduled is where DeprovisionScheduled is published.
func SubjectDeprovisionScheduled(tenant string) string {
	return prefixDeprovisionScheduled + tenant
}

// SubjectDeprovisionCancelled is where DeprovisionCancelled is published.
func SubjectDeprovisionCancelled(tenant string) string {
	return prefixDeprovisionCancelled + tenant
}

// SubjectDeprovisionCompleted is where DeprovisionCompleted is published.
func SubjectDeprovisionCompleted(tenant string) string {
	return prefixDeprovisionCompleted + tenant
}

// SubjectAssetCreated is where producers publish AssetCreated for tenant.
// tenant must have passed ValidateTenantID.
func SubjectAssetCreated(tenant string) string { return prefixAssetCreated + tenant }

// SubjectAssetEncrypted is where the encryptor publishes AssetEncrypted.
func SubjectAssetEncrypted(tenant string) string { return prefixAssetEncrypted + tenant }

// SubjectAssetRejected is where the encryptor publishes AssetRejected.
func SubjectAssetRejected(tenant string) string { return prefixAssetRejected + tenant }

// SubjectAssetReencrypted is where the re-encryptor publishes AssetReencrypted.
func SubjectAssetReencrypted(tenant string) string { return prefixAssetReencrypted + tenant }

// SubjectKeyStatus is where KeyStatusChanged events for tenant are published.
func SubjectKeyStatus(tenant string) string { return prefixKeyStatus + tenant }

// SubjectKeyObserved is where workers report what they saw of tenant's keys
// in live traffic (core NATS, for the key-health-monitor).
func SubjectKeyObserved(tenant string) string { return prefixKeyObserved + tenant }

// SubjectBreaker is where breaker state changes of provider's endpoints are
// published (stream KW_KEYS). provider is a key URI scheme.
func SubjectBreaker(provider string) string { return prefixBreaker + provider }

// SubjectPhoneAdmit is the phone-policy worker's request-reply subject for
// tenant (CallAdmission → CallDecision).
func SubjectPhoneAdmit(tenant string) string { return prefixPhoneAdmit + tenant }

// SubjectCallStarted is where phone systems publish CallStarted.
func SubjectCallStarted(tenant string) string { return prefixCallStarted + tenant }

// SubjectCallEnded is where phone systems publish CallEnded.
func SubjectCallEnded(tenant string) string { return prefixCallEnded + tenant }

// SubjectCallAction is where the phone-policy worker publishes CallAction.
func SubjectCallAction(tenant string) string { return prefixCallAction + tenant }

// Phone wildcards: admissions, call events (stream KW_PHONE) and actions.
const (
	SubjectPhoneAdmitAll  = prefixPhoneAdmit + "*"
	SubjectCallEventsAll  = "keyward.phone.call.*.*"
	SubjectCallActionAll  = prefixCallAction + "*"
	StreamPhone           = "KW_PHONE"
	ConsumerPhonePolicy   = "phone-policy"
	PhoneMaxAge           = 7 * 24 * time.Hour
	PhoneDuplicatesWindow = 2 * time.Minute
)

// SubjectKeyUnwrap is the key broker's request-reply subject for tenant.
func SubjectKeyUnwrap(tenant string) string { return prefixKeyUnwrap + tenant }

// SubjectKeyEnroll is the enrollment service's request-reply subject for tenant.
func SubjectKeyEnroll(tenant string) string { return prefixKeyEnroll + tenant }

// SubjectDLQ is the dead-letter subject for reason. Reasons are stable
// snake_case codes (see the Reason constants); anything else is mapped to
// "other" so a caller can never inject subject tokens.
func SubjectDLQ(reason Reason) string {
	if !validToken(string(reason)) {
		reason = ReasonOther
	}
	return prefixDLQ + string(reason)
}

// TenantFromSubject returns the tenant token of a per-tenant Keyward subject
// (the last token) after validating it.
func TenantFromSubject(subject string) (string, error) {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 || !strings.HasPrefix(subject, SubjectRoot+".") {
		return "", fmt.Errorf("subject %q is not a keyward subject", subject)
	}
	tenant := subject[i+1:]
	if err := ValidateTenantID(tenant); err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return tenant, nil
}

// VaultObjectName is the name of an asset's ciphertext in BucketVault.
func VaultObjectName(tenant, assetID string) string { return tenant + "/" + assetID }

// Consumer names: durable consumers are declared by the worker that owns
// them; the names are here so operators can find them (keyward status).
const (
	ConsumerEncryptor       = "encryptor"
	ConsumerLedgerProjector = "ledger-projector"
)

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
