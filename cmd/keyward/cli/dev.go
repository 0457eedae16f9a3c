package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/mail"
	"github.com/keyward/keyward/pkg/natsembed"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/pkg/telemetry"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/encryptor/encryptor"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
	"github.com/keyward/keyward/services/notifier/notifier"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// DevOptions configure `keyward dev`.
type DevOptions struct {
	DataDir string // default .keyward
	Host    string // default 127.0.0.1
	Port    int    // default 4222; 0 picks a free port
	// EmulatorPorts are the ports of the AWS, OCI and Azure emulators
	// (default 4566, 4567, 4568; with Port 0 they are free ports too). Key
	// URIs name them, so keep them stable across restarts.
	EmulatorPorts [3]int
	// SeedCache overrides the seed cache configuration (benchmarks).
	SeedCache *kms.SeedCacheConfig
	// KMSOptions are applied to the stack's KMS client after the defaults
	// (benchmarks: rate limits).
	KMSOptions []kms.ClientOption
	// Breaker tunes the encryptor's circuit breakers, one per KMS endpoint
	// (zero fields: breaker.DefaultSettings). NoBreaker turns them off.
	Breaker   breaker.Settings
	NoBreaker bool
	// Encryptor, when set, adjusts the encryptor's options (tests and
	// benchmarks: the observation TTL, batch sizes).
	Encryptor func(*encryptor.Options)
	// KeyHealth tunes the key-health-monitor (zero: production defaults;
	// tests shorten the intervals and the hysteresis). Logger,
	// MeterProvider and local keys are set by StartDev.
	KeyHealth monitor.Options
	// Reencryptor tunes the re-encryptor (zero: production defaults;
	// keys, logger and meter provider are set by StartDev).
	Reencryptor reencryptor.Options
	// SMTPURL sends the notifier's email through an SMTP server (as
	// KEYWARD_SMTP_URL); empty writes each email as an .eml file under
	// DataDir/mail. MailOptions tune the SMTP sender (tests: TLS roots).
	SMTPURL     string
	MailOptions []mail.Option
	// Notifier tunes the notifier (From defaults to keyward@localhost).
	Notifier notifier.Options
	// PhonePolicy tunes the phone-policy worker.
	PhonePolicy phonepolicy.Options
	// ReencryptorRateShare is the share of each endpoint's default KMS
	// rate limit the re-encryptor's client may use (0: the default,
	// reencryptor.DefaultKMSRateShare; negative: unlimited). Benchmarks.
	ReencryptorRateShare float64
	HTTPAddr             string // health and metrics; "" disables
	Logger               *slog.Logger
	Telemetry            *telemetry.Telemetry
	// MeterProvider overrides Telemetry's (tests read counters from it).
	MeterProvider metric.MeterProvider
	// NoAuth runs the embedded server without authentication (anyone may
	// connect and do anything), as before access control existed:
	// benchmarks' "auth off" baseline. By default every connection is an
	// identity of pkg/access with the matrix's permissions.
	NoAuth bool
	// TLS makes the embedded server serve TLS, and require it of every
	// client, with a certificate of the local CA under DataDir/tls
	// (pkg/devtls; made once, kept across restarts): Dev.CAFile.
	TLS bool
}

// Dev is a running all-in-one Keyward: embedded nats-server with
// JetStream, local platform, fallback and demo keys, a demo tenant, and
// every worker that exists.
type Dev struct {
	Server      *natsembed.Server
	NC          *nats.Conn
	JS          jetstream.JetStream
	PlatformKey kms.KeyURI
	FallbackKey kms.KeyURI
	DemoKey     kms.KeyURI
	Encryptor   *encryptor.Worker
	// KMS is the encryptor's client (its Stats count the KMS calls of the
	// traffic), behind Breakers unless DevOptions.NoBreaker.
	KMS      *kms.Client
	Breakers *breaker.Set
	// Monitor is the key-health-monitor; MonitorKMS its client, without a
	// breaker: the monitor is what sees an endpoint recover.
	Monitor    *monitor.Worker
	MonitorKMS *kms.Client
	// Reencryptor heals fallback copies, rotates and deprovisions, with
	// its own ledger and its own rate-limited KMS client (ReencryptorKMS).
	Reencryptor    *reencryptor.Worker
	ReencryptorKMS *kms.Client
	// Notifier emails each tenant's recipients (MailDir holds the .eml
	// files when no SMTP URL is given).
	Notifier *notifier.Worker
	MailDir  string
	// PhonePolicy answers phone systems' call admissions.
	PhonePolicy *phonepolicy.Worker
	// AWS, OCI and Azure are the emulated cloud KMSs, with one demo tenant
	// each (DemoTenantAWS, DemoTenantOCI, DemoTenantAzure).
	AWS   *awsemu.Emulator
	OCI   *ociemu.Emulator
	Azure *azureemu.Emulator

	// Auth is the deployment's authority (nil with NoAuth); CredsDir holds
	// one credentials file per dev identity (devIdentities).
	Auth     *access.Authority
	CredsDir string
	// CAFile is the CA certificate clients trust with DevOptions.TLS
	// (DataDir/tls/ca.pem; "" without TLS).
	CAFile string

	adminJS jetstream.JetStream // role admin: the demo tenants, the enrollment service's writes

	closers []func()
	conns   []*nats.Conn

	ledger        *ledger.Store
	reLedger      *ledger.Store
	breakerEvents *breaker.Events
	cancel        context.CancelFunc
	done          chan error // the encryptor's Run
	monitorDone   chan error // the monitor's Run
	reDone        chan error // the re-encryptor's Run
	notifierDone  chan error // the notifier's Run
	phoneDone     chan error // the phone-policy worker's Run
	notifierStore *notifier.Store
	mailSender    mail.Sender
}

// DemoTenant is the tenant `keyward dev` creates.
const DemoTenant = "demo"

// StartDev starts everything and returns once the workers are ready.
func StartDev(ctx context.Context, o DevOptions) (_ *Dev, err error) {
	if o.DataDir == "" {
		o.DataDir = ".keyward"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	d := &Dev{}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()
	var confPath string
	if !o.NoAuth {
		if confPath, err = d.startAuth(dataDir); err != nil {
			return nil, err
		}
	}
	tlsConf, err := d.serverTLS(o, dataDir)
	if err != nil {
		return nil, err
	}
	d.Server, err = natsembed.Start(natsembed.Options{Host: o.Host, Port: o.Port, StoreDir: filepath.Join(dataDir, "nats"), ServerName: "keyward-dev", ConfigFile: confPath, TLS: tlsConf})
	if err != nil {
		if o.Port != 0 && portInUse(o.Host, o.Port) {
			return nil, fmt.Errorf("port %d is in use (another `keyward dev` or nats-server?); stop it or pass --port: %w", o.Port, err)
		}
		return nil, err
	}
	_, provJS, err := d.Connect(IdentityProvisioner)
	if err != nil {
		return nil, err
	}
	if err := events.Provision(ctx, provJS, events.ProvisionOptions{Replicas: 1}); err != nil {
		return nil, err
	}
	// The stack's own connection (demo tenants, Dev.NC for tests) is the
	// operator's; each worker connects as its own identity below.
	if d.NC, d.JS, err = d.Connect(IdentityOperator); err != nil {
		return nil, err
	}
	encNC, encJS, err := d.Connect(string(access.RoleEncryptor))
	if err != nil {
		return nil, err
	}

	keys := filepath.Join(dataDir, "keys")
	if d.PlatformKey, err = devKey(keys, "platform.key"); err != nil {
		return nil, err
	}
	if d.FallbackKey, err = devKey(keys, "fallback.key"); err != nil {
		return nil, err
	}
	if d.DemoKey, err = devKey(keys, "demo-customer.key"); err != nil {
		return nil, err
	}
	// The demo tenants are written as the enrollment service's data plane
	// (role admin): the operator may not write KW_TENANTS.
	if _, d.adminJS, err = d.Connect(string(access.RoleAdmin)); err != nil {
		return nil, err
	}
	if err := ensureDemoTenant(ctx, d.adminJS, d.DemoKey); err != nil {
		return nil, err
	}

	mp := otel.GetMeterProvider()
	if o.Telemetry != nil {
		mp = o.Telemetry.MeterProvider()
	}
	if o.MeterProvider != nil {
		mp = o.MeterProvider
	}
	providers, err := d.startEmulators(ctx, dataDir, o)
	if err != nil {
		return nil, err
	}
	kmsOpts := append(providers,
		kms.WithProvider(kms.SchemeLocal, localkms.New(localkms.WithBaseDir(keys))),
		kms.WithCallTimeout(kms.DefaultCallTimeout),
		kms.WithMeterProvider(mp))
	d.MonitorKMS = kms.NewClient(append(kmsOpts, o.KMSOptions...)...)
	clientOpts := append(kmsOpts, o.KMSOptions...)
	if !o.NoBreaker {
		d.breakerEvents = breaker.NewEvents(encJS, "keyward-dev", o.Logger)
		d.Breakers = breaker.New(breaker.WithSettings(o.Breaker), breaker.WithOnStateChange(d.breakerEvents.OnChange), breaker.WithMeterProvider(mp))
		clientOpts = append(clientOpts, kms.WithGuard(d.Breakers))
	}
	client := kms.NewClient(clientOpts...)
	d.KMS = client
	if err := d.seedCloudTenants(ctx); err != nil {
		return nil, err
	}
	seedCfg := kms.DefaultSeedCacheConfig()
	if o.SeedCache != nil {
		seedCfg = *o.SeedCache
	}
	seeds := kms.NewSeedCache(client, seedCfg, kms.WithMeterProvider(mp))
	if d.ledger, err = ledger.Open(filepath.Join(dataDir, "encryptor", "ledger.db")); err != nil {
		return nil, err
	}
	opts := encryptor.Options{
		PlatformKey: d.PlatformKey, FallbackKey: d.FallbackKey,
		AllowLocalCustomerKeys: true,
		AuthorizeCallers:       !o.NoAuth,
		Logger:                 o.Logger,
		MeterProvider:          mp,
		Platform:               platform.Default(),
	}
	if o.Encryptor != nil {
		o.Encryptor(&opts)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel, d.done = cancel, make(chan error, 1)
	encDeps := encryptor.Deps{NC: encNC, JS: encJS, KMS: client, Seeds: seeds, Ledger: d.ledger}
	if encDeps.BrokerNC, _, err = d.Connect(string(access.RoleKeyBroker)); err != nil {
		return nil, err
	}
	if encDeps.EnrollNC, _, err = d.Connect(string(access.RoleEnrollment)); err != nil {
		return nil, err
	}
	encDeps.EnrollJS = d.adminJS
	if d.Encryptor, err = encryptor.New(runCtx, encDeps, opts); err != nil {
		return nil, err
	}
	go func() { d.done <- d.Encryptor.Run(runCtx) }()
	mo := o.KeyHealth
	mo.AllowLocalCustomerKeys = true
	if mo.Logger == nil {
		mo.Logger = o.Logger
	}
	if mo.MeterProvider == nil {
		mo.MeterProvider = mp
	}
	monNC, monJS, err := d.Connect(string(access.RoleKeyHealth))
	if err != nil {
		return nil, err
	}
	if d.Monitor, err = monitor.New(runCtx, monitor.Deps{NC: monNC, JS: monJS, KMS: d.MonitorKMS}, mo); err != nil {
		return nil, err
	}
	d.monitorDone = make(chan error, 1)
	go func() { d.monitorDone <- d.Monitor.Run(runCtx) }()

	// The re-encryptor: its own ledger and KMS client, limited to its share
	// of each endpoint, behind the same breakers as the encryptor.
	share := o.ReencryptorRateShare
	if share == 0 {
		share = reencryptor.DefaultKMSRateShare
	}
	reClientOpts := append(append(kmsOpts, reencryptor.RateLimitOptions(max(share, 0))...), o.KMSOptions...)
	if d.Breakers != nil {
		reClientOpts = append(reClientOpts, kms.WithGuard(d.Breakers))
	}
	d.ReencryptorKMS = kms.NewClient(reClientOpts...)
	if d.reLedger, err = ledger.Open(filepath.Join(dataDir, "re-encryptor", "ledger.db")); err != nil {
		return nil, err
	}
	ro := o.Reencryptor
	ro.PlatformKey, ro.FallbackKey, ro.AllowLocalCustomerKeys = d.PlatformKey, d.FallbackKey, true
	if ro.Logger == nil {
		ro.Logger = o.Logger
	}
	if ro.MeterProvider == nil {
		ro.MeterProvider = mp
	}
	reSeeds := kms.NewSeedCache(d.ReencryptorKMS, kms.DefaultSeedCacheConfig(), kms.WithMeterProvider(mp))
	reNC, reJS, err := d.Connect(string(access.RoleReencryptor))
	if err != nil {
		return nil, err
	}
	if d.Reencryptor, err = reencryptor.New(runCtx, reencryptor.Deps{NC: reNC, JS: reJS, KMS: d.ReencryptorKMS, Seeds: reSeeds, Ledger: d.reLedger}, ro); err != nil {
		return nil, err
	}
	d.reDone = make(chan error, 1)
	go func() { d.reDone <- d.Reencryptor.Run(runCtx) }()

	// The notifier: SMTP when a URL is given, else .eml files.
	if d.mailSender, err = notifier.NewSender(o.SMTPURL, dataDir, o.MailOptions...); err != nil {
		return nil, fmt.Errorf("notifier: %w", err)
	}
	if o.SMTPURL == "" {
		d.MailDir = filepath.Join(dataDir, "mail")
	}
	if d.notifierStore, err = notifier.OpenStore(filepath.Join(dataDir, "notifier", "notifier.db")); err != nil {
		return nil, err
	}
	no := o.Notifier
	no.AllowLocalCustomerKeys = true
	if no.From == "" {
		no.From = "Keyward dev <keyward@localhost>"
	}
	if no.Logger == nil {
		no.Logger = o.Logger
	}
	if no.MeterProvider == nil {
		no.MeterProvider = mp
	}
	noNC, noJS, err := d.Connect(string(access.RoleNotifier))
	if err != nil {
		return nil, err
	}
	if d.Notifier, err = notifier.New(runCtx, notifier.Deps{NC: noNC, JS: noJS, Sender: d.mailSender, Store: d.notifierStore}, no); err != nil {
		return nil, err
	}
	d.notifierDone = make(chan error, 1)
	go func() { d.notifierDone <- d.Notifier.Run(runCtx) }()

	po := o.PhonePolicy
	po.AllowLocalCustomerKeys = true
	if po.Logger == nil {
		po.Logger = o.Logger
	}
	if po.MeterProvider == nil {
		po.MeterProvider = mp
	}
	phNC, phJS, err := d.Connect(string(access.RolePhonePolicy))
	if err != nil {
		return nil, err
	}
	if d.PhonePolicy, err = phonepolicy.New(runCtx, phonepolicy.Deps{NC: phNC, JS: phJS}, po); err != nil {
		return nil, err
	}
	d.phoneDone = make(chan error, 1)
	go func() { d.phoneDone <- d.PhonePolicy.Run(runCtx) }()
	if err := waitReady(30*time.Second, d.Encryptor.Ready, d.done, "encryptor"); err != nil {
		return nil, err
	}
	if err := waitReady(30*time.Second, d.Monitor.Ready, d.monitorDone, "key-health-monitor"); err != nil {
		return nil, err
	}
	if err := waitReady(30*time.Second, d.Reencryptor.Ready, d.reDone, "re-encryptor"); err != nil {
		return nil, err
	}
	if err := waitReady(30*time.Second, d.Notifier.Ready, d.notifierDone, "notifier"); err != nil {
		return nil, err
	}
	if err := waitReady(30*time.Second, d.PhonePolicy.Ready, d.phoneDone, "phone-policy"); err != nil {
		return nil, err
	}
	return d, nil
}

// waitReady waits until ready reports nil, the worker's Run returns (on
// done, which it refills), or the timeout passes.
func waitReady(timeout time.Duration, ready func() error, done chan error, name string) error {
	deadline := time.Now().Add(timeout)
	for ready() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %w", name, ready())
		}
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("%s stopped: %v", name, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// URL is the NATS URL of the dev server.
func (d *Dev) URL() string { return d.Server.URL() }

// Stop drains the workers and stops the server.
func (d *Dev) Stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		if d.monitorDone != nil {
			<-d.monitorDone
		}
		if d.reDone != nil {
			<-d.reDone
		}
		if d.notifierDone != nil {
			<-d.notifierDone
		}
		if d.phoneDone != nil {
			<-d.phoneDone
		}
		d.cancel = nil
	}
	if d.breakerEvents != nil {
		d.breakerEvents.Close()
		d.breakerEvents = nil
	}
	if d.ledger != nil {
		d.ledger.Close()
	}
	if d.reLedger != nil {
		d.reLedger.Close()
	}
	if d.notifierStore != nil {
		d.notifierStore.Close()
	}
	if d.mailSender != nil {
		d.mailSender.Close()
	}
	for _, nc := range d.conns {
		_ = nc.Drain()
	}
	d.conns = nil
	if d.Server != nil {
		d.Server.Shutdown()
	}
	for _, e := range d.closers {
		e()
	}
	d.closers = nil
}

func devKey(dir, name string) (kms.KeyURI, error) {
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return kms.KeyURI{}, err
	}
	if err := localkms.CreateKeyFile(path); err != nil && !errors.Is(err, fs.ErrExist) {
		return kms.KeyURI{}, fmt.Errorf("creating %s: %w", path, err)
	}
	return kms.ParseKeyURI("localkms://" + path)
}

// ensureDemoTenant creates the demo tenant once; later runs keep whatever
// the developer changed.
func ensureDemoTenant(ctx context.Context, js jetstream.JetStream, key kms.KeyURI) error {
	store, err := tenant.OpenStore(ctx, js, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		return err
	}
	_, err = store.Create(ctx, &tenant.Config{
		TenantID:      DemoTenant,
		DisplayName:   "Demo tenant of keyward dev",
		Keys:          []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC().Add(-time.Minute)}},
		Services:      []string{tenant.All},
		LicensedUsers: []string{tenant.All},
		Recipients:    []string{"security@demo.example"},
		Fallback:      true,
	})
	if errors.Is(err, tenant.ErrExists) {
		return nil
	}
	return err
}

func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func portInUse(host string, port int) bool {
	if host == "" {
		host = "127.0.0.1"
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (a *App) devCmd() *cobra.Command {
	var o DevOptions
	var logLevel string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system locally: embedded NATS, local keys, a demo tenant, every worker",
		Long: `dev runs an embedded nats-server with JetStream (data in --data-dir), creates
local platform, fallback and demo customer keys (localkms key files, mode 0600),
a "demo" tenant covering every service and user with fallback on, and runs
every Keyward worker in this process. No cloud account is needed.

Stop it with Ctrl-C; data survives restarts (delete the data dir to start over).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			lvl, err := telemetry.ParseLevel(logLevel)
			if err != nil {
				return usageError{err}
			}
			tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "keyward-dev", ServiceVersion: svc.Version, Getenv: a.Getenv})
			if err != nil {
				return err
			}
			defer tel.Shutdown(context.Background())
			o.Telemetry = tel
			o.Logger = telemetry.NewLogger(a.Stderr, telemetry.LogOptions{Service: "keyward-dev", Version: svc.Version, Level: lvl})
			d, err := StartDev(ctx, o)
			if err != nil {
				return err
			}
			defer d.Stop()
			tel.AddReadyCheck("encryptor", func(context.Context) error { return d.Encryptor.Ready() })
			tel.AddReadyCheck("key-health-monitor", func(context.Context) error { return d.Monitor.Ready() })
			tel.AddReadyCheck("re-encryptor", func(context.Context) error { return d.Reencryptor.Ready() })
			tel.AddReadyCheck("notifier", func(context.Context) error { return d.Notifier.Ready() })
			tel.AddReadyCheck("phone-policy", func(context.Context) error { return d.PhonePolicy.Ready() })
			httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
			defer stopHTTP()
			if o.HTTPAddr != "" {
				go func() {
					if err := tel.ListenAndServe(httpCtx, o.HTTPAddr); err != nil {
						o.Logger.Error("health server", "error", err)
					}
				}()
			}
			a.printDevBanner(d, o)
			<-ctx.Done()
			fmt.Fprintln(a.Stdout, "\nkeyward dev: stopping (draining the workers)...")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", envOr(a.Getenv, "KEYWARD_DATA_DIR", ".keyward"), "where NATS data, keys and ledgers live (env KEYWARD_DATA_DIR)")
	f.StringVar(&o.Host, "host", "127.0.0.1", "address NATS listens on")
	f.BoolVar(&o.TLS, "tls", false, "serve NATS over TLS only, with a certificate of a local CA made once in <data-dir>/tls (clients trust <data-dir>/tls/ca.pem: --nats-ca, NATS_CA)")
	f.BoolVar(&o.NoAuth, "no-auth", false, "run NATS without authentication (anyone may do anything): only to compare with the authenticated stack")
	f.IntVar(&o.Port, "port", 4222, "port NATS listens on (0: any free port)")
	f.StringVar(&o.SMTPURL, "smtp-url", envOr(a.Getenv, "KEYWARD_SMTP_URL", ""), "send the notifier's email through this SMTP server, e.g. smtp://localhost:1025?tls=none (default: .eml files under the data dir's mail/) (env KEYWARD_SMTP_URL)")
	f.StringVar(&o.Notifier.From, "mail-from", envOr(a.Getenv, "KEYWARD_MAIL_FROM", "Keyward dev <keyward@localhost>"), "sender address of the notifier's email (env KEYWARD_MAIL_FROM)")
	f.StringVar(&o.HTTPAddr, "http-addr", envOr(a.Getenv, "KEYWARD_HTTP_ADDR", "127.0.0.1:9464"), "address of /healthz, /readyz and /metrics; empty disables (env KEYWARD_HTTP_ADDR)")
	f.Var(portsFlag{&o.EmulatorPorts}, "emulator-ports", "ports of the AWS, OCI and Azure KMS emulators (default 4566,4567,4568)")
	f.StringVar(&logLevel, "log-level", envOr(a.Getenv, "KEYWARD_LOG_LEVEL", "info"), "debug, info, warn or error (env KEYWARD_LOG_LEVEL)")
	cmd.AddCommand(a.devKeyCmd())
	return cmd
}

func (a *App) printDevBanner(d *Dev, o DevOptions) {
	w := a.Stdout
	fmt.Fprintf(w, "Keyward dev is running.\n\n")
	fmt.Fprintf(w, "  NATS        %s  (JetStream data in %s)\n", d.URL(), d.Server.StoreDir())
	tlsca := ""
	if d.CAFile != "" {
		tlsca = "--tlsca " + d.CAFile + " "
		fmt.Fprintf(w, "  tls         TLS on, required of every client (TLS 1.2 or later); the CA that signed the server's certificate: %s\n", d.CAFile)
		fmt.Fprintf(w, "              (the keyward CLI finds it from this directory; elsewhere --nats-ca or NATS_CA)\n")
	}
	if d.CredsDir != "" {
		fmt.Fprintf(w, "  access      authentication on: one credentials file per identity in %s\n", d.CredsDir)
		fmt.Fprintf(w, "              (the keyward CLI finds them from this directory; nats CLI: %s--creds %s --inbox-prefix %s)\n",
			tlsca, d.Creds(IdentityOperator), access.InboxPrefix(IdentityOperator))
	} else {
		fmt.Fprintf(w, "  access      authentication OFF (--no-auth): anyone who reaches the port can do anything\n")
	}
	fmt.Fprintf(w, "  workers     encryptor (consumer %q on %s), key broker (%s)\n", events.ConsumerEncryptor, events.StreamIngest, events.SubjectKeyUnwrapAll)
	fmt.Fprintf(w, "              key-health-monitor (KeyStatusChanged on %s, current status in KV %s)\n", events.SubjectKeyStatusAll, events.BucketKeyStatus)
	fmt.Fprintf(w, "              re-encryptor (heal, rotation, deprovisioning jobs in KV %s; progress on %s)\n", events.BucketReencryptJobs, events.SubjectReencryptAll)
	fmt.Fprintf(w, "              phone-policy (call admissions on %s; CallAction on %s)\n", events.SubjectPhoneAdmitAll, events.SubjectCallActionAll)
	if d.MailDir != "" {
		fmt.Fprintf(w, "              notifier (email to each tenant's recipients, written as .eml files under %s)\n", d.MailDir)
	} else {
		fmt.Fprintf(w, "              notifier (email to each tenant's recipients through %s)\n", redactedSMTP(o.SMTPURL))
	}
	if d.Breakers != nil {
		fmt.Fprintf(w, "              a circuit breaker per KMS endpoint (BreakerStateChanged on %s)\n", events.SubjectBreakerAll)
	}
	if o.HTTPAddr != "" {
		fmt.Fprintf(w, "  health      http://%s/healthz  /readyz  /metrics\n", o.HTTPAddr)
	}
	fmt.Fprintf(w, "  keys        platform  %s\n", d.PlatformKey)
	fmt.Fprintf(w, "              fallback  %s\n", d.FallbackKey)
	fmt.Fprintf(w, "              demo      %s (tenant %q: every service and user, fallback on)\n", d.DemoKey, DemoTenant)
	fmt.Fprintf(w, "  emulators   AWS KMS %s, OCI Vault %s, Azure Key Vault %s\n", d.AWS.URL, d.OCI.URL, d.Azure.URL)
	fmt.Fprintf(w, "              tenants %q, %q and %q each have a key there\n", DemoTenantAWS, DemoTenantOCI, DemoTenantAzure)
	url := ""
	if strings.Replace(d.URL(), "tls://", "nats://", 1) != nats.DefaultURL { // the CLI finds the dev CA itself
		url = " --nats-url " + d.URL()
	}
	fmt.Fprintf(w, "\nTry it from another terminal:\n\n")
	fmt.Fprintf(w, "  echo 'hello, keyward' > hello.txt\n")
	fmt.Fprintf(w, "  go run ./cmd/keyward asset put%s --tenant demo hello.txt\n", url)
	fmt.Fprintf(w, "  go run ./cmd/keyward asset get%s --tenant demo hello.txt\n", url)
	fmt.Fprintf(w, "  go run ./cmd/keyward status%s\n", url)
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n")
}

// portsFlag parses "4566,4567,4568".
type portsFlag struct{ p *[3]int }

func (f portsFlag) String() string {
	if f.p == nil || *f.p == ([3]int{}) {
		return ""
	}
	return fmt.Sprintf("%d,%d,%d", f.p[0], f.p[1], f.p[2])
}

func (f portsFlag) Set(s string) error {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return fmt.Errorf("want three ports: AWS,OCI,Azure")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%q is not a port", p)
		}
		f.p[i] = n
	}
	return nil
}

func (portsFlag) Type() string { return "ports" }

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// devKeyCmd lets a developer play the customer: disable or enable one of
// the local keys `keyward dev` created, and watch Keyward react.
func (a *App) devKeyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "key (create|disable|enable) (platform|fallback|demo|NAME|PATH)",
		Short: "Create, disable or enable a local key, as a customer would in their KMS",
		Long: `key manages the localkms key files of keyward dev (in <data-dir>/keys).

  create NAME     creates <data-dir>/keys/NAME.key and prints its key URI;
                  tenants can use it as localkms://NAME.key (tenant apply --allow-local-keys)
  disable demo    disables the demo tenant's key: the next asset of tenant demo
                  is rejected with customer_key_revoked. A revocation is the
                  customer's decision, so nothing is stored, not even under the
                  fallback key.
  enable demo     restores it.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var disable bool
			switch args[0] {
			case "create":
				if strings.ContainsAny(args[1], "/\\") || args[1] == "" {
					return usagef("name the key without a path, e.g. acme")
				}
				key, err := devKey(filepath.Join(mustAbs(dataDir), "keys"), args[1]+".key")
				if err != nil {
					return err
				}
				fmt.Fprintf(a.Stdout, "%s\n(keyward dev resolves \"localkms://%s.key\" to it, as in the README's tenant example)\n", key, args[1])
				return nil
			case "disable":
				disable = true
			case "enable":
			default:
				return usagef("want create, disable or enable, not %q", args[0])
			}
			path := args[1]
			switch args[1] {
			case "platform", "fallback":
				path = filepath.Join(dataDir, "keys", args[1]+".key")
			case "demo":
				path = filepath.Join(dataDir, "keys", "demo-customer.key")
			}
			if err := localkms.SetDisabled(path, disable); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "%s is now %s\n", path, map[bool]string{true: "disabled", false: "enabled"}[disable])
			if args[1] != "demo" {
				return nil
			}
			// Play the key-health monitor too: record the new status, so the
			// encryptor flushes its cached seeds of the key at once instead
			// of after the seed cache's maximum age.
			key, err := kms.ParseKeyURI("localkms://" + mustAbs(path))
			if err != nil {
				return err
			}
			nc, js, err := a.connectAs(string(access.RoleKeyHealth))
			if err != nil {
				return fmt.Errorf("the key file is changed, but its status could not be recorded: %w", err)
			}
			defer nc.Close()
			kv, err := js.KeyValue(cmd.Context(), events.BucketKeyStatus)
			if err != nil {
				return err
			}
			st, prev, reason := events.KeyStatusAvailable, events.KeyStatusRevoked, "key enabled (keyward dev key)"
			if disable {
				st, prev, reason = events.KeyStatusRevoked, events.KeyStatusAvailable, "key_disabled (keyward dev key)"
			}
			if err := keystatus.Put(cmd.Context(), kv, keystatus.Record{TenantID: DemoTenant, KeyURI: key.String(), Status: st, Previous: prev, Reason: reason}); err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "key status of tenant %s: %s\n", DemoTenant, st)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", envOr(a.Getenv, "KEYWARD_DATA_DIR", ".keyward"), "the data dir of keyward dev (env KEYWARD_DATA_DIR)")
	return cmd
}

func redactedSMTP(raw string) string {
	c, err := mail.ParseURL(raw)
	if err != nil {
		return "SMTP"
	}
	return c.Redacted()
}
