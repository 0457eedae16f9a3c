package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/keyward/keyward/pkg/telemetry"
)

// mapEnv returns a Getenv over m.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func setup(t *testing.T, env map[string]string) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{
		ServiceName:    "test-service",
		ServiceVersion: "0.0.1",
		Getenv:         mapEnv(env),
	})
	if err != nil {
		t.Fatalf("Setup() err = %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// collector is an httptest OTLP/HTTP endpoint that records requests.
type collector struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []collectedRequest
}

type collectedRequest struct {
	method, path, contentType, apiKey string
	size                              int
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.reqs = append(c.reqs, collectedRequest{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("X-Api-Key"), len(body)})
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) requests() []collectedRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

func TestSetupExportsSpansOverOTLPHTTP(t *testing.T) {
	coll := newCollector(t)
	// The process environment points elsewhere: Getenv must win.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from-process-env")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")

	tel, err := telemetry.Setup(t.Context(), telemetry.Config{
		ServiceName: "encryptor",
		Getenv: mapEnv(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": coll.URL,
			"OTEL_EXPORTER_OTLP_HEADERS":  "x-api-key=from%20getenv",
		}),
	})
	if err != nil {
		t.Fatalf("Setup() err = %v", err)
	}
	if got, want := tel.TraceEndpoint(), coll.URL+"/v1/traces"; got != want {
		t.Errorf("TraceEndpoint() = %q, want %q", got, want)
	}
	_, span := tel.Tracer("test").Start(t.Context(), "encrypt asset")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown() err = %v", err)
	}

	reqs := coll.requests()
	if len(reqs) == 0 {
		t.Fatal("collector received no request after Shutdown")
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/v1/traces" {
		t.Errorf("request = %s %s, want POST /v1/traces", r.method, r.path)
	}
	if r.contentType != "application/x-protobuf" || r.size == 0 {
		t.Errorf("content type, size = %q, %d, want application/x-protobuf and a body", r.contentType, r.size)
	}
	if r.apiKey != "from getenv" {
		t.Errorf("X-Api-Key = %q, want %q (from Getenv, percent-decoded)", r.apiKey, "from getenv")
	}
	// Shutdown is idempotent.
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Errorf("second Shutdown() err = %v", err)
	}
}

func TestSetupTracesEndpointUsedAsIs(t *testing.T) {
	coll := newCollector(t)
	tel := setup(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://127.0.0.1:1",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": coll.URL + "/custom/traces",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
	})
	_, span := tel.Tracer("test").Start(t.Context(), "op")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown() err = %v", err)
	}
	reqs := coll.requests()
	if len(reqs) == 0 || reqs[0].path != "/custom/traces" || reqs[0].contentType != "application/json" {
		t.Errorf("requests = %+v, want a JSON POST to /custom/traces", reqs)
	}
}

func TestSetupWithoutExporter(t *testing.T) {
	coll := newCollector(t)
	for name, env := range map[string]map[string]string{
		"no endpoint":   {},
		"exporter none": {"OTEL_EXPORTER_OTLP_ENDPOINT": coll.URL, "OTEL_TRACES_EXPORTER": "none"},
		"sampler off":   {"OTEL_TRACES_SAMPLER": "always_off"},
	} {
		t.Run(name, func(t *testing.T) {
			tel := setup(t, env)
			if got := tel.TraceEndpoint(); got != "" {
				t.Errorf("TraceEndpoint() = %q, want \"\"", got)
			}
			_, span := tel.Tracer("test").Start(t.Context(), "op")
			span.End()
			if sc := span.SpanContext(); !sc.TraceID().IsValid() || !sc.SpanID().IsValid() {
				t.Errorf("span context %v has no ids; trace context would not propagate", sc)
			}
			if err := tel.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown() err = %v", err)
			}
		})
	}
	if reqs := coll.requests(); len(reqs) != 0 {
		t.Errorf("collector got %d requests with export disabled, want 0", len(reqs))
	}
}

func TestSetupExplicitOTLPDefaultsToLocalhost(t *testing.T) {
	tel := setup(t, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"})
	if got, want := tel.TraceEndpoint(), "http://localhost:4318/v1/traces"; got != want {
		t.Errorf("TraceEndpoint() = %q, want %q", got, want)
	}
}

// envErrorNames lists the variables named by the *EnvError values in err.
func envErrorNames(err error) []string {
	var names []string
	var walk func(error)
	walk = func(e error) {
		if ee, ok := e.(*telemetry.EnvError); ok {
			names = append(names, ee.Name)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	slices.Sort(names)
	return names
}

func TestSetupInvalidEnvironment(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":           "localhost:4318", // no scheme
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":    "grpc",
		"OTEL_EXPORTER_OTLP_HEADERS":            "secret-token-value", // no '='
		"OTEL_EXPORTER_OTLP_TIMEOUT":            "10s",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd",
		"OTEL_TRACES_SAMPLER":                   "sometimes",
		"OTEL_RESOURCE_ATTRIBUTES":              "a=1,broken",
		"OTEL_BSP_MAX_QUEUE_SIZE":               "-1",
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/nonexistent/cert.pem",
	}
	_, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: "s", Getenv: mapEnv(env)})
	if !errors.Is(err, telemetry.ErrInvalidConfig) {
		t.Fatalf("Setup() err = %v, want %v", err, telemetry.ErrInvalidConfig)
	}
	want := []string{
		"OTEL_BSP_MAX_QUEUE_SIZE",
		"OTEL_EXPORTER_OTLP_CLIENT_KEY",
		"OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_TIMEOUT",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_SAMPLER",
	}
	if got := envErrorNames(err); !slices.Equal(got, want) {
		t.Errorf("Setup() err names %v\nwant %v\nerr = %v", got, want, err)
	}
	if strings.Contains(err.Error(), "secret-token-value") {
		t.Errorf("Setup() err = %q repeats a header value", err)
	}
}

func TestSetupServiceName(t *testing.T) {
	_, err := telemetry.Setup(t.Context(), telemetry.Config{Getenv: mapEnv(nil)})
	if names := envErrorNames(err); !errors.Is(err, telemetry.ErrInvalidConfig) || !slices.Equal(names, []string{"OTEL_SERVICE_NAME"}) {
		t.Errorf("Setup() without a service name err = %v, want an *EnvError naming OTEL_SERVICE_NAME", err)
	}

	tel := setup(t, map[string]string{
		"OTEL_SERVICE_NAME":        "from-env",
		"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment.name=ci%20run",
	})
	if got := tel.ServiceName(); got != "from-env" {
		t.Errorf("ServiceName() = %q, want from-env", got)
	}
	body := get(t, tel.Handler(), "/metrics").body
	for _, want := range []string{
		`keyward_build_info{service="from-env",version="0.0.1"} 1`,
		`service_name="from-env"`,
		`deployment_environment_name="ci run"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	tel = setup(t, map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"})
	if got := tel.ServiceName(); got != "from-attrs" {
		t.Errorf("ServiceName() = %q, want from-attrs", got)
	}
}

func TestSetupSetsGlobals(t *testing.T) {
	setup(t, nil)
	fields := otel.GetTextMapPropagator().Fields()
	slices.Sort(fields)
	if want := []string{"baggage", "traceparent", "tracestate"}; !slices.Equal(fields, want) {
		t.Errorf("global propagator fields = %v, want %v", fields, want)
	}
	_, span := otel.Tracer("test").Start(t.Context(), "op")
	span.End()
	if !span.SpanContext().IsValid() {
		t.Error("otel.Tracer span has no ids after Setup; the global tracer provider is not set")
	}
}
