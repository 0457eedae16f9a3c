package notifier

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/mail"
	"github.com/keyward/keyward/pkg/svc"
)

// Config is the notifier process's configuration: flags with environment
// fallbacks.
type Config struct {
	svc.Common
	SMTPURL          string
	From             string
	DigestWindow     time.Duration
	MaxDeliver       int
	AllowLocalKeys   bool
	ReplaySince      time.Duration
	Resend           bool
	ShutdownDeadline time.Duration
}

// ParseConfig reads flags and environment.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	var c Config
	f := svc.NewFlags("notifier", getenv, out)
	c.Common.Register(f, "notifier")
	f.String(&c.SMTPURL, "smtp-url", "KEYWARD_SMTP_URL", "", "SMTP server, e.g. smtp://user:pass@host:587?tls=starttls (smtps:// for implicit TLS); empty: write .eml files under -data-dir/mail")
	f.String(&c.From, "mail-from", "KEYWARD_MAIL_FROM", "", "sender address of every email, e.g. \"Keyward <keyward@example.com>\"")
	f.Duration(&c.DigestWindow, "digest-window", "KEYWARD_DIGEST_WINDOW", DefaultDigestWindow, "further events of one key (or a tenant's rejections) within this window after an email go out as one digest")
	f.Int(&c.MaxDeliver, "max-deliver", "KEYWARD_MAX_DELIVER", DefaultMaxDeliver, "deliveries of an event whose email cannot be sent before it is dead-lettered")
	f.Bool(&c.AllowLocalKeys, "allow-local-customer-keys", "KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS", false, "accept localkms:// customer keys in tenant configurations (dev and tests only)")
	f.Duration(&c.ReplaySince, "replay-since", "KEYWARD_REPLAY_SINCE", 0, "replay: mail the events of the last DURATION again (each email only once unless -resend), then exit")
	f.Bool(&c.Resend, "resend", "KEYWARD_RESEND", false, "with -replay-since: send again what was already sent (same Message-ID)")
	f.Duration(&c.ShutdownDeadline, "shutdown-deadline", "KEYWARD_SHUTDOWN_DEADLINE", 30*time.Second, "how long a SIGTERM drain may take")
	err := f.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	errs := []error{err}
	if c.From == "" {
		errs = append(errs, errors.New("KEYWARD_MAIL_FROM (-mail-from) is required: the sender address, e.g. keyward@example.com"))
	}
	if c.SMTPURL != "" {
		if _, err := mail.ParseURL(c.SMTPURL); err != nil {
			errs = append(errs, fmt.Errorf("KEYWARD_SMTP_URL (-smtp-url): %w", err))
		}
	}
	if c.Resend && c.ReplaySince <= 0 {
		errs = append(errs, errors.New("-resend only applies to a replay: add -replay-since DURATION"))
	}
	return &c, errors.Join(errs...)
}

// NewSender is the sender cfg asks for: SMTP, or .eml files under
// dataDir/mail when no SMTP URL is given (dev).
func NewSender(smtpURL, dataDir string, opts ...mail.Option) (mail.Sender, error) {
	if smtpURL == "" {
		return mail.NewFileSink(filepath.Join(dataDir, "mail"))
	}
	c, err := mail.ParseURL(smtpURL)
	if err != nil {
		return nil, err
	}
	return mail.NewSMTP(c, opts...)
}

// Main runs the notifier until ctx ends (SIGTERM), or a replay and exits.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, obs, err := svc.Setup(ctx, "notifier", ParseConfig, args, getenv, stderr)
	if err != nil || obs == nil {
		return err // obs is nil after -h
	}
	defer obs.Shutdown()
	log := obs.Log
	sender, err := NewSender(cfg.SMTPURL, cfg.DataDir)
	if err != nil {
		return err
	}
	defer sender.Close()
	store, err := OpenStore(filepath.Join(cfg.DataDir, "notifier.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	nc, js, err := svc.Connect(cfg.Common, "keyward-notifier", log)
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
	w, err := New(ctx, Deps{NC: nc, JS: js, Sender: sender, Store: store}, Options{
		From: cfg.From, DigestWindow: cfg.DigestWindow, MaxDeliver: cfg.MaxDeliver, Resend: cfg.Resend,
		AllowLocalCustomerKeys: cfg.AllowLocalKeys, Logger: log, MeterProvider: obs.Telemetry.MeterProvider(),
	})
	if err != nil {
		return err
	}
	if cfg.ReplaySince > 0 {
		n, err := w.Replay(ctx, time.Now().Add(-cfg.ReplaySince))
		fmt.Fprintf(stdout, "replayed %d events of the last %v\n", n, cfg.ReplaySince)
		return err
	}
	obs.Telemetry.AddReadyCheck("notifier", func(context.Context) error { return w.Ready() })
	obs.Telemetry.AddReadyCheck("nats", svc.NATSReady(nc))
	where := "files under " + filepath.Join(cfg.DataDir, "mail")
	if cfg.SMTPURL != "" {
		where = "SMTP (URL not shown)"
		if c, err := mail.ParseURL(cfg.SMTPURL); err == nil {
			where = "SMTP " + c.Redacted()
		}
	}
	fmt.Fprintf(stdout, "keyward notifier %s: mail from %s via %s\n", svc.Version, cfg.From, where)
	runErr := svc.RunUntilDrained(ctx, w.Run, cfg.ShutdownDeadline, nc, log)
	log.Info("notifier stopped")
	return runErr
}

// Replay mails the events stored since since again, through the same path
// as live events: each email goes out only if the sent ledger has no
// record of it, unless Options.Resend. It reads every source with an
// ordered consumer until it has caught up, and returns the number of
// events read.
func (w *Worker) Replay(ctx context.Context, since time.Time) (int, error) {
	select {
	case <-w.tenants.Ready():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer w.tenants.Stop()
	total := 0
	var errs []error
	for _, s := range sources() {
		cons, err := w.d.JS.OrderedConsumer(ctx, s.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: s.filters, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		})
		if err != nil {
			return total, err
		}
		for {
			msgs, err := cons.Fetch(256, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				return total, err
			}
			n := 0
			for m := range msgs.Messages() {
				n++
				if err := w.Process(ctx, m.Subject(), eventID(m), m.Data()); err != nil {
					w.log.Warn("replaying an event", "subject", m.Subject(), "error", err)
					errs = append(errs, err)
				}
			}
			total += n
			if n == 0 {
				break
			}
		}
	}
	w.flushDigests(ctx)
	return total, errors.Join(errs...)
}
