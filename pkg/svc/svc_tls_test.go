package svc_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/devtls"
	"github.com/keyward/keyward/pkg/natsembed"
	"github.com/keyward/keyward/pkg/svc"
)

// recordsTo is a slog handler that sends every record's message and error
// attribute to ch.
type recordsTo chan logLine

type logLine struct {
	level slog.Level
	msg   string
	err   error
}

func (h recordsTo) Enabled(context.Context, slog.Level) bool { return true }
func (h recordsTo) Handle(_ context.Context, r slog.Record) error {
	l := logLine{level: r.Level, msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok {
			l.err = e
		}
		return true
	})
	select {
	case h <- l:
	default:
	}
	return nil
}
func (h recordsTo) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordsTo) WithGroup(string) slog.Handler      { return h }

func tlsServer(t *testing.T) (*natsembed.Server, *devtls.Bundle) {
	t.Helper()
	b, err := devtls.Ensure(filepath.Join(t.TempDir(), "tls"), devtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir(), TLS: b.ServerConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, b
}

// awaitTLSFailure waits for Connect's log of a TLS failure wrapping want.
func awaitTLSFailure(t *testing.T, logs recordsTo, want error) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case l := <-logs:
			if l.level == slog.LevelError && errors.Is(l.err, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no TLS failure wrapping %v was logged", want)
		}
	}
}

func TestConnectWithNATSCA(t *testing.T) {
	srv, b := tlsServer(t)
	log := slog.New(recordsTo(make(chan logLine, 16)))
	nc, js, err := svc.Connect(svc.Common{NATSURL: srv.URL(), NATSCA: b.CAPath}, "svc-test", log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream over TLS: %v", err)
	}
	if st, err := nc.TLSConnectionState(); err != nil || !st.HandshakeComplete {
		t.Fatalf("TLSConnectionState() = %+v, %v; want a completed handshake", st, err)
	}
}

func TestConnectNATSCAUnreadable(t *testing.T) {
	log := slog.New(recordsTo(make(chan logLine, 16)))
	_, _, err := svc.Connect(svc.Common{NATSURL: nats.DefaultURL, NATSCA: filepath.Join(t.TempDir(), "missing.pem")}, "svc-test", log)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Connect with a missing CA file err = %v, want fs.ErrNotExist", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	if _, _, err := svc.Connect(svc.Common{NATSURL: nats.DefaultURL, NATSCA: notPEM}, "svc-test", log); err == nil {
		t.Fatal("Connect with a CA file without a certificate: err = nil")
	}
}

// A worker keeps retrying, so a TLS failure is not returned: it is logged,
// and the worker is not ready.
func TestConnectTLSFailuresAreLogged(t *testing.T) {
	srv, _ := tlsServer(t)
	other, err := devtls.Ensure(filepath.Join(t.TempDir(), "other"), devtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := recordsTo(make(chan logLine, 64))
	nc, _, err := svc.Connect(svc.Common{NATSURL: srv.URL(), NATSCA: other.CAPath}, "svc-test", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	awaitTLSFailure(t, logs, nats.ErrTLS)
	if err := svc.NATSReady(nc)(context.Background()); err == nil {
		t.Error("a connection that does not trust the server is ready")
	}

	// NATS_CA against a server without TLS.
	plain, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown()
	logs = recordsTo(make(chan logLine, 64))
	nc2, _, err := svc.Connect(svc.Common{NATSURL: plain.URL(), NATSCA: other.CAPath}, "svc-test", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	awaitTLSFailure(t, logs, nats.ErrSecureConnWanted)
}

func TestNATSCAFlag(t *testing.T) {
	var c svc.Common
	f := svc.NewFlags("test", func(k string) string {
		if k == "NATS_CA" {
			return "/etc/keyward/nats-ca.pem"
		}
		return ""
	}, io.Discard)
	c.Register(f, "test")
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.NATSCA != "/etc/keyward/nats-ca.pem" {
		t.Fatalf("NATSCA from NATS_CA = %q", c.NATSCA)
	}
	if err := f.Parse([]string{"-nats-ca", "ca.pem"}); err != nil || c.NATSCA != "ca.pem" {
		t.Fatalf("-nats-ca ca.pem: NATSCA = %q, %v", c.NATSCA, err)
	}
}
