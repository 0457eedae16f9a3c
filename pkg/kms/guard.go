package kms

import (
	"errors"
	"fmt"
)

// Guard decides, per call, whether a Client may reach a key's KMS endpoint:
// the circuit breaker of the endpoint. Package breaker implements it with one
// sony/gobreaker breaker per KeyURI.EndpointID; this package only defines the
// contract, so it does not depend on a breaker library.
//
// The Client asks Admit after validating the call and before its rate
// limiter and the provider:
//
//   - If Admit returns an error, the call fails at once with
//     CodeEndpointUnreachable wrapping that error and ErrCircuitOpen
//     (IsCircuitOpen), without waiting for a rate-limiter turn and without
//     reaching the KMS. The error should name the endpoint and when the next
//     trial call is allowed, and never a key id.
//   - Otherwise the Client calls done exactly once, when the call ends, with
//     nil or the call's classified *Error: the guard decides what counts
//     (see IsEndpointFailure, IsCanceled, CodeThrottled).
//
// A Guard is shared by all tenants and keys behind an endpoint and must be
// safe for concurrent use. Admit and done must not block.
type Guard interface {
	Admit(key KeyURI) (done func(err error), err error)
}

// EndpointResetter is a Guard that can be told an endpoint answers again —
// the key-health-monitor confirmed it with its own calls — so it stops
// refusing calls at once instead of after its open timeout. Package
// breaker's Set implements it.
type EndpointResetter interface {
	// ResetEndpoint closes the endpoint's breaker if it is not closed, and
	// reports whether it did.
	ResetEndpoint(endpointID string) bool
}

// EndpointRecovered tells the Client's guard, if it is an
// EndpointResetter, that key's endpoint answers again. It reports whether
// the guard stopped refusing calls because of it.
func (c *Client) EndpointRecovered(key KeyURI) bool {
	r, ok := c.guard.(EndpointResetter)
	return ok && r.ResetEndpoint(key.EndpointID())
}

// WithGuard puts g in front of every call of the Client (default: none).
// A nil g removes the guard.
func WithGuard(g Guard) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.guard = g })
}

// admit asks the Client's guard for a turn. A refusal is an *Error of
// CodeEndpointUnreachable matching ErrCircuitOpen; done is never nil.
func (c *Client) admit(op string, key KeyURI) (done func(error), _ *Error) {
	if c.guard == nil {
		return noDone, nil
	}
	done, err := c.guard.Admit(key)
	if err != nil {
		if !errors.Is(err, ErrCircuitOpen) {
			err = fmt.Errorf("%w: %w", ErrCircuitOpen, err)
		}
		return nil, c.newError(CodeEndpointUnreachable, op, key, err)
	}
	if done == nil {
		done = noDone
	}
	return done, nil
}

func noDone(error) {}
