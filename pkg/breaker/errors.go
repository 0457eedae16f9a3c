package breaker

import (
	"fmt"
	"time"

	"github.com/keyward/keyward/pkg/kms"
)

// OpenError is the error of a call refused by an endpoint's breaker. It
// matches kms.ErrCircuitOpen; kms.Client wraps it in a *kms.Error of
// kms.CodeEndpointUnreachable (kms.IsCircuitOpen). It names the endpoint,
// never a key.
type OpenError struct {
	Provider string // key URI scheme
	Endpoint string // kms.KeyURI.EndpointID
	// State is Open, or HalfOpen when every trial call is taken.
	State State
	// RetryAt is when the open breaker lets the next trial calls through;
	// zero while half-open (the trial calls in flight decide).
	RetryAt time.Time
	// Trials is the number of trial calls a half-open breaker lets through.
	Trials int

	now time.Time // when the call was refused (for the message)
}

func (e *OpenError) Error() string {
	if e.State == HalfOpen {
		return fmt.Sprintf("circuit breaker of KMS endpoint %s is half-open and its %d trial calls are taken: the next calls go through once they succeed",
			e.Endpoint, e.Trials)
	}
	if e.RetryAt.IsZero() {
		return fmt.Sprintf("circuit breaker of KMS endpoint %s is open", e.Endpoint)
	}
	wait := max(e.RetryAt.Sub(e.now), 0).Round(time.Millisecond)
	return fmt.Sprintf("circuit breaker of KMS endpoint %s is open: next trial call at %s (in %v)",
		e.Endpoint, e.RetryAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), wait)
}

// Is reports whether target is kms.ErrCircuitOpen.
func (e *OpenError) Is(target error) bool { return target == kms.ErrCircuitOpen }
