// Package telemetry gives every Keyward service the same logs, traces,
// metrics, health endpoints and trace propagation over NATS.
//
// A service's main typically does:
//
//	level, err := telemetry.ParseLevel(getenv("KEYWARD_LOG_LEVEL"))
//	logger := telemetry.NewLogger(os.Stderr, telemetry.LogOptions{Service: "encryptor", Version: version, Level: level})
//	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "encryptor", ServiceVersion: version, Getenv: getenv, Logger: logger})
//	defer tel.Shutdown(context.WithoutCancel(ctx)) // flushes spans
//	tel.AddReadyCheck("nats", func(context.Context) error { ... nc.Status() ... })
//	go tel.ListenAndServe(serveCtx, httpAddr)
//
// # Logs
//
// NewLogger writes JSON lines (log/slog) with "service" and "version" on
// every line, and "trace_id" and "span_id" (lowercase hex, W3C form) when
// the record's context holds a valid span context. ParseLevel parses
// KEYWARD_LOG_LEVEL (debug, info, warn, error). Never log plaintext, key
// material, DEKs or credentials; types holding secrets implement
// slog.LogValuer to redact themselves.
//
// # Traces
//
// Setup creates an SDK TracerProvider whose resource has service.name,
// service.version, telemetry.sdk.*, host.name, os.type, process.pid,
// process.executable.name, process.runtime.*, container.id (when in a
// container) and anything in OTEL_RESOURCE_ATTRIBUTES. Spans are exported
// with OTLP/HTTP when an OTLP endpoint is configured; otherwise they are
// not exported, but every span still gets real trace and span ids, so
// trace context still propagates across services and into logs.
//
// Setup sets the OpenTelemetry globals: its tracer and meter providers,
// Propagator() (W3C tracecontext + baggage) and an error handler that logs
// OpenTelemetry's internal errors (failed exports) through Config.Logger.
//
// # Environment
//
// Setup reads the environment only through Config.Getenv, never os.Getenv.
// The OTLP exporter and the SDK also read the process environment on their
// own; Setup passes every setting below to them explicitly, which takes
// precedence, so Getenv is the single source for these variables:
//
//	OTEL_SERVICE_NAME                     overrides Config.ServiceName (and a service.name in OTEL_RESOURCE_ATTRIBUTES)
//	OTEL_RESOURCE_ATTRIBUTES              k1=v1,k2=v2 (values percent-encoded); override the detected attributes
//	OTEL_TRACES_EXPORTER                  "otlp" (export, to http://localhost:4318 if no endpoint is set) or "none";
//	                                      unset: export only when an endpoint below is set
//	OTEL_EXPORTER_OTLP_ENDPOINT           base URL; "/v1/traces" is appended
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT    full URL, used as is; wins over the base URL
//	OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL  http/protobuf (default) or http/json; grpc is rejected
//	OTEL_EXPORTER_OTLP_[TRACES_]HEADERS   k1=v1,k2=v2 (values percent-encoded), e.g. an API key
//	OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT   milliseconds per export (default 10000)
//	OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION       gzip or none (default)
//	OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE       PEM file of CAs to trust (https endpoints)
//	OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY   PEM files for mTLS
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG  always_on, always_off, traceidratio, parentbased_always_on (default
//	                                      when spans are exported), parentbased_always_off (default when nothing
//	                                      exports: root spans are not recorded for nothing, a sampled parent stays
//	                                      sampled), parentbased_traceidratio; ARG is the ratio 0..1
//	OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT (ms), OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE
//
// The TRACES_ variant of a variable wins over the generic one. The scheme of
// the endpoint decides TLS (http:// is plain text), so
// OTEL_EXPORTER_OTLP_INSECURE is not used. Every bad value is reported by
// Setup at once as an *EnvError naming the variable (header values, which
// may be secrets, are never repeated). Not passed through Getenv: the span
// limits (OTEL_SPAN_*_LIMIT, OTEL_ATTRIBUTE_*_LIMIT), which the SDK reads
// from the process environment, and HTTPS_PROXY/NO_PROXY, which the
// exporter's HTTP transport honours. Metrics are only pulled (no OTLP metric
// export), so OTEL_METRICS_EXPORTER is not used.
//
// # Endpoints
//
// Handler serves, and Serve / ListenAndServe run a server for:
//
//	GET /metrics  Prometheus text format: the OpenTelemetry metrics, go_* and process_* collectors, keyward_build_info
//	GET /healthz  liveness: 200 "ok" while the process runs
//	GET /readyz   readiness: every check (AddReadyCheck, SetReady) within 2 s;
//	              200 {"status":"ready","checks":{"nats":"ok"}} or
//	              503 {"status":"not_ready","checks":{"nats":"ok","ledger":"catching up"}}
//
// # Metrics naming for Keyward
//
// Create instruments through Telemetry.Meter (or otel.Meter after Setup).
// The Prometheus exporter turns dots into underscores (also for scrapers
// that accept UTF-8 names), appends the unit ("_seconds", "_bytes") and
// "_total" for counters:
//
//	meter.Int64Counter("keyward.assets.encrypted")                        → keyward_assets_encrypted_total
//	meter.Float64Histogram("keyward.kms.duration", metric.WithUnit("s"))  → keyward_kms_duration_seconds
//
// Rules:
//   - Every name starts with "keyward." (keyward_ in Prometheus).
//   - Units are UCUM and base units: "s", "By", "1"; not "ms".
//   - Labels (attributes) come from bounded sets only: service, mode
//     (customer|fallback|platform), provider (awskms|ocikms|azurekv|localkms),
//     outcome or reason codes, key status, breaker state, stream or consumer name.
//   - Never a tenant id, asset id, user id, key id, key URI, subject with a
//     tenant token, error text, or anything secret as a label. Put those on
//     spans or in logs (never secrets there either).
//
// OpenTelemetry adds otel_scope_name/otel_scope_version labels, and the
// resource becomes the target_info metric.
//
// # Trace context over NATS
//
// nats.Header is case-sensitive, unlike http.Header, so the HTTP carrier
// must not be used. NATSHeaderCarrier writes lowercase traceparent,
// tracestate and baggage keys (and reads any case); InjectNATS and
// ExtractNATS wrap it. StartPublishSpan (kind producer, injects into the
// message) and StartProcessSpan (kind consumer, parent taken from the
// headers) follow the OpenTelemetry semantic conventions for messaging:
// messaging.system=nats, messaging.destination.name=<subject>,
// messaging.operation.type=send|process, messaging.operation.name.
//
// # Errors
//
// ParseLevel returns an *EnvError wrapping ErrInvalidLogLevel; Setup
// returns errors wrapping ErrInvalidConfig that join one *EnvError per bad
// variable. /readyz reports ErrReadyTimeout for a check that does not
// finish within ReadyTimeout.
package telemetry
