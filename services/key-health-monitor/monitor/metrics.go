package monitor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Observation results (the result label of
// keyward_key_health_observations_total, and Stats.Observations keys).
const (
	ObsApplied        = "applied"         // counted like a probe result
	ObsInconclusive   = "inconclusive"    // an outcome that says nothing about the key
	ObsNotEnrolled    = "not_enrolled"    // no such tenant or key enrolled
	ObsNotOwned       = "not_owned"       // another instance owns the tenant's partition
	ObsInvalid        = "invalid"         // dead-lettered as invalid_event
	ObsUndecodable    = "undecodable"     // dead-lettered as undecodable
	ObsTenantMismatch = "tenant_mismatch" // subject and body name different tenants; dead-lettered
	ObsDropped        = "dropped"         // the apply queue was full
)

// metrics of the monitor. Labels are bounded sets (provider scheme,
// outcome code, status, source, observation result); never a tenant or a
// key id.
type metrics struct {
	probes        metric.Int64Counter
	probeTime     metric.Float64Histogram
	transitions   metric.Int64Counter
	observations  metric.Int64Counter
	publishErrors metric.Int64Counter
	reg           metric.Registration

	attrs sync.Map // label values → measurement option, built once

	// Plain counters for Stats (tests, keyward dev).
	probeCount   atomic.Int64
	transCount   atomic.Int64
	obsCounts    sync.Map // result → *atomic.Int64
	dlqSent      atomic.Int64
	publishFails atomic.Int64
}

func newMetrics(m metric.Meter, owned, keys func() int64) (*metrics, error) {
	x := &metrics{}
	var err error
	if x.probes, err = m.Int64Counter("keyward_key_health_probes_total",
		metric.WithDescription("Key probes (GenerateDataKey, Decrypt, compare), by provider and outcome (ok, slow or a kms error code).")); err != nil {
		return nil, err
	}
	if x.probeTime, err = m.Float64Histogram("keyward_key_health_probe_seconds",
		metric.WithDescription("Duration of one key probe (both calls)."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)); err != nil {
		return nil, err
	}
	if x.transitions, err = m.Int64Counter("keyward_key_health_transitions_total",
		metric.WithDescription("Key status transitions published, by from, to and source (probe or observation); from is \"unknown\" for a key's first status.")); err != nil {
		return nil, err
	}
	if x.observations, err = m.Int64Counter("keyward_key_health_observations_total",
		metric.WithDescription("KeyObserved reports received, by result (applied, inconclusive, not_enrolled, not_owned, invalid, undecodable, tenant_mismatch, dropped).")); err != nil {
		return nil, err
	}
	if x.publishErrors, err = m.Int64Counter("keyward_key_health_publish_failures_total",
		metric.WithDescription("Failed writes of a transition, by what failed (event, kv); a failed event is retried on the key's next result.")); err != nil {
		return nil, err
	}
	ownedG, err := m.Int64ObservableGauge("keyward_key_health_partitions_owned",
		metric.WithDescription("Tenant partitions this instance holds a lease on."))
	if err != nil {
		return nil, err
	}
	keysG, err := m.Int64ObservableGauge("keyward_key_health_keys",
		metric.WithDescription("Enrolled keys this instance probes."))
	if err != nil {
		return nil, err
	}
	x.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(ownedG, owned())
		o.ObserveInt64(keysG, keys())
		return nil
	}, ownedG, keysG)
	if err != nil {
		return nil, err
	}
	return x, nil
}

func (m *metrics) opt(labels ...string) metric.MeasurementOption {
	key := [4]string{}
	copy(key[:], labels)
	if o, ok := m.attrs.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	kv := make([]attribute.KeyValue, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		kv = append(kv, attribute.String(labels[i], labels[i+1]))
	}
	o, _ := m.attrs.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(kv...)))
	return o.(metric.MeasurementOption)
}

func (m *metrics) probe(ctx context.Context, provider, outcome string, d time.Duration) {
	m.probeCount.Add(1)
	m.probes.Add(ctx, 1, m.opt("provider", provider, "outcome", outcome).(metric.AddOption))
	m.probeTime.Record(ctx, d.Seconds(), m.opt("provider", provider).(metric.RecordOption))
}

func (m *metrics) transition(ctx context.Context, from, to, source string) {
	if from == "" {
		from = "unknown"
	}
	m.transCount.Add(1)
	m.transitions.Add(ctx, 1, metric.WithAttributes(
		attribute.String("from", from), attribute.String("to", to), attribute.String("source", source)))
}

func (m *metrics) observation(ctx context.Context, result string) {
	c, _ := m.obsCounts.LoadOrStore(result, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	m.observations.Add(ctx, 1, m.opt("result", result).(metric.AddOption))
}

func (m *metrics) publishFailed(ctx context.Context, what string) {
	m.publishFails.Add(1)
	m.publishErrors.Add(ctx, 1, m.opt("what", what).(metric.AddOption))
}
