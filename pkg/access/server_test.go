package access

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/keyward/keyward/pkg/access/accesstest"
	"github.com/keyward/keyward/pkg/natsembed"
)

// testServer is a real nats-server running the generated configuration.
type testServer struct {
	auth  *Authority
	srv   *natsembed.Server
	creds string // dir of creds files
}

func startTestServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	a, err := Open(filepath.Join(dir, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := a.ServerConfig(ServerConfigOptions{ResolverDir: filepath.Join(dir, "jwt")})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "js"), ConfigFile: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &testServer{auth: a, srv: srv, creds: filepath.Join(dir, "creds")}
}

// connect issues a credential for id and connects with it; errs receives
// the connection's asynchronous errors (permission violations).
func (s *testServer) connect(t *testing.T, id Identity) (*nats.Conn, chan error) {
	t.Helper()
	paths, err := s.auth.EnsureCreds(s.creds, []Identity{id})
	if err != nil {
		t.Fatal(err)
	}
	return s.connectCreds(t, paths[id.Name])
}

func (s *testServer) connectCreds(t *testing.T, path string) (*nats.Conn, chan error) {
	t.Helper()
	opts, err := ClientOptions(path)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	nc, err := nats.Connect(s.srv.URL(), opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", path, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// observer connects a test-only user of acc allowed everything: it sees
// what a role publishes and publishes what a role subscribes to.
func (s *testServer) observer(t *testing.T, acc Account) *nats.Conn {
	t.Helper()
	tok, seed, err := accesstest.ObserverCredentials(s.auth.accounts[acc])
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.srv.URL(), nats.UserJWTAndSeed(tok, seed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestNoCredentialsRefused(t *testing.T) {
	s := startTestServer(t)
	nc, err := nats.Connect(s.srv.URL(), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
}

func TestForgedCredentialsRefused(t *testing.T) {
	s := startTestServer(t)
	// A user signed by an account key the operator never issued.
	rogue, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	tok, _ := uc.Encode(rogue)
	seed, _ := user.Seed()
	if nc, err := nats.Connect(s.srv.URL(), nats.UserJWTAndSeed(tok, string(seed)), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected with a user of an unknown account")
	}
}

func TestRevokedCredentialRefusedOnRunningServer(t *testing.T) {
	s := startTestServer(t)
	reader := Identity{Name: "reader-1", Role: RoleReader, Services: []string{"*"}, Purposes: []string{"playback"}}
	paths, err := s.auth.EnsureCreds(s.creds, []Identity{reader, {Name: "sys", Role: RoleSystem}})
	if err != nil {
		t.Fatal(err)
	}
	nc, _ := s.connectCreds(t, paths["reader-1"])
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	nc.SetReconnectHandler(nil)
	sys, _ := s.connectCreds(t, paths["sys"])

	acc, accJWT, err := s.auth.Revoke("reader-1")
	if err != nil {
		t.Fatal(err)
	}
	if acc != AccountKeyward {
		t.Fatalf("Revoke account = %s, want %s", acc, AccountKeyward)
	}
	if err := PushAccount(t.Context(), sys, accJWT); err != nil {
		t.Fatal(err)
	}
	// The server drops the revoked user's live connection...
	deadline := time.After(10 * time.Second)
	for nc.IsConnected() {
		select {
		case <-deadline:
			t.Fatal("revoked user still connected 10 s after the push")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// ...and refuses it from now on.
	opts, _ := ClientOptions(paths["reader-1"])
	if c, err := nats.Connect(s.srv.URL(), append(opts, nats.MaxReconnects(0))...); err == nil {
		c.Close()
		t.Fatal("revoked credential connected again")
	}
	// A new credential for the same identity works.
	if _, err := s.auth.EnsureCreds(s.creds, []Identity{reader}); err != nil {
		t.Fatal(err)
	}
	s.connectCreds(t, CredsPath(s.creds, "reader-1"))
}
