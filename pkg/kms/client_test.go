package kms_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/keyward/keyward/pkg/kms"
)

var (
	testKey = kms.MustParseKeyURI("localkms://test.key")
	testEC  = kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
)

// funcProvider is a test double whose three operations are functions.
type funcProvider struct {
	generate func(ctx context.Context) (*kms.DataKey, error)
}

func (p *funcProvider) GenerateDataKey(ctx context.Context, _ kms.KeyURI, _ kms.EncryptionContext) (*kms.DataKey, error) {
	return p.generate(ctx)
}

func (p *funcProvider) Encrypt(ctx context.Context, _ kms.KeyURI, pt *kms.Secret, _ kms.EncryptionContext) (*kms.Wrapped, error) {
	dk, err := p.generate(ctx)
	if err != nil {
		return nil, err
	}
	dk.Destroy()
	return &kms.Wrapped{Ciphertext: dk.Ciphertext, KeyVersion: dk.KeyVersion}, nil
}

func (p *funcProvider) Decrypt(ctx context.Context, _ kms.KeyURI, _ []byte, _ kms.EncryptionContext) (*kms.Secret, error) {
	dk, err := p.generate(ctx)
	if err != nil {
		return nil, err
	}
	return dk.Plaintext, nil
}

func goodDataKey() *kms.DataKey {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return &kms.DataKey{Plaintext: kms.NewSecret(b), Ciphertext: []byte("ct"), KeyVersion: "1"}
}

// blocking returns a provider that blocks until its context is done and then
// returns what a well-behaved SDK returns: an error wrapping ctx.Err().
func blocking() *funcProvider {
	return &funcProvider{generate: func(ctx context.Context) (*kms.DataKey, error) {
		<-ctx.Done()
		return nil, &kms.Error{Code: kms.CodeEndpointUnreachable, Err: ctx.Err()}
	}}
}

// The classification of a call's end: a per-call timeout is an endpoint
// failure; the caller's own cancellation or deadline is not.
func TestClientTimeoutClassification(t *testing.T) {
	tests := []struct {
		name         string
		callTimeout  time.Duration
		ctx          func() (context.Context, context.CancelFunc)
		code         kms.Code
		endpointFail bool
		matches      error // context error the result must match, or nil for none
	}{
		{
			name:         "per-call timeout",
			callTimeout:  20 * time.Millisecond,
			ctx:          func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			code:         kms.CodeEndpointUnreachable,
			endpointFail: true,
		},
		{
			name:        "caller cancels",
			callTimeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(20*time.Millisecond, cancel)
				return ctx, cancel
			},
			code:    kms.CodeInternal,
			matches: context.Canceled,
		},
		{
			name:        "caller's deadline before the call timeout",
			callTimeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			code:    kms.CodeInternal,
			matches: context.DeadlineExceeded,
		},
		{
			name:        "caller already cancelled",
			callTimeout: 10 * time.Second,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			code:    kms.CodeInternal,
			matches: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, blocking()), kms.WithCallTimeout(tt.callTimeout))
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := c.GenerateDataKey(ctx, testKey, testEC)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("call took %v", d)
			}
			var ke *kms.Error
			if !errors.As(err, &ke) {
				t.Fatalf("err = %v (%T), want *kms.Error", err, err)
			}
			if kms.CodeOf(err) != tt.code {
				t.Errorf("CodeOf = %s, want %s (err %v)", kms.CodeOf(err), tt.code, err)
			}
			if kms.IsEndpointFailure(err) != tt.endpointFail {
				t.Errorf("IsEndpointFailure = %v, want %v", kms.IsEndpointFailure(err), tt.endpointFail)
			}
			if tt.matches != nil && !errors.Is(err, tt.matches) {
				t.Errorf("err %v does not match %v", err, tt.matches)
			}
			if kms.IsCanceled(err) != (tt.matches != nil) {
				t.Errorf("IsCanceled = %v, want %v (err %v)", kms.IsCanceled(err), tt.matches != nil, err)
			}
			if ke.Provider != kms.SchemeLocal || ke.Op != kms.OpGenerateDataKey || ke.Key != testKey.String() {
				t.Errorf("Error fields = %+v", ke)
			}
			st := c.Stats()
			if tt.matches != nil && (st.Canceled != 1 || len(st.Failures) != 0) {
				t.Errorf("Stats = %+v, want one cancellation and no failure", st)
			}
			if tt.matches == nil && st.Failures[kms.CodeEndpointUnreachable] != 1 {
				t.Errorf("Stats = %+v, want one endpoint_unreachable failure", st)
			}
		})
	}
}

// A provider that ignores its context entirely still cannot hold the caller
// past the per-call timeout. (The Client destroys a key such a provider
// returns late; that happens in a goroutine the test cannot synchronise with
// without a data race, so it is not asserted here.)
func TestClientAbandonsStuckProvider(t *testing.T) {
	release := make(chan struct{})
	returned := make(chan struct{})
	p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) {
		defer close(returned)
		<-release
		return goodDataKey(), nil
	}}
	c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p), kms.WithCallTimeout(20*time.Millisecond))
	start := time.Now()
	_, err := c.GenerateDataKey(context.Background(), testKey, testEC)
	if d := time.Since(start); d > time.Second {
		t.Errorf("call took %v with a 20ms call timeout", d)
	}
	if !kms.IsEndpointFailure(err) || errors.Is(err, context.DeadlineExceeded) || kms.IsCanceled(err) {
		t.Fatalf("err = %v, want endpoint_unreachable not matching DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "20ms call timeout") {
		t.Errorf("error %q does not name the timeout", err)
	}
	close(release)
	<-returned
}

func TestClientWrapsProviderErrors(t *testing.T) {
	sdk := &sdkError{code: "KMSInternalException"}
	tests := []struct {
		name string
		err  error
		code kms.Code
	}{
		{"plain error", sdk, kms.CodeInternal},
		{"provider *Error", &kms.Error{Code: kms.CodeKeyDisabled, Err: sdk}, kms.CodeKeyDisabled},
		{"wrapped *Error", errors.Join(errors.New("ctx"), &kms.Error{Code: kms.CodeThrottled, Err: sdk}), kms.CodeThrottled},
		{"invalid code", &kms.Error{Code: "bogus", Err: sdk}, kms.CodeInternal},
		{"context error without cancellation", context.Canceled, kms.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) { return nil, tt.err }}
			c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p))
			_, err := c.GenerateDataKey(context.Background(), testKey, testEC)
			var ke *kms.Error
			if !errors.As(err, &ke) {
				t.Fatalf("err %T is not *kms.Error", err)
			}
			if ke.Code != tt.code || ke.Provider != "localkms" || ke.Op != "GenerateDataKey" || ke.Key != "localkms://test.key" {
				t.Errorf("Error = %+v, want code %s with provider, op and key filled in", ke, tt.code)
			}
			var got *sdkError
			if tt.err != context.Canceled && !errors.As(err, &got) {
				t.Errorf("the SDK error is not reachable with errors.As: %v", err)
			}
			if c.Stats().Canceled != 0 {
				t.Error("counted as cancellation")
			}
		})
	}
	// The provider's own *Error is not modified.
	pe := &kms.Error{Code: kms.CodeKeyDisabled}
	p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) { return nil, pe }}
	_, _ = kms.NewClient(kms.WithProvider(kms.SchemeLocal, p)).GenerateDataKey(context.Background(), testKey, testEC)
	if pe.Provider != "" || pe.Op != "" {
		t.Errorf("Client modified the provider's error: %+v", pe)
	}
}

func TestClientChecksProviderResults(t *testing.T) {
	short := goodDataKey()
	short.Plaintext = kms.NewSecret(make([]byte, 16))
	noVersion := goodDataKey()
	noVersion.KeyVersion = ""
	noCT := goodDataKey()
	noCT.Ciphertext = nil
	for name, dk := range map[string]*kms.DataKey{"nil": nil, "16-byte key": short, "no version": noVersion, "no ciphertext": noCT} {
		t.Run(name, func(t *testing.T) {
			p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) { return dk, nil }}
			_, err := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p)).GenerateDataKey(context.Background(), testKey, testEC)
			if kms.CodeOf(err) != kms.CodeInternal {
				t.Errorf("err = %v, want internal", err)
			}
			if dk != nil && dk.Plaintext.Len() != 0 {
				t.Error("the rejected data key was not destroyed")
			}
		})
	}
}

func TestClientValidation(t *testing.T) {
	calls := 0
	p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) { calls++; return goodDataKey(), nil }}
	c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p))
	ctx := context.Background()
	aws := kms.MustParseKeyURI("awskms://alias/k?region=eu-west-2")
	check := func(name string, err error, code kms.Code, contains string) {
		t.Helper()
		if kms.CodeOf(err) != code {
			t.Errorf("%s: err = %v, want %s", name, err, code)
		}
		if err != nil && !strings.Contains(err.Error(), contains) {
			t.Errorf("%s: error %q does not contain %q", name, err, contains)
		}
	}
	_, err := c.GenerateDataKey(ctx, aws, testEC)
	check("unregistered scheme", err, kms.CodeInvalidArgument, `kms.WithProvider("awskms", provider)`)
	_, err = c.GenerateDataKey(ctx, kms.KeyURI{}, testEC)
	check("zero key", err, kms.CodeInvalidArgument, "empty")
	_, err = c.GenerateDataKey(ctx, testKey, kms.EncryptionContext{"a": "\x00"})
	check("invalid context", err, kms.CodeInvalidArgument, "encryption context")
	_, err = c.Encrypt(ctx, testKey, nil, testEC)
	check("nil plaintext", err, kms.CodeInvalidArgument, "plaintext")
	_, err = c.Encrypt(ctx, testKey, kms.NewSecret(make([]byte, kms.MaxPlaintextLen+1)), testEC)
	check("huge plaintext", err, kms.CodeInvalidArgument, "plaintext")
	_, err = c.Decrypt(ctx, testKey, nil, testEC)
	check("empty ciphertext", err, kms.CodeInvalidCiphertext, "empty")
	_, err = c.Decrypt(ctx, testKey, make([]byte, kms.MaxCiphertextLen+1), testEC)
	check("huge ciphertext", err, kms.CodeInvalidCiphertext, "ciphertext")
	if calls != 0 {
		t.Errorf("invalid calls reached the provider %d times", calls)
	}
	// A nil provider unregisters the scheme.
	c2 := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p), kms.WithProvider(kms.SchemeLocal, nil))
	_, err = c2.GenerateDataKey(ctx, testKey, testEC)
	check("removed provider", err, kms.CodeInvalidArgument, "no provider registered")

	st := c.Stats()
	if st.Calls != 7 || st.GenerateDataKey != 3 || st.Encrypt != 2 || st.Decrypt != 2 ||
		st.Failures[kms.CodeInvalidArgument] != 5 || st.Failures[kms.CodeInvalidCiphertext] != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

// The provider gets copies: the caller may change its context map and
// destroy its plaintext as soon as the call returns, even if the provider
// overran its timeout and is still running.
func TestClientIsolatesAbandonedCalls(t *testing.T) {
	release := make(chan struct{})
	done := make(chan struct{})
	p := &isolationProvider{release: release, done: done}
	c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p), kms.WithCallTimeout(10*time.Millisecond))
	ec := testEC.Clone()
	pt := kms.NewSecret(make([]byte, 32))
	_, err := c.Encrypt(context.Background(), testKey, pt, ec)
	if !kms.IsEndpointFailure(err) {
		t.Fatalf("err = %v", err)
	}
	pt.Destroy()
	ec["x"] = "y" // with -race, a shared map would be reported
	close(release)
	<-done
}

type isolationProvider struct {
	funcProvider
	release, done chan struct{}
}

func (p *isolationProvider) Encrypt(_ context.Context, _ kms.KeyURI, pt *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	defer close(p.done)
	<-p.release
	_ = len(ec["keyward:tenant"])
	_ = pt.Len()
	return nil, errors.New("late")
}

// spanRecorder collects ended spans (tracetest is not vendored here).
type spanRecorder struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (r *spanRecorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *spanRecorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
}
func (r *spanRecorder) Shutdown(context.Context) error   { return nil }
func (r *spanRecorder) ForceFlush(context.Context) error { return nil }

func TestClientTelemetry(t *testing.T) {
	rec := &spanRecorder{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	fail := false
	p := &funcProvider{generate: func(context.Context) (*kms.DataKey, error) {
		if fail {
			return nil, &kms.Error{Code: kms.CodeKeyDisabled}
		}
		return goodDataKey(), nil
	}}
	c := kms.NewClient(kms.WithProvider(kms.SchemeLocal, p), kms.WithTracerProvider(tp), kms.WithMeterProvider(mp))
	ctx := context.Background()
	dk, err := c.GenerateDataKey(ctx, testKey, testEC)
	if err != nil {
		t.Fatal(err)
	}
	dk.Destroy()
	fail = true
	_, _ = c.GenerateDataKey(ctx, testKey, testEC)
	_, _ = c.Decrypt(ctx, testKey, []byte("ct"), testEC)

	if len(rec.spans) != 3 {
		t.Fatalf("%d spans, want 3", len(rec.spans))
	}
	want := []struct{ name, outcome string }{
		{"kms.GenerateDataKey", "ok"}, {"kms.GenerateDataKey", "key_disabled"}, {"kms.Decrypt", "key_disabled"},
	}
	for i, s := range rec.spans {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		if s.Name() != want[i].name || attrs["kms.outcome"] != want[i].outcome {
			t.Errorf("span %d = %s outcome %q, want %s %q", i, s.Name(), attrs["kms.outcome"], want[i].name, want[i].outcome)
		}
		if attrs["kms.provider"] != "localkms" || attrs["kms.endpoint"] != "localkms" || attrs["kms.key_uri"] != testKey.String() {
			t.Errorf("span %d attributes = %v", i, attrs)
		}
		if i == 0 && attrs["kms.key_version"] != "1" {
			t.Errorf("span 0 has no key version: %v", attrs)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var histCount uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != "keyward.kms.calls" {
					continue
				}
				for _, dp := range d.DataPoints {
					checkLabels(t, m.Name, dp.Attributes, "provider", "op", "code")
					op, _ := dp.Attributes.Value("op")
					code, _ := dp.Attributes.Value("code")
					counts[op.AsString()+"/"+code.AsString()] += dp.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name != "keyward.kms.call.duration" || m.Unit != "s" {
					t.Errorf("histogram %s unit %q", m.Name, m.Unit)
				}
				for _, dp := range d.DataPoints {
					checkLabels(t, m.Name, dp.Attributes, "provider", "op")
					histCount += dp.Count
				}
			}
		}
	}
	wantCounts := map[string]int64{"GenerateDataKey/ok": 1, "GenerateDataKey/key_disabled": 1, "Decrypt/key_disabled": 1}
	for k, v := range wantCounts {
		if counts[k] != v {
			t.Errorf("keyward.kms.calls %s = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
	if histCount != 3 {
		t.Errorf("duration histogram count = %d, want 3", histCount)
	}
}

// checkLabels fails unless attrs has exactly the given keys (never a key id).
func checkLabels(t *testing.T, metric string, attrs attribute.Set, keys ...string) {
	t.Helper()
	if attrs.Len() != len(keys) {
		t.Errorf("%s labels = %v, want exactly %v", metric, attrs.ToSlice(), keys)
	}
	for _, k := range keys {
		if _, ok := attrs.Value(attribute.Key(k)); !ok {
			t.Errorf("%s has no %q label", metric, k)
		}
	}
}

// Failover must be fast: one call to a dead endpoint costs at most 500 ms,
// so a breaker tripping after 5 consecutive failures opens within 2.5 s.
func TestDefaultCallTimeout(t *testing.T) {
	if kms.DefaultCallTimeout <= 0 || kms.DefaultCallTimeout > 500*time.Millisecond {
		t.Errorf("DefaultCallTimeout = %v, want at most 500ms", kms.DefaultCallTimeout)
	}
}
