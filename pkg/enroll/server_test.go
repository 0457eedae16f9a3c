package enroll_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/rpc/rpctest"
	"github.com/keyward/keyward/pkg/tenant"
)

// gatedKMS is localkms whose GenerateDataKey — the first call of every
// enrollment's probe — waits until release is closed, counting the calls
// waiting at once.
type gatedKMS struct {
	kms.Provider
	release       chan struct{}
	running, peak atomic.Int64
}

func (g *gatedKMS) GenerateDataKey(ctx context.Context, key kms.KeyURI, ec kms.EncryptionContext) (*kms.DataKey, error) {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Provider.GenerateDataKey(ctx, key, ec)
}

// TestEnrollmentServiceIsAMicroService: keyward-enroll answers $SRV PING,
// INFO and STATS on the connection it serves on (not the one its JetStream
// context uses), counts requests and refusals, and a refusal carries its
// code in micro's error headers next to the unchanged Response body.
func TestEnrollmentServiceIsAMicroService(t *testing.T) {
	env := natstest.Start(t)
	serveNC, _ := env.Connect(t)
	store, err := tenant.OpenStore(context.Background(), env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	srv := enroll.NewServer(serveNC, env.JS, store, kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New())), platform.Default(),
		enroll.AllowLocalKeys(true), enroll.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	if err := srv.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}

	info := rpctest.Info(t, env.NC, enroll.ServiceName)
	if len(info.Endpoints) != 1 {
		t.Fatalf("INFO %+v", info)
	}
	if ep := info.Endpoints[0]; ep.Subject != events.SubjectKeyEnrollAll || ep.QueueGroup != enroll.QueueGroup || ep.Metadata["concurrency"] != fmt.Sprint(enroll.DefaultConcurrency) {
		t.Fatalf("INFO endpoint %+v", ep)
	}
	if ping := rpctest.Ping(t, env.NC, enroll.ServiceName); ping.Name != enroll.ServiceName || ping.Version == "" {
		t.Fatalf("PING %+v", ping)
	}

	key := filepath.Join(t.TempDir(), "acme.key")
	if err := localkms.CreateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	client := enroll.NewClient(env.NC, 10*time.Second)
	if _, err := client.Add(context.Background(), enroll.Request{TenantID: "acme", KeyURI: "localkms://" + key}); err != nil {
		t.Fatal(err)
	}
	// The same key again is a conflict: body and headers say so.
	body, _ := json.Marshal(enroll.Request{TenantID: "acme", KeyURI: "localkms://" + key})
	m, err := env.NC.RequestMsg(&nats.Msg{Subject: events.SubjectKeyEnroll("acme"), Data: body}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var resp enroll.Response
	if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Error == nil || resp.Error.Code != enroll.CodeConflict {
		t.Fatalf("reply %s: %v", m.Data, err)
	}
	if m.Header.Get(micro.ErrorCodeHeader) != enroll.CodeConflict || m.Header.Get(micro.ErrorHeader) != resp.Error.Message {
		t.Fatalf("error headers %v, want %s and the message", m.Header, enroll.CodeConflict)
	}

	rpctest.AwaitStats(t, env.NC, enroll.ServiceName, func(e *micro.EndpointStats, d rpc.Stats) error {
		if e.NumRequests != 2 || d.Requests != 2 || d.Errors != 1 || d.ErrorsByCode[enroll.CodeConflict] != 1 || d.Concurrency != enroll.DefaultConcurrency {
			return fmt.Errorf("STATS %+v data %+v", e, d)
		}
		return nil
	})
}

// TestEnrollmentConcurrencyIsBounded: with every probe held in the KMS,
// exactly DefaultConcurrency enrollments run at once and the others wait;
// a Stop meanwhile loses none of them: every one is answered, enrolled.
func TestEnrollmentConcurrencyIsBounded(t *testing.T) {
	const total = 3 * enroll.DefaultConcurrency
	env := natstest.Start(t)
	store, err := tenant.OpenStore(context.Background(), env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	gate := &gatedKMS{Provider: localkms.New(), release: make(chan struct{})}
	srv := enroll.NewServer(env.NC, env.JS, store, gate, platform.Default(),
		enroll.AllowLocalKeys(true), enroll.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	cnc, _ := env.Connect(t)
	client := enroll.NewClient(cnc, 60*time.Second)
	results := make(chan error, total)
	for i := range total {
		tenantID := fmt.Sprintf("t%02d", i)
		key := filepath.Join(dir, tenantID+".key")
		if err := localkms.CreateKeyFile(key); err != nil {
			t.Fatal(err)
		}
		go func() {
			resp, err := client.Add(context.Background(), enroll.Request{TenantID: tenantID, KeyURI: "localkms://" + key})
			if err == nil && (resp.Key == nil || resp.Revision == 0) {
				err = fmt.Errorf("%s: reply %+v", tenantID, resp)
			}
			results <- err
		}()
	}
	rpctest.CheckFor(t, 20*time.Second, func() error {
		if n := gate.running.Load(); n != enroll.DefaultConcurrency {
			return fmt.Errorf("%d enrollments in the KMS, want %d", n, enroll.DefaultConcurrency)
		}
		return nil
	})
	// Every request is sent, and routed to the server, before Stop.
	rpctest.CheckFor(t, 20*time.Second, func() error {
		if n := cnc.Stats().OutMsgs; n < total {
			return fmt.Errorf("%d of %d requests sent", n, total)
		}
		return nil
	})
	if err := cnc.Flush(); err != nil {
		t.Fatal(err)
	}

	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	// Once the service is gone from $SRV (its endpoint drained first),
	// let the KMS answer.
	rpctest.CheckFor(t, 20*time.Second, func() error {
		ping, err := micro.ControlSubject(micro.PingVerb, enroll.ServiceName, "")
		if err != nil {
			return err
		}
		if _, err := env.NC.Request(ping, nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("PING after Stop: %v, want no responders", err)
		}
		return nil
	})
	close(gate.release)
	for range total {
		select {
		case err := <-results:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("enrollments not answered")
		}
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not return")
	}
	if p := gate.peak.Load(); p != enroll.DefaultConcurrency {
		t.Fatalf("%d enrollments ran at once, want at most (and here exactly) %d", p, enroll.DefaultConcurrency)
	}
}
