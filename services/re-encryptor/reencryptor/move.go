package reencryptor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/vault"
)

// target is where a job moves assets.
type target struct {
	key     kms.KeyURI
	mode    events.Mode
	purpose events.ReencryptPurpose
	jobID   string
	// rewrap: move a format-2 envelope by rewrapping its seed (rotation,
	// deprovisioning). Heal never rewraps: the platform held the fallback
	// key, so the seed itself must be replaced.
	rewrap bool
}

// moveKind is what happened to one asset.
type moveKind int

const (
	moved     moveKind = iota // re-encrypted or rewrapped now (or recovered: see recovered)
	skipped                   // nothing to do: already where the job moves it
	changed                   // the object is not what the ledger says: the ledger is behind; retried next pass
	failedOne                 // this asset failed (corrupt, vault error); the others go on
)

// moveError is a KMS failure that concerns the whole job: the key it names
// is away (pause) or revoked (stop).
type moveError struct {
	key  kms.KeyURI
	op   string
	err  error
	stop bool
}

func (e *moveError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.op, e.key.String(), kms.CodeOf(e.err))
}

func (e *moveError) Unwrap() error { return e.err }

// kmsErr classifies a KMS error of op on key: a job-level *moveError when
// the key or its endpoint is away, else the error itself (this asset only).
func kmsErr(op string, key kms.KeyURI, err error) error {
	switch {
	case err == nil:
		return nil
	case kms.IsKeyUnusable(err):
		return &moveError{key: key, op: op, err: err, stop: true}
	case kms.IsEndpointFailure(err), kms.IsCircuitOpen(err), kms.IsRateLimited(err),
		kms.CodeOf(err) == kms.CodeThrottled, kms.IsCanceled(err):
		return &moveError{key: key, op: op, err: err}
	}
	return err
}

// result of moving one asset.
type result struct {
	rec   ledger.Record
	kind  moveKind
	event *events.AssetReencrypted
	bytes int64
	err   error // failedOne: why; job-level: *moveError
}

// tempPrefix names verified-before-swap copies of large assets in KW_VAULT.
// Tenant ids start with [a-z0-9], so no asset's object name can collide.
const tempPrefix = "_reencrypt/"

func tempName(rec ledger.Record) string { return tempPrefix + rec.TenantID + "/" + rec.AssetID }

// move moves one asset to t, or finds it already there. Safe to repeat at
// any point: the vault object is the truth about what was done, the ledger
// about what was recorded.
func (w *Worker) move(ctx context.Context, rec ledger.Record, t target) result {
	res := result{rec: rec}
	fail := func(err error) result {
		var me *moveError
		if errors.As(err, &me) {
			res.err = me
			return res
		}
		res.kind, res.err = failedOne, err
		return res
	}
	if rec.KeyURI == t.key.String() && rec.Mode == t.mode {
		res.kind = skipped
		return res
	}
	name := events.VaultObjectName(rec.TenantID, rec.AssetID)
	info, err := w.vault.Info(ctx, name)
	if errors.Is(err, vault.ErrNotFound) {
		return fail(fmt.Errorf("the ciphertext %s/%s named by the ledger is missing", events.BucketVault, name))
	}
	if err != nil {
		return fail(err)
	}
	ra, err := w.vault.OpenReaderAt(ctx, name)
	if err != nil {
		return fail(err)
	}
	prefix, err := envelope.ReadPrefix(ra, ra.Size())
	if err != nil {
		return fail(fmt.Errorf("reading the envelope prefix: %w", err))
	}
	hsum := sha256.Sum256(prefix.RawHeader)
	if !bytes.Equal(hsum[:], rec.HeaderSHA256) {
		if prefix.Header.KeyURI == t.key.String() && info.Metadata[vault.MetaMode] == string(t.mode) {
			// Moved by an earlier run that stopped before it recorded
			// it: record it now (the event's id dedupes a publish that
			// did happen).
			ev, err := w.eventFor(rec, t, prefix, info, hsum, info.Metadata[vault.MetaJob])
			if err != nil {
				return fail(err)
			}
			res.kind, res.event = moved, ev
			return res
		}
		res.kind = changed
		return res
	}
	from, err := kms.ParseKeyURI(rec.KeyURI)
	if err != nil {
		return fail(fmt.Errorf("ledger key URI: %w", err))
	}
	id := envelope.Identity{TenantID: rec.TenantID, AssetID: rec.AssetID, Service: rec.Service}
	var ev *events.AssetReencrypted
	if t.rewrap {
		ev, err = w.rewrap(ctx, rec, from, t, id, prefix)
		if errors.Is(err, envelope.ErrRewrapUnsupported) {
			ev, err = w.reencrypt(ctx, rec, from, t, id)
		}
	} else {
		ev, err = w.reencrypt(ctx, rec, from, t, id)
	}
	if err != nil {
		return fail(err)
	}
	res.kind, res.event, res.bytes = moved, ev, rec.Size
	return res
}

func seedContext(tenantID string) kms.EncryptionContext {
	return kms.NewEncryptionContext(tenantID, kms.PurposeAssetSeed)
}

// meta is the vault metadata of a replaced object: the original's, with the
// new mode and the job.
func meta(rec ledger.Record, t target, now time.Time) jetstream.ObjectMeta {
	return jetstream.ObjectMeta{Metadata: map[string]string{
		vault.MetaEvent:         rec.EventID,
		vault.MetaMode:          string(t.mode),
		vault.MetaCoverage:      rec.Coverage,
		vault.MetaService:       rec.Service,
		vault.MetaSize:          strconv.FormatInt(rec.Size, 10),
		vault.MetaEncryptedAt:   rec.EncryptedAt.UTC().Format(time.RFC3339Nano),
		vault.MetaReencryptedAt: now.Format(time.RFC3339Nano),
		vault.MetaJob:           t.jobID,
	}}
}

// reencrypt replaces the asset's content encryption: the plaintext (never
// stored) is decrypted from the old object and encrypted under a fresh seed
// from t.key, the new ciphertext is verified — decrypted again and compared
// with the plaintext's digest — and only then replaces the old object.
// Assets up to smallAsset are built and verified in memory; larger ones in a
// temporary object, copied over the original once verified.
func (w *Worker) reencrypt(ctx context.Context, rec ledger.Record, from kms.KeyURI, t target, id envelope.Identity) (*events.AssetReencrypted, error) {
	ec := seedContext(rec.TenantID)
	seed, err := w.seeds.Seed(ctx, t.key, ec, rec.Size)
	if err != nil {
		return nil, kmsErr(kms.OpGenerateDataKey, t.key, err)
	}
	defer seed.Destroy()
	hdr := &envelope.Header{KeyURI: t.key.String(), KeyVersion: seed.KeyVersion, WrappedSeed: seed.Ciphertext}
	name := events.VaultObjectName(rec.TenantID, rec.AssetID)
	now := time.Now().UTC()

	// encryptInto streams the old plaintext into dst under the new seed and
	// returns the plaintext's digest and the new header's digest.
	encryptInto := func(dst io.Writer) (plain []byte, headerSum [32]byte, err error) {
		src, err := w.vault.Get(ctx, name)
		if err != nil {
			return nil, headerSum, err
		}
		defer src.Close()
		unwrap := envelope.UnwrapFunc(func(ctx context.Context, h *envelope.Header) (*kms.Secret, error) {
			if h.KeyURI != rec.KeyURI || !bytes.Equal(h.WrappedSeed, rec.WrappedSeed) {
				return nil, errObjectChanged
			}
			s, err := w.seeds.Unwrap(ctx, from, h.WrappedSeed, ec)
			return s, kmsErr(kms.OpDecrypt, from, err)
		})
		pr, err := envelope.NewReader(ctx, src, id, unwrap, w.chunkOpts...)
		if err != nil {
			return nil, headerSum, err
		}
		ew, err := envelope.NewWriter(dst, hdr, seed.Plaintext, id, w.chunkOpts...)
		if err != nil {
			return nil, headerSum, err
		}
		h := sha256.New()
		n, err := io.Copy(ew, io.TeeReader(pr, h))
		if err != nil {
			_ = ew.Close()
			return nil, headerSum, fmt.Errorf("decrypting the old ciphertext: %w", err)
		}
		if err := ew.Close(); err != nil {
			return nil, headerSum, err
		}
		if n != rec.Size {
			return nil, headerSum, fmt.Errorf("the old ciphertext holds %d bytes of plaintext, the ledger says %d", n, rec.Size)
		}
		return h.Sum(nil), ew.HeaderSHA256(), nil
	}
	// verify decrypts a new ciphertext with the new seed and compares.
	verify := func(r io.Reader, want []byte) error {
		pr, err := envelope.NewReader(ctx, r, id, envelope.UnwrapFunc(func(context.Context, *envelope.Header) (*kms.Secret, error) {
			return seed.Plaintext.Clone(), nil
		}), w.chunkOpts...)
		if err != nil {
			return fmt.Errorf("verifying the new ciphertext: %w", err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, pr); err != nil {
			return fmt.Errorf("verifying the new ciphertext: %w", err)
		}
		if subtle.ConstantTimeCompare(h.Sum(nil), want) != 1 {
			return errors.New("verifying the new ciphertext: it does not decrypt to the original plaintext")
		}
		return nil
	}

	var (
		info      *jetstream.ObjectInfo
		headerSum [32]byte
	)
	if rec.Size <= smallAsset {
		var buf bytes.Buffer
		buf.Grow(int(envelope.CiphertextSize(hdr, rec.Size)))
		plain, hs, err := encryptInto(&buf)
		if err != nil {
			return nil, err
		}
		if err := verify(bytes.NewReader(buf.Bytes()), plain); err != nil {
			return nil, err
		}
		headerSum = hs
		if info, err = w.vault.Put(ctx, name, bytes.NewReader(buf.Bytes()), meta(rec, t, now)); err != nil {
			return nil, err
		}
	} else {
		tmp := tempName(rec)
		defer func() { _ = w.vault.Delete(context.WithoutCancel(ctx), tmp) }()
		pr, pw := io.Pipe()
		type sealed struct {
			plain []byte
			sum   [32]byte
			err   error
		}
		done := make(chan sealed, 1)
		go func() {
			plain, sum, err := encryptInto(pw)
			pw.CloseWithError(err)
			done <- sealed{plain, sum, err}
		}()
		tmpInfo, putErr := w.vault.Put(ctx, tmp, pr, jetstream.ObjectMeta{})
		_ = pr.CloseWithError(errors.New("upload ended"))
		s := <-done
		if s.err != nil {
			return nil, s.err
		}
		if putErr != nil {
			return nil, putErr
		}
		headerSum = s.sum
		got, err := w.vault.Get(ctx, tmp)
		if err != nil {
			return nil, err
		}
		err = verify(got, s.plain)
		_ = got.Close()
		if err != nil {
			return nil, err
		}
		// The copy is checked by the Object Store: its reader fails at EOF
		// when the copied bytes do not match the temporary object's digest,
		// and a failed Put leaves the original in place.
		got, err = w.vault.Get(ctx, tmp)
		if err != nil {
			return nil, err
		}
		info, err = w.vault.Put(ctx, name, got, meta(rec, t, now))
		_ = got.Close()
		if err != nil {
			return nil, err
		}
		if info.Digest != tmpInfo.Digest {
			return nil, errors.New("the replaced object's digest differs from the verified copy's")
		}
	}
	return w.newEvent(rec, t, hdr.KeyURI, seed.KeyVersion, seed.Ciphertext, info, headerSum, now)
}

var errObjectChanged = errors.New("the object changed while it was read")

// rewrap replaces only the envelope header: the same seed, unwrapped with
// the old key and wrapped under t.key, checked to open the asset's
// commitment, then the object rewritten as new header ‖ the old payload
// bytes unchanged (the Object Store verifies the old object's digest as it is
// read, so a corrupt source aborts the Put and leaves the original).
func (w *Worker) rewrap(ctx context.Context, rec ledger.Record, from kms.KeyURI, t target, id envelope.Identity, prefix *envelope.Prefix) (*events.AssetReencrypted, error) {
	if prefix.Header.Version == envelope.Version1 {
		return nil, envelope.ErrRewrapUnsupported
	}
	ec := seedContext(rec.TenantID)
	seed, err := w.seeds.Unwrap(ctx, from, rec.WrappedSeed, ec)
	if err != nil {
		return nil, kmsErr(kms.OpDecrypt, from, err)
	}
	defer seed.Destroy()
	mk, err := prefix.MessageKey(seed, id)
	if err != nil {
		return nil, fmt.Errorf("the ledger's seed does not open the stored ciphertext: %w", err)
	}
	mk.Destroy()
	wrapped, err := w.wraps.wrap(ctx, w.kms, rec.WrappedSeed, t.key, seed, ec)
	if err != nil {
		return nil, err
	}
	np, err := prefix.Rewrap(t.key.String(), wrapped.KeyVersion, wrapped.Ciphertext)
	if err != nil {
		return nil, err
	}
	if mk, err = np.MessageKey(seed, id); err != nil {
		return nil, fmt.Errorf("the rewrapped header does not open the ciphertext: %w", err)
	}
	mk.Destroy()
	name := events.VaultObjectName(rec.TenantID, rec.AssetID)
	src, err := w.vault.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if _, err := io.CopyN(io.Discard, src, int64(prefix.Len())); err != nil {
		return nil, fmt.Errorf("reading the old object: %w", err)
	}
	now := time.Now().UTC()
	info, err := w.vault.Put(ctx, name, io.MultiReader(bytes.NewReader(np.Bytes()), src), meta(rec, t, now))
	if err != nil {
		return nil, err
	}
	return w.newEvent(rec, t, t.key.String(), wrapped.KeyVersion, wrapped.Ciphertext, info, sha256.Sum256(np.RawHeader), now)
}

// newEvent is the AssetReencrypted of an object just written.
func (w *Worker) newEvent(rec ledger.Record, t target, keyURI, keyVersion string, wrapped []byte, info *jetstream.ObjectInfo, headerSum [32]byte, now time.Time) (*events.AssetReencrypted, error) {
	ctHex, err := vault.DigestHex(info.Digest)
	if err != nil {
		return nil, err
	}
	ev := &events.AssetReencrypted{
		TenantID: rec.TenantID, AssetID: rec.AssetID, Service: rec.Service,
		FromMode: rec.Mode, ToMode: t.mode, FromKeyURI: rec.KeyURI,
		KeyURI: keyURI, KeyVersion: keyVersion, WrappedSeed: bytes.Clone(wrapped),
		Location: events.Location{Bucket: events.BucketVault, Object: events.VaultObjectName(rec.TenantID, rec.AssetID)},
		Size:     rec.Size, CiphertextSize: int64(info.Size), CiphertextSHA256: ctHex,
		HeaderSHA256: hex.EncodeToString(headerSum[:]),
		Purpose:      t.purpose, JobID: t.jobID, ReencryptedAt: now,
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("building AssetReencrypted: %w", err)
	}
	return ev, nil
}

// eventFor rebuilds the AssetReencrypted of an object an earlier run moved
// but did not record.
func (w *Worker) eventFor(rec ledger.Record, t target, prefix *envelope.Prefix, info *jetstream.ObjectInfo, headerSum [32]byte, jobID string) (*events.AssetReencrypted, error) {
	at, err := time.Parse(time.RFC3339Nano, info.Metadata[vault.MetaReencryptedAt])
	if err != nil {
		at = info.ModTime.UTC()
	}
	if jobID != "" {
		t.jobID = jobID
	}
	ev, err := w.newEvent(rec, t, prefix.Header.KeyURI, prefix.Header.KeyVersion, prefix.Header.WrappedSeed, info, headerSum, at.UTC())
	if err != nil {
		return nil, err
	}
	w.log.Info("recorded an asset an interrupted run had moved", "tenant_id", rec.TenantID, "asset_id", rec.AssetID, "job_id", t.jobID)
	return ev, nil
}

// reencryptedMsgID is the Nats-Msg-Id of an AssetReencrypted: one per asset
// and resulting header, so recording the same move twice is deduplicated
// and two different moves of an asset never are.
func reencryptedMsgID(ev *events.AssetReencrypted) string {
	return events.MsgID("reencrypted", ev.TenantID, ev.AssetID) + "." + ev.HeaderSHA256[:16]
}

// wrapCache remembers, per old wrapped seed and new key, the new wrap of the
// seed, so a rotation calls Encrypt (and one verifying Decrypt) once per
// seed, not once per asset — a seed encrypts up to 4096 assets.
type wrapCache struct {
	mu sync.Mutex
	m  map[string]*kms.Wrapped
	// max bounds the entries (wraps are not secret; the bound is memory).
	max int
}

func newWrapCache(max int) *wrapCache { return &wrapCache{m: map[string]*kms.Wrapped{}, max: max} }

func (c *wrapCache) wrap(ctx context.Context, client *kms.Client, oldWrapped []byte, to kms.KeyURI, seed *kms.Secret, ec kms.EncryptionContext) (*kms.Wrapped, error) {
	k := to.String() + "\x00" + string(oldWrapped)
	c.mu.Lock()
	w, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return w, nil
	}
	w, err := client.Encrypt(ctx, to, seed, ec)
	if err != nil {
		return nil, kmsErr(kms.OpEncrypt, to, err)
	}
	// Check the new wrap gives the seed back before any object depends on it.
	back, err := client.Decrypt(ctx, to, w.Ciphertext, ec)
	if err != nil {
		return nil, kmsErr(kms.OpDecrypt, to, err)
	}
	same := back.Equal(seed)
	back.Destroy()
	if !same {
		return nil, fmt.Errorf("the new wrap under %s does not give the seed back", to.String())
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = w
	c.mu.Unlock()
	return w, nil
}

// flush forgets every wrap under key (its status changed).
func (c *wrapCache) flush() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
