package monitor

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/keyhealth"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/svc"
)

// Defaults of the monitor. docs/key-health.md explains each.
const (
	DefaultHealthyInterval   = keyhealth.DefaultHealthyInterval   // 60 s
	DefaultUnhealthyInterval = keyhealth.DefaultUnhealthyInterval // 10 s
	DefaultConfirmInterval   = keyhealth.DefaultConfirmInterval   // 2 s
	DefaultJitter            = keyhealth.DefaultJitter            // ±10%
	DefaultSlowThreshold     = keyhealth.DefaultSlowThreshold     // 250 ms
	DefaultHysteresis        = keyhealth.DefaultThreshold         // 3
	// DefaultConcurrency bounds the probes in flight at once. 10,000 keys
	// probed every 60 s at ~20 ms a round trip keep about 4 busy; 32 leave
	// room for slow endpoints (a probe of a hanging one holds a slot for
	// the call timeout).
	DefaultConcurrency = 32
	// DefaultPartitions is the number of tenant partitions instances share:
	// enough to balance up to a dozen instances within one partition each.
	DefaultPartitions = 32
	// DefaultObservationProbeDelay: a key whose live traffic reports news is
	// probed again this soon.
	DefaultObservationProbeDelay = time.Second
	// DefaultProbeRateShare is the fraction of an endpoint's default rate
	// limit (kms.DefaultRateLimits) the monitor's probes may use, two calls
	// a probe: 250 probes/s per AWS region, 37 per Azure vault, 25 per OCI
	// vault. The rest is the encryptors'.
	DefaultProbeRateShare = 0.5
	// DefaultMaxDeadLettersPerSecond bounds the invalid observations one
	// instance dead-letters; beyond it they are only counted (anyone may
	// publish on the observation subjects).
	DefaultMaxDeadLettersPerSecond = 20
	// DefaultPublishTimeout bounds publishing one transition (event, then
	// KV record).
	DefaultPublishTimeout = 5 * time.Second
)

// Deps are the connections a Worker uses. The caller owns them, so
// `keyward dev` can share one NATS connection.
type Deps struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// KMS probes the keys. It must not have a circuit breaker (kms.WithGuard):
	// the monitor is what sees an endpoint recover, so its probes must
	// reach it.
	KMS *kms.Client
}

// Options tune a Worker. The zero value is the production configuration.
type Options struct {
	// HealthyInterval between probes of an available key (60 s).
	HealthyInterval time.Duration
	// UnhealthyInterval between probes of a key that is not available
	// (10 s, or a sixth of a shorter HealthyInterval).
	UnhealthyInterval time.Duration
	// ConfirmInterval between probes of a key whose latest results
	// disagree with its known status, until Hysteresis of them make the
	// change or one agrees (2 s; never longer than UnhealthyInterval).
	ConfirmInterval time.Duration
	// Jitter varies each interval by ± this fraction (0.1; negative: none).
	Jitter float64
	// SlowThreshold: a round trip slower than this is slow (degraded) (250 ms, half the KMS call timeout).
	SlowThreshold time.Duration
	// Hysteresis is how many consecutive results must agree on a new
	// status before it changes (3).
	Hysteresis int
	// Concurrency bounds the probes in flight (32).
	Concurrency int
	// Partitions is the number of tenant partitions the instances share
	// (32). The first instance stores it in the lease bucket; later
	// instances use the stored number, whatever they were given.
	Partitions int
	// ObservationProbeDelay: after an observation that disagrees with a
	// key's status, the key is probed within this delay (1 s).
	ObservationProbeDelay time.Duration
	// ProbeRateShare is the fraction of each endpoint's default rate limit
	// the probes may use (0.5; negative: no pacing beyond the kms.Client's
	// own limiter).
	ProbeRateShare float64
	// MaxDeadLettersPerSecond bounds dead-lettered observations (20).
	MaxDeadLettersPerSecond float64
	// PublishTimeout bounds publishing one transition (5 s).
	PublishTimeout time.Duration
	// AllowLocalCustomerKeys accepts localkms:// customer keys in tenant
	// configurations (keyward dev and tests only).
	AllowLocalCustomerKeys bool
	// Name names the worker in events (ce-source), dead letters and logs
	// ("key-health-monitor").
	Name string
	// InstanceID identifies this instance in the lease bucket (default:
	// name, host, pid and a random suffix). Letters, digits, '-' and '_'.
	InstanceID string

	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
}

func (o *Options) setDefaults() {
	if o.HealthyInterval <= 0 {
		o.HealthyInterval = DefaultHealthyInterval
	}
	if o.UnhealthyInterval <= 0 {
		o.UnhealthyInterval = min(DefaultUnhealthyInterval, o.HealthyInterval/6)
	}
	if o.Jitter == 0 {
		o.Jitter = DefaultJitter
	}
	if o.SlowThreshold <= 0 {
		o.SlowThreshold = DefaultSlowThreshold
	}
	if o.Hysteresis <= 0 {
		o.Hysteresis = DefaultHysteresis
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Partitions <= 0 {
		o.Partitions = DefaultPartitions
	}
	if o.ObservationProbeDelay <= 0 {
		o.ObservationProbeDelay = DefaultObservationProbeDelay
	}
	if o.ProbeRateShare == 0 {
		o.ProbeRateShare = DefaultProbeRateShare
	}
	if o.MaxDeadLettersPerSecond <= 0 {
		o.MaxDeadLettersPerSecond = DefaultMaxDeadLettersPerSecond
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.Name == "" {
		o.Name = "key-health-monitor"
	}
	if o.InstanceID == "" {
		o.InstanceID = svc.InstanceID(o.Name)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate(d Deps) error {
	var errs []error
	if d.NC == nil || d.JS == nil || d.KMS == nil {
		errs = append(errs, errors.New("monitor: Deps needs NC, JS and KMS"))
	}
	if o.UnhealthyInterval > o.HealthyInterval {
		errs = append(errs, fmt.Errorf("monitor: the unhealthy interval (%v) is longer than the healthy interval (%v)", o.UnhealthyInterval, o.HealthyInterval))
	}
	if o.Jitter > 0.5 {
		errs = append(errs, fmt.Errorf("monitor: jitter %.2f is more than 0.5", o.Jitter))
	}
	if o.ProbeRateShare > 1 {
		errs = append(errs, fmt.Errorf("monitor: probe rate share %.2f is more than the whole rate limit (1)", o.ProbeRateShare))
	}
	if o.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("monitor: %d partitions; at most 1024", o.Partitions))
	}
	if !validInstanceID(o.InstanceID) {
		errs = append(errs, fmt.Errorf("monitor: instance id %q: use 1-64 letters, digits, '-' and '_'", o.InstanceID))
	}
	return errors.Join(errs...)
}

func validInstanceID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
