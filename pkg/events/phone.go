package events

import (
	"fmt"
	"time"
)

// Phone policy contract: admission requests and decisions (request-reply
// keyward.phone.admit.<tenant>), live call events from phone systems and the
// actions the phone-policy worker asks them to take (stream KW_PHONE).
const (
	TypeCallAdmission = "dev.keyward.phone.admission.v1"
	TypeCallDecision  = "dev.keyward.phone.decision.v1"
	TypeCallStarted   = "dev.keyward.phone.call.started.v1"
	TypeCallEnded     = "dev.keyward.phone.call.ended.v1"
	TypeCallAction    = "dev.keyward.phone.action.v1"
)

// CallDirection is a call's direction (a closed set).
type CallDirection string

// Call directions.
const (
	DirectionInbound  CallDirection = "inbound"
	DirectionOutbound CallDirection = "outbound"
)

// Valid reports whether d is a defined direction.
func (d CallDirection) Valid() bool { return d == DirectionInbound || d == DirectionOutbound }

// CallDecisionKind is what a phone system does with a call (a closed set).
type CallDecisionKind string

// Call decisions.
const (
	// DecisionRecord: record; the recording is stored under Mode (the
	// customer key, or the platform key when the call is not covered).
	DecisionRecord CallDecisionKind = "record"
	// DecisionRecordFallback: record; the recording is stored under the
	// platform fallback key and re-encrypted once the customer key is back.
	DecisionRecordFallback CallDecisionKind = "record_fallback"
	// DecisionNoRecord: the call goes on without a recording.
	DecisionNoRecord CallDecisionKind = "no_record"
	// DecisionDrop: the call is dropped (the tenant chose "drop calls if
	// the key is not available" and fallback does not apply).
	DecisionDrop CallDecisionKind = "drop"
)

// Valid reports whether k is a defined decision.
func (k CallDecisionKind) Valid() bool {
	return k == DecisionRecord || k == DecisionRecordFallback || k == DecisionNoRecord || k == DecisionDrop
}

// CallActionKind is an action the phone-policy worker asks of a live call.
type CallActionKind string

// Call actions.
const (
	ActionDrop            CallActionKind = "drop"
	ActionStopRecording   CallActionKind = "stop_recording"
	ActionResumeRecording CallActionKind = "resume_recording"
)

// Valid reports whether a is a defined action.
func (a CallActionKind) Valid() bool {
	return a == ActionDrop || a == ActionStopRecording || a == ActionResumeRecording
}

// MaxCallIDLen bounds call and user ids.
const MaxCallIDLen = 128

// CallAdmission asks, at call setup, what to do with a call.
type CallAdmission struct {
	CallID             string        `json:"call_id"`
	TenantID           string        `json:"tenant_id"`
	UserID             string        `json:"user_id"`
	Direction          CallDirection `json:"direction"`
	RecordingRequested bool          `json:"recording_requested"`
}

// Validate checks an admission request.
func (a *CallAdmission) Validate() error {
	var v validator
	v.add(validateCallID("call_id", a.CallID))
	v.add(ValidateTenantID(a.TenantID))
	v.add(validateCallID("user_id", a.UserID))
	v.add(validateDirection(a.Direction))
	return v.err()
}

// CallDecision answers a CallAdmission: the decision, or Error.
type CallDecision struct {
	CallID   string           `json:"call_id,omitempty"`
	Decision CallDecisionKind `json:"decision,omitempty"`
	// Mode is the key a recording is stored under: customer, fallback or
	// platform; empty when nothing is recorded.
	Mode Mode `json:"mode,omitempty"`
	// Reason says why, as a stable code: covered, the coverage that does
	// not apply (service_not_selected, user_not_licensed, not_enrolled,
	// ...), recording_not_requested, customer_key_unavailable,
	// customer_key_revoked.
	Reason string     `json:"reason,omitempty"`
	Error  *CallError `json:"error,omitempty"`
}

// CallError is a refused admission request.
type CallError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Admission error codes.
const (
	CallErrInvalidRequest = "invalid_request" // undecodable or invalid request; Message names the field
	CallErrUnknownTenant  = "unknown_tenant"  // no configuration for the tenant
	CallErrTenantMismatch = "tenant_mismatch" // the request's tenant is not the subject's
	CallErrNotReady       = "not_ready"       // the instance has not loaded its state yet
)

// CallStarted is published by a phone system when a call starts.
type CallStarted struct {
	CallID    string           `json:"call_id"`
	TenantID  string           `json:"tenant_id"`
	UserID    string           `json:"user_id"`
	Direction CallDirection    `json:"direction"`
	Decision  CallDecisionKind `json:"decision"`
	Mode      Mode             `json:"mode,omitempty"`
	StartedAt time.Time        `json:"started_at"`
}

// Validate checks a CallStarted.
func (e *CallStarted) Validate() error {
	var v validator
	v.add(validateCallID("call_id", e.CallID))
	v.add(ValidateTenantID(e.TenantID))
	v.add(validateCallID("user_id", e.UserID))
	v.add(validateDirection(e.Direction))
	if !e.Decision.Valid() {
		v.add(fieldErr("decision", fmt.Sprintf("%q is not a decision", clip(string(e.Decision))), "use the decision the admission returned: record, record_fallback, no_record or drop"))
	}
	if e.Mode != "" && !e.Mode.Valid() {
		v.add(fieldErr("mode", fmt.Sprintf("%q is not a mode", clip(string(e.Mode))), "use customer, fallback or platform"))
	}
	v.time("started_at", e.StartedAt)
	return v.err()
}

// CallEnded is published by a phone system when a call ends.
type CallEnded struct {
	CallID   string    `json:"call_id"`
	TenantID string    `json:"tenant_id"`
	EndedAt  time.Time `json:"ended_at"`
}

// Validate checks a CallEnded.
func (e *CallEnded) Validate() error {
	var v validator
	v.add(validateCallID("call_id", e.CallID))
	v.add(ValidateTenantID(e.TenantID))
	v.time("ended_at", e.EndedAt)
	return v.err()
}

// CallAction asks a phone system to act on a live call.
type CallAction struct {
	CallID   string         `json:"call_id"`
	TenantID string         `json:"tenant_id"`
	Action   CallActionKind `json:"action"`
	// Reason is the key status change behind it (customer_key_unavailable,
	// customer_key_revoked, customer_key_available).
	Reason string    `json:"reason"`
	KeyURI string    `json:"key_uri,omitempty"`
	At     time.Time `json:"at"`
}

// Validate checks a CallAction.
func (e *CallAction) Validate() error {
	var v validator
	v.add(validateCallID("call_id", e.CallID))
	v.add(ValidateTenantID(e.TenantID))
	if !e.Action.Valid() {
		v.add(fieldErr("action", fmt.Sprintf("%q is not an action", clip(string(e.Action))), "use drop, stop_recording or resume_recording"))
	}
	v.add(validateText("reason", e.Reason, 64, true))
	v.time("at", e.At)
	return v.err()
}

func validateDirection(d CallDirection) error {
	if d.Valid() {
		return nil
	}
	return fieldErr("direction", fmt.Sprintf("%q is not a direction", clip(string(d))), "use inbound or outbound")
}

func validateCallID(field, v string) error {
	if v == "" {
		return fieldErr(field, "is required", "give the phone system's id")
	}
	if len(v) > MaxCallIDLen {
		return fieldErr(field, fmt.Sprintf("is %d bytes long", len(v)), fmt.Sprintf("use at most %d bytes", MaxCallIDLen))
	}
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return fieldErr(field, fmt.Sprintf("%q contains a space or a non-ASCII or control character", clip(v)), "use printable ASCII without spaces")
		}
	}
	return nil
}

// DecodeCallAdmission decodes and validates an admission request.
func DecodeCallAdmission(data []byte) (*CallAdmission, error) {
	return decodeValidated[CallAdmission](TypeCallAdmission, data)
}

// DecodeCallStarted decodes and validates a CallStarted.
func DecodeCallStarted(data []byte) (*CallStarted, error) {
	return decodeValidated[CallStarted](TypeCallStarted, data)
}

// DecodeCallEnded decodes and validates a CallEnded.
func DecodeCallEnded(data []byte) (*CallEnded, error) {
	return decodeValidated[CallEnded](TypeCallEnded, data)
}

// DecodeCallAction decodes and validates a CallAction.
func DecodeCallAction(data []byte) (*CallAction, error) {
	return decodeValidated[CallAction](TypeCallAction, data)
}
