// Package keystatus reads and writes the current status of every enrolled
// customer key in the KV bucket KW_KEY_STATUS, and keeps a watched in-memory
// copy so the encryptor and the phone-policy worker decide without I/O.
//
// The key-health-monitor is the writer; encryptors and phone-policy workers
// read. A key with no record is KeyStatusUnknown, which the encryption
// decision treats as usable: Keyward tries the key and learns from the call.
package keystatus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
)

// Record is one key's current status, the value stored in KW_KEY_STATUS.
type Record struct {
	TenantID string           `json:"tenant_id"`
	KeyURI   string           `json:"key_uri"`
	Status   events.KeyStatus `json:"status"`
	Previous events.KeyStatus `json:"previous,omitempty"`
	// Reason says why, in the provider's terms where there are any (e.g.
	// "key_disabled", "endpoint_unreachable").
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// Key is the KV key of a tenant's key: "<tenant>.<first 32 hex digits of
// SHA-256(key URI)>" (key URIs contain characters KV keys cannot). The tenant
// comes first so a watch can be filtered per tenant ("<tenant>.*").
func Key(tenantID, keyURI string) string {
	sum := sha256.Sum256([]byte(keyURI))
	return tenantID + "." + hex.EncodeToString(sum[:16])
}

// Put stores r (the monitor's write; also used by tests and ops tooling).
func Put(ctx context.Context, kv jetstream.KeyValue, r Record) error {
	if err := events.ValidateTenantID(r.TenantID); err != nil {
		return err
	}
	if r.KeyURI == "" || !r.Status.Valid() || r.Status == events.KeyStatusUnknown {
		return fmt.Errorf("keystatus: record for %s needs a key URI and a known status", r.TenantID)
	}
	if r.Since.IsZero() {
		r.Since = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, Key(r.TenantID, r.KeyURI), b); err != nil {
		return fmt.Errorf("keystatus: storing the status of a key of tenant %s: %w", r.TenantID, err)
	}
	return nil
}

// Cache is a watched copy of KW_KEY_STATUS.
type Cache struct {
	watcher jetstream.KeyWatcher
	log     *slog.Logger
	ready   chan struct{}
	done    chan struct{}

	mu       sync.RWMutex
	byKey    map[string]Record
	onChange []func(Record)
}

// NewCache starts watching kv. Use Ready to wait for the initial load.
func NewCache(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*Cache, error) {
	if log == nil {
		log = slog.Default()
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("keystatus: watching %s: %w", events.BucketKeyStatus, err)
	}
	c := &Cache{watcher: w, log: log, ready: make(chan struct{}), done: make(chan struct{}), byKey: map[string]Record{}}
	go c.run()
	return c, nil
}

// OnChange registers fn to run (on the watch goroutine) after every change
// that arrives after the initial load, e.g. to flush the seed cache of that
// key. Register before Ready closes to see every change.
func (c *Cache) OnChange(fn func(Record)) {
	c.mu.Lock()
	c.onChange = append(c.onChange, fn)
	c.mu.Unlock()
}

func (c *Cache) run() {
	defer close(c.done)
	loaded := false
	for e := range c.watcher.Updates() {
		if e == nil {
			if !loaded {
				loaded = true
				close(c.ready)
			}
			continue
		}
		var r Record
		switch e.Operation() {
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			c.mu.Lock()
			r = c.byKey[e.Key()]
			delete(c.byKey, e.Key())
			r.Status = events.KeyStatusUnknown
			c.mu.Unlock()
		default:
			if err := json.Unmarshal(e.Value(), &r); err != nil || !r.Status.Valid() {
				c.log.Warn("ignoring malformed key status record", "key", e.Key(), "error", errors.Join(err))
				continue
			}
			c.mu.Lock()
			c.byKey[e.Key()] = r
			c.mu.Unlock()
		}
		if loaded {
			c.mu.RLock()
			fns := c.onChange
			c.mu.RUnlock()
			for _, fn := range fns {
				fn(r)
			}
		}
	}
}

// Ready is closed once the bucket's current content is loaded.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Status returns the status of a tenant's key (KeyStatusUnknown if none).
func (c *Cache) Status(tenantID, keyURI string) events.KeyStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byKey[Key(tenantID, keyURI)].Status
}

// Get returns the full record of a tenant's key.
func (c *Cache) Get(tenantID, keyURI string) (Record, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.byKey[Key(tenantID, keyURI)]
	return r, ok
}

// Stop ends the watch.
func (c *Cache) Stop() error {
	err := c.watcher.Stop()
	<-c.done
	return err
}

// Parse decodes a KW_KEY_STATUS value.
func Parse(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("keystatus: malformed record: %w", err)
	}
	if !r.Status.Valid() {
		return r, fmt.Errorf("keystatus: unknown status %q", r.Status)
	}
	return r, nil
}
