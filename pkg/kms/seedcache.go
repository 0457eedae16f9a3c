package kms

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/singleflight"
)

// Defaults of SeedCacheConfig. See docs/kms.md for the reasoning in full.
const (
	// DefaultSeedMaxAge bounds how long a revoked key keeps encrypting new
	// assets when no key status event flushes the cache (FlushKey), and how
	// long a seed's plaintext stays in memory.
	DefaultSeedMaxAge = 5 * time.Minute
	// DefaultSeedMaxUses: ≤ 0.01 KMS calls per asset needs ≥ 100 assets
	// per seed; 4096 gives ~0.00025 under load while bounding what one
	// leaked seed exposes to 4096 assets, far inside Cobblestone-256's 2^35
	// messages per input key.
	DefaultSeedMaxUses int64 = 4096
	// DefaultSeedMaxBytes bounds the plaintext encrypted under one seed to
	// 16 GiB: a leaked seed exposes at most that, and it is far inside
	// Cobblestone-256's per-input-key limits (2^35 messages of up to 32 GiB).
	DefaultSeedMaxBytes int64 = 16 << 30
	// DefaultSeedMaxEntries bounds the seeds held: one per (key, context),
	// i.e. per tenant key in use; each costs a few hundred bytes.
	DefaultSeedMaxEntries = 10000
	// DefaultDecryptMaxAge bounds how long an unwrapped seed is reused for
	// reading (and how long a revoked key keeps decrypting without a flush).
	DefaultDecryptMaxAge = 5 * time.Minute
	// DefaultDecryptMaxEntries bounds the unwrapped seeds held.
	DefaultDecryptMaxEntries = 10000
)

// SeedCacheConfig bounds a SeedCache. Zero fields take the defaults
// (DefaultSeedCacheConfig); negative values are treated as zero, except
// that a negative DecryptMaxAge or DecryptMaxEntries turns the decrypt cache
// off (every Unwrap calls the KMS).
type SeedCacheConfig struct {
	// MaxAge: a seed is not handed out once this old (per the cache's clock).
	MaxAge time.Duration
	// MaxUses: a seed is handed out at most this many times (assets).
	MaxUses int64
	// MaxBytes: a seed encrypts at most this many plaintext bytes in total.
	MaxBytes int64
	// MaxEntries: at most this many seeds are cached; the least recently
	// used is evicted (and destroyed) beyond it.
	MaxEntries int
	// DecryptMaxAge: an unwrapped seed is reused for this long.
	DecryptMaxAge time.Duration
	// DecryptMaxEntries: at most this many unwrapped seeds are cached (LRU).
	DecryptMaxEntries int
}

// DefaultSeedCacheConfig returns the default bounds: MaxAge 5m, MaxUses
// 4096, MaxBytes 16 GiB, MaxEntries 10000, DecryptMaxAge 5m,
// DecryptMaxEntries 10000.
func DefaultSeedCacheConfig() SeedCacheConfig {
	return SeedCacheConfig{
		MaxAge:            DefaultSeedMaxAge,
		MaxUses:           DefaultSeedMaxUses,
		MaxBytes:          DefaultSeedMaxBytes,
		MaxEntries:        DefaultSeedMaxEntries,
		DecryptMaxAge:     DefaultDecryptMaxAge,
		DecryptMaxEntries: DefaultDecryptMaxEntries,
	}
}

func (c SeedCacheConfig) withDefaults() SeedCacheConfig {
	d := DefaultSeedCacheConfig()
	if c.MaxAge <= 0 {
		c.MaxAge = d.MaxAge
	}
	if c.MaxUses <= 0 {
		c.MaxUses = d.MaxUses
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = d.MaxEntries
	}
	if c.DecryptMaxAge == 0 {
		c.DecryptMaxAge = d.DecryptMaxAge
	}
	if c.DecryptMaxEntries == 0 {
		c.DecryptMaxEntries = d.DecryptMaxEntries
	}
	return c
}

// SeedCacheOption configures NewSeedCache: WithClock, WithMeterProvider.
type SeedCacheOption interface{ applySeedCache(*seedCacheOptions) }

type seedCacheOptionFunc func(*seedCacheOptions)

func (f seedCacheOptionFunc) applySeedCache(o *seedCacheOptions) { f(o) }

type seedCacheOptions struct {
	now func() time.Time
	mp  metric.MeterProvider
}

// WithClock sets the clock deciding a cached seed's age (default time.Now).
// Independently, a real-time timer destroys every entry MaxAge (or
// DecryptMaxAge) after it was cached, so an idle cache holds no old secrets.
func WithClock(now func() time.Time) SeedCacheOption {
	return seedCacheOptionFunc(func(o *seedCacheOptions) {
		if now != nil {
			o.now = now
		}
	})
}

// Seed is a KMS-wrapped 32-byte seed handed out for one asset. Each asset
// derives its own key from Plaintext (HKDF with a fresh salt) and stores
// Ciphertext, KeyVersion and KeyURI next to its data.
type Seed struct {
	Plaintext  *Secret // the caller's own copy: Destroy it when done
	Ciphertext []byte  // the seed wrapped under KeyURI (the caller's own copy)
	KeyVersion string  // version of the key that wrapped it
	KeyURI     KeyURI  // the key that wrapped it
}

// Destroy destroys the plaintext. It is safe on nil.
func (s *Seed) Destroy() {
	if s != nil {
		s.Plaintext.Destroy()
	}
}

// SeedCacheStats counts a SeedCache's activity since NewSeedCache.
type SeedCacheStats struct {
	Hits          int64 // Seed calls served from the cache
	Misses        int64 // Seed calls that waited for a GenerateDataKey (own or shared)
	Generates     int64 // GenerateDataKey calls made (success or not)
	UnwrapHits    int64 // Unwrap calls served from the cache
	UnwrapMisses  int64 // Unwrap calls that waited for a Decrypt (own or shared)
	Unwraps       int64 // Decrypt calls made (success or not)
	Evictions     int64 // entries removed and destroyed (age, uses, bytes, capacity, flush, replaced)
	Entries       int64 // seeds cached now
	UnwrapEntries int64 // unwrapped seeds cached now
}

// SeedCache hands out KMS-wrapped seeds for encryption and caches unwrapped
// seeds for reading, so that many assets cost one KMS call. It is bounded by
// age, uses, bytes and entries, single-flight per (key, context), and
// flushable per key. It is safe for concurrent use.
//
// Errors are never cached. Every error is an *Error (see CodeOf); a caller
// whose context ends while waiting gets an error matching ctx.Err(), while
// the shared KMS call continues for the others.
type SeedCache struct {
	client *Client
	cfg    SeedCacheConfig
	now    func() time.Time
	sf     singleflight.Group

	mu     sync.Mutex
	enc    map[string]*cacheEntry
	encLRU list.List
	dec    map[string]*cacheEntry
	decLRU list.List
	epoch  uint64 // incremented by every flush; results of calls started before are discarded

	hits, misses, generates           atomic.Int64
	unwrapHits, unwrapMisses, unwraps atomic.Int64
	evictions, encEntries, decEntries atomic.Int64

	mLookups, mEvictions          metric.Int64Counter
	attrSeedHit, attrSeedMiss     metric.MeasurementOption
	attrUnwrapHit, attrUnwrapMiss metric.MeasurementOption
}

// cacheKind names the two caches in metrics ("cache" label).
const (
	kindSeed   = "seed"
	kindUnwrap = "unwrap"
)

// Eviction reasons ("reason" label).
const (
	reasonAge      = "age"
	reasonUses     = "uses"
	reasonBytes    = "bytes"
	reasonCapacity = "capacity"
	reasonFlush    = "flush"
	reasonReplaced = "replaced"
)

type cacheEntry struct {
	id          string
	kind        string
	key         KeyURI
	unversioned string // key.Unversioned().String(), matched by FlushKey
	secret      *Secret
	ciphertext  []byte // seeds only
	version     string // seeds only
	created     time.Time
	uses, bytes int64 // seeds only; guarded by SeedCache.mu
	elem        *list.Element
	timer       *time.Timer
	dead        bool // removed and destroyed; guarded by SeedCache.mu
}

// errFlushed is returned by a shared KMS call whose result was discarded
// because the cache was flushed while it ran; the waiters start over.
var errFlushed = errors.New("kms: seed cache flushed during the call")

// NewSeedCache returns a cache making its KMS calls through c.
func NewSeedCache(c *Client, cfg SeedCacheConfig, opts ...SeedCacheOption) *SeedCache {
	o := seedCacheOptions{now: time.Now}
	for _, opt := range opts {
		if opt != nil {
			opt.applySeedCache(&o)
		}
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	s := &SeedCache{
		client: c,
		cfg:    cfg.withDefaults(),
		now:    o.now,
		enc:    map[string]*cacheEntry{},
		dec:    map[string]*cacheEntry{},
	}
	s.encLRU.Init()
	s.decLRU.Init()
	meter := o.mp.Meter(instrumentationName)
	s.mLookups, _ = meter.Int64Counter("keyward.kms.seed_cache.lookups",
		metric.WithDescription("Seed cache lookups by cache (seed: for encryption, unwrap: for reading) and result (hit, miss)."),
		metric.WithUnit("{lookup}"))
	s.mEvictions, _ = meter.Int64Counter("keyward.kms.seed_cache.evictions",
		metric.WithDescription("Seed cache entries removed and destroyed, by cache and reason (age, uses, bytes, capacity, flush, replaced)."),
		metric.WithUnit("{entry}"))
	entries, _ := meter.Int64ObservableGauge("keyward.kms.seed_cache.entries",
		metric.WithDescription("Seed cache entries held, by cache."),
		metric.WithUnit("{entry}"))
	seedAttr := metric.WithAttributes(attribute.String("cache", kindSeed))
	unwrapAttr := metric.WithAttributes(attribute.String("cache", kindUnwrap))
	_, _ = meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		obs.ObserveInt64(entries, s.encEntries.Load(), seedAttr)
		obs.ObserveInt64(entries, s.decEntries.Load(), unwrapAttr)
		return nil
	}, entries)
	s.attrSeedHit = metric.WithAttributes(attribute.String("cache", kindSeed), attribute.String("result", "hit"))
	s.attrSeedMiss = metric.WithAttributes(attribute.String("cache", kindSeed), attribute.String("result", "miss"))
	s.attrUnwrapHit = metric.WithAttributes(attribute.String("cache", kindUnwrap), attribute.String("result", "hit"))
	s.attrUnwrapMiss = metric.WithAttributes(attribute.String("cache", kindUnwrap), attribute.String("result", "miss"))
	return s
}

// Config returns the bounds in effect (defaults applied).
func (s *SeedCache) Config() SeedCacheConfig { return s.cfg }

// Seed returns a seed for encrypting one asset of plaintextBytes bytes under
// key with ec. It reuses the cached seed of (key, ec) unless that is past
// MaxAge, has been handed out MaxUses times, or would exceed MaxBytes with
// this asset; then it generates one (GenerateDataKey) and caches it.
// Concurrent callers for the same (key, ec) share one KMS call, also when the
// seed expires under load. Use accounting is atomic: a seed is never handed
// out more than MaxUses times nor for more than MaxBytes in total.
//
// An asset larger than MaxBytes gets a seed of its own, not cached. The
// caller owns the returned Plaintext and must Destroy it. Errors are the
// Client's (*Error); plaintextBytes < 0 is CodeInvalidArgument.
func (s *SeedCache) Seed(ctx context.Context, key KeyURI, ec EncryptionContext, plaintextBytes int64) (*Seed, error) {
	if plaintextBytes < 0 {
		return nil, s.client.newError(CodeInvalidArgument, "Seed", key, fmt.Errorf("plaintext size %d is negative", plaintextBytes))
	}
	if ctx.Err() != nil {
		return nil, s.client.canceledError(OpGenerateDataKey, key, ctx)
	}
	if plaintextBytes > s.cfg.MaxBytes {
		s.misses.Add(1)
		s.mLookups.Add(ctx, 1, s.attrSeedMiss)
		s.generates.Add(1)
		dk, err := s.client.GenerateDataKey(ctx, key, ec)
		if err != nil {
			return nil, err
		}
		return &Seed{Plaintext: dk.Plaintext, Ciphertext: dk.Ciphertext, KeyVersion: dk.KeyVersion, KeyURI: key}, nil
	}

	id := key.String() + "\x00" + string(ec.Canonical())
	missed := false
	var ecCopy EncryptionContext
	for {
		s.mu.Lock()
		if e := s.enc[id]; e != nil {
			reason := s.exhausted(e, plaintextBytes)
			if reason == "" {
				seed := s.takeLocked(e, plaintextBytes)
				s.encLRU.MoveToFront(e.elem)
				s.mu.Unlock()
				if !missed {
					s.hits.Add(1)
					s.mLookups.Add(ctx, 1, s.attrSeedHit)
				}
				return seed, nil
			}
			s.removeLocked(e, reason)
		}
		epoch := s.epoch
		s.mu.Unlock()

		if !missed {
			missed = true
			s.misses.Add(1)
			s.mLookups.Add(ctx, 1, s.attrSeedMiss)
			ecCopy = ec.Clone() // the shared call may outlive this caller
		}
		// The shared call runs without the first caller's cancellation (the
		// Client's per-call timeout still bounds it), so one caller giving up
		// does not fail the others.
		callCtx := context.WithoutCancel(ctx)
		ch := s.sf.DoChan("s"+strconv.FormatUint(epoch, 10)+"\x00"+id, func() (any, error) {
			return s.generate(callCtx, key, ecCopy, id, epoch)
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				if errors.Is(r.Err, errFlushed) {
					continue
				}
				return nil, r.Err
			}
			e := r.Val.(*cacheEntry)
			s.mu.Lock()
			if !e.dead && s.exhausted(e, plaintextBytes) == "" {
				seed := s.takeLocked(e, plaintextBytes)
				s.mu.Unlock()
				return seed, nil
			}
			s.mu.Unlock()
			// Used up by the other waiters already (tiny MaxUses or
			// MaxBytes): start over.
		case <-ctx.Done():
			return nil, s.client.canceledError(OpGenerateDataKey, key, ctx)
		}
	}
}

// exhausted returns why e cannot serve an asset of n bytes, or "".
func (s *SeedCache) exhausted(e *cacheEntry, n int64) string {
	switch {
	case s.now().Sub(e.created) >= s.cfg.MaxAge:
		return reasonAge
	case e.uses >= s.cfg.MaxUses:
		return reasonUses
	case e.bytes+n > s.cfg.MaxBytes:
		return reasonBytes
	}
	return ""
}

// takeLocked accounts one use of e for n bytes and returns the caller's copy.
func (s *SeedCache) takeLocked(e *cacheEntry, n int64) *Seed {
	e.uses++
	e.bytes += n
	return &Seed{
		Plaintext:  e.secret.Clone(),
		Ciphertext: append([]byte(nil), e.ciphertext...),
		KeyVersion: e.version,
		KeyURI:     e.key,
	}
}

// generate is the shared KMS call of Seed: it generates a data key and caches
// it, unless the cache was flushed meanwhile.
func (s *SeedCache) generate(ctx context.Context, key KeyURI, ec EncryptionContext, id string, epoch uint64) (*cacheEntry, error) {
	// A caller that looked before the previous shared call finished may
	// start a new one: serve it the fresh entry instead of calling the KMS.
	s.mu.Lock()
	if e := s.enc[id]; e != nil && s.epoch == epoch && s.exhausted(e, 0) == "" {
		s.mu.Unlock()
		return e, nil
	}
	s.mu.Unlock()
	s.generates.Add(1)
	dk, err := s.client.GenerateDataKey(ctx, key, ec)
	if err != nil {
		return nil, err
	}
	e := &cacheEntry{
		id:          id,
		kind:        kindSeed,
		key:         key,
		unversioned: key.Unversioned().String(),
		secret:      dk.Plaintext,
		ciphertext:  dk.Ciphertext,
		version:     dk.KeyVersion,
		created:     s.now(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		dk.Destroy()
		return nil, errFlushed
	}
	s.insertLocked(e, s.enc, &s.encLRU, s.cfg.MaxEntries, s.cfg.MaxAge)
	return e, nil
}

// Unwrap decrypts a wrapped seed for reading. Results are cached by (key, ec,
// SHA-256 of ciphertext) for DecryptMaxAge, and concurrent callers for the
// same ciphertext share one KMS call. The caller owns the returned Secret and
// must Destroy it. Errors are the Client's (*Error) and are never cached.
func (s *SeedCache) Unwrap(ctx context.Context, key KeyURI, ciphertext []byte, ec EncryptionContext) (*Secret, error) {
	if ctx.Err() != nil {
		return nil, s.client.canceledError(OpDecrypt, key, ctx)
	}
	if s.cfg.DecryptMaxAge < 0 || s.cfg.DecryptMaxEntries < 0 {
		s.unwrapMisses.Add(1)
		s.mLookups.Add(ctx, 1, s.attrUnwrapMiss)
		s.unwraps.Add(1)
		return s.client.Decrypt(ctx, key, ciphertext, ec)
	}
	sum := sha256.Sum256(ciphertext)
	id := key.String() + "\x00" + string(ec.Canonical()) + "\x00" + string(sum[:])
	missed := false
	var ecCopy EncryptionContext
	var ctCopy []byte
	for {
		s.mu.Lock()
		if e := s.dec[id]; e != nil {
			if s.now().Sub(e.created) < s.cfg.DecryptMaxAge {
				sec := e.secret.Clone()
				s.decLRU.MoveToFront(e.elem)
				s.mu.Unlock()
				if !missed {
					s.unwrapHits.Add(1)
					s.mLookups.Add(ctx, 1, s.attrUnwrapHit)
				}
				return sec, nil
			}
			s.removeLocked(e, reasonAge)
		}
		epoch := s.epoch
		s.mu.Unlock()

		if !missed {
			missed = true
			s.unwrapMisses.Add(1)
			s.mLookups.Add(ctx, 1, s.attrUnwrapMiss)
			ecCopy = ec.Clone()
			ctCopy = append([]byte(nil), ciphertext...)
		}
		callCtx := context.WithoutCancel(ctx)
		ch := s.sf.DoChan("u"+strconv.FormatUint(epoch, 10)+"\x00"+id, func() (any, error) {
			return s.unwrap(callCtx, key, ctCopy, ecCopy, id, epoch)
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				if errors.Is(r.Err, errFlushed) {
					continue
				}
				return nil, r.Err
			}
			e := r.Val.(*cacheEntry)
			s.mu.Lock()
			if !e.dead {
				sec := e.secret.Clone()
				s.mu.Unlock()
				return sec, nil
			}
			s.mu.Unlock()
			// Evicted before this waiter copied it: start over.
		case <-ctx.Done():
			return nil, s.client.canceledError(OpDecrypt, key, ctx)
		}
	}
}

// unwrap is the shared KMS call of Unwrap.
func (s *SeedCache) unwrap(ctx context.Context, key KeyURI, ciphertext []byte, ec EncryptionContext, id string, epoch uint64) (*cacheEntry, error) {
	s.mu.Lock()
	if e := s.dec[id]; e != nil && s.epoch == epoch && s.now().Sub(e.created) < s.cfg.DecryptMaxAge {
		s.mu.Unlock()
		return e, nil
	}
	s.mu.Unlock()
	s.unwraps.Add(1)
	sec, err := s.client.Decrypt(ctx, key, ciphertext, ec)
	if err != nil {
		return nil, err
	}
	e := &cacheEntry{
		id:          id,
		kind:        kindUnwrap,
		key:         key,
		unversioned: key.Unversioned().String(),
		secret:      sec,
		created:     s.now(),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		sec.Destroy()
		return nil, errFlushed
	}
	s.insertLocked(e, s.dec, &s.decLRU, s.cfg.DecryptMaxEntries, s.cfg.DecryptMaxAge)
	return e, nil
}

// insertLocked caches e (replacing an entry with the same id), evicts the
// least recently used entries beyond max, and arms e's expiry timer.
func (s *SeedCache) insertLocked(e *cacheEntry, m map[string]*cacheEntry, lru *list.List, maxEntries int, maxAge time.Duration) {
	if old := m[e.id]; old != nil {
		s.removeLocked(old, reasonReplaced) // only when the old one was past its bounds
	}
	m[e.id] = e
	e.elem = lru.PushFront(e)
	s.entriesCounter(e.kind).Add(1)
	for lru.Len() > maxEntries {
		s.removeLocked(lru.Back().Value.(*cacheEntry), reasonCapacity)
	}
	e.timer = time.AfterFunc(maxAge, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !e.dead {
			s.removeLocked(e, reasonAge)
		}
	})
}

// removeLocked drops e from its cache and destroys its secret.
func (s *SeedCache) removeLocked(e *cacheEntry, reason string) {
	if e.dead {
		return
	}
	e.dead = true
	if e.kind == kindSeed {
		delete(s.enc, e.id)
		s.encLRU.Remove(e.elem)
	} else {
		delete(s.dec, e.id)
		s.decLRU.Remove(e.elem)
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	e.secret.Destroy()
	s.entriesCounter(e.kind).Add(-1)
	s.evictions.Add(1)
	s.mEvictions.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("cache", e.kind), attribute.String("reason", reason)))
}

func (s *SeedCache) entriesCounter(kind string) *atomic.Int64 {
	if kind == kindSeed {
		return &s.encEntries
	}
	return &s.decEntries
}

// FlushKey drops and destroys every seed and unwrapped seed of key, in all
// its versions (entries whose key's Unversioned() matches). Call it when the
// key's status changes. KMS calls in flight when it runs are not cached:
// their waiters start over with a fresh call.
func (s *SeedCache) FlushKey(key KeyURI) {
	unv := key.Unversioned().String()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	for _, m := range []map[string]*cacheEntry{s.enc, s.dec} {
		for _, e := range m {
			if e.unversioned == unv {
				s.removeLocked(e, reasonFlush)
			}
		}
	}
}

// Flush drops and destroys every entry.
func (s *SeedCache) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	for _, m := range []map[string]*cacheEntry{s.enc, s.dec} {
		for _, e := range m {
			s.removeLocked(e, reasonFlush)
		}
	}
}

// Stats returns a snapshot of the cache's counters.
func (s *SeedCache) Stats() SeedCacheStats {
	return SeedCacheStats{
		Hits:          s.hits.Load(),
		Misses:        s.misses.Load(),
		Generates:     s.generates.Load(),
		UnwrapHits:    s.unwrapHits.Load(),
		UnwrapMisses:  s.unwrapMisses.Load(),
		Unwraps:       s.unwraps.Load(),
		Evictions:     s.evictions.Load(),
		Entries:       s.encEntries.Load(),
		UnwrapEntries: s.decEntries.Load(),
	}
}
