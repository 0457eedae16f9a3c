package cli_test

import (
	"context"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/mail"
	"github.com/keyward/keyward/pkg/mail/smtptest"
	"github.com/keyward/keyward/pkg/tenant"
)

// A key outage and recovery through the AWS KMS emulator, seen by the
// key-health-monitor, reaches the tenant's recipients by email through a
// real SMTP server (STARTTLS, AUTH): exactly one email per change and
// recipient, saying what happened and what Keyward does; a tenant on
// another provider's key, with its own recipients, gets nothing.
func TestKeyOutageEmails(t *testing.T) {
	smtp := smtptest.Start(t)
	s := khStart(t, cli.DevOptions{KeyHealth: khFastMonitor, Breaker: khFastBreaker,
		SMTPURL: smtp.URL(), MailOptions: []mail.Option{mail.WithTLSConfig(smtp.TLSConfig())}})
	ctx := context.Background()
	key := s.tenant("mail-a", true, "")
	for id, rcpts := range map[string][]string{"mail-a": {"ops@a.example", "sec@a.example"}, cli.DemoTenantOCI: {"ops@oci.example"}} {
		if _, err := s.store.Modify(ctx, id, func(c *tenant.Config) error { c.Recipients = rcpts; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the notifier's tenant watch
	mark, _ := s.marks()

	s.d.AWS.Server.Faults.Set(kmstest.FaultRefuse)
	s.waitStatusEvent("mail-a", events.KeyStatusUnavailable, mark, 15*time.Second)
	waitTo(t, smtp, []string{"ops@a.example", "sec@a.example"}, 1)
	s.d.AWS.Server.Faults.Set(kmstest.FaultNone)
	s.waitStatusEvent("mail-a", events.KeyStatusAvailable, mark, 15*time.Second)
	waitTo(t, smtp, []string{"ops@a.example", "sec@a.example"}, 2)
	time.Sleep(time.Second) // anything else would arrive by now

	msgs := smtp.Messages()
	for _, rcpt := range []string{"ops@a.example", "sec@a.example"} {
		got := received(msgs, rcpt)
		if len(got) != 2 {
			t.Fatalf("%s got %d emails, want 2", rcpt, len(got))
		}
		away, back := got[0], got[1]
		if !strings.Contains(away.Subject, "mail-a is unavailable") || !strings.Contains(back.Subject, "mail-a is available") {
			t.Errorf("subjects %q, %q", away.Subject, back.Subject)
		}
		plainKey, _, _ := strings.Cut(key.String(), "?") // shown without the emulator's endpoint
		for _, want := range []string{plainKey, "cannot be reached", "platform fallback key"} {
			if !strings.Contains(away.Text, want) {
				t.Errorf("outage email lacks %q:\n%s", want, away.Text)
			}
		}
		if away.Header.Get("X-Keyward-Event") != events.TypeKeyStatusChanged || away.MessageID == back.MessageID {
			t.Errorf("headers: %q, ids %s %s", away.Header.Get("X-Keyward-Event"), away.MessageID, back.MessageID)
		}
	}
	if got := received(msgs, "ops@oci.example"); len(got) != 0 {
		t.Fatalf("the OCI tenant's recipient got %d emails: %q", len(got), got[0].Subject)
	}
}

func received(msgs []smtptest.Received, rcpt string) []smtptest.Received {
	var out []smtptest.Received
	for _, m := range msgs {
		for _, to := range m.To {
			if strings.EqualFold(to, rcpt) {
				out = append(out, m)
			}
		}
	}
	return out
}

func waitTo(t *testing.T, smtp *smtptest.Server, rcpts []string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, r := range rcpts {
			ok = ok && len(received(smtp.Messages(), r)) >= n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d emails to each of %v; got %d in all", n, rcpts, len(smtp.Messages()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keyward dev without an SMTP URL writes each email as an .eml file under
// the data dir: the demo key disabled, then enabled, is two emails to the
// demo tenant's recipient once the monitor has confirmed each change.
func TestDevWritesEmailFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := cli.StartDev(context.Background(), cli.DevOptions{DataDir: dir, Port: 0, KeyHealth: khFastMonitor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	registerDev(t, d)
	if d.MailDir != filepath.Join(dir, "mail") {
		t.Fatalf("mail dir %q", d.MailDir)
	}
	var files []string
	for i, verb := range []string{"disable", "enable"} {
		if r := run(t, d.URL(), "", "dev", "key", verb, "--data-dir", dir, "demo"); r.code != 0 {
			t.Fatalf("dev key %s: %+v", verb, r)
		}
		for deadline := time.Now().Add(20 * time.Second); len(files) < i+1 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			files, _ = filepath.Glob(filepath.Join(d.MailDir, "*.eml"))
		}
	}
	time.Sleep(500 * time.Millisecond)
	files, _ = filepath.Glob(filepath.Join(d.MailDir, "*.eml"))
	if len(files) != 2 {
		t.Fatalf("%d .eml files, want 2", len(files))
	}
	var subjects []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := netmail.ReadMessage(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if a, err := netmail.ParseAddress(m.Header.Get("To")); err != nil || a.Address != "security@demo.example" || m.Header.Get("X-Keyward-Event") != events.TypeKeyStatusChanged {
			t.Errorf("%s: To %q, event %q", f, m.Header.Get("To"), m.Header.Get("X-Keyward-Event"))
		}
		subjects = append(subjects, m.Header.Get("Subject"))
	}
	all := strings.Join(subjects, " | ")
	if !strings.Contains(all, "is revoked") || !strings.Contains(all, "is available") {
		t.Fatalf("subjects: %s", all)
	}
}
