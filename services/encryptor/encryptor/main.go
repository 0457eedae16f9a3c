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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/breaker"
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
	AuthorizeCallers bool
	// Credentials of the request-reply services this process also serves,
	// each its own identity (pkg/access): empty uses the encryptor's.
	BrokerCreds, EnrollCreds, AdminCreds string
	BatchSize                            int
	Concurrency                          int
	MaxInlineBytes                       int64
	MaxAssetBytes                        int64
	MaxDeliver                           int
	AckWait                              time.Duration
	ObservationTTL                       time.Duration
	Failpoint                            string
	ShutdownDeadline                     time.Duration
	PlatformConfig                       string
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
	f.Bool(&c.AuthorizeCallers, "authorize-callers", "KEYWARD_AUTHORIZE_CALLERS", true, "check who asks from NATS: the key broker releases a key only to a reader within its services and purposes and the tenant's denied purposes, enrollment takes changes only from an operator or the tenant's admin (false only for an unauthenticated test deployment: then every request is served)")
	f.String(&c.BrokerCreds, "broker-nats-creds", "KEYWARD_BROKER_NATS_CREDS", "", "credentials of the key broker's serving identity (role key-broker, account KEYWARD_SERVICES); empty serves with -nats-creds")
	f.String(&c.EnrollCreds, "enroll-nats-creds", "KEYWARD_ENROLL_NATS_CREDS", "", "credentials of the enrollment service's serving identity (role enrollment, account KEYWARD_SERVICES); empty serves with -nats-creds")
	f.String(&c.AdminCreds, "admin-nats-creds", "KEYWARD_ADMIN_NATS_CREDS", "", "credentials the enrollment service writes tenants with (role admin); empty writes with -nats-creds")
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
	breakerEvents := breaker.NewEvents(js, instanceName("encryptor"), log)
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
	if err := svc.WaitProvisioned(ctx, cfg.Common, js, log); err != nil {
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
	opts.AuthorizeCallers = cfg.AuthorizeCallers
	if !cfg.AuthorizeCallers {
		log.Warn("the key broker and the enrollment service serve every request without checking who asks (KEYWARD_AUTHORIZE_CALLERS=false): for unauthenticated test deployments only")
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
	deps := Deps{NC: nc, JS: js, KMS: client, Seeds: seeds, Ledger: store}
	for _, id := range []struct {
		creds, name string
		nc          **nats.Conn
		js          *jetstream.JetStream
	}{
		{cfg.BrokerCreds, "keyward-key-broker", &deps.BrokerNC, nil},
		{cfg.EnrollCreds, "keyward-enroll", &deps.EnrollNC, nil},
		{cfg.AdminCreds, "keyward-admin", nil, &deps.EnrollJS},
	} {
		if id.creds == "" {
			continue
		}
		c := cfg.Common
		c.NATSCreds = id.creds
		inc, ijs, err := svc.Connect(c, id.name, log)
		if err != nil {
			return err
		}
		defer inc.Close()
		if id.nc != nil {
			*id.nc = inc
		}
		if id.js != nil {
			*id.js = ijs
		}
	}
	w, err := New(ctx, deps, opts)
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
