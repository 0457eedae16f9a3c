package encryptor

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/events"
)

// metrics of the encryptor. Labels are bounded sets (outcome, mode, reason,
// settlement); never a tenant, asset or key id.
type metrics struct {
	assets      metric.Int64Counter
	batchTime   metric.Float64Histogram
	batchAssets metric.Int64Histogram
}

func newMetrics(m metric.Meter) (*metrics, error) {
	assets, err := m.Int64Counter("keyward_encryptor_assets_total",
		metric.WithDescription("Assets processed, by outcome (encrypted, rejected, duplicate, invalid, retry), mode and reason."))
	if err != nil {
		return nil, err
	}
	batchTime, err := m.Float64Histogram("keyward_encryptor_batch_seconds",
		metric.WithDescription("Time to process and commit one batch."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	if err != nil {
		return nil, err
	}
	batchAssets, err := m.Int64Histogram("keyward_encryptor_batch_size",
		metric.WithDescription("Messages per committed batch."),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256))
	if err != nil {
		return nil, err
	}
	return &metrics{assets: assets, batchTime: batchTime, batchAssets: batchAssets}, nil
}

func (m *metrics) asset(ctx context.Context, r *result, settled events.Settlement) {
	m.assets.Add(ctx, 1, metric.WithAttributes(
		attribute.String("outcome", r.kind.String()),
		attribute.String("mode", string(r.mode)),
		attribute.String("reason", string(r.reason)),
		attribute.String("settlement", string(settled)),
	))
}

func (m *metrics) batch(ctx context.Context, d time.Duration, n int) {
	m.batchTime.Record(ctx, d.Seconds())
	m.batchAssets.Record(ctx, int64(n))
}
