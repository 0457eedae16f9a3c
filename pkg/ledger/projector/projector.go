// Package projector keeps a ledger.Store in step with the KW_ASSETS stream,
// the log of record: every AssetEncrypted, AssetRejected and AssetReencrypted
// becomes (or updates) a ledger record, one bbolt transaction per fetched
// batch, with the stream position stored in the same transaction. A worker
// runs one projector for its own ledger file; a deleted or corrupt ledger is
// rebuilt by projecting the stream from the start (Rebuild).
//
// Ordering: a record keeps the KW_ASSETS sequence of the last event applied
// to it (StreamSeq). An event at that sequence (a redelivery, or the
// worker's own output it already recorded) or older (a worker recorded a
// later event for the asset before the projector reached this one) is
// skipped, so a record never moves back to an earlier state, and a replay
// from the start ends in the same ledger as live projection.
//
// AssetReencrypted (heal, rotation, deprovision) replaces the record's mode,
// key URI, key version, wrapped seed, location, sizes and digests, clears
// Reencrypt and sets ReencryptedAt; the indexes by key and by mode follow.
// What the event does not carry (coverage, the AssetCreated event id, the
// time of first encryption) is kept from the record. For an asset the ledger
// does not hold (or holds as rejected), the event alone makes the record:
// it carries everything a record needs; Coverage is then "covered" (every
// mode a re-encryption starts from is a covered one), EncryptedAt the
// re-encryption time and EventID empty.
package projector

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/tenant"
)

// CursorName is the ledger cursor holding the last applied KW_ASSETS
// sequence.
const CursorName = "KW_ASSETS"

// Projector applies KW_ASSETS to a ledger.
type Projector struct {
	js    jetstream.JetStream
	store *ledger.Store
	log   *slog.Logger
	batch int
	wait  time.Duration

	once     sync.Once
	caughtUp chan struct{}
}

// Option tunes a Projector.
type Option func(*Projector)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(p *Projector) { p.log = l } }

// WithBatchSize sets how many events are applied per transaction (default 256).
func WithBatchSize(n int) Option { return func(p *Projector) { p.batch = n } }

// New returns a projector for store.
func New(js jetstream.JetStream, store *ledger.Store, opts ...Option) *Projector {
	p := &Projector{js: js, store: store, log: slog.Default(), batch: 256, wait: time.Second, caughtUp: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	return p
}

// CaughtUp is closed once the projector has applied everything that was in
// the stream when it started (readiness for the key broker).
func (p *Projector) CaughtUp() <-chan struct{} { return p.caughtUp }

func (p *Projector) markCaughtUp() { p.once.Do(func() { close(p.caughtUp) }) }

// Run projects until ctx ends. It resumes from the ledger's cursor, so a
// restart neither skips nor re-applies events (re-applying is harmless too).
func (p *Projector) Run(ctx context.Context) error {
	for {
		err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		p.log.Warn("ledger projection interrupted; resuming", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (p *Projector) runOnce(ctx context.Context) error {
	cursor, err := p.store.Cursor(ctx, CursorName)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectAssetEncryptedAll, events.SubjectAssetRejectedAll, events.SubjectAssetReencryptedAll},
	}
	if cursor > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = cursor + 1
	}
	cons, err := p.js.OrderedConsumer(ctx, events.StreamAssets, cfg)
	if err != nil {
		return fmt.Errorf("projector: consumer on %s: %w", events.StreamAssets, err)
	}
	idle := false
	for ctx.Err() == nil {
		// Take what is there at once (up to a batch); when nothing was,
		// wait for the next event and apply it as soon as it arrives — a
		// full-batch fetch would hold a lone event for the whole wait.
		var msgs jetstream.MessageBatch
		if idle {
			msgs, err = cons.Fetch(1, jetstream.FetchMaxWait(p.wait))
		} else {
			msgs, err = cons.FetchNoWait(p.batch)
		}
		if err != nil {
			return fmt.Errorf("projector: fetch: %w", err)
		}
		var batch []jetstream.Msg
		for m := range msgs.Messages() {
			batch = append(batch, m)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("projector: fetch: %w", err)
		}
		if len(batch) == 0 {
			p.markCaughtUp()
			idle = true
			continue
		}
		idle = false
		pending, err := p.apply(ctx, batch)
		if err != nil {
			return err
		}
		if pending == 0 {
			p.markCaughtUp()
		}
	}
	return ctx.Err()
}

// apply turns a batch into one ledger transaction. It returns the number of
// messages still pending after the batch.
func (p *Projector) apply(ctx context.Context, batch []jetstream.Msg) (uint64, error) {
	var (
		recs    []ledger.Record
		lastSeq uint64
		pending uint64
		index   = map[string]int{} // tenant/asset → position in recs
	)
	// Most events are already in the ledger, recorded by the worker that
	// published them: one read transaction finds those, and they are
	// skipped without decoding.
	refs := make([]ledger.Ref, len(batch))
	for i, m := range batch {
		tenant, _ := events.TenantFromSubject(m.Subject())
		refs[i] = ledger.Ref{TenantID: tenant, AssetID: m.Headers().Get(events.HeaderAssetID)}
	}
	known, err := p.store.StreamSeqs(ctx, refs)
	if err != nil {
		return 0, err
	}
	for i, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return 0, err
		}
		lastSeq, pending = md.Sequence.Stream, md.NumPending
		if known[i] >= md.Sequence.Stream {
			// Already applied, or the record holds a later event.
			continue
		}
		rec, ok, err := p.recordFor(ctx, m, md.Sequence.Stream, recs, index)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		k := rec.TenantID + "/" + rec.AssetID
		if i, seen := index[k]; seen {
			recs[i] = rec
		} else {
			index[k] = len(recs)
			recs = append(recs, rec)
		}
	}
	err = p.store.Apply(ctx, ledger.Batch{Records: recs, Cursors: map[string]uint64{CursorName: lastSeq}})
	if err != nil {
		return 0, fmt.Errorf("projector: applying %d records up to sequence %d: %w", len(recs), lastSeq, err)
	}
	return pending, nil
}

// recordFor maps one event onto the record it produces, given the current
// record (from this batch or the ledger). An encrypted asset is never turned
// back into a rejected one: asset ids are identities and ciphertexts are
// immutable.
func (p *Projector) recordFor(ctx context.Context, m jetstream.Msg, seq uint64, recs []ledger.Record, index map[string]int) (ledger.Record, bool, error) {
	switch m.Headers().Get(events.HeaderCEType) {
	case events.TypeAssetEncrypted:
		e, err := events.DecodeAssetEncrypted(m.Data())
		if err != nil {
			p.log.Error("skipping undecodable AssetEncrypted in the log of record", "seq", seq, "error", err)
			return ledger.Record{}, false, nil
		}
		return FromEncrypted(e, seq), true, nil
	case events.TypeAssetRejected:
		e, err := events.DecodeAssetRejected(m.Data())
		if err != nil {
			p.log.Error("skipping undecodable AssetRejected in the log of record", "seq", seq, "error", err)
			return ledger.Record{}, false, nil
		}
		var cur ledger.Record
		var found bool
		if i, ok := index[e.TenantID+"/"+e.AssetID]; ok {
			cur, found = recs[i], true
		} else if r, err := p.store.Get(ctx, e.TenantID, e.AssetID); err == nil {
			cur, found = r, true
		}
		if found && cur.State == ledger.StateEncrypted {
			return ledger.Record{}, false, nil
		}
		return FromRejected(e, seq), true, nil
	case events.TypeAssetReencrypted:
		e, err := events.DecodeAssetReencrypted(m.Data())
		if err != nil {
			p.log.Error("skipping undecodable AssetReencrypted in the log of record", "seq", seq, "error", err)
			return ledger.Record{}, false, nil
		}
		var prev *ledger.Record
		if i, ok := index[e.TenantID+"/"+e.AssetID]; ok {
			prev = &recs[i]
		} else {
			r, err := p.store.Get(ctx, e.TenantID, e.AssetID)
			switch {
			case err == nil:
				prev = &r
			case !errors.Is(err, ledger.ErrNotFound):
				// Applying without the record would lose what only the
				// record knows (coverage, event id): retry the batch.
				return ledger.Record{}, false, fmt.Errorf("projector: AssetReencrypted at sequence %d: %w", seq, err)
			}
		}
		if prev != nil && prev.StreamSeq >= seq {
			// Checked by asset identity, not only by the header: an older
			// event never rolls a record back.
			p.log.Debug("skipping an AssetReencrypted older than the record", "seq", seq, "record_seq", prev.StreamSeq,
				"tenant_id", e.TenantID, "asset_id", e.AssetID)
			return ledger.Record{}, false, nil
		}
		if prev != nil && prev.State == ledger.StateEncrypted && (prev.KeyURI != e.FromKeyURI || prev.Mode != e.FromMode) {
			// The log of record wins; the mismatch is worth a look.
			p.log.Warn("AssetReencrypted moves an asset from a key the ledger does not record for it; applying the event",
				"seq", seq, "tenant_id", e.TenantID, "asset_id", e.AssetID,
				"from_key_uri", e.FromKeyURI, "from_mode", e.FromMode, "ledger_key_uri", prev.KeyURI, "ledger_mode", prev.Mode)
		}
		return FromReencrypted(e, prev, seq), true, nil
	}
	return ledger.Record{}, false, nil
}

// FromEncrypted is the ledger record of an AssetEncrypted event stored at
// stream sequence seq (0 if not yet published).
func FromEncrypted(e *events.AssetEncrypted, seq uint64) ledger.Record {
	ctSum, _ := hex.DecodeString(e.CiphertextSHA256)
	hdrSum, _ := hex.DecodeString(e.HeaderSHA256)
	return ledger.Record{
		TenantID:       e.TenantID,
		AssetID:        e.AssetID,
		Service:        e.Service,
		State:          ledger.StateEncrypted,
		Mode:           e.Mode,
		KeyURI:         e.KeyURI,
		KeyVersion:     e.KeyVersion,
		WrappedSeed:    e.WrappedSeed,
		HeaderSHA256:   hdrSum,
		Bucket:         e.Location.Bucket,
		Object:         e.Location.Object,
		Size:           e.Size,
		CiphertextSize: e.CiphertextSize,
		SHA256:         ctSum,
		Coverage:       e.Coverage,
		Reencrypt:      e.PendingReencryption,
		EventID:        e.SourceEventID,
		StreamSeq:      seq,
		EncryptedAt:    e.EncryptedAt,
	}
}

// FromReencrypted is the ledger record of an AssetReencrypted event stored at
// stream sequence seq (0 if not yet published), applied over prev, the
// asset's current record (nil if the ledger holds none). The new mode, key
// URI, key version, wrapped seed, location, sizes and digests come from the
// event, Reencrypt is false and ReencryptedAt is the event's time. Coverage,
// EventID and EncryptedAt are kept from prev when it is an encrypted record;
// otherwise Coverage is "covered" (a re-encryption starts from the customer
// or fallback mode, both covered), EventID is empty and EncryptedAt is the
// re-encryption time.
func FromReencrypted(e *events.AssetReencrypted, prev *ledger.Record, seq uint64) ledger.Record {
	ctSum, _ := hex.DecodeString(e.CiphertextSHA256)
	hdrSum, _ := hex.DecodeString(e.HeaderSHA256)
	r := ledger.Record{
		TenantID:       e.TenantID,
		AssetID:        e.AssetID,
		Service:        e.Service,
		State:          ledger.StateEncrypted,
		Mode:           e.ToMode,
		KeyURI:         e.KeyURI,
		KeyVersion:     e.KeyVersion,
		WrappedSeed:    e.WrappedSeed,
		HeaderSHA256:   hdrSum,
		Bucket:         e.Location.Bucket,
		Object:         e.Location.Object,
		Size:           e.Size,
		CiphertextSize: e.CiphertextSize,
		SHA256:         ctSum,
		Coverage:       string(tenant.CoverageCovered),
		Reencrypt:      false,
		StreamSeq:      seq,
		EncryptedAt:    e.ReencryptedAt,
		ReencryptedAt:  e.ReencryptedAt,
	}
	if prev != nil && prev.State == ledger.StateEncrypted {
		r.Coverage, r.EventID, r.EncryptedAt = prev.Coverage, prev.EventID, prev.EncryptedAt
	}
	return r
}

// FromRejected is the ledger record of an AssetRejected event.
func FromRejected(e *events.AssetRejected, seq uint64) ledger.Record {
	return ledger.Record{
		TenantID:     e.TenantID,
		AssetID:      e.AssetID,
		Service:      e.Service,
		State:        ledger.StateRejected,
		RejectReason: string(e.Reason),
		RejectDetail: e.Detail,
		EventID:      e.SourceEventID,
		StreamSeq:    seq,
		EncryptedAt:  e.RejectedAt,
	}
}

// ToEncrypted rebuilds the AssetEncrypted event of an encrypted record.
func ToEncrypted(r ledger.Record) *events.AssetEncrypted {
	return &events.AssetEncrypted{
		TenantID:            r.TenantID,
		AssetID:             r.AssetID,
		Service:             r.Service,
		Mode:                r.Mode,
		Coverage:            r.Coverage,
		KeyURI:              r.KeyURI,
		KeyVersion:          r.KeyVersion,
		WrappedSeed:         r.WrappedSeed,
		Location:            events.Location{Bucket: r.Bucket, Object: r.Object},
		Size:                r.Size,
		CiphertextSize:      r.CiphertextSize,
		CiphertextSHA256:    hex.EncodeToString(r.SHA256),
		HeaderSHA256:        hex.EncodeToString(r.HeaderSHA256),
		PendingReencryption: r.Reencrypt,
		SourceEventID:       r.EventID,
		EncryptedAt:         r.EncryptedAt,
	}
}

// Rebuild empties store and projects KW_ASSETS from the start until it has
// caught up. It is what `keyward ledger rebuild` and a worker whose ledger
// was lost run.
func Rebuild(ctx context.Context, js jetstream.JetStream, store *ledger.Store, opts ...Option) error {
	if err := store.Reset(ctx); err != nil {
		return err
	}
	p := New(js, store, opts...)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(runCtx) }()
	select {
	case <-p.CaughtUp():
		cancel()
		<-errc
		return nil
	case err := <-errc:
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
}
