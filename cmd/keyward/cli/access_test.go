package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/access"
)

// keyward access issues a reader, lists it, and revokes it: the running dev
// server drops its connection and refuses it from then on.
func TestAccessIssueListRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	authDir := filepath.Join(dir, "auth")

	// Without credentials, nothing connects.
	if nc, err := nats.Connect(d.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected to keyward dev without credentials")
	}

	r := run(t, d.URL(), "", "access", "--auth-dir", authDir, "issue", "viewer-1", "--role", "reader", "--services", "cloud_recording", "--purposes", "playback")
	if r.code != 0 {
		t.Fatalf("access issue: %+v", r)
	}
	creds := access.CredsPath(d.CredsDir, "viewer-1")
	if !strings.Contains(r.stdout, creds) {
		t.Fatalf("issue output %q does not name %s", r.stdout, creds)
	}
	if r := run(t, d.URL(), "", "access", "--auth-dir", authDir, "issue", "Bad Name", "--role", "reader"); r.code != 2 || !strings.Contains(r.stderr, "name") {
		t.Fatalf("issue with a bad name: %+v", r)
	}
	if r := run(t, d.URL(), "", "access", "--auth-dir", authDir, "issue", "x", "--role", "wizard"); r.code != 2 || !strings.Contains(r.stderr, "reader") {
		t.Fatalf("issue with an unknown role: %+v", r)
	}
	r = run(t, d.URL(), "", "access", "--auth-dir", authDir, "list")
	if r.code != 0 || !strings.Contains(r.stdout, "viewer-1") || !strings.Contains(r.stdout, "services=cloud_recording purposes=playback") {
		t.Fatalf("access list: %+v", r)
	}

	opts, err := access.ClientOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(d.URL(), append(opts, nats.MaxReconnects(0))...)
	if err != nil {
		t.Fatalf("the issued credential does not connect: %v", err)
	}
	defer nc.Close()

	if r := run(t, d.URL(), "", "access", "--auth-dir", authDir, "revoke", "viewer-1"); r.code != 0 {
		t.Fatalf("access revoke: %+v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the revoked credential is still connected 10 s after the revoke")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, err := nats.Connect(d.URL(), append(opts, nats.MaxReconnects(0))...); err == nil {
		c.Close()
		t.Fatal("the revoked credential connected again")
	}
	if r := run(t, d.URL(), "", "access", "--auth-dir", authDir, "list"); !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("access list after revoke: %+v", r)
	}
	if r := run(t, d.URL(), "", "access", "--auth-dir", authDir, "revoke", "nobody"); r.code == 0 {
		t.Fatalf("revoking an unknown identity: %+v", r)
	}
}
