package breaker_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// The state gauge follows the breaker (0 closed, 2 open, 1 half-open) and
// the transitions counter counts each change, labelled by provider and
// endpoint only (never a key).
func TestMetrics(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	set := breaker.New(breaker.WithMeterProvider(mp), breaker.WithOpenTimeout(100*time.Millisecond), breaker.WithHalfOpenRequests(1))
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), time.Second)
	ctx := context.Background()
	endpoint := r.key.EndpointID()

	collect := func() (gauge int64, transitions map[string]int64) {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		gauge = -1
		transitions = map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch m.Name {
				case "keyward.kms.breaker.state":
					for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
						checkLabels(t, m.Name, dp.Attributes, map[string]string{"provider": "awskms", "endpoint": endpoint})
						gauge = dp.Value
					}
				case "keyward.kms.breaker.transitions":
					for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
						from, _ := dp.Attributes.Value("from")
						to, _ := dp.Attributes.Value("to")
						checkLabels(t, m.Name, dp.Attributes, map[string]string{"provider": "awskms", "endpoint": endpoint,
							"from": from.AsString(), "to": to.AsString()})
						transitions[from.AsString()+"→"+to.AsString()] += dp.Value
					}
				}
			}
		}
		return gauge, transitions
	}

	if err := generate(ctx, c, r.key); err != nil {
		t.Fatal(err)
	}
	if g, tr := collect(); g != 0 || len(tr) != 0 {
		t.Errorf("closed: gauge %d, transitions %v; want 0 and none", g, tr)
	}
	r.e.Server.Faults.Set(kmstest.FaultServerError)
	for range 5 {
		_ = generate(ctx, c, r.key)
	}
	r.e.Server.Faults.Set(kmstest.FaultNone)
	if g, tr := collect(); g != 2 || tr["closed→open"] != 1 || len(tr) != 1 {
		t.Errorf("open: gauge %d, transitions %v; want 2 and closed→open: 1", g, tr)
	}
	time.Sleep(110 * time.Millisecond)
	if st := set.State(endpoint); st != breaker.HalfOpen {
		t.Fatalf("state %s, want half_open", st)
	}
	if g, _ := collect(); g != 1 {
		t.Errorf("half-open: gauge %d, want 1", g)
	}
	if err := generate(ctx, c, r.key); err != nil {
		t.Fatal(err)
	}
	g, tr := collect()
	if g != 0 || tr["closed→open"] != 1 || tr["open→half_open"] != 1 || tr["half_open→closed"] != 1 || len(tr) != 3 {
		t.Errorf("closed again: gauge %d, transitions %v", g, tr)
	}
	if st := c.Stats(); st.Calls != 7 {
		t.Errorf("client stats = %+v", st)
	}
}

// checkLabels fails unless attrs are exactly want.
func checkLabels(t *testing.T, metric string, attrs attribute.Set, want map[string]string) {
	t.Helper()
	if attrs.Len() != len(want) {
		t.Errorf("%s labels = %v, want %v", metric, attrs.ToSlice(), want)
	}
	for k, v := range want {
		if got, ok := attrs.Value(attribute.Key(k)); !ok || got.AsString() != v {
			t.Errorf("%s label %s = %q, want %q", metric, k, got.AsString(), v)
		}
	}
}
