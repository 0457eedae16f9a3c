package events

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Event types of re-encryption jobs and of a tenant's key lifecycle
// (rotation, deprovisioning).
const (
	TypeReencryptionProgress  = "dev.keyward.reencrypt.progress.v1"
	TypeReencryptionCompleted = "dev.keyward.reencrypt.completed.v1"
	TypeRotationStarted       = "dev.keyward.lifecycle.rotation_started.v1"
	TypeRotationCompleted     = "dev.keyward.lifecycle.rotation_completed.v1"
	TypeDeprovisionScheduled  = "dev.keyward.lifecycle.deprovision_scheduled.v1"
	TypeDeprovisionCancelled  = "dev.keyward.lifecycle.deprovision_cancelled.v1"
	TypeDeprovisionCompleted  = "dev.keyward.lifecycle.deprovision_completed.v1"
	TypeKeyEnrolled           = "dev.keyward.lifecycle.key_enrolled.v1"
)

// MaxJobKeyURIs bounds the key URI lists of job and lifecycle events (a
// tenant's retired keys, the keys a job moves assets from).
const MaxJobKeyURIs = 64

// JobState is the state of a re-encryption job (a closed set).
type JobState string

const (
	// JobRunning: the job is moving assets.
	JobRunning JobState = "running"
	// JobPaused: the job waits for something outside it (the reason says
	// what, e.g. customer_key_unavailable) and resumes by itself.
	JobPaused JobState = "paused"
	// JobStopped: the job ended without finishing (the reason says why,
	// e.g. customer_key_revoked); assets left stay where they were.
	JobStopped JobState = "stopped"
	// JobCompleted: every asset was handled (done, skipped or failed).
	JobCompleted JobState = "completed"
)

// Valid reports whether s is one of the defined states.
func (s JobState) Valid() bool {
	return s == JobRunning || s == JobPaused || s == JobStopped || s == JobCompleted
}

// ReencryptionProgress is published by the re-encryptor on
// keyward.reencrypt.progress.<tenant> (stream KW_REENCRYPT) while a job runs
// and whenever its state changes. The counters are cumulative since
// StartedAt; Left is what the job still has to do.
type ReencryptionProgress struct {
	TenantID string           `json:"tenant_id"`
	JobID    string           `json:"job_id"`
	Purpose  ReencryptPurpose `json:"purpose"`
	State    JobState         `json:"state"`
	// Reason is a stable snake_case code, required when the job is paused
	// or stopped (e.g. customer_key_unavailable, customer_key_revoked).
	Reason string `json:"reason,omitempty"`
	// Detail is a human explanation, at most MaxDetailLen bytes.
	Detail string `json:"detail,omitempty"`
	// ToKeyURI is the key the job moves assets to; FromKeyURIs the keys it
	// moves them from.
	ToKeyURI    string   `json:"to_key_uri"`
	FromKeyURIs []string `json:"from_key_uris"`
	Done        int64    `json:"done"`
	Skipped     int64    `json:"skipped"`
	Failed      int64    `json:"failed"`
	Left        int64    `json:"left"`
	// Bytes is the plaintext bytes of the assets done.
	Bytes int64 `json:"bytes"`
	// RatePerSecond is assets per second, BytesPerSecond plaintext bytes
	// per second, both over a recent window.
	RatePerSecond  float64 `json:"rate_per_second"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	// ETASeconds is the estimated time to completion; 0 when unknown.
	ETASeconds float64   `json:"eta_seconds"`
	StartedAt  time.Time `json:"started_at"`
	At         time.Time `json:"at"`
}

// ReencryptionCompleted is published by the re-encryptor on
// keyward.reencrypt.completed.<tenant> (stream KW_REENCRYPT) once a job has
// handled every asset.
type ReencryptionCompleted struct {
	TenantID    string           `json:"tenant_id"`
	JobID       string           `json:"job_id"`
	Purpose     ReencryptPurpose `json:"purpose"`
	ToKeyURI    string           `json:"to_key_uri"`
	FromKeyURIs []string         `json:"from_key_uris"`
	Done        int64            `json:"done"`
	Skipped     int64            `json:"skipped"`
	Failed      int64            `json:"failed"`
	Bytes       int64            `json:"bytes"`
	StartedAt   time.Time        `json:"started_at"`
	CompletedAt time.Time        `json:"completed_at"`
}

// RotationStarted is published by the enrollment service on
// keyward.lifecycle.rotation_started.<tenant> (stream KW_LIFECYCLE) once a
// new primary key is enrolled and the old one is retiring. Nats-Msg-Id is
// rotation_started.<tenant>.<KW_TENANTS revision>.
type RotationStarted struct {
	TenantID   string `json:"tenant_id"`
	FromKeyURI string `json:"from_key_uri"`
	ToKeyURI   string `json:"to_key_uri"`
	// ToKeyVersion is the provider key version the enrollment probe used.
	ToKeyVersion string    `json:"to_key_version"`
	StartedAt    time.Time `json:"started_at"`
}

// KeyEnrolled is published by the enrollment service on
// keyward.lifecycle.key_enrolled.<tenant> (stream KW_LIFECYCLE) once a key
// added to the tenant (keyward tenant key add) passed its live round trip
// and is stored. A rotation's new key is announced by RotationStarted
// instead. Nats-Msg-Id is key_enrolled.<tenant>.<KW_TENANTS revision>.
type KeyEnrolled struct {
	TenantID string `json:"tenant_id"`
	KeyURI   string `json:"key_uri"`
	// Role is EnrolledPrimary or EnrolledReplica.
	Role string `json:"role"`
	// KeyVersion is the provider key version the enrollment probe used.
	KeyVersion string    `json:"key_version"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// The roles a key is enrolled in (KeyEnrolled.Role); the same words as
// tenant.RolePrimary and tenant.RoleReplica.
const (
	EnrolledPrimary = "primary"
	EnrolledReplica = "replica"
)

// RotationCompleted is published by the re-encryptor on
// keyward.lifecycle.rotation_completed.<tenant> once every asset has moved
// to ToKeyURI: the retired keys may now be disabled.
type RotationCompleted struct {
	TenantID       string    `json:"tenant_id"`
	JobID          string    `json:"job_id"`
	RetiredKeyURIs []string  `json:"retired_key_uris"`
	ToKeyURI       string    `json:"to_key_uri"`
	Assets         int64     `json:"assets"`
	CompletedAt    time.Time `json:"completed_at"`
}

// DeprovisionScheduled is published by the enrollment service on
// keyward.lifecycle.deprovision_scheduled.<tenant> when a deprovisioning is
// scheduled (or rescheduled) for At. Nats-Msg-Id is
// deprovision_scheduled.<tenant>.<KW_TENANTS revision>.
type DeprovisionScheduled struct {
	TenantID    string    `json:"tenant_id"`
	At          time.Time `json:"at"`
	ScheduledAt time.Time `json:"scheduled_at"`
}

// DeprovisionCancelled is published by the enrollment service on
// keyward.lifecycle.deprovision_cancelled.<tenant> when a scheduled
// deprovisioning (for At) is cancelled before it started.
type DeprovisionCancelled struct {
	TenantID    string    `json:"tenant_id"`
	At          time.Time `json:"at"`
	CancelledAt time.Time `json:"cancelled_at"`
}

// DeprovisionCompleted is published by the re-encryptor on
// keyward.lifecycle.deprovision_completed.<tenant> once every asset of the
// tenant is under the platform key: the tenant may now disable KeyURIs.
type DeprovisionCompleted struct {
	TenantID    string    `json:"tenant_id"`
	JobID       string    `json:"job_id"`
	KeyURIs     []string  `json:"key_uris"`
	Assets      int64     `json:"assets"`
	CompletedAt time.Time `json:"completed_at"`
}

// validator collects field errors.
type validator struct{ errs []error }

func (v *validator) add(err error) {
	if err != nil {
		v.errs = append(v.errs, err)
	}
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) jobID(s string) {
	v.add(validateText("job_id", s, 255, true))
}

func (v *validator) purpose(p ReencryptPurpose) {
	if !p.Valid() {
		v.add(fieldErr("purpose", fmt.Sprintf("%q is not a purpose", clip(string(p))), "use heal, rotation or deprovision"))
	}
}

func (v *validator) count(field string, n int64) {
	if n < 0 {
		v.add(fieldErr(field, fmt.Sprintf("is %d, negative", n), "count assets or bytes from 0"))
	}
}

func (v *validator) rate(field string, f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		v.add(fieldErr(field, fmt.Sprintf("is %v", f), "give a finite number ≥ 0 (0 when unknown)"))
	}
}

func (v *validator) time(field string, t time.Time) {
	if t.IsZero() {
		v.add(fieldErr(field, "is required", "give the time in RFC 3339, e.g. 2026-01-02T15:04:05Z"))
	}
}

// keyList checks a list of key URIs: 1 to MaxJobKeyURIs distinct URIs, none
// equal to notURI (when not empty).
func (v *validator) keyList(field string, uris []string, notURI, notField string) {
	switch {
	case len(uris) == 0:
		v.add(fieldErr(field, "is empty", "name at least one key URI"))
		return
	case len(uris) > MaxJobKeyURIs:
		v.add(fieldErr(field, fmt.Sprintf("has %d key URIs, more than %d", len(uris), MaxJobKeyURIs), "split the job"))
		return
	}
	seen := make(map[string]bool, len(uris))
	for i, u := range uris {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := validateKeyURIField(f, u); err != nil {
			v.add(err)
			continue
		}
		if seen[u] {
			v.add(fieldErr(f, "repeats a key URI", "name each key once"))
		}
		seen[u] = true
		if notURI != "" && u == notURI {
			v.add(fieldErr(f, "is the same as "+notField, "a job moves assets to another key"))
		}
	}
}

// Validate checks every field: the reason is required (a snake_case code)
// when the job is paused or stopped, a completed job has nothing left, the
// counters and rates are not negative, and At is not before StartedAt.
func (e *ReencryptionProgress) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.jobID(e.JobID)
	v.purpose(e.Purpose)
	if !e.State.Valid() {
		v.add(fieldErr("state", fmt.Sprintf("%q is not a job state", clip(string(e.State))), "use running, paused, stopped or completed"))
	}
	switch {
	case e.Reason == "" && (e.State == JobPaused || e.State == JobStopped):
		v.add(fieldErr("reason", "is required when the job is "+string(e.State), "give a snake_case code such as customer_key_unavailable"))
	case e.Reason != "" && !validToken(e.Reason):
		v.add(fieldErr("reason", fmt.Sprintf("%q is not a reason code", clip(e.Reason)), "use a snake_case code of a-z, 0-9 and '_', at most 64 characters"))
	}
	v.add(validateText("detail", e.Detail, MaxDetailLen, false))
	v.add(validateKeyURIField("to_key_uri", e.ToKeyURI))
	v.keyList("from_key_uris", e.FromKeyURIs, e.ToKeyURI, "to_key_uri")
	v.count("done", e.Done)
	v.count("skipped", e.Skipped)
	v.count("failed", e.Failed)
	v.count("left", e.Left)
	v.count("bytes", e.Bytes)
	if e.State == JobCompleted && e.Left != 0 {
		v.add(fieldErr("left", fmt.Sprintf("is %d but the job is completed", e.Left), "a completed job has 0 left"))
	}
	v.rate("rate_per_second", e.RatePerSecond)
	v.rate("bytes_per_second", e.BytesPerSecond)
	v.rate("eta_seconds", e.ETASeconds)
	v.time("started_at", e.StartedAt)
	v.time("at", e.At)
	if !e.StartedAt.IsZero() && e.At.Before(e.StartedAt) {
		v.add(fieldErr("at", "is before started_at", "report progress after the job started"))
	}
	return v.err()
}

// Validate checks every field.
func (e *ReencryptionCompleted) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.jobID(e.JobID)
	v.purpose(e.Purpose)
	v.add(validateKeyURIField("to_key_uri", e.ToKeyURI))
	v.keyList("from_key_uris", e.FromKeyURIs, e.ToKeyURI, "to_key_uri")
	v.count("done", e.Done)
	v.count("skipped", e.Skipped)
	v.count("failed", e.Failed)
	v.count("bytes", e.Bytes)
	v.time("started_at", e.StartedAt)
	v.time("completed_at", e.CompletedAt)
	if !e.StartedAt.IsZero() && e.CompletedAt.Before(e.StartedAt) {
		v.add(fieldErr("completed_at", "is before started_at", "give the time the job completed"))
	}
	return v.err()
}

// Validate checks every field; the two keys must differ.
func (e *RotationStarted) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.add(validateKeyURIField("from_key_uri", e.FromKeyURI))
	v.add(validateKeyURIField("to_key_uri", e.ToKeyURI))
	if e.ToKeyURI != "" && e.ToKeyURI == e.FromKeyURI {
		v.add(fieldErr("to_key_uri", "is the same as from_key_uri", "a rotation moves to another key"))
	}
	v.add(validateText("to_key_version", e.ToKeyVersion, 255, true))
	v.time("started_at", e.StartedAt)
	return v.err()
}

// Validate checks every field; the role is primary or replica.
func (e *KeyEnrolled) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.add(validateKeyURIField("key_uri", e.KeyURI))
	if e.Role != EnrolledPrimary && e.Role != EnrolledReplica {
		v.add(fieldErr("role", fmt.Sprintf("%q is not an enrollment role", clip(e.Role)), "use primary or replica"))
	}
	v.add(validateText("key_version", e.KeyVersion, 255, true))
	v.time("enrolled_at", e.EnrolledAt)
	return v.err()
}

// Validate checks every field; no retired key is the new key.
func (e *RotationCompleted) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.jobID(e.JobID)
	v.add(validateKeyURIField("to_key_uri", e.ToKeyURI))
	v.keyList("retired_key_uris", e.RetiredKeyURIs, e.ToKeyURI, "to_key_uri")
	v.count("assets", e.Assets)
	v.time("completed_at", e.CompletedAt)
	return v.err()
}

// Validate checks every field. At may be before ScheduledAt (a
// deprovisioning that starts at once).
func (e *DeprovisionScheduled) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.time("at", e.At)
	v.time("scheduled_at", e.ScheduledAt)
	return v.err()
}

// Validate checks every field.
func (e *DeprovisionCancelled) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.time("at", e.At)
	v.time("cancelled_at", e.CancelledAt)
	return v.err()
}

// Validate checks every field.
func (e *DeprovisionCompleted) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	v.jobID(e.JobID)
	v.keyList("key_uris", e.KeyURIs, "", "")
	v.count("assets", e.Assets)
	v.time("completed_at", e.CompletedAt)
	return v.err()
}

// decodeValidated decodes data strictly into a new T and validates it. The
// error matches ErrUndecodable or ErrInvalid.
func decodeValidated[T any, PT interface {
	*T
	Validate() error
}](typ string, data []byte) (*T, error) {
	e := PT(new(T))
	if err := Decode(typ, data, e); err != nil {
		return nil, err
	}
	return (*T)(e), e.Validate()
}

// DecodeReencryptionProgress decodes and validates a ReencryptionProgress
// event. The error matches ErrUndecodable or ErrInvalid.
func DecodeReencryptionProgress(data []byte) (*ReencryptionProgress, error) {
	return decodeValidated[ReencryptionProgress](TypeReencryptionProgress, data)
}

// DecodeReencryptionCompleted decodes and validates a ReencryptionCompleted
// event. The error matches ErrUndecodable or ErrInvalid.
func DecodeReencryptionCompleted(data []byte) (*ReencryptionCompleted, error) {
	return decodeValidated[ReencryptionCompleted](TypeReencryptionCompleted, data)
}

// DecodeRotationStarted decodes and validates a RotationStarted event. The
// error matches ErrUndecodable or ErrInvalid.
func DecodeRotationStarted(data []byte) (*RotationStarted, error) {
	return decodeValidated[RotationStarted](TypeRotationStarted, data)
}

// DecodeKeyEnrolled decodes and validates a KeyEnrolled event. The error
// matches ErrUndecodable or ErrInvalid.
func DecodeKeyEnrolled(data []byte) (*KeyEnrolled, error) {
	return decodeValidated[KeyEnrolled](TypeKeyEnrolled, data)
}

// DecodeRotationCompleted decodes and validates a RotationCompleted event.
// The error matches ErrUndecodable or ErrInvalid.
func DecodeRotationCompleted(data []byte) (*RotationCompleted, error) {
	return decodeValidated[RotationCompleted](TypeRotationCompleted, data)
}

// DecodeDeprovisionScheduled decodes and validates a DeprovisionScheduled
// event. The error matches ErrUndecodable or ErrInvalid.
func DecodeDeprovisionScheduled(data []byte) (*DeprovisionScheduled, error) {
	return decodeValidated[DeprovisionScheduled](TypeDeprovisionScheduled, data)
}

// DecodeDeprovisionCancelled decodes and validates a DeprovisionCancelled
// event. The error matches ErrUndecodable or ErrInvalid.
func DecodeDeprovisionCancelled(data []byte) (*DeprovisionCancelled, error) {
	return decodeValidated[DeprovisionCancelled](TypeDeprovisionCancelled, data)
}

// DecodeDeprovisionCompleted decodes and validates a DeprovisionCompleted
// event. The error matches ErrUndecodable or ErrInvalid.
func DecodeDeprovisionCompleted(data []byte) (*DeprovisionCompleted, error) {
	return decodeValidated[DeprovisionCompleted](TypeDeprovisionCompleted, data)
}
