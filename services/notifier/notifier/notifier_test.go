package notifier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/mail"
	"github.com/keyward/keyward/pkg/mail/smtptest"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/tenant/tenanttest"
	"github.com/keyward/keyward/services/notifier/notifier"
)

// stack is an embedded NATS, a real SMTP server (STARTTLS, AUTH) and the
// notifier worker.
type stack struct {
	t       *testing.T
	env     *natstest.Env
	smtp    *smtptest.Server
	dir     string
	tenants *tenant.Store
	pub     *events.Publisher
	opts    notifier.Options
	w       *notifier.Worker
	store   *notifier.Store
	stop    func()
	seq     int
}

func newStack(t *testing.T, opts ...func(*notifier.Options)) *stack {
	t.Helper()
	s := &stack{t: t, env: natstest.Start(t), smtp: smtptest.Start(t), dir: t.TempDir()}
	var err error
	if s.tenants, err = tenant.OpenStore(context.Background(), s.env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true))); err != nil {
		t.Fatal(err)
	}
	s.pub = events.NewPublisher(s.env.JS, "test")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s.opts = notifier.Options{
		From: "Keyward <keyward@platform.example>", DigestWindow: time.Hour, AllowLocalCustomerKeys: true, Logger: log,
		Backoff: func(uint64) time.Duration { return 200 * time.Millisecond },
	}
	for _, o := range opts {
		o(&s.opts)
	}
	s.start()
	t.Cleanup(func() { s.stopWorker() })
	return s
}

func (s *stack) start() {
	s.t.Helper()
	var err error
	if s.store, err = notifier.OpenStore(filepath.Join(s.dir, "notifier.db")); err != nil {
		s.t.Fatal(err)
	}
	c, err := mail.ParseURL(s.smtp.URL())
	if err != nil {
		s.t.Fatal(err)
	}
	sender, err := mail.NewSMTP(c, mail.WithTLSConfig(s.smtp.TLSConfig()), mail.WithTimeout(2*time.Second))
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.w, err = notifier.New(ctx, notifier.Deps{NC: s.env.NC, JS: s.env.JS, Sender: sender, Store: s.store}, s.opts)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.w.Ready() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("notifier not ready: %v", s.w.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop = func() {
		cancel()
		<-done
		sender.Close()
		s.store.Close()
	}
}

func (s *stack) stopWorker() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// tenant configures a tenant with a local key and recipients.
func (s *stack) tenant(id string, recipients ...string) string {
	s.t.Helper()
	key := tenanttest.LocalKey(s.t, s.dir, id+".key")
	cfg := tenanttest.Covered(id, key, func(c *tenant.Config) { c.Recipients = recipients })
	if _, err := s.tenants.Apply(context.Background(), cfg); err != nil {
		s.t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the worker's tenant watch
	return key.String()
}

// status publishes a KeyStatusChanged as the key-health-monitor does.
func (s *stack) status(tenantID, key string, from, to events.KeyStatus, reason string) string {
	s.t.Helper()
	s.seq++
	id := fmt.Sprintf("key_status.%s.%d", tenantID, s.seq)
	e := &events.KeyStatusChanged{TenantID: tenantID, KeyURI: key, Status: to, Previous: from, Reason: reason,
		Since: time.Now().UTC(), Source: "probe"}
	if _, err := s.pub.Publish(context.Background(), events.Outgoing{Subject: events.SubjectKeyStatus(tenantID), MsgID: id,
		Type: events.TypeKeyStatusChanged, Event: e}); err != nil {
		s.t.Fatal(err)
	}
	return id
}

// to returns the messages received for addr.
func to(msgs []smtptest.Received, addr string) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range msgs {
		for _, r := range m.To {
			if strings.EqualFold(r, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// settle waits a little for anything else to arrive.
func (s *stack) settle() []smtptest.Received {
	time.Sleep(700 * time.Millisecond)
	return s.smtp.Messages()
}

// An outage and a recovery: exactly two emails to each of the tenant's
// recipients, with the status, the reason in words, what Keyward does and
// what to do; another tenant's recipients get nothing.
func TestOutageAndRecovery(t *testing.T) {
	s := newStack(t)
	key := s.tenant("acme", "alice@acme.example", "bob@acme.example")
	s.tenant("globex", "carol@globex.example")
	// A new key's first status (no previous one) is not news: no email.
	s.status("acme", key, "", events.KeyStatusAvailable, "ok")
	down := s.status("acme", key, events.KeyStatusAvailable, events.KeyStatusUnavailable, "endpoint_unreachable")
	s.status("acme", key, events.KeyStatusUnavailable, events.KeyStatusAvailable, "ok")
	s.smtp.WaitMessages(t, 4, 10*time.Second)
	msgs := s.settle()
	if len(msgs) != 4 || len(to(msgs, "carol@globex.example")) != 0 {
		t.Fatalf("%d messages (%d to globex), want 4 to acme only", len(msgs), len(to(msgs, "carol@globex.example")))
	}
	for _, rcpt := range []string{"alice@acme.example", "bob@acme.example"} {
		got := to(msgs, rcpt)
		if len(got) != 2 {
			t.Fatalf("%s got %d messages, want 2", rcpt, len(got))
		}
		away, back := got[0], got[1]
		if !strings.Contains(away.Subject, "unavailable") || !strings.Contains(back.Subject, "available") {
			t.Errorf("subjects %q, %q", away.Subject, back.Subject)
		}
		for _, want := range []string{"acme", key, "available -> unavailable", "cannot be reached", "platform fallback key", "Restore access"} {
			if !strings.Contains(away.Text, want) {
				t.Errorf("outage text lacks %q:\n%s", want, away.Text)
			}
		}
		if !strings.Contains(away.HTML, "<b>unavailable</b>") || !strings.Contains(away.HTML, "What you should do") {
			t.Errorf("outage HTML:\n%s", away.HTML)
		}
		if !strings.Contains(back.Text, "encrypted under your key again") {
			t.Errorf("recovery text:\n%s", back.Text)
		}
		if away.Header.Get("X-Keyward-Event") != events.TypeKeyStatusChanged || !strings.Contains(away.MessageID, strings.ReplaceAll(down, ".", ".")) {
			t.Errorf("headers: event %q, message id %q (event %s)", away.Header.Get("X-Keyward-Event"), away.MessageID, down)
		}
	}
	if a, b := to(msgs, "alice@acme.example")[0].MessageID, to(msgs, "bob@acme.example")[0].MessageID; a == b {
		t.Errorf("two recipients share the Message-ID %s", a)
	}
}

// Redelivery, a restart and a replay send nothing twice; a replay with
// --resend sends again, with the same Message-ID.
func TestNoDuplicates(t *testing.T) {
	s := newStack(t)
	key := s.tenant("acme", "alice@acme.example")
	s.status("acme", key, events.KeyStatusAvailable, events.KeyStatusRevoked, "key_disabled")
	first := s.smtp.WaitMessages(t, 1, 10*time.Second)[0]

	// The same event processed again (a redelivery), then after a restart.
	m := lastMsg(t, s, events.StreamKeys)
	if err := s.w.Process(context.Background(), m.subject, m.id, m.data); err != nil {
		t.Fatal(err)
	}
	s.stopWorker()
	s.start()
	if err := s.w.Process(context.Background(), m.subject, m.id, m.data); err != nil {
		t.Fatal(err)
	}
	if n, err := s.w.Replay(context.Background(), time.Now().Add(-time.Hour)); err != nil || n == 0 {
		t.Fatalf("replay: %d events, %v", n, err)
	}
	if got := s.settle(); len(got) != 1 {
		t.Fatalf("%d messages after redelivery, restart and replay, want 1", len(got))
	}
	// A replay with --resend.
	s.stopWorker()
	s.opts.Resend = true
	s.start()
	if _, err := s.w.Replay(context.Background(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := s.smtp.WaitMessages(t, 2, 10*time.Second)
	if got[1].MessageID != first.MessageID {
		t.Fatalf("resent with Message-ID %q, first was %q", got[1].MessageID, first.MessageID)
	}
}

type storedMsg struct {
	subject, id string
	data        []byte
}

func lastMsg(t *testing.T, s *stack, stream string) storedMsg {
	t.Helper()
	msgs := s.env.StreamMsgs(t, stream, ">")
	m := msgs[len(msgs)-1]
	return storedMsg{m.Subject, m.Header.Get(events.HeaderMsgID), m.Data}
}

// SMTP down for a while: nothing is lost; the email arrives once it is back.
func TestSMTPDownThenBack(t *testing.T) {
	s := newStack(t)
	key := s.tenant("acme", "alice@acme.example")
	s.smtp.Stop()
	s.status("acme", key, events.KeyStatusAvailable, events.KeyStatusUnavailable, "endpoint_unreachable")
	time.Sleep(1500 * time.Millisecond) // several failed deliveries
	if n := len(s.smtp.Messages()); n != 0 {
		t.Fatalf("%d messages while the server was down", n)
	}
	s.smtp.Restart()
	got := s.smtp.WaitMessages(t, 1, 15*time.Second)
	if !strings.Contains(got[0].Subject, "unavailable") {
		t.Fatalf("subject %q", got[0].Subject)
	}
	if len(s.settle()) != 1 {
		t.Fatal("the email was sent more than once")
	}
}

// A recipient refused for good fails alone (dead letter with the reason);
// an event that cannot be rendered fails alone; the others flow.
func TestBadRecipientAndBadData(t *testing.T) {
	s := newStack(t)
	key := s.tenant("acme", "alice@acme.example", "nobody@acme.example")
	s.smtp.RejectRecipient("nobody@acme.example")
	s.status("acme", key, events.KeyStatusAvailable, events.KeyStatusUnavailable, "endpoint_unreachable")
	s.smtp.WaitMessages(t, 1, 10*time.Second)
	// An event whose data is invalid for its email (no key named).
	if _, err := s.pub.Publish(context.Background(), events.Outgoing{Subject: events.SubjectRotationCompleted("acme"), MsgID: "bad.1",
		Type: events.TypeRotationCompleted, Event: map[string]any{"tenant_id": "acme", "job_id": "j", "to_key_uri": key, "retired_key_uris": []string{}, "assets": 1, "completed_at": time.Now()}}); err != nil {
		t.Fatal(err)
	}
	s.status("acme", key, events.KeyStatusUnavailable, events.KeyStatusAvailable, "ok")
	s.smtp.WaitMessages(t, 2, 10*time.Second)
	msgs := s.settle()
	if len(to(msgs, "alice@acme.example")) != 2 || len(to(msgs, "nobody@acme.example")) != 0 {
		t.Fatalf("messages: alice %d, nobody %d", len(to(msgs, "alice@acme.example")), len(to(msgs, "nobody@acme.example")))
	}
	var rejected, invalid int
	for _, m := range s.env.StreamMsgs(t, events.StreamDLQ, events.SubjectDLQAll) {
		d, err := events.ParseDeadLetter(m.Subject, m.Header, m.Data, m.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		switch d.Reason {
		case events.ReasonMailRecipientRejected:
			rejected++
			if !strings.Contains(d.Detail, "nobody@acme.example") {
				t.Errorf("dead letter detail %q does not name the address", d.Detail)
			}
		case events.ReasonInvalidEvent:
			invalid++
			if !strings.Contains(d.Detail, "retired_key_uris") {
				t.Errorf("dead letter detail %q does not name the field", d.Detail)
			}
		}
	}
	if rejected != 2 || invalid != 1 {
		t.Fatalf("dead letters: %d recipient rejections (want 2, one per event), %d invalid events (want 1)", rejected, invalid)
	}
}

// A flapping key: the first two changes (away, back) go out at once, the
// rest as one digest at the end of the window.
func TestFlappingKeyDigest(t *testing.T) {
	s := newStack(t, func(o *notifier.Options) { o.DigestWindow = 2 * time.Second })
	key := s.tenant("acme", "alice@acme.example")
	st := []events.KeyStatus{events.KeyStatusAvailable, events.KeyStatusUnavailable}
	for i := range 12 {
		s.status("acme", key, st[i%2], st[(i+1)%2], "endpoint_unreachable")
	}
	got := s.smtp.WaitMessages(t, 3, 15*time.Second)
	msgs := s.settle()
	if len(msgs) != 3 {
		t.Fatalf("%d messages for 12 changes, want 3 (two at once, one digest)", len(msgs))
	}
	digest := got[2]
	if !strings.Contains(digest.Subject, "10 more status changes") || !strings.Contains(digest.Subject, "now available") {
		t.Fatalf("digest subject %q", digest.Subject)
	}
	if strings.Count(digest.Text, "\n- ") != 10 {
		t.Fatalf("digest lists %d changes, want 10:\n%s", strings.Count(digest.Text, "\n- "), digest.Text)
	}
	// Still flapping in the next window: one more digest, nothing at once.
	for i := range 4 {
		s.status("acme", key, st[i%2], st[(i+1)%2], "endpoint_unreachable")
	}
	got = s.smtp.WaitMessages(t, 4, 15*time.Second)
	if len(s.settle()) != 4 || !strings.Contains(got[3].Subject, "4 more status changes") {
		t.Fatalf("second window: %d messages, last %q", len(s.smtp.Messages()), got[3].Subject)
	}
}

// tenantChanged publishes a TenantChanged as the enrollment service does.
func (s *stack) tenantChanged(e *events.TenantChanged) string {
	s.t.Helper()
	id := events.TenantChangedMsgID(e.TenantID, e.Revision)
	if _, err := s.pub.Publish(context.Background(), events.Outgoing{Subject: events.SubjectTenantChanged(e.TenantID), MsgID: id,
		Type: events.TypeTenantChanged, Event: e}); err != nil {
		s.t.Fatal(err)
	}
	return id
}

// A change of a tenant's recipients is mailed to the recipients before and
// after it, so a takeover that replaces them still reaches the old ones,
// naming who made it; a change of other fields, or one its own lifecycle
// event mails, is not.
func TestTenantChangeReachesOldAndNewRecipients(t *testing.T) {
	s := newStack(t)
	s.tenant("acme", "alice@acme.example")
	at := time.Now().UTC().Truncate(time.Second)
	by := &events.ChangedBy{Name: "admin-acme", User: "UA", Account: "AA", Role: "tenant-admin"}
	// Not mailed: only phone settings changed; a key enrolled (KeyEnrolled
	// mails it).
	s.tenantChanged(&events.TenantChanged{TenantID: "acme", Revision: 10, Op: events.TenantOpPhoneSettings, ChangedBy: by,
		Fields: []string{"phone"}, Before: json.RawMessage(`{"tenant_id":"acme","recipients":["alice@acme.example"]}`),
		After: json.RawMessage(`{"tenant_id":"acme","recipients":["alice@acme.example"]}`), At: at})
	s.tenantChanged(&events.TenantChanged{TenantID: "acme", Revision: 11, Op: events.TenantOpKeyEnrolled, ChangedBy: by,
		Fields: []string{"keys"}, Before: json.RawMessage(`{"tenant_id":"acme","recipients":["alice@acme.example"]}`),
		After: json.RawMessage(`{"tenant_id":"acme","recipients":["alice@acme.example"]}`), At: at})
	// The takeover: alice replaced by mallory (the tenant's current
	// configuration still lists alice only; the event says who is who).
	id := s.tenantChanged(&events.TenantChanged{TenantID: "acme", Revision: 12, Op: events.TenantOpApply, ChangedBy: by,
		Fields: []string{"fallback_enabled", "recipients"}, Before: json.RawMessage(`{"tenant_id":"acme","recipients":["alice@acme.example"]}`),
		After: json.RawMessage(`{"tenant_id":"acme","recipients":["mallory@evil.example","ALICE@acme.example"]}`), At: at})
	msgs := s.smtp.WaitMessages(t, 2, 10*time.Second)
	if len(msgs) != 2 || len(to(msgs, "alice@acme.example")) != 1 || len(to(msgs, "mallory@evil.example")) != 1 {
		t.Fatalf("%d messages: %+v, want one to alice and one to mallory", len(msgs), msgs)
	}
	m := to(msgs, "alice@acme.example")[0]
	if !strings.Contains(m.Subject, "configuration of acme was changed (fallback_enabled, recipients)") ||
		m.Header.Get("X-Keyward-Event") != events.TypeTenantChanged || m.Header.Get("X-Keyward-Event-Id") != id {
		t.Errorf("subject %q, headers %v", m.Subject, m.Header)
	}
	for _, want := range []string{"By:      admin-acme (tenant-admin)", "Through: apply", "contact your platform"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, m.Text)
		}
	}
	if !strings.Contains(m.HTML, "admin-acme (tenant-admin)") {
		t.Errorf("HTML:\n%s", m.HTML)
	}
}
