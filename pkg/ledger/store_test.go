package ledger

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// fullRecord sets every field of Record to a non-zero value.
func fullRecord() Record {
	return Record{
		TenantID:       "acme",
		AssetID:        "rec-0001.mp4",
		Service:        "cloud_recording",
		State:          StateEncrypted,
		Mode:           ModeFallback,
		KeyURI:         "awskms://arn:aws:kms:eu-west-2:111122223333:key/abc?endpoint=http://127.0.0.1:8080",
		KeyVersion:     "v7",
		WrappedSeed:    []byte{0x00, 0x01, 0xfe, 0xff, 'w', 'r', 'a', 'p'},
		HeaderSHA256:   bytesOf(0xaa, 32),
		Bucket:         "KW_VAULT",
		Object:         "acme/rec-0001.mp4",
		Size:           1 << 33,
		CiphertextSize: 1<<33 + 4096,
		SHA256:         bytesOf(0xbb, 32),
		Coverage:       "covered",
		Reencrypt:      true,
		RejectReason:   "none",
		RejectDetail:   "detail <with> & html",
		EventID:        "evt-01HZX",
		StreamSeq:      1<<63 + 5,
		EncryptedAt:    time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 5*3600)),
		ReencryptedAt:  time.Date(2026, 2, 3, 4, 5, 6, 987654321, time.FixedZone("Y", -7*3600)),
		UpdatedAt:      time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), // overwritten by the store
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b + byte(i)
	}
	return out
}

func TestRoundTripEveryField(t *testing.T) {
	in := fullRecord()
	rv := reflect.ValueOf(in)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Fatalf("fullRecord leaves %s zero; set every field so the round trip covers it", rv.Type().Field(i).Name)
		}
	}
	s := newTestStore(t)
	mustPut(t, s, in)
	got := mustGet(t, s, in.TenantID, in.AssetID)

	want := in
	want.EncryptedAt = in.EncryptedAt.UTC()
	want.ReencryptedAt = in.ReencryptedAt.UTC()
	want.UpdatedAt = testClock
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Fatalf("Get = %s\nwant  %s", gj, wj)
	}
	if !got.EncryptedAt.Equal(in.EncryptedAt) || got.EncryptedAt.Location() != time.UTC {
		t.Errorf("EncryptedAt = %v, want %v in UTC", got.EncryptedAt, in.EncryptedAt)
	}
	if in.UpdatedAt.Equal(testClock) {
		t.Fatal("test broken: input UpdatedAt equals the clock")
	}

	// The returned record is a copy: scribbling on it changes nothing stored.
	got.WrappedSeed[0] = 0x42
	got.SHA256[0] = 0x42
	if again := mustGet(t, s, in.TenantID, in.AssetID); !reflect.DeepEqual(again, want) {
		t.Errorf("Get after modifying a returned record = %v, want %v", again, want)
	}
	// The caller's record is not modified by Put.
	if !reflect.DeepEqual(in, fullRecord()) {
		t.Errorf("Put modified its argument")
	}
}

func TestRecordJSONFieldNamesStable(t *testing.T) {
	b, err := json.Marshal(fullRecord())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want := []string{
		"asset_id", "bucket", "ciphertext_size", "coverage", "encrypted_at", "event_id", "header_sha256",
		"key_uri", "key_version", "mode", "object", "reencrypt", "reencrypted_at", "reject_detail", "reject_reason",
		"service", "sha256", "size", "state", "stream_seq", "tenant_id", "updated_at", "wrapped_seed",
	}
	if !slices.Equal(got, want) {
		t.Errorf("JSON fields = %q, want %q", got, want)
	}
}

// TestLayout pins the on-disk bytes described in doc.go.
func TestLayout(t *testing.T) {
	path := testPath(t)
	s := openTest(t, path)
	ctx := context.Background()
	r := enc("t1", "a1", ModeCustomer, "localkms://k")
	if err := s.Apply(ctx, Batch{Records: []Record{r, rejected("t1", "a2")}, Cursors: map[string]uint64{"KW_ASSETS": 258}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if got := meta.Get([]byte("schema_version")); string(got) != "\x00\x00\x00\x00\x00\x00\x00\x01" {
			t.Errorf("meta/schema_version = %x, want 0000000000000001", got)
		}
		if got := meta.Get([]byte("cursor\x00KW_ASSETS")); string(got) != "\x00\x00\x00\x00\x00\x00\x01\x02" {
			t.Errorf("meta/cursor KW_ASSETS = %x, want 0000000000000102", got)
		}
		v := tx.Bucket([]byte("assets")).Get([]byte("t1\x00a1"))
		if len(v) < 2 || v[0] != 0x01 || v[1] != '{' {
			t.Fatalf("assets/t1 0x00 a1 = %q, want 0x01 then a JSON object", v)
		}
		var got Record
		if err := json.Unmarshal(v[1:], &got); err != nil {
			t.Fatalf("value after the version byte is not JSON: %v", err)
		}
		if got.AssetID != "a1" || got.KeyURI != "localkms://k" || !got.UpdatedAt.Equal(testClock) {
			t.Errorf("stored JSON decodes to %v", got)
		}
		for _, c := range []struct{ bucket, key string }{
			{"by_key", "t1\x00localkms://k\x00a1"},
			{"by_mode", "t1\x00customer\x00a1"},
			{"assets", "t1\x00a2"},
		} {
			if v := tx.Bucket([]byte(c.bucket)).Get([]byte(c.key)); v == nil {
				t.Errorf("%s has no key %q", c.bucket, c.key)
			}
		}
		for _, b := range []string{"by_key", "by_mode"} {
			if n := tx.Bucket([]byte(b)).Stats().KeyN; n != 1 {
				t.Errorf("%s has %d entries, want 1 (rejected records are not indexed)", b, n)
			}
		}
		return nil
	})
}

func TestIndexMaintenance(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	const tenant = "acme"
	r := enc(tenant, "a1", ModeFallback, "localkms://platform-backup")
	r.Reencrypt = true
	mustPut(t, s, r, enc(tenant, "a2", ModeFallback, "localkms://platform-backup"))
	checkIndexes(t, s)
	if got := byModeIDs(t, s, tenant, ModeFallback, ScanOptions{}); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Fatalf("ByMode(fallback) = %q, want [a1 a2]", got)
	}

	// Healed: re-written under the customer key.
	r.Mode, r.KeyURI, r.Reencrypt = ModeCustomer, "awskms://customer", false
	mustPut(t, s, r)
	checkIndexes(t, s)
	if got := byModeIDs(t, s, tenant, ModeFallback, ScanOptions{}); !slices.Equal(got, []string{"a2"}) {
		t.Errorf("ByMode(fallback) after heal = %q, want [a2]", got)
	}
	if got := byModeIDs(t, s, tenant, ModeCustomer, ScanOptions{}); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("ByMode(customer) after heal = %q, want [a1]", got)
	}
	if got := byKeyIDs(t, s, tenant, "localkms://platform-backup", ScanOptions{}); !slices.Equal(got, []string{"a2"}) {
		t.Errorf("ByKey(backup) after heal = %q, want [a2]", got)
	}
	if got := byKeyIDs(t, s, tenant, "awskms://customer", ScanOptions{}); !slices.Equal(got, []string{"a1"}) {
		t.Errorf("ByKey(customer) after heal = %q, want [a1]", got)
	}

	// Rotation: same mode, new key.
	r.KeyURI = "awskms://customer-2"
	mustPut(t, s, r)
	checkIndexes(t, s)
	if got := byKeyIDs(t, s, tenant, "awskms://customer", ScanOptions{}); len(got) != 0 {
		t.Errorf("ByKey(old key) after rotation = %q, want none", got)
	}

	// Mode change with the same key.
	r.Mode = ModePlatform
	mustPut(t, s, r)
	checkIndexes(t, s)
	if got := byModeIDs(t, s, tenant, ModeCustomer, ScanOptions{}); len(got) != 0 {
		t.Errorf("ByMode(customer) after mode change = %q, want none", got)
	}

	// Encrypted → rejected leaves every index.
	mustPut(t, s, rejected(tenant, "a1"))
	checkIndexes(t, s)
	counts, err := s.CountByMode(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if want := (map[Mode]int{ModeCustomer: 0, ModeFallback: 1, ModePlatform: 0}); !reflect.DeepEqual(counts, want) {
		t.Errorf("CountByMode = %v, want %v", counts, want)
	}

	// Rejected → encrypted again, and Delete.
	mustPut(t, s, enc(tenant, "a1", ModeCustomer, "awskms://customer-2"))
	checkIndexes(t, s)
	if err := s.Delete(ctx, tenant, "a2"); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s)
	if got := byModeIDs(t, s, tenant, ModeFallback, ScanOptions{}); len(got) != 0 {
		t.Errorf("ByMode(fallback) after Delete = %q, want none", got)
	}
	if _, err := s.Get(ctx, tenant, "a2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(deleted) err = %v, want %v", err, ErrNotFound)
	}
	if err := s.Delete(ctx, tenant, "a2"); err != nil {
		t.Errorf("second Delete err = %v, want nil", err)
	}

	// Two writes of one asset in one batch: the later wins, indexes exact.
	a3 := enc(tenant, "a3", ModeFallback, "k-old")
	a3b := enc(tenant, "a3", ModeCustomer, "k-new")
	mustPut(t, s, a3, a3b)
	checkIndexes(t, s)
	if got := mustGet(t, s, tenant, "a3"); got.Mode != ModeCustomer || got.KeyURI != "k-new" {
		t.Errorf("Get(a3) = %v, want the batch's later record", got)
	}
}

func TestScanOrderAndPagination(t *testing.T) {
	s := newTestStore(t)
	s.scanChunk = 3 // exercise chunk boundaries
	const tenant, key = "t", "localkms://k"
	var want []string
	var recs []Record
	for i := range 40 {
		id := fmt.Sprintf("asset-%02d", i)
		want = append(want, id)
		recs = append(recs, enc(tenant, id, ModeFallback, key))
	}
	// Ids sort bytewise, including ones that share prefixes.
	for _, id := range []string{"asset", "asset-0", "asset-00.x", "b", "B", "a"} {
		want = append(want, id)
		recs = append(recs, enc(tenant, id, ModeFallback, key))
	}
	slices.Sort(want)
	// Noise: other modes, keys and tenants, and a rejected record.
	recs = append(recs, enc(tenant, "asset-05x", ModeCustomer, key+"2"), rejected(tenant, "asset-07y"),
		enc(tenant+"2", "asset-01", ModeFallback, key))
	// Insert in reverse so insertion order is not scan order.
	slices.Reverse(recs)
	mustPut(t, s, recs...)

	if got := byModeIDs(t, s, tenant, ModeFallback, ScanOptions{}); !slices.Equal(got, want) {
		t.Fatalf("ByMode = %q\nwant %q", got, want)
	}
	if got := byKeyIDs(t, s, tenant, key, ScanOptions{}); !slices.Equal(got, want) {
		t.Fatalf("ByKey = %q\nwant %q", got, want)
	}

	for _, limit := range []int{1, 2, 3, 4, 7, len(want) - 1, len(want), len(want) + 5} {
		for _, scan := range []struct {
			name string
			fn   func(ScanOptions) []string
		}{
			{"ByMode", func(o ScanOptions) []string { return byModeIDs(t, s, tenant, ModeFallback, o) }},
			{"ByKey", func(o ScanOptions) []string { return byKeyIDs(t, s, tenant, key, o) }},
		} {
			var all []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(want)+1 {
					t.Fatalf("%s limit %d: pagination does not end", scan.name, limit)
				}
				page := scan.fn(ScanOptions{After: after, Limit: limit})
				if len(page) > limit {
					t.Fatalf("%s limit %d: page of %d", scan.name, limit, len(page))
				}
				all = append(all, page...)
				if len(page) < limit {
					break
				}
				after = page[len(page)-1]
			}
			if !slices.Equal(all, want) {
				t.Errorf("%s limit %d: pages joined = %q\nwant %q", scan.name, limit, all, want)
			}
		}
	}

	// After need not be a stored id.
	got := byModeIDs(t, s, tenant, ModeFallback, ScanOptions{After: "asset-10a", Limit: 2})
	if !slices.Equal(got, []string{"asset-11", "asset-12"}) {
		t.Errorf("ByMode(After asset-10a, Limit 2) = %q, want [asset-11 asset-12]", got)
	}
	if got := byModeIDs(t, s, tenant, ModeFallback, ScanOptions{After: "zzz"}); len(got) != 0 {
		t.Errorf("ByMode(After zzz) = %q, want none", got)
	}
}

func TestTenantIsolation(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	s.scanChunk = 2
	tenants := []string{"a", "ab", "a-b", "a.b", "a\x01", "b", "0"}
	keys := []string{"k", "k2", "k/x", "k\x01"}
	var recs []Record
	for _, tn := range tenants {
		for _, k := range keys {
			for _, id := range []string{"x", "y", "\x01"} {
				recs = append(recs, enc(tn, id+"@"+k, ModeCustomer, k))
			}
		}
		recs = append(recs, enc(tn, "fb", ModeFallback, "k"))
	}
	mustPut(t, s, recs...)
	checkIndexes(t, s)

	for _, tn := range tenants {
		for _, k := range keys {
			var seen int
			err := s.ByKey(ctx, tn, k, ScanOptions{}, func(r Record) error {
				seen++
				if r.TenantID != tn || r.KeyURI != k {
					t.Errorf("ByKey(%q, %q) returned tenant %q key %q", tn, k, r.TenantID, r.KeyURI)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := 3
			if k == "k" {
				want = 4
			}
			if seen != want {
				t.Errorf("ByKey(%q, %q) visited %d, want %d", tn, k, seen, want)
			}
		}
		for _, m := range Modes() {
			ids := byModeIDs(t, s, tn, m, ScanOptions{})
			want := map[Mode]int{ModeCustomer: 12, ModeFallback: 1, ModePlatform: 0}[m]
			if len(ids) != want {
				t.Errorf("ByMode(%q, %q) visited %d, want %d", tn, m, len(ids), want)
			}
		}
		counts, err := s.CountByMode(ctx, tn)
		if err != nil {
			t.Fatal(err)
		}
		if want := (map[Mode]int{ModeCustomer: 12, ModeFallback: 1, ModePlatform: 0}); !reflect.DeepEqual(counts, want) {
			t.Errorf("CountByMode(%q) = %v, want %v", tn, counts, want)
		}
	}
	// Unknown tenant: nothing.
	if got := byModeIDs(t, s, "a-", ModeCustomer, ScanOptions{}); len(got) != 0 {
		t.Errorf("ByMode(a-) = %q, want none", got)
	}
	// Get keys do not collide either.
	if r := mustGet(t, s, "a-b", "x@k"); r.TenantID != "a-b" {
		t.Errorf("Get(a-b, x@k) = %v", r)
	}
}

func TestApplyAtomic(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if err := s.Apply(ctx, Batch{Records: []Record{enc("t", "old", ModeCustomer, "k")}, Cursors: map[string]uint64{"KW_ASSETS": 10}}); err != nil {
		t.Fatal(err)
	}

	bad := enc("t", "bad", "", "k") // encrypted without a mode
	err := s.Apply(ctx, Batch{
		Records: []Record{enc("t", "new1", ModeCustomer, "k"), bad, enc("t", "new2", ModeFallback, "k")},
		Cursors: map[string]uint64{"KW_ASSETS": 13},
	})
	var ire *InvalidRecordError
	if !errors.Is(err, ErrInvalidRecord) || !errors.As(err, &ire) || ire.Field != "mode" {
		t.Fatalf("Apply(batch with invalid mode) err = %v, want %v naming mode", err, ErrInvalidRecord)
	}
	for _, id := range []string{"new1", "bad", "new2"} {
		if _, err := s.Get(ctx, "t", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) after failed batch err = %v, want %v", id, err, ErrNotFound)
		}
	}
	if c, _ := s.Cursor(ctx, "KW_ASSETS"); c != 10 {
		t.Errorf("cursor after failed batch = %d, want 10", c)
	}

	// A failure inside the transaction (not caught by validation) rolls back too:
	// corrupt the stored value of "old" so rewriting it fails.
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAssets).Put(assetKey("t", "old"), []byte{SchemaVersion, '{', 'x'})
	}); err != nil {
		t.Fatal(err)
	}
	err = s.Apply(ctx, Batch{
		Records: []Record{enc("t", "new3", ModeCustomer, "k"), enc("t", "old", ModeFallback, "k")},
		Cursors: map[string]uint64{"KW_ASSETS": 14},
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Apply over a corrupt value err = %v, want %v", err, ErrCorrupt)
	}
	if _, err := s.Get(ctx, "t", "new3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(new3) after rolled-back batch err = %v, want %v", err, ErrNotFound)
	}
	if c, _ := s.Cursor(ctx, "KW_ASSETS"); c != 10 {
		t.Errorf("cursor after rolled-back batch = %d, want 10", c)
	}
}

func TestValidation(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	secret := []byte("SEEDSEEDSEEDSEED")
	digest := bytesOf(0x10, 32)
	base := enc("t", "a", ModeCustomer, "k")
	base.WrappedSeed, base.SHA256, base.HeaderSHA256 = secret, digest, digest

	cases := []struct {
		name  string
		mut   func(*Record)
		field string
	}{
		{"empty tenant", func(r *Record) { r.TenantID = "" }, "tenant_id"},
		{"nul tenant", func(r *Record) { r.TenantID = "a\x00b" }, "tenant_id"},
		{"empty asset", func(r *Record) { r.AssetID = "" }, "asset_id"},
		{"nul asset", func(r *Record) { r.AssetID = "x\x00" }, "asset_id"},
		{"huge asset", func(r *Record) { r.AssetID = strings.Repeat("x", bbolt.MaxKeySize) }, "asset_id"},
		{"huge record key", func(r *Record) {
			r.TenantID = strings.Repeat("t", bbolt.MaxKeySize/2)
			r.AssetID = strings.Repeat("a", bbolt.MaxKeySize/2)
		}, "asset_id"},
		{"huge mode index key", func(r *Record) {
			r.TenantID = strings.Repeat("t", bbolt.MaxKeySize/2)
			r.AssetID = strings.Repeat("a", bbolt.MaxKeySize/2-4)
		}, "asset_id"},
		{"empty state", func(r *Record) { r.State = "" }, "state"},
		{"bad state", func(r *Record) { r.State = "deleted" }, "state"},
		{"bad mode", func(r *Record) { r.Mode = "rejected" }, "mode"},
		{"empty mode", func(r *Record) { r.Mode = "" }, "mode"},
		{"no key", func(r *Record) { r.KeyURI = "" }, "key_uri"},
		{"nul key", func(r *Record) { r.KeyURI = "k\x00" }, "key_uri"},
		{"huge index key", func(r *Record) {
			r.AssetID = strings.Repeat("a", bbolt.MaxKeySize/2)
			r.KeyURI = strings.Repeat("k", bbolt.MaxKeySize/2)
		}, "key_uri"},
		{"rejected with mode", func(r *Record) { r.State, r.RejectReason = StateRejected, "x" }, "mode"},
		{"negative size", func(r *Record) { r.Size = -1 }, "size"},
		{"negative ciphertext size", func(r *Record) { r.CiphertextSize = -1 }, "ciphertext_size"},
	}
	leaks := [][]byte{secret, []byte(hex.EncodeToString(secret)), []byte(base64.StdEncoding.EncodeToString(secret)),
		digest, []byte(hex.EncodeToString(digest)), []byte(base64.StdEncoding.EncodeToString(digest))}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base
			c.mut(&r)
			err := s.Put(ctx, r)
			var ire *InvalidRecordError
			if !errors.As(err, &ire) || !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("Put err = %v, want *InvalidRecordError", err)
			}
			if ire.Field != c.field {
				t.Errorf("Put err field = %q, want %q (err %v)", ire.Field, c.field, err)
			}
			if containsAny(err.Error(), leaks...) {
				t.Errorf("error text leaks the wrapped seed or a digest: %v", err)
			}
		})
	}
	if st, err := s.Stats(ctx); err != nil || st.Records != 0 {
		t.Errorf("Stats after invalid puts = %+v, %v; want 0 records", st, err)
	}

	// Identifier arguments are validated the same way.
	argErrs := map[string]error{}
	_, argErrs["Get"] = s.Get(ctx, "", "a")
	argErrs["Delete"] = s.Delete(ctx, "t", "a\x00")
	argErrs["Update"] = s.Update(ctx, "t\x00", "a", func(Record, bool) (*Record, error) { return nil, nil })
	_, argErrs["Cursor"] = s.Cursor(ctx, "")
	argErrs["Apply cursor"] = s.Apply(ctx, Batch{Cursors: map[string]uint64{"a\x00": 1}})
	argErrs["ByMode mode"] = s.ByMode(ctx, "t", "rejected", ScanOptions{}, func(Record) error { return nil })
	argErrs["ByMode limit"] = s.ByMode(ctx, "t", ModeCustomer, ScanOptions{Limit: -1}, func(Record) error { return nil })
	argErrs["ByKey key"] = s.ByKey(ctx, "t", "", ScanOptions{}, func(Record) error { return nil })
	argErrs["ByKey after"] = s.ByKey(ctx, "t", "k", ScanOptions{After: "\x00"}, func(Record) error { return nil })
	_, argErrs["CountByMode"] = s.CountByMode(ctx, "")
	for name, err := range argErrs {
		if !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s with an invalid argument err = %v, want %v", name, err, ErrInvalidRecord)
		}
	}

	// A valid rejected record may name the key that was unusable; it is not indexed.
	rj := rejected("t", "r")
	rj.KeyURI = "awskms://down"
	mustPut(t, s, rj)
	checkIndexes(t, s)
}

func TestRecordRedaction(t *testing.T) {
	r := fullRecord()
	r.WrappedSeed = []byte("SEEDBYTES-0123456789")
	var logBuf strings.Builder
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("stored", "record", r)
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", r),
		"%+v":  fmt.Sprintf("%+v", r),
		"%#v":  fmt.Sprintf("%#v", r),
		"%s":   fmt.Sprintf("%s", r),
		"slog": logBuf.String(),
	}
	leaks := [][]byte{r.WrappedSeed, []byte(base64.StdEncoding.EncodeToString(r.WrappedSeed)),
		[]byte(hex.EncodeToString(r.WrappedSeed)), []byte(hex.EncodeToString(r.SHA256)),
		[]byte(base64.StdEncoding.EncodeToString(r.SHA256)), []byte(fmt.Sprint(r.SHA256))}
	for name, out := range outputs {
		if containsAny(out, leaks...) {
			t.Errorf("%s output leaks the seed or digest: %s", name, out)
		}
		if !strings.Contains(out, r.AssetID) {
			t.Errorf("%s output does not name the asset: %s", name, out)
		}
	}
}

func TestCursorsAtomicWithRecords(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openTest(t, path)
	if c, err := s.Cursor(ctx, "KW_ASSETS"); err != nil || c != 0 {
		t.Fatalf("Cursor(unset) = %d, %v; want 0, nil", c, err)
	}

	// A writer commits asset-i with cursor i. Both are in one transaction,
	// so a reader never sees one without the other: cursor c implies
	// asset-c exists, and asset-(c+1) existing implies the cursor has
	// reached c+1.
	const n = 60
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			c, err := s.Cursor(ctx, "KW_ASSETS")
			if err != nil {
				t.Error(err)
				return
			}
			if c > 0 {
				if _, err := s.Get(ctx, "t", fmt.Sprintf("asset-%d", c)); err != nil {
					t.Errorf("cursor is %d but Get(asset-%d) err = %v", c, c, err)
					return
				}
			}
			if _, err := s.Get(ctx, "t", fmt.Sprintf("asset-%d", c+1)); err == nil {
				if c2, _ := s.Cursor(ctx, "KW_ASSETS"); c2 < c+1 {
					t.Errorf("asset-%d is stored but the cursor is still %d", c+1, c2)
					return
				}
			}
		}
	})
	for i := 1; i <= n; i++ {
		err := s.Apply(ctx, Batch{
			Records: []Record{enc("t", fmt.Sprintf("asset-%d", i), ModeCustomer, "k")},
			Cursors: map[string]uint64{"KW_ASSETS": uint64(i), "KW_OTHER": uint64(1000 + i)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()

	// Cursor-only batches are allowed (messages that produced no record).
	if err := s.Apply(ctx, Batch{Cursors: map[string]uint64{"KW_ASSETS": n + 5}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, path)
	for name, want := range map[string]uint64{"KW_ASSETS": n + 5, "KW_OTHER": 1000 + n, "unset": 0} {
		if got, err := s2.Cursor(ctx, name); err != nil || got != want {
			t.Errorf("Cursor(%q) after reopen = %d, %v; want %d", name, got, err, want)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openTest(t, path)
	full := fullRecord()
	recs := []Record{full, rejected("acme", "r1")}
	for i := range 20 {
		recs = append(recs, enc("acme", fmt.Sprintf("f%02d", i), ModeFallback, "localkms://backup"))
	}
	if err := s.Apply(ctx, Batch{Records: recs, Cursors: map[string]uint64{"KW_ASSETS": 77}}); err != nil {
		t.Fatal(err)
	}
	before := map[string]Record{}
	for _, r := range recs {
		before[r.AssetID] = mustGet(t, s, r.TenantID, r.AssetID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openTest(t, path)
	for id, want := range before {
		if got := mustGet(t, s2, "acme", id); !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%s) after reopen = %v, want %v", id, got, want)
		}
	}
	if got := byModeIDs(t, s2, "acme", ModeFallback, ScanOptions{}); len(got) != 21 {
		t.Errorf("ByMode(fallback) after reopen visited %d, want 21", len(got))
	}
	if got := byKeyIDs(t, s2, "acme", full.KeyURI, ScanOptions{}); !slices.Equal(got, []string{full.AssetID}) {
		t.Errorf("ByKey after reopen = %q", got)
	}
	if c, _ := s2.Cursor(ctx, "KW_ASSETS"); c != 77 {
		t.Errorf("cursor after reopen = %d, want 77", c)
	}
	checkIndexes(t, s2)
	if s2.Path() != path {
		t.Errorf("Path() = %q, want %q", s2.Path(), path)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "ledger.db")
	openTest(t, path)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %o, want %o", p, got, want)
		}
	}
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") err = nil")
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	path := testPath(t)
	first := openTest(t, path)

	type result struct {
		s   *Store
		err error
	}
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		s, err := Open(path, WithOpenTimeout(100*time.Millisecond))
		ch <- result{s, err}
	}()
	var second *Store
	var err error
	select {
	case r := <-ch:
		second, err = r.s, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("second Open of a held file still waiting after 5s, want a fast error")
	}
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !errors.Is(err, bbolt.ErrTimeout) {
		t.Errorf("second Open err = %v, want %v wrapping bbolt.ErrTimeout", err, ErrLocked)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("second Open err = %q does not name the file %s", err, path)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open took %v, want about the 100ms timeout", elapsed)
	}

	// Once the first is closed the file opens again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openTest(t, path, WithOpenTimeout(time.Second))
}

func TestMigrationRunsOnce(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openTest(t, path)
	mustPut(t, s, enc("t", "a", ModeCustomer, "k"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setRawSchemaVersion(t, path, 0)

	runs := 0
	mig := Migration{From: 0, Apply: func(tx *bbolt.Tx) error {
		runs++
		// A migration sees the old data and may write in the same tx.
		if tx.Bucket(bucketAssets).Get(assetKey("t", "a")) == nil {
			return errors.New("old record not visible to migration")
		}
		return tx.Bucket(bucketMeta).Put([]byte("migrated"), []byte("yes"))
	}}
	s2 := openTest(t, path, WithMigrations(mig))
	if runs != 1 {
		t.Fatalf("migration ran %d times, want 1", runs)
	}
	mustGet(t, s2, "t", "a")
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawSchemaVersion(t, path); v != SchemaVersion {
		t.Errorf("schema version after migration = %d, want %d", v, SchemaVersion)
	}
	s3 := openTest(t, path, WithMigrations(mig))
	if runs != 1 {
		t.Errorf("migration ran again on reopen (%d runs)", runs)
	}
	if _, err := s3.Get(ctx, "t", "a"); err != nil {
		t.Error(err)
	}
}

func TestMigrationFailureLeavesFileUntouched(t *testing.T) {
	path := testPath(t)
	s := openTest(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setRawSchemaVersion(t, path, 0)

	// No migration registered for version 0.
	if _, err := Open(path); err == nil {
		t.Fatal("Open of a version 0 file without a migration succeeded")
	}
	boom := errors.New("boom")
	_, err := Open(path, WithMigrations(Migration{From: 0, Apply: func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put([]byte("half"), []byte("done")); err != nil {
			return err
		}
		return boom
	}}))
	if !errors.Is(err, boom) {
		t.Fatalf("Open with a failing migration err = %v, want %v", err, boom)
	}
	if v := rawSchemaVersion(t, path); v != 0 {
		t.Errorf("schema version after failed migration = %d, want 0", v)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta).Get([]byte("half")) != nil {
			t.Error("failed migration's write was committed")
		}
		return nil
	})
	if _, err := Open(path, WithMigrations(Migration{From: 0}, Migration{From: 0})); err == nil {
		t.Error("Open with duplicate/nil migrations succeeded")
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := testPath(t)
	s := openTest(t, path)
	mustPut(t, s, enc("t", "a", ModeCustomer, "k"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setRawSchemaVersion(t, path, SchemaVersion+1)
	_, err := Open(path, WithOpenTimeout(200*time.Millisecond))
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open(newer file) err = %v, want %v", err, ErrSchemaTooNew)
	}
	// The failed Open released the file, and did not rewrite the version.
	if v := rawSchemaVersion(t, path); v != SchemaVersion+1 {
		t.Errorf("schema version after refused Open = %d, want %d", v, SchemaVersion+1)
	}

	// A value whose version byte is newer is refused too.
	setRawSchemaVersion(t, path, SchemaVersion)
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAssets).Put(assetKey("t", "a"), []byte{SchemaVersion + 1, '{', '}'})
	})
	s2 := openTest(t, path)
	if _, err := s2.Get(context.Background(), "t", "a"); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Get(newer value) err = %v, want %v", err, ErrSchemaTooNew)
	}
}

func TestCorruptData(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	mustPut(t, s, enc("t", "a", ModeFallback, "k"), enc("t", "b", ModeFallback, "k"))
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketAssets).Put(assetKey("t", "a"), []byte{SchemaVersion, 'x', 'y'}); err != nil {
			return err
		}
		// An index entry without its record.
		return tx.Bucket(bucketByMode).Put(byModeKey("u", ModeFallback, "ghost"), emptyValue)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "t", "a"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get(corrupt) err = %v, want %v", err, ErrCorrupt)
	}
	if err := s.ByMode(ctx, "u", ModeFallback, ScanOptions{}, func(Record) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ByMode over a dangling index entry err = %v, want %v", err, ErrCorrupt)
	}
	// Reset recovers.
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, enc("t", "a", ModeFallback, "k"))
	checkIndexes(t, s)
}

func TestCancelledContext(t *testing.T) {
	s := newTestStore(t)
	mustPut(t, s, enc("t", "a", ModeFallback, "k"), enc("t", "b", ModeFallback, "k"), enc("t", "c", ModeFallback, "k"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	noop := func(Record) error { t.Error("scan called fn with a cancelled context"); return nil }
	errs := map[string]error{
		"Apply":  s.Apply(ctx, Batch{Records: []Record{enc("t", "new", ModeCustomer, "k")}, Cursors: map[string]uint64{"KW_ASSETS": 9}}),
		"Put":    s.Put(ctx, enc("t", "new", ModeCustomer, "k")),
		"Delete": s.Delete(ctx, "t", "a"),
		"Update": s.Update(ctx, "t", "a", func(Record, bool) (*Record, error) {
			t.Error("Update called fn with a cancelled context")
			return nil, nil
		}),
		"Reset":  s.Reset(ctx),
		"ByKey":  s.ByKey(ctx, "t", "k", ScanOptions{}, noop),
		"ByMode": s.ByMode(ctx, "t", ModeFallback, ScanOptions{}, noop),
	}
	_, errs["Get"] = s.Get(ctx, "t", "a")
	_, errs["Cursor"] = s.Cursor(ctx, "KW_ASSETS")
	_, errs["CountByMode"] = s.CountByMode(ctx, "t")
	_, errs["Stats"] = s.Stats(ctx)
	for name, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s(cancelled ctx) err = %v, want %v", name, err, context.Canceled)
		}
	}
	bg := context.Background()
	if _, err := s.Get(bg, "t", "new"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a cancelled Apply/Put wrote: Get(new) err = %v", err)
	}
	if st, _ := s.Stats(bg); st.Records != 3 {
		t.Errorf("records after cancelled calls = %d, want 3", st.Records)
	}

	// Cancelled between scan items: the scan stops there.
	ctx2, cancel2 := context.WithCancel(bg)
	defer cancel2()
	var seen []string
	err := s.ByMode(ctx2, "t", ModeFallback, ScanOptions{}, func(r Record) error {
		seen = append(seen, r.AssetID)
		cancel2()
		return nil
	})
	if !errors.Is(err, context.Canceled) || !slices.Equal(seen, []string{"a"}) {
		t.Errorf("ByMode cancelled in fn: visited %q, err = %v; want [a], %v", seen, err, context.Canceled)
	}
}

func TestConcurrentApply(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	const workers, batches, per = 6, 15, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for b := range batches {
				var recs []Record
				for i := range per {
					mode := []Mode{ModeCustomer, ModeFallback, ModePlatform}[(b+i)%3]
					recs = append(recs, enc("t", fmt.Sprintf("w%d-b%02d-%d", w, b, i), mode, fmt.Sprintf("k%d", w%2)))
				}
				// Every worker also rewrites a shared asset, changing its mode.
				recs = append(recs, enc("t", "shared", []Mode{ModeCustomer, ModeFallback}[w%2], fmt.Sprintf("k%d", w)))
				if err := s.Apply(ctx, Batch{Records: recs, Cursors: map[string]uint64{fmt.Sprintf("w%d", w): uint64(b + 1)}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Readers and scanners run alongside.
	for range 2 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.CountByMode(ctx, "t"); err != nil {
					t.Error(err)
				}
				if err := s.ByMode(ctx, "t", ModeFallback, ScanOptions{Limit: 50}, func(Record) error { return nil }); err != nil {
					t.Error(err)
				}
				if _, err := s.Get(ctx, "t", "shared"); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers*batches*per + 1; st.Records != want || st.ByState[StateEncrypted] != want {
		t.Errorf("Stats = %+v, want %d encrypted records", st, want)
	}
	for w := range workers {
		if c, _ := s.Cursor(ctx, fmt.Sprintf("w%d", w)); c != batches {
			t.Errorf("cursor w%d = %d, want %d", w, c, batches)
		}
	}
	checkIndexes(t, s)
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)

	// Create when missing; ids are filled in.
	err := s.Update(ctx, "t", "a", func(cur Record, found bool) (*Record, error) {
		if found || !reflect.DeepEqual(cur, Record{}) {
			t.Errorf("Update(missing) fn got %v, found=%v", cur, found)
		}
		r := enc("", "", ModeFallback, "backup")
		r.Reencrypt = true
		return &r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "t", "a"); got.TenantID != "t" || got.AssetID != "a" || got.Mode != ModeFallback {
		t.Fatalf("Get after creating Update = %v", got)
	}

	// Heal: fallback → customer, a conditional on the current record.
	heal := func(cur Record, found bool) (*Record, error) {
		if !found || !cur.Reencrypt {
			return &cur, nil // already healed: write back unchanged (idempotent)
		}
		cur.Mode, cur.KeyURI, cur.Reencrypt, cur.KeyVersion = ModeCustomer, "awskms://c", false, "2"
		return &cur, nil
	}
	for range 2 { // safe to run twice
		if err := s.Update(ctx, "t", "a", heal); err != nil {
			t.Fatal(err)
		}
	}
	got := mustGet(t, s, "t", "a")
	if got.Mode != ModeCustomer || got.KeyURI != "awskms://c" || got.Reencrypt || got.KeyVersion != "2" {
		t.Errorf("Get after heal = %v", got)
	}
	checkIndexes(t, s)

	// An error from fn aborts; fn's changes to cur are not stored.
	boom := errors.New("kms said no")
	err = s.Update(ctx, "t", "a", func(cur Record, _ bool) (*Record, error) {
		cur.WrappedSeed[0] ^= 0xff
		cur.Mode = ModePlatform
		return &cur, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Update err = %v, want %v", err, boom)
	}
	if again := mustGet(t, s, "t", "a"); !reflect.DeepEqual(again, got) {
		t.Errorf("Get after failed Update = %v, want %v", again, got)
	}

	// Returning another asset's identity, or an invalid record, is refused.
	var ire *InvalidRecordError
	err = s.Update(ctx, "t", "a", func(cur Record, _ bool) (*Record, error) { cur.AssetID = "b"; return &cur, nil })
	if !errors.As(err, &ire) || ire.Field != "asset_id" {
		t.Errorf("Update moving the record err = %v, want invalid asset_id", err)
	}
	err = s.Update(ctx, "t", "a", func(cur Record, _ bool) (*Record, error) { cur.Mode = "bogus"; return &cur, nil })
	if !errors.As(err, &ire) || ire.Field != "mode" {
		t.Errorf("Update to an invalid mode err = %v, want invalid mode", err)
	}

	// (nil, nil) deletes, and index entries go with it; on a missing record it is a no-op.
	for range 2 {
		if err := s.Update(ctx, "t", "a", func(Record, bool) (*Record, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, "t", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after deleting Update err = %v, want %v", err, ErrNotFound)
	}
	checkIndexes(t, s)
}

// TestScanWhileWriting is the re-encryptor's loop: heal every fallback
// record from inside the ByMode callback.
func TestScanWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	s.scanChunk = 4
	var want []string
	var recs []Record
	for i := range 30 {
		id := fmt.Sprintf("a%02d", i)
		want = append(want, id)
		recs = append(recs, enc("t", id, ModeFallback, "backup"))
	}
	mustPut(t, s, recs...)
	var seen []string
	err := s.ByMode(ctx, "t", ModeFallback, ScanOptions{}, func(r Record) error {
		seen = append(seen, r.AssetID)
		r.Mode, r.KeyURI = ModeCustomer, "awskms://c"
		return s.Put(ctx, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("healed %q, want %q", seen, want)
	}
	if n := len(byModeIDs(t, s, "t", ModeFallback, ScanOptions{})); n != 0 {
		t.Errorf("%d fallback records left", n)
	}
	checkIndexes(t, s)

	// fn's error stops the scan and is returned as is.
	stop := errors.New("stop")
	calls := 0
	err = s.ByKey(ctx, "t", "awskms://c", ScanOptions{}, func(Record) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("ByKey with failing fn: err = %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func TestStatsAndReset(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	s := openTest(t, path)
	mustPut(t, s, enc("t", "a", ModeCustomer, "k"), enc("u", "a", ModeFallback, "k"), rejected("t", "r"))
	if err := s.Apply(ctx, Batch{Cursors: map[string]uint64{"KW_ASSETS": 3}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 3 || !reflect.DeepEqual(st.ByState, map[State]int{StateEncrypted: 2, StateRejected: 1}) {
		t.Errorf("Stats = %+v, want 3 records, 2 encrypted, 1 rejected", st)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.FileSize != fi.Size() || st.FileSize == 0 {
		t.Errorf("Stats.FileSize = %d, want %d", st.FileSize, fi.Size())
	}

	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 0 || st.ByState[StateEncrypted] != 0 || st.ByState[StateRejected] != 0 {
		t.Errorf("Stats after Reset = %+v, want empty", st)
	}
	if c, _ := s.Cursor(ctx, "KW_ASSETS"); c != 0 {
		t.Errorf("cursor after Reset = %d, want 0", c)
	}
	if got := byKeyIDs(t, s, "t", "k", ScanOptions{}); len(got) != 0 {
		t.Errorf("ByKey after Reset = %q", got)
	}
	checkIndexes(t, s)
	// Rebuild works and the version survives a reopen.
	mustPut(t, s, enc("t", "a", ModeCustomer, "k"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawSchemaVersion(t, path); v != SchemaVersion {
		t.Errorf("schema version after Reset = %d, want %d", v, SchemaVersion)
	}
	s2 := openTest(t, path)
	mustGet(t, s2, "t", "a")
}

func TestClosed(t *testing.T) {
	s := newTestStore(t)
	mustPut(t, s, enc("t", "a", ModeCustomer, "k"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close err = %v, want nil", err)
	}
	ctx := context.Background()
	fn := func(Record) error { return nil }
	errs := map[string]error{
		"Apply":  s.Apply(ctx, Batch{Cursors: map[string]uint64{"x": 1}}),
		"Put":    s.Put(ctx, enc("t", "b", ModeCustomer, "k")),
		"Delete": s.Delete(ctx, "t", "a"),
		"Update": s.Update(ctx, "t", "a", func(Record, bool) (*Record, error) { return nil, nil }),
		"Reset":  s.Reset(ctx),
		"ByKey":  s.ByKey(ctx, "t", "k", ScanOptions{}, fn),
		"ByMode": s.ByMode(ctx, "t", ModeCustomer, ScanOptions{}, fn),
	}
	_, errs["Get"] = s.Get(ctx, "t", "a")
	_, errs["Cursor"] = s.Cursor(ctx, "x")
	_, errs["CountByMode"] = s.CountByMode(ctx, "t")
	_, errs["Stats"] = s.Stats(ctx)
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close err = %v, want %v", name, err, ErrClosed)
		}
	}
}

func TestStreamSeqs(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	a := fullRecord()
	b := fullRecord()
	b.AssetID, b.StreamSeq = "other", 42
	if err := s.Put(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	seqs, err := s.StreamSeqs(ctx, []Ref{{a.TenantID, a.AssetID}, {"acme", "missing"}, {b.TenantID, b.AssetID}})
	if err != nil {
		t.Fatal(err)
	}
	if seqs[0] != a.StreamSeq || seqs[1] != 0 || seqs[2] != 42 {
		t.Fatalf("StreamSeqs = %v", seqs)
	}
}
