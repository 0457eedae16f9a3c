package events

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Event types of key health.
const (
	TypeKeyStatusChanged    = "dev.keyward.key.status.changed.v1"
	TypeKeyObserved         = "dev.keyward.key.observed.v1"
	TypeBreakerStateChanged = "dev.keyward.kms.breaker.changed.v1"
)

// MaxKeyURILen bounds key URIs in events (kms.MaxKeyURILen; repeated here
// so events does not depend on kms).
const MaxKeyURILen = 1024

// Probe and observation outcomes: "ok", "slow", or a kms error code.
const (
	OutcomeOK   = "ok"
	OutcomeSlow = "slow"
)

// Sources of a key status change.
const (
	SourceProbe       = "probe"       // the key-health-monitor's own probe
	SourceObservation = "observation" // a KMS call in live traffic, reported by a worker
)

// KeyStatusChanged is published by the key-health-monitor on
// keyward.key.status.<tenant> (stream KW_KEYS) for every transition of a
// key's status; the current status is also in KV KW_KEY_STATUS.
type KeyStatusChanged struct {
	TenantID string    `json:"tenant_id"`
	KeyURI   string    `json:"key_uri"`
	Status   KeyStatus `json:"status"`
	// Previous is the status before the change; absent for a key's first
	// status.
	Previous KeyStatus `json:"previous,omitempty"`
	// Reason is the outcome that caused the change: "ok", "slow", or a kms
	// error code such as "endpoint_unreachable" or "key_disabled", with the
	// provider's reason after a colon where it has one
	// ("key_disabled:key_pending_deletion").
	Reason string `json:"reason"`
	// Since is when the key entered Status.
	Since time.Time `json:"since"`
	// LatencyMS is the duration of the call that decided the change.
	LatencyMS float64 `json:"latency_ms"`
	// Source says whether a probe or an observed live call decided it.
	Source string `json:"source"`
}

// KeyObserved is what a worker saw when it used a customer key in live
// traffic, published (core NATS, not stored) on keyward.key.observed.<tenant>
// for the key-health-monitor, which counts it like a probe result. Workers
// report failures (and the first success after one), never every call.
type KeyObserved struct {
	TenantID string `json:"tenant_id"`
	KeyURI   string `json:"key_uri"`
	// Op is the KMS operation: GenerateDataKey, Encrypt or Decrypt.
	Op string `json:"op"`
	// Outcome is "ok" or a kms error code.
	Outcome    string    `json:"outcome"`
	LatencyMS  float64   `json:"latency_ms"`
	Worker     string    `json:"worker"`
	ObservedAt time.Time `json:"observed_at"`
}

// BreakerStateChanged is published on keyward.kms.breaker.<provider> (stream
// KW_KEYS) when a worker's circuit breaker for a KMS endpoint changes state.
// Endpoint is the key URI's endpoint id (a region or vault; never a key).
type BreakerStateChanged struct {
	Provider string    `json:"provider"`
	Endpoint string    `json:"endpoint"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Worker   string    `json:"worker"`
	At       time.Time `json:"at"`
}

var (
	outcomeRe = regexp.MustCompile(`^[a-z][a-z_]{0,31}(:[a-z][a-z_]{0,31})?$`)
	opRe      = regexp.MustCompile(`^[A-Za-z]{1,32}$`)
	stateRe   = regexp.MustCompile(`^(closed|open|half_open)$`)
	schemeRe  = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)
)

func validateKeyURIField(field, s string) error {
	if err := validateText(field, s, MaxKeyURILen, true); err != nil {
		return err
	}
	return nil
}

// Validate checks every field.
func (e *KeyStatusChanged) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(ValidateTenantID(e.TenantID))
	add(validateKeyURIField("key_uri", e.KeyURI))
	if !e.Status.Valid() || e.Status == KeyStatusUnknown {
		add(fieldErr("status", fmt.Sprintf("%q is not a key status", clip(string(e.Status))), "use available, degraded, unavailable or revoked"))
	}
	if !e.Previous.Valid() {
		add(fieldErr("previous", fmt.Sprintf("%q is not a key status", clip(string(e.Previous))), "use available, degraded, unavailable or revoked, or leave it out"))
	}
	if !outcomeRe.MatchString(e.Reason) {
		add(fieldErr("reason", fmt.Sprintf("%q is not an outcome", clip(e.Reason)), `use "ok", "slow" or a kms error code`))
	}
	if e.Since.IsZero() {
		add(fieldErr("since", "is required", ""))
	}
	if e.LatencyMS < 0 {
		add(fieldErr("latency_ms", "is negative", ""))
	}
	if e.Source != SourceProbe && e.Source != SourceObservation {
		add(fieldErr("source", fmt.Sprintf("%q is not a source", clip(e.Source)), `use "probe" or "observation"`))
	}
	return errors.Join(errs...)
}

// Validate checks every field.
func (e *KeyObserved) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(ValidateTenantID(e.TenantID))
	add(validateKeyURIField("key_uri", e.KeyURI))
	if !opRe.MatchString(e.Op) {
		add(fieldErr("op", fmt.Sprintf("%q is not a KMS operation", clip(e.Op)), "use GenerateDataKey, Encrypt or Decrypt"))
	}
	if !outcomeRe.MatchString(e.Outcome) {
		add(fieldErr("outcome", fmt.Sprintf("%q is not an outcome", clip(e.Outcome)), `use "ok" or a kms error code`))
	}
	if e.LatencyMS < 0 {
		add(fieldErr("latency_ms", "is negative", ""))
	}
	add(validateText("worker", e.Worker, 128, true))
	if e.ObservedAt.IsZero() {
		add(fieldErr("observed_at", "is required", ""))
	}
	return errors.Join(errs...)
}

// Validate checks every field.
func (e *BreakerStateChanged) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !schemeRe.MatchString(e.Provider) {
		add(fieldErr("provider", fmt.Sprintf("%q is not a provider", clip(e.Provider)), "use awskms, ocikms, azurekv or localkms"))
	}
	add(validateText("endpoint", e.Endpoint, MaxKeyURILen, true))
	for _, f := range []struct{ name, v string }{{"from", e.From}, {"to", e.To}} {
		if !stateRe.MatchString(f.v) {
			add(fieldErr(f.name, fmt.Sprintf("%q is not a breaker state", clip(f.v)), "use closed, open or half_open"))
		}
	}
	add(validateText("worker", e.Worker, 128, true))
	if e.At.IsZero() {
		add(fieldErr("at", "is required", ""))
	}
	return errors.Join(errs...)
}

// DecodeKeyStatusChanged decodes and validates a KeyStatusChanged event.
func DecodeKeyStatusChanged(data []byte) (*KeyStatusChanged, error) {
	var e KeyStatusChanged
	if err := Decode(TypeKeyStatusChanged, data, &e); err != nil {
		return nil, err
	}
	return &e, e.Validate()
}

// DecodeKeyObserved decodes and validates a KeyObserved report (untrusted:
// any client on the subject can publish one).
func DecodeKeyObserved(data []byte) (*KeyObserved, error) {
	var e KeyObserved
	if err := Decode(TypeKeyObserved, data, &e); err != nil {
		return nil, err
	}
	return &e, e.Validate()
}

// DecodeBreakerStateChanged decodes and validates a BreakerStateChanged event.
func DecodeBreakerStateChanged(data []byte) (*BreakerStateChanged, error) {
	var e BreakerStateChanged
	if err := Decode(TypeBreakerStateChanged, data, &e); err != nil {
		return nil, err
	}
	return &e, e.Validate()
}
