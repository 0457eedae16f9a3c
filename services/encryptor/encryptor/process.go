package encryptor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/telemetry"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/vault"
)

// Vault object metadata written with every ciphertext, so a crash between
// storing it and recording it is recovered from the object alone.
const (
	metaEvent       = vault.MetaEvent
	metaMode        = vault.MetaMode
	metaCoverage    = vault.MetaCoverage
	metaService     = vault.MetaService
	metaSize        = vault.MetaSize
	metaEncryptedAt = vault.MetaEncryptedAt
)

type kind int

const (
	kindEncrypted kind = iota // new (or recovered) ciphertext
	kindRejected              // not stored by policy (key unavailable / revoked)
	kindDuplicate             // already settled earlier: republish if needed
	kindInvalid               // bad input: dead letter (+ AssetRejected when possible)
	kindRetry                 // transient failure: redeliver later
)

func (k kind) String() string {
	return [...]string{"encrypted", "rejected", "duplicate", "invalid", "retry"}[k]
}

// result is what processing one message produced; the batch commits and
// settles them together.
type result struct {
	msg     jetstream.Msg
	kind    kind
	tenant  string
	asset   string
	eventID string
	mode    events.Mode
	reason  events.Reason
	err     error

	record  *ledger.Record   // to write in the batch transaction
	out     *events.Outgoing // to publish after the ledger commit
	notify  *events.Outgoing // the outcome, for the producer's Keyward-Notify inbox
	staging string           // staging object to delete once settled

	put     *deferredPut // small new ciphertext, stored with the batch's others
	claimed string       // the asset this result holds in flight
	held    bool         // kept pending within the tenant's hold window (kindRetry with a HoldError)
}

// deferredPut is a small ciphertext ready to be stored; finish builds the
// outcome once the vault has acknowledged it.
type deferredPut struct {
	obj    vault.NewObject
	ev     *events.AssetCreated
	finish func(info *jetstream.ObjectInfo) (*events.AssetEncrypted, error)
}

// A batch goes through two stages; several batches are in flight at once
// (Options.Lanes), so one batch's waits overlap another's work:
//
//	prepare: process every message (concurrently) → store the small
//	         ciphertexts together (one round trip)
//	commit:  publish all outcomes and wait for their acks → one ledger
//	         transaction → delete staging copies → notify and settle each
//
// An asset is never in two batches at once: process claims its id, and a
// second event for an asset still in flight is retried a little later.
type staged struct {
	start   time.Time
	results []*result
}

func (w *Worker) prepare(ctx context.Context, batch []jetstream.Msg) *staged {
	st := &staged{start: time.Now(), results: make([]*result, len(batch))}
	parallel(len(batch), w.o.Concurrency, func(i int) { st.results[i] = w.process(ctx, batch[i]) })
	w.storeDeferred(ctx, st.results)
	w.o.failpoint(FailpointStored)
	return st
}

func (w *Worker) commit(ctx context.Context, st *staged) {
	results := st.results
	defer w.release(results)

	// Publish first: the stream's acknowledgement gives each outcome its
	// sequence, recorded with it in the ledger. A crash before the ledger
	// commit is healed by the projection (it catches up before the worker
	// consumes) and by the stream's duplicate window.
	var outs []events.Outgoing
	var owners []*result
	for _, r := range results {
		if r.out != nil && r.kind != kindRetry {
			outs = append(outs, *r.out)
			owners = append(owners, r)
		}
	}
	if len(outs) > 0 {
		acks, err := w.publisher.PublishAll(ctx, outs)
		for i, r := range owners {
			switch {
			case acks[i] == nil:
				r.retry(fmt.Errorf("publishing the outcome: %w", err))
			case r.record != nil:
				r.record.StreamSeq = acks[i].Sequence
			}
		}
	}

	w.o.failpoint(FailpointPublished)
	var recs []ledger.Record
	for _, r := range results {
		if r.record != nil && r.kind != kindRetry {
			recs = append(recs, *r.record)
		}
	}
	if len(recs) > 0 {
		if err := w.d.Ledger.Apply(ctx, ledger.Batch{Records: recs}); err != nil {
			w.log.Error("ledger commit failed; the batch will be retried", "records", len(recs), "error", err)
			for _, r := range results {
				if r.record != nil {
					r.retry(fmt.Errorf("ledger commit: %w", err))
				}
			}
		}
	}

	w.o.failpoint(FailpointRecorded)
	parallel(len(results), w.o.Concurrency, func(i int) {
		r := results[i]
		if r.staging == "" || r.kind == kindRetry {
			return
		}
		if err := w.staging.Delete(ctx, r.staging); err != nil {
			r.retry(fmt.Errorf("deleting the staging copy: %w", err))
		}
	})

	w.o.failpoint(FailpointCleaned)
	for _, r := range results {
		if r.kind != kindRetry {
			w.sendNotify(r)
		}
		var err error
		switch r.kind {
		case kindInvalid:
			err = events.Permanent(r.reason, r.err)
		case kindRetry:
			err = r.err
		}
		settled := w.settler.Settle(ctx, r.msg, err)
		w.metrics.asset(ctx, r, settled)
	}
	w.metrics.batch(ctx, time.Since(st.start), len(results))
}

// claim marks an asset as in flight; false if it already is.
func (w *Worker) claim(key string) bool {
	w.inflightMu.Lock()
	defer w.inflightMu.Unlock()
	if _, busy := w.inflight[key]; busy {
		return false
	}
	w.inflight[key] = struct{}{}
	return true
}

func (w *Worker) release(results []*result) {
	w.inflightMu.Lock()
	defer w.inflightMu.Unlock()
	for _, r := range results {
		if r.claimed != "" {
			delete(w.inflight, r.claimed)
		}
	}
}

// storeDeferred stores every small new ciphertext of the batch at once.
func (w *Worker) storeDeferred(ctx context.Context, results []*result) {
	var objs []vault.NewObject
	var owners []*result
	for _, r := range results {
		if r.put != nil && r.kind != kindRetry {
			objs = append(objs, r.put.obj)
			owners = append(owners, r)
		}
	}
	if len(objs) == 0 {
		return
	}
	infos, errs := w.vault.PutNew(ctx, objs)
	for i, r := range owners {
		p := r.put
		r.put = nil
		if errs[i] != nil {
			r.retry(errs[i])
			continue
		}
		enc, err := p.finish(infos[i])
		if err != nil {
			r.retry(err)
			continue
		}
		w.settleEncrypted(r, p.ev, enc)
	}
}

func (r *result) retry(err error) {
	r.kind, r.err = kindRetry, err
}

func (w *Worker) process(ctx context.Context, m jetstream.Msg) (r *result) {
	r = &result{msg: m}
	ctx, span := telemetry.StartProcessSpan(ctx, w.tracer, m.Subject(), m.Headers(),
		telemetry.WithDestinationTemplate("keyward.asset.created.{tenant}"),
		telemetry.WithConsumerGroup(events.ConsumerEncryptor))
	defer func() {
		span.SetAttributes(attribute.String("keyward.tenant_id", r.tenant), attribute.String("keyward.asset_id", r.asset),
			attribute.String("keyward.outcome", r.kind.String()), attribute.String("keyward.mode", string(r.mode)))
		if r.err != nil {
			span.SetStatus(codes.Error, r.err.Error())
		}
		span.End()
	}()
	md, err := m.Metadata()
	if err != nil {
		r.retry(err)
		return r
	}
	r.eventID = m.Headers().Get(events.HeaderMsgID)
	if r.eventID == "" {
		r.eventID = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}

	subjectTenant, err := events.TenantFromSubject(m.Subject())
	if err != nil {
		return r.invalid(events.ReasonInvalidEvent, err)
	}
	r.tenant = subjectTenant
	ev, err := events.DecodeAssetCreated(m.Data())
	if errors.Is(err, events.ErrUndecodable) {
		return r.invalid(events.ReasonUndecodable, err)
	}
	if ev != nil && events.ValidateAssetID(ev.AssetID) == nil {
		r.asset = ev.AssetID
	}
	if err != nil {
		w.rejectInvalid(r, ev, events.ReasonInvalidEvent, events.ReasonInvalidEvent, err)
		return r
	}
	if ev.TenantID != subjectTenant {
		// Never touch the other tenant's staging object.
		err := fmt.Errorf("subject tenant %q differs from payload tenant_id %q", subjectTenant, ev.TenantID)
		w.rejectInvalid(r, nil, events.ReasonTenantMismatch, events.ReasonInvalidEvent, err)
		return r
	}

	key := ev.TenantID + "/" + ev.AssetID
	if !w.claim(key) {
		r.retry(errors.New("another event for this asset is being processed; retrying after it"))
		return r
	}
	r.claimed = key

	if done := w.duplicate(ctx, r, ev); done {
		return r
	}
	if md.NumDelivered > 1 {
		// A previous delivery may have stored the ciphertext and crashed
		// before recording it: reuse it, never write a second one.
		if done := w.recover(ctx, r, ev); done {
			return r
		}
	}
	w.encryptNew(ctx, r, ev, m)
	return r
}

// invalid marks r as bad input to dead-letter.
func (r *result) invalid(reason events.Reason, err error) *result {
	r.kind, r.reason, r.err = kindInvalid, reason, err
	return r
}

// rejectInvalid dead-letters the message and, when the asset is
// identifiable, tells the producer with AssetRejected (so nobody waits for
// an outcome that never comes) and removes its staged plaintext.
func (w *Worker) rejectInvalid(r *result, ev *events.AssetCreated, dlq, rejected events.Reason, err error) {
	r.invalid(dlq, err)
	if r.asset == "" {
		return
	}
	rej := &events.AssetRejected{
		TenantID: r.tenant, AssetID: r.asset, Reason: rejected,
		Detail: clip(err.Error()), SourceEventID: r.eventID, RejectedAt: time.Now().UTC(),
	}
	if ev != nil && events.ValidateService(ev.Service) == nil {
		rej.Service = ev.Service
	}
	r.out = rejectedOutgoing(rej)
	r.notify = r.out
	if ev != nil && ev.TenantID == r.tenant && ev.Content.Bucket == events.BucketStaging &&
		strings.HasPrefix(ev.Content.Object, r.tenant+"/") {
		r.staging = ev.Content.Object
	}
}

// duplicate settles an event whose asset the ledger already knows.
func (w *Worker) duplicate(ctx context.Context, r *result, ev *events.AssetCreated) bool {
	rec, err := w.d.Ledger.Get(ctx, ev.TenantID, ev.AssetID)
	if errors.Is(err, ledger.ErrNotFound) {
		return false
	}
	if err != nil {
		r.retry(fmt.Errorf("ledger lookup: %w", err))
		return true
	}
	switch {
	case rec.State == ledger.StateEncrypted:
		r.kind, r.mode = kindDuplicate, rec.Mode
		enc := projector.ToEncrypted(rec)
		r.notify = encryptedOutgoing(enc)
		if rec.StreamSeq == 0 {
			// Recorded but maybe never published (crash before publish):
			// publish again; the stream drops it if it is a duplicate.
			r.out = r.notify
		}
	case rec.State == ledger.StateRejected && rec.EventID == r.eventID:
		r.kind, r.reason = kindDuplicate, events.Reason(rec.RejectReason)
		rej := &events.AssetRejected{
			TenantID: rec.TenantID, AssetID: rec.AssetID, Service: rec.Service,
			Reason: events.Reason(rec.RejectReason), Detail: rec.RejectDetail,
			SourceEventID: rec.EventID, RejectedAt: rec.EncryptedAt,
		}
		r.notify = rejectedOutgoing(rej)
		if rec.StreamSeq == 0 {
			r.out = r.notify
		}
	default:
		// Rejected for an earlier event: this is a new attempt.
		return false
	}
	if ev.Content.Bucket == events.BucketStaging {
		r.staging = ev.Content.Object
	}
	return true
}

// recover rebuilds the outcome from a ciphertext a crashed delivery stored.
func (w *Worker) recover(ctx context.Context, r *result, ev *events.AssetCreated) bool {
	name := events.VaultObjectName(ev.TenantID, ev.AssetID)
	info, err := w.vault.Info(ctx, name)
	if errors.Is(err, vault.ErrNotFound) {
		return false
	}
	if err != nil {
		r.retry(err)
		return true
	}
	if info.Metadata[metaEvent] == "" {
		return false // not written by an encryptor: overwrite it
	}
	ra, err := w.vault.OpenReaderAt(ctx, name)
	if err != nil {
		r.retry(err)
		return true
	}
	prefix, err := envelope.ReadPrefix(ra, ra.Size())
	if err != nil {
		w.log.Warn("stored ciphertext from an earlier delivery is unreadable; encrypting again", "tenant_id", ev.TenantID, "asset_id", ev.AssetID, "error", err)
		return false
	}
	size, _ := strconv.ParseInt(info.Metadata[metaSize], 10, 64)
	encryptedAt, _ := time.Parse(time.RFC3339Nano, info.Metadata[metaEncryptedAt])
	ctHex, err := vault.DigestHex(info.Digest)
	if err != nil {
		r.retry(err)
		return true
	}
	hsum := sha256.Sum256(prefix.RawHeader)
	enc := &events.AssetEncrypted{
		TenantID: ev.TenantID, AssetID: ev.AssetID, Service: info.Metadata[metaService],
		Mode: events.Mode(info.Metadata[metaMode]), Coverage: info.Metadata[metaCoverage],
		KeyURI: prefix.Header.KeyURI, KeyVersion: prefix.Header.KeyVersion, WrappedSeed: prefix.Header.WrappedSeed,
		Location: events.Location{Bucket: events.BucketVault, Object: name},
		Size:     size, CiphertextSize: int64(info.Size), CiphertextSHA256: ctHex,
		HeaderSHA256:        hex.EncodeToString(hsum[:]),
		PendingReencryption: info.Metadata[metaMode] == string(events.ModeFallback),
		SourceEventID:       info.Metadata[metaEvent], EncryptedAt: encryptedAt,
	}
	if err := enc.Validate(); err != nil {
		w.log.Warn("stored ciphertext from an earlier delivery has incomplete metadata; encrypting again", "tenant_id", ev.TenantID, "asset_id", ev.AssetID, "error", err)
		return false
	}
	w.log.Info("recovered the ciphertext of an interrupted delivery", "tenant_id", ev.TenantID, "asset_id", ev.AssetID)
	w.settleEncrypted(r, ev, enc)
	return true
}

func (w *Worker) settleEncrypted(r *result, ev *events.AssetCreated, enc *events.AssetEncrypted) {
	r.kind, r.mode = kindEncrypted, enc.Mode
	rec := projector.FromEncrypted(enc, 0)
	r.record = &rec
	r.out = encryptedOutgoing(enc)
	r.notify = r.out
	if ev.Content.Bucket == events.BucketStaging {
		r.staging = ev.Content.Object
	}
}

func (w *Worker) settleRejected(r *result, ev *events.AssetCreated, reason events.Reason, detail string) {
	r.kind, r.reason = kindRejected, reason
	rej := &events.AssetRejected{
		TenantID: ev.TenantID, AssetID: ev.AssetID, Service: ev.Service, Reason: reason,
		Detail: clip(detail), SourceEventID: r.eventID, RejectedAt: time.Now().UTC(),
	}
	rec := projector.FromRejected(rej, 0)
	r.record = &rec
	r.out = rejectedOutgoing(rej)
	r.notify = r.out
	if ev.Content.Bucket == events.BucketStaging {
		r.staging = ev.Content.Object
	}
}

// encryptNew decides, obtains a seed and stores the ciphertext of a new asset.
func (w *Worker) encryptNew(ctx context.Context, r *result, ev *events.AssetCreated, m jetstream.Msg) {
	cfg, _ := w.tenants.Get(ev.TenantID)
	asset := tenant.Asset{Service: ev.Service, OwnerUserID: ev.OwnerUserID, Origin: ev.Origin, CreatedAt: ev.CreatedAt}
	st := &keyStatuses{w: w, tenant: ev.TenantID}
	dec := tenant.DecideKeys(cfg, asset, st.of)
	if w.held(r, dec, m) {
		return
	}
	if dec.Reject {
		w.settleRejected(r, ev, dec.Reason, rejectDetail(dec, cfg))
		return
	}

	content, err := w.openContent(ctx, ev)
	if err != nil {
		var ce *contentError
		if errors.As(err, &ce) {
			w.rejectInvalid(r, ev, ce.reason, ce.reason, err)
			return
		}
		r.retry(err)
		return
	}
	defer content.Close()

	key, seed, dec, err := w.seed(ctx, r, m, cfg, asset, dec, st, ev, content.size)
	if err != nil {
		r.retry(err)
		return
	}
	if r.held {
		return
	}
	if dec.Reject {
		w.settleRejected(r, ev, dec.Reason, rejectDetail(dec, cfg))
		return
	}
	defer seed.Destroy()

	md, _ := m.Metadata()
	firstDelivery := md != nil && md.NumDelivered == 1
	stop := func() {}
	if content.size > smallAsset {
		stop = keepAlive(m, w.o.AckWait/3)
	}
	enc, err := w.store(ctx, r, ev, dec, key, seed, content, firstDelivery)
	stop()
	if err != nil {
		r.retry(err)
		return
	}
	if enc != nil {
		w.settleEncrypted(r, ev, enc)
	}
}

// keyStatuses is what a decision knows of a tenant's keys: the watched
// KW_KEY_STATUS, overridden by what live KMS calls observed within the
// observation TTL (liveObservations), overridden by what this asset's own
// calls observed.
type keyStatuses struct {
	w        *Worker
	tenant   string
	observed map[string]events.KeyStatus
}

func (k *keyStatuses) of(uri string) events.KeyStatus {
	if s, ok := k.observed[uri]; ok {
		return s
	}
	if s, ok := k.w.live.get(k.tenant, uri); ok {
		return s
	}
	return k.w.keys.Status(k.tenant, uri)
}

func (k *keyStatuses) observe(uri string, s events.KeyStatus) {
	if k.observed == nil {
		k.observed = map[string]events.KeyStatus{}
	}
	k.observed[uri] = s
	k.w.live.put(k.tenant, uri, s)
}

// seed returns a seed for the decided key. If a customer key fails in live
// traffic, the failure is an observation of its status and the decision is
// taken again with it: another replica, the fallback key, or a rejection.
func (w *Worker) seed(ctx context.Context, r *result, m jetstream.Msg, cfg *tenant.Config, asset tenant.Asset, dec tenant.Decision, st *keyStatuses, ev *events.AssetCreated, size int64) (kms.KeyURI, *kms.Seed, tenant.Decision, error) {
	ec := kms.NewEncryptionContext(ev.TenantID, kms.PurposeAssetSeed)
	for attempt := 0; ; attempt++ {
		key, err := w.keyFor(dec)
		if err != nil {
			return kms.KeyURI{}, nil, dec, err
		}
		start := time.Now()
		seed, err := w.d.Seeds.Seed(ctx, key, ec, size)
		if dec.Mode == events.ModeCustomer {
			w.reporter.Observe(ctx, ev.TenantID, key, kms.OpGenerateDataKey, err, time.Since(start))
		}
		if err == nil {
			if dec.Mode == events.ModeCustomer {
				w.live.clear(ev.TenantID, dec.KeyURI)
			}
			return key, seed, dec, nil
		}
		if dec.Mode != events.ModeCustomer || attempt > len(cfg.Keys) {
			return key, nil, dec, fmt.Errorf("%s key %s: %w", dec.Mode, key, err)
		}
		var observed events.KeyStatus
		switch {
		case kms.IsKeyUnusable(err):
			observed = events.KeyStatusRevoked
		case kms.IsEndpointFailure(err):
			observed = events.KeyStatusUnavailable
		case kms.CodeOf(err) == kms.CodeInvalidArgument:
			// The key's provider is not available in this deployment (or
			// the URI is unusable): as good as unreachable, and no retry
			// will help.
			observed = events.KeyStatusUnavailable
		default:
			// Throttling and internal errors: retry with backoff; the key
			// is not gone.
			return key, nil, dec, fmt.Errorf("customer key %s: %w", key, err)
		}
		w.log.Warn("customer key failed in live traffic", "tenant_id", ev.TenantID, "key_uri", key.String(), "observed", observed, "code", kms.CodeOf(err))
		if dec.Replica && observed == events.KeyStatusRevoked {
			// A replica that is unusable does not revoke the tenant's key:
			// it is as good as unreachable for this asset.
			observed = events.KeyStatusUnavailable
		}
		st.observe(dec.KeyURI, observed)
		dec = tenant.DecideKeys(cfg, asset, st.of)
		if dec.Reject || w.held(r, dec, m) {
			// The caller settles the rejection or the hold (an outage
			// within the tenant's hold window: no fallback yet).
			return key, nil, dec, nil
		}
	}
}

// held holds the message when dec is an outage decision (fallback or
// customer_key_unavailable) of a tenant with a hold window the asset is
// still within, counted from the event's publication. It redelivers the
// message after a quarter of the window (at least a second, at most what
// is left of it), and never past the last delivery but one, so the
// decision is always taken before JetStream stops delivering.
func (w *Worker) held(r *result, dec tenant.Decision, m jetstream.Msg) bool {
	if dec.Hold <= 0 || dec.Mode == events.ModeCustomer || dec.Mode == events.ModePlatform {
		return false
	}
	md, err := m.Metadata()
	if err != nil || (w.o.MaxDeliver > 0 && md.NumDelivered >= uint64(w.o.MaxDeliver-1)) {
		return false
	}
	left := dec.Hold - time.Since(md.Timestamp)
	if left <= 0 {
		return false
	}
	delay := min(left, max(time.Second, dec.Hold/4))
	w.log.Debug("asset held: customer key unreachable, within the tenant's hold window", "tenant_id", r.tenant, "asset_id", r.asset,
		"deliveries", md.NumDelivered, "window_left", left.String(), "retry_in", delay.String())
	r.kind, r.err = kindRetry, events.Hold(delay, "the customer key is unreachable; held within the tenant's hold window of "+dec.Hold.String())
	r.held = true
	return true
}

func (w *Worker) keyFor(dec tenant.Decision) (kms.KeyURI, error) {
	switch dec.Mode {
	case events.ModeCustomer:
		return parseKey(dec.KeyURI)
	case events.ModeFallback:
		return w.o.FallbackKey, nil
	default:
		return w.o.PlatformKey, nil
	}
}

// content is an asset's plaintext source.
type content struct {
	r     io.Reader
	size  int64
	close func()
}

func (c *content) Close() {
	if c.close != nil {
		c.close()
	}
}

type contentError struct {
	reason events.Reason
	msg    string
}

func (e *contentError) Error() string { return e.msg }

// openContent returns the plaintext, checking the declared size and digest
// before anything is encrypted (a staged object's digest is the Object
// Store's, verified again as it is read).
func (w *Worker) openContent(ctx context.Context, ev *events.AssetCreated) (*content, error) {
	if ev.Content.IsInline() {
		data := ev.Content.Inline
		if int64(len(data)) > w.o.MaxInlineBytes {
			return nil, &contentError{events.ReasonContentTooLarge, fmt.Sprintf("inline content is %d bytes, more than the %d-byte inline limit; stage it in %s instead", len(data), w.o.MaxInlineBytes, events.BucketStaging)}
		}
		if want := ev.SHA256Bytes(); want != nil {
			if sum := sha256.Sum256(data); !bytes.Equal(sum[:], want) {
				return nil, &contentError{events.ReasonContentMismatch, "sha256 does not match the inline content"}
			}
		}
		return &content{r: bytes.NewReader(data), size: int64(len(data))}, nil
	}
	info, err := w.staging.Info(ctx, ev.Content.Object)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, &contentError{events.ReasonContentMissing, fmt.Sprintf("staged object %s/%s does not exist", events.BucketStaging, ev.Content.Object)}
	}
	if err != nil {
		return nil, err
	}
	size := int64(info.Size)
	if size > w.o.MaxAssetBytes {
		return nil, &contentError{events.ReasonContentTooLarge, fmt.Sprintf("staged object is %d bytes, more than the %d-byte asset limit", size, w.o.MaxAssetBytes)}
	}
	if ev.Size != nil && *ev.Size != size {
		return nil, &contentError{events.ReasonContentMismatch, fmt.Sprintf("size is %d but the staged object has %d bytes", *ev.Size, size)}
	}
	if ev.SHA256 != "" {
		if got, err := vault.DigestHex(info.Digest); err != nil || got != ev.SHA256 {
			return nil, &contentError{events.ReasonContentMismatch, "sha256 does not match the staged object"}
		}
	}
	if size == 0 {
		return &content{r: bytes.NewReader(nil), size: 0}, nil
	}
	res, err := w.staging.Get(ctx, ev.Content.Object)
	if err != nil {
		return nil, err
	}
	return &content{r: res, size: size, close: func() { _ = res.Close() }}, nil
}

// store encrypts the content into the vault under key and returns the
// event. A small asset on its first delivery (its name cannot exist in the
// vault yet) is only encrypted here: r.put holds it for the batch's PutNew,
// and store returns nil.
func (w *Worker) store(ctx context.Context, r *result, ev *events.AssetCreated, dec tenant.Decision, key kms.KeyURI, seed *kms.Seed, c *content, firstDelivery bool) (*events.AssetEncrypted, error) {
	hdr := &envelope.Header{KeyURI: key.String(), KeyVersion: seed.KeyVersion, WrappedSeed: seed.Ciphertext}
	id := envelope.Identity{TenantID: ev.TenantID, AssetID: ev.AssetID, Service: ev.Service}
	name := events.VaultObjectName(ev.TenantID, ev.AssetID)
	now := time.Now().UTC()
	meta := jetstream.ObjectMeta{Metadata: map[string]string{
		metaEvent:       r.eventID,
		metaMode:        string(dec.Mode),
		metaCoverage:    string(dec.Coverage),
		metaService:     ev.Service,
		metaSize:        strconv.FormatInt(c.size, 10),
		metaEncryptedAt: now.Format(time.RFC3339Nano),
	}}
	var (
		info      *jetstream.ObjectInfo
		headerSum [32]byte
		err       error
	)
	if c.size <= smallAsset {
		// Small assets: encrypt in memory, store in one go.
		var buf bytes.Buffer
		buf.Grow(int(envelope.CiphertextSize(hdr, c.size)))
		ew, err := envelope.NewWriter(&buf, hdr, seed.Plaintext, id)
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(ew, c.r); err != nil {
			_ = ew.Close()
			return nil, fmt.Errorf("reading the content: %w", err)
		}
		if err := ew.Close(); err != nil {
			return nil, err
		}
		headerSum = ew.HeaderSHA256()
		if firstDelivery {
			wrapped := bytes.Clone(seed.Ciphertext)
			version := seed.KeyVersion
			r.put = &deferredPut{
				obj: vault.NewObject{Name: name, Data: buf.Bytes(), Meta: meta},
				ev:  ev,
				finish: func(info *jetstream.ObjectInfo) (*events.AssetEncrypted, error) {
					return w.encryptedEvent(ev, dec, key, version, wrapped, name, c.size, hdr, info, headerSum, r.eventID, now)
				},
			}
			return nil, nil
		}
		if info, err = w.vault.Put(ctx, name, bytes.NewReader(buf.Bytes()), meta); err != nil {
			return nil, err
		}
	} else {
		// Large assets: stream plaintext → envelope → vault through a pipe,
		// sealing chunks on several cores; memory stays O(chunk).
		pr, pw := io.Pipe()
		type sealed struct {
			sum [32]byte
			err error
		}
		done := make(chan sealed, 1)
		go func() {
			var out sealed
			ew, err := envelope.NewWriter(pw, hdr, seed.Plaintext, id, cobblestone.WithConcurrency(w.o.ChunkConcurrency))
			if err == nil {
				if _, err = io.Copy(ew, c.r); err != nil {
					err = fmt.Errorf("reading the content: %w", err)
					pw.CloseWithError(err) // the vault put fails and purges
					_ = ew.Close()
				} else {
					err = ew.Close()
				}
				out.sum = ew.HeaderSHA256()
			}
			out.err = err
			pw.CloseWithError(err)
			done <- out
		}()
		info, err = w.vault.Put(ctx, name, pr, meta)
		pr.CloseWithError(errors.New("vault put ended")) // unblock the sealer if the put stopped early
		res := <-done
		if res.err != nil {
			return nil, res.err
		}
		if err != nil {
			return nil, err
		}
		headerSum = res.sum
	}
	return w.encryptedEvent(ev, dec, key, seed.KeyVersion, seed.Ciphertext, name, c.size, hdr, info, headerSum, r.eventID, now)
}

func (w *Worker) encryptedEvent(ev *events.AssetCreated, dec tenant.Decision, key kms.KeyURI, keyVersion string, wrapped []byte, name string, size int64, hdr *envelope.Header, info *jetstream.ObjectInfo, headerSum [32]byte, eventID string, at time.Time) (*events.AssetEncrypted, error) {
	if want := envelope.CiphertextSize(hdr, size); int64(info.Size) != want {
		return nil, fmt.Errorf("stored ciphertext is %d bytes, want %d", info.Size, want)
	}
	ctHex, err := vault.DigestHex(info.Digest)
	if err != nil {
		return nil, err
	}
	return &events.AssetEncrypted{
		TenantID: ev.TenantID, AssetID: ev.AssetID, Service: ev.Service,
		Mode: dec.Mode, Coverage: string(dec.Coverage),
		KeyURI: key.String(), KeyVersion: keyVersion, WrappedSeed: wrapped,
		Location: events.Location{Bucket: events.BucketVault, Object: name},
		Size:     size, CiphertextSize: int64(info.Size), CiphertextSHA256: ctHex,
		HeaderSHA256:        hex.EncodeToString(headerSum[:]),
		PendingReencryption: dec.Mode == events.ModeFallback,
		SourceEventID:       eventID, EncryptedAt: at,
	}, nil
}

func rejectDetail(dec tenant.Decision, cfg *tenant.Config) string {
	uri := ""
	if cfg != nil {
		if pk, ok := cfg.PrimaryKey(); ok {
			uri = pk.URI
		}
	}
	switch dec.Reason {
	case events.ReasonCustomerKeyRevoked:
		return fmt.Sprintf("customer key %s is revoked (disabled, access denied or deleted); the content was not stored", uri)
	case events.ReasonCustomerKeyUnavailable:
		return fmt.Sprintf("customer key %s is unavailable and the tenant does not allow fallback; the content was not stored", uri)
	}
	return string(dec.Reason)
}

func encryptedOutgoing(e *events.AssetEncrypted) *events.Outgoing {
	return &events.Outgoing{
		Subject: events.SubjectAssetEncrypted(e.TenantID),
		MsgID:   events.MsgID("encrypted", e.TenantID, e.AssetID),
		Type:    events.TypeAssetEncrypted,
		Event:   e,
		Header:  nats.Header{events.HeaderAssetID: []string{e.AssetID}},
	}
}

func rejectedOutgoing(e *events.AssetRejected) *events.Outgoing {
	sum := sha256.Sum256([]byte(e.SourceEventID))
	return &events.Outgoing{
		Subject: events.SubjectAssetRejected(e.TenantID),
		MsgID:   events.MsgID("rejected", e.TenantID, e.AssetID) + "." + hex.EncodeToString(sum[:8]),
		Type:    events.TypeAssetRejected,
		Event:   e,
		Header:  nats.Header{events.HeaderAssetID: []string{e.AssetID}},
	}
}

// sendNotify tells the producer the outcome on its Keyward-Notify inbox.
// Only _INBOX subjects are accepted, so a producer cannot make the
// encryptor publish anywhere else.
func (w *Worker) sendNotify(r *result) {
	inbox := r.msg.Headers().Get(events.HeaderNotify)
	if inbox == "" || r.notify == nil || !validInbox(inbox) {
		return
	}
	m, err := events.NewMsg(context.Background(), w.o.Name, *r.notify)
	if err != nil {
		return
	}
	m.Subject = inbox
	m.Header.Del(events.HeaderMsgID)
	if err := w.d.NC.PublishMsg(m); err != nil {
		w.log.Debug("notify failed", "error", err)
	}
}

func validInbox(s string) bool {
	if !strings.HasPrefix(s, nats.InboxPrefix) || len(s) > 256 {
		return false
	}
	return !strings.ContainsAny(s, " \t\r\n*>")
}

// keepAlive tells JetStream the message is still being worked on, so a
// large asset is not redelivered to another worker mid-encryption.
func keepAlive(m jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// parallel runs fn(0..n-1) on at most limit goroutines.
func parallel(n, limit int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

func parseKey(s string) (kms.KeyURI, error) { return kms.ParseKeyURI(s) }

func clip(s string) string {
	if len(s) > events.MaxDetailLen {
		return s[:events.MaxDetailLen-3] + "..."
	}
	return s
}
