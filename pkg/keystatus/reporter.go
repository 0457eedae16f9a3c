package keystatus

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
)

// DefaultReportInterval is the least time between two failure reports of
// one key by one Reporter: every failing asset would otherwise send one.
const DefaultReportInterval = time.Second

// Reporter tells the key-health-monitor what a worker saw of customer keys
// in live traffic: KeyObserved on keyward.key.observed.<tenant> (core NATS,
// fire and forget). It reports a key's failures (at most one per key per
// interval) and its first success after a failure, never every call, so
// the hot path costs one map lookup.
//
// Failures that say nothing about the key are not reported: a call the
// caller abandoned, a call refused by the worker's own circuit breaker or
// rate limiter (the endpoint failures that opened it were reported), and
// errors of the request itself (invalid argument or ciphertext).
type Reporter struct {
	nc       *nats.Conn
	worker   string
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	// failing maps "<tenant> <key URI>" to the time of the last failure
	// report; present while the key is failing for this worker.
	failing sync.Map
}

// ReporterOption tunes a Reporter.
type ReporterOption func(*Reporter)

// WithReportInterval sets the least time between two failure reports of
// one key (default DefaultReportInterval).
func WithReportInterval(d time.Duration) ReporterOption {
	return func(r *Reporter) { r.interval = d }
}

// WithReporterLogger sets the logger of publish failures.
func WithReporterLogger(l *slog.Logger) ReporterOption { return func(r *Reporter) { r.log = l } }

// NewReporter returns a Reporter publishing on nc as worker (e.g.
// "encryptor/<host>"). A nil nc gives a Reporter that reports nothing.
func NewReporter(nc *nats.Conn, worker string, opts ...ReporterOption) *Reporter {
	r := &Reporter{nc: nc, worker: worker, interval: DefaultReportInterval, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Observe records the outcome of one use of a tenant's key: err nil for a
// success. It publishes when the outcome is news for the monitor.
func (r *Reporter) Observe(ctx context.Context, tenantID string, key kms.KeyURI, op string, err error, latency time.Duration) {
	if r == nil || r.nc == nil {
		return
	}
	id := tenantID + " " + key.String()
	now := r.now()
	if err == nil {
		if _, was := r.failing.LoadAndDelete(id); was {
			r.publish(ctx, tenantID, key, op, events.OutcomeOK, latency, now)
		}
		return
	}
	if !Reportable(err) {
		return
	}
	if last, ok := r.failing.Load(id); ok && now.Sub(last.(time.Time)) < r.interval {
		return
	}
	r.failing.Store(id, now)
	r.publish(ctx, tenantID, key, op, string(kms.CodeOf(err)), latency, now)
}

// Reportable reports whether a failed KMS call says something about the key
// or its endpoint: endpoint failures, throttling and key-level errors, but
// not a cancellation, Keyward's own breaker or rate limiter, or a bad
// request.
func Reportable(err error) bool {
	if err == nil || kms.IsCanceled(err) || kms.IsCircuitOpen(err) || kms.IsRateLimited(err) {
		return false
	}
	switch kms.CodeOf(err) {
	case kms.CodeEndpointUnreachable, kms.CodeThrottled, kms.CodeKeyDisabled, kms.CodeAccessDenied, kms.CodeKeyNotFound:
		return true
	}
	return false
}

func (r *Reporter) publish(ctx context.Context, tenantID string, key kms.KeyURI, op, outcome string, latency time.Duration, at time.Time) {
	ev := &events.KeyObserved{
		TenantID: tenantID, KeyURI: key.String(), Op: op, Outcome: outcome,
		LatencyMS: float64(latency.Microseconds()) / 1000, Worker: r.worker, ObservedAt: at.UTC(),
	}
	m, err := events.NewMsg(ctx, r.worker, events.Outgoing{
		Subject: events.SubjectKeyObserved(tenantID),
		MsgID:   "observed." + tenantID + "." + strconv.FormatInt(at.UnixNano(), 10),
		Type:    events.TypeKeyObserved, Event: ev,
	})
	if err == nil {
		err = r.nc.PublishMsg(m)
	}
	if err != nil {
		r.log.WarnContext(ctx, "reporting a key observation failed", "tenant_id", tenantID, "key_uri", key.String(), "outcome", outcome, "error", err)
	}
}
