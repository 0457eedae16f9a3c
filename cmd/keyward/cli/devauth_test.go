package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/access/accesstest"
)

// observe connects a test-only user of the dev stack's KEYWARD account that
// may publish and subscribe to anything: the tests' eyes (event
// subscriptions, direct writes that simulate a role). The pipeline itself
// never uses it: every worker runs as its own least-privilege identity.
// It is signed here with the account's seed from the stack's authority
// directory, as anyone holding that directory could; no product code
// issues such a user.
func observe(t testing.TB, d *cli.Dev) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	if d.Auth == nil {
		return d.NC, d.JS
	}
	seed, err := os.ReadFile(filepath.Join(d.Auth.Dir(), "accounts", string(access.AccountKeyward)+".nk"))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	tok, useed, err := accesstest.ObserverCredentials(acc)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(d.URL(), nats.UserJWTAndSeed(tok, useed), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// as connects as one of the dev stack's identities.
func as(t testing.TB, d *cli.Dev, identity string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := d.Connect(identity)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
