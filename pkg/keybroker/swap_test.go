package keybroker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/vault"
)

const (
	swapTenant  = "acme"
	swapService = "cloud_recording"
	// vaultChunk is small so an asset spans many Object Store chunks and a
	// read past the first few cannot be served from the vault reader's cache.
	vaultChunk = 1000
)

// ledgerEntry is what the test broker knows of an asset: the header digest
// and the seed (a real broker keeps the wrapped seed and asks the KMS).
type ledgerEntry struct {
	headerSum [32]byte
	seed      *kms.Secret
	keyURI    string
}

// testBroker answers keyward.key.unwrap.<tenant> on a real embedded NATS
// with the checks of services/encryptor/broker that matter here: the prefix
// must be the ciphertext the ledger records (header digest), and the key
// commitment must hold for the asset's identity; otherwise prefix_mismatch.
type testBroker struct {
	mu       sync.Mutex
	ledger   map[string]ledgerEntry
	requests atomic.Int32
}

func startBroker(t *testing.T, nc *nats.Conn) *testBroker {
	t.Helper()
	b := &testBroker{ledger: map[string]ledgerEntry{}}
	sub, err := nc.Subscribe(events.SubjectKeyUnwrap(swapTenant), func(m *nats.Msg) {
		b.requests.Add(1)
		data, _ := json.Marshal(b.serve(m.Data))
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return b
}

func refusal(code string) *keybroker.UnwrapResponse {
	return &keybroker.UnwrapResponse{Error: &keybroker.Error{Code: code, Message: "test broker"}}
}

func (b *testBroker) serve(data []byte) *keybroker.UnwrapResponse {
	var req keybroker.UnwrapRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return refusal(keybroker.CodeInvalidRequest)
	}
	b.mu.Lock()
	e, ok := b.ledger[req.AssetID]
	b.mu.Unlock()
	if !ok {
		return refusal(keybroker.CodeAssetNotFound)
	}
	prefix, err := envelope.ParsePrefix(req.Prefix)
	if err != nil {
		return refusal(keybroker.CodeInvalidRequest)
	}
	if sha256.Sum256(prefix.RawHeader) != e.headerSum {
		return refusal(keybroker.CodePrefixMismatch)
	}
	mk, err := prefix.MessageKey(e.seed, envelope.Identity{TenantID: req.TenantID, AssetID: req.AssetID, Service: swapService})
	if err != nil {
		return refusal(keybroker.CodePrefixMismatch)
	}
	defer mk.Destroy()
	sealed, err := keybroker.Seal(req.RecipientPublicKey, req.TenantID, req.AssetID, mk)
	if err != nil {
		return refusal(keybroker.CodeInvalidRequest)
	}
	return &keybroker.UnwrapResponse{Suite: keybroker.Suite, SealedKey: sealed, KeyURI: e.keyURI, Mode: string(events.ModeCustomer)}
}

// record points the ledger at ciphertext ct (as the projection of
// AssetEncrypted or AssetReencrypted would).
func (b *testBroker) record(t *testing.T, assetID string, ct []byte, seed *kms.Secret) {
	t.Helper()
	p, err := envelope.ParsePrefix(ct)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ledger[assetID] = ledgerEntry{headerSum: sha256.Sum256(p.RawHeader), seed: seed, keyURI: p.Header.KeyURI}
}

// recordLater records ct after d, in the background, as the re-encryptor's
// event reaches the ledger a little after the object was replaced.
func (b *testBroker) recordLater(t *testing.T, d time.Duration, assetID string, ct []byte, seed *kms.Secret) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(d)
		b.record(t, assetID, ct, seed)
	}()
	t.Cleanup(func() { <-done })
}

func seedOf(b byte) *kms.Secret { return kms.NewSecret(bytes.Repeat([]byte{b}, envelope.SeedSize)) }

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13 + i/509)
	}
	return b
}

// seal encrypts p for swapTenant/assetID under seed, with a header naming
// keyURI.
func seal(t *testing.T, assetID, keyURI string, seed *kms.Secret, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	h := &envelope.Header{KeyURI: keyURI, KeyVersion: "1", WrappedSeed: []byte("wrap of the seed under " + keyURI)}
	w, err := envelope.NewWriter(&buf, h, seed, envelope.Identity{TenantID: swapTenant, AssetID: assetID, Service: swapService})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type swapEnv struct {
	store  *vault.Store
	nc     *nats.Conn
	broker *testBroker
}

func startSwapEnv(t *testing.T) *swapEnv {
	t.Helper()
	env := natstest.Start(t)
	store, err := vault.Open(context.Background(), env.JS, events.BucketVault, vault.WithChunkSize(vaultChunk))
	if err != nil {
		t.Fatal(err)
	}
	return &swapEnv{store: store, nc: env.NC, broker: startBroker(t, env.NC)}
}

// put replaces the vault object of assetID with ct (Object Store Put: new
// chunks, new metadata, the old chunks purged).
func (e *swapEnv) put(t *testing.T, assetID string, ct []byte) {
	t.Helper()
	if _, err := e.store.Put(context.Background(), events.VaultObjectName(swapTenant, assetID), bytes.NewReader(ct), jetstream.ObjectMeta{}); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, a *keybroker.Asset) []byte {
	t.Helper()
	size, err := a.Size()
	if err != nil {
		t.Fatalf("Size: %v", err)
	}
	got, err := io.ReadAll(io.NewSectionReader(a, 0, size))
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return got
}

// TestOpenWhileLedgerCatchesUp: the object was re-encrypted under a new seed
// and key, and the ledger learns of it 300 ms later. Open is refused with
// prefix_mismatch meanwhile, re-reads the prefix, and succeeds.
func TestOpenWhileLedgerCatchesUp(t *testing.T) {
	e := startSwapEnv(t)
	p := pattern(3*cobblestone.ChunkSize + 77)
	old := seal(t, "rec-1", "localkms:///old.key", seedOf(1), p)
	e.put(t, "rec-1", old)
	e.broker.record(t, "rec-1", old, seedOf(1))

	fresh := seal(t, "rec-1", "localkms:///new.key", seedOf(2), p)
	e.put(t, "rec-1", fresh)
	e.broker.recordLater(t, 300*time.Millisecond, "rec-1", fresh, seedOf(2))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := keybroker.NewClient(e.nc).Open(ctx, e.store, swapTenant, "rec-1")
	if err != nil {
		t.Fatalf("Open while the ledger catches up: %v", err)
	}
	if got := readAll(t, a); !bytes.Equal(got, p) {
		t.Fatalf("read %d bytes, not the plaintext", len(got))
	}
	if a.KeyURI != "localkms:///new.key" {
		t.Fatalf("KeyURI = %s, want the new key", a.KeyURI)
	}
	if n := e.broker.requests.Load(); n < 2 {
		t.Fatalf("broker saw %d requests, want a refusal then a success", n)
	}
}

// TestReadSurvivesObjectSwap: a reader is part-way through an asset when
// the object is replaced, first by a re-encryption under a new seed, then
// by a rewrap (envelope v2: same seed and body, new key in the header); each
// time the ledger is updated 200 ms later. The old chunks are purged, so
// the reader re-opens the object and reads the same plaintext.
func TestReadSurvivesObjectSwap(t *testing.T) {
	e := startSwapEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const c = cobblestone.ChunkSize
	p := pattern(6*c + 500)
	first := seal(t, "rec-2", "localkms:///old.key", seedOf(1), p)
	e.put(t, "rec-2", first)
	e.broker.record(t, "rec-2", first, seedOf(1))

	a, err := keybroker.NewClient(e.nc).Open(ctx, e.store, swapTenant, "rec-2", cobblestone.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := a.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, p[:1000]) {
		t.Fatalf("first read: %v", err)
	}
	// A plain vault reader of the first object proves its chunks go away.
	stale, err := e.store.OpenReaderAt(ctx, events.VaultObjectName(swapTenant, "rec-2"))
	if err != nil {
		t.Fatal(err)
	}

	// 1. Re-encrypted under a new seed and key.
	second := seal(t, "rec-2", "localkms:///new.key", seedOf(2), p)
	if bytes.Equal(second[len(second)-100:], first[len(first)-100:]) {
		t.Fatal("the re-encryption did not change the ciphertext")
	}
	e.put(t, "rec-2", second)
	e.broker.recordLater(t, 200*time.Millisecond, "rec-2", second, seedOf(2))
	if _, err := stale.ReadAt(make([]byte, 10), int64(len(first)-10)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the replaced object's chunks are still readable (err %v): the test does not swap", err)
	}
	got := make([]byte, 4*c)
	if n, err := a.ReadAt(got, c+3); err != nil || n != len(got) || !bytes.Equal(got, p[c+3:5*c+3]) {
		t.Fatalf("read across the re-encryption: %d bytes, %v", n, err)
	}

	// 2. Rewrapped: same seed, same body, another key in the header.
	old, err := envelope.ParsePrefix(second)
	if err != nil {
		t.Fatal(err)
	}
	np, err := old.Rewrap("localkms:///rotated.key", "2", []byte("wrap of seed 2 under the rotated key"))
	if err != nil {
		t.Fatal(err)
	}
	third := append(np.Bytes(), second[old.Len():]...)
	e.put(t, "rec-2", third)
	e.broker.recordLater(t, 200*time.Millisecond, "rec-2", third, seedOf(2))
	if all := readAll(t, a); !bytes.Equal(all, p) {
		t.Fatalf("read across the rewrap: %d bytes, not the plaintext", len(all))
	}
}

// TestTamperedPrefixStillFails: a prefix the broker refuses every time
// (the salt changed: the commitment fails) is asked about a bounded number
// of times, then Open fails with the broker's typed error; the same holds
// when the object is replaced by a tampered one while it is read.
func TestTamperedPrefixStillFails(t *testing.T) {
	e := startSwapEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := pattern(2*cobblestone.ChunkSize + 9)
	good := seal(t, "rec-3", "localkms:///k.key", seedOf(1), p)
	pre, err := envelope.ParsePrefix(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(pre.RawHeader)+3] ^= 0x01 // a salt bit: the header digest still matches the ledger
	e.put(t, "rec-3", bad)
	e.broker.record(t, "rec-3", good, seedOf(1))

	start := time.Now()
	_, err = keybroker.NewClient(e.nc).Open(ctx, e.store, swapTenant, "rec-3")
	var be *keybroker.Error
	if !errors.As(err, &be) || be.Code != keybroker.CodePrefixMismatch {
		t.Fatalf("Open of a tampered ciphertext = %v, want a prefix_mismatch *Error", err)
	}
	if n := e.broker.requests.Load(); n != 5 {
		t.Fatalf("broker saw %d requests, want 5 attempts", n)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("giving up took %v, want about 1 s (at most 3 s of backoff)", d)
	}

	e.broker.requests.Store(0)
	if _, err := keybroker.NewClient(e.nc, keybroker.WithReopens(0)).Open(ctx, e.store, swapTenant, "rec-3"); !errors.As(err, &be) || be.Code != keybroker.CodePrefixMismatch {
		t.Fatalf("Open without re-opens = %v, want prefix_mismatch", err)
	}
	if n := e.broker.requests.Load(); n != 1 {
		t.Fatalf("WithReopens(0): broker saw %d requests, want 1", n)
	}

	// Replaced by a tampered object while reading: the read fails, typed.
	e.put(t, "rec-3", good)
	a, err := keybroker.NewClient(e.nc).Open(ctx, e.store, swapTenant, "rec-3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	e.put(t, "rec-3", bad)
	_, err = a.ReadAt(make([]byte, 100), int64(len(p)-100))
	if !errors.As(err, &be) || be.Code != keybroker.CodePrefixMismatch || !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("read after a swap to a tampered object = %v, want the lost chunks and prefix_mismatch", err)
	}
}

// TestOpenMissingObject: an object that does not exist is not retried.
func TestOpenMissingObject(t *testing.T) {
	e := startSwapEnv(t)
	_, err := keybroker.NewClient(e.nc).Open(context.Background(), e.store, swapTenant, "nope")
	if !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Open of a missing object = %v, want vault.ErrNotFound", err)
	}
	if n := e.broker.requests.Load(); n != 0 {
		t.Fatalf("broker saw %d requests for a missing object", n)
	}
}
