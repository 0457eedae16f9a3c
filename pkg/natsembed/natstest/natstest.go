// Package natstest starts a real embedded nats-server with JetStream for a
// test, with Keyward's streams and buckets provisioned. Never a fake broker.
package natstest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed"
)

// Env is a running server plus a connection to it.
type Env struct {
	Server *natsembed.Server
	URL    string
	NC     *nats.Conn
	JS     jetstream.JetStream
}

// Option tunes Start.
type Option func(*config)

type config struct {
	noProvision bool
	storeDir    string
}

// WithoutProvisioning leaves the server empty (for provisioning tests).
func WithoutProvisioning() Option { return func(c *config) { c.noProvision = true } }

// WithStoreDir uses dir for JetStream data instead of a fresh t.TempDir().
func WithStoreDir(dir string) Option { return func(c *config) { c.storeDir = dir } }

// Start starts a server on a random loopback port, provisions Keyward's
// streams and buckets (unless told not to), and registers cleanup.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.storeDir == "" {
		c.storeDir = t.TempDir()
	}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: c.storeDir, ServerName: "natstest"})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	e := &Env{Server: srv, URL: srv.URL()}
	e.NC, e.JS = e.Connect(t)
	if !c.noProvision {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := events.Provision(ctx, e.JS, events.ProvisionOptions{Replicas: 1}); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	return e
}

// Connect opens another connection (closed at cleanup) that reconnects
// forever, as a worker's would.
func (e *Env) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(e.URL,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.Name(t.Name()),
	)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// StreamMsgs returns every message of stream whose subject matches filter
// (NATS wildcards '*' and '>'), in stream order.
func (e *Env) StreamMsgs(t testing.TB, stream, filter string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := e.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if SubjectMatches(filter, m.Subject) {
			out = append(out, m)
		}
	}
	return out
}

// SubjectMatches reports whether subject matches filter, with NATS
// wildcards: '*' one token, '>' one or more trailing tokens.
func SubjectMatches(filter, subject string) bool {
	f, sub := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(sub) > i
		}
		if i >= len(sub) || (tok != "*" && tok != sub[i]) {
			return false
		}
	}
	return len(f) == len(sub)
}
