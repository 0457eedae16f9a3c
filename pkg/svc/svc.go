package svc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/telemetry"
)

// Common holds the settings every worker has.
type Common struct {
	NATSURL   string
	NATSCreds string
	// NATSCA is the CA certificate file (PEM) that signed the NATS server's
	// certificate; setting it makes the connection require TLS.
	NATSCA   string
	HTTPAddr string
	LogLevel string
	DataDir  string
	Replicas int
}

// Register defines the common flags on f.
func (c *Common) Register(f *Flags, service string) {
	f.String(&c.NATSURL, "nats-url", "NATS_URL", nats.DefaultURL, "NATS server URL(s), comma separated")
	f.String(&c.NATSCreds, "nats-creds", "NATS_CREDS", "", "NATS credentials file")
	f.String(&c.NATSCA, "nats-ca", "NATS_CA", "", "CA certificate file (PEM) that signed the NATS server's certificate; implies TLS")
	f.String(&c.HTTPAddr, "http-addr", "KEYWARD_HTTP_ADDR", "127.0.0.1:9464", "address of /healthz, /readyz and /metrics (empty disables)")
	f.String(&c.LogLevel, "log-level", "KEYWARD_LOG_LEVEL", "info", "debug, info, warn or error")
	f.String(&c.DataDir, "data-dir", "KEYWARD_DATA_DIR", ".keyward/"+service, "directory of this instance's ledger")
	f.Int(&c.Replicas, "replicas", "KEYWARD_REPLICAS", 1, "replicas of streams and buckets when provisioning (3 in production)")
}

// Connect opens a NATS connection that reconnects forever and logs its
// state changes, and a JetStream context on it. With c.NATSCA the
// connection requires TLS and trusts only that CA; a TLS failure (an
// untrusted certificate, a server without TLS) is logged, since the
// connection keeps retrying instead of returning it.
func Connect(c Common, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if errors.Is(err, nats.ErrTLS) || errors.Is(err, nats.ErrSecureConnWanted) {
				log.Error("NATS TLS failed; check -nats-ca (NATS_CA) and the server's certificate", "error", err)
			}
		}),
	}
	if c.NATSCA != "" {
		if err := checkCA(c.NATSCA); err != nil {
			return nil, nil, err
		}
		// Trust only that CA, and require TLS even if the server offers it
		// as optional.
		opts = append(opts, nats.RootCAs(c.NATSCA), nats.Secure())
	}
	// The credentials and the identity's own inbox prefix (the only inbox
	// its permissions let it read).
	creds, err := access.ClientOptions(c.NATSCreds)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_CREDS: %w", err)
	}
	opts = append(opts, creds...)
	nc, err := nats.Connect(c.NATSURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", c.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// checkCA reports a CA file that is missing or holds no PEM certificate,
// naming the setting.
func checkCA(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("NATS_CA: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("NATS_CA %s: no PEM certificate in the file", path)
	}
	return nil
}

// NATSReady is a readiness check (telemetry AddReadyCheck) that fails while
// nc is not connected.
func NATSReady(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	}
}

// WaitProvisioned makes sure Keyward's streams and buckets exist before a
// worker starts, retrying while NATS is not reachable yet, until ctx ends.
// Without credentials (an unauthenticated deployment) the worker
// provisions them itself. With credentials it may not — only the
// provisioner identity creates or changes streams (pkg/access) — so it
// waits until they exist (`keyward provision` creates them), reading the
// account's stream count, which every identity may.
func WaitProvisioned(ctx context.Context, c Common, js jetstream.JetStream, log *slog.Logger) error {
	delay := 250 * time.Millisecond
	o := events.ProvisionOptions{Replicas: c.Replicas}
	want := len(events.StreamConfigs(o)) + len(events.KeyValueConfigs(o)) + len(events.ObjectStoreConfigs(o))
	for {
		var err error
		if c.NATSCreds == "" {
			err = events.Provision(ctx, js, o)
		} else {
			var info *jetstream.AccountInfo
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err = js.AccountInfo(actx)
			cancel()
			if err == nil && info.Streams < want {
				err = fmt.Errorf("%d of Keyward's %d streams and buckets exist: run `keyward provision` with the provisioner's credentials", info.Streams, want)
			}
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("streams and buckets not ready; retrying", "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// Observability sets up logging, OpenTelemetry and the health server.
type Observability struct {
	Log       *slog.Logger
	Telemetry *telemetry.Telemetry
}

// Observe builds the logger and telemetry of a service.
func Observe(ctx context.Context, service, version, level string, getenv func(string) string, stderr io.Writer) (*Observability, error) {
	lvl, err := telemetry.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "keyward-" + service, ServiceVersion: version, Getenv: getenv})
	if err != nil {
		return nil, err
	}
	log := telemetry.NewLogger(stderr, telemetry.LogOptions{Service: tel.ServiceName(), Version: version, Level: lvl})
	return &Observability{Log: log, Telemetry: tel}, nil
}

// Serve runs the health server on addr until ctx ends (addr "" disables).
func (o *Observability) Serve(ctx context.Context, addr string) {
	go func() {
		if err := o.Telemetry.ListenAndServe(ctx, addr); err != nil {
			o.Log.Error("health server failed", "addr", addr, "error", err)
		}
	}()
}

// Shutdown flushes telemetry.
func (o *Observability) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.Telemetry.Shutdown(ctx)
}

// Getenv is os.Getenv, for main functions.
var Getenv = os.Getenv

// ErrUsage marks command-line errors (exit status 2).
var ErrUsage = errors.New("usage")

// Version is set at build time with -ldflags "-X github.com/keyward/keyward/pkg/svc.Version=...".
var Version = "dev"

// DefaultGCPercent is the GOGC a Keyward process runs with unless GOGC is
// set: the workers' live heap is small and bounded (batches, caches), so
// collecting less often trades a little memory for about 10% more
// throughput (docs/benchmarks.md). Set GOGC (and GOMEMLIMIT) to override.
const DefaultGCPercent = 400

// TuneGC applies DefaultGCPercent when the operator did not set GOGC.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
