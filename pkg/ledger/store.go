package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// SchemaVersion is the layout version this build reads and writes: the
// value of meta/"schema_version" and the first byte of every stored record.
const SchemaVersion = 1

// Sentinel errors. Every error the package returns wraps one of these, a
// context error, or a bbolt/OS error, with context naming the operation and
// the tenant/asset or file; match with errors.Is.
var (
	// ErrNotFound: no record for the tenant/asset (Get).
	ErrNotFound = errors.New("record not found")
	// ErrSchemaTooNew: the file was written by a newer build (Open), or a
	// value carries a newer version byte.
	ErrSchemaTooNew = errors.New("schema version too new")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalidRecord: a record, identifier, mode, cursor name or scan
	// option is invalid; errors.As with *InvalidRecordError gives the field.
	ErrInvalidRecord = errors.New("invalid record")
	// ErrLocked: another process (or another Store in this one) holds the
	// file (Open). The error also wraps bbolt.ErrTimeout.
	ErrLocked = errors.New("ledger file locked")
	// ErrCorrupt: a stored value, index entry or meta key cannot be decoded
	// or disagrees with the rest. The ledger should be Reset and rebuilt
	// from KW_ASSETS.
	ErrCorrupt = errors.New("ledger data corrupt")
)

// DefaultOpenTimeout is how long Open waits for the file lock.
const DefaultOpenTimeout = time.Second

const sep = 0x00

var (
	bucketMeta   = []byte("meta")
	bucketAssets = []byte("assets")
	bucketByKey  = []byte("by_key")
	bucketByMode = []byte("by_mode")

	metaSchemaVersion = []byte("schema_version")
	metaCursorPrefix  = []byte("cursor\x00")

	emptyValue = []byte{}
)

// defaultScanChunk is how many records a scan reads per read transaction.
const defaultScanChunk = 256

type options struct {
	openTimeout time.Duration
	migrations  []Migration
	now         func() time.Time
}

// Option configures Open.
type Option func(*options)

// WithOpenTimeout sets how long Open waits for the file lock before failing
// with ErrLocked (default DefaultOpenTimeout). d <= 0 means the default:
// Open never waits forever.
func WithOpenTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.openTimeout = d
		}
	}
}

// WithMigrations registers the migrations Open may run (see Migration).
func WithMigrations(m ...Migration) Option {
	return func(o *options) { o.migrations = append(o.migrations, m...) }
}

// WithClock sets the clock used for Record.UpdatedAt (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// Migration upgrades a file from schema version From to From+1. Open runs
// every migration from the stored version up to SchemaVersion, then creates
// missing buckets and stores SchemaVersion, all in one transaction: either
// the file is fully upgraded or it is untouched.
type Migration struct {
	From  int
	Apply func(tx *bbolt.Tx) error
}

// Store is a DEK ledger in one bbolt file. It is safe for concurrent use.
type Store struct {
	db        *bbolt.DB
	path      string
	now       func() time.Time
	closed    atomic.Bool
	scanChunk int
}

type lockedError struct {
	path string
	wait time.Duration
	err  error
}

func (e *lockedError) Error() string {
	return fmt.Sprintf("ledger %s is locked by another process (gave up after %s)", e.path, e.wait)
}

func (e *lockedError) Unwrap() []error { return []error{ErrLocked, e.err} }

// Open opens (or creates) the ledger at path. It creates the parent
// directory with mode 0700 and the file with mode 0600, fails with ErrLocked
// after the open timeout if another process holds the file, runs migrations,
// and fails with ErrSchemaTooNew if the file is newer than SchemaVersion.
// Commits are always fsynced (bbolt NoSync is never set).
func Open(path string, opts ...Option) (*Store, error) {
	o := options{openTimeout: DefaultOpenTimeout, now: time.Now}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if path == "" {
		return nil, errors.New("ledger: open: empty path")
	}
	migrations := make(map[int]Migration, len(o.migrations))
	for _, m := range o.migrations {
		if m.Apply == nil {
			return nil, fmt.Errorf("ledger: open %s: migration from version %d has no Apply func", path, m.From)
		}
		if _, dup := migrations[m.From]; dup {
			return nil, fmt.Errorf("ledger: open %s: two migrations from version %d", path, m.From)
		}
		migrations[m.From] = m
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger: open %s: create directory: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: o.openTimeout})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, &lockedError{path: path, wait: o.openTimeout, err: err}
		}
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return initialize(tx, migrations) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	return &Store{db: db, path: path, now: o.now, scanChunk: defaultScanChunk}, nil
}

// initialize reads the stored schema version, runs migrations, creates the
// buckets and stores SchemaVersion. A file with no version is new (stored as
// SchemaVersion, no migrations) unless it already holds records, in which
// case it is treated as version 0.
func initialize(tx *bbolt.Tx, migrations map[int]Migration) error {
	stored := -1
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(metaSchemaVersion); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("meta/schema_version: %w: %d bytes, want 8", ErrCorrupt, len(v))
			}
			u := binary.BigEndian.Uint64(v)
			if u > SchemaVersion {
				return fmt.Errorf("stored schema version %d, this build supports up to %d: %w", u, SchemaVersion, ErrSchemaTooNew)
			}
			stored = int(u)
		}
	}
	if stored < 0 {
		stored = SchemaVersion
		if assets := tx.Bucket(bucketAssets); assets != nil {
			if k, _ := assets.Cursor().First(); k != nil {
				stored = 0
			}
		}
	}
	for v := stored; v < SchemaVersion; v++ {
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("stored schema version %d needs a migration from version %d to %d, none registered", stored, v, v+1)
		}
		if err := m.Apply(tx); err != nil {
			return fmt.Errorf("migration from version %d: %w", v, err)
		}
	}
	for _, name := range [][]byte{bucketMeta, bucketAssets, bucketByKey, bucketByMode} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return tx.Bucket(bucketMeta).Put(metaSchemaVersion, be64(SchemaVersion))
}

// Close closes the file and releases its lock. It waits for running
// transactions. Calls after the first return nil; every other method returns
// ErrClosed once Close has been called.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("ledger: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the file's path as given to Open.
func (s *Store) Path() string { return s.path }

// Batch is what a worker commits per fetched batch of messages, in one
// transaction and so one fsync (group commit).
type Batch struct {
	// Records are upserted in order; a later record for the same asset wins.
	Records []Record
	// Cursors are named stream positions (e.g. "KW_ASSETS" → last applied
	// sequence) stored atomically with Records. Values are stored as given.
	Cursors map[string]uint64
}

type entry struct {
	key   []byte
	rec   *Record
	value []byte
}

// Apply validates every record and cursor name, then writes all of them in
// one bbolt transaction: either all records and cursors are stored or none
// are. It sets UpdatedAt to the Store's clock and stores times in UTC.
// Errors: ErrInvalidRecord (nothing written), ErrClosed, ctx's error,
// wrapped bbolt errors.
func (s *Store) Apply(ctx context.Context, b Batch) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("ledger: apply: %w", err)
	}
	if len(b.Records) == 0 && len(b.Cursors) == 0 {
		return nil
	}
	for name := range b.Cursors {
		if err := checkCursorName(name); err != nil {
			return fmt.Errorf("ledger: apply: %w", err)
		}
	}
	now := s.now().UTC()
	entries := make([]entry, len(b.Records))
	for i := range b.Records {
		r := b.Records[i] // copy; the caller's slice is not modified
		if err := r.validate(); err != nil {
			return fmt.Errorf("ledger: apply records[%d] (tenant %q, asset %q): %w", i, r.TenantID, r.AssetID, err)
		}
		v, err := s.prepare(&r, now)
		if err != nil {
			return fmt.Errorf("ledger: apply records[%d] (tenant %q, asset %q): %w", i, r.TenantID, r.AssetID, err)
		}
		entries[i] = entry{key: assetKey(r.TenantID, r.AssetID), rec: &r, value: v}
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		bk := openBuckets(tx)
		for i := range entries {
			if err := bk.put(entries[i]); err != nil {
				return fmt.Errorf("records[%d] (tenant %q, asset %q): %w", i, entries[i].rec.TenantID, entries[i].rec.AssetID, err)
			}
		}
		for name, seq := range b.Cursors {
			if err := bk.meta.Put(cursorKey(name), be64(seq)); err != nil {
				return fmt.Errorf("cursor %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: apply batch of %d records, %d cursors to %s: %w", len(entries), len(b.Cursors), s.path, s.mapErr(err))
	}
	return nil
}

// Put stores records in one transaction; it is Apply(ctx, Batch{Records: recs}).
func (s *Store) Put(ctx context.Context, recs ...Record) error {
	return s.Apply(ctx, Batch{Records: recs})
}

// prepare normalises r's times and encodes it.
func (s *Store) prepare(r *Record, now time.Time) ([]byte, error) {
	r.UpdatedAt = now
	if !r.EncryptedAt.IsZero() {
		r.EncryptedAt = r.EncryptedAt.UTC()
	}
	if !r.ReencryptedAt.IsZero() {
		r.ReencryptedAt = r.ReencryptedAt.UTC()
	}
	v, err := encodeRecord(r)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return v, nil
}

// Get returns the record of one asset, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, tenantID, assetID string) (Record, error) {
	if err := s.ready(ctx); err != nil {
		return Record{}, fmt.Errorf("ledger: get %s/%s: %w", tenantID, assetID, err)
	}
	if err := checkIDs(tenantID, assetID); err != nil {
		return Record{}, fmt.Errorf("ledger: get: %w", err)
	}
	var rec Record
	key := assetKey(tenantID, assetID)
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketAssets).Get(key)
		if v == nil {
			return ErrNotFound
		}
		var err error
		rec, err = decodeRecord(key, v)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("ledger: get %s/%s: %w", tenantID, assetID, s.mapErr(err))
	}
	return rec, nil
}

// Update runs fn on the current record of one asset inside one write
// transaction. found is false (and cur the zero Record) when there is none.
// fn returning (rec, nil) stores rec (validated as in Apply; empty
// TenantID/AssetID are filled in, different ones are an error); (nil, nil)
// deletes the record if it exists; an error aborts the transaction and is
// returned wrapped. cur is a copy: changing it changes nothing stored.
//
// fn must be safe to run more than once and must not call the Store (it runs
// while the write lock is held).
func (s *Store) Update(ctx context.Context, tenantID, assetID string, fn func(cur Record, found bool) (*Record, error)) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("ledger: update %s/%s: %w", tenantID, assetID, err)
	}
	if err := checkIDs(tenantID, assetID); err != nil {
		return fmt.Errorf("ledger: update: %w", err)
	}
	key := assetKey(tenantID, assetID)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		bk := openBuckets(tx)
		var cur Record
		old := bk.assets.Get(key)
		if old != nil {
			var err error
			if cur, err = decodeRecord(key, old); err != nil {
				return err
			}
		}
		next, err := fn(cur, old != nil)
		if err != nil {
			return err
		}
		if next == nil {
			if old == nil {
				return nil
			}
			return bk.delete(key, tenantID, assetID)
		}
		r := *next
		if r.TenantID == "" {
			r.TenantID = tenantID
		}
		if r.AssetID == "" {
			r.AssetID = assetID
		}
		if r.TenantID != tenantID {
			return invalid("tenant_id", "fn returned tenant %q for %q", r.TenantID, tenantID)
		}
		if r.AssetID != assetID {
			return invalid("asset_id", "fn returned asset %q for %q", r.AssetID, assetID)
		}
		if err := r.validate(); err != nil {
			return err
		}
		v, err := s.prepare(&r, s.now().UTC())
		if err != nil {
			return err
		}
		return bk.put(entry{key: key, rec: &r, value: v})
	})
	if err != nil {
		return fmt.Errorf("ledger: update %s/%s: %w", tenantID, assetID, s.mapErr(err))
	}
	return nil
}

// Delete removes the record of one asset and its index entries. Deleting a
// missing record is not an error (redelivery-safe).
func (s *Store) Delete(ctx context.Context, tenantID, assetID string) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("ledger: delete %s/%s: %w", tenantID, assetID, err)
	}
	if err := checkIDs(tenantID, assetID); err != nil {
		return fmt.Errorf("ledger: delete: %w", err)
	}
	key := assetKey(tenantID, assetID)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		return openBuckets(tx).delete(key, tenantID, assetID)
	})
	if err != nil {
		return fmt.Errorf("ledger: delete %s/%s: %w", tenantID, assetID, s.mapErr(err))
	}
	return nil
}

// Cursor returns the named stream position stored by Apply, 0 if unset.
func (s *Store) Cursor(ctx context.Context, name string) (uint64, error) {
	if err := s.ready(ctx); err != nil {
		return 0, fmt.Errorf("ledger: cursor %q: %w", name, err)
	}
	if err := checkCursorName(name); err != nil {
		return 0, fmt.Errorf("ledger: cursor: %w", err)
	}
	var seq uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(cursorKey(name))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: %d bytes, want 8", ErrCorrupt, len(v))
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ledger: cursor %q: %w", name, s.mapErr(err))
	}
	return seq, nil
}

// Stats summarises the ledger.
type Stats struct {
	Records  int           `json:"records"`   // all records
	ByState  map[State]int `json:"by_state"`  // both states, zeros included
	FileSize int64         `json:"file_size"` // bytes on disk
}

// Stats counts records (encrypted = entries of by_mode, rejected = the rest)
// and reports the file size. It walks the pages of two buckets without
// decoding values.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := s.ready(ctx); err != nil {
		return Stats{}, fmt.Errorf("ledger: stats: %w", err)
	}
	var st Stats
	err := s.db.View(func(tx *bbolt.Tx) error {
		total := tx.Bucket(bucketAssets).Stats().KeyN
		enc := tx.Bucket(bucketByMode).Stats().KeyN
		if enc > total {
			return fmt.Errorf("%w: %d mode index entries for %d records", ErrCorrupt, enc, total)
		}
		st = Stats{
			Records:  total,
			ByState:  map[State]int{StateEncrypted: enc, StateRejected: total - enc},
			FileSize: tx.Size(),
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("ledger: stats %s: %w", s.path, s.mapErr(err))
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.FileSize = fi.Size()
	}
	return st, nil
}

// Reset drops every record, index entry and cursor in one transaction,
// keeping the schema version, so the ledger can be rebuilt from KW_ASSETS.
// The file does not shrink; freed pages are reused.
func (s *Store) Reset(ctx context.Context) error {
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("ledger: reset: %w", err)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketAssets, bucketByKey, bucketByMode} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
				return fmt.Errorf("delete bucket %s: %w", name, err)
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		var keys [][]byte
		c := meta.Cursor()
		for k, _ := c.Seek(metaCursorPrefix); k != nil && hasPrefix(k, metaCursorPrefix); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := meta.Delete(k); err != nil {
				return fmt.Errorf("delete cursor %q: %w", k[len(metaCursorPrefix):], err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: reset %s: %w", s.path, s.mapErr(err))
	}
	return nil
}

// ready reports ctx's error or ErrClosed.
func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// mapErr turns bbolt's "database not open" (a Close racing a call) into
// ErrClosed, keeping the original in the chain.
func (s *Store) mapErr(err error) error {
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// buckets holds the four buckets of one write transaction.
type buckets struct {
	meta, assets, byKey, byMode *bbolt.Bucket
}

func openBuckets(tx *bbolt.Tx) buckets {
	return buckets{
		meta:   tx.Bucket(bucketMeta),
		assets: tx.Bucket(bucketAssets),
		byKey:  tx.Bucket(bucketByKey),
		byMode: tx.Bucket(bucketByMode),
	}
}

// put stores e.value under e.key, removing the index entries of the value
// it replaces and adding those of the new one. Only encrypted records are
// indexed.
func (bk buckets) put(e entry) error {
	r := e.rec
	if old := bk.assets.Get(e.key); old != nil {
		ii, err := decodeIndexInfo(e.key, old)
		if err != nil {
			return err
		}
		if ii.State == StateEncrypted {
			if ii.KeyURI != r.KeyURI || r.State != StateEncrypted {
				if err := bk.byKey.Delete(byKeyKey(r.TenantID, ii.KeyURI, r.AssetID)); err != nil {
					return err
				}
			}
			if ii.Mode != r.Mode || r.State != StateEncrypted {
				if err := bk.byMode.Delete(byModeKey(r.TenantID, ii.Mode, r.AssetID)); err != nil {
					return err
				}
			}
		}
	}
	if err := bk.assets.Put(e.key, e.value); err != nil {
		return err
	}
	if r.State != StateEncrypted {
		return nil
	}
	if err := bk.byKey.Put(byKeyKey(r.TenantID, r.KeyURI, r.AssetID), emptyValue); err != nil {
		return err
	}
	return bk.byMode.Put(byModeKey(r.TenantID, r.Mode, r.AssetID), emptyValue)
}

func (bk buckets) delete(key []byte, tenantID, assetID string) error {
	old := bk.assets.Get(key)
	if old == nil {
		return nil
	}
	ii, err := decodeIndexInfo(key, old)
	if err != nil {
		return err
	}
	if ii.State == StateEncrypted {
		if err := bk.byKey.Delete(byKeyKey(tenantID, ii.KeyURI, assetID)); err != nil {
			return err
		}
		if err := bk.byMode.Delete(byModeKey(tenantID, ii.Mode, assetID)); err != nil {
			return err
		}
	}
	return bk.assets.Delete(key)
}

// Keys. Identifiers never contain 0x00, so 0x00 both separates the parts
// and ends a prefix: tenant "a" scans seek "a\x00", which no key of tenant
// "ab" or "a-b" starts with.

func assetKey(tenantID, assetID string) []byte {
	return join(tenantID, assetID)
}

func byKeyKey(tenantID, keyURI, assetID string) []byte {
	return join(tenantID, keyURI, assetID)
}

func byModeKey(tenantID string, mode Mode, assetID string) []byte {
	return join(tenantID, string(mode), assetID)
}

// join concatenates parts with 0x00 between them.
func join(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			k = append(k, sep)
		}
		k = append(k, p...)
	}
	return k
}

func cursorKey(name string) []byte {
	return append(append([]byte(nil), metaCursorPrefix...), name...)
}

func checkCursorName(name string) error {
	if name == "" {
		return invalid("cursor", "name must not be empty")
	}
	if strings.IndexByte(name, sep) >= 0 {
		return invalid("cursor", "name must not contain a 0x00 byte")
	}
	if len(name) > 1024 {
		return invalid("cursor", "name is %d bytes, longer than 1024", len(name))
	}
	return nil
}

func be64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

func hasPrefix(k, prefix []byte) bool {
	return len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix)
}

// Ref names one asset.
type Ref struct{ TenantID, AssetID string }

// StreamSeqs returns the StreamSeq of each referenced record (0 when absent)
// in one read transaction, decoding nothing else: what a projection needs
// to skip events already recorded.
func (s *Store) StreamSeqs(ctx context.Context, refs []Ref) ([]uint64, error) {
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("ledger: stream seqs: %w", err)
	}
	seqs := make([]uint64, len(refs))
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAssets)
		for i, r := range refs {
			if checkIDs(r.TenantID, r.AssetID) != nil {
				continue
			}
			key := assetKey(r.TenantID, r.AssetID)
			v := b.Get(key)
			if v == nil {
				continue
			}
			if err := checkVersionByte(key, v); err != nil {
				return err
			}
			var p struct {
				StreamSeq uint64 `json:"stream_seq"`
			}
			if err := json.Unmarshal(v[1:], &p); err != nil {
				return fmt.Errorf("record %q: %w: %w", printableKey(key), ErrCorrupt, err)
			}
			seqs[i] = p.StreamSeq
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: stream seqs: %w", s.mapErr(err))
	}
	return seqs, nil
}
