package keyhealth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
)

// Class is what one probe or observation says about a key.
type Class string

// The classes, in the order of the package documentation's table.
const (
	ClassOK           Class = "ok"
	ClassSlow         Class = "slow"
	ClassThrottled    Class = "throttled"
	ClassUnreachable  Class = "unreachable"
	ClassFailed       Class = "failed"
	ClassKeyUnusable  Class = "key_unusable"
	ClassInconclusive Class = "inconclusive"
)

// Status is the key status a result of class c argues for; KeyStatusUnknown
// for ClassInconclusive (and unknown classes), which argue for nothing.
func (c Class) Status() events.KeyStatus {
	switch c {
	case ClassOK:
		return events.KeyStatusAvailable
	case ClassSlow, ClassThrottled:
		return events.KeyStatusDegraded
	case ClassUnreachable, ClassFailed:
		return events.KeyStatusUnavailable
	case ClassKeyUnusable:
		return events.KeyStatusRevoked
	}
	return events.KeyStatusUnknown
}

// Reasons that are not kms codes.
const (
	// ReasonRoundTripMismatch refines kms.CodeInvalidCiphertext when
	// Decrypt answered, but not with the data key GenerateDataKey made.
	ReasonRoundTripMismatch = "round_trip_mismatch"
)

// Result is one probe or observation, classified.
type Result struct {
	Class Class
	// Reason is "ok", "slow" or a kms code, with ":<provider reason>"
	// where the provider gave one; it becomes KeyStatusChanged.reason.
	Reason string
	// Latency of the probe's round trip (both calls) or the observed call.
	Latency time.Duration
	// Source is events.SourceProbe or events.SourceObservation.
	Source string
	// At is when the result was obtained (the probe's start, the
	// observation's receipt), on the monitor's clock.
	At time.Time
}

// Status is r.Class.Status().
func (r Result) Status() events.KeyStatus { return r.Class.Status() }

// Code is the part of Reason before the colon: "ok", "slow" or a kms code.
// It has bounded cardinality (a metric label).
func (r Result) Code() string {
	code, _, _ := strings.Cut(r.Reason, ":")
	return code
}

// DefaultSlowThreshold is the round-trip latency above which a successful
// probe is "slow": half of kms.DefaultCallTimeout, i.e. a key whose two
// calls take longer than one call may.
const DefaultSlowThreshold = kms.DefaultCallTimeout / 2

// Classifier turns probe errors and observation outcomes into Results.
// The zero value uses DefaultSlowThreshold and no provider reasons.
type Classifier struct {
	// SlowThreshold: a successful round trip slower than this is slow
	// (0: DefaultSlowThreshold).
	SlowThreshold time.Duration
	// Detail returns the provider's reason for a failure, e.g.
	// awskms.ReasonOf(err), or "" (nil: none). A detail that is not a
	// lower-case snake_case token of at most 32 characters, or that
	// repeats the code, is left out.
	Detail func(err error) string
}

func (c Classifier) slow() time.Duration {
	if c.SlowThreshold > 0 {
		return c.SlowThreshold
	}
	return DefaultSlowThreshold
}

// Probe classifies the outcome of the monitor's probe: err nil for a
// round trip that succeeded and matched, else the kms error of the call
// that failed. Source is events.SourceProbe; At is left for the caller.
func (c Classifier) Probe(err error, latency time.Duration) Result {
	r := Result{Latency: latency, Source: events.SourceProbe}
	if err == nil {
		return c.success(r)
	}
	code := kms.CodeOf(err)
	if kms.IsCanceled(err) || kms.IsRateLimited(err) {
		// The probe was abandoned, or refused by this process's own rate
		// limiter: the KMS said nothing about the key.
		r.Class, r.Reason = ClassInconclusive, string(code)
		return r
	}
	r.Class = classOf(code, true)
	r.Reason = c.reason(code, err)
	return r
}

// Mismatch is the Result of a probe whose Decrypt returned another key than
// GenerateDataKey made: the KMS is not behaving as one (unavailable).
func (c Classifier) Mismatch(latency time.Duration) Result {
	return Result{Class: ClassFailed, Reason: string(kms.CodeInvalidCiphertext) + ":" + ReasonRoundTripMismatch,
		Latency: latency, Source: events.SourceProbe}
}

// ErrUnknownOutcome is returned by Outcome for an outcome that is neither
// "ok", "slow" nor a kms code.
var ErrUnknownOutcome = errors.New("keyhealth: unknown outcome")

// Outcome classifies an observation's outcome string ("ok", "slow", a kms
// code, optionally with ":<provider reason>"). Source is
// events.SourceObservation; At is left for the caller. An "ok" slower than
// SlowThreshold is slow, as for a probe.
func (c Classifier) Outcome(outcome string, latency time.Duration) (Result, error) {
	r := Result{Latency: latency, Source: events.SourceObservation}
	code, detail, _ := strings.Cut(outcome, ":")
	switch code {
	case events.OutcomeOK:
		if detail != "" {
			return r, fmt.Errorf("%w %q", ErrUnknownOutcome, outcome)
		}
		return c.success(r), nil
	case events.OutcomeSlow:
		r.Class, r.Reason = ClassSlow, events.OutcomeSlow
		return r, nil
	}
	kc := kms.Code(code)
	if !kc.Valid() {
		return r, fmt.Errorf("%w %q: want ok, slow or a kms error code", ErrUnknownOutcome, outcome)
	}
	r.Class = classOf(kc, false)
	r.Reason = joinReason(code, detail)
	return r, nil
}

func (c Classifier) success(r Result) Result {
	if r.Latency > c.slow() {
		r.Class, r.Reason = ClassSlow, events.OutcomeSlow
	} else {
		r.Class, r.Reason = ClassOK, events.OutcomeOK
	}
	return r
}

func (c Classifier) reason(code kms.Code, err error) string {
	if c.Detail == nil {
		return string(code)
	}
	return joinReason(string(code), c.Detail(err))
}

// classOf maps a kms code. probe says whether the call was the monitor's
// own round trip, whose ciphertext is fresh: then an invalid ciphertext
// means the key cannot do a round trip; in live traffic it says nothing
// about the key.
func classOf(code kms.Code, probe bool) Class {
	switch code {
	case kms.CodeEndpointUnreachable:
		return ClassUnreachable
	case kms.CodeThrottled:
		return ClassThrottled
	case kms.CodeKeyDisabled, kms.CodeAccessDenied, kms.CodeKeyNotFound:
		return ClassKeyUnusable
	case kms.CodeInvalidCiphertext:
		if probe {
			return ClassFailed
		}
	}
	return ClassInconclusive
}

// joinReason appends a provider detail to a code when the detail is a
// token the event schema accepts and says more than the code.
func joinReason(code, detail string) string {
	if detail == "" || detail == code || !validToken(detail) {
		return code
	}
	return code + ":" + detail
}

// validToken matches [a-z][a-z_]{0,31}, a reason part of
// KeyStatusChanged.reason.
func validToken(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}
