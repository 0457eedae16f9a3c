// Package breaker keeps one circuit breaker per KMS endpoint, so that when a
// customer's KMS region or vault goes dark Keyward stops waiting on it within
// seconds — and fails over to a replica key, the fallback key or a clean
// rejection — instead of spending a timeout on every asset.
//
//	set := breaker.New(
//	    breaker.WithOnStateChange(func(c breaker.Change) { /* publish events.BreakerStateChanged */ }),
//	    breaker.WithMeterProvider(mp))
//	client := kms.NewClient(kms.WithProvider(...), kms.WithGuard(set))
//
// A Set implements kms.Guard with sony/gobreaker/v2's TwoStepCircuitBreaker.
// Breakers are keyed by kms.KeyURI.EndpointID — provider plus region, vault
// or crypto endpoint, never a key — and created on first use, so every
// tenant and key behind an endpoint shares one breaker, and endpoints are
// independent of each other.
//
// # What counts
//
// Only endpoint failures count against a breaker (kms.IsEndpointFailure):
// no connection, DNS or TLS failure, HTTP 5xx, no answer within the Client's
// per-call timeout. Key-level errors — disabled, pending deletion, access
// denied, not found — and invalid ciphertext or input count as successes:
// the endpoint answered, and one tenant's key must never open the breaker
// for the others. Throttling (the KMS's or Keyward's own rate limiter) is
// neither: the caller backs off, the breaker does not move (gobreaker's
// IsExcluded). A call abandoned because the caller's context ended is not
// counted either. Note that a caller whose deadline is shorter than the
// per-call timeout never produces a timeout failure: its calls to a hanging
// endpoint end as cancellations.
//
// # States
//
// Closed: calls flow. The breaker opens after ConsecutiveFailures endpoint
// failures in a row, or when FailureRatio of the calls counted in a rolling
// Window failed, once at least MinRequests were counted (so 1 failure out of
// 1 call does not trip it, while an endpoint failing every other call does).
// Open: every call fails at once with an *OpenError — through kms.Client a
// *kms.Error of CodeEndpointUnreachable matching kms.ErrCircuitOpen, naming
// the endpoint and the time of the next trial call — without reaching the
// rate limiter or the KMS. After OpenTimeout it turns half-open and lets
// HalfOpenRequests trial calls through: that many successes close it, one
// failure opens it again for another OpenTimeout. So a dead endpoint sees at
// most HalfOpenRequests calls per OpenTimeout from each process.
//
// # Settings and why
//
//	setting              default  why
//	ConsecutiveFailures  5        5 × the 500 ms per-call timeout: sequential callers fail over within 2.5 s
//	FailureRatio         0.5      an endpoint failing every other call is as bad as a dead one for assets
//	MinRequests          10       a ratio over fewer calls is noise: 1 failure of 1 call must not trip
//	Window               10 s     long enough for ≥ 10 calls at modest traffic, short enough to forget old noise
//	OpenTimeout          30 s     a KMS region outage lasts minutes; 30 s bounds the probing to 3 calls per 30 s
//	HalfOpenRequests     3        3 trial calls: one lucky answer does not close it, a dead endpoint costs 3 timeouts
//
// Worked numbers: with kms.DefaultCallTimeout = 500 ms and 5 consecutive
// failures, callers making one call at a time see the breaker open after
// 5 × 500 ms = 2.5 s; concurrent callers fail together, so with 5 or more
// calls in flight it opens after one timeout, about 500 ms. gobreaker's own
// defaults — trip after more than 5 (i.e. 6) consecutive failures, stay open
// 60 s, 1 trial call — with the former 2 s timeout would take 6 × 2 s = 12 s
// or more to open, an outage during which every asset waits 2 s.
//
// The window is rolling (gobreaker's Interval with a BucketPeriod of
// Window/10): calls leave it a tenth at a time. Failures older than Window
// are also forgotten by the consecutive rule.
//
// # Interplay
//
// kms.Client asks the breaker first, then its per-endpoint rate limiter,
// then the provider: a refused call does not take a rate-limiter turn, and a
// call refused by the rate limiter (throttled) does not count. The
// kms.SeedCache sits in front of the Client: while a breaker is open,
// cached seeds keep serving the endpoint's keys without KMS calls, and
// single-flight means many callers share one admitted call. Errors are never
// cached, so the first call after the breaker closes goes to the KMS.
//
// # State changes
//
// WithOnStateChange receives every Change (provider, endpoint, from, to,
// time) in order, one at a time, with no lock held, so it may call State or
// States. gobreaker calls its OnStateChange with the breaker's mutex held
// (State from there would deadlock), so the Set queues changes and delivers
// them once the breaker call has returned. A breaker turns half-open lazily,
// when a call, State or States looks at it after OpenTimeout.
//
// gobreaker reads time.Now itself and has no clock to inject, so the Set
// offers none either: tests use short durations (WithOpenTimeout,
// WithFailureRatio's window).
//
// # Telemetry
//
//	keyward.kms.breaker.state        gauge    {provider, endpoint}            0 closed, 1 half_open, 2 open
//	keyward.kms.breaker.transitions  counter  {provider, endpoint, from, to}
//
// The endpoint label is an EndpointID: one per region, vault or configured
// endpoint, bounded by configuration, never a key or tenant. Calls refused
// by a breaker appear in kms.Client's keyward.kms.calls with
// code="circuit_open" and in ClientStats.CircuitOpen.
package breaker
