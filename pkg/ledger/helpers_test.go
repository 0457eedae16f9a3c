package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var testClock = time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)

func fixedClock() time.Time { return testClock }

func testPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state", "ledger.db")
}

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(path, append([]Option{WithClock(fixedClock)}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s) err = %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newTestStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	return openTest(t, testPath(t), opts...)
}

// enc is a minimal valid encrypted record.
func enc(tenant, asset string, mode Mode, keyURI string) Record {
	return Record{
		TenantID: tenant, AssetID: asset, Service: "cloud_recording",
		State: StateEncrypted, Mode: mode, KeyURI: keyURI,
		WrappedSeed: []byte("wrapped:" + tenant + "/" + asset),
		Size:        10, CiphertextSize: 42,
		EncryptedAt: testClock.Add(-time.Hour),
	}
}

func rejected(tenant, asset string) Record {
	return Record{
		TenantID: tenant, AssetID: asset, Service: "team_chat",
		State: StateRejected, RejectReason: "customer_key_unavailable",
		RejectDetail: "breaker open", EncryptedAt: testClock.Add(-time.Minute),
	}
}

func mustPut(t testing.TB, s *Store, recs ...Record) {
	t.Helper()
	if err := s.Put(context.Background(), recs...); err != nil {
		t.Fatalf("Put(%d records) err = %v", len(recs), err)
	}
}

func mustGet(t testing.TB, s *Store, tenant, asset string) Record {
	t.Helper()
	r, err := s.Get(context.Background(), tenant, asset)
	if err != nil {
		t.Fatalf("Get(%q, %q) err = %v", tenant, asset, err)
	}
	return r
}

func byModeIDs(t testing.TB, s *Store, tenant string, mode Mode, opt ScanOptions) []string {
	t.Helper()
	var ids []string
	err := s.ByMode(context.Background(), tenant, mode, opt, func(r Record) error {
		if r.TenantID != tenant || r.Mode != mode {
			t.Errorf("ByMode(%q, %q) visited %v", tenant, mode, r)
		}
		ids = append(ids, r.AssetID)
		return nil
	})
	if err != nil {
		t.Fatalf("ByMode(%q, %q, %+v) err = %v", tenant, mode, opt, err)
	}
	return ids
}

func byKeyIDs(t testing.TB, s *Store, tenant, keyURI string, opt ScanOptions) []string {
	t.Helper()
	var ids []string
	err := s.ByKey(context.Background(), tenant, keyURI, opt, func(r Record) error {
		if r.TenantID != tenant || r.KeyURI != keyURI {
			t.Errorf("ByKey(%q, %q) visited %v", tenant, keyURI, r)
		}
		ids = append(ids, r.AssetID)
		return nil
	})
	if err != nil {
		t.Fatalf("ByKey(%q, %q, %+v) err = %v", tenant, keyURI, opt, err)
	}
	return ids
}

// checkIndexes verifies from the raw buckets that by_key and by_mode hold
// exactly one entry per encrypted record and nothing else.
func checkIndexes(t testing.TB, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		wantKey, wantMode := map[string]bool{}, map[string]bool{}
		err := tx.Bucket(bucketAssets).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			if r.State == StateEncrypted {
				wantKey[string(byKeyKey(r.TenantID, r.KeyURI, r.AssetID))] = true
				wantMode[string(byModeKey(r.TenantID, r.Mode, r.AssetID))] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for name, want := range map[string]map[string]bool{"by_key": wantKey, "by_mode": wantMode} {
			got := map[string]bool{}
			if err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				if len(v) != 0 {
					t.Errorf("%s entry %q has a %d-byte value, want empty", name, k, len(v))
				}
				got[string(k)] = true
				return nil
			}); err != nil {
				return err
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s entries = %q, want %q", name, sortedKeys(got), sortedKeys(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("checkIndexes: %v", err)
	}
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// rawUpdate opens the file with bbolt directly (the Store must be closed).
func rawUpdate(t testing.TB, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bbolt.Open(%s) err = %v", path, err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatalf("raw update of %s: %v", path, err)
	}
}

func rawSchemaVersion(t testing.TB, path string) uint64 {
	t.Helper()
	var v uint64
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketMeta).Get(metaSchemaVersion)
		if len(b) != 8 {
			return fmt.Errorf("schema_version is %d bytes", len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v
}

func setRawSchemaVersion(t testing.TB, path string, v uint64) {
	t.Helper()
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchemaVersion, be64(v))
	})
}

func containsAny(s string, needles ...[]byte) bool {
	for _, n := range needles {
		if len(n) > 0 && bytes.Contains([]byte(s), n) {
			return true
		}
	}
	return false
}
