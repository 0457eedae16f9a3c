package breaker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/kms"
)

// instrumentationName is the OpenTelemetry scope of the metrics.
const instrumentationName = "github.com/keyward/keyward/pkg/breaker"

// State is the state of one endpoint's breaker. The strings are those of
// events.BreakerStateChanged.
type State string

// The states.
const (
	// Closed: calls flow; failures are counted.
	Closed State = "closed"
	// Open: every call is refused until OpenTimeout has passed.
	Open State = "open"
	// HalfOpen: up to HalfOpenRequests trial calls go through; as many
	// successes close the breaker, one failure opens it again.
	HalfOpen State = "half_open"
)

// level is the value of the keyward.kms.breaker.state gauge: ordered by
// severity, so the maximum over workers is the worst state.
func (s State) level() int64 {
	switch s {
	case HalfOpen:
		return 1
	case Open:
		return 2
	}
	return 0
}

func stateOf(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// Change is one state change of one endpoint's breaker.
type Change struct {
	Provider string // key URI scheme: awskms, ocikms, azurekv, localkms
	Endpoint string // kms.KeyURI.EndpointID: a region or vault, never a key
	From, To State
	At       time.Time
}

// Set holds one circuit breaker per KMS endpoint (kms.KeyURI.EndpointID),
// created on first use and shared by every tenant and key behind that
// endpoint. It implements kms.Guard: pass it to kms.WithGuard. It is safe
// for concurrent use.
type Set struct {
	settings Settings
	notes    notifier

	mu        sync.Mutex // serialises the creation of breakers
	endpoints sync.Map   // endpoint id → *endpoint

	stateGauge  metric.Int64Gauge
	transitions metric.Int64Counter
}

var _ kms.Guard = (*Set)(nil)

// endpoint is the breaker of one endpoint.
type endpoint struct {
	id, provider string
	cb           *gobreaker.TwoStepCircuitBreaker[struct{}]
	openedAt     atomic.Int64 // UnixNano of the last change to open
	retired      atomic.Bool  // replaced by ResetEndpoint: its late changes are ignored
	attrs        attribute.Set
}

// New returns a Set with DefaultSettings changed by opts.
func New(opts ...Option) *Set {
	cfg := config{settings: DefaultSettings()}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	s := &Set{settings: cfg.settings.normalized()}
	s.notes.fn = cfg.onChange
	meter := cfg.mp.Meter(instrumentationName)
	// Instrument creation only fails on invalid names or options, which are
	// constants here; the returned instruments are usable (no-op) even then.
	s.stateGauge, _ = meter.Int64Gauge("keyward.kms.breaker.state",
		metric.WithDescription("State of the circuit breaker of a KMS endpoint: 0 closed, 1 half_open, 2 open."),
		metric.WithUnit("{state}"))
	s.transitions, _ = meter.Int64Counter("keyward.kms.breaker.transitions",
		metric.WithDescription("State changes of the circuit breakers of KMS endpoints, by from and to state."),
		metric.WithUnit("{transition}"))
	return s
}

// Settings returns the settings in force (defaults filled in).
func (s *Set) Settings() Settings { return s.settings }

// Admit implements kms.Guard. It refuses a call while the breaker of key's
// endpoint is open, or half-open with every trial call taken, with an
// *OpenError (matching kms.ErrCircuitOpen). Otherwise the caller must call
// done exactly once with the call's outcome: an endpoint failure
// (kms.IsEndpointFailure) counts against the endpoint; throttling, the
// caller's cancellation and a refusal by another breaker are not counted;
// anything else — success, and key-level errors such as a disabled key —
// counts as a success, since the endpoint answered.
func (s *Set) Admit(key kms.KeyURI) (done func(err error), err error) {
	ep := s.endpoint(key)
	report, err := ep.cb.Allow()
	s.notes.flush()
	if err != nil {
		return nil, s.refusal(ep, err)
	}
	if s.notes.fn == nil {
		return report, nil
	}
	return func(err error) {
		report(err)
		s.notes.flush()
	}, nil
}

// State returns the state of the breaker of an endpoint (a
// kms.KeyURI.EndpointID); Closed for an endpoint no call has gone to.
func (s *Set) State(endpointID string) State {
	v, ok := s.endpoints.Load(endpointID)
	if !ok {
		return Closed
	}
	st := stateOf(v.(*endpoint).cb.State())
	s.notes.flush() // State may have turned an open breaker half-open
	return st
}

// States returns the state of every endpoint's breaker, by endpoint id (for
// status commands and health pages).
func (s *Set) States() map[string]State {
	out := map[string]State{}
	s.endpoints.Range(func(k, v any) bool {
		out[k.(string)] = stateOf(v.(*endpoint).cb.State())
		return true
	})
	s.notes.flush()
	return out
}

// ResetEndpoint implements kms.EndpointResetter: it closes the breaker of
// an endpoint that is open or half-open — the key-health-monitor has found
// one of its keys available again with its own calls — so calls flow at
// once instead of after the open timeout and the trial calls. The breaker
// is replaced by a fresh one (calls in flight report to the old one, which
// is dropped); the change is recorded and reported like any other, from
// the old state to closed. A fresh breaker trips again by the same rules if
// the endpoint still fails. It reports whether a breaker was closed.
func (s *Set) ResetEndpoint(endpointID string) bool {
	s.mu.Lock()
	v, ok := s.endpoints.Load(endpointID)
	if !ok {
		s.mu.Unlock()
		return false
	}
	old := v.(*endpoint)
	from := old.cb.State()
	if from == gobreaker.StateClosed {
		s.mu.Unlock()
		s.notes.flush()
		return false
	}
	old.retired.Store(true)
	ep := &endpoint{id: old.id, provider: old.provider, attrs: old.attrs}
	ep.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](s.gobreakerSettings(ep))
	s.endpoints.Store(endpointID, ep)
	s.changed(ep, from, gobreaker.StateClosed)
	s.mu.Unlock()
	s.notes.flush()
	return true
}

// endpoint returns the breaker of key's endpoint, creating it on first use.
func (s *Set) endpoint(key kms.KeyURI) *endpoint {
	id := key.EndpointID()
	if v, ok := s.endpoints.Load(id); ok {
		return v.(*endpoint)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.endpoints.Load(id); ok {
		return v.(*endpoint)
	}
	ep := &endpoint{id: id, provider: key.Scheme,
		attrs: attribute.NewSet(attribute.String("provider", key.Scheme), attribute.String("endpoint", id))}
	ep.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](s.gobreakerSettings(ep))
	s.stateGauge.Record(context.Background(), Closed.level(), metric.WithAttributeSet(ep.attrs))
	s.endpoints.Store(id, ep)
	return ep
}

func (s *Set) gobreakerSettings(ep *endpoint) gobreaker.Settings {
	st := s.settings
	return gobreaker.Settings{
		Name:        ep.id,
		MaxRequests: uint32(st.HalfOpenRequests),
		// A rolling window: Interval with BucketPeriod. (Interval alone is
		// a fixed window that forgets every count at once, and drops the
		// outcome of calls in flight when it does.)
		Interval:     st.Window,
		BucketPeriod: st.Window / windowBuckets,
		Timeout:      st.OpenTimeout,
		ReadyToTrip:  st.readyToTrip,
		// Called by gobreaker with its lock held: record, queue, return.
		OnStateChange: func(_ string, from, to gobreaker.State) { s.changed(ep, from, to) },
		IsSuccessful:  func(err error) bool { return !kms.IsEndpointFailure(err) },
		IsExcluded:    excluded,
	}
}

// readyToTrip is gobreaker's ReadyToTrip: called after each failure in the
// closed state with the counts of the rolling window.
func (st Settings) readyToTrip(c gobreaker.Counts) bool {
	if st.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= uint32(st.ConsecutiveFailures) {
		return true
	}
	if st.FailureRatio > 0 {
		// Requests also holds calls in flight and excluded ones: the
		// ratio is over the calls that were counted.
		counted := uint64(c.TotalSuccesses) + uint64(c.TotalFailures)
		return counted >= uint64(st.MinRequests) && float64(c.TotalFailures) >= st.FailureRatio*float64(counted)
	}
	return false
}

// excluded reports the outcomes that say nothing about the endpoint's
// health: throttling (back off, do not trip), the caller's cancellation, and
// a refusal by another breaker (a Client used as another Client's provider).
func excluded(err error) bool {
	return kms.CodeOf(err) == kms.CodeThrottled || kms.IsCanceled(err) || kms.IsCircuitOpen(err)
}

// changed runs inside gobreaker's lock: it records the metrics (ordered by
// that lock) and queues the change for the callback, which runs later
// without any lock held.
func (s *Set) changed(ep *endpoint, from, to gobreaker.State) {
	if ep.retired.Load() {
		return // a call that was in flight at ResetEndpoint reported late
	}
	now := time.Now()
	if to == gobreaker.StateOpen {
		ep.openedAt.Store(now.UnixNano())
	}
	c := Change{Provider: ep.provider, Endpoint: ep.id, From: stateOf(from), To: stateOf(to), At: now}
	ctx := context.Background()
	s.stateGauge.Record(ctx, c.To.level(), metric.WithAttributeSet(ep.attrs))
	s.transitions.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		attribute.String("provider", ep.provider), attribute.String("endpoint", ep.id),
		attribute.String("from", string(c.From)), attribute.String("to", string(c.To)))))
	s.notes.push(c)
}

// refusal describes a call the breaker refused.
func (s *Set) refusal(ep *endpoint, err error) *OpenError {
	e := &OpenError{Provider: ep.provider, Endpoint: ep.id, State: Open, now: time.Now()}
	if errors.Is(err, gobreaker.ErrTooManyRequests) {
		e.State = HalfOpen
		e.Trials = s.settings.HalfOpenRequests
		return e
	}
	if at := ep.openedAt.Load(); at != 0 {
		e.RetryAt = time.Unix(0, at).Add(s.settings.OpenTimeout)
	}
	return e
}
