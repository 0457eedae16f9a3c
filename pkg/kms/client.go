package kms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/time/rate"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// DefaultCallTimeout bounds one KMS call made through a Client unless
// WithCallTimeout says otherwise. A KMS answers a healthy Encrypt, Decrypt or
// GenerateDataKey in milliseconds to tens of milliseconds; 500 ms leaves room
// for one quick SDK retry while keeping failover fast: a call to a dead
// endpoint costs at most 500 ms, and the endpoint's circuit breaker (package
// breaker: 5 consecutive failures) opens within 2.5 s even for strictly
// sequential callers. The rate limiter's wait for a turn is bounded by the
// same duration.
const DefaultCallTimeout = 500 * time.Millisecond

// Bounds checked by the Client before a call reaches a provider.
const (
	// MaxPlaintextLen is the largest plaintext Encrypt accepts (AWS KMS's
	// limit). Providers may accept less (Azure RSA key wrap: about 190
	// bytes); Keyward wraps only DataKeySize-byte seeds.
	MaxPlaintextLen = 4096
	// MaxCiphertextLen is the largest ciphertext Decrypt accepts; longer
	// input is CodeInvalidCiphertext without a KMS call.
	MaxCiphertextLen = 64 << 10
)

// instrumentationName is the OpenTelemetry scope of the Client's and the
// SeedCache's spans and metrics.
const instrumentationName = "github.com/keyward/keyward/pkg/kms"

// Outcome label values besides the codes.
const (
	outcomeOK          = "ok"
	outcomeCanceled    = "canceled"
	outcomeCircuitOpen = "circuit_open"
)

// errCallTimeout is the cause of a per-call context that ran out.
var errCallTimeout = errors.New("kms: per-call timeout")

// Client is the portable KMS layer over providers: it dispatches by key URI
// scheme, validates input, asks the endpoint's circuit breaker (WithGuard),
// waits for the endpoint's rate limiter, bounds each call with a timeout,
// turns every failure into an *Error with a Code, and records a span and
// metrics per call. It implements Provider itself, so it can be wrapped (and
// tested with the same conformance suite). It is safe for concurrent use.
type Client struct {
	providers map[string]Provider
	limiters  limiters
	guard     Guard
	timeout   time.Duration
	tracer    trace.Tracer
	calls     metric.Int64Counter
	duration  metric.Float64Histogram
	stats     clientCounters
}

var _ Provider = (*Client)(nil)

// ClientOption configures NewClient.
type ClientOption interface{ applyClient(*clientConfig) }

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyClient(c *clientConfig) { f(c) }

type clientConfig struct {
	providers map[string]Provider
	limits    map[string]RateLimit
	guard     Guard
	timeout   time.Duration
	mp        metric.MeterProvider
	tp        trace.TracerProvider
}

// WithProvider registers p for key URIs of scheme (SchemeAWS, SchemeOCI,
// SchemeAzure, SchemeLocal). A later registration of the same scheme wins;
// a nil p removes the scheme.
func WithProvider(scheme string, p Provider) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if p == nil {
			delete(c.providers, scheme)
			return
		}
		c.providers[scheme] = p
	})
}

// WithCallTimeout bounds each KMS call (default DefaultCallTimeout). A call
// that exceeds it fails with CodeEndpointUnreachable. d <= 0 keeps the
// default: a KMS call is never unbounded.
func WithCallTimeout(d time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// MeterProviderOption sets the OpenTelemetry meter provider; it is both a
// ClientOption and a SeedCacheOption.
type MeterProviderOption struct{ mp metric.MeterProvider }

// WithMeterProvider sets where metrics go, for NewClient and NewSeedCache
// alike (default otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) MeterProviderOption {
	return MeterProviderOption{mp: mp}
}

func (o MeterProviderOption) applyClient(c *clientConfig)        { c.mp = o.mp }
func (o MeterProviderOption) applySeedCache(c *seedCacheOptions) { c.mp = o.mp }

// WithTracerProvider sets where spans go (default otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.tp = tp })
}

// NewClient returns a Client with the given providers and options.
func NewClient(opts ...ClientOption) *Client {
	cfg := clientConfig{providers: map[string]Provider{}, limits: DefaultRateLimits(), timeout: DefaultCallTimeout}
	for _, o := range opts {
		if o != nil {
			o.applyClient(&cfg)
		}
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	if cfg.tp == nil {
		cfg.tp = otel.GetTracerProvider()
	}
	meter := cfg.mp.Meter(instrumentationName)
	c := &Client{
		providers: cfg.providers,
		limiters:  limiters{limits: cfg.limits, byEnd: map[string]*rate.Limiter{}},
		guard:     cfg.guard,
		timeout:   cfg.timeout,
		tracer:    cfg.tp.Tracer(instrumentationName),
	}
	// Instrument creation only fails on invalid names or options, which are
	// constants here; the returned instruments are usable (no-op) even then.
	c.calls, _ = meter.Int64Counter("keyward.kms.calls",
		metric.WithDescription("KMS calls made through kms.Client, by provider, operation and outcome code (ok, canceled, circuit_open or an error code)."),
		metric.WithUnit("{call}"))
	c.duration, _ = meter.Float64Histogram("keyward.kms.call.duration",
		metric.WithDescription("Duration of KMS calls made through kms.Client."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	return c
}

// GenerateDataKey returns a fresh DataKeySize-byte key and its ciphertext
// under key, bound to ec. The caller must Destroy the plaintext.
func (c *Client) GenerateDataKey(ctx context.Context, key KeyURI, ec EncryptionContext) (*DataKey, error) {
	return invoke(c, ctx, OpGenerateDataKey, key, ec, nil,
		func(ctx context.Context, p Provider, ec EncryptionContext) (*DataKey, error) {
			return p.GenerateDataKey(ctx, key, ec)
		},
		func(dk *DataKey) error {
			switch {
			case dk == nil:
				return errors.New("provider returned no data key and no error")
			case dk.Plaintext.Len() != DataKeySize:
				return fmt.Errorf("provider returned a %d-byte data key, want %d", dk.Plaintext.Len(), DataKeySize)
			case len(dk.Ciphertext) == 0:
				return errors.New("provider returned an empty data key ciphertext")
			case dk.KeyVersion == "":
				return errors.New("provider returned no key version")
			}
			return nil
		},
		func(dk *DataKey) { dk.Destroy() },
		func(dk *DataKey) string { return dk.KeyVersion })
}

// Encrypt wraps plaintext (1 to MaxPlaintextLen bytes) under key, bound to ec.
func (c *Client) Encrypt(ctx context.Context, key KeyURI, plaintext *Secret, ec EncryptionContext) (*Wrapped, error) {
	// The provider gets its own copy: a provider that overruns its timeout
	// must not read the caller's Secret after the caller destroyed it. The
	// copy is destroyed by whoever claims it last: the call, or this
	// function if the call never started.
	pt := plaintext.Clone()
	var claimed atomic.Bool
	defer func() {
		if claimed.CompareAndSwap(false, true) {
			pt.Destroy()
		}
	}()
	return invoke(c, ctx, OpEncrypt, key, ec,
		func() (Code, error) {
			switch n := plaintext.Len(); {
			case n == 0:
				return CodeInvalidArgument, errors.New("plaintext is empty or destroyed")
			case n > MaxPlaintextLen:
				return CodeInvalidArgument, fmt.Errorf("plaintext is %d bytes, at most %d allowed", n, MaxPlaintextLen)
			}
			return "", nil
		},
		func(ctx context.Context, p Provider, ec EncryptionContext) (*Wrapped, error) {
			if !claimed.CompareAndSwap(false, true) {
				return nil, errors.New("call started after it was abandoned")
			}
			defer pt.Destroy()
			return p.Encrypt(ctx, key, pt, ec)
		},
		func(w *Wrapped) error {
			switch {
			case w == nil:
				return errors.New("provider returned no ciphertext and no error")
			case len(w.Ciphertext) == 0:
				return errors.New("provider returned an empty ciphertext")
			case w.KeyVersion == "":
				return errors.New("provider returned no key version")
			}
			return nil
		},
		nil,
		func(w *Wrapped) string { return w.KeyVersion })
}

// Decrypt unwraps ciphertext under key, bound to ec. The caller must Destroy
// the result.
func (c *Client) Decrypt(ctx context.Context, key KeyURI, ciphertext []byte, ec EncryptionContext) (*Secret, error) {
	// The provider gets its own copy, as for Encrypt (length checked below).
	ct := ciphertext
	if len(ct) <= MaxCiphertextLen {
		ct = bytes.Clone(ciphertext)
	}
	return invoke(c, ctx, OpDecrypt, key, ec,
		func() (Code, error) {
			switch n := len(ciphertext); {
			case n == 0:
				return CodeInvalidCiphertext, errors.New("ciphertext is empty")
			case n > MaxCiphertextLen:
				return CodeInvalidCiphertext, fmt.Errorf("ciphertext is %d bytes, at most %d allowed", n, MaxCiphertextLen)
			}
			return "", nil
		},
		func(ctx context.Context, p Provider, ec EncryptionContext) (*Secret, error) {
			return p.Decrypt(ctx, key, ct, ec)
		},
		func(s *Secret) error {
			if s.Len() == 0 {
				return errors.New("provider returned an empty plaintext and no error")
			}
			return nil
		},
		func(s *Secret) { s.Destroy() },
		nil)
}

// invoke runs one provider call with validation, timeout, classification and
// telemetry. check validates op-specific input; valid checks a successful
// result (a failure destroys it and becomes CodeInternal); destroy releases a
// result nobody will receive; version reports the key version for the span.
func invoke[T any](c *Client, ctx context.Context, op string, key KeyURI, ec EncryptionContext,
	check func() (Code, error),
	call func(context.Context, Provider, EncryptionContext) (T, error),
	valid func(T) error,
	destroy func(T),
	version func(T) string,
) (T, error) {
	var zero T
	start := time.Now()
	provider := providerLabel(key.Scheme)
	ctx, span := c.tracer.Start(ctx, "kms."+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("kms.provider", provider),
			attribute.String("kms.operation", op),
			attribute.String("kms.endpoint", key.EndpointID()),
			attribute.String("kms.key_uri", key.String()),
		))
	defer span.End()

	res, err := runCall(c, ctx, op, key, ec, check, call, destroy)
	if err == nil {
		if verr := valid(res); verr != nil {
			if destroy != nil {
				destroy(res)
			}
			res, err = zero, c.newError(CodeInternal, op, key, verr)
		}
	}

	outcome := outcomeOK
	switch {
	case err == nil:
		if version != nil {
			span.SetAttributes(attribute.String("kms.key_version", version(res)))
		}
	case ctx.Err() != nil && IsCanceled(err) && CodeOf(err) == CodeInternal:
		outcome = outcomeCanceled
		c.stats.canceled.Add(1)
	case IsCircuitOpen(err):
		// Refused by the endpoint's breaker: its own outcome label, so a
		// dashboard tells calls that failed at the KMS from calls never
		// sent; still counted under its code in Stats().Failures.
		outcome = outcomeCircuitOpen
		c.stats.circuitOpen.Add(1)
		c.stats.failures[CodeOf(err).index()].Add(1)
	default:
		outcome = string(CodeOf(err))
		c.stats.failures[CodeOf(err).index()].Add(1)
	}
	c.stats.calls.Add(1)
	c.stats.byOp[opIndex(op)].Add(1)
	span.SetAttributes(attribute.String("kms.outcome", outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, outcome)
	}
	mctx := context.WithoutCancel(ctx)
	c.calls.Add(mctx, 1, metric.WithAttributes(
		attribute.String("provider", provider),
		attribute.String("op", op),
		attribute.String("code", outcome),
	))
	c.duration.Record(mctx, time.Since(start).Seconds(), metric.WithAttributes(
		attribute.String("provider", provider),
		attribute.String("op", op),
	))
	if err != nil {
		return zero, err
	}
	return res, nil
}

type callResult[T any] struct {
	v   T
	err error
}

// runCall validates, asks the guard, waits for the rate limiter, dispatches
// and classifies; every error it returns is an *Error. The guard hears the
// outcome of every call it admitted, when runCall returns.
func runCall[T any](c *Client, ctx context.Context, op string, key KeyURI, ec EncryptionContext,
	check func() (Code, error),
	call func(context.Context, Provider, EncryptionContext) (T, error),
	destroy func(T),
) (_ T, err error) {
	var zero T
	if key.IsZero() || key.KeyID == "" {
		return zero, c.newError(CodeInvalidArgument, op, key, errors.New("key URI is empty"))
	}
	p, ok := c.providers[key.Scheme]
	if !ok {
		return zero, c.newError(CodeInvalidArgument, op, key, fmt.Errorf(
			"no provider registered for key URI scheme %q: register one with kms.WithProvider(%q, provider) when calling kms.NewClient",
			key.Scheme, key.Scheme))
	}
	if err := ec.Validate(); err != nil {
		return zero, c.newError(CodeInvalidArgument, op, key, err)
	}
	if check != nil {
		if code, err := check(); err != nil {
			return zero, c.newError(code, op, key, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return zero, c.canceledError(op, key, ctx)
	}
	report, refused := c.admit(op, key)
	if refused != nil {
		return zero, refused
	}
	defer func() { report(err) }()
	if err := c.waitTurn(ctx, op, key); err != nil {
		return zero, err
	}

	callCtx, cancel := context.WithTimeoutCause(ctx, c.timeout, errCallTimeout)
	defer cancel()
	done := make(chan callResult[T], 1)
	ecCopy := ec.Clone() // the caller may change its map once we return
	go func() {
		v, err := call(callCtx, p, ecCopy)
		done <- callResult[T]{v, err}
	}()
	var r callResult[T]
	select {
	case r = <-done:
	case <-callCtx.Done():
		// The provider did not honour its context in time. Answer now;
		// release whatever it returns later.
		go func() {
			if late := <-done; late.err == nil && destroy != nil {
				destroy(late.v)
			}
		}()
		r.err = context.Cause(callCtx)
	}
	if r.err == nil {
		return r.v, nil
	}
	return zero, c.classify(ctx, callCtx, op, key, r.err)
}

// classify turns a provider error into an *Error: the caller's ended context
// first, then the per-call timeout, then the provider's own *Error, then
// CodeInternal.
func (c *Client) classify(ctx, callCtx context.Context, op string, key KeyURI, err error) *Error {
	if ctx.Err() != nil {
		return c.canceledError(op, key, ctx)
	}
	if errors.Is(context.Cause(callCtx), errCallTimeout) {
		return c.newError(CodeEndpointUnreachable, op, key, timeoutError(c.timeout, err))
	}
	var ke *Error
	if errors.As(err, &ke) {
		code := ke.Code
		if !code.Valid() {
			code = CodeInternal
		}
		if ke == err { // the provider's own *Error: fill in what it left out
			e := *ke
			e.Code = code
			if e.Provider == "" {
				e.Provider = key.Scheme
			}
			if e.Op == "" {
				e.Op = op
			}
			if e.Key == "" {
				e.Key = key.String()
			}
			return &e
		}
		return c.newError(code, op, key, err)
	}
	return c.newError(CodeInternal, op, key, err)
}

// timeoutError describes a per-call timeout without matching
// context.DeadlineExceeded, which is reserved for the caller's own deadline.
// An SDK error that is not a context error stays reachable with errors.As.
func timeoutError(d time.Duration, err error) error {
	if err == nil || IsCanceled(err) || errors.Is(err, errCallTimeout) {
		return fmt.Errorf("no answer within the %v call timeout", d)
	}
	return fmt.Errorf("no answer within the %v call timeout: %w", d, err)
}

func (c *Client) newError(code Code, op string, key KeyURI, err error) *Error {
	return &Error{Code: code, Provider: key.Scheme, Op: op, Key: key.String(), Err: err}
}

// canceledError is the error of a call abandoned because ctx ended: it
// matches ctx.Err() (context.Canceled or context.DeadlineExceeded).
func (c *Client) canceledError(op string, key KeyURI, ctx context.Context) *Error {
	return &Error{Code: CodeInternal, Provider: key.Scheme, Op: op, Key: key.String(), Err: CanceledCause(ctx)}
}

// CanceledCause returns the error for a call abandoned because ctx ended: it
// matches ctx.Err() and mentions context.Cause(ctx) when that says more.
// Providers may use it to report cancellation consistently.
func CanceledCause(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("caller's context ended: %w (%v)", err, cause)
	}
	return fmt.Errorf("caller's context ended: %w", err)
}

// providerLabel bounds the "provider" metric label to the known schemes.
func providerLabel(scheme string) string {
	switch scheme {
	case SchemeLocal, SchemeAWS, SchemeOCI, SchemeAzure:
		return scheme
	}
	return "unknown"
}

var ops = [...]string{OpGenerateDataKey, OpEncrypt, OpDecrypt}

func opIndex(op string) int {
	for i, o := range ops {
		if o == op {
			return i
		}
	}
	return 0
}

type clientCounters struct {
	calls       atomic.Int64
	byOp        [len(ops)]atomic.Int64
	failures    [len(codes)]atomic.Int64
	canceled    atomic.Int64
	limited     atomic.Int64
	circuitOpen atomic.Int64
}

// ClientStats counts the calls made through a Client since NewClient. Every
// call is counted, including those refused before reaching a provider
// (CodeInvalidArgument); benchmarks divide Calls by assets to report KMS
// calls per asset.
type ClientStats struct {
	Calls int64 // all calls

	// Calls per operation.
	GenerateDataKey, Encrypt, Decrypt int64

	Failures map[Code]int64 // failed calls by code (codes with no failure are absent)
	Canceled int64          // calls abandoned because the caller's context ended (not in Failures)
	// RateLimited counts calls refused by Keyward's own per-endpoint rate
	// limiter without reaching the KMS (also counted in Failures as throttled).
	RateLimited int64
	// CircuitOpen counts calls refused by the endpoint's circuit breaker
	// (WithGuard) without reaching the rate limiter or the KMS (also counted
	// in Failures as endpoint_unreachable; outcome "circuit_open" in the
	// keyward.kms.calls metric).
	CircuitOpen int64
}

// Stats returns a snapshot of the call counters.
func (c *Client) Stats() ClientStats {
	s := ClientStats{
		Calls:           c.stats.calls.Load(),
		GenerateDataKey: c.stats.byOp[0].Load(),
		Encrypt:         c.stats.byOp[1].Load(),
		Decrypt:         c.stats.byOp[2].Load(),
		Failures:        map[Code]int64{},
		Canceled:        c.stats.canceled.Load(),
		RateLimited:     c.stats.limited.Load(),
		CircuitOpen:     c.stats.circuitOpen.Load(),
	}
	for i, code := range codes {
		if n := c.stats.failures[i].Load(); n > 0 {
			s.Failures[code] = n
		}
	}
	return s
}
