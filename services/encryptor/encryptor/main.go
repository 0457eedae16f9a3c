package encryptor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/providers"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/svc"
)

// Config is the encryptor process's configuration: flags with environment
// fallbacks.
type Config struct {
	svc.Common
	PlatformKey      string
	FallbackKey      string
	KMS              providers.Config
	AllowLocalKeys   bool
	BatchSize        int
	Concurrency      int
	MaxInlineBytes   int64
	MaxAssetBytes    int64
	MaxDeliver       int
	AckWait          time.Duration
	ObservationTTL   time.Duration
	Failpoint        string
	ShutdownDeadline time.Duration
	PlatformConfig   string
}

// ParseConfig reads flags and environment.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	var c Config
	f := svc.NewFlags("encryptor", getenv, out)
	c.Common.Register(f, "encryptor")
	f.String(&c.PlatformKey, "platform-key", "KEYWARD_PLATFORM_KEY", "", "key URI of the platform key (assets not covered by a customer key)")
	f.String(&c.FallbackKey, "fallback-key", "KEYWARD_FALLBACK_KEY", "", "key URI of the platform fallback key (covered assets while the customer key is unreachable)")
	f.String(&c.PlatformConfig, "platform-config", "KEYWARD_PLATFORM_CONFIG", "", "JSON file of the platform's identities and served regions (default: the dev identities)")
	c.KMS.Register(f)
	c.KMS.RegisterBreaker(f)
	f.Bool(&c.AllowLocalKeys, "allow-local-customer-keys", "KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS", false, "accept localkms:// customer keys (dev and tests only)")
	f.Int(&c.BatchSize, "batch-size", "KEYWARD_BATCH_SIZE", DefaultBatchSize, "messages committed together (one ledger transaction)")
	f.Int(&c.Concurrency, "concurrency", "KEYWARD_CONCURRENCY", 0, "assets processed at once (0: 4 × cores)")
	f.Size(&c.MaxInlineBytes, "max-inline", "KEYWARD_MAX_INLINE", DefaultMaxInlineBytes, "largest inline content accepted")
	f.Size(&c.MaxAssetBytes, "max-asset", "KEYWARD_MAX_ASSET", DefaultMaxAssetBytes, "largest staged asset accepted")
	f.Int(&c.MaxDeliver, "max-deliver", "KEYWARD_MAX_DELIVER", DefaultMaxDeliver, "deliveries of a transiently failing message before it is dead-lettered")
	f.Duration(&c.AckWait, "ack-wait", "KEYWARD_ACK_WAIT", DefaultAckWait, "redelivery timeout of an unacknowledged message")
	f.Duration(&c.ObservationTTL, "observation-ttl", "KEYWARD_OBSERVATION_TTL", DefaultObservationTTL, "how long a customer key that failed in live traffic is taken to be away before an asset tries it again (negative: every asset tries)")
	f.Duration(&c.ShutdownDeadline, "shutdown-deadline", "KEYWARD_SHUTDOWN_DEADLINE", 30*time.Second, "how long a SIGTERM drain may take")
	f.String(&c.Failpoint, "failpoint", "KEYWARD_FAILPOINT", "", "testing aid: kill the process (SIGKILL) at this point of the commit protocol (stored, recorded, published, cleaned)")
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if c.PlatformKey == "" {
		errs = append(errs, errors.New("KEYWARD_PLATFORM_KEY (-platform-key) is required: the key URI of the platform key, e.g. localkms:///var/lib/keyward/platform.key"))
	}
	if c.FallbackKey == "" {
		errs = append(errs, errors.New("KEYWARD_FALLBACK_KEY (-fallback-key) is required: the key URI of the fallback key"))
	}
	switch c.Failpoint {
	case "", FailpointStored, FailpointRecorded, FailpointPublished, FailpointCleaned:
	default:
		errs = append(errs, fmt.Errorf("KEYWARD_FAILPOINT=%q: want one of stored, recorded, published, cleaned", c.Failpoint))
	}
	return &c, errors.Join(errs...)
}

// Main runs the encryptor process until ctx ends (SIGTERM), then drains.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, obs, err := svc.Setup(ctx, "encryptor", ParseConfig, args, getenv, stderr)
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
	store, err := ledger.Open(filepath.Join(cfg.DataDir, "ledger.db"))
	if err != nil {
		return err
	}
	defer store.Close()

	nc, js, err := svc.Connect(cfg.Common, "keyward-encryptor", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	breakerEvents := NewBreakerEvents(js, instanceName("encryptor"), log)
	defer breakerEvents.Close()
	cfg.KMS.OnBreakerChange = breakerEvents.OnChange
	client, err := providers.NewClient(ctx, cfg.KMS, plat, obs.Telemetry.MeterProvider())
	if err != nil {
		return err
	}
	seeds := kms.NewSeedCache(client, kms.DefaultSeedCacheConfig(), kms.WithMeterProvider(obs.Telemetry.MeterProvider()))
	defer seeds.Flush()
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	obs.Serve(healthCtx, cfg.HTTPAddr)
	if err := svc.WaitProvisioned(ctx, js, cfg.Replicas, log); err != nil {
		return nil // interrupted before start
	}

	opts := Options{
		PlatformKey: platformKey, FallbackKey: fallback,
		BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency,
		MaxInlineBytes: cfg.MaxInlineBytes, MaxAssetBytes: cfg.MaxAssetBytes,
		MaxDeliver: cfg.MaxDeliver, AckWait: cfg.AckWait, ObservationTTL: cfg.ObservationTTL,
		Logger: log, MeterProvider: obs.Telemetry.MeterProvider(),
		Platform: plat,
	}
	if cfg.AllowLocalKeys {
		opts.AllowLocalCustomerKeys = true
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
	obs.Telemetry.AddReadyCheck("encryptor", func(context.Context) error { return w.Ready() })
	obs.Telemetry.AddReadyCheck("nats", svc.NATSReady(nc))
	fmt.Fprintf(stdout, "keyward encryptor %s: consuming %s, ledger %s\n", svc.Version, cfg.NATSURL, store.Path())
	runErr := w.Run(ctx)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownDeadline)
	defer cancel()
	if err := nc.FlushWithContext(drainCtx); err != nil && runErr == nil {
		log.Warn("flushing NATS at shutdown", "error", err)
	}
	log.Info("encryptor stopped")
	return runErr
}
