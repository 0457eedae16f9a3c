package reencryptor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/tenant/tenanttest"
	"github.com/keyward/keyward/pkg/vault"
	"github.com/keyward/keyward/services/encryptor/encryptor"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// stack is a real system for one test: embedded nats-server, localkms key
// files, the encryptor (with its key broker) and the re-encryptor running
// in-process, each on its own bbolt ledger.
type stack struct {
	t        testing.TB
	env      *natstest.Env
	dir      string
	keysDir  string
	platform kms.KeyURI
	fallback kms.KeyURI
	client   *kms.Client
	log      *slog.Logger

	enc       *encryptor.Worker
	encLedger *ledger.Store
	encStop   func()

	re       *reencryptor.Worker
	reLedger *ledger.Store
	reStop   func()
	reOpts   reencryptor.Options

	tenants  *tenant.Store
	producer *producer.Producer
	vault    *vault.Store
	broker   *keybroker.Client
	jobs     *reencryptor.Jobs
}

func newStack(t testing.TB, opts ...func(*reencryptor.Options)) *stack {
	t.Helper()
	s := &stack{t: t, env: natstest.Start(t), dir: t.TempDir()}
	s.keysDir = filepath.Join(s.dir, "keys")
	s.platform = s.localKey("platform.key")
	s.fallback = s.localKey("fallback.key")
	s.client = kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New()), kms.WithCallTimeout(2*time.Second))
	s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		s.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s.reOpts = reencryptor.Options{
		PlatformKey: s.platform, FallbackKey: s.fallback, AllowLocalCustomerKeys: true, Logger: s.log.With("svc", "re-encryptor"),
		RescanInterval: 500 * time.Millisecond, ProgressInterval: 200 * time.Millisecond,
		DeprovisionGrace: 200 * time.Millisecond, BatchSize: 16,
	}
	for _, o := range opts {
		o(&s.reOpts)
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
	if s.jobs, err = reencryptor.OpenJobs(ctx, s.env.JS); err != nil {
		t.Fatal(err)
	}
	s.broker = keybroker.NewClient(s.env.NC)
	s.startEncryptor()
	t.Cleanup(func() {
		s.stopReencryptor()
		s.encStop()
	})
	return s
}

func (s *stack) localKey(name string) kms.KeyURI {
	s.t.Helper()
	return tenanttest.LocalKey(s.t, s.keysDir, name)
}

func (s *stack) startEncryptor() {
	s.t.Helper()
	var err error
	if s.encLedger, err = ledger.Open(filepath.Join(s.dir, "encryptor.db")); err != nil {
		s.t.Fatal(err)
	}
	seeds := kms.NewSeedCache(s.client, kms.DefaultSeedCacheConfig())
	ctx, cancel := context.WithCancel(context.Background())
	s.enc, err = encryptor.New(ctx, encryptor.Deps{NC: s.env.NC, JS: s.env.JS, KMS: s.client, Seeds: seeds, Ledger: s.encLedger},
		encryptor.Options{PlatformKey: s.platform, FallbackKey: s.fallback, AllowLocalCustomerKeys: true, Logger: s.log.With("svc", "encryptor")})
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.enc.Run(ctx) }()
	s.eventually("encryptor ready", func() bool { return s.enc.Ready() == nil })
	var once sync.Once
	s.encStop = func() {
		once.Do(func() {
			cancel()
			<-done
			s.encLedger.Close()
		})
	}
}

// startReencryptor runs a re-encryptor on its ledger file (kept between
// runs, as a restarted process would).
func (s *stack) startReencryptor() {
	s.t.Helper()
	var err error
	if s.reLedger, err = ledger.Open(filepath.Join(s.dir, "reencryptor.db")); err != nil {
		s.t.Fatal(err)
	}
	// Its own KMS client and seed cache, as in production.
	client := kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New()), kms.WithCallTimeout(2*time.Second))
	seeds := kms.NewSeedCache(client, kms.DefaultSeedCacheConfig())
	ctx, cancel := context.WithCancel(context.Background())
	s.re, err = reencryptor.New(ctx, reencryptor.Deps{NC: s.env.NC, JS: s.env.JS, KMS: client, Seeds: seeds, Ledger: s.reLedger}, s.reOpts)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.re.Run(ctx) }()
	s.eventually("re-encryptor ready", func() bool { return s.re.Ready() == nil })
	s.reStop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				s.t.Errorf("re-encryptor Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			s.t.Error("re-encryptor did not stop")
		}
		s.reLedger.Close()
	}
}

func (s *stack) stopReencryptor() {
	if s.reStop != nil {
		s.reStop()
		s.reStop = nil
	}
}

// enroll applies a tenant whose primary key is a new local customer key,
// enrolled an hour ago, with fallback on.
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
	s.eventually("the encryptor to see tenant "+cfg.TenantID, func() bool {
		c, ok := s.enc.Tenant(cfg.TenantID)
		return ok && c.Revision >= stored.Revision
	})
}

// setStatus writes a key's status as the key-health-monitor would.
func (s *stack) setStatus(tenantID string, key kms.KeyURI, st events.KeyStatus) {
	s.t.Helper()
	kv, err := s.env.JS.KeyValue(context.Background(), events.BucketKeyStatus)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := keystatus.Put(context.Background(), kv, keystatus.Record{TenantID: tenantID, KeyURI: key.String(), Status: st, Reason: "test", Since: time.Now().UTC()}); err != nil {
		s.t.Fatal(err)
	}
	s.eventually("the encryptor to see the key status", func() bool { return s.enc.KeyStatus(tenantID, key.String()) == st })
}

// putMany stores n assets of tenantID through the encryptor, concurrently;
// asset i holds data(i). It returns the outcomes by asset id.
func (s *stack) putMany(tenantID, prefix string, n int, data func(i int) []byte, opts ...func(*producer.Asset)) map[string]*events.AssetEncrypted {
	s.t.Helper()
	out := make(map[string]*events.AssetEncrypted, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			id := assetID(prefix, i)
			d := data(i)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a := producer.Asset{TenantID: tenantID, AssetID: id, Service: "cloud_recording", OwnerUserID: "u-1"}
			for _, o := range opts {
				o(&a)
			}
			p, err := s.producer.Put(ctx, a, bytes.NewReader(d), int64(len(d)))
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			o, err := p.Wait(ctx)
			if err != nil {
				errs <- err
				return
			}
			if o.Encrypted == nil {
				errs <- errors.New(id + " rejected: " + string(o.Rejected.Reason))
				return
			}
			mu.Lock()
			out[id] = o.Encrypted
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.t.Fatal(err)
	}
	return out
}

func assetID(prefix string, i int) string {
	return prefix + "-" + strings.Repeat("0", 5-len(itoa(i))) + itoa(i)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
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

// header reads the envelope prefix of an asset's stored ciphertext.
func (s *stack) prefix(tenantID, assetID string) *envelope.Prefix {
	s.t.Helper()
	ra, err := s.vault.OpenReaderAt(context.Background(), events.VaultObjectName(tenantID, assetID))
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := envelope.ReadPrefix(ra, ra.Size())
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// body is the stored ciphertext after its prefix.
func (s *stack) body(tenantID, assetID string) [32]byte {
	s.t.Helper()
	ra, err := s.vault.OpenReaderAt(context.Background(), events.VaultObjectName(tenantID, assetID))
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := envelope.ReadPrefix(ra, ra.Size())
	if err != nil {
		s.t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(ra, int64(p.Len()), ra.Size()-int64(p.Len()))); err != nil {
		s.t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// job waits until tenantID's job for purpose satisfies cond.
func (s *stack) waitJob(tenantID string, purpose events.ReencryptPurpose, timeout time.Duration, cond func(*reencryptor.Job) bool) *reencryptor.Job {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *reencryptor.Job
	for time.Now().Before(deadline) {
		j, err := s.jobs.Get(context.Background(), tenantID, purpose)
		if err != nil {
			s.t.Fatal(err)
		}
		if j != nil && cond(j) {
			return j
		}
		last = j
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("timed out waiting for the %s job of %s; last record: %+v", purpose, tenantID, last)
	return nil
}

func completedAndFinal(j *reencryptor.Job) bool {
	return j.State == events.JobCompleted && j.Finalized
}

func (s *stack) eventually(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
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

// reencrypted returns the AssetReencrypted events of tenantID.
func (s *stack) reencrypted(tenantID string) []*events.AssetReencrypted {
	s.t.Helper()
	var out []*events.AssetReencrypted
	for _, m := range s.streamMsgs(events.StreamAssets, events.SubjectAssetReencrypted(tenantID)) {
		e, err := events.DecodeAssetReencrypted(m.Data)
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func pattern(n int, seed int) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func (s *stack) putManyOrigin(tenantID, prefix string, n int, data func(i int) []byte, origin events.Origin) map[string]*events.AssetEncrypted {
	return s.putMany(tenantID, prefix, n, data, func(a *producer.Asset) { a.Origin = origin })
}

// scheduleDeprovision sets the tenant's deprovisioning date, as
// `keyward tenant deprovision schedule` does.
func (s *stack) scheduleDeprovision(tenantID string, at time.Time) {
	s.t.Helper()
	cfg, err := s.tenants.Get(context.Background(), tenantID)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.Deprovision = &tenant.Deprovision{At: at.UTC(), ScheduledAt: time.Now().UTC()}
	s.apply(cfg)
}

// records reads every encrypted record of a ledger file, as JSON without
// the store's own write time.
func (s *stack) records(path string) map[string]string {
	s.t.Helper()
	l, err := ledger.Open(path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer l.Close()
	return readRecords(s.t, l)
}

func readRecords(t testing.TB, l *ledger.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tenantID := range []string{"reb"} {
		for _, m := range ledger.Modes() {
			if err := l.ByMode(context.Background(), tenantID, m, ledger.ScanOptions{}, func(r ledger.Record) error {
				r.UpdatedAt = time.Time{}
				b, err := json.Marshal(r)
				out[r.TenantID+"/"+r.AssetID] = string(b)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// rebuild projects KW_ASSETS into a new ledger file from scratch.
func (s *stack) rebuild() map[string]string {
	s.t.Helper()
	l, err := ledger.Open(filepath.Join(s.t.TempDir(), "rebuilt.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer l.Close()
	if err := projector.Rebuild(context.Background(), s.env.JS, l); err != nil {
		s.t.Fatal(err)
	}
	return readRecords(s.t, l)
}
