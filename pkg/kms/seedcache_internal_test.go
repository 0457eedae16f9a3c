package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// fakeKMS is a recording test double: it remembers the byte slices of every
// Secret it hands out, so tests can check that the cache destroyed them, and
// can hold calls at a gate.
type fakeKMS struct {
	mu        sync.Mutex
	plain     map[string][]byte // ciphertext → plaintext
	handedOut [][]byte          // slices owned by Secrets returned to the client
	gate      chan struct{}     // when non-nil, calls wait for it to close
	fail      error             // when non-nil, calls fail with it

	generates atomic.Int64
	decrypts  atomic.Int64
	started   chan struct{} // receives one value per call, if non-nil
}

func newFakeKMS() *fakeKMS { return &fakeKMS{plain: map[string][]byte{}} }

func (f *fakeKMS) wait(ctx context.Context) error {
	f.mu.Lock()
	gate, fail, started := f.gate, f.fail, f.started
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fail
}

func (f *fakeKMS) setGate(g chan struct{}) { f.mu.Lock(); f.gate = g; f.mu.Unlock() }
func (f *fakeKMS) setFail(err error)       { f.mu.Lock(); f.fail = err; f.mu.Unlock() }

func (f *fakeKMS) GenerateDataKey(ctx context.Context, key KeyURI, ec EncryptionContext) (*DataKey, error) {
	f.generates.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	pt := make([]byte, DataKeySize)
	ct := make([]byte, 16)
	_, _ = rand.Read(pt)
	_, _ = rand.Read(ct)
	f.mu.Lock()
	f.plain[string(ct)+"\x00"+key.String()+string(ec.Canonical())] = bytes.Clone(pt)
	f.handedOut = append(f.handedOut, pt)
	f.mu.Unlock()
	return &DataKey{Plaintext: NewSecret(pt), Ciphertext: ct, KeyVersion: "7"}, nil
}

func (f *fakeKMS) Encrypt(context.Context, KeyURI, *Secret, EncryptionContext) (*Wrapped, error) {
	return nil, errors.New("not used")
}

func (f *fakeKMS) Decrypt(ctx context.Context, key KeyURI, ct []byte, ec EncryptionContext) (*Secret, error) {
	f.decrypts.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pt, ok := f.plain[string(ct)+"\x00"+key.String()+string(ec.Canonical())]
	if !ok {
		return nil, &Error{Code: CodeInvalidCiphertext}
	}
	out := bytes.Clone(pt)
	f.handedOut = append(f.handedOut, out)
	return NewSecret(out), nil
}

// destroyed reports how many of the secrets handed out are all zeros.
func (f *fakeKMS) destroyed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, b := range f.handedOut {
		if len(b) > 0 && bytes.Equal(b, make([]byte, len(b))) {
			n++
		}
	}
	return n
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	keyA  = MustParseKeyURI("localkms://a.key")
	keyB  = MustParseKeyURI("localkms://b.key")
	ecA   = NewEncryptionContext("acme", PurposeAssetSeed)
	ecB   = NewEncryptionContext("globex", PurposeAssetSeed)
	t0    = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	bgctx = context.Background()
)

func newTestCache(t *testing.T, cfg SeedCacheConfig) (*SeedCache, *fakeKMS, *fakeClock) {
	t.Helper()
	f := newFakeKMS()
	clock := &fakeClock{t: t0}
	c := NewClient(WithProvider(SchemeLocal, f), WithProvider(SchemeAzure, f))
	s := NewSeedCache(c, cfg, WithClock(clock.Now))
	t.Cleanup(s.Flush)
	return s, f, clock
}

func mustSeed(t *testing.T, s *SeedCache, key KeyURI, ec EncryptionContext, n int64) *Seed {
	t.Helper()
	seed, err := s.Seed(bgctx, key, ec, n)
	if err != nil {
		t.Fatalf("Seed(%s, %d) err = %v", key, n, err)
	}
	t.Cleanup(seed.Destroy)
	return seed
}

func TestDefaultSeedCacheConfig(t *testing.T) {
	d := DefaultSeedCacheConfig()
	want := SeedCacheConfig{MaxAge: 5 * time.Minute, MaxUses: 4096, MaxBytes: 16 << 30, MaxEntries: 10000, DecryptMaxAge: 5 * time.Minute, DecryptMaxEntries: 10000}
	if d != want {
		t.Errorf("DefaultSeedCacheConfig() = %+v, want %+v", d, want)
	}
	if got := (SeedCacheConfig{}).withDefaults(); got != want {
		t.Errorf("zero config with defaults = %+v", got)
	}
	if got := (SeedCacheConfig{MaxUses: -1, DecryptMaxAge: -1}).withDefaults(); got.MaxUses != 4096 || got.DecryptMaxAge != -1 {
		t.Errorf("negative config with defaults = %+v", got)
	}
	// ≤ 0.01 KMS calls per asset needs ≥ 100 uses per seed.
	if 1/float64(d.MaxUses) > 0.01 {
		t.Error("MaxUses does not reach 0.01 KMS calls per asset")
	}
	// Within Cobblestone-256's per-input-key limits: 2^35 messages of 32 GiB.
	if d.MaxUses > 1<<35 || d.MaxBytes > d.MaxUses*(32<<30) {
		t.Error("defaults exceed the Cobblestone-256 per-input-key limits")
	}
}

func TestSeedReuseUntilMaxUses(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{MaxUses: 3})
	first := mustSeed(t, s, keyA, ecA, 10)
	for i := range 2 {
		again := mustSeed(t, s, keyA, ecA, 10)
		if !bytes.Equal(again.Ciphertext, first.Ciphertext) || !again.Plaintext.Equal(first.Plaintext) {
			t.Fatalf("use %d got another seed", i+2)
		}
		if again.KeyVersion != "7" || again.KeyURI != keyA {
			t.Errorf("seed = version %q key %s", again.KeyVersion, again.KeyURI)
		}
	}
	fourth := mustSeed(t, s, keyA, ecA, 10)
	if bytes.Equal(fourth.Ciphertext, first.Ciphertext) {
		t.Fatal("seed handed out a 4th time with MaxUses 3")
	}
	if f.generates.Load() != 2 {
		t.Errorf("GenerateDataKey calls = %d, want 2", f.generates.Load())
	}
	st := s.Stats()
	if st.Hits != 2 || st.Misses != 2 || st.Generates != 2 || st.Evictions != 1 || st.Entries != 1 {
		t.Errorf("Stats = %+v", st)
	}
	if f.destroyed() != 1 {
		t.Errorf("%d secrets destroyed, want the used-up one", f.destroyed())
	}
	// Different contexts and keys have different seeds.
	other := mustSeed(t, s, keyA, ecB, 10)
	otherKey := mustSeed(t, s, keyB, ecA, 10)
	if bytes.Equal(other.Ciphertext, fourth.Ciphertext) || bytes.Equal(otherKey.Ciphertext, fourth.Ciphertext) {
		t.Error("seed shared across contexts or keys")
	}
}

func TestSeedMaxBytes(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{MaxBytes: 100})
	a := mustSeed(t, s, keyA, ecA, 40)
	b := mustSeed(t, s, keyA, ecA, 60) // exactly 100
	if !bytes.Equal(a.Ciphertext, b.Ciphertext) {
		t.Fatal("seed not reused within MaxBytes")
	}
	c := mustSeed(t, s, keyA, ecA, 1) // 101 > 100
	if bytes.Equal(c.Ciphertext, a.Ciphertext) {
		t.Fatal("seed reused beyond MaxBytes")
	}
	// An asset larger than MaxBytes gets a seed of its own, not cached.
	big := mustSeed(t, s, keyA, ecA, 1000)
	d := mustSeed(t, s, keyA, ecA, 1)
	if bytes.Equal(big.Ciphertext, c.Ciphertext) || !bytes.Equal(d.Ciphertext, c.Ciphertext) {
		t.Error("oversized asset shared a seed or replaced the cached one")
	}
	if f.generates.Load() != 3 {
		t.Errorf("GenerateDataKey calls = %d, want 3", f.generates.Load())
	}
	if _, err := s.Seed(bgctx, keyA, ecA, -1); CodeOf(err) != CodeInvalidArgument {
		t.Errorf("Seed with negative size err = %v", err)
	}
	// Zero-byte assets count as uses.
	s2, _, _ := newTestCache(t, SeedCacheConfig{MaxUses: 2})
	z1, z2, z3 := mustSeed(t, s2, keyA, ecA, 0), mustSeed(t, s2, keyA, ecA, 0), mustSeed(t, s2, keyA, ecA, 0)
	if !bytes.Equal(z1.Ciphertext, z2.Ciphertext) || bytes.Equal(z2.Ciphertext, z3.Ciphertext) {
		t.Error("zero-byte assets not counted as uses")
	}
}

func TestSeedMaxAge(t *testing.T) {
	s, f, clock := newTestCache(t, SeedCacheConfig{MaxAge: time.Minute})
	a := mustSeed(t, s, keyA, ecA, 1)
	clock.Advance(time.Minute - time.Nanosecond)
	if b := mustSeed(t, s, keyA, ecA, 1); !bytes.Equal(a.Ciphertext, b.Ciphertext) {
		t.Fatal("seed not reused before MaxAge")
	}
	clock.Advance(time.Nanosecond)
	if c := mustSeed(t, s, keyA, ecA, 1); bytes.Equal(a.Ciphertext, c.Ciphertext) {
		t.Fatal("seed reused at MaxAge")
	}
	if f.generates.Load() != 2 || f.destroyed() != 1 {
		t.Errorf("generates = %d, destroyed = %d; want 2, 1", f.generates.Load(), f.destroyed())
	}
}

// 100 goroutines asking for the seed of one (key, context) whose cached seed
// has just expired make exactly one GenerateDataKey call.
func TestSeedSingleFlightOnExpiry(t *testing.T) {
	s, f, clock := newTestCache(t, SeedCacheConfig{MaxAge: time.Minute})
	first := mustSeed(t, s, keyA, ecA, 1)
	clock.Advance(2 * time.Minute)

	gate := make(chan struct{})
	f.setGate(gate)
	const n = 100
	var wg sync.WaitGroup
	seeds := make([]*Seed, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { seeds[i], errs[i] = s.Seed(bgctx, keyA, ecA, 1) })
	}
	// Hold the KMS call until every goroutine is waiting for it.
	waitFor(t, func() bool { return s.Stats().Misses == n+1 })
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()

	if got := f.generates.Load(); got != 2 {
		t.Fatalf("GenerateDataKey calls = %d, want 2 (1 before expiry, 1 for the 100 callers)", got)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d err = %v", i, errs[i])
		}
		if bytes.Equal(seeds[i].Ciphertext, first.Ciphertext) || !bytes.Equal(seeds[i].Ciphertext, seeds[0].Ciphertext) {
			t.Fatalf("caller %d got a different or expired seed", i)
		}
		if i > 0 && &seeds[i].Plaintext.Bytes()[0] == &seeds[0].Plaintext.Bytes()[0] {
			t.Fatal("callers share one plaintext buffer")
		}
	}
	for _, seed := range seeds {
		seed.Destroy()
	}
}

// Under load with a small MaxUses, no seed is handed out more than MaxUses
// times and none is wasted: N callers cost exactly N/MaxUses KMS calls.
func TestSeedUseAccountingUnderLoad(t *testing.T) {
	const maxUses, n = 10, 300
	s, f, _ := newTestCache(t, SeedCacheConfig{MaxUses: maxUses, MaxBytes: 1 << 40})
	var mu sync.Mutex
	uses := map[string]int{}
	bytesPer := map[string]int64{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			seed, err := s.Seed(bgctx, keyA, ecA, int64(i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			uses[string(seed.Ciphertext)]++
			bytesPer[string(seed.Ciphertext)] += int64(i)
			mu.Unlock()
			seed.Destroy()
		})
	}
	wg.Wait()
	for ct, u := range uses {
		if u > maxUses {
			t.Errorf("seed %s handed out %d times, MaxUses %d", hex.EncodeToString([]byte(ct))[:8], u, maxUses)
		}
	}
	if got := f.generates.Load(); got != n/maxUses {
		t.Errorf("GenerateDataKey calls = %d, want %d", got, n/maxUses)
	}
	// Bytes are accounted atomically too.
	s2, _, _ := newTestCache(t, SeedCacheConfig{MaxBytes: 1000})
	bytesPer = map[string]int64{}
	for range n {
		wg.Go(func() {
			seed, err := s2.Seed(bgctx, keyA, ecA, 70)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			bytesPer[string(seed.Ciphertext)] += 70
			mu.Unlock()
			seed.Destroy()
		})
	}
	wg.Wait()
	for _, b := range bytesPer {
		if b > 1000 {
			t.Errorf("seed encrypted %d bytes, MaxBytes 1000", b)
		}
	}
}

func TestSeedErrorsNotCached(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{})
	f.setFail(&Error{Code: CodeKeyDisabled})
	for range 2 {
		if _, err := s.Seed(bgctx, keyA, ecA, 1); !errors.Is(err, ErrKeyDisabled) {
			t.Fatalf("Seed err = %v, want ErrKeyDisabled", err)
		}
	}
	f.setFail(nil)
	mustSeed(t, s, keyA, ecA, 1)
	if f.generates.Load() != 3 {
		t.Errorf("GenerateDataKey calls = %d, want 3 (errors are not cached)", f.generates.Load())
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Errorf("Stats = %+v", st)
	}
	// Concurrent waiters all get the one error.
	s2, f2, _ := newTestCache(t, SeedCacheConfig{})
	gate := make(chan struct{})
	f2.setGate(gate)
	f2.setFail(&Error{Code: CodeThrottled})
	var wg sync.WaitGroup
	var throttled atomic.Int64
	for range 20 {
		wg.Go(func() {
			if _, err := s2.Seed(bgctx, keyA, ecA, 1); errors.Is(err, ErrThrottled) {
				throttled.Add(1)
			}
		})
	}
	waitFor(t, func() bool { return s2.Stats().Misses == 20 })
	time.Sleep(10 * time.Millisecond)
	close(gate)
	wg.Wait()
	if throttled.Load() != 20 || f2.generates.Load() != 1 {
		t.Errorf("throttled callers = %d, KMS calls = %d; want 20, 1", throttled.Load(), f2.generates.Load())
	}
}

func TestFlushKey(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{})
	a := mustSeed(t, s, keyA, ecA, 1)
	a2 := mustSeed(t, s, keyA, ecB, 1)
	b := mustSeed(t, s, keyB, ecA, 1)
	ua, err := s.Unwrap(bgctx, keyA, a.Ciphertext, ecA)
	if err != nil {
		t.Fatal(err)
	}
	ua.Destroy()
	ub, err := s.Unwrap(bgctx, keyB, b.Ciphertext, ecA)
	if err != nil {
		t.Fatal(err)
	}
	ub.Destroy()
	before := f.destroyed()

	s.FlushKey(keyA)
	if st := s.Stats(); st.Entries != 1 || st.UnwrapEntries != 1 || st.Evictions != 3 {
		t.Errorf("after FlushKey(A) Stats = %+v, want B's seed and unwrap left", st)
	}
	if got := f.destroyed() - before; got != 3 {
		t.Errorf("FlushKey destroyed %d secrets, want 3", got)
	}
	if c := mustSeed(t, s, keyA, ecA, 1); bytes.Equal(c.Ciphertext, a.Ciphertext) {
		t.Error("key A's seed survived FlushKey")
	}
	if c := mustSeed(t, s, keyA, ecB, 1); bytes.Equal(c.Ciphertext, a2.Ciphertext) {
		t.Error("key A's seed for the other context survived FlushKey")
	}
	if c := mustSeed(t, s, keyB, ecA, 1); !bytes.Equal(c.Ciphertext, b.Ciphertext) {
		t.Error("FlushKey(A) dropped key B's seed")
	}
	d0 := f.decrypts.Load()
	if u, err := s.Unwrap(bgctx, keyB, b.Ciphertext, ecA); err != nil || f.decrypts.Load() != d0 {
		t.Errorf("FlushKey(A) dropped key B's unwrapped seed: %v", err)
	} else {
		u.Destroy()
	}

	// All versions: a flush of the unversioned key drops pinned versions too.
	unv := MustParseKeyURI("azurekv://contoso.vault.azure.net/keys/k")
	v1 := MustParseKeyURI("azurekv://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef")
	other := MustParseKeyURI("azurekv://contoso.vault.azure.net/keys/k2")
	mustSeed(t, s, unv, ecA, 1)
	mustSeed(t, s, v1, ecA, 1)
	mustSeed(t, s, other, ecA, 1)
	entries := s.Stats().Entries
	s.FlushKey(v1) // any version names the whole key
	if got := s.Stats().Entries; got != entries-2 {
		t.Errorf("FlushKey of a versioned URI left %d of %d entries, want %d", got, entries, entries-2)
	}
	s.Flush()
	if st := s.Stats(); st.Entries != 0 || st.UnwrapEntries != 0 {
		t.Errorf("after Flush Stats = %+v", st)
	}
	f.mu.Lock()
	n := len(f.handedOut)
	f.mu.Unlock()
	if f.destroyed() != n {
		t.Errorf("after Flush %d of %d secrets destroyed", f.destroyed(), n)
	}
}

// A seed generated while its key is flushed (a status change) is not cached:
// the waiters start over and get a seed generated after the flush.
func TestFlushDuringGeneration(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{})
	gate := make(chan struct{})
	started := make(chan struct{}, 4)
	f.mu.Lock()
	f.gate, f.started = gate, started
	f.mu.Unlock()
	done := make(chan *Seed)
	go func() {
		seed, err := s.Seed(bgctx, keyA, ecA, 1)
		if err != nil {
			t.Error(err)
		}
		done <- seed
	}()
	<-started
	s.FlushKey(keyA)
	f.mu.Lock()
	f.gate, f.started = nil, nil
	f.mu.Unlock()
	close(gate)
	seed := <-done
	defer seed.Destroy()
	if f.generates.Load() != 2 {
		t.Errorf("GenerateDataKey calls = %d, want 2 (the pre-flush result is discarded)", f.generates.Load())
	}
	if f.destroyed() != 1 {
		t.Errorf("destroyed = %d, want the discarded seed", f.destroyed())
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestEvictionAtMaxEntries(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{MaxEntries: 2, DecryptMaxEntries: 1})
	ecs := []EncryptionContext{
		NewEncryptionContext("t1", PurposeAssetSeed),
		NewEncryptionContext("t2", PurposeAssetSeed),
		NewEncryptionContext("t3", PurposeAssetSeed),
	}
	s1 := mustSeed(t, s, keyA, ecs[0], 1)
	s2 := mustSeed(t, s, keyA, ecs[1], 1)
	mustSeed(t, s, keyA, ecs[0], 1) // t1 is now the most recently used
	mustSeed(t, s, keyA, ecs[2], 1) // evicts t2, the least recently used
	st := s.Stats()
	if st.Entries != 2 || st.Evictions != 1 {
		t.Fatalf("Stats = %+v, want 2 entries and 1 eviction", st)
	}
	if f.destroyed() != 1 {
		t.Errorf("destroyed = %d, want the evicted seed", f.destroyed())
	}
	if again := mustSeed(t, s, keyA, ecs[0], 1); !bytes.Equal(again.Ciphertext, s1.Ciphertext) {
		t.Error("the recently used seed was evicted")
	}
	if again := mustSeed(t, s, keyA, ecs[1], 1); bytes.Equal(again.Ciphertext, s2.Ciphertext) {
		t.Error("the least recently used seed was not evicted")
	}
	// The decrypt cache has its own bound.
	for _, seed := range []*Seed{s1, s2} {
		ec := ecs[0]
		if seed == s2 {
			ec = ecs[1]
		}
		u, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ec)
		if err != nil {
			t.Fatal(err)
		}
		u.Destroy()
	}
	if st := s.Stats(); st.UnwrapEntries != 1 {
		t.Errorf("UnwrapEntries = %d, want 1", st.UnwrapEntries)
	}
}

func TestUnwrap(t *testing.T) {
	s, f, clock := newTestCache(t, SeedCacheConfig{DecryptMaxAge: time.Minute})
	seed := mustSeed(t, s, keyA, ecA, 1)
	for range 3 {
		u, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ecA)
		if err != nil {
			t.Fatal(err)
		}
		if !u.Equal(seed.Plaintext) {
			t.Fatal("Unwrap returned other bytes")
		}
		u.Destroy() // the caller's copy; the cache keeps its own
	}
	if f.decrypts.Load() != 1 {
		t.Errorf("Decrypt calls = %d, want 1", f.decrypts.Load())
	}
	// The context is part of the cache key: a wrong one is not served from cache.
	if _, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ecB); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("Unwrap with another context err = %v", err)
	}
	if _, err := s.Unwrap(bgctx, keyB, seed.Ciphertext, ecA); !errors.Is(err, ErrInvalidCiphertext) {
		t.Errorf("Unwrap with another key err = %v", err)
	}
	// Errors are not cached.
	if _, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ecB); err == nil {
		t.Error("second Unwrap with another context succeeded")
	}
	if f.decrypts.Load() != 4 {
		t.Errorf("Decrypt calls = %d, want 4", f.decrypts.Load())
	}
	clock.Advance(time.Minute)
	u, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ecA)
	if err != nil {
		t.Fatal(err)
	}
	u.Destroy()
	if f.decrypts.Load() != 5 {
		t.Errorf("Decrypt calls after DecryptMaxAge = %d, want 5", f.decrypts.Load())
	}
	st := s.Stats()
	if st.UnwrapHits != 2 || st.UnwrapMisses != 5 || st.Unwraps != 5 {
		t.Errorf("Stats = %+v", st)
	}

	// Single flight: 50 readers of one new ciphertext make one Decrypt.
	seed2 := mustSeed(t, s, keyA, ecB, 1)
	gate := make(chan struct{})
	f.setGate(gate)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			u, err := s.Unwrap(bgctx, keyA, seed2.Ciphertext, ecB)
			if err != nil || !u.Equal(seed2.Plaintext) {
				t.Errorf("concurrent Unwrap = %v", err)
			}
			u.Destroy()
		})
	}
	waitFor(t, func() bool { return s.Stats().UnwrapMisses == 55 })
	time.Sleep(10 * time.Millisecond)
	close(gate)
	wg.Wait()
	if f.decrypts.Load() != 6 {
		t.Errorf("Decrypt calls = %d, want 6", f.decrypts.Load())
	}
}

func TestUnwrapCacheOff(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{DecryptMaxEntries: -1})
	seed := mustSeed(t, s, keyA, ecA, 1)
	for range 3 {
		u, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ecA)
		if err != nil {
			t.Fatal(err)
		}
		u.Destroy()
	}
	if f.decrypts.Load() != 3 || s.Stats().UnwrapEntries != 0 {
		t.Errorf("Decrypt calls = %d, entries = %d; want 3, 0", f.decrypts.Load(), s.Stats().UnwrapEntries)
	}
}

// A waiter whose context ends returns at once with an error matching it; the
// shared call carries on for the others and is cached.
func TestSeedWaiterCancels(t *testing.T) {
	s, f, _ := newTestCache(t, SeedCacheConfig{})
	gate := make(chan struct{})
	f.setGate(gate)
	ctx, cancel := context.WithCancel(bgctx)
	errc := make(chan error)
	go func() { _, err := s.Seed(ctx, keyA, ecA, 1); errc <- err }()
	seedc := make(chan *Seed)
	go func() {
		seed, err := s.Seed(bgctx, keyA, ecA, 1)
		if err != nil {
			t.Error(err)
		}
		seedc <- seed
	}()
	waitFor(t, func() bool { return s.Stats().Misses == 2 })
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || IsEndpointFailure(err) || CodeOf(err) != CodeInternal {
		t.Errorf("cancelled waiter err = %v", err)
	}
	close(gate)
	seed := <-seedc
	defer seed.Destroy()
	if f.generates.Load() != 1 || s.Stats().Entries != 1 {
		t.Errorf("generates = %d, entries = %d; want 1, 1", f.generates.Load(), s.Stats().Entries)
	}
	// An already cancelled context fails before looking.
	if _, err := s.Seed(ctx, keyA, ecA, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Seed with a cancelled context err = %v", err)
	}
	if _, err := s.Unwrap(ctx, keyA, seed.Ciphertext, ecA); !errors.Is(err, context.Canceled) {
		t.Errorf("Unwrap with a cancelled context err = %v", err)
	}
}

// An idle cache destroys its secrets MaxAge after caching them, in real time.
func TestRealTimeExpiry(t *testing.T) {
	f := newFakeKMS()
	s := NewSeedCache(NewClient(WithProvider(SchemeLocal, f)), SeedCacheConfig{MaxAge: 30 * time.Millisecond, DecryptMaxAge: 30 * time.Millisecond})
	seed, err := s.Seed(bgctx, keyA, ecA, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Destroy()
	u, err := s.Unwrap(bgctx, keyA, seed.Ciphertext, ecA)
	if err != nil {
		t.Fatal(err)
	}
	u.Destroy()
	waitFor(t, func() bool { st := s.Stats(); return st.Entries == 0 && st.UnwrapEntries == 0 })
	if f.destroyed() != 2 {
		t.Errorf("destroyed = %d, want 2", f.destroyed())
	}
	if seed.Plaintext.Len() != DataKeySize {
		t.Error("the caller's copy was destroyed with the cache's")
	}
}

func TestCallersOwnTheirCopies(t *testing.T) {
	s, _, _ := newTestCache(t, SeedCacheConfig{})
	a := mustSeed(t, s, keyA, ecA, 1)
	want := bytes.Clone(a.Plaintext.Bytes())
	a.Plaintext.Destroy()
	a.Ciphertext[0] ^= 0xff
	b := mustSeed(t, s, keyA, ecA, 1)
	if !bytes.Equal(b.Plaintext.Bytes(), want) {
		t.Error("destroying one caller's seed changed the cached one")
	}
	if b.Ciphertext[0] == a.Ciphertext[0] {
		t.Error("callers share the ciphertext buffer")
	}
}

func TestSeedCacheMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	f := newFakeKMS()
	s := NewSeedCache(NewClient(WithProvider(SchemeLocal, f)), SeedCacheConfig{MaxUses: 2}, WithMeterProvider(mp))
	for range 3 {
		seed, err := s.Seed(bgctx, keyA, ecA, 1)
		if err != nil {
			t.Fatal(err)
		}
		seed.Destroy()
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(bgctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, dp := range points {
				label := m.Name
				for _, kv := range dp.Attributes.ToSlice() {
					label += " " + string(kv.Key) + "=" + kv.Value.Emit()
				}
				got[label] += dp.Value
			}
		}
	}
	want := map[string]int64{
		"keyward.kms.seed_cache.lookups cache=seed result=hit":    1,
		"keyward.kms.seed_cache.lookups cache=seed result=miss":   2,
		"keyward.kms.seed_cache.evictions cache=seed reason=uses": 1,
		"keyward.kms.seed_cache.entries cache=seed":               1,
		"keyward.kms.seed_cache.entries cache=unwrap":             0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
