package smtptest_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/keyward/keyward/pkg/mail/smtptest"
)

func dial(t *testing.T, srv *smtptest.Server) *smtp.Client {
	t.Helper()
	cfg := srv.TLSConfig()
	cfg.ServerName = "127.0.0.1"
	c, err := smtp.DialStartTLS(srv.Addr, cfg)
	if err != nil {
		t.Fatalf("DialStartTLS(%s) err = %v", srv.Addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestServer(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithPassword("pw"))
	if want := "smtp://keyward:pw@" + srv.Addr + "?tls=starttls"; srv.URL() != want {
		t.Errorf("URL() = %q, want %q", srv.URL(), want)
	}

	c := dial(t, srv)
	if err := c.Mail("a@example.com", nil); code(err) != 530 {
		t.Errorf("MAIL before AUTH err = %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "keyward", "wrong")); code(err) != 535 {
		t.Errorf("AUTH with a wrong password err = %v, want 535", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "keyward", "pw")); err != nil {
		t.Fatalf("AUTH err = %v", err)
	}

	srv.RejectRecipient("Gone@example.com")
	srv.FailTemporarily(true)
	if err := c.Mail("a@example.com", nil); code(err) != 451 {
		t.Errorf("MAIL while failing temporarily err = %v, want 451", err)
	}
	srv.FailTemporarily(false)
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatalf("MAIL err = %v", err)
	}
	if err := c.Rcpt("gone@example.com", nil); code(err) != 550 {
		t.Errorf("RCPT to a rejected address err = %v, want 550", err)
	}
	if err := c.Rcpt("b@example.com", nil); err != nil {
		t.Fatalf("RCPT err = %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: =?UTF-8?q?h=C3=A9?=\r\nMessage-ID: <x@y>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naMOpbGxv\r\nCndvcmxk\r\n"
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("DATA err = %v", err)
	}
	got := srv.WaitMessages(t, 1, 5*time.Second)[0]
	if got.ParseErr != nil || got.Subject != "hé" || got.MessageID != "x@y" || got.Text != "héllo\nworld" ||
		got.From != "a@example.com" || strings.Join(got.To, ",") != "b@example.com" {
		t.Errorf("received %+v", got)
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("Connections() = %d, want 1", n)
	}

	srv.Stop()
	if _, err := smtp.DialStartTLS(srv.Addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Error("dial after Stop err = nil, want refused")
	}
	srv.Restart()
	c2 := dial(t, srv)
	if err := c2.Auth(sasl.NewPlainClient("", "keyward", "pw")); err != nil {
		t.Fatalf("AUTH after Restart err = %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("messages after Restart = %d, want the 1 kept", n)
	}
}
