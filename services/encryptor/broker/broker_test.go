package broker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/rpc/rpctest"
	"github.com/keyward/keyward/services/encryptor/broker"
)

// TestBrokerIsAMicroService: keyward-key-broker answers $SRV PING, INFO
// and STATS on the connection it serves on, and a refusal is the
// UnwrapResponse its clients decode, with micro's error headers carrying
// the same code; STATS count the requests and the refusals by code.
func TestBrokerIsAMicroService(t *testing.T) {
	env := natstest.Start(t, natstest.WithoutProvisioning())
	serveNC, _ := env.Connect(t)
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	seeds := kms.NewSeedCache(kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New())), kms.SeedCacheConfig{})
	srv, err := broker.New(serveNC, store, seeds, broker.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	info := rpctest.Info(t, env.NC, broker.ServiceName)
	if len(info.Endpoints) != 1 {
		t.Fatalf("INFO %+v", info)
	}
	if ep := info.Endpoints[0]; ep.Name != "unwrap" || ep.Subject != events.SubjectKeyUnwrapAll || ep.QueueGroup != broker.QueueGroup ||
		ep.Metadata["concurrency"] != fmt.Sprint(broker.DefaultConcurrency) || ep.Metadata["timeout"] != "5s" {
		t.Fatalf("INFO endpoint %+v", ep)
	}
	if ping := rpctest.Ping(t, env.NC, broker.ServiceName); ping.Name != broker.ServiceName {
		t.Fatalf("PING %+v", ping)
	}

	rcpt, err := keybroker.NewRecipient()
	if err != nil {
		t.Fatal(err)
	}
	valid, _ := json.Marshal(keybroker.UnwrapRequest{TenantID: "acme", AssetID: "rec-1", Prefix: []byte("x"), RecipientPublicKey: rcpt.PublicKey()})
	for _, c := range []struct {
		subject string
		body    []byte
		code    string
	}{
		{events.SubjectKeyUnwrap("acme"), valid, keybroker.CodeAssetNotFound},
		{events.SubjectKeyUnwrap("globex"), valid, keybroker.CodeTenantMismatch},
		{events.SubjectKeyUnwrap("acme"), []byte("{"), keybroker.CodeInvalidRequest},
	} {
		m, err := env.NC.RequestMsg(&nats.Msg{Subject: c.subject, Data: c.body}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var resp keybroker.UnwrapResponse
		if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Error == nil || resp.Error.Code != c.code {
			t.Fatalf("%s %s: reply %s (%v), want %s", c.subject, c.body, m.Data, err, c.code)
		}
		if m.Header.Get(micro.ErrorCodeHeader) != c.code || m.Header.Get(micro.ErrorHeader) != resp.Error.Message {
			t.Fatalf("%s %s: error headers %v, want %s and the message", c.subject, c.body, m.Header, c.code)
		}
	}

	rpctest.AwaitStats(t, env.NC, broker.ServiceName, func(e *micro.EndpointStats, d rpc.Stats) error {
		if e.NumRequests != 3 || d.Requests != 3 || d.Errors != 3 || d.Concurrency != broker.DefaultConcurrency ||
			d.ErrorsByCode[keybroker.CodeAssetNotFound] != 1 || d.ErrorsByCode[keybroker.CodeTenantMismatch] != 1 || d.ErrorsByCode[keybroker.CodeInvalidRequest] != 1 {
			return fmt.Errorf("STATS %s", rpctest.String(e, d))
		}
		return nil
	})
}
