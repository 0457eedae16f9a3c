package projector_test

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

func publish(t *testing.T, p *events.Publisher, o *events.Outgoing) uint64 {
	t.Helper()
	ack, err := p.Publish(context.Background(), *o)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func encrypted(asset string) *events.Outgoing {
	e := &events.AssetEncrypted{
		TenantID: "acme", AssetID: asset, Service: "team_chat", Mode: events.ModeCustomer, Coverage: "covered",
		KeyURI: "localkms:///k", KeyVersion: "1", WrappedSeed: []byte("w"),
		Location: events.Location{Bucket: events.BucketVault, Object: "acme/" + asset},
		Size:     1, CiphertextSize: 200, CiphertextSHA256: strings.Repeat("a", 64), HeaderSHA256: strings.Repeat("b", 64),
		SourceEventID: "e1", EncryptedAt: time.Now().UTC(),
	}
	return &events.Outgoing{Subject: events.SubjectAssetEncrypted("acme"), MsgID: "enc." + asset, Type: events.TypeAssetEncrypted, Event: e,
		Header: nats.Header{events.HeaderAssetID: []string{asset}}}
}

func rejected(asset, id string) *events.Outgoing {
	e := &events.AssetRejected{TenantID: "acme", AssetID: asset, Reason: events.ReasonCustomerKeyUnavailable, Detail: "d", SourceEventID: id, RejectedAt: time.Now().UTC()}
	return &events.Outgoing{Subject: events.SubjectAssetRejected("acme"), MsgID: "rej." + asset + id, Type: events.TypeAssetRejected, Event: e,
		Header: nats.Header{events.HeaderAssetID: []string{asset}}}
}

func TestRebuildFollowsTheLog(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	p := events.NewPublisher(env.JS, "test")
	publish(t, p, rejected("a", "e0")) // rejected, then stored by a later event
	seqA := publish(t, p, encrypted("a"))
	publish(t, p, rejected("a", "e2")) // a late rejection never undoes an encryption
	publish(t, p, rejected("b", "e3"))
	// Garbage in the log of record is skipped, not fatal.
	if _, err := env.JS.Publish(ctx, events.SubjectAssetEncrypted("acme"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	store, err := ledger.Open(filepath.Join(t.TempDir(), "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := projector.Rebuild(ctx, env.JS, store); err != nil {
		t.Fatal(err)
	}
	a, err := store.Get(ctx, "acme", "a")
	if err != nil || a.State != ledger.StateEncrypted || a.StreamSeq != seqA || a.Coverage != "covered" {
		t.Fatalf("a = %+v, %v", a, err)
	}
	b, err := store.Get(ctx, "acme", "b")
	if err != nil || b.State != ledger.StateRejected || b.EventID != "e3" {
		t.Fatalf("b = %+v, %v", b, err)
	}
	cur, _ := store.Cursor(ctx, projector.CursorName)
	if cur < seqA+3 {
		t.Fatalf("cursor %d did not pass the end of the log", cur)
	}
	// Running again resumes from the cursor and picks up new events only.
	publish(t, p, encrypted("c"))
	pr := projector.New(env.JS, store)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pr.Run(runCtx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := store.Get(ctx, "acme", "c"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new event not projected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	round, _ := store.Get(ctx, "acme", "a")
	if round.StreamSeq != seqA {
		t.Fatalf("re-projection changed a: %+v", round)
	}
	if e := projector.ToEncrypted(round); e.Validate() != nil || e.CiphertextSHA256 != strings.Repeat("a", 64) {
		t.Fatalf("ToEncrypted = %+v", e)
	}
}

const (
	fallbackKey = "localkms:///fallback"
	customerKey = "awskms://arn:aws:kms:eu-west-2:111122223333:key/k1"
	rotatedKey  = "awskms://arn:aws:kms:eu-west-2:111122223333:key/k2"
)

// encryptedFallback is the AssetEncrypted of an asset stored under the
// fallback key during an outage.
func encryptedFallback(asset string) *events.Outgoing {
	o := encrypted(asset)
	e := o.Event.(*events.AssetEncrypted)
	e.Mode, e.KeyURI, e.PendingReencryption, e.WrappedSeed = events.ModeFallback, fallbackKey, true, []byte("fallback-wrapped")
	e.SourceEventID, e.EncryptedAt = "created."+asset, time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	return o
}

// reencrypted is the AssetReencrypted of asset moved from one key to another.
func reencrypted(asset string, purpose events.ReencryptPurpose, from, to events.Mode, fromKey, toKey, job string) *events.Outgoing {
	e := &events.AssetReencrypted{
		TenantID: "acme", AssetID: asset, Service: "team_chat", FromMode: from, ToMode: to,
		FromKeyURI: fromKey, KeyURI: toKey, KeyVersion: "v-" + job, WrappedSeed: []byte("wrapped-by-" + job),
		Location: events.Location{Bucket: events.BucketVault, Object: "acme/" + asset},
		Size:     1, CiphertextSize: 210, CiphertextSHA256: strings.Repeat("c", 64), HeaderSHA256: strings.Repeat("d", 64),
		Purpose: purpose, JobID: job, ReencryptedAt: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
	}
	return &events.Outgoing{Subject: events.SubjectAssetReencrypted("acme"), MsgID: "reenc." + asset + "." + job,
		Type: events.TypeAssetReencrypted, Event: e, Header: nats.Header{events.HeaderAssetID: []string{asset}}}
}

func heal(asset string) *events.Outgoing {
	return reencrypted(asset, events.PurposeHeal, events.ModeFallback, events.ModeCustomer, fallbackKey, customerKey, "heal-1")
}

func rotate(asset string) *events.Outgoing {
	return reencrypted(asset, events.PurposeRotation, events.ModeCustomer, events.ModeCustomer, customerKey, rotatedKey, "rot-1")
}

func openStore(t *testing.T) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(filepath.Join(t.TempDir(), "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// project runs a projector on store from its cursor until it has caught up.
func project(t *testing.T, env *natstest.Env, store *ledger.Store) {
	t.Helper()
	p := projector.New(env.JS, store)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	select {
	case <-p.CaughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("projector did not catch up")
	}
	cancel()
	<-done
}

// snapshot is everything observable of one tenant's encrypted records: the
// records (UpdatedAt aside) and both indexes.
type snapshot struct {
	records map[string]ledger.Record
	byMode  map[events.Mode][]string
	byKey   map[string][]string
}

func snap(t *testing.T, s *ledger.Store, keys ...string) snapshot {
	t.Helper()
	ctx := context.Background()
	sn := snapshot{records: map[string]ledger.Record{}, byMode: map[events.Mode][]string{}, byKey: map[string][]string{}}
	for _, m := range ledger.Modes() {
		err := s.ByMode(ctx, "acme", m, ledger.ScanOptions{}, func(r ledger.Record) error {
			r.UpdatedAt = time.Time{}
			sn.records[r.AssetID] = r
			sn.byMode[m] = append(sn.byMode[m], r.AssetID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		err := s.ByKey(ctx, "acme", k, ledger.ScanOptions{}, func(r ledger.Record) error {
			sn.byKey[k] = append(sn.byKey[k], r.AssetID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return sn
}

func get(t *testing.T, s *ledger.Store, asset string) ledger.Record {
	t.Helper()
	r, err := s.Get(context.Background(), "acme", asset)
	if err != nil {
		t.Fatalf("Get(%s) err = %v", asset, err)
	}
	return r
}

// TestHealUpdatesRecordAndIndexes: a fallback asset healed under the
// customer key becomes a customer record under the new key, with the new
// wrapped seed and digests, Reencrypt cleared, what only the first event
// knew kept, and both indexes moved; a second asset still in fallback is
// untouched. Then a rotation moves the healed asset again, and a rebuild
// from KW_ASSETS ends in the same ledger as live projection.
func TestHealUpdatesRecordAndIndexes(t *testing.T) {
	env := natstest.Start(t)
	p := events.NewPublisher(env.JS, "test")
	live := openStore(t)
	publish(t, p, encryptedFallback("a"))
	publish(t, p, encryptedFallback("b"))
	project(t, env, live)
	if r := get(t, live, "a"); r.Mode != events.ModeFallback || !r.Reencrypt || r.KeyURI != fallbackKey {
		t.Fatalf("before heal: a = %v", r)
	}

	seqHeal := publish(t, p, heal("a"))
	project(t, env, live)
	a := get(t, live, "a")
	if a.State != ledger.StateEncrypted || a.Mode != events.ModeCustomer || a.KeyURI != customerKey || a.KeyVersion != "v-heal-1" ||
		string(a.WrappedSeed) != "wrapped-by-heal-1" || a.Reencrypt || a.StreamSeq != seqHeal || a.CiphertextSize != 210 ||
		hex.EncodeToString(a.SHA256) != strings.Repeat("c", 64) || hex.EncodeToString(a.HeaderSHA256) != strings.Repeat("d", 64) {
		t.Fatalf("after heal: a = %v", a)
	}
	if a.Coverage != "covered" || a.EventID != "created.a" || !a.EncryptedAt.Equal(time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)) ||
		!a.ReencryptedAt.Equal(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("after heal, a lost what the AssetEncrypted said: coverage %q event %q encrypted_at %v reencrypted_at %v",
			a.Coverage, a.EventID, a.EncryptedAt, a.ReencryptedAt)
	}
	if b := get(t, live, "b"); b.Mode != events.ModeFallback || !b.Reencrypt {
		t.Fatalf("b changed: %v", b)
	}
	sn := snap(t, live, fallbackKey, customerKey)
	wantMode := map[events.Mode][]string{events.ModeCustomer: {"a"}, events.ModeFallback: {"b"}}
	wantKey := map[string][]string{customerKey: {"a"}, fallbackKey: {"b"}}
	if !reflect.DeepEqual(sn.byMode, wantMode) || !reflect.DeepEqual(sn.byKey, wantKey) {
		t.Fatalf("indexes after heal: by mode %v, by key %v; want %v, %v", sn.byMode, sn.byKey, wantMode, wantKey)
	}
	if counts, err := live.CountByMode(context.Background(), "acme"); err != nil || counts[events.ModeCustomer] != 1 || counts[events.ModeFallback] != 1 {
		t.Fatalf("CountByMode = %v, %v", counts, err)
	}

	// The healed asset's key is rotated; b is healed; c arrives healed
	// without its AssetEncrypted in this ledger's view (see
	// TestReencryptedWithoutRecord for that case alone).
	publish(t, p, rotate("a"))
	publish(t, p, heal("b"))
	publish(t, p, encrypted("c"))
	project(t, env, live)
	if a := get(t, live, "a"); a.KeyURI != rotatedKey || a.Mode != events.ModeCustomer || a.EventID != "created.a" {
		t.Fatalf("after rotation: a = %v", a)
	}

	rebuilt := openStore(t)
	if err := projector.Rebuild(context.Background(), env.JS, rebuilt); err != nil {
		t.Fatal(err)
	}
	keys := []string{fallbackKey, customerKey, rotatedKey, "localkms:///k"}
	want, got := snap(t, live, keys...), snap(t, rebuilt, keys...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt ledger differs from the live one:\n got %+v\nwant %+v", got, want)
	}
	if len(want.records) != 3 || len(want.byKey[fallbackKey]) != 0 || !reflect.DeepEqual(want.byKey[rotatedKey], []string{"a"}) ||
		!reflect.DeepEqual(want.byKey[customerKey], []string{"b"}) {
		t.Fatalf("live ledger: %+v", want)
	}
	lc, _ := live.Cursor(context.Background(), projector.CursorName)
	rc, _ := rebuilt.Cursor(context.Background(), projector.CursorName)
	if lc != rc {
		t.Fatalf("cursors: live %d, rebuilt %d", lc, rc)
	}
}

// TestReencryptedRedeliveryIsIdempotent: projecting the log again from the
// start over a ledger that already holds it (a redelivery of every event)
// changes nothing, not even UpdatedAt.
func TestReencryptedRedeliveryIsIdempotent(t *testing.T) {
	env := natstest.Start(t)
	p := events.NewPublisher(env.JS, "test")
	store := openStore(t)
	publish(t, p, encryptedFallback("a"))
	publish(t, p, heal("a"))
	// The same event published again under the same Nats-Msg-Id is
	// dropped by the stream's duplicate window.
	publish(t, p, heal("a"))
	project(t, env, store)
	before := get(t, store, "a")

	ctx := context.Background()
	if err := store.Apply(ctx, ledger.Batch{Cursors: map[string]uint64{projector.CursorName: 0}}); err != nil {
		t.Fatal(err)
	}
	project(t, env, store)
	after := get(t, store, "a")
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("redelivery changed the record:\n got %v (updated %v)\nwant %v (updated %v)", after, after.UpdatedAt, before, before.UpdatedAt)
	}
	if after.Mode != events.ModeCustomer || after.KeyURI != customerKey {
		t.Fatalf("a = %v", after)
	}
}

// TestOlderEventDoesNotRollBack: a worker that records its own
// AssetReencrypted (with its stream sequence) before the projector gets
// there must not see the record rolled back when the projector then applies
// the older AssetEncrypted and AssetReencrypted events of the same asset,
// whether or not they carry the asset id header.
func TestOlderEventDoesNotRollBack(t *testing.T) {
	env := natstest.Start(t)
	p := events.NewPublisher(env.JS, "test")
	store := openStore(t)
	ctx := context.Background()
	publish(t, p, encryptedFallback("a"))
	publish(t, p, heal("a"))
	noHeader := heal("a")
	noHeader.Header = nil
	noHeader.MsgID += ".no-header"
	publish(t, p, noHeader)
	rot := rotate("a")
	seqRot := publish(t, p, rot)
	// The rotation's worker recorded its outcome directly, ahead of the
	// projector (which has applied nothing yet).
	ahead := projector.FromReencrypted(rot.Event.(*events.AssetReencrypted), nil, seqRot)
	if err := store.Put(ctx, ahead); err != nil {
		t.Fatal(err)
	}
	before := get(t, store, "a")
	project(t, env, store)
	if got := get(t, store, "a"); !reflect.DeepEqual(got, before) {
		t.Fatalf("older events changed the record:\n got %v\nwant %v", got, before)
	}
	sn := snap(t, store, fallbackKey, customerKey, rotatedKey)
	if want := map[string][]string{rotatedKey: {"a"}}; !reflect.DeepEqual(sn.byKey, want) {
		t.Fatalf("by key = %v, want %v", sn.byKey, want)
	}
	// A later event still applies.
	back := reencrypted("a", events.PurposeRotation, events.ModeCustomer, events.ModeCustomer, rotatedKey, customerKey, "rot-2")
	seqBack := publish(t, p, back)
	project(t, env, store)
	if got := get(t, store, "a"); got.KeyURI != customerKey || got.StreamSeq != seqBack {
		t.Fatalf("later rotation not applied: %v", got)
	}
}

// TestReencryptedWithoutRecord: an AssetReencrypted for an asset the ledger
// does not hold makes the record on its own (it carries everything a record
// needs); one for an asset recorded as rejected replaces the rejection.
func TestReencryptedWithoutRecord(t *testing.T) {
	env := natstest.Start(t)
	p := events.NewPublisher(env.JS, "test")
	store := openStore(t)
	publish(t, p, rejected("r", "e1"))
	publish(t, p, heal("r"))
	seq := publish(t, p, heal("n"))
	dep := reencrypted("d", events.PurposeDeprovision, events.ModeCustomer, events.ModePlatform, customerKey, "localkms:///platform", "dep-1")
	publish(t, p, dep)
	project(t, env, store)
	n := get(t, store, "n")
	if n.State != ledger.StateEncrypted || n.Mode != events.ModeCustomer || n.KeyURI != customerKey || n.StreamSeq != seq ||
		n.Coverage != "covered" || n.EventID != "" || !n.EncryptedAt.Equal(n.ReencryptedAt) || n.Reencrypt {
		t.Fatalf("n = %v (coverage %q, encrypted_at %v)", n, n.Coverage, n.EncryptedAt)
	}
	if r := get(t, store, "r"); r.State != ledger.StateEncrypted || r.Mode != events.ModeCustomer || r.RejectReason != "" || r.EventID != "" {
		t.Fatalf("r = %v", r)
	}
	if d := get(t, store, "d"); d.Mode != events.ModePlatform || d.KeyURI != "localkms:///platform" {
		t.Fatalf("d = %v", d)
	}
	rebuilt := openStore(t)
	if err := projector.Rebuild(context.Background(), env.JS, rebuilt); err != nil {
		t.Fatal(err)
	}
	keys := []string{customerKey, "localkms:///platform"}
	if got, want := snap(t, rebuilt, keys...), snap(t, store, keys...); !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt ledger differs:\n got %+v\nwant %+v", got, want)
	}
}
