package events

// Reason is a stable snake_case code saying why an asset was rejected or a
// message was dead-lettered. Reasons appear in events, in dead-letter
// subjects (keyward.dlq.<reason>) and as metric labels, so the set is closed
// and small.
type Reason string

// Rejection reasons (AssetRejected.reason).
const (
	// ReasonCustomerKeyUnavailable: the tenant's key could not be reached
	// and the tenant does not allow fallback; the content was not stored.
	ReasonCustomerKeyUnavailable Reason = "customer_key_unavailable"
	// ReasonCustomerKeyRevoked: the tenant's key is disabled, denied or
	// deleted; the content was not stored.
	ReasonCustomerKeyRevoked Reason = "customer_key_revoked"
	// ReasonInvalidEvent: the AssetCreated event was malformed; the detail
	// names the field. The original is in KW_DLQ.
	ReasonInvalidEvent Reason = "invalid_event"
	// ReasonContentMissing: the staged object named by the event does not
	// exist (never staged, or already removed).
	ReasonContentMissing Reason = "content_missing"
	// ReasonContentTooLarge: inline content over the inline limit, or a
	// staged object over the asset size limit.
	ReasonContentTooLarge Reason = "content_too_large"
	// ReasonContentMismatch: the staged content does not match the size or
	// sha256 the event declared.
	ReasonContentMismatch Reason = "content_mismatch"
)

// Dead-letter-only reasons.
const (
	// ReasonUndecodable: the message is not JSON or not the expected shape.
	ReasonUndecodable Reason = "undecodable"
	// ReasonTenantMismatch: the tenant in the subject differs from the
	// tenant in the payload.
	ReasonTenantMismatch Reason = "tenant_mismatch"
	// ReasonMaxDeliveries: a transient failure persisted through every
	// allowed delivery.
	ReasonMaxDeliveries Reason = "max_deliveries"
	// ReasonMailRecipientRejected: the SMTP server refused a notification's
	// recipient for good (the other recipients were sent to).
	ReasonMailRecipientRejected Reason = "mail_recipient_rejected"
	// ReasonTemplateFailed: a notification could not be rendered from the
	// event (missing or invalid data for its template).
	ReasonTemplateFailed Reason = "template_failed"
	// ReasonOther: anything not covered by a more specific reason.
	ReasonOther Reason = "other"
)
