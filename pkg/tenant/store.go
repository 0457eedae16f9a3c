package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
)

// Sentinel errors of the Store; match with errors.Is.
var (
	// ErrNotFound: no configuration is stored for the tenant.
	ErrNotFound = errors.New("tenant not found")
	// ErrConflict: the revision check failed: someone else updated (or
	// deleted) the configuration since it was read. Read it again and retry.
	ErrConflict = errors.New("tenant configuration changed concurrently")
	// ErrExists: Create of a tenant that already has a configuration.
	ErrExists = errors.New("tenant already exists")
	// ErrInvalidStored: the stored document cannot be decoded, is stored
	// under another tenant's key, or is invalid. Errors wrapping it also
	// wrap the decoding or validation error. Repair it with Store.Apply.
	ErrInvalidStored = errors.New("stored tenant configuration is invalid")
)

// DefaultModifyAttempts is how many read-modify-write rounds Modify makes
// before it gives up with ErrConflict.
const DefaultModifyAttempts = 10

type options struct {
	validate []ValidateOption
	logger   *slog.Logger
	now      func() time.Time
	attempts int
}

// Option configures a Store or a Cache; an option that does not apply to
// one is ignored by it.
type Option func(*options)

// WithValidateOptions sets how documents are validated (AllowLocalKeys,
// WithServiceCatalog). A Store validates every value it writes with all of
// them. Stored values read back (Get, List, Cache) are validated with them
// except the service catalog, so a service dropped from the platform's
// catalog does not make an enrolled tenant look unenrolled.
func WithValidateOptions(opts ...ValidateOption) Option {
	return func(o *options) { o.validate = append(o.validate, opts...) }
}

// WithLogger sets the logger of a Cache (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithClock sets the clock a Store stamps UpdatedAt with (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithModifyAttempts sets how many read-modify-write rounds Modify makes
// (default DefaultModifyAttempts; n < 1 means the default).
func WithModifyAttempts(n int) Option {
	return func(o *options) {
		if n >= 1 {
			o.attempts = n
		}
	}
}

func newOptions(opts []Option) options {
	o := options{logger: slog.Default(), now: time.Now, attempts: DefaultModifyAttempts}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// readValidation is the validation of stored values: the write options
// without the service catalog.
func (o options) readValidation() []ValidateOption {
	return append(slices.Clip(o.validate), WithServiceCatalog(nil))
}

// Store keeps tenant configurations in a JetStream KV bucket (KW_TENANTS),
// one key per tenant id. Every write is validated; updates are checked
// against the revision the configuration was read at. A Store is safe for
// concurrent use.
type Store struct {
	kv   jetstream.KeyValue
	o    options
	read []ValidateOption
}

// NewStore returns a Store over kv.
func NewStore(kv jetstream.KeyValue, opts ...Option) *Store {
	o := newOptions(opts)
	return &Store{kv: kv, o: o, read: o.readValidation()}
}

// OpenStore binds the existing KV bucket events.BucketTenants. It does not
// create the bucket: provisioning (events.Provision, run by keyward dev and
// the deployment's provisioning step) does.
func OpenStore(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	kv, err := js.KeyValue(ctx, events.BucketTenants)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open tenant store: KV bucket %s does not exist: run keyward dev or the provisioning step (events.Provision): %w",
			events.BucketTenants, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open tenant store: KV bucket %s: %w", events.BucketTenants, err)
	}
	return NewStore(kv, opts...), nil
}

// Get returns the tenant's configuration with Revision set. Errors wrap
// ErrNotFound, ErrInvalidStored, a *events.FieldError for a malformed tenant
// id, or a JetStream error.
func (s *Store) Get(ctx context.Context, tenantID string) (*Config, error) {
	c, err := s.get(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("get tenant %q: %w", tenantID, err)
	}
	return c, nil
}

func (s *Store) get(ctx context.Context, tenantID string) (*Config, error) {
	e, err := s.entry(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return decodeStored(tenantID, e.Value(), e.Revision(), s.read)
}

// entry reads the latest KV entry of the tenant.
func (s *Store) entry(ctx context.Context, tenantID string) (jetstream.KeyValueEntry, error) {
	if err := events.ValidateTenantID(tenantID); err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, tenantID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, ErrNotFound
	}
	return e, err
}

// decodeStored decodes and validates a stored document. Unknown fields are
// ignored, so a worker keeps reading documents written by a newer build.
func decodeStored(key string, value []byte, rev uint64, opts []ValidateOption) (*Config, error) {
	var c Config
	if err := json.Unmarshal(value, &c); err != nil {
		return nil, fmt.Errorf("%w (revision %d): not a JSON tenant document: %w", ErrInvalidStored, rev, err)
	}
	if c.TenantID != key {
		return nil, fmt.Errorf("%w (revision %d): tenant_id %q differs from its key", ErrInvalidStored, rev, clip(c.TenantID))
	}
	if err := Validate(&c, opts...); err != nil {
		return nil, fmt.Errorf("%w (revision %d): %w", ErrInvalidStored, rev, err)
	}
	c.Revision = rev
	return &c, nil
}

// prepare returns the copy of c to write, stamped with UpdatedAt, and its
// encoding. c is not changed.
func (s *Store) prepare(c *Config) (*Config, []byte, error) {
	if c == nil {
		return nil, nil, Validate(nil)
	}
	n := c.Clone()
	n.UpdatedAt = s.o.now().UTC()
	n.Revision = 0
	if err := Validate(n, s.o.validate...); err != nil {
		return nil, nil, err
	}
	data, err := json.Marshal(n)
	if err != nil {
		return nil, nil, err
	}
	return n, data, nil
}

func tenantOf(c *Config) string {
	if c == nil {
		return ""
	}
	return c.TenantID
}

// Create stores a new tenant configuration. It returns the stored copy
// (UpdatedAt and Revision set); c is not changed. Errors wrap ErrExists,
// events.ErrInvalid (validation), or a JetStream error.
func (s *Store) Create(ctx context.Context, c *Config) (*Config, error) {
	n, err := s.create(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("create tenant %q: %w", tenantOf(c), err)
	}
	return n, nil
}

func (s *Store) create(ctx context.Context, c *Config) (*Config, error) {
	n, data, err := s.prepare(c)
	if err != nil {
		return nil, err
	}
	return s.write(ctx, n, data, 0)
}

// write stores n (encoded as data): created when rev is 0, else updated
// checked against rev. It sets n.Revision.
func (s *Store) write(ctx context.Context, n *Config, data []byte, rev uint64) (*Config, error) {
	var err error
	if rev == 0 {
		rev, err = s.kv.Create(ctx, n.TenantID, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, ErrExists
		}
	} else {
		rev, err = s.kv.Update(ctx, n.TenantID, data, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, ErrConflict
		}
	}
	if err != nil {
		return nil, err
	}
	n.Revision = rev
	return n, nil
}

// Update replaces the tenant's configuration if it is still at c.Revision
// (the revision it was read at). It returns the stored copy with the new
// Revision; c is not changed. Errors wrap ErrConflict (someone else updated
// or deleted it: read again), events.ErrInvalid, or a JetStream error.
func (s *Store) Update(ctx context.Context, c *Config) (*Config, error) {
	n, err := s.update(ctx, c, revisionOf(c))
	if err != nil {
		return nil, fmt.Errorf("update tenant %q: %w", tenantOf(c), err)
	}
	return n, nil
}

func revisionOf(c *Config) uint64 {
	if c == nil {
		return 0
	}
	return c.Revision
}

func (s *Store) update(ctx context.Context, c *Config, rev uint64) (*Config, error) {
	if rev == 0 && c != nil {
		return nil, errors.New("no revision to check against: update a configuration read with Get, or use Create or Apply")
	}
	n, data, err := s.prepare(c)
	if err != nil {
		return nil, err
	}
	return s.write(ctx, n, data, rev)
}

// Apply stores c as the tenant's whole configuration: it creates it, or
// updates it checked against the revision read just before (c.Revision is
// ignored). It is what `keyward tenant apply` does, and it can replace a
// stored document that is invalid. It returns the stored copy. Errors wrap
// ErrConflict (a concurrent write came between the read and the write),
// events.ErrInvalid, or a JetStream error.
func (s *Store) Apply(ctx context.Context, c *Config) (*Config, error) {
	n, err := s.apply(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("apply tenant %q: %w", tenantOf(c), err)
	}
	return n, nil
}

func (s *Store) apply(ctx context.Context, c *Config) (*Config, error) {
	n, data, err := s.prepare(c)
	if err != nil {
		return nil, err
	}
	var rev uint64 // 0: create
	e, err := s.entry(ctx, n.TenantID)
	switch {
	case err == nil:
		rev = e.Revision()
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	n, err = s.write(ctx, n, data, rev)
	if errors.Is(err, ErrExists) {
		// Created by someone else since the read.
		return nil, ErrConflict
	}
	return n, err
}

// Modify changes the tenant's configuration with fn in a read-modify-write
// loop: it reads the configuration, calls fn on a private copy, validates
// the result and updates it checked against the revision read. When another
// writer came first it reads again and calls fn again, up to the Store's
// attempt limit (WithModifyAttempts), waiting a few random milliseconds
// between rounds; fn must therefore be safe to call more than once. fn may
// repair a stored document that is invalid but not one that is not JSON
// (use Apply). It must not change TenantID. Errors wrap ErrNotFound,
// ErrConflict (attempts exhausted), ErrInvalidStored, the error of fn,
// events.ErrInvalid, a context error or a JetStream error.
func (s *Store) Modify(ctx context.Context, tenantID string, fn func(*Config) error) (*Config, error) {
	n, err := s.modify(ctx, tenantID, fn)
	if err != nil {
		return nil, fmt.Errorf("modify tenant %q: %w", tenantID, err)
	}
	return n, nil
}

func (s *Store) modify(ctx context.Context, tenantID string, fn func(*Config) error) (*Config, error) {
	for attempt := 1; ; attempt++ {
		e, err := s.entry(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		var c Config
		if err := json.Unmarshal(e.Value(), &c); err != nil {
			return nil, fmt.Errorf("%w (revision %d): not a JSON tenant document: %w", ErrInvalidStored, e.Revision(), err)
		}
		c.TenantID = tenantID
		c.Revision = e.Revision()
		if err := fn(&c); err != nil {
			return nil, err
		}
		if c.TenantID != tenantID {
			return nil, fmt.Errorf("the change renames the tenant to %q: tenant ids cannot change", clip(c.TenantID))
		}
		n, err := s.update(ctx, &c, e.Revision())
		if !errors.Is(err, ErrConflict) {
			return n, err
		}
		if attempt >= s.o.attempts {
			return nil, fmt.Errorf("%w: gave up after %d attempts", ErrConflict, attempt)
		}
		wait := time.Duration(rand.Int64N(int64(attempt) * int64(5*time.Millisecond)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Delete removes the tenant's configuration (a delete marker; the KV history
// keeps earlier revisions). From then on the tenant is not enrolled: its new
// assets go to the platform key. Errors wrap ErrNotFound, ErrConflict (it
// changed between the read and the delete), or a JetStream error.
func (s *Store) Delete(ctx context.Context, tenantID string) error {
	e, err := s.entry(ctx, tenantID)
	if err == nil {
		err = s.kv.Delete(ctx, tenantID, jetstream.LastRevision(e.Revision()))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			err = ErrConflict
		}
	}
	if err != nil {
		return fmt.Errorf("delete tenant %q: %w", tenantID, err)
	}
	return nil
}

// List returns every stored configuration, sorted by tenant id, read in one
// pass over the bucket. Stored documents that are invalid are left out and
// reported in the error, which then wraps ErrInvalidStored and names each
// tenant; the valid configurations are returned with it. Any other error
// returns no configurations.
func (s *Store) List(ctx context.Context) ([]*Config, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer w.Stop()
	var (
		list []*Config
		bad  []error
	)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list tenants: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("list tenants: the watch ended early (connection closed?)")
			}
			if e == nil {
				slices.SortFunc(list, func(a, b *Config) int { return strings.Compare(a.TenantID, b.TenantID) })
				if len(bad) > 0 {
					return list, fmt.Errorf("list tenants: %w", errors.Join(bad...))
				}
				return list, nil
			}
			c, err := decodeStored(e.Key(), e.Value(), e.Revision(), s.read)
			if err != nil {
				bad = append(bad, fmt.Errorf("tenant %q: %w", e.Key(), err))
				continue
			}
			list = append(list, c)
		}
	}
}
