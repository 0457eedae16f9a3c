package kms

import (
	"context"
	"errors"
	"strings"
)

// Code classifies a KMS failure. The set is closed: every error returned by
// a Client, a SeedCache or a provider carries one of the codes below.
type Code string

// The error codes. See the package documentation for how to act on each.
const (
	// CodeEndpointUnreachable: the KMS endpoint did not answer usefully —
	// network error, DNS failure, connection refused, TLS failure, HTTP 5xx,
	// or no answer within the per-call timeout. Counts against the
	// endpoint's circuit breaker; retryable.
	CodeEndpointUnreachable Code = "endpoint_unreachable"
	// CodeThrottled: the KMS refused the call for rate (HTTP 429, AWS
	// ThrottlingException). Retryable with backoff; not an endpoint failure.
	CodeThrottled Code = "throttled"
	// CodeKeyDisabled: the key exists but is disabled, pending deletion or
	// otherwise not enabled. The tenant's state: key unusable.
	CodeKeyDisabled Code = "key_disabled"
	// CodeAccessDenied: our credentials may not use the key (policy, grant,
	// role, missing permission). Key unusable.
	CodeAccessDenied Code = "access_denied"
	// CodeKeyNotFound: the key (or version) does not exist. Key unusable.
	CodeKeyNotFound Code = "key_not_found"
	// CodeInvalidCiphertext: the ciphertext is malformed, was modified,
	// belongs to another key, or the encryption context differs. Permanent.
	CodeInvalidCiphertext Code = "invalid_ciphertext"
	// CodeInvalidArgument: the request is invalid (bad key URI, invalid
	// encryption context, empty plaintext, unregistered scheme). A bug or
	// bad configuration; permanent.
	CodeInvalidArgument Code = "invalid_argument"
	// CodeInternal: anything else — an unexpected provider or SDK error, a
	// provider breaking its contract — and a call abandoned because the
	// caller's context ended (see IsCanceled). Not retried, not an endpoint
	// failure.
	CodeInternal Code = "internal"
)

// Sentinels matched with errors.Is. Each *Error unwraps to the sentinel of
// its code; the three key-level codes also unwrap to ErrKeyUnusable.
var (
	ErrEndpointUnreachable = errors.New("kms: endpoint unreachable")
	ErrThrottled           = errors.New("kms: throttled")
	// ErrKeyUnusable is the class of CodeKeyDisabled, CodeAccessDenied and
	// CodeKeyNotFound: the key cannot be used until the tenant acts, while
	// the endpoint is healthy.
	ErrKeyUnusable       = errors.New("kms: key unusable")
	ErrKeyDisabled       = errors.New("kms: key disabled")
	ErrAccessDenied      = errors.New("kms: access denied")
	ErrKeyNotFound       = errors.New("kms: key not found")
	ErrInvalidCiphertext = errors.New("kms: invalid ciphertext")
	ErrInvalidArgument   = errors.New("kms: invalid argument")
	ErrInternal          = errors.New("kms: internal error")

	// ErrCircuitOpen is matched by the error of a call that a Client's
	// Guard (the endpoint's circuit breaker, package breaker) refused
	// without reaching the rate limiter or the KMS. Such an error has
	// CodeEndpointUnreachable: it is an endpoint failure and retryable, so
	// callers fail over exactly as for an unreachable endpoint.
	ErrCircuitOpen = errors.New("kms: circuit breaker open")

	// ErrRateLimited is matched by the error of a call that the Client's
	// own per-endpoint rate limiter refused without reaching the KMS. Such
	// an error has CodeThrottled.
	ErrRateLimited = errors.New("kms: Keyward's own rate limit")
)

// codes lists every Code in a fixed order (used for counters and tests).
var codes = [...]Code{
	CodeEndpointUnreachable, CodeThrottled, CodeKeyDisabled, CodeAccessDenied,
	CodeKeyNotFound, CodeInvalidCiphertext, CodeInvalidArgument, CodeInternal,
}

// Codes returns every Code of the closed set.
func Codes() []Code { return append([]Code(nil), codes[:]...) }

// index returns the position of c in codes, or the position of CodeInternal
// for an unknown code.
func (c Code) index() int {
	for i, k := range codes {
		if k == c {
			return i
		}
	}
	return len(codes) - 1
}

// Valid reports whether c is one of the defined codes.
func (c Code) Valid() bool {
	for _, k := range codes {
		if k == c {
			return true
		}
	}
	return false
}

// Sentinel returns the sentinel error of c (ErrInternal for unknown codes).
func (c Code) Sentinel() error {
	switch c {
	case CodeEndpointUnreachable:
		return ErrEndpointUnreachable
	case CodeThrottled:
		return ErrThrottled
	case CodeKeyDisabled:
		return ErrKeyDisabled
	case CodeAccessDenied:
		return ErrAccessDenied
	case CodeKeyNotFound:
		return ErrKeyNotFound
	case CodeInvalidCiphertext:
		return ErrInvalidCiphertext
	case CodeInvalidArgument:
		return ErrInvalidArgument
	}
	return ErrInternal
}

func (c Code) keyLevel() bool {
	return c == CodeKeyDisabled || c == CodeAccessDenied || c == CodeKeyNotFound
}

// Error is the error of every KMS operation. Providers map their SDK's errors
// to a Code in one table and return *Error; the Client fills in the fields a
// provider left empty and wraps anything else as CodeInternal.
//
// Its message never contains plaintext, key bytes or ciphertext bytes.
type Error struct {
	Code     Code
	Provider string // key URI scheme: "awskms", "ocikms", "azurekv", "localkms"
	Op       string // "GenerateDataKey", "Encrypt", "Decrypt", ...
	Key      string // canonical key URI; identifies, never secret
	Err      error  // the underlying (SDK) error, or nil
}

// Error returns "kms: <provider> <op> <key>: <code>: <underlying message>",
// leaving out empty parts.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("kms:")
	parts := false
	for _, s := range []string{e.Provider, e.Op, e.Key} {
		if s != "" {
			b.WriteByte(' ')
			b.WriteString(s)
			parts = true
		}
	}
	if parts {
		b.WriteByte(':')
	}
	b.WriteByte(' ')
	code := e.Code
	if code == "" {
		code = CodeInternal
	}
	b.WriteString(string(code))
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the code's sentinel, ErrKeyUnusable for the key-level codes,
// and Err, so errors.Is(err, ErrKeyDisabled), errors.Is(err, ErrKeyUnusable)
// and errors.As(err, &sdkErr) all work.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 3)
	errs = append(errs, e.Code.Sentinel())
	if e.Code.keyLevel() {
		errs = append(errs, ErrKeyUnusable)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// CodeOf returns the Code of err: "" for nil, the Code of the first *Error in
// its chain, and CodeInternal for any other error.
//
// A call abandoned because the caller's context was cancelled or passed its
// deadline is CodeInternal too, but stays distinguishable: it matches
// context.Canceled or context.DeadlineExceeded (IsCanceled reports it), while
// a KMS call that exceeded the Client's own per-call timeout is
// CodeEndpointUnreachable and matches neither. Check IsCanceled before acting
// on the code, so a shutdown is not mistaken for a permanent failure.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		if !e.Code.Valid() {
			return CodeInternal
		}
		return e.Code
	}
	return CodeInternal
}

// IsCanceled reports whether err comes from the caller's context ending
// (context.Canceled or context.DeadlineExceeded): the work was not done and
// should be left for later (redelivery), not dead-lettered nor counted
// against an endpoint.
func IsCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// IsEndpointFailure reports whether err should count against the circuit
// breaker of the key's endpoint: CodeEndpointUnreachable only (timeouts, DNS,
// refused connections, 5xx). Throttling, key-level errors, invalid input and
// the caller's own cancellation do not count.
func IsEndpointFailure(err error) bool {
	return CodeOf(err) == CodeEndpointUnreachable && !IsCanceled(err)
}

// IsCircuitOpen reports whether err comes from a call refused by the
// endpoint's circuit breaker (a Client's Guard) without reaching the KMS.
// Such an error is also CodeEndpointUnreachable (IsEndpointFailure,
// IsRetryable); IsCircuitOpen tells it apart from a call that did reach the
// endpoint and failed.
func IsCircuitOpen(err error) bool { return errors.Is(err, ErrCircuitOpen) }

// IsRateLimited reports whether err comes from a call refused by the
// Client's own per-endpoint rate limiter (CodeThrottled, no KMS request).
func IsRateLimited(err error) bool { return errors.Is(err, ErrRateLimited) }

// IsKeyUnusable reports whether err says the key itself cannot be used
// (CodeKeyDisabled, CodeAccessDenied, CodeKeyNotFound): the tenant's state,
// not the endpoint's.
func IsKeyUnusable(err error) bool { return CodeOf(err).keyLevel() }

// IsRetryable reports whether retrying the same call later may succeed:
// CodeEndpointUnreachable and CodeThrottled.
func IsRetryable(err error) bool {
	c := CodeOf(err)
	return c == CodeEndpointUnreachable || c == CodeThrottled
}
