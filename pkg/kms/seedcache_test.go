package kms_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
)

// countingProvider counts the calls that reach the wrapped provider.
type countingProvider struct {
	kms.Provider
	generates, decrypts atomic.Int64
}

func (p *countingProvider) GenerateDataKey(ctx context.Context, key kms.KeyURI, ec kms.EncryptionContext) (*kms.DataKey, error) {
	p.generates.Add(1)
	return p.Provider.GenerateDataKey(ctx, key, ec)
}

func (p *countingProvider) Decrypt(ctx context.Context, key kms.KeyURI, ct []byte, ec kms.EncryptionContext) (*kms.Secret, error) {
	p.decrypts.Add(1)
	return p.Provider.Decrypt(ctx, key, ct, ec)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func localSetup(t testing.TB) (dir string, client *kms.Client, counter *countingProvider) {
	t.Helper()
	dir = t.TempDir()
	if err := localkms.CreateKeyFile(filepath.Join(dir, "tenant.key")); err != nil {
		t.Fatal(err)
	}
	counter = &countingProvider{Provider: localkms.New(localkms.WithBaseDir(dir))}
	return dir, kms.NewClient(kms.WithProvider(kms.SchemeLocal, counter)), counter
}

// End to end over localkms: 100 goroutines on an expired seed make one
// GenerateDataKey; a disabled key stops new seeds once flushed; the seed
// unwraps through the decrypt cache.
func TestSeedCacheOverLocalKMS(t *testing.T) {
	dir, client, counter := localSetup(t)
	key := kms.MustParseKeyURI("localkms://tenant.key")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	c := &clock{t: time.Unix(1700000000, 0)}
	cache := kms.NewSeedCache(client, kms.DefaultSeedCacheConfig(), kms.WithClock(c.now))
	defer cache.Flush()
	ctx := t.Context()

	first, err := cache.Seed(ctx, key, ec, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Destroy()
	c.advance(kms.DefaultSeedMaxAge)

	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 100 {
		wg.Go(func() {
			seed, err := cache.Seed(ctx, key, ec, 1<<20)
			if err != nil {
				failures.Add(1)
				return
			}
			seed.Destroy()
		})
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d callers failed", failures.Load())
	}
	if got := counter.generates.Load(); got != 2 {
		t.Errorf("GenerateDataKey calls = %d, want 2", got)
	}
	if st := client.Stats(); st.GenerateDataKey != 2 || st.Calls != 2 {
		t.Errorf("Client.Stats = %+v", st)
	}

	pt, err := cache.Unwrap(ctx, key, first.Ciphertext, ec)
	if err != nil {
		t.Fatal(err)
	}
	if !pt.Equal(first.Plaintext) {
		t.Error("Unwrap returned other bytes")
	}
	pt.Destroy()

	// The customer disables the key; the status event flushes it.
	if err := localkms.SetDisabled(filepath.Join(dir, "tenant.key"), true); err != nil {
		t.Fatal(err)
	}
	cache.FlushKey(key)
	_, err = cache.Seed(ctx, key, ec, 1)
	if !errors.Is(err, kms.ErrKeyDisabled) || !kms.IsKeyUnusable(err) || kms.IsEndpointFailure(err) {
		t.Errorf("Seed with a disabled key err = %v", err)
	}
	_, err = cache.Unwrap(ctx, key, first.Ciphertext, ec)
	if !errors.Is(err, kms.ErrKeyDisabled) {
		t.Errorf("Unwrap with a disabled key err = %v", err)
	}
}

func BenchmarkSeedCacheHit(b *testing.B) {
	_, client, counter := localSetup(b)
	key := kms.MustParseKeyURI("localkms://tenant.key")
	ec := kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)
	cfg := kms.DefaultSeedCacheConfig()
	cache := kms.NewSeedCache(client, cfg)
	defer cache.Flush()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			seed, err := cache.Seed(ctx, key, ec, 64<<10)
			if err != nil {
				b.Error(err)
				return
			}
			seed.Destroy()
		}
	})
	b.ReportMetric(float64(counter.generates.Load())/float64(b.N), "kms-calls/asset")
}
