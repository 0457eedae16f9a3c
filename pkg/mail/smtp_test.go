package mail_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/mail"
	"github.com/keyward/keyward/pkg/mail/smtptest"
)

func newSender(t *testing.T, srv *smtptest.Server, url string) *mail.SMTP {
	t.Helper()
	cfg, err := mail.ParseURL(url)
	if err != nil {
		t.Fatalf("ParseURL(%q) err = %v", url, err)
	}
	s, err := mail.NewSMTP(cfg, mail.WithTLSConfig(srv.TLSConfig()), mail.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("NewSMTP err = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func message(to, id string) *mail.Message {
	return &mail.Message{
		MessageID: id,
		From:      "Keyward <keyward@example.com>",
		To:        to,
		Subject:   "Key kms-1 is disabled — ä",
		Text:      "Key kms-1 was disabled.\nA long line: " + strings.Repeat("x", 120) + "\n",
		HTML:      "<p>Key <b>kms-1</b> was disabled = ü.</p>",
		Headers:   map[string]string{"X-Keyward-Event": "dev.keyward.key.status.changed.v1"},
	}
}

func TestSendSTARTTLSAuth(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL())
	date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	m := message("ops@example.com", "kw.evt-1.abc123@keyward")
	m.Date = date
	where, err := s.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send err = %v", err)
	}
	if want := "smtp://" + srv.Addr; where != want {
		t.Errorf("Send = %q, want %q", where, want)
	}
	got := srv.WaitMessages(t, 1, 5*time.Second)[0]
	if got.ParseErr != nil {
		t.Fatalf("received message does not parse: %v\n%s", got.ParseErr, got.Data)
	}
	if got.From != "keyward@example.com" || len(got.To) != 1 || got.To[0] != "ops@example.com" {
		t.Errorf("envelope = %q -> %q, want keyward@example.com -> [ops@example.com]", got.From, got.To)
	}
	if got.MessageID != "kw.evt-1.abc123@keyward" {
		t.Errorf("Message-ID = %q, want kw.evt-1.abc123@keyward", got.MessageID)
	}
	if v := got.Header.Get("X-Keyward-Event"); v != "dev.keyward.key.status.changed.v1" {
		t.Errorf("X-Keyward-Event = %q", v)
	}
	if got.Subject != m.Subject {
		t.Errorf("Subject = %q, want %q", got.Subject, m.Subject)
	}
	if !got.Date.Equal(date) {
		t.Errorf("Date = %v, want %v", got.Date, date)
	}
	if ct := got.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type = %q, want multipart/alternative", ct)
	}
	if got.Text != m.Text {
		t.Errorf("Text = %q, want %q", got.Text, m.Text)
	}
	if got.HTML != m.HTML {
		t.Errorf("HTML = %q, want %q", got.HTML, m.HTML)
	}
	if v := got.Header.Get("To"); !strings.Contains(v, "ops@example.com") {
		t.Errorf("To header = %q", v)
	}
}

func TestSendImplicitTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithImplicitTLS(), smtptest.WithPassword("p@ss:w/rd"))
	if !strings.HasPrefix(srv.URL(), "smtps://") {
		t.Fatalf("URL() = %q, want smtps://", srv.URL())
	}
	s := newSender(t, srv, srv.URL())
	if s.Config().TLS != mail.TLSImplicit || s.Config().Password != "p@ss:w/rd" {
		t.Fatalf("config = %v, want implicit TLS and the password decoded", s.Config())
	}
	m := message("ops@example.com", "kw.implicit@keyward")
	m.HTML = ""
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send err = %v", err)
	}
	got := srv.WaitMessages(t, 1, 5*time.Second)[0]
	if ct := got.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
}

func TestSendWrongPassword(t *testing.T) {
	srv := smtptest.Start(t)
	url := strings.Replace(srv.URL(), ":secret@", ":wrong@", 1)
	s := newSender(t, srv, url)
	_, err := s.Send(context.Background(), message("ops@example.com", "kw.a@keyward"))
	if err == nil {
		t.Fatal("Send with a wrong password err = nil, want an error")
	}
	if !errors.Is(err, mail.ErrAuth) {
		t.Errorf("Send err = %v, want ErrAuth", err)
	}
	if mail.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = true, want false (fix the configuration, then retry)", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("err = %q contains the password", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server got %d messages, want 0", n)
	}
}

func TestRejectRecipientIsPermanentAndAlone(t *testing.T) {
	srv := smtptest.Start(t)
	srv.RejectRecipient("gone@example.com")
	s := newSender(t, srv, srv.URL()+"&pool=1")
	_, err := s.Send(context.Background(), message("gone@example.com", "kw.1@keyward"))
	if !mail.IsPermanent(err) || !errors.Is(err, mail.ErrRejected) {
		t.Fatalf("Send to a rejected recipient err = %v, want permanent ErrRejected", err)
	}
	var de *mail.DeliveryError
	if !errors.As(err, &de) || de.Code != 550 || de.EnhancedCode != "5.1.1" || de.Op != "rcpt to" {
		t.Errorf("err = %#v, want DeliveryError{Op: rcpt to, Code: 550, EnhancedCode: 5.1.1}", de)
	}
	if _, err := s.Send(context.Background(), message("ops@example.com", "kw.2@keyward")); err != nil {
		t.Fatalf("Send to another recipient after a rejection err = %v", err)
	}
	got := srv.WaitMessages(t, 1, 5*time.Second)
	if len(got) != 1 || got[0].To[0] != "ops@example.com" {
		t.Errorf("received %d messages, want only the one to ops@example.com", len(got))
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("server saw %d connections, want 1 (the connection survives a rejection)", n)
	}
}

func TestTransientFailuresAndReconnect(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL()+"&pool=1")
	ctx := context.Background()
	if _, err := s.Send(ctx, message("ops@example.com", "kw.1@keyward")); err != nil {
		t.Fatalf("Send err = %v", err)
	}

	srv.FailTemporarily(true)
	_, err := s.Send(ctx, message("ops@example.com", "kw.2@keyward"))
	var de *mail.DeliveryError
	if err == nil || mail.IsPermanent(err) || !errors.As(err, &de) || de.Code != 451 {
		t.Fatalf("Send while failing temporarily err = %v, want transient 451", err)
	}
	srv.FailTemporarily(false)
	if _, err := s.Send(ctx, message("ops@example.com", "kw.2@keyward")); err != nil {
		t.Fatalf("Send after the temporary failure err = %v", err)
	}

	srv.Stop()
	for i := range 2 { // the pooled connection is dead, then the dial is refused
		_, err = s.Send(ctx, message("ops@example.com", "kw.3@keyward"))
		if err == nil || mail.IsPermanent(err) {
			t.Fatalf("Send #%d while the server is down err = %v, want transient", i, err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Errorf("Send #%d while down err = %v, want a *net.OpError inside", i, err)
		}
	}

	srv.Restart()
	if _, err := s.Send(ctx, message("ops@example.com", "kw.3@keyward")); err != nil {
		t.Fatalf("Send after Restart err = %v", err)
	}
	got := srv.WaitMessages(t, 3, 5*time.Second)
	for i, id := range []string{"kw.1@keyward", "kw.2@keyward", "kw.3@keyward"} {
		if got[i].MessageID != id {
			t.Errorf("message %d ID = %q, want %q", i, got[i].MessageID, id)
		}
	}
}

// A restart while the sender is idle: the pooled connection is dead, which
// the NOOP check finds before sending, and the send succeeds at once.
func TestStaleConnectionIsReplaced(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL()+"&pool=1")
	ctx := context.Background()
	if _, err := s.Send(ctx, message("ops@example.com", "kw.1@keyward")); err != nil {
		t.Fatalf("Send err = %v", err)
	}
	srv.Stop()
	srv.Restart()
	if _, err := s.Send(ctx, message("ops@example.com", "kw.2@keyward")); err != nil {
		t.Fatalf("Send over a connection the server closed err = %v, want a redial", err)
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}
}

func TestConcurrentSendsOverPool(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL()+"&pool=3")
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.Send(context.Background(), message(fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("kw.%d@keyward", i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Send err = %v", err)
		}
	}
	got := srv.WaitMessages(t, n, 10*time.Second)
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.MessageID] = true
	}
	if len(seen) != n {
		t.Errorf("got %d distinct messages, want %d", len(seen), n)
	}
	if sessions := srv.Connections(); sessions > 3 {
		t.Errorf("connections = %d, want at most the pool size 3", sessions)
	}
}

func TestSendCancelledContext(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Send(ctx, message("ops@example.com", "kw.1@keyward"))
	if err == nil || mail.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context err = %v, want transient context.Canceled", err)
	}
}

func TestSendAfterClose(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL())
	if _, err := s.Send(context.Background(), message("ops@example.com", "kw.1@keyward")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close err = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close err = %v", err)
	}
	if _, err := s.Send(context.Background(), message("ops@example.com", "kw.2@keyward")); !errors.Is(err, mail.ErrClosed) {
		t.Errorf("Send after Close err = %v, want ErrClosed", err)
	}
}

func TestInvalidMessages(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, srv.URL())
	dir := t.TempDir()
	sink, err := mail.NewFileSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]func(m *mail.Message){
		"empty To":              func(m *mail.Message) { m.To = "" },
		"two To":                func(m *mail.Message) { m.To = "a@example.com, b@example.com" },
		"unparsable To":         func(m *mail.Message) { m.To = "not an address" },
		"CRLF in To":            func(m *mail.Message) { m.To = "a@example.com\r\nBcc: evil@example.com" },
		"LF in To":              func(m *mail.Message) { m.To = "a@example.com\nBcc: evil@example.com" },
		"CRLF in Subject":       func(m *mail.Message) { m.Subject = "hi\r\nBcc: evil@example.com" },
		"CR in Subject":         func(m *mail.Message) { m.Subject = "hi\rBcc: evil@example.com" },
		"LF in header value":    func(m *mail.Message) { m.Headers["X-Keyward-Event"] = "x\nBcc: evil@example.com" },
		"CRLF in header name":   func(m *mail.Message) { m.Headers["X-A\r\nBcc"] = "evil@example.com" },
		"reserved header":       func(m *mail.Message) { m.Headers["bcc"] = "evil@example.com" },
		"empty From":            func(m *mail.Message) { m.From = "" },
		"CRLF in From":          func(m *mail.Message) { m.From = "k@example.com\r\nBcc: evil@example.com" },
		"CRLF in MessageID":     func(m *mail.Message) { m.MessageID = "a@b\r\nBcc: evil@example.com" },
		"MessageID without @":   func(m *mail.Message) { m.MessageID = "abc" },
		"MessageID with spaces": func(m *mail.Message) { m.MessageID = "a b@c" },
		"no body":               func(m *mail.Message) { m.Text, m.HTML = "", "" },
	}
	for name, mutate := range tests {
		m := message("ops@example.com", "kw.1@keyward")
		mutate(m)
		for _, sender := range []mail.Sender{s, sink} {
			_, err := sender.Send(context.Background(), m)
			if !errors.Is(err, mail.ErrInvalidMessage) || !mail.IsPermanent(err) {
				t.Errorf("%s: %T.Send err = %v, want ErrInvalidMessage", name, sender, err)
			}
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server got %d messages, want 0", n)
	}
	if err := (&mail.Message{}).Validate(); !errors.Is(err, mail.ErrInvalidMessage) {
		t.Errorf("Validate(empty) = %v, want ErrInvalidMessage", err)
	}
}

func TestIsPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{context.DeadlineExceeded, false},
		{mail.ErrInvalidMessage, true},
		{fmt.Errorf("notify: %w", mail.ErrInvalidMessage), true},
		{&mail.DeliveryError{Op: "rcpt to", Code: 550, Permanent: true, Err: errors.New("550")}, false}, // only the classifier sets the sentinel
		{mail.ErrAuth, false},
		{mail.ErrRejected, true},
	}
	for _, tt := range tests {
		if got := mail.IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestSendWithoutTLSToLoopback(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithoutTLS())
	s := newSender(t, srv, srv.URL())
	if s.Config().TLS != mail.TLSNone {
		t.Fatalf("TLS = %q, want none", s.Config().TLS)
	}
	if _, err := s.Send(context.Background(), message("ops@example.com", "kw.plain@keyward")); err != nil {
		t.Fatalf("Send err = %v", err)
	}
	srv.WaitMessages(t, 1, 5*time.Second)
}

// STARTTLS is mandatory: a server that does not offer it gets nothing, and
// neither does one whose certificate is not trusted. Both are transient
// (the configuration or the server needs fixing, the message is fine).
func TestTLSFailuresAreTransient(t *testing.T) {
	plain := smtptest.Start(t, smtptest.WithoutTLS())
	s := newSender(t, plain, strings.Replace(plain.URL(), "tls=none", "tls=starttls", 1))
	_, err := s.Send(context.Background(), message("ops@example.com", "kw.1@keyward"))
	if err == nil || mail.IsPermanent(err) {
		t.Errorf("Send to a server without STARTTLS err = %v, want transient", err)
	}

	srv := smtptest.Start(t)
	cfg, _ := mail.ParseURL(srv.URL())
	untrusting, err := mail.NewSMTP(cfg) // system roots: the self-signed cert fails
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	_, err = untrusting.Send(context.Background(), message("ops@example.com", "kw.1@keyward"))
	if err == nil || mail.IsPermanent(err) || errors.Is(err, mail.ErrAuth) {
		t.Errorf("Send with an untrusted certificate err = %v, want transient", err)
	}
	if n := len(plain.Messages()) + len(srv.Messages()); n != 0 {
		t.Errorf("servers got %d messages, want 0", n)
	}
}

func TestNewSMTPRejectsInvalidConfig(t *testing.T) {
	if _, err := mail.NewSMTP(mail.Config{Host: "mail.example.com", Port: 587, TLS: mail.TLSNone, Username: "u", Password: "p", Auth: mail.AuthPlain, PoolSize: 1}); err == nil {
		t.Error("NewSMTP(tls=none with a password to a remote host) err = nil")
	}
	if _, err := mail.NewSMTP(mail.Config{Host: "h", Port: 587, TLS: mail.TLSStartTLS, PoolSize: 1}, mail.WithTimeout(0)); err == nil {
		t.Error("NewSMTP(timeout 0) err = nil")
	}
}
