package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cache is an in-memory copy of every tenant configuration in the KV
// bucket, kept current by a watch, so workers decide per asset without I/O.
//
// Each update replaces a tenant's *Config with a new one; a *Config handed
// out by Get is never changed afterwards, so it can be read without locks.
// Callers must not change it either (Clone it first).
//
// A stored document that cannot be decoded or is invalid (see
// WithValidateOptions) is logged at warning level with the tenant key, the
// revision and the problem, never its content, and skipped: the tenant keeps
// its last valid configuration, or stays absent. A corrupt write therefore
// never silently moves a tenant off its customer key.
type Cache struct {
	w      jetstream.KeyWatcher
	bucket string
	log    *slog.Logger
	read   []ValidateOption
	ready  chan struct{}
	done   chan struct{} // closed when the watch loop has ended

	mu       sync.RWMutex
	configs  map[string]*Config
	onChange []func(tenantID string)

	stopOnce sync.Once
	stopErr  error
	stopped  chan struct{} // closed by Stop
}

// NewCache starts watching every key of kv (the KW_TENANTS bucket). Ready is
// closed once the values present at the start are loaded. The watch runs
// until Stop is called or ctx is done; the cache keeps its last values after
// that. Options used: WithValidateOptions, WithLogger.
func NewCache(ctx context.Context, kv jetstream.KeyValue, opts ...Option) (*Cache, error) {
	o := newOptions(opts)
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch tenant configurations: %w", err)
	}
	c := &Cache{
		w:       w,
		bucket:  kv.Bucket(),
		log:     o.logger,
		read:    o.readValidation(),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		configs: make(map[string]*Config),
		stopped: make(chan struct{}),
	}
	go c.run(ctx)
	go func() {
		select {
		case <-ctx.Done():
			_ = c.Stop()
		case <-c.done:
		}
	}()
	return c, nil
}

func (c *Cache) run(ctx context.Context) {
	defer close(c.done)
	loaded := false
	// Range until the watcher's channel is closed (after Stop, or when the
	// connection closes), so the watcher's delivery never blocks on us.
	for e := range c.w.Updates() {
		if e == nil {
			if !loaded {
				loaded = true
				close(c.ready)
			}
			continue
		}
		c.apply(e)
	}
	select {
	case <-c.stopped:
	case <-ctx.Done():
	default:
		c.log.Warn("tenant configuration watch ended; serving the last values", "bucket", c.bucket)
	}
}

func (c *Cache) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		c.mu.Lock()
		delete(c.configs, key)
		c.mu.Unlock()
		return
	}
	cfg, err := decodeStored(key, e.Value(), e.Revision(), c.read)
	if err != nil {
		c.log.Warn("skipping invalid tenant configuration",
			"bucket", c.bucket, "tenant", key, "revision", e.Revision(), "err", err)
		return
	}
	c.mu.Lock()
	c.configs[key] = cfg
	fns := c.onChange
	c.mu.Unlock()
	for _, fn := range fns {
		fn(key)
	}
}

// OnChange registers fn to be called, on the watch goroutine, after each
// valid configuration is stored in the cache (also for the initial values).
// fn must not block.
func (c *Cache) OnChange(fn func(tenantID string)) {
	c.mu.Lock()
	c.onChange = append(c.onChange, fn)
	c.mu.Unlock()
}

// IDs returns the ids of every tenant with a configuration, in no order.
func (c *Cache) IDs() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ids := make([]string, 0, len(c.configs))
	for id := range c.configs {
		ids = append(ids, id)
	}
	return ids
}

// Ready is closed once the configurations present when the watch started
// are loaded (the watcher's end-of-initial-values marker).
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Get returns the tenant's current configuration, or false when it has none
// (not enrolled, deleted, or only invalid documents stored). The result is
// shared and must not be changed.
func (c *Cache) Get(tenantID string) (*Config, bool) {
	c.mu.RLock()
	cfg, ok := c.configs[tenantID]
	c.mu.RUnlock()
	return cfg, ok
}

// Len returns the number of tenants with a configuration.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.configs)
}

// Stop ends the watch and waits for the watch loop to finish. The cache
// keeps serving its last values. It is safe to call more than once.
func (c *Cache) Stop() error {
	c.stopOnce.Do(func() {
		close(c.stopped)
		err := c.w.Stop()
		if errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConsumerNotFound) || errors.Is(err, nats.ErrConnectionClosed) {
			// The watch had already ended: its context was done (the
			// client then removes the consumer) or the connection closed.
			err = nil
		}
		c.stopErr = err
		<-c.done
	})
	return c.stopErr
}
