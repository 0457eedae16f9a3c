package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/cmd/keyward/cli"
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

// A tenant admin changes its own tenant through the enrollment service and
// nothing else: another tenant's enrollment subject is refused by the
// server, and KW_TENANTS cannot be written directly.
func TestTenantAdminIsScopedToItsTenant(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	r := run(t, d.URL(), "", "dev", "key", "create", "--data-dir", dir, "demo-second")
	if r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	uri := strings.SplitN(r.stdout, "\n", 2)[0]
	own := d.Creds("admin-" + cli.DemoTenant)
	// Its own tenant: the request reaches the enrollment service, which
	// decides it on the tenant's state (demo has a primary: conflict), not
	// on who asks.
	r = run(t, d.URL(), "", "--nats-creds", own, "tenant", "key", "add", "--tenant", cli.DemoTenant, "--uri", uri)
	if r.code != 1 || !strings.Contains(r.stderr, "conflict") || strings.Contains(r.stderr, "not_authorized") {
		t.Fatalf("admin-demo adding a second primary to demo: %+v, want the enrollment service's conflict", r)
	}
	// Another tenant: the server refuses the publish; nothing is enrolled.
	r = run(t, d.URL(), "", "--nats-creds", own, "--timeout", "3s", "tenant", "key", "add", "--tenant", cli.DemoTenantAWS, "--uri", uri, "--role", "replica")
	if r.code == 0 {
		t.Fatalf("admin-demo changed demo-aws: %+v", r)
	}
	if r := run(t, d.URL(), "", "tenant", "key", "list", "--tenant", cli.DemoTenantAWS); r.code != 0 || strings.Contains(r.stdout, uri) {
		t.Fatalf("demo-aws keys after the refused add: %+v", r)
	}
	// Writing KW_TENANTS directly is refused by the server.
	opts, err := access.ClientOptions(own)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	nc, err := nats.Connect(d.URL(), append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("$KV.KW_TENANTS."+cli.DemoTenant, []byte(`{"tenant_id":"demo","recipients":["attacker@evil.example"]}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("direct KV write: %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a tenant admin's direct write to KW_TENANTS was not refused")
	}
}

// keyward provision runs as the provisioner; the operator's credential may
// not create or change streams.
func TestProvisionNeedsTheProvisioner(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	if r := run(t, d.URL(), "", "provision"); r.code != 0 || !strings.Contains(r.stdout, "provisioned") {
		t.Fatalf("provision: %+v", r)
	}
	if r := run(t, d.URL(), "", "--nats-creds", d.Creds(cli.IdentityOperator), "--timeout", "3s", "provision"); r.code == 0 {
		t.Fatalf("provision as the operator: %+v", r)
	}
	if r := run(t, d.URL(), "", "provision", "--replicas", "0"); r.code != 2 {
		t.Fatalf("provision --replicas 0: %+v", r)
	}
}
