package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

var propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{},
)

// Propagator returns the W3C trace context + baggage propagator Keyward
// uses everywhere. Setup installs it as the global propagator; InjectNATS
// and ExtractNATS use it directly, so they work even before Setup runs.
func Propagator() propagation.TextMapPropagator { return propagator }

// Config configures Setup.
type Config struct {
	// ServiceName is the service.name resource attribute and the
	// "service" label of keyward_build_info. OTEL_SERVICE_NAME, then a
	// service.name in OTEL_RESOURCE_ATTRIBUTES, override it. Required
	// unless OTEL_SERVICE_NAME is set.
	ServiceName string
	// ServiceVersion is service.version (overridable through
	// OTEL_RESOURCE_ATTRIBUTES).
	ServiceVersion string
	// Getenv reads the environment: pass os.Getenv in main and a map
	// lookup in tests. nil reads nothing (as if every variable were
	// unset). The package never calls os.Getenv itself.
	Getenv func(string) string
	// Logger receives OpenTelemetry's internal errors (failed exports, ...)
	// and HTTP server errors. nil means slog.Default() at the time of the
	// error.
	Logger *slog.Logger
}

// Telemetry holds the trace and metric providers of one process, its
// Prometheus registry and its readiness checks. Create it with Setup and
// release it with Shutdown.
type Telemetry struct {
	serviceName    string
	serviceVersion string
	traceEndpoint  string
	logger         *slog.Logger

	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
	registry *prometheus.Registry

	ready readiness

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the trace and metric providers described in the package
// documentation and installs them, the W3C propagator (Propagator()) and an
// error handler logging to cfg.Logger as the OpenTelemetry globals
// (otel.SetTracerProvider, otel.SetMeterProvider,
// otel.SetTextMapPropagator, otel.SetErrorHandler), so libraries using
// otel.Tracer / otel.Meter are covered too. Call Shutdown before exit to
// flush spans.
//
// Every bad variable is reported at once: the error wraps
// ErrInvalidConfig and joins one *EnvError per problem.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	env := &envReader{getenv: getenv}

	sampler := env.sampler()
	export := env.resolveTraceExport()
	if export.endpoint == "" && strings.TrimSpace(getenv(envTracesSampler)) == "" {
		// Nothing exports spans: do not record root spans for nothing.
		// Span contexts are still created and propagated, and a sampled
		// parent from upstream stays sampled downstream.
		sampler = sdktrace.ParentBased(sdktrace.NeverSample())
	}
	envAttrs := env.resourceAttributes()

	serviceName := cfg.ServiceName
	for _, kv := range envAttrs {
		if kv.Key == semconv.ServiceNameKey {
			serviceName = kv.Value.AsString()
		}
	}
	if serviceName == "" {
		env.fail(envErr(envServiceName, "Config.ServiceName is empty and %s is not set", envServiceName))
	}
	if err := joinEnvErrors(env.errs); err != nil {
		return nil, err
	}

	res, err := newResource(ctx, cfg, envAttrs)
	if err != nil {
		return nil, err
	}

	t := &Telemetry{
		serviceName:    serviceName,
		serviceVersion: cfg.ServiceVersion,
		traceEndpoint:  export.endpoint,
		logger:         cfg.Logger,
		registry:       prometheus.NewRegistry(),
	}

	// Metrics.
	if err := t.registry.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: registering Go collector: %w", err)
	}
	if err := t.registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: registering process collector: %w", err)
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "keyward_build_info",
		Help:        "Always 1; labels name the service and its version.",
		ConstLabels: prometheus.Labels{"service": serviceName, "version": cfg.ServiceVersion},
	})
	buildInfo.Set(1)
	if err := t.registry.Register(buildInfo); err != nil {
		return nil, fmt.Errorf("telemetry: registering keyward_build_info: %w", err)
	}
	reader, err := otelprom.New(
		otelprom.WithRegisterer(t.registry),
		// Explicit: the default depends on a prometheus/common global and
		// keeps the dots for scrapers that accept UTF-8 names (Prometheus
		// 3), which would break the keyward_* names.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: creating Prometheus exporter: %w", err)
	}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader))

	// Traces.
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	if export.enabled {
		exp, err := otlptracehttp.New(ctx, export.opts...)
		if err != nil {
			_ = t.mp.Shutdown(ctx)
			return nil, fmt.Errorf("telemetry: creating OTLP trace exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp, export.bsp...))
	}
	t.tp = sdktrace.NewTracerProvider(tpOpts...)

	otel.SetTracerProvider(t.tp)
	otel.SetMeterProvider(t.mp)
	otel.SetTextMapPropagator(propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		t.log().Warn("opentelemetry error", "err", err)
	}))

	exporter := "none"
	if export.enabled {
		exporter = "otlp"
	}
	t.log().LogAttrs(ctx, slog.LevelDebug, "telemetry configured",
		slog.String("otel_service_name", serviceName),
		slog.String("trace_exporter", exporter),
		slog.String("trace_endpoint", redactURL(export.endpoint)))
	return t, nil
}

func newResource(ctx context.Context, cfg Config, envAttrs []attribute.KeyValue) (*sdkresource.Resource, error) {
	base := []attribute.KeyValue{}
	if cfg.ServiceName != "" {
		base = append(base, semconv.ServiceName(cfg.ServiceName))
	}
	if cfg.ServiceVersion != "" {
		base = append(base, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	res, err := sdkresource.New(ctx,
		sdkresource.WithSchemaURL(semconv.SchemaURL),
		sdkresource.WithAttributes(base...),
		sdkresource.WithTelemetrySDK(),
		sdkresource.WithHost(),
		sdkresource.WithOSType(),
		sdkresource.WithProcessPID(),
		sdkresource.WithProcessExecutableName(),
		sdkresource.WithProcessRuntimeName(),
		sdkresource.WithProcessRuntimeVersion(),
		sdkresource.WithContainer(),
		// Last, so the environment wins.
		sdkresource.WithDetectors(envDetector(envAttrs)),
	)
	if err != nil && !errors.Is(err, sdkresource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: building resource: %w", err)
	}
	// A partial resource (say, no container id outside a container) is
	// still a good resource.
	return res, nil
}

func (t *Telemetry) log() *slog.Logger {
	if t.logger != nil {
		return t.logger
	}
	return slog.Default()
}

func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Redacted()
}

// ServiceName returns the resolved service.name (Config.ServiceName unless
// the environment overrides it); pass it to NewLogger so logs and traces
// agree.
func (t *Telemetry) ServiceName() string { return t.serviceName }

// TraceEndpoint returns the URL spans are exported to, or "" when trace
// export is off.
func (t *Telemetry) TraceEndpoint() string { return t.traceEndpoint }

// Tracer returns a tracer of this Telemetry's provider; name is the
// instrumentation scope, conventionally the package import path.
func (t *Telemetry) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return t.tp.Tracer(name, opts...)
}

// Meter returns a meter whose instruments appear on /metrics; see the
// package documentation for the naming rules.
func (t *Telemetry) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return t.mp.Meter(name, opts...)
}

// TracerProvider returns the trace provider, for libraries that take one.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider returns the meter provider, for libraries that take one.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Registry returns the Prometheus registry served on /metrics. It holds
// the OpenTelemetry metrics, the Go runtime and process collectors and
// keyward_build_info; register plain Prometheus collectors here if needed.
func (t *Telemetry) Registry() *prometheus.Registry { return t.registry }

// Shutdown flushes pending spans to the exporter and stops both
// providers, within ctx's deadline. Later calls return the first result.
// Spans and metrics recorded afterwards are dropped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("trace provider: %w", err))
		}
		if err := t.mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("meter provider: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			t.shutdownErr = fmt.Errorf("telemetry: shutdown: %w", err)
		}
	})
	return t.shutdownErr
}
