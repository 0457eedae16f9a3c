// Package ledger is a worker's DEK ledger: one bbolt file recording, per
// customer asset, how it was stored — the mode (customer, fallback or
// platform key), the key URI and key version its seed is wrapped under, the
// wrapped seed itself, where the ciphertext lives, digests and sizes — or why
// it was rejected.
//
// # A projection, not a log of record
//
// JetStream stream KW_ASSETS is the log of record. The ledger is a projection
// of it: every file can be deleted, or emptied with Store.Reset, and rebuilt
// by replaying KW_ASSETS. Each Record keeps the id of the AssetCreated event
// that produced it (EventID) and the KW_ASSETS sequence of its outcome event
// (StreamSeq), and a Batch stores named cursors ("KW_ASSETS" → last applied
// sequence) in the same transaction as its records, so a projector restarts
// exactly where its last commit ended.
//
// Terms: the KEK is the tenant's (or the platform's) KMS key named by a key
// URI; the seed is a random secret wrapped by the KEK (WrappedSeed is that
// KMS ciphertext, not secret but never logged in full); each asset's DEK is
// derived from the seed. Fallback means the asset was stored under the
// platform backup key because the customer key was unreachable; such records
// carry Reencrypt=true until the re-encryptor heals them. The ledger stores
// no plaintext, no seed and no DEK.
//
// # Group commit
//
// Store.Apply writes a whole Batch — all records a worker produced for one
// fetched batch of messages plus its cursors — in one bbolt read-write
// transaction, so one fsync covers the batch. Commit cost is dominated by the
// fsync, so per-record cost falls with batch size (see BenchmarkApply).
// Commits are always synced: the file is never opened with NoSync. Apply is
// all-or-nothing: every record is validated before the transaction starts,
// and any error rolls the whole batch back, cursors included. Within a batch
// a later record for the same asset wins. Store is safe for concurrent use;
// bbolt serialises writers.
//
// # Layout (schema version 1)
//
// Buckets are created once, by Open. Keys are raw bytes; "0x00" is a single
// zero byte, which is why tenant ids, asset ids, key URIs and cursor names
// must not contain one. Because 0x00 also ends every prefix, a scan of tenant
// "a" (prefix "a" 0x00) never sees tenant "ab" or "a-b", and a scan of key
// "k" never sees key "k2".
//
//	meta     "schema_version"             → uint64, 8 bytes big-endian (1)
//	         "cursor" 0x00 <name>          → uint64, 8 bytes big-endian (stream sequence)
//	assets   <tenant_id> 0x00 <asset_id>   → record value (below)
//	by_key   <tenant_id> 0x00 <key_uri> 0x00 <asset_id> → empty
//	by_mode  <tenant_id> 0x00 <mode> 0x00 <asset_id>    → empty
//
// A record value is one byte, the schema version (0x01), followed by the
// Record as compact UTF-8 JSON with its snake_case tags (byte slices base64,
// times RFC 3339 with nanoseconds in UTC, empty optional fields omitted; an
// empty slice reads back as nil). JSON was chosen over a binary encoding: it
// is the same document other tools see, it can be read with `bbolt get`, and
// adding an optional field needs no version bump. Unknown fields are ignored
// on read. Values are decoded inside the transaction and returned as copies.
//
// Only encrypted records are indexed: every encrypted record has exactly one
// by_key and one by_mode entry; rejected records (which have no mode and no
// wrapped seed) have none, so rotation and re-encryption scans never see
// them. Writes keep the indexes exact: when a record's mode or key URI
// changes, or it becomes rejected, or is deleted, its old entries are removed
// in the same transaction. Stats derives the rejected count as records minus
// by_mode entries.
//
// # Validation
//
// Before anything is written, a record must have a non-empty tenant and
// asset id; a valid state; when encrypted, a valid mode and a non-empty key
// URI; when rejected, an empty mode; no 0x00 byte in an id or key URI;
// non-negative sizes; and keys within bbolt's size limit. The event
// contract's id syntax is checked by pkg/events, not here. Store sets
// UpdatedAt from its clock and stores every time in UTC.
//
// # Schema versions and migrations
//
// Open reads meta/"schema_version". A new file is stamped with
// SchemaVersion. An older version is upgraded by the registered Migrations
// (From v to v+1, each in turn) in the same transaction that stamps the new
// version, so a failed migration leaves the file untouched. A file without a
// version but with records is treated as version 0. A version newer than
// SchemaVersion fails with ErrSchemaTooNew; so does reading a value whose
// version byte is newer.
//
// # Scans
//
// ByKey and ByMode visit one tenant's records in asset id order, resumable
// with ScanOptions.After and bounded by ScanOptions.Limit. They read chunks
// of records in short read transactions and call fn outside them, so fn may
// write to the Store and a long job does not pin old pages.
//
// # Errors
//
// Every error names the operation and the file or tenant/asset, and wraps
// one of:
//   - ErrNotFound: Get of a missing record.
//   - ErrInvalidRecord: a record, identifier, mode, cursor name or scan
//     option is invalid; errors.As with *InvalidRecordError names the field.
//     Nothing is written. Error texts never contain wrapped seeds or digests.
//   - ErrLocked (and bbolt.ErrTimeout): Open could not lock the file within
//     the open timeout; the text is "ledger <path> is locked by another
//     process".
//   - ErrSchemaTooNew: the file or a value was written by a newer build.
//   - ErrCorrupt: undecodable value, index entry without its record, or a
//     malformed meta key; Reset and rebuild from KW_ASSETS.
//   - ErrClosed: the Store was closed.
//   - context.Canceled / context.DeadlineExceeded: ctx was done before a
//     transaction started, or between records of a scan.
//   - bbolt and OS errors, wrapped with %w.
//
// The package emits no telemetry itself; callers time Apply and export
// Stats.
package ledger
