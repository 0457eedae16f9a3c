package reencryptor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/providers"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/svc"
)

// Config is the re-encryptor process's configuration: flags with
// environment fallbacks.
type Config struct {
	svc.Common
	PlatformKey      string
	FallbackKey      string
	PlatformConfig   string
	KMS              providers.Config
	KMSRateShare     float64
	AllowLocalKeys   bool
	BatchSize        int
	Concurrency      int
	YieldBacklog     int
	ProgressInterval time.Duration
	RescanInterval   time.Duration
	LeaseTTL         time.Duration
	RebuildLedger    bool
	InstanceID       string
	Failpoint        string
	ShutdownDeadline time.Duration
}

// ParseConfig reads flags and environment.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	var c Config
	f := svc.NewFlags("re-encryptor", getenv, out)
	c.Common.Register(f, "re-encryptor")
	c.KMS.Register(f)
	c.KMS.RegisterBreaker(f)
	f.String(&c.PlatformKey, "platform-key", "KEYWARD_PLATFORM_KEY", "", "key URI of the platform key (deprovisioning moves a tenant's assets to it)")
	f.String(&c.FallbackKey, "fallback-key", "KEYWARD_FALLBACK_KEY", "", "key URI of the platform fallback key (heal jobs move assets away from it)")
	f.String(&c.PlatformConfig, "platform-config", "KEYWARD_PLATFORM_CONFIG", "", "JSON file of the platform's identities and served regions (default: the dev identities)")
	var share string
	f.String(&share, "kms-rate-share", "KEYWARD_KMS_RATE_SHARE", strconv.FormatFloat(DefaultKMSRateShare, 'f', -1, 64), "fraction (0 to 1) of each KMS endpoint's default rate limit the jobs may use (0: no limit)")
	f.Bool(&c.AllowLocalKeys, "allow-local-customer-keys", "KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS", false, "accept localkms:// customer keys (dev and tests only)")
	f.Int(&c.BatchSize, "batch-size", "KEYWARD_BATCH_SIZE", DefaultBatchSize, "assets moved between checkpoints")
	f.Int(&c.Concurrency, "concurrency", "KEYWARD_CONCURRENCY", DefaultConcurrency, "assets of a batch moved at once")
	f.Int(&c.YieldBacklog, "yield-backlog", "KEYWARD_YIELD_BACKLOG", DefaultYieldBacklog, "jobs wait while the encryptor has more than this many messages pending (-1: never)")
	f.Duration(&c.ProgressInterval, "progress-interval", "KEYWARD_PROGRESS_INTERVAL", DefaultProgressInterval, "time between progress events of a running job")
	f.Duration(&c.RescanInterval, "rescan-interval", "KEYWARD_RESCAN_INTERVAL", DefaultRescanInterval, "time between checks of every tenant for work")
	f.Duration(&c.LeaseTTL, "lease-ttl", "KEYWARD_LEASE_TTL", DefaultLeaseTTL, "a job whose instance stopped renewing for this long is taken over")
	f.Bool(&c.RebuildLedger, "rebuild-ledger", "KEYWARD_REBUILD_LEDGER", false, "empty the ledger and project KW_ASSETS again from the start before running")
	f.String(&c.InstanceID, "instance-id", "KEYWARD_INSTANCE_ID", "", "name of this instance in job records (default: host, pid and a random suffix)")
	f.String(&c.Failpoint, "failpoint", "KEYWARD_FAILPOINT", "", "testing aid: kill the process (SIGKILL) at this point of a job (moved, recorded)")
	f.Duration(&c.ShutdownDeadline, "shutdown-deadline", "KEYWARD_SHUTDOWN_DEADLINE", 30*time.Second, "how long a SIGTERM drain may take")
	err := f.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	errs := []error{err}
	if c.PlatformKey == "" {
		errs = append(errs, errors.New("KEYWARD_PLATFORM_KEY (-platform-key) is required: the key URI of the platform key, e.g. localkms:///var/lib/keyward/platform.key"))
	}
	if c.FallbackKey == "" {
		errs = append(errs, errors.New("KEYWARD_FALLBACK_KEY (-fallback-key) is required: the key URI of the fallback key"))
	}
	v, perr := strconv.ParseFloat(strings.TrimSpace(share), 64)
	if perr != nil || v < 0 || v > 1 {
		errs = append(errs, fmt.Errorf("KEYWARD_KMS_RATE_SHARE (-kms-rate-share)=%q: want a number from 0 to 1", share))
	}
	c.KMSRateShare = v
	switch c.Failpoint {
	case "", FailpointMoved, FailpointRecorded:
	default:
		errs = append(errs, fmt.Errorf("KEYWARD_FAILPOINT=%q: want moved or recorded", c.Failpoint))
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"KEYWARD_BATCH_SIZE (-batch-size)", c.BatchSize}, {"KEYWARD_CONCURRENCY (-concurrency)", c.Concurrency}} {
		if n.v < 1 {
			errs = append(errs, fmt.Errorf("%s=%d: want at least 1", n.name, n.v))
		}
	}
	return &c, errors.Join(errs...)
}

// RateLimitOptions are the kms.Client options that hold a re-encryptor to
// share of every endpoint's default rate limit (0: unlimited).
func RateLimitOptions(share float64) []kms.ClientOption {
	var opts []kms.ClientOption
	for scheme, l := range kms.DefaultRateLimits() {
		if share <= 0 {
			opts = append(opts, kms.WithRateLimit(scheme, kms.RateLimit{}))
			continue
		}
		opts = append(opts, kms.WithRateLimit(scheme, kms.RateLimit{PerSecond: l.PerSecond * share, Burst: max(1, int(float64(l.Burst)*share))}))
	}
	return opts
}

// Main runs the re-encryptor process until ctx ends (SIGTERM), then drains:
// running jobs checkpoint and release their leases.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, obs, err := svc.Setup(ctx, "re-encryptor", ParseConfig, args, getenv, stderr)
	if err != nil || obs == nil {
		return err // obs is nil after -h
	}
	defer obs.Shutdown()
	log := obs.Log

	platformKey, err := kms.ParseKeyURI(cfg.PlatformKey)
	if err != nil {
		return fmt.Errorf("KEYWARD_PLATFORM_KEY: %w", err)
	}
	fallback, err := kms.ParseKeyURI(cfg.FallbackKey)
	if err != nil {
		return fmt.Errorf("KEYWARD_FALLBACK_KEY: %w", err)
	}
	plat, err := platform.Load(cfg.PlatformConfig)
	if err != nil {
		return err
	}
	store, err := ledger.Open(filepath.Join(cfg.DataDir, "reencryptor-ledger.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	nc, js, err := svc.Connect(cfg.Common, "keyward-re-encryptor", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	// Its breakers' state changes are published like the encryptor's, so
	// the monitor, the phone-policy worker and operators see them.
	worker := cfg.InstanceID
	if worker == "" {
		worker = svc.InstanceID("re-encryptor")
	}
	breakerEvents := breaker.NewEvents(js, worker, log)
	defer breakerEvents.Close()
	cfg.KMS.OnBreakerChange = breakerEvents.OnChange
	client, err := providers.NewClient(ctx, cfg.KMS, plat, obs.Telemetry.MeterProvider(), RateLimitOptions(cfg.KMSRateShare)...)
	if err != nil {
		return err
	}
	seeds := kms.NewSeedCache(client, kms.DefaultSeedCacheConfig(), kms.WithMeterProvider(obs.Telemetry.MeterProvider()))
	defer seeds.Flush()
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	obs.Serve(healthCtx, cfg.HTTPAddr)
	if err := svc.WaitProvisioned(ctx, cfg.Common, js, log); err != nil {
		return nil // interrupted before start
	}
	if cfg.RebuildLedger {
		start := time.Now()
		if err := projector.Rebuild(ctx, js, store, projector.WithLogger(log)); err != nil {
			return fmt.Errorf("rebuilding the ledger: %w", err)
		}
		st, _ := store.Stats(ctx)
		log.Info("ledger rebuilt from KW_ASSETS", "records", st.Records, "took", time.Since(start).String())
	}

	opts := Options{
		PlatformKey: platformKey, FallbackKey: fallback, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency,
		YieldBacklog: cfg.YieldBacklog, ProgressInterval: cfg.ProgressInterval,
		RescanInterval: cfg.RescanInterval, LeaseTTL: cfg.LeaseTTL,
		AllowLocalCustomerKeys: cfg.AllowLocalKeys, InstanceID: cfg.InstanceID,
		Logger: log, MeterProvider: obs.Telemetry.MeterProvider(),
	}
	if cfg.Failpoint != "" {
		point := cfg.Failpoint
		log.Warn("failpoint armed: the process will kill itself", "failpoint", point)
		opts.Failpoint = func(p string) {
			if p == point {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	w, err := New(ctx, Deps{NC: nc, JS: js, KMS: client, Seeds: seeds, Ledger: store}, opts)
	if err != nil {
		return err
	}
	obs.Telemetry.AddReadyCheck("re-encryptor", func(context.Context) error { return w.Ready() })
	obs.Telemetry.AddReadyCheck("nats", svc.NATSReady(nc))
	fmt.Fprintf(stdout, "keyward re-encryptor %s: instance %s, ledger %s\n", svc.Version, w.InstanceID(), store.Path())

	runErr := svc.RunUntilDrained(ctx, w.Run, cfg.ShutdownDeadline, nc, log)
	log.Info("re-encryptor stopped")
	return runErr
}
