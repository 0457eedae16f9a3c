package telemetry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/telemetry"
)

type response struct {
	code int
	body string
}

func get(t *testing.T, h http.Handler, path string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return response{rec.Code, rec.Body.String()}
}

func TestMetricsEndpoint(t *testing.T) {
	tel := setup(t, nil)
	c, err := tel.Meter("test").Int64Counter("keyward.assets.encrypted", metric.WithDescription("Assets encrypted."))
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 3, metric.WithAttributes(attribute.String("mode", "customer")))
	hist, err := tel.Meter("test").Float64Histogram("keyward.kms.duration", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	hist.Record(t.Context(), 0.25)

	r := get(t, tel.Handler(), "/metrics")
	if r.code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200", r.code)
	}
	for _, want := range []string{
		"# TYPE keyward_assets_encrypted_total counter",
		`keyward_assets_encrypted_total{mode="customer",otel_scope_name="test"`,
		"keyward_kms_duration_seconds_bucket{",
		"go_goroutines ",
		"process_start_time_seconds ",
		`keyward_build_info{service="test-service",version="0.0.1"} 1`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(r.body, `keyward_assets_encrypted_total{mode="customer"`) ||
		!strings.Contains(r.body, "} 3\n") {
		t.Errorf("/metrics does not show the counter at 3:\n%s", grepLines(r.body, "keyward_assets"))
	}
}

// Prometheus 3 asks for UTF-8 names; the names must still be the
// underscore form the dashboards use.
func TestMetricsNamesForUTF8Scraper(t *testing.T) {
	tel := setup(t, nil)
	c, err := tel.Meter("test").Int64Counter("keyward.assets.encrypted")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 1)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=1.0.0;escaping=allow-utf-8")
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, req)
	if body := rec.Body.String(); !strings.Contains(body, "\nkeyward_assets_encrypted_total{") || strings.Contains(body, "keyward.assets") {
		t.Errorf("/metrics for a UTF-8 scraper:\n%s\nwant keyward_assets_encrypted_total, no dotted name", grepLines(body, "keyward"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestHealthz(t *testing.T) {
	tel := setup(t, nil)
	tel.SetReady("nats", errors.New("disconnected")) // liveness ignores readiness
	if r := get(t, tel.Handler(), "/healthz"); r.code != http.StatusOK || strings.TrimSpace(r.body) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", r.code, r.body)
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", rec.Code)
	}
}

func readyz(t *testing.T, tel *telemetry.Telemetry) (int, map[string]any) {
	t.Helper()
	r := get(t, tel.Handler(), "/readyz")
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("GET /readyz body %q is not JSON: %v", r.body, err)
	}
	return r.code, body
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tel := setup(t, nil)

	code, body := readyz(t, tel)
	if code != http.StatusOK || body["status"] != "ready" {
		t.Errorf("GET /readyz with no checks = %d %v, want 200 ready", code, body)
	}

	natsErr := error(nil)
	tel.AddReadyCheck("nats", func(context.Context) error { return natsErr })
	tel.SetReady("ledger", errors.New("catching up: 12 behind"))

	code, body = readyz(t, tel)
	checks, _ := body["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || body["status"] != "not_ready" ||
		checks["ledger"] != "catching up: 12 behind" || checks["nats"] != "ok" {
		t.Errorf("GET /readyz with ledger failing = %d %v, want 503 naming ledger's error and nats ok", code, body)
	}

	tel.SetReady("ledger", nil)
	code, body = readyz(t, tel)
	want := map[string]any{"status": "ready", "checks": map[string]any{"nats": "ok", "ledger": "ok"}}
	if code != http.StatusOK || fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("GET /readyz all ok = %d %v, want 200 %v", code, body, want)
	}

	natsErr = errors.New("nats: connection closed")
	code, body = readyz(t, tel)
	checks, _ = body["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || checks["nats"] != "nats: connection closed" || checks["ledger"] != "ok" {
		t.Errorf("GET /readyz with nats failing = %d %v, want 503 naming nats", code, body)
	}
}

func TestReadyzTimeoutAndPanic(t *testing.T) {
	t.Parallel()
	tel := setup(t, nil)
	tel.AddReadyCheck("slow", func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // answers late even after ctx ends
		return ctx.Err()
	})
	tel.AddReadyCheck("panics", func(context.Context) error { panic("boom") })
	tel.AddReadyCheck("fine", func(context.Context) error { return nil })

	start := time.Now()
	code, body := readyz(t, tel)
	elapsed := time.Since(start)
	checks, _ := body["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || checks["slow"] != telemetry.ErrReadyTimeout.Error() ||
		checks["fine"] != "ok" || !strings.Contains(fmt.Sprint(checks["panics"]), "boom") {
		t.Errorf("GET /readyz = %d %v, want 503 with slow timed out, panics reported, fine ok", code, body)
	}
	if elapsed < telemetry.ReadyTimeout || elapsed > telemetry.ReadyTimeout+time.Second {
		t.Errorf("GET /readyz took %v, want about %v", elapsed, telemetry.ReadyTimeout)
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	tel := setup(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tel.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz err = %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", resp.StatusCode, b)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() err = %v, want nil after cancel", err)
		}
	case <-time.After(telemetry.ShutdownTimeout + time.Second):
		t.Fatal("Serve() did not return after its context was cancelled")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("listener %s still accepts connections after Serve returned", addr)
	}
}

func TestListenAndServe(t *testing.T) {
	tel := setup(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := tel.ListenAndServe(ctx, ""); err != nil {
		t.Errorf(`ListenAndServe("") err = %v, want nil (disabled)`, err)
	}
	if err := tel.ListenAndServe(ctx, "256.0.0.1:bad"); err == nil {
		t.Error("ListenAndServe(bad address) err = nil, want an error")
	}
}
