package encryptor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/tenant/tenanttest"
	"github.com/keyward/keyward/pkg/vault"
	"github.com/keyward/keyward/services/encryptor/encryptor"
)

// stack is a real pipeline for one test: embedded nats-server, localkms key
// files, a bbolt ledger, and the encryptor worker running in-process.
type stack struct {
	t        testing.TB
	env      *natstest.Env
	dir      string
	keysDir  string
	platform kms.KeyURI
	fallback kms.KeyURI
	client   *kms.Client
	seeds    *kms.SeedCache
	ledger   *ledger.Store
	worker   *encryptor.Worker
	stop     context.CancelFunc
	done     chan error
	opts     encryptor.Options
	tenants  *tenant.Store
	producer *producer.Producer
	vault    *vault.Store
	broker   *keybroker.Client
}

func newStack(t testing.TB, opts ...func(*encryptor.Options)) *stack {
	t.Helper()
	s := newStackNoWorker(t, opts...)
	s.start()
	return s
}

// newStackNoWorker prepares everything but does not start a worker.
func newStackNoWorker(t testing.TB, opts ...func(*encryptor.Options)) *stack {
	t.Helper()
	s := &stack{t: t, env: natstest.Start(t), dir: t.TempDir()}
	s.keysDir = filepath.Join(s.dir, "keys")
	s.platform = s.localKey("platform.key")
	s.fallback = s.localKey("fallback.key")
	s.client = kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New()), kms.WithCallTimeout(2*time.Second))
	s.seeds = kms.NewSeedCache(s.client, kms.DefaultSeedCacheConfig())
	s.opts = encryptor.Options{
		PlatformKey: s.platform, FallbackKey: s.fallback,
		AllowLocalCustomerKeys: true,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		s.opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(&s.opts)
	}
	ctx := context.Background()
	var err error
	if s.tenants, err = tenant.OpenStore(ctx, s.env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true))); err != nil {
		t.Fatal(err)
	}
	if s.producer, err = producer.New(ctx, s.env.NC, s.env.JS); err != nil {
		t.Fatal(err)
	}
	if s.vault, err = vault.Open(ctx, s.env.JS, events.BucketVault); err != nil {
		t.Fatal(err)
	}
	s.broker = keybroker.NewClient(s.env.NC)
	return s
}

// localKey creates a local key file and returns its URI.
func (s *stack) localKey(name string) kms.KeyURI {
	s.t.Helper()
	return tenanttest.LocalKey(s.t, s.keysDir, name)
}

// start opens the ledger and runs a worker until stopWorker.
func (s *stack) start() {
	s.t.Helper()
	var err error
	if s.ledger, err = ledger.Open(filepath.Join(s.dir, "ledger.db")); err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.worker, err = encryptor.New(ctx, encryptor.Deps{NC: s.env.NC, JS: s.env.JS, KMS: s.client, Seeds: s.seeds, Ledger: s.ledger}, s.opts)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	s.stop, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.worker.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.worker.Ready() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("worker not ready: %v", s.worker.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Cleanup(s.stopWorker)
}

func (s *stack) stopWorker() {
	if s.stop == nil {
		return
	}
	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("worker Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		s.t.Error("worker did not stop")
	}
	s.stop = nil
	s.ledger.Close()
}

// enroll applies a tenant whose primary key is a new local customer key.
func (s *stack) enroll(id string, mutate ...func(*tenant.Config)) kms.KeyURI {
	s.t.Helper()
	key := s.localKey(id + "-customer.key")
	s.apply(tenanttest.Covered(id, key, mutate...))
	return key
}

func (s *stack) apply(cfg *tenant.Config) {
	s.t.Helper()
	stored, err := s.tenants.Apply(context.Background(), cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	if s.worker == nil {
		return
	}
	s.eventually("the worker to see tenant "+cfg.TenantID, func() bool {
		c, ok := s.worker.Tenant(cfg.TenantID)
		return ok && c.Revision >= stored.Revision
	})
}

func (s *stack) setStatus(tenantID string, key kms.KeyURI, st events.KeyStatus) {
	s.t.Helper()
	kv, err := s.env.JS.KeyValue(context.Background(), events.BucketKeyStatus)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := keystatus.Put(context.Background(), kv, keystatus.Record{TenantID: tenantID, KeyURI: key.String(), Status: st, Reason: "test"}); err != nil {
		s.t.Fatal(err)
	}
	s.eventually("the worker to see the key status", func() bool { return s.worker.KeyStatus(tenantID, key.String()) == st })
}

type putOpt func(*producer.Asset)

func (s *stack) put(tenantID, assetID string, data []byte, opts ...putOpt) *producer.Outcome {
	s.t.Helper()
	a := producer.Asset{TenantID: tenantID, AssetID: assetID, Service: "cloud_recording", OwnerUserID: "u-1"}
	for _, o := range opts {
		o(&a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := s.producer.Put(ctx, a, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		s.t.Fatalf("Put %s/%s: %v", tenantID, assetID, err)
	}
	out, err := p.Wait(ctx)
	if err != nil {
		s.t.Fatalf("Wait %s/%s: %v", tenantID, assetID, err)
	}
	return out
}

func (s *stack) mustEncrypt(tenantID, assetID string, data []byte, opts ...putOpt) *events.AssetEncrypted {
	s.t.Helper()
	out := s.put(tenantID, assetID, data, opts...)
	if out.Encrypted == nil {
		s.t.Fatalf("%s/%s rejected: %+v", tenantID, assetID, out.Rejected)
	}
	return out.Encrypted
}

// get reads an asset back through the key broker.
func (s *stack) get(tenantID, assetID string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := s.broker.Open(ctx, s.vault, tenantID, assetID)
	if err != nil {
		return nil, err
	}
	size, err := a.Size()
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.NewSectionReader(a, 0, size))
}

func (s *stack) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamMsgs returns every message of stream whose subject matches filter.
func (s *stack) streamMsgs(stream, filter string) []*jetstream.RawStreamMsg {
	s.t.Helper()
	return s.env.StreamMsgs(s.t, stream, filter)
}

func (s *stack) dlq() []*events.DeadLetter {
	var out []*events.DeadLetter
	for _, m := range s.streamMsgs(events.StreamDLQ, events.SubjectDLQAll) {
		d, err := events.ParseDeadLetter(m.Subject, m.Header, m.Data, m.Sequence)
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func (s *stack) stagingExists(name string) bool {
	st, err := vault.Open(context.Background(), s.env.JS, events.BucketStaging)
	if err != nil {
		s.t.Fatal(err)
	}
	_, err = st.Info(context.Background(), name)
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		s.t.Fatal(err)
	}
	return err == nil
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func removeFile(path string) error { return os.Remove(path) }
