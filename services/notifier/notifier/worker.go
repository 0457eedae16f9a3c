package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/mail"
	"github.com/keyward/keyward/pkg/tenant"
)

// Defaults of the notifier. docs/notifier.md explains each.
const (
	DefaultDigestWindow = 5 * time.Minute
	// statusImmediate: a key's status emails sent at once per digest window
	// (the key going away and coming back); further changes are digested.
	statusImmediate   = 2
	DefaultMaxDeliver = 12 // with the backoff below: about 30 minutes of SMTP outage before a dead letter
	DefaultAckWait    = time.Minute
	digestTick        = time.Second
)

// Deps are what a Worker uses; the caller owns them.
type Deps struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	Sender mail.Sender
	Store  *Store
}

// Options tune a Worker.
type Options struct {
	// From is the sender address of every email (required).
	From string
	// DigestWindow: after an email about a key's status (or a tenant's
	// rejected content), further events of the same subject within this
	// window are sent as one digest at its end (5 m).
	DigestWindow time.Duration
	// MaxDeliver deliveries of an event whose email cannot be sent (SMTP
	// down) before it is dead-lettered (12, backoff 1 s doubling to 5 m).
	MaxDeliver int
	// Backoff between deliveries (default: exponential from 1 s to 5 m).
	Backoff events.Backoff
	// Resend sends again what the sent ledger says was sent (a replay with
	// --resend).
	Resend                 bool
	AllowLocalCustomerKeys bool
	Logger                 *slog.Logger
	MeterProvider          metric.MeterProvider
}

func (o *Options) setDefaults() {
	if o.DigestWindow <= 0 {
		o.DigestWindow = DefaultDigestWindow
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if o.Backoff == nil {
		o.Backoff = events.ExponentialBackoff(time.Second, 5*time.Minute)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Consumer names, one durable consumer per stream.
const (
	ConsumerKeys      = "notifier-keys"
	ConsumerLifecycle = "notifier-lifecycle"
	ConsumerReencrypt = "notifier-reencrypt"
	ConsumerRejected  = "notifier-rejected"
)

type source struct {
	stream, consumer, description string
	filters                       []string
}

func sources() []source {
	return []source{
		{events.StreamKeys, ConsumerKeys, "Keyward notifier: key status changes → email", []string{events.SubjectKeyStatusAll}},
		{events.StreamLifecycle, ConsumerLifecycle, "Keyward notifier: key lifecycle (enrolled, rotation, deprovisioning) → email", []string{events.SubjectLifecycleEvents}},
		{events.StreamReencrypt, ConsumerReencrypt, "Keyward notifier: re-encryption completed or stopped → email", []string{events.SubjectReencryptAll}},
		{events.StreamAssets, ConsumerRejected, "Keyward notifier: content not stored for lack of the customer key → email (digested)", []string{events.SubjectAssetRejectedAll}},
	}
}

// Worker turns events into emails to each tenant's recipients.
type Worker struct {
	d       Deps
	o       Options
	log     *slog.Logger
	tenants *tenant.Cache
	settler *events.Settler
	metrics *metrics

	ready chan struct{}
	mu    sync.Mutex
}

// New prepares a worker; Run starts it.
func New(ctx context.Context, d Deps, o Options) (*Worker, error) {
	o.setDefaults()
	var errs []error
	if d.NC == nil || d.JS == nil || d.Sender == nil || d.Store == nil {
		errs = append(errs, errors.New("notifier: NATS, a mail sender and a store are required"))
	}
	if strings.TrimSpace(o.From) == "" {
		errs = append(errs, errors.New("notifier: the from address is required (KEYWARD_MAIL_FROM)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	w := &Worker{d: d, o: o, log: o.Logger.With("worker", "notifier"), ready: make(chan struct{})}
	tkv, err := d.JS.KeyValue(ctx, events.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("notifier: tenants bucket: %w", err)
	}
	if w.tenants, err = tenant.NewCache(ctx, tkv, tenant.WithLogger(w.log),
		tenant.WithValidateOptions(tenant.AllowLocalKeys(o.AllowLocalCustomerKeys))); err != nil {
		return nil, err
	}
	w.settler = &events.Settler{DLQ: events.NewDeadLetterer(d.JS, "notifier"), MaxDeliver: o.MaxDeliver, Backoff: o.Backoff, Logger: w.log}
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if w.metrics, err = newMetrics(mp.Meter("github.com/keyward/keyward/services/notifier")); err != nil {
		return nil, err
	}
	return w, nil
}

// Ready reports nil once the tenant cache is loaded and the consumers run.
func (w *Worker) Ready() error {
	for name, ch := range map[string]<-chan struct{}{"tenant cache": w.tenants.Ready(), "consumers": w.ready} {
		select {
		case <-ch:
		default:
			return fmt.Errorf("%s not ready", name)
		}
	}
	return nil
}

// ConsumerConfig is the durable consumer of one source.
func (w *Worker) consumerConfig(s source) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: s.consumer, Description: s.description, FilterSubjects: s.filters,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: DefaultAckWait, MaxDeliver: w.o.MaxDeliver + 1,
		// New events only: a notifier deployed later does not mail the
		// history (a replay does that, explicitly).
		DeliverPolicy: jetstream.DeliverNewPolicy,
		MaxAckPending: 256,
	}
}

// Run consumes until ctx ends, then stops the consumers (messages in
// progress finish) and returns.
func (w *Worker) Run(ctx context.Context) error {
	defer w.tenants.Stop()
	select {
	case <-w.tenants.Ready():
	case <-ctx.Done():
		return nil
	}
	var ccs []jetstream.ConsumeContext
	defer func() {
		for _, cc := range ccs {
			cc.Drain()
		}
		for _, cc := range ccs {
			<-cc.Closed()
		}
	}()
	for _, s := range sources() {
		cons, err := w.d.JS.CreateOrUpdateConsumer(ctx, s.stream, w.consumerConfig(s))
		if err != nil {
			return fmt.Errorf("notifier: consumer %s on %s: %w", s.consumer, s.stream, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) { w.handle(ctx, m) }, jetstream.PullMaxMessages(64))
		if err != nil {
			return fmt.Errorf("notifier: consuming %s: %w", s.stream, err)
		}
		ccs = append(ccs, cc)
	}
	close(w.ready)
	w.log.Info("notifier started", "digest_window", w.o.DigestWindow.String())
	tick := time.NewTicker(digestTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			w.flushDigests(ctx)
		}
	}
}

// handle processes one event and settles it.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	err := w.Process(ctx, m.Subject(), eventID(m), m.Data())
	outcome := w.settler.Settle(ctx, m, err)
	w.metrics.events.Add(ctx, 1, metric.WithAttributes(attribute.String("settlement", string(outcome))))
}

// eventID is the event's Nats-Msg-Id, or its stream position when it has
// none.
func eventID(m jetstream.Msg) string {
	if id := m.Headers().Get(events.HeaderMsgID); id != "" {
		return id
	}
	if md, err := m.Metadata(); err == nil {
		return md.Stream + "." + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return ""
}

// Process turns one event into emails: at once, or into its digest. A
// transient mail failure is returned as is (the event is redelivered and
// the recipients already sent to are skipped); a decoding or rendering
// failure, or a recipient refused for good, is permanent.
func (w *Worker) Process(ctx context.Context, subject, id string, data []byte) error {
	// One event at a time: a redelivery racing the first delivery waits,
	// then finds the recipients in the sent ledger.
	w.mu.Lock()
	defer w.mu.Unlock()
	tenantID, err := events.TenantFromSubject(subject)
	if err != nil {
		return events.Permanent(events.ReasonInvalidEvent, err)
	}
	cfg, _ := w.tenants.Get(tenantID)
	n, err := decodeNotice(subject, id, data, cfg)
	switch {
	case errors.Is(err, errUnknownSubject):
		return nil
	case err != nil:
		return events.Permanent(events.ReasonInvalidEvent, err)
	case n == nil:
		return nil
	}
	var recipients []string
	if cfg != nil {
		recipients = cfg.Recipients
	}
	if n.Recipients != nil {
		recipients = n.Recipients
	}
	if len(recipients) == 0 {
		w.count(ctx, n.Kind, "no_recipients")
		return nil
	}
	if n.DigestKey != "" && !w.o.Resend {
		limit := 1
		if n.Kind == KindKeyStatus {
			limit = statusImmediate
		}
		now, err := w.d.Store.digestOrSend(n, w.o.DigestWindow, limit, time.Now())
		if err != nil {
			return err
		}
		if !now {
			w.count(ctx, n.Kind, "digested")
			return nil
		}
	}
	text, html, err := render(n)
	if err != nil {
		return events.Permanent(events.ReasonTemplateFailed, err)
	}
	return w.deliver(ctx, n.Kind, n.TenantID, n.EventID, n.EventType, n.Subject, text, html, recipients)
}

// deliver sends one email per recipient, skipping those the ledger says
// were sent (unless Resend).
func (w *Worker) deliver(ctx context.Context, kind Kind, tenantID, baseID, eventType, subject, text, html string, recipients []string) error {
	var transient error
	var refused []string
	for _, rcpt := range recipients {
		id := messageID(baseID, rcpt)
		if !w.o.Resend {
			if rec, ok, err := w.d.Store.Sent(id); err != nil {
				return err
			} else if ok {
				if rec.Outcome == "rejected" {
					refused = append(refused, rcpt)
				}
				w.count(ctx, kind, "duplicate")
				continue
			}
		}
		where, err := w.d.Sender.Send(ctx, &mail.Message{
			MessageID: id, From: w.o.From, To: rcpt, Subject: subject, Text: text, HTML: html,
			Headers: map[string]string{"X-Keyward-Event": eventType, "X-Keyward-Event-Id": baseID, "X-Keyward-Tenant": tenantID},
		})
		switch {
		case err == nil:
			if err := w.d.Store.RecordSent(id, SentRecord{At: time.Now().UTC(), Outcome: "sent", Where: where}); err != nil {
				return err
			}
			w.count(ctx, kind, "sent")
			w.log.Info("notification sent", "tenant_id", tenantID, "kind", kind, "message_id", id, "to", where)
		case mail.IsPermanent(err):
			if err := w.d.Store.RecordSent(id, SentRecord{At: time.Now().UTC(), Outcome: "rejected", Error: clip(err.Error())}); err != nil {
				return err
			}
			refused = append(refused, rcpt)
			w.count(ctx, kind, "rejected")
			w.log.Warn("a recipient was refused for good; the others are sent to", "tenant_id", tenantID, "kind", kind, "message_id", id, "error", err)
		default:
			transient = err
			w.count(ctx, kind, "retry")
		}
	}
	if transient != nil {
		return fmt.Errorf("sending the %s email: %w", kind, transient)
	}
	if len(refused) > 0 {
		return events.Permanent(events.ReasonMailRecipientRejected,
			fmt.Errorf("the mail server refused %s for good; the other recipients got the %s email", strings.Join(refused, ", "), kind))
	}
	return nil
}

// messageID is the Message-ID of the email about event baseID to rcpt:
// the same for a resend, different per recipient.
func messageID(baseID, rcpt string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(rcpt))))
	var b strings.Builder
	for _, c := range baseID {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return "kw." + b.String() + "." + hex.EncodeToString(h[:6]) + "@keyward"
}

// flushDigests sends the digests whose window has passed.
func (w *Worker) flushDigests(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	due, err := w.d.Store.dueDigests(w.o.DigestWindow, time.Now())
	if err != nil {
		w.log.Error("reading pending digests", "error", err)
		return
	}
	for key, pd := range due {
		if err := w.sendDigest(ctx, key, pd); err != nil && ctx.Err() == nil {
			w.log.Warn("digest not sent yet; retrying", "tenant_id", pd.TenantID, "kind", pd.Kind, "error", err)
		}
	}
}

func (w *Worker) sendDigest(ctx context.Context, key string, pd *pendingDigest) error {
	cfg, _ := w.tenants.Get(pd.TenantID)
	now := time.Now().UTC()
	d := &Digest{TenantID: pd.TenantID, Kind: pd.Kind, KeyURI: pd.KeyURI, From: pd.From, To: now, Window: w.o.DigestWindow, Items: pd.Items}
	if pd.Kind == KindKeyStatus {
		d.Subject = fmt.Sprintf("Keyward: %d more status changes of your key for %s (now %s)", len(pd.Items), pd.TenantID, d.Last().Status)
	} else {
		d.Subject = fmt.Sprintf("Keyward: %d more assets of %s were not stored", len(pd.Items), pd.TenantID)
	}
	var recipients []string
	if cfg != nil {
		recipients = cfg.Recipients // the ledger skips those a crashed flush sent to
	}
	if len(recipients) > 0 {
		text, html, err := renderDigest(d)
		if err != nil {
			w.log.Error("a digest could not be rendered; dropping it", "tenant_id", pd.TenantID, "error", err)
			return w.d.Store.finishDigest(key, now)
		}
		h := sha256.Sum256([]byte(key))
		baseID := "digest." + hex.EncodeToString(h[:6]) + "." + strconv.FormatInt(pd.From.Unix(), 10)
		eventType := "dev.keyward.notifier.digest.v1"
		err = w.deliver(ctx, pd.Kind, pd.TenantID, baseID, eventType, d.Subject, text, html, recipients)
		if _, permanent := events.AsPermanent(err); err != nil && !permanent {
			return err
		}
		w.count(ctx, pd.Kind, "digest")
	}
	return w.d.Store.finishDigest(key, now)
}

func (w *Worker) count(ctx context.Context, kind Kind, outcome string) {
	w.metrics.messages.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(kind)), attribute.String("outcome", outcome)))
}

func clip(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}

type metrics struct {
	events   metric.Int64Counter
	messages metric.Int64Counter
}

func newMetrics(m metric.Meter) (*metrics, error) {
	var x metrics
	var err error
	if x.events, err = m.Int64Counter("keyward.notifier.events",
		metric.WithDescription("Events handled, by settlement (acked, retry, dead_lettered, left)")); err != nil {
		return nil, err
	}
	x.messages, err = m.Int64Counter("keyward.notifier.messages",
		metric.WithDescription("Notification emails by kind and outcome (sent, duplicate, rejected, retry, digested, digest, no_recipients)"))
	return &x, err
}
