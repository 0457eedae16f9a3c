package kms_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/keyward/keyward/pkg/kms"
)

// recordingGuard admits or refuses every call and records what the Client
// reports back.
type recordingGuard struct {
	mu       sync.Mutex
	refuse   error
	admitted []kms.KeyURI
	reported []error
}

func (g *recordingGuard) Admit(key kms.KeyURI) (func(error), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refuse != nil {
		return nil, g.refuse
	}
	g.admitted = append(g.admitted, key)
	var once sync.Once
	return func(err error) {
		reported := false
		once.Do(func() { reported = true })
		g.mu.Lock()
		defer g.mu.Unlock()
		if !reported {
			err = errors.New("done called twice")
		}
		g.reported = append(g.reported, err)
	}, nil
}

func (g *recordingGuard) setRefuse(err error) {
	g.mu.Lock()
	g.refuse = err
	g.mu.Unlock()
}

func (g *recordingGuard) counts() (admitted, reported int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.admitted), len(g.reported)
}

func (g *recordingGuard) last() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reported) == 0 {
		return errors.New("nothing reported")
	}
	return g.reported[len(g.reported)-1]
}

// openError is what a breaker returns: it matches kms.ErrCircuitOpen itself.
type openError struct{ endpoint string }

func (e *openError) Error() string        { return "circuit breaker of " + e.endpoint + " is open" }
func (e *openError) Is(target error) bool { return target == kms.ErrCircuitOpen }

// A refused call fails at once as endpoint_unreachable matching
// ErrCircuitOpen — also when the guard's error does not say so itself — never
// reaches the provider, and is counted, labelled and traced as circuit_open.
func TestGuardRefusal(t *testing.T) {
	for name, refusal := range map[string]error{
		"breaker error":     &openError{endpoint: "localkms"},
		"plain guard error": errors.New("endpoint localkms is resting"),
	} {
		t.Run(name, func(t *testing.T) {
			rec := &spanRecorder{}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			calls := 0
			p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) { calls++; return goodDataKey(), nil }}
			g := &recordingGuard{refuse: refusal}
			c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p), kms.WithGuard(g),
				kms.WithTracerProvider(tp), kms.WithMeterProvider(mp))

			start := time.Now()
			_, err := c.GenerateDataKey(context.Background(), testKey, testEC)
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Errorf("refused call took %v, want immediate", d)
			}
			var ke *kms.Error
			if !errors.As(err, &ke) {
				t.Fatalf("err = %v (%T), want *kms.Error", err, err)
			}
			if ke.Code != kms.CodeEndpointUnreachable || ke.Provider != kms.SchemeLocal || ke.Op != kms.OpGenerateDataKey || ke.Key != testKey.String() {
				t.Errorf("Error = %+v, want endpoint_unreachable with provider, op and key", ke)
			}
			if !kms.IsCircuitOpen(err) || !errors.Is(err, kms.ErrEndpointUnreachable) || !errors.Is(err, refusal) {
				t.Errorf("err = %v: IsCircuitOpen %v, want a match of ErrCircuitOpen, ErrEndpointUnreachable and the guard's error",
					err, kms.IsCircuitOpen(err))
			}
			if !kms.IsEndpointFailure(err) || !kms.IsRetryable(err) || kms.IsCanceled(err) || kms.IsKeyUnusable(err) {
				t.Errorf("err = %v: want an endpoint failure, retryable, not a cancellation nor a key-level error", err)
			}
			if !strings.Contains(err.Error(), refusal.Error()) {
				t.Errorf("message %q does not carry the guard's %q", err, refusal)
			}
			if calls != 0 {
				t.Errorf("the provider was called %d times", calls)
			}
			if _, reported := g.counts(); reported != 0 {
				t.Errorf("done called %d times for a refused call", reported)
			}
			st := c.Stats()
			if st.Calls != 1 || st.CircuitOpen != 1 || st.Failures[kms.CodeEndpointUnreachable] != 1 || st.RateLimited != 0 || st.Canceled != 0 {
				t.Errorf("Stats = %+v, want 1 call refused by the circuit breaker", st)
			}

			if len(rec.spans) != 1 {
				t.Fatalf("%d spans, want 1", len(rec.spans))
			}
			for _, kv := range rec.spans[0].Attributes() {
				if kv.Key == "kms.outcome" && kv.Value.AsString() != "circuit_open" {
					t.Errorf("span outcome = %q, want circuit_open", kv.Value.AsString())
				}
			}
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			codes := map[string]int64{}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "keyward.kms.calls" {
						for _, dp := range sum.DataPoints {
							checkLabels(t, m.Name, dp.Attributes, "provider", "op", "code")
							code, _ := dp.Attributes.Value("code")
							codes[code.AsString()] += dp.Value
						}
					}
				}
			}
			if len(codes) != 1 || codes["circuit_open"] != 1 {
				t.Errorf("keyward.kms.calls by code = %v, want circuit_open: 1", codes)
			}
		})
	}
}

// The guard is asked before the rate limiter: a refused call does not wait
// for a turn (nor take one), and an invalid call is refused before the guard
// is asked at all.
func TestGuardBeforeRateLimiter(t *testing.T) {
	p := &instantProvider{}
	g := &recordingGuard{}
	c := kms.NewClient(
		kms.WithProvider(kms.SchemeAzure, p),
		kms.WithRateLimit(kms.SchemeAzure, kms.RateLimit{PerSecond: 1, Burst: 1}),
		kms.WithCallTimeout(300*time.Millisecond),
		kms.WithGuard(g),
	)
	key := kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")
	if _, err := c.GenerateDataKey(context.Background(), key, testEC); err != nil {
		t.Fatal(err) // takes the only token
	}
	g.setRefuse(&openError{endpoint: key.EndpointID()})
	start := time.Now()
	_, err := c.GenerateDataKey(context.Background(), key, testEC)
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("refused call took %v: it waited for the rate limiter", d)
	}
	if !kms.IsCircuitOpen(err) || kms.CodeOf(err) != kms.CodeEndpointUnreachable {
		t.Errorf("err = %v, want a circuit-open refusal, not throttling", err)
	}
	if st := c.Stats(); st.RateLimited != 0 || st.CircuitOpen != 1 {
		t.Errorf("Stats = %+v, want 1 circuit-open refusal and no rate limiting", st)
	}

	g.setRefuse(nil)
	_, err = c.GenerateDataKey(context.Background(), kms.KeyURI{}, testEC)
	if kms.CodeOf(err) != kms.CodeInvalidArgument {
		t.Fatalf("err = %v, want invalid_argument", err)
	}
	if admitted, _ := g.counts(); admitted != 1 {
		t.Errorf("guard admitted %d calls, want 1 (invalid calls are not asked about)", admitted)
	}
}

// The guard hears the outcome of every call it admitted, exactly once, as the
// classified *kms.Error the caller gets (or nil).
func TestGuardHearsOutcome(t *testing.T) {
	sdk := &sdkError{code: "DisabledException"}
	tests := []struct {
		name    string
		gen     func(ctx context.Context) (*kms.DataKey, error)
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		want    func(error) bool
	}{
		{
			name: "success",
			gen:  func(context.Context) (*kms.DataKey, error) { return goodDataKey(), nil },
			want: func(err error) bool { return err == nil },
		},
		{
			name: "key disabled",
			gen: func(context.Context) (*kms.DataKey, error) {
				return nil, &kms.Error{Code: kms.CodeKeyDisabled, Err: sdk}
			},
			want: func(err error) bool { return kms.CodeOf(err) == kms.CodeKeyDisabled && !kms.IsEndpointFailure(err) },
		},
		{
			name: "throttled",
			gen: func(context.Context) (*kms.DataKey, error) {
				return nil, &kms.Error{Code: kms.CodeThrottled}
			},
			want: func(err error) bool { return kms.CodeOf(err) == kms.CodeThrottled },
		},
		{
			name:    "per-call timeout",
			gen:     blocking().generate,
			timeout: 20 * time.Millisecond,
			want:    func(err error) bool { return kms.IsEndpointFailure(err) && !kms.IsCanceled(err) },
		},
		{
			name:    "caller cancels",
			gen:     blocking().generate,
			timeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx, cancel
			},
			want: func(err error) bool { return kms.IsCanceled(err) && !kms.IsEndpointFailure(err) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &recordingGuard{}
			c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, &funcProvider{generate: tt.gen}),
				kms.WithGuard(g), kms.WithCallTimeout(tt.timeout))
			ctx, cancel := context.WithCancel(context.Background())
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			dk, err := c.GenerateDataKey(ctx, testKey, testEC)
			dk.Destroy()
			admitted, reported := g.counts()
			if admitted != 1 || reported != 1 {
				t.Fatalf("guard admitted %d and heard %d outcomes, want 1 and 1", admitted, reported)
			}
			got := g.last()
			if !tt.want(got) {
				t.Errorf("guard heard %v", got)
			}
			if fmt.Sprint(got) != fmt.Sprint(err) {
				t.Errorf("guard heard %v, caller got %v", got, err)
			}
			var ke *kms.Error
			if got != nil && !errors.As(got, &ke) {
				t.Errorf("guard heard %T, want *kms.Error", got)
			}
		})
	}

	// A call refused by Keyward's own rate limiter is reported as throttled.
	g := &recordingGuard{}
	c := kms.NewClient(kms.WithProvider(kms.SchemeAzure, &instantProvider{}),
		kms.WithRateLimit(kms.SchemeAzure, kms.RateLimit{PerSecond: 1, Burst: 1}),
		kms.WithCallTimeout(20*time.Millisecond), kms.WithGuard(g))
	key := kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")
	_, _ = c.GenerateDataKey(context.Background(), key, testEC)
	_, err := c.GenerateDataKey(context.Background(), key, testEC)
	if got := g.last(); kms.CodeOf(err) != kms.CodeThrottled || kms.CodeOf(got) != kms.CodeThrottled {
		t.Errorf("rate limited: caller got %v, guard heard %v; want throttled for both", err, got)
	}
}
