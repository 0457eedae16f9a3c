package encryptor_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/vault"
)

// TestBrokerServesHealedAsset: an asset stored under the fallback key is
// healed by hand, the way the re-encryptor will (a fresh seed from the
// customer key, the content re-encrypted, the new object replacing the old
// one, AssetReencrypted published). The worker's ledger projection moves the
// record to the customer key, and the key broker then unwraps the new
// wrapped seed under the customer key: the asset reads back unchanged, and a
// request with the prefix of the old fallback ciphertext is refused.
func TestBrokerServesHealedAsset(t *testing.T) {
	s := newStack(t)
	key := s.enroll("acme")
	s.setStatus("acme", key, events.KeyStatusUnavailable)
	data := pattern(70000, 7)
	enc := s.mustEncrypt("acme", "h1", data)
	if enc.Mode != events.ModeFallback || enc.KeyURI != s.fallback.String() {
		t.Fatalf("during the outage: mode %s key %s, want fallback", enc.Mode, enc.KeyURI)
	}
	s.setStatus("acme", key, events.KeyStatusAvailable)
	ctx := context.Background()
	name := events.VaultObjectName("acme", "h1")
	oldPrefix := s.prefixOf(name)

	// Heal: new seed under the customer key, content re-encrypted.
	seed, err := s.seeds.Seed(ctx, key, kms.NewEncryptionContext("acme", kms.PurposeAssetSeed), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Destroy()
	hdr := &envelope.Header{KeyURI: key.String(), KeyVersion: seed.KeyVersion, WrappedSeed: seed.Ciphertext}
	var buf bytes.Buffer
	ew, err := envelope.NewWriter(&buf, hdr, seed.Plaintext, envelope.Identity{TenantID: "acme", AssetID: "h1", Service: enc.Service})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ew.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := s.vault.Put(ctx, name, bytes.NewReader(buf.Bytes()), jetstream.ObjectMeta{})
	if err != nil {
		t.Fatal(err)
	}
	ctHex, err := vault.DigestHex(info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	hsum := ew.HeaderSHA256()
	re := &events.AssetReencrypted{
		TenantID: "acme", AssetID: "h1", Service: enc.Service,
		FromMode: events.ModeFallback, ToMode: events.ModeCustomer, FromKeyURI: enc.KeyURI,
		KeyURI: key.String(), KeyVersion: seed.KeyVersion, WrappedSeed: seed.Ciphertext,
		Location: events.Location{Bucket: events.BucketVault, Object: name},
		Size:     int64(len(data)), CiphertextSize: int64(info.Size), CiphertextSHA256: ctHex,
		HeaderSHA256: hex.EncodeToString(hsum[:]), Purpose: events.PurposeHeal, JobID: "heal-test", ReencryptedAt: time.Now().UTC(),
	}
	if _, err := events.NewPublisher(s.env.JS, "test").Publish(ctx, events.Outgoing{
		Subject: events.SubjectAssetReencrypted("acme"), MsgID: "reencrypted.acme.h1.heal-test", Type: events.TypeAssetReencrypted,
		Event: re, Header: nats.Header{events.HeaderAssetID: []string{"h1"}},
	}); err != nil {
		t.Fatal(err)
	}

	s.eventually("the ledger to record the heal", func() bool {
		r, err := s.ledger.Get(ctx, "acme", "h1")
		return err == nil && r.KeyURI == key.String()
	})
	rec, _ := s.ledger.Get(ctx, "acme", "h1")
	if rec.Mode != ledger.ModeCustomer || rec.Reencrypt || !bytes.Equal(rec.WrappedSeed, seed.Ciphertext) {
		t.Fatalf("healed record = %v", rec)
	}
	if got, err := s.get("acme", "h1"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading the healed asset: %v (equal %v)", err, bytes.Equal(got, data))
	}
	// The old fallback ciphertext is no longer the asset's.
	rcpt, _ := keybroker.NewRecipient()
	b, _ := json.Marshal(keybroker.UnwrapRequest{TenantID: "acme", AssetID: "h1", Prefix: oldPrefix, RecipientPublicKey: rcpt.PublicKey()})
	m, err := s.env.NC.Request(events.SubjectKeyUnwrap("acme"), b, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var resp keybroker.UnwrapResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error == nil || resp.Error.Code != keybroker.CodePrefixMismatch {
		t.Fatalf("old fallback prefix: response %+v, want %s", resp, keybroker.CodePrefixMismatch)
	}
	// The ledger's indexes no longer list the asset under the fallback key.
	counts, err := s.ledger.CountByMode(ctx, "acme")
	if err != nil || counts[ledger.ModeFallback] != 0 || counts[ledger.ModeCustomer] != 1 {
		t.Fatalf("CountByMode = %v, %v", counts, err)
	}
}

// prefixOf returns the envelope prefix (header and first chunk) of a stored
// object, as a reader sends it to the key broker.
func (s *stack) prefixOf(name string) []byte {
	s.t.Helper()
	ra, err := s.vault.OpenReaderAt(context.Background(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	p, err := envelope.ReadPrefix(ra, ra.Size())
	if err != nil {
		s.t.Fatal(err)
	}
	return append(bytes.Clone(p.RawHeader), p.Payload...)
}
