package reencryptor

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/events"
)

// metrics of the re-encryptor (docs/operations.md lists them).
type metrics struct {
	assets   metric.Int64Counter
	bytes    metric.Int64Counter
	duration metric.Float64Histogram
}

func newMetrics(m metric.Meter, w *Worker) (*metrics, error) {
	var x metrics
	var err error
	if x.assets, err = m.Int64Counter("keyward.reencryptor.assets",
		metric.WithDescription("Assets examined by re-encryption jobs, by purpose and outcome (moved, skipped, changed, failed, paused)")); err != nil {
		return nil, err
	}
	if x.bytes, err = m.Int64Counter("keyward.reencryptor.bytes", metric.WithUnit("By"),
		metric.WithDescription("Plaintext bytes of the assets moved, by purpose")); err != nil {
		return nil, err
	}
	if x.duration, err = m.Float64Histogram("keyward.reencryptor.asset.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to move one asset (read, re-encrypt or rewrap, verify, replace)"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	_, err = m.Int64ObservableGauge("keyward.reencryptor.jobs.running",
		metric.WithDescription("Jobs this instance is running now"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			w.mu.Lock()
			n := len(w.running)
			w.mu.Unlock()
			o.Observe(int64(n))
			return nil
		}))
	if err != nil {
		return nil, err
	}
	_, err = m.Int64ObservableCounter("keyward.reencryptor.yield.waits",
		metric.WithDescription("Checks before a batch that found the encryptor's backlog above -yield-backlog (the job waited)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(w.yield.Waits())
			return nil
		}))
	return &x, err
}

func (x *metrics) observe(ctx context.Context, purpose events.ReencryptPurpose, res result, d time.Duration) {
	outcome := "paused"
	switch {
	case res.err != nil && res.kind != failedOne:
	case res.kind == moved:
		outcome = "moved"
	case res.kind == skipped:
		outcome = "skipped"
	case res.kind == changed:
		outcome = "changed"
	case res.kind == failedOne:
		outcome = "failed"
	}
	attrs := metric.WithAttributes(attribute.String("purpose", string(purpose)), attribute.String("outcome", outcome))
	x.assets.Add(ctx, 1, attrs)
	if res.kind == moved && res.err == nil {
		x.bytes.Add(ctx, res.bytes, metric.WithAttributes(attribute.String("purpose", string(purpose))))
		x.duration.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("purpose", string(purpose))))
	}
}
