package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/devtls"
)

func startDevTLS(t *testing.T, dir string) *cli.Dev {
	t.Helper()
	d, err := cli.StartDev(context.Background(), cli.DevOptions{DataDir: dir, Port: 0, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	registerDev(t, d)
	return d
}

// runEnv runs the keyward command with exactly the environment env.
func runEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Main(ctx, args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	return result{code, out.String(), errb.String()}
}

// assertPlaintextRefused speaks NATS without TLS to the server at rawURL:
// its INFO must demand TLS and the connection must end without a PONG.
func assertPlaintextRefused(t *testing.T, rawURL string) {
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

// keyward dev --tls: the CLI and every worker of the stack work over TLS
// with the CA and their credentials; a plaintext client and a client that
// does not trust the CA are refused; a restart keeps the CA.
func TestDevTLS(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	d := startDevTLS(t, dir)
	if !strings.HasPrefix(d.URL(), "tls://") {
		t.Fatalf("URL() = %s, want tls://", d.URL())
	}
	if want := filepath.Join(dir, "tls", devtls.CAFile); d.CAFile != absPath(t, want) {
		t.Fatalf("CAFile = %s, want %s", d.CAFile, want)
	}
	caPEM, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}

	// End to end with the CA (NATS_CA) and the credentials: the put goes
	// through the encryptor, the get through the key broker, each on its
	// own TLS connection.
	src := filepath.Join(tmp, "hello.txt")
	os.WriteFile(src, []byte("hello over tls\n"), 0o644)
	if r := run(t, d.URL(), "", "asset", "put", "--tenant", "demo", src); r.code != 0 || !strings.Contains(r.stdout, "mode        customer (covered)") {
		t.Fatalf("put over TLS: %+v", r)
	}
	if r := run(t, d.URL(), "", "asset", "get", "--tenant", "demo", "hello.txt"); r.code != 0 || r.stdout != "hello over tls\n" {
		t.Fatalf("get over TLS: %+v", r)
	}
	// From the directory of keyward dev, without NATS_CA: the CLI trusts
	// <creds-dir>/../tls/ca.pem, also with a nats:// URL (the README's
	// default), which the client upgrades because the server requires TLS.
	plainScheme := strings.Replace(d.URL(), "tls://", "nats://", 1)
	r := runEnv(t, map[string]string{"KEYWARD_CREDS_DIR": d.CredsDir}, "--nats-url", plainScheme, "asset", "get", "--tenant", "demo", "hello.txt")
	if r.code != 0 || r.stdout != "hello over tls\n" {
		t.Fatalf("get with the default CA: %+v", r)
	}

	// A plaintext client is refused.
	assertPlaintextRefused(t, d.URL())

	// A client with credentials that does not trust the CA is refused.
	creds, err := access.ClientOptions(d.Creds(cli.IdentityOperator))
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	_, err = nats.Connect(d.URL(), append(creds, nats.Timeout(5*time.Second), nats.NoReconnect())...)
	if !errors.As(err, &unknown) {
		t.Fatalf("Connect without the CA err = %v, want x509.UnknownAuthorityError", err)
	}
	other, err := devtls.Ensure(filepath.Join(tmp, "other-ca"), devtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = nats.Connect(d.URL(), append(creds, nats.RootCAs(other.CAPath), nats.Timeout(5*time.Second), nats.NoReconnect())...)
	if !errors.As(err, &unknown) {
		t.Fatalf("Connect trusting another CA err = %v, want x509.UnknownAuthorityError", err)
	}
	// The CLI given another CA says what to do.
	r = runEnv(t, map[string]string{"NATS_CA": other.CAPath}, "--nats-url", d.URL(), "--nats-creds", d.Creds(cli.IdentityOperator), "status")
	if r.code != 1 || !strings.Contains(r.stderr, "--nats-ca") {
		t.Fatalf("status trusting another CA: %+v", r)
	}

	// A restart keeps the CA: the same ca.pem, clients that trust it keep
	// working, and the data is there.
	d.Stop()
	d2 := startDevTLS(t, dir)
	if got, err := os.ReadFile(d2.CAFile); err != nil || !bytes.Equal(got, caPEM) {
		t.Fatalf("ca.pem changed across a restart (%v)", err)
	}
	if r := run(t, d2.URL(), "", "asset", "get", "--tenant", "demo", "hello.txt"); r.code != 0 || r.stdout != "hello over tls\n" {
		t.Fatalf("get after restart: %+v", r)
	}
}

// --nats-ca implies TLS: against a plaintext stack the CLI refuses to
// connect rather than fall back.
func TestNATSCAImpliesTLS(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	ca, err := devtls.Ensure(filepath.Join(t.TempDir(), "tls"), devtls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, d.URL(), "", "--nats-ca", ca.CAPath, "status")
	if r.code != 1 || !strings.Contains(r.stderr, "requires TLS") {
		t.Fatalf("status with --nats-ca against a plaintext server: %+v", r)
	}
	if r := run(t, d.URL(), "", "--nats-ca", filepath.Join(t.TempDir(), "missing.pem"), "status"); r.code != 2 {
		t.Fatalf("status with a missing --nats-ca: %+v", r)
	}
	// A dev CA left next to the creds dir by an earlier --tls run does not
	// force TLS on a plaintext server.
	tlsDir := filepath.Join(filepath.Dir(d.CredsDir), "tls")
	if _, err := devtls.Ensure(tlsDir, devtls.Options{}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, d.URL(), "", "status"); r.code != 0 {
		t.Fatalf("status with a stale dev CA against a plaintext server: %+v", r)
	}
}

// bannerBuffer is a bytes.Buffer safe for one writer and one reader.
type bannerBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *bannerBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *bannerBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The banner of `keyward dev --tls` says TLS is on, where the CA is, and
// gives the nats CLI its --tlsca.
func TestDevTLSBanner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bannerBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"dev", "--tls", "--data-dir", dir, "--port", "0", "--http-addr", "", "--log-level", "error"},
			strings.NewReader(""), &out, &errb, func(string) string { return "" })
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("keyward dev did not stop")
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case code := <-done:
			t.Fatalf("keyward dev --tls exited %d: %s%s", code, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 60s: %s%s", out.String(), errb.String())
		}
	}
	banner := out.String()
	ca := filepath.Join(absPath(t, dir), "tls", devtls.CAFile)
	for _, want := range []string{
		"  NATS        tls://127.0.0.1:",
		"TLS on, required of every client",
		ca,
		"nats CLI: --tlsca " + ca + " --creds ",
		"--inbox-prefix " + access.InboxPrefix(cli.IdentityOperator),
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
