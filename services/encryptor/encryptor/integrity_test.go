package encryptor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/ledger"
)

// copyObject writes the bytes of one vault object under another name, as an
// attacker with write access to KW_VAULT could.
func (s *stack) copyObject(from, to string, mutate func([]byte)) {
	s.t.Helper()
	ctx := context.Background()
	res, err := s.vault.Get(ctx, from)
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := io.ReadAll(res)
	if err != nil {
		s.t.Fatal(err)
	}
	if mutate != nil {
		mutate(b)
	}
	if _, err := s.vault.Put(ctx, to, bytes.NewReader(b), jetstream.ObjectMeta{}); err != nil {
		s.t.Fatal(err)
	}
}

func TestTamperedCiphertextFailsToDecrypt(t *testing.T) {
	s := newStack(t)
	s.enroll("acme")
	s.enroll("globex")
	data := pattern(100<<10, 5)
	a := s.mustEncrypt("acme", "a", data)
	s.mustEncrypt("acme", "b", pattern(100<<10, 6))
	s.mustEncrypt("globex", "g", pattern(100<<10, 7))
	hdrLen := len(a.KeyURI) + len(a.KeyVersion) + len(a.WrappedSeed) + 13

	t.Run("flipped bit in a chunk", func(t *testing.T) {
		s.copyObject("acme/a", "acme/a", func(b []byte) { b[hdrLen+56+5000] ^= 1 })
		_, err := s.get("acme", "a")
		if !errors.Is(err, envelope.ErrAuthentication) {
			t.Fatalf("get = %v, want ErrAuthentication", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		s.mustEncrypt("acme", "t", data)
		s.copyObject("acme/t", "acme/t", nil)
		res, _ := s.vault.Get(context.Background(), "acme/t")
		b, _ := io.ReadAll(res)
		if _, err := s.vault.Put(context.Background(), "acme/t", bytes.NewReader(b[:len(b)-100]), jetstream.ObjectMeta{}); err != nil {
			t.Fatal(err)
		}
		_, err := s.get("acme", "t")
		if !errors.Is(err, envelope.ErrAuthentication) && !errors.Is(err, envelope.ErrTruncated) {
			t.Fatalf("get = %v, want a truncation error", err)
		}
	})
	t.Run("swapped chunks", func(t *testing.T) {
		s.mustEncrypt("acme", "w", data)
		s.copyObject("acme/w", "acme/w", func(b []byte) {
			c := hdrLen + 56
			const ec = 16384 + 16
			tmp := bytes.Clone(b[c : c+ec])
			copy(b[c:c+ec], b[c+ec:c+2*ec])
			copy(b[c+ec:c+2*ec], tmp)
		})
		_, err := s.get("acme", "w")
		if !errors.Is(err, envelope.ErrAuthentication) {
			t.Fatalf("get = %v, want ErrAuthentication", err)
		}
	})
	t.Run("copied to another asset", func(t *testing.T) {
		s.mustEncrypt("acme", "c", data)
		s.copyObject("acme/c", "acme/b", nil)
		_, err := s.get("acme", "b")
		var be *keybroker.Error
		if !errors.As(err, &be) || be.Code != keybroker.CodePrefixMismatch {
			t.Fatalf("get = %v, want the broker to refuse a ciphertext that is not the asset's", err)
		}
	})
	t.Run("copied to another tenant", func(t *testing.T) {
		s.mustEncrypt("acme", "x", data)
		s.copyObject("acme/x", "globex/g", nil)
		_, err := s.get("globex", "g")
		var be *keybroker.Error
		if !errors.As(err, &be) || be.Code != keybroker.CodePrefixMismatch {
			t.Fatalf("get = %v, want prefix_mismatch", err)
		}
	})
}

// The broker refuses requests that try to reach across tenants.
func TestBrokerRefusesCrossTenantRequests(t *testing.T) {
	s := newStack(t)
	s.enroll("acme")
	s.enroll("globex")
	s.mustEncrypt("acme", "a", pattern(1000, 1))
	ra, err := s.vault.OpenReaderAt(context.Background(), "acme/a")
	if err != nil {
		t.Fatal(err)
	}
	p, err := envelope.ReadPrefix(ra, ra.Size())
	if err != nil {
		t.Fatal(err)
	}
	prefix := append(bytes.Clone(p.RawHeader), p.Payload...)
	rcpt, _ := keybroker.NewRecipient()
	ask := func(subject string, req keybroker.UnwrapRequest) *keybroker.UnwrapResponse {
		b, _ := json.Marshal(req)
		m, err := s.env.NC.Request(subject, b, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var resp keybroker.UnwrapResponse
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			t.Fatal(err)
		}
		return &resp
	}
	req := keybroker.UnwrapRequest{TenantID: "acme", AssetID: "a", Prefix: prefix, RecipientPublicKey: rcpt.PublicKey()}
	if r := ask(events.SubjectKeyUnwrap("acme"), req); r.Error != nil {
		t.Fatalf("legitimate request refused: %v", r.Error)
	}
	// globex asks on its own subject for acme's asset.
	if r := ask(events.SubjectKeyUnwrap("globex"), req); r.Error == nil || r.Error.Code != keybroker.CodeTenantMismatch {
		t.Fatalf("cross-tenant request: %+v", r)
	}
	// globex names itself but presents acme's ciphertext prefix.
	req2 := req
	req2.TenantID, req2.AssetID = "globex", "a"
	if r := ask(events.SubjectKeyUnwrap("globex"), req2); r.Error == nil || r.Error.Code != keybroker.CodeAssetNotFound {
		t.Fatalf("acme's prefix under globex: %+v", r)
	}
	bad := req
	bad.RecipientPublicKey = []byte("short")
	if r := ask(events.SubjectKeyUnwrap("acme"), bad); r.Error == nil || r.Error.Code != keybroker.CodeInvalidRequest {
		t.Fatalf("bad public key: %+v", r)
	}
	// A reader cannot open a key sealed for another asset.
	r := ask(events.SubjectKeyUnwrap("acme"), req)
	if _, err := rcpt.Open(r.SealedKey, "acme", "other"); err == nil {
		t.Fatal("a sealed key opened for another asset id")
	}
}

// TestReplayChangesNothing: the same event delivered again (a replay with a
// new message id, as ops would by redriving or replaying the stream) leaves
// one ciphertext and one AssetEncrypted.
func TestReplayChangesNothing(t *testing.T) {
	s := newStack(t)
	s.enroll("acme")
	data := pattern(400<<10, 11)
	first := s.mustEncrypt("acme", "r1", data)
	raw := s.streamMsgs(events.StreamIngest, events.SubjectAssetCreated("acme"))
	if len(raw) != 1 {
		t.Fatalf("ingest holds %d events", len(raw))
	}
	s.eventually("the projector to see the outcome", func() bool {
		rec, err := s.ledger.Get(context.Background(), "acme", "r1")
		return err == nil && rec.StreamSeq != 0
	})
	for i := 0; i < 3; i++ {
		inbox := nats.NewInbox()
		sub, _ := s.env.NC.SubscribeSync(inbox)
		m := nats.NewMsg(raw[0].Subject)
		m.Data = raw[0].Data
		m.Header.Set(events.HeaderMsgID, "replay-"+string(rune('0'+i)))
		m.Header.Set(events.HeaderNotify, inbox)
		if _, err := s.env.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		reply, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.DecodeAssetEncrypted(reply.Data)
		if err != nil || e.CiphertextSHA256 != first.CiphertextSHA256 {
			t.Fatalf("replay outcome %+v, %v; want the original", e, err)
		}
		sub.Unsubscribe()
	}
	if n := len(s.streamMsgs(events.StreamAssets, events.SubjectAssetEncrypted("acme"))); n != 1 {
		t.Fatalf("%d AssetEncrypted after replays, want 1", n)
	}
	if got, err := s.get("acme", "r1"); err != nil || !bytes.Equal(got, data) {
		t.Fatal("asset damaged by replays")
	}
}

// TestLedgerRebuiltFromStream: a worker whose ledger file is lost rebuilds it
// from KW_ASSETS before it serves, so reads and duplicates still work.
func TestLedgerRebuiltFromStream(t *testing.T) {
	s := newStack(t)
	s.enroll("acme")
	data := map[string][]byte{}
	for _, id := range []string{"l1", "l2", "l3"} {
		data[id] = pattern(30000, id[1])
		s.mustEncrypt("acme", id, data[id])
	}
	if out := s.put("stranger", "p1", []byte("platform")); out.Encrypted == nil {
		t.Fatal("platform asset rejected")
	}
	s.stopWorker()
	if err := os.Remove(s.ledger.Path()); err != nil {
		t.Fatal(err)
	}
	s.start()
	for id, want := range data {
		rec, err := s.ledger.Get(context.Background(), "acme", id)
		if err != nil || rec.State != ledger.StateEncrypted || rec.StreamSeq == 0 || rec.Coverage != "covered" {
			t.Fatalf("rebuilt record %s = %+v, %v", id, rec, err)
		}
		got, err := s.get("acme", id)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %s after rebuild: %v", id, err)
		}
	}
	counts, err := s.ledger.CountByMode(context.Background(), "acme")
	if err != nil || counts[ledger.ModeCustomer] != 3 {
		t.Fatalf("CountByMode = %v, %v", counts, err)
	}
	// A duplicate after the rebuild is still recognised.
	if e := s.mustEncrypt("acme", "l1", []byte("other")); e.Size != int64(len(data["l1"])) {
		t.Fatal("duplicate after rebuild re-encrypted the asset")
	}
}
