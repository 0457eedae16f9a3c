package monitor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/kms/providers"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/svc"
)

// Config is the key-health-monitor process's configuration: flags with
// environment fallbacks.
type Config struct {
	svc.Common
	KMS                   providers.Config
	PlatformConfig        string
	AllowLocalKeys        bool
	HealthyInterval       time.Duration
	UnhealthyInterval     time.Duration
	ConfirmInterval       time.Duration
	Jitter                float64
	SlowThreshold         time.Duration
	Hysteresis            int
	Concurrency           int
	Partitions            int
	ObservationProbeDelay time.Duration
	ProbeRateShare        float64
	InstanceID            string
	ShutdownDeadline      time.Duration
}

// ParseConfig reads flags and environment.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	var c Config
	f := svc.NewFlags("key-health-monitor", getenv, out)
	c.Common.Register(f, "key-health-monitor")
	c.KMS.Register(f)
	f.String(&c.PlatformConfig, "platform-config", "KEYWARD_PLATFORM_CONFIG", "", "JSON file of the platform's identities and served regions (default: the dev identities)")
	f.Bool(&c.AllowLocalKeys, "allow-local-customer-keys", "KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS", false, "accept localkms:// customer keys (dev and tests only)")
	f.Duration(&c.HealthyInterval, "probe-interval", "KEYWARD_PROBE_INTERVAL", DefaultHealthyInterval, "time between probes of an available key")
	f.Duration(&c.ConfirmInterval, "probe-interval-confirm", "KEYWARD_PROBE_INTERVAL_CONFIRM", DefaultConfirmInterval, "time between probes of a key whose latest results disagree with its status, until -hysteresis of them change it (at most -probe-interval-unhealthy)")
	f.Duration(&c.UnhealthyInterval, "probe-interval-unhealthy", "KEYWARD_PROBE_INTERVAL_UNHEALTHY", 0, "time between probes of a key that is not available or whose results disagree with its status (0: 10s, or a sixth of a shorter -probe-interval)")
	var jitter, share string
	f.String(&jitter, "probe-jitter", "KEYWARD_PROBE_JITTER", strconv.FormatFloat(DefaultJitter, 'f', -1, 64), "fraction (0 to 0.5) by which each interval varies either way")
	f.Duration(&c.SlowThreshold, "slow-threshold", "KEYWARD_SLOW_THRESHOLD", DefaultSlowThreshold, "a probe round trip slower than this makes a key degraded")
	f.Int(&c.Hysteresis, "hysteresis", "KEYWARD_HYSTERESIS", DefaultHysteresis, "consecutive results that must agree on a new status before it changes")
	f.Int(&c.Concurrency, "probe-concurrency", "KEYWARD_PROBE_CONCURRENCY", DefaultConcurrency, "probes in flight at once")
	f.Int(&c.Partitions, "partitions", "KEYWARD_PARTITIONS", DefaultPartitions, "tenant partitions shared by the instances (the running instances' count wins)")
	f.Duration(&c.ObservationProbeDelay, "observation-probe-delay", "KEYWARD_OBSERVATION_PROBE_DELAY", DefaultObservationProbeDelay, "a key whose live traffic reports news is probed within this delay")
	f.String(&share, "probe-rate-share", "KEYWARD_PROBE_RATE_SHARE", strconv.FormatFloat(DefaultProbeRateShare, 'f', -1, 64), "fraction of each endpoint's default KMS rate limit the probes may use")
	f.String(&c.InstanceID, "instance-id", "KEYWARD_INSTANCE_ID", "", "name of this instance in the lease bucket (default: host, pid and a random suffix)")
	f.Duration(&c.ShutdownDeadline, "shutdown-deadline", "KEYWARD_SHUTDOWN_DEADLINE", 30*time.Second, "how long a SIGTERM drain may take")
	err := f.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	errs := []error{err}
	var perr error
	if c.Jitter, perr = parseFraction("KEYWARD_PROBE_JITTER (-probe-jitter)", jitter, 0.5); perr != nil {
		errs = append(errs, perr)
	}
	if c.ProbeRateShare, perr = parseFraction("KEYWARD_PROBE_RATE_SHARE (-probe-rate-share)", share, 1); perr != nil {
		errs = append(errs, perr)
	}
	if c.UnhealthyInterval == 0 && c.HealthyInterval > 0 {
		c.UnhealthyInterval = min(DefaultUnhealthyInterval, c.HealthyInterval/6)
	}
	if c.UnhealthyInterval > c.HealthyInterval {
		errs = append(errs, fmt.Errorf("KEYWARD_PROBE_INTERVAL_UNHEALTHY (%v) is longer than KEYWARD_PROBE_INTERVAL (%v)", c.UnhealthyInterval, c.HealthyInterval))
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"KEYWARD_HYSTERESIS (-hysteresis)", c.Hysteresis}, {"KEYWARD_PROBE_CONCURRENCY (-probe-concurrency)", c.Concurrency}, {"KEYWARD_PARTITIONS (-partitions)", c.Partitions}} {
		if n.v < 1 {
			errs = append(errs, fmt.Errorf("%s=%d: want at least 1", n.name, n.v))
		}
	}
	if c.InstanceID != "" && !validInstanceID(c.InstanceID) {
		errs = append(errs, fmt.Errorf("KEYWARD_INSTANCE_ID=%q: use 1-64 letters, digits, '-' and '_'", c.InstanceID))
	}
	return &c, errors.Join(errs...)
}

func parseFraction(name, s string, most float64) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v < 0 || v > most {
		return 0, fmt.Errorf("%s=%q: want a number from 0 to %g", name, s, most)
	}
	return v, nil
}

// Options returns the worker options of c.
func (c *Config) Options() Options {
	jitter := c.Jitter
	if jitter == 0 {
		jitter = -1 // explicitly none
	}
	share := c.ProbeRateShare
	if share == 0 {
		share = -1
	}
	return Options{
		HealthyInterval: c.HealthyInterval, UnhealthyInterval: c.UnhealthyInterval, ConfirmInterval: c.ConfirmInterval, Jitter: jitter,
		SlowThreshold: c.SlowThreshold, Hysteresis: c.Hysteresis, Concurrency: c.Concurrency,
		Partitions: c.Partitions, ObservationProbeDelay: c.ObservationProbeDelay, ProbeRateShare: share,
		AllowLocalCustomerKeys: c.AllowLocalKeys, InstanceID: c.InstanceID,
	}
}

// Main runs the key-health-monitor process until ctx ends (SIGTERM), then
// drains: probes in progress finish, decided transitions are published,
// the partitions are released for the other instances.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, obs, err := svc.Setup(ctx, "key-health-monitor", ParseConfig, args, getenv, stderr)
	if err != nil || obs == nil {
		return err // obs is nil after -h
	}
	defer obs.Shutdown()
	log := obs.Log

	plat, err := platform.Load(cfg.PlatformConfig)
	if err != nil {
		return err
	}
	// No circuit breaker (kms.WithGuard): the monitor must reach an
	// endpoint to see it recover.
	client, err := providers.NewClient(ctx, cfg.KMS, plat, obs.Telemetry.MeterProvider())
	if err != nil {
		return err
	}
	nc, js, err := svc.Connect(cfg.Common, "keyward-key-health-monitor", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	obs.Serve(healthCtx, cfg.HTTPAddr)
	if err := svc.WaitProvisioned(ctx, cfg.Common, js, log); err != nil {
		return nil // interrupted before start
	}

	opts := cfg.Options()
	opts.Logger, opts.MeterProvider = log, obs.Telemetry.MeterProvider()
	w, err := New(ctx, Deps{NC: nc, JS: js, KMS: client}, opts)
	if err != nil {
		return err
	}
	obs.Telemetry.AddReadyCheck("key-health-monitor", func(context.Context) error { return w.Ready() })
	obs.Telemetry.AddReadyCheck("nats", svc.NATSReady(nc))
	fmt.Fprintf(stdout, "keyward key-health-monitor %s: instance %s, %d partitions, probing every %v (%v while unhealthy)\n",
		svc.Version, w.InstanceID(), w.PartitionCount(), cfg.HealthyInterval, cfg.UnhealthyInterval)

	runErr := svc.RunUntilDrained(ctx, w.Run, cfg.ShutdownDeadline, nc, log)
	log.Info("key-health-monitor stopped")
	return runErr
}
