package tenant

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// syncBuffer is a bytes.Buffer safe for the cache's goroutine and the test.
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

func waitReady(t *testing.T, c *Cache) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("cache not ready within 10s")
	}
}

func TestCacheInitialLoad(t *testing.T) {
	js := startJetStream(t)
	kv := tenantsBucket(t, js)
	s := NewStore(kv)
	ctx := testContext(t)

	// More documents than the watcher's channel buffers (256), so Ready
	// must really wait for the end-of-initial-values marker.
	const n = 300
	for i := range n {
		c := validConfig()
		c.TenantID = fmt.Sprintf("t%03d", i)
		if _, err := s.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Modify(ctx, "t007", func(c *Config) error { c.DisplayName = "latest"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "t008"); err != nil {
		t.Fatal(err)
	}

	cache, err := NewCache(ctx, kv)
	if err != nil {
		t.Fatalf("NewCache err = %v", err)
	}
	t.Cleanup(func() { _ = cache.Stop() })
	waitReady(t, cache)
	if got := cache.Len(); got != n-1 {
		t.Fatalf("Len() at Ready = %d, want %d", got, n-1)
	}
	if c, ok := cache.Get("t007"); !ok || c.DisplayName != "latest" || c.Revision == 0 {
		t.Errorf("Get(t007) = %+v, %v; want the latest revision", c, ok)
	}
	if _, ok := cache.Get("t008"); ok {
		t.Error("Get(t008) found a deleted tenant")
	}
}

func TestCacheEmptyBucketReady(t *testing.T) {
	js := startJetStream(t)
	kv := tenantsBucket(t, js)
	cache, err := NewCache(testContext(t), kv)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Stop()
	waitReady(t, cache)
	if cache.Len() != 0 {
		t.Errorf("Len() = %d on an empty bucket", cache.Len())
	}
}

func TestCacheFollowsChanges(t *testing.T) {
	js := startJetStream(t)
	kv := tenantsBucket(t, js)
	s := NewStore(kv)
	ctx := testContext(t)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))

	// An invalid document is present before the cache starts.
	if _, err := kv.Put(ctx, "broken", []byte(`{"tenant_id":"broken","recipients":["security@broken.example"],"keys":[{"uri":"nope"}]}`)); err != nil {
		t.Fatal(err)
	}
	cache, err := NewCache(ctx, kv, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Stop() })
	waitReady(t, cache)
	if cache.Len() != 0 {
		t.Fatalf("Len() = %d, want the invalid document skipped", cache.Len())
	}

	// Readers run throughout, as workers do (checked by -race).
	stopReaders := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			a := Asset{Service: "cloud_recording", OwnerUserID: "u-alice", Origin: events.OriginCloud, CreatedAt: enrolled}
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				cfg, _ := cache.Get("acme")
				_ = Decide(cfg, a, events.KeyStatusAvailable)
				_ = cache.Len()
			}
		})
	}
	defer func() { close(stopReaders); readers.Wait() }()

	// Put.
	created, err := s.Create(ctx, validConfig())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cache to see the new tenant", func() bool {
		c, ok := cache.Get("acme")
		return ok && c.Revision == created.Revision
	})
	held, _ := cache.Get("acme")

	// Update.
	updated, err := s.Modify(ctx, "acme", func(c *Config) error { c.Fallback = false; return nil })
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cache to see the update", func() bool {
		c, ok := cache.Get("acme")
		return ok && c.Revision == updated.Revision && !c.Fallback
	})
	if !held.Fallback || held.Revision != created.Revision {
		t.Error("an update changed a snapshot handed out earlier")
	}

	// An invalid document over a valid one: logged, skipped, the last
	// valid configuration stays.
	if _, err := kv.Put(ctx, "acme", []byte(`{"tenant_id":"acme","keys":[{"uri":"awskms://x","role":"primary"}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "acme2", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	// A marker write after the invalid ones: once it is seen, they were
	// processed.
	marker := validConfig()
	marker.TenantID = "marker"
	if _, err := s.Create(ctx, marker); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the marker", func() bool { _, ok := cache.Get("marker"); return ok })
	if c, ok := cache.Get("acme"); !ok || c.Revision != updated.Revision {
		t.Errorf("after an invalid write Get(acme) = %+v, %v; want the last valid revision %d", c, ok, updated.Revision)
	}
	if _, ok := cache.Get("acme2"); ok {
		t.Error("a non-JSON document was cached")
	}
	out := logs.String()
	for _, want := range []string{`"tenant":"broken"`, `"tenant":"acme"`, `"tenant":"acme2"`, `"level":"WARN"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "security@broken.example") {
		t.Errorf("log carries document content:\n%s", out)
	}

	// Delete.
	if err := s.Delete(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cache to drop the deleted tenant", func() bool { _, ok := cache.Get("acme"); return !ok })

	// Purge also removes.
	if err := kv.Purge(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the cache to drop the purged tenant", func() bool { _, ok := cache.Get("marker"); return !ok })
	if cache.Len() != 0 {
		t.Errorf("Len() = %d, want 0", cache.Len())
	}
}

func TestCacheStop(t *testing.T) {
	js := startJetStream(t)
	kv := tenantsBucket(t, js)
	s := NewStore(kv)
	ctx := testContext(t)
	if _, err := s.Create(ctx, validConfig()); err != nil {
		t.Fatal(err)
	}

	cache, err := NewCache(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, cache)
	if err := cache.Stop(); err != nil {
		t.Fatalf("Stop err = %v", err)
	}
	if err := cache.Stop(); err != nil {
		t.Fatalf("second Stop err = %v", err)
	}
	// After Stop the last values stay and changes are no longer applied.
	if _, err := s.Modify(ctx, "acme", func(c *Config) error { c.DisplayName = "after stop"; return nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if c, ok := cache.Get("acme"); !ok || c.DisplayName == "after stop" {
		t.Errorf("Get after Stop = %+v, %v; want the value from before Stop", c, ok)
	}

	// Cancelling the context stops the watch too.
	cctx, cancel := context.WithCancel(ctx)
	cache2, err := NewCache(cctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, cache2)
	cancel()
	select {
	case <-cache2.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end after the context was cancelled")
	}
	if cache2.Len() != 1 {
		t.Errorf("Len() after cancel = %d, want the last values kept", cache2.Len())
	}
	if err := cache2.Stop(); err != nil {
		t.Errorf("Stop after cancel err = %v", err)
	}
}
