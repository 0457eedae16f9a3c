package natsembed_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/devtls"
	"github.com/keyward/keyward/pkg/natsembed"
)

func startTLS(t *testing.T, o natsembed.Options) (*natsembed.Server, *devtls.Bundle) {
	t.Helper()
	b, err := devtls.Ensure(filepath.Join(t.TempDir(), "tls"), devtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o.StoreDir = t.TempDir()
	o.TLS = b.ServerConfig()
	srv, err := natsembed.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, b
}

// plaintextRefused speaks the NATS protocol without TLS to the server at
// rawURL: the server's INFO must demand TLS, and the connection must end
// without a PONG.
func plaintextRefused(t *testing.T, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO = %q, %v; want tls_required", info, err)
	}
	if _, err := io.WriteString(c, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a plaintext connection open (read %q)", rest)
	}
	if strings.Contains(string(rest), "PONG") {
		t.Fatalf("the server answered a plaintext client: %q", rest)
	}
}

func TestTLSRequired(t *testing.T) {
	srv, b := startTLS(t, natsembed.Options{})
	if !strings.HasPrefix(srv.URL(), "tls://") || !srv.TLS() {
		t.Fatalf("URL() = %s, TLS() = %v; want tls:// and true", srv.URL(), srv.TLS())
	}
	nc, err := nats.Connect(srv.URL(), nats.RootCAs(b.CAPath), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("Connect with the CA err = %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	st, err := nc.TLSConnectionState()
	if err != nil || st.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x (%v), want ≥ 1.2", st.Version, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream over TLS: %v", err)
	}

	plaintextRefused(t, srv.URL())

	// nats.go upgrades to TLS when the server requires it; without the CA
	// it does not trust the certificate.
	_, err = nats.Connect(strings.Replace(srv.URL(), "tls://", "nats://", 1), nats.Timeout(5*time.Second), nats.NoReconnect())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Connect without the CA err = %v, want x509.UnknownAuthorityError", err)
	}

	// TLS 1.1 is refused.
	old := &tls.Config{RootCAs: b.Pool(), MaxVersion: tls.VersionTLS11}
	if nc, err := nats.Connect(srv.URL(), nats.Secure(old), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a TLS 1.1 client connected")
	}

	// A restart keeps TLS.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	plaintextRefused(t, srv.URL())
	nc2, err := nats.Connect(srv.URL(), nats.RootCAs(b.CAPath), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("Connect after restart err = %v", err)
	}
	nc2.Close()
}

// TLS from Options applies on top of a configuration file: the file's
// authorization still holds.
func TestTLSOverConfigFile(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(conf, []byte("authorization { user: kw, password: s3cret }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, b := startTLS(t, natsembed.Options{ConfigFile: conf})
	if _, err := nats.Connect(srv.URL(), nats.RootCAs(b.CAPath), nats.Timeout(5*time.Second)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("Connect without the password err = %v, want %v", err, nats.ErrAuthorization)
	}
	nc, err := nats.Connect(srv.URL(), nats.RootCAs(b.CAPath), nats.UserInfo("kw", "s3cret"), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("Connect with the CA and the password err = %v", err)
	}
	nc.Close()
	plaintextRefused(t, srv.URL())
}

// Without TLS the server stays plaintext (nats://).
func TestNoTLS(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if !strings.HasPrefix(srv.URL(), "nats://") || srv.TLS() {
		t.Fatalf("URL() = %s, TLS() = %v", srv.URL(), srv.TLS())
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
