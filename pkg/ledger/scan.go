package ledger

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"
)

// ScanOptions bound a scan. Scans are ordered by asset id (bytewise).
type ScanOptions struct {
	// After resumes a scan: only assets whose id sorts after After
	// (exclusive) are visited. Pass the last asset id seen.
	After string
	// Limit stops the scan after that many records; 0 means no limit.
	Limit int
}

// ByKey calls fn for every encrypted record of tenantID whose seed is
// wrapped under keyURI, in asset id order (rotation jobs). See scan rules on
// ByMode.
func (s *Store) ByKey(ctx context.Context, tenantID, keyURI string, opt ScanOptions, fn func(Record) error) error {
	const op = "by_key"
	if err := checkID("tenant_id", tenantID); err != nil {
		return fmt.Errorf("ledger: %s: %w", op, err)
	}
	if err := checkID("key_uri", keyURI); err != nil {
		return fmt.Errorf("ledger: %s: %w", op, err)
	}
	prefix := byKeyKey(tenantID, keyURI, "")
	match := func(r Record) bool { return r.State == StateEncrypted && r.KeyURI == keyURI }
	return s.scan(ctx, fmt.Sprintf("%s %s %q", op, tenantID, keyURI), bucketByKey, tenantID, prefix, match, opt, fn)
}

// ByMode calls fn for every encrypted record of tenantID stored under mode,
// in asset id order (e.g. ModeFallback for re-encryption jobs). Rejected
// records are not indexed and never visited.
//
// Scans read records in chunks, each in its own read transaction, and call
// fn outside any transaction: fn may call the Store (Update, Put, Delete).
// A scan is therefore not a snapshot: records written during it may or may
// not be visited, but no asset is visited twice, and every record present
// for the whole scan is visited exactly once. ctx is checked before each
// chunk and each record; fn's error stops the scan and is returned as is.
func (s *Store) ByMode(ctx context.Context, tenantID string, mode Mode, opt ScanOptions, fn func(Record) error) error {
	const op = "by_mode"
	if err := checkID("tenant_id", tenantID); err != nil {
		return fmt.Errorf("ledger: %s: %w", op, err)
	}
	if !mode.Valid() {
		return fmt.Errorf("ledger: %s: %w", op, invalid("mode", "%q is not customer, fallback or platform", mode))
	}
	prefix := byModeKey(tenantID, mode, "")
	match := func(r Record) bool { return r.State == StateEncrypted && r.Mode == mode }
	return s.scan(ctx, fmt.Sprintf("%s %s %s", op, tenantID, mode), bucketByMode, tenantID, prefix, match, opt, fn)
}

// CountByMode counts tenantID's encrypted records per mode; every valid mode
// is present in the result, zeros included. It walks the tenant's by_mode
// entries in one read transaction.
func (s *Store) CountByMode(ctx context.Context, tenantID string) (map[Mode]int, error) {
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("ledger: count_by_mode %s: %w", tenantID, err)
	}
	if err := checkID("tenant_id", tenantID); err != nil {
		return nil, fmt.Errorf("ledger: count_by_mode: %w", err)
	}
	counts := make(map[Mode]int, 3)
	for _, m := range Modes() {
		counts[m] = 0
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, m := range Modes() {
			prefix := byModeKey(tenantID, m, "")
			c := tx.Bucket(bucketByMode).Cursor()
			n := 0
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
				if n%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
			}
			counts[m] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: count_by_mode %s: %w", tenantID, s.mapErr(err))
	}
	return counts, nil
}

// scan walks index entries starting with prefix (tenant 0x00 ... 0x00), the
// rest of each key being the asset id.
func (s *Store) scan(ctx context.Context, op string, index []byte, tenantID string, prefix []byte,
	match func(Record) bool, opt ScanOptions, fn func(Record) error) error {
	if opt.Limit < 0 {
		return fmt.Errorf("ledger: %s: %w", op, invalid("limit", "is negative (%d)", opt.Limit))
	}
	if strings.IndexByte(opt.After, sep) >= 0 {
		return fmt.Errorf("ledger: %s: %w", op, invalid("after", "must not contain a 0x00 byte"))
	}
	if fn == nil {
		return fmt.Errorf("ledger: %s: %w", op, invalid("fn", "is nil"))
	}
	after, seen := opt.After, 0
	for {
		if err := s.ready(ctx); err != nil {
			return fmt.Errorf("ledger: %s: %w", op, err)
		}
		want := s.scanChunk
		if opt.Limit > 0 && opt.Limit-seen < want {
			want = opt.Limit - seen
		}
		recs, err := s.readChunk(index, tenantID, prefix, after, want, match)
		if err != nil {
			return fmt.Errorf("ledger: %s: %w", op, s.mapErr(err))
		}
		for _, r := range recs {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("ledger: %s: %w", op, err)
			}
			if err := fn(r); err != nil {
				return err
			}
			seen++
		}
		if len(recs) < want || (opt.Limit > 0 && seen >= opt.Limit) {
			return nil
		}
		after = recs[len(recs)-1].AssetID
	}
}

// readChunk reads up to max records after the asset id after (exclusive)
// in one read transaction, decoding (and so copying) each.
func (s *Store) readChunk(index []byte, tenantID string, prefix []byte, after string, max int,
	match func(Record) bool) ([]Record, error) {
	start := prefix
	if after != "" {
		// The smallest id sorting after `after` is after+0x00.
		start = append(append(append([]byte(nil), prefix...), after...), sep)
	}
	out := make([]Record, 0, min(max, 64))
	err := s.db.View(func(tx *bbolt.Tx) error {
		assets := tx.Bucket(bucketAssets)
		c := tx.Bucket(index).Cursor()
		for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && len(out) < max; k, _ = c.Next() {
			assetID := string(k[len(prefix):])
			key := assetKey(tenantID, assetID)
			v := assets.Get(key)
			if v == nil {
				return fmt.Errorf("%w: index %s entry %q has no record", ErrCorrupt, index, printableKey(k))
			}
			r, err := decodeRecord(key, v)
			if err != nil {
				return err
			}
			if !match(r) {
				return fmt.Errorf("%w: index %s entry %q disagrees with its record", ErrCorrupt, index, printableKey(k))
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
