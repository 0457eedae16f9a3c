package projector_test

import (
	"context"
	"path/filepath"
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
