package encryptor

import (
	"context"
	"sync"
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

	attrs sync.Map // label values → metric.MeasurementOption, built once
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
	key := [4]string{r.kind.String(), string(r.mode), string(r.reason), string(settled)}
	opt, ok := m.attrs.Load(key)
	if !ok {
		opt, _ = m.attrs.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("outcome", key[0]),
			attribute.String("mode", key[1]),
			attribute.String("reason", key[2]),
			attribute.String("settlement", key[3]),
		)))
	}
	m.assets.Add(ctx, 1, opt.(metric.AddOption))
}

func (m *metrics) batch(ctx context.Context, d time.Duration, n int) {
	m.batchTime.Record(ctx, d.Seconds())
	m.batchAssets.Record(ctx, int64(n))
}
