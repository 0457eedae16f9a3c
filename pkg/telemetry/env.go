package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Names of the environment variables Setup reads through Config.Getenv.
const (
	envServiceName        = "OTEL_SERVICE_NAME"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envTracesSampler      = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg   = "OTEL_TRACES_SAMPLER_ARG"
	envBSPScheduleDelay   = "OTEL_BSP_SCHEDULE_DELAY"
	envBSPExportTimeout   = "OTEL_BSP_EXPORT_TIMEOUT"
	envBSPMaxQueueSize    = "OTEL_BSP_MAX_QUEUE_SIZE"
	envBSPMaxExportBatch  = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
	envOTLP               = "OTEL_EXPORTER_OTLP_"
	envOTLPTraces         = "OTEL_EXPORTER_OTLP_TRACES_"
	defaultOTLPEndpoint   = "http://localhost:4318"
	defaultOTLPTimeout    = 10 * time.Second
	otlpTracesPath        = "/v1/traces"
)

// envReader reads trimmed variables and collects problems.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (e *envReader) get(name string) string { return strings.TrimSpace(e.getenv(name)) }

func (e *envReader) fail(err *EnvError) { e.errs = append(e.errs, err) }

// otlpVar returns the traces-specific OTEL_EXPORTER_OTLP_TRACES_<suffix>
// if set, else the generic OTEL_EXPORTER_OTLP_<suffix>, with the name of
// the variable it came from.
func (e *envReader) otlpVar(suffix string) (name, value string) {
	if v := e.get(envOTLPTraces + suffix); v != "" {
		return envOTLPTraces + suffix, v
	}
	return envOTLP + suffix, e.get(envOTLP + suffix)
}

// positiveInt parses a positive integer variable; def if unset.
func (e *envReader) positiveInt(name string, def int) int {
	v := e.get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		e.fail(envErr(name, "%q is not a positive integer", v))
		return def
	}
	return n
}

// millis parses a positive number of milliseconds; def if unset.
func (e *envReader) millis(name string, def time.Duration) time.Duration {
	n := e.positiveInt(name, -1)
	if n < 0 {
		return def
	}
	return time.Duration(n) * time.Millisecond
}

// traceExport is the resolved trace export configuration.
type traceExport struct {
	enabled  bool
	endpoint string // full URL of the traces endpoint, path included
	opts     []otlptracehttp.Option
	bsp      []sdktrace.BatchSpanProcessorOption
}

// resolveTraceExport decides whether spans are exported and turns every
// OTEL_EXPORTER_OTLP_* variable it honours into an explicit exporter
// option. The exporter also reads the process environment on its own;
// explicit options win over that, so with every setting passed explicitly
// Getenv is the only source that counts.
func (e *envReader) resolveTraceExport() traceExport {
	var te traceExport

	explicitOTLP := false
	if v := e.get(envTracesExporter); v != "" {
		none := false
		for _, name := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "otlp":
				explicitOTLP = true
			case "none":
				none = true
			default:
				e.fail(envErr(envTracesExporter, "exporter %q is not supported: want otlp or none", strings.TrimSpace(name)))
			}
		}
		if none {
			return te
		}
	}

	genericEP := e.get(envOTLP + "ENDPOINT")
	tracesEP := e.get(envOTLPTraces + "ENDPOINT")
	if genericEP == "" && tracesEP == "" && !explicitOTLP {
		return te
	}
	te.enabled = true

	// Endpoint: the traces variable is used as is ("/" if it has no
	// path); the generic one is a base URL that gets "/v1/traces".
	var u *url.URL
	switch {
	case tracesEP != "":
		u = e.endpointURL(envOTLPTraces+"ENDPOINT", tracesEP)
		if u != nil && u.Path == "" {
			u.Path = "/"
		}
	default:
		raw := genericEP
		if raw == "" {
			raw = defaultOTLPEndpoint
		}
		u = e.endpointURL(envOTLP+"ENDPOINT", raw)
		if u != nil {
			u.Path = path.Join("/", u.Path, otlpTracesPath)
		}
	}
	if u != nil {
		te.endpoint = u.String()
		te.opts = append(te.opts, otlptracehttp.WithEndpointURL(te.endpoint))
	}

	if name, v := e.otlpVar("PROTOCOL"); v != "" {
		switch v {
		case "http/protobuf":
			te.opts = append(te.opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
		case "http/json":
			te.opts = append(te.opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
		default:
			e.fail(envErr(name, "protocol %q is not supported: want http/protobuf (port 4318) or http/json", v))
		}
	} else {
		te.opts = append(te.opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
	}

	headers := map[string]string{}
	if name, v := e.otlpVar("HEADERS"); v != "" {
		headers = e.headers(name, v)
	}
	te.opts = append(te.opts, otlptracehttp.WithHeaders(headers))

	timeoutName, _ := e.otlpVar("TIMEOUT")
	te.opts = append(te.opts, otlptracehttp.WithTimeout(e.millis(timeoutName, defaultOTLPTimeout)))

	compression := otlptracehttp.NoCompression
	if name, v := e.otlpVar("COMPRESSION"); v != "" {
		switch strings.ToLower(v) {
		case "gzip":
			compression = otlptracehttp.GzipCompression
		case "none":
		default:
			e.fail(envErr(name, "compression %q is not supported: want gzip or none", v))
		}
	}
	te.opts = append(te.opts, otlptracehttp.WithCompression(compression))

	// TLS. A nil config resets anything the exporter picked up from the
	// process environment; it must stay nil for an http:// endpoint.
	tlsCfg, tlsVar := e.tlsConfig()
	if tlsCfg != nil && u != nil && u.Scheme != "https" {
		e.fail(envErr(tlsVar, "TLS files need an https:// endpoint, not %s://", u.Scheme))
		tlsCfg = nil
	}
	te.opts = append(te.opts, otlptracehttp.WithTLSClientConfig(tlsCfg))

	te.bsp = []sdktrace.BatchSpanProcessorOption{
		sdktrace.WithBatchTimeout(e.millis(envBSPScheduleDelay, sdktrace.DefaultScheduleDelay*time.Millisecond)),
		sdktrace.WithExportTimeout(e.millis(envBSPExportTimeout, sdktrace.DefaultExportTimeout*time.Millisecond)),
		sdktrace.WithMaxQueueSize(e.positiveInt(envBSPMaxQueueSize, sdktrace.DefaultMaxQueueSize)),
		sdktrace.WithMaxExportBatchSize(e.positiveInt(envBSPMaxExportBatch, sdktrace.DefaultMaxExportBatchSize)),
	}
	return te
}

func (e *envReader) endpointURL(name, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The value is not repeated: it may carry credentials.
		e.fail(envErr(name, "want an absolute http:// or https:// URL such as %s", defaultOTLPEndpoint))
		return nil
	}
	if u.RawQuery != "" || u.Fragment != "" {
		e.fail(envErr(name, "the URL must not have a query or fragment"))
		return nil
	}
	return u
}

// headers parses "k1=v1,k2=v2" with percent-encoded values, as the OTLP
// exporter spec describes. Values are secrets (API keys) and are never
// put in errors.
func (e *envReader) headers(name, v string) map[string]string {
	h := map[string]string{}
	for i, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\r\n\"(),/:;<=>?@[\\]{}") {
			e.fail(envErr(name, "entry %d is not key=value with a valid header name", i+1))
			continue
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			e.fail(envErr(name, "the value of %q is not valid percent-encoding", k))
			continue
		}
		h[k] = dec
	}
	return h
}

// tlsConfig builds the client TLS configuration from the certificate
// variables; nil when none is set. name is the first variable that is set.
func (e *envReader) tlsConfig() (cfg *tls.Config, name string) {
	caName, ca := e.otlpVar("CERTIFICATE")
	certName, cert := e.otlpVar("CLIENT_CERTIFICATE")
	keyName, key := e.otlpVar("CLIENT_KEY")
	switch {
	case ca != "":
		name = caName
	case cert != "":
		name = certName
	case key != "":
		name = keyName
	default:
		return nil, ""
	}
	cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			e.fail(&EnvError{Name: caName, Err: err})
		case !pool.AppendCertsFromPEM(pem):
			e.fail(envErr(caName, "no PEM certificate in %s", ca))
		default:
			cfg.RootCAs = pool
		}
	}
	switch {
	case cert != "" && key != "":
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			e.fail(&EnvError{Name: certName, Err: fmt.Errorf("loading client certificate and key: %w", err)})
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	case cert != "":
		e.fail(envErr(keyName, "must be set with %s", certName))
	case key != "":
		e.fail(envErr(certName, "must be set with %s", keyName))
	}
	return cfg, name
}

// sampler resolves OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG; the
// default is parentbased_always_on.
func (e *envReader) sampler() sdktrace.Sampler {
	name := strings.ToLower(e.get(envTracesSampler))
	arg := e.get(envTracesSamplerArg)
	ratio := func() sdktrace.Sampler {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1)
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			e.fail(envErr(envTracesSamplerArg, "%q is not a ratio between 0 and 1", arg))
			return sdktrace.TraceIDRatioBased(1)
		}
		return sdktrace.TraceIDRatioBased(f)
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return ratio()
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(ratio())
	}
	e.fail(envErr(envTracesSampler, "sampler %q is not supported: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name))
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// resourceAttributes parses OTEL_RESOURCE_ATTRIBUTES ("k1=v1,k2=v2",
// values percent-encoded) and OTEL_SERVICE_NAME, which wins over a
// service.name given in the former.
func (e *envReader) resourceAttributes() []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if v := e.get(envResourceAttributes); v != "" {
		for i, pair := range strings.Split(v, ",") {
			if strings.TrimSpace(pair) == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				e.fail(envErr(envResourceAttributes, "entry %d is not key=value", i+1))
				continue
			}
			dec, err := url.PathUnescape(strings.TrimSpace(val))
			if err != nil {
				e.fail(envErr(envResourceAttributes, "the value of %q is not valid percent-encoding", k))
				continue
			}
			attrs = append(attrs, attribute.String(k, dec))
		}
	}
	if v := e.get(envServiceName); v != "" {
		attrs = append(attrs, semconv.ServiceName(v))
	}
	return attrs
}

// envDetector is a resource.Detector over attributes already parsed from
// Config.Getenv (the SDK's own env detector reads os.Getenv).
type envDetector []attribute.KeyValue

func (d envDetector) Detect(context.Context) (*sdkresource.Resource, error) {
	return sdkresource.NewWithAttributes(semconv.SchemaURL, d...), nil
}

// joinEnvErrors wraps the collected problems in ErrInvalidConfig.
func joinEnvErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("telemetry: %w: %w", ErrInvalidConfig, errors.Join(errs...))
}
