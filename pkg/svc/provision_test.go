package svc_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed"
	"github.com/keyward/keyward/pkg/svc"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With credentials a worker does not provision (its role may not): it
// waits, saying why, until the provisioner has created the streams.
func TestWaitProvisionedWithCredentialsWaitsForTheProvisioner(t *testing.T) {
	dir := t.TempDir()
	auth, err := access.Open(filepath.Join(dir, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := auth.ServerConfig(access.ServerConfigOptions{ResolverDir: filepath.Join(dir, "jwt")})
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "js"), ConfigFile: confPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	creds, err := auth.EnsureCreds(filepath.Join(dir, "creds"), []access.Identity{
		{Name: "notifier", Role: access.RoleNotifier}, {Name: "provisioner", Role: access.RoleProvisioner},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := svc.Common{NATSURL: srv.URL(), NATSCreds: creds["notifier"], Replicas: 1}
	nc, js, err := svc.Connect(c, "test-notifier", slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.WaitProvisioned(ctx, c, js, slog.New(slog.NewTextHandler(logs, nil))) }()

	// It says what it waits for...
	for !strings.Contains(logs.String(), "keyward provision") {
		select {
		case err := <-done:
			t.Fatalf("WaitProvisioned returned %v before anything was provisioned", err)
		case <-ctx.Done():
			t.Fatalf("no log line naming keyward provision: %s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// ...and returns once the provisioner has provisioned.
	opts, err := access.ClientOptions(creds["provisioner"])
	if err != nil {
		t.Fatal(err)
	}
	pnc, err := nats.Connect(srv.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer pnc.Close()
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Provision(ctx, pjs, events.ProvisionOptions{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitProvisioned after provisioning: %v", err)
	}
}
