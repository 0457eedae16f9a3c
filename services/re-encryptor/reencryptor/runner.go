package reencryptor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/tenant"
)

// Stable reasons of a paused or stopped job.
const (
	ReasonKeyUnavailable = string(events.ReasonCustomerKeyUnavailable) // a key the job needs is unreachable: paused
	ReasonKeyRevoked     = string(events.ReasonCustomerKeyRevoked)     // a key the job needs is revoked: stopped
	ReasonPlatformKey    = "platform_key_unavailable"                  // the platform or fallback key failed: paused
	ReasonSuperseded     = "superseded"                                // the tenant's primary key changed: a new job takes over
	ReasonDeprovisioning = "deprovisioning"                            // the tenant is being deprovisioned: stopped
	ReasonLeaseLost      = "lease_lost"
)

// runner executes one job: batches of assets from the cursor, each batch
// recorded (events published, ledger updated) then checkpointed.
type runner struct {
	w   *Worker
	job *Job

	lastProgress time.Time
	rateMark     time.Time
	rateDone     int64
	rateBytes    int64
}

// jobState is per-pass bookkeeping kept in the job record (so a resumed
// job knows what its pass has seen).
type passStats struct {
	Moved        int64 `json:"moved"`
	Changed      int64 `json:"changed"`
	Failed       int64 `json:"failed"`
	Total        int64 `json:"total"`
	FailedPasses int   `json:"failed_passes,omitempty"`
}

func (r *runner) target() (target, error) {
	key, err := kms.ParseKeyURI(r.job.ToKeyURI)
	if err != nil {
		return target{}, fmt.Errorf("job %s: to_key_uri: %w", r.job.ID, err)
	}
	return target{key: key, mode: r.job.ToMode, purpose: r.job.Purpose, jobID: r.job.ID,
		rewrap: r.job.Purpose != events.PurposeHeal}, nil
}

func (r *runner) run(ctx context.Context) {
	w, j := r.w, r.job
	log := w.log.With("job_id", j.ID, "tenant_id", j.TenantID, "purpose", j.Purpose)
	t, err := r.target()
	if err != nil {
		log.Error("job record is unusable", "error", err)
		return
	}
	// Claim the lease.
	if j.Owner != w.o.InstanceID || time.Until(j.LeaseUntil) < w.o.LeaseTTL/2 {
		j.Owner, j.LeaseUntil = w.o.InstanceID, time.Now().Add(w.o.LeaseTTL)
		if err := w.jobs.save(ctx, j); err != nil {
			log.Debug("could not claim job", "error", err)
			return
		}
	}
	defer r.release(log)
	r.rateMark = time.Now()
	if j.Pass > 0 && !j.Terminal() {
		// Resumed: moves recorded after the last checkpoint are in the
		// ledger but not in Done; count them from the ledger.
		if err := r.recount(ctx); err != nil {
			log.Warn("recounting a resumed job's progress", "error", err)
		}
	}
	for ctx.Err() == nil {
		if j.State == events.JobCompleted {
			again, err := r.finalize(ctx, log)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("finishing a completed job", "error", err)
				}
				return
			}
			if !again {
				return
			}
			continue
		}
		if stop, reason, detail := r.gate(); reason != "" {
			r.setState(ctx, log, stop, reason, detail)
			return
		}
		if j.State != events.JobRunning {
			j.State, j.Reason, j.Detail = events.JobRunning, "", ""
			log.Info("re-encryption job resumed")
			if !r.checkpoint(ctx, true) {
				return
			}
		}
		if err := w.yield.wait(ctx, func() { r.renew(ctx, log) }); err != nil {
			return
		}
		batch, err := r.nextBatch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("reading the ledger", "error", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if len(batch) == 0 {
			if !r.endOfSource(ctx, log) {
				return
			}
			continue
		}
		jobErr := r.processBatch(ctx, log, t, batch)
		if ctx.Err() != nil {
			return
		}
		if jobErr != nil {
			var me *moveError
			if errors.As(jobErr, &me) {
				reason := ReasonKeyUnavailable
				if me.stop {
					reason = ReasonKeyRevoked
				}
				if !r.isCustomerKey(me.key) {
					reason = ReasonPlatformKey
				}
				r.setState(ctx, log, me.stop && reason == ReasonKeyRevoked, reason, me.Error())
				return
			}
		}
		if !r.checkpoint(ctx, false) {
			return
		}
	}
}

// isCustomerKey reports whether key is one of the tenant's keys (not the
// platform or fallback key).
func (r *runner) isCustomerKey(key kms.KeyURI) bool {
	cfg, ok := r.w.tenants.Get(r.job.TenantID)
	if !ok {
		return false
	}
	for _, k := range cfg.Keys {
		if k.URI == key.String() {
			return true
		}
	}
	return r.job.ToKeyURI == key.String() && r.job.ToMode == events.ModeCustomer ||
		slices.Contains(r.job.FromKeyURIs(), key.String())
}

// gate checks, before each batch, that the job may go on: the keys it
// needs are not away, and its purpose still holds. stop says whether a
// non-empty reason stops (true) or pauses (false) the job.
func (r *runner) gate() (stop bool, reason, detail string) {
	w, j := r.w, r.job
	cfg, ok := w.tenants.Get(j.TenantID)
	check := func(uri string) (bool, string, string) {
		switch st := w.keys.Status(j.TenantID, uri); st {
		case events.KeyStatusUnavailable:
			return false, ReasonKeyUnavailable, uri + " is unavailable; the job resumes when it is back"
		case events.KeyStatusRevoked:
			return true, ReasonKeyRevoked, uri + " is revoked; the assets not yet moved stay where the ledger says"
		}
		return false, "", ""
	}
	switch j.Purpose {
	case events.PurposeHeal, events.PurposeRotation:
		if ok && cfg.Deprovision != nil && !time.Now().Before(cfg.Deprovision.At) {
			return true, ReasonDeprovisioning, "the tenant is being deprovisioned"
		}
		if primary, has := cfg.PrimaryKey(); ok && has && primary.URI != j.ToKeyURI {
			return true, ReasonSuperseded, "the tenant's primary key is now " + primary.URI + "; a new job moves assets to it"
		}
		if stop, reason, detail := check(j.ToKeyURI); reason != "" {
			return stop, reason, detail
		}
		for _, k := range j.FromKeyURIs() {
			if stop, reason, detail := check(k); reason != "" {
				return stop, reason, detail
			}
		}
	case events.PurposeDeprovision:
		if ok {
			for _, k := range cfg.Keys {
				if stop, reason, detail := check(k.URI); reason != "" {
					return stop, reason, detail
				}
			}
		}
	}
	return false, "", ""
}

// setState pauses or stops the job with reason and publishes it.
func (r *runner) setState(ctx context.Context, log *slog.Logger, stop bool, reason, detail string) {
	j := r.job
	state := events.JobPaused
	if stop {
		state = events.JobStopped
	}
	if j.State == state && j.Reason == reason {
		return
	}
	j.State, j.Reason, j.Detail = state, reason, clip(detail)
	if stop {
		j.CompletedAt = time.Now().UTC()
	}
	log.Info("re-encryption job "+string(state), "reason", reason, "detail", j.Detail, "done", j.Done, "left", j.Left)
	r.checkpoint(ctx, true)
}

// nextBatch reads up to BatchSize candidates after the cursor.
func (r *runner) nextBatch(ctx context.Context) ([]ledger.Record, error) {
	j := r.job
	if j.Cursor.Source >= len(j.Sources) {
		return nil, nil
	}
	if !j.PassCounted {
		// Start of a pass: the ledger catches up with KW_ASSETS, then the
		// candidates are counted for Left and the ETA.
		if err := r.w.syncLedger(ctx); err != nil {
			return nil, err
		}
		var n int64
		for _, s := range j.Sources {
			if err := r.w.scan(ctx, j.TenantID, s, ledger.ScanOptions{}, func(ledger.Record) error { n++; return nil }); err != nil {
				return nil, err
			}
		}
		j.Pass++
		j.PassCounted = true
		j.PassStats = passStats{Total: n, FailedPasses: j.PassStats.FailedPasses}
		j.Left = n
	}
	var batch []ledger.Record
	err := r.w.scan(ctx, j.TenantID, j.Sources[j.Cursor.Source], ledger.ScanOptions{After: j.Cursor.After, Limit: r.w.o.BatchSize},
		func(rec ledger.Record) error { batch = append(batch, rec); return nil })
	return batch, err
}

// endOfSource moves the cursor to the next source or ends the pass. At the
// end of a pass with nothing moved, nothing changed under it and nothing
// failed, the job is complete.
func (r *runner) endOfSource(ctx context.Context, log *slog.Logger) bool {
	j := r.job
	if j.Cursor.Source+1 < len(j.Sources) {
		j.Cursor = Cursor{Source: j.Cursor.Source + 1}
		return r.checkpoint(ctx, false)
	}
	ps := j.PassStats
	j.Cursor = Cursor{}
	j.Left = 0
	j.PassCounted = false
	switch {
	case ps.Moved == 0 && ps.Changed == 0 && ps.Failed == 0:
		j.State, j.CompletedAt = events.JobCompleted, time.Now().UTC()
		j.Failed = 0
	case ps.Moved == 0:
		// Only failures, or objects that still differ from a ledger that
		// has caught up (the pass began with syncLedger): after a few such
		// passes the job ends and reports them rather than walk forever.
		j.PassStats.FailedPasses++
		if j.PassStats.FailedPasses >= r.w.o.MaxFailedPasses {
			j.State, j.CompletedAt = events.JobCompleted, time.Now().UTC()
			j.Failed = ps.Failed + ps.Changed
		}
	default:
		j.PassStats.FailedPasses = 0
	}
	if j.State != events.JobCompleted {
		// Another pass: picks up assets stored under the source meanwhile
		// and retries those that failed or were not yet recorded.
		if ps.Changed > 0 || ps.Failed > 0 {
			sleep(ctx, time.Second)
		}
	} else {
		log.Info("re-encryption job completed", "done", j.Done, "skipped", j.Skipped, "failed", j.Failed, "bytes", j.Bytes, "passes", j.Pass)
	}
	return r.checkpoint(ctx, j.State == events.JobCompleted)
}

// processBatch moves batch's assets (Concurrency at once), then records
// every move: AssetReencrypted published (waiting for the acks) and the
// ledger updated. The cursor advances over the assets settled in order; a
// job-level error (a key away) stops the batch at the first asset it hit,
// which is examined again when the job resumes.
func (r *runner) processBatch(ctx context.Context, log *slog.Logger, t target, batch []ledger.Record) error {
	w, j := r.w, r.job
	ctx, span := w.tracer.Start(ctx, "reencrypt batch", trace.WithAttributes(
		attribute.String("keyward.job.purpose", string(j.Purpose)),
		attribute.Int("keyward.job.batch_size", len(batch)),
	))
	defer span.End()
	results := make([]result, len(batch))
	sem := make(chan struct{}, w.o.Concurrency)
	var wg sync.WaitGroup
	var halt sync.Once
	haltCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, rec := range batch {
		sem <- struct{}{}
		if haltCtx.Err() != nil {
			<-sem
			results[i] = result{rec: rec, err: context.Canceled}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			res := w.move(haltCtx, rec, t)
			w.metrics.observe(ctx, j.Purpose, res, time.Since(start))
			var me *moveError
			if errors.As(res.err, &me) {
				halt.Do(cancel)
			}
			results[i] = res
		}()
	}
	wg.Wait()

	// Settle in order up to the first unsettled asset.
	var jobErr error
	settled := len(results)
	for i, res := range results {
		var me *moveError
		if errors.As(res.err, &me) {
			jobErr, settled = me, i
			break
		}
		if res.kind == failedOne && (errors.Is(res.err, context.Canceled) || ctx.Err() != nil) {
			settled = i
			break
		}
	}
	var out []events.Outgoing
	var movedIdx []int
	for i := range settled {
		if results[i].kind == moved && results[i].event != nil {
			ev := results[i].event
			out = append(out, events.Outgoing{Subject: events.SubjectAssetReencrypted(ev.TenantID), MsgID: reencryptedMsgID(ev),
				Type: events.TypeAssetReencrypted, Event: ev})
			movedIdx = append(movedIdx, i)
		}
	}
	if len(out) > 0 {
		w.o.Failpoint(FailpointMoved)
		acks, err := w.publisher.PublishAll(ctx, out)
		if err != nil {
			// Not recorded: the objects are moved, the next pass records
			// them from the objects. Do not advance past them.
			log.Warn("publishing AssetReencrypted", "error", err)
			first := settled
			for k, i := range movedIdx {
				if acks[k] == nil && i < first {
					first = i
				}
			}
			settled = first
		}
		recs := make([]ledger.Record, 0, len(movedIdx))
		for k, i := range movedIdx {
			if i >= settled || acks[k] == nil {
				continue
			}
			prev := results[i].rec
			recs = append(recs, projector.FromReencrypted(results[i].event, &prev, acks[k].Sequence))
		}
		if len(recs) > 0 {
			if err := w.d.Ledger.Put(ctx, recs...); err != nil {
				log.Warn("recording moves in the ledger (the projection will)", "error", err)
			}
		}
		w.o.Failpoint(FailpointRecorded)
	}
	for i := range settled {
		res := results[i]
		switch res.kind {
		case moved:
			j.Done++
			j.PassStats.Moved++
			j.Bytes += res.bytes
			r.rateDone++
			r.rateBytes += res.bytes
		case skipped:
			j.Skipped++
		case changed:
			j.PassStats.Changed++
			if j.PassStats.FailedPasses > 0 {
				r.noteFailed(FailedAsset{AssetID: res.rec.AssetID,
					Error: "the stored object does not match the ledger record (replaced outside Keyward, or the ledger is behind)"})
			}
		case failedOne:
			j.PassStats.Failed++
			j.Failed = j.PassStats.Failed
			r.noteFailed(FailedAsset{AssetID: res.rec.AssetID, Error: clip(res.err.Error())})
			log.Warn("could not move an asset; it stays where the ledger says and is retried next pass",
				"asset_id", res.rec.AssetID, "error", res.err)
		}
		j.Left--
		j.Cursor.After = res.rec.AssetID
	}
	if j.Left < 0 {
		j.Left = 0
	}
	return jobErr
}

// checkpoint writes the job record (and renews the lease), and publishes
// progress when force is set or the interval has passed. It reports false
// when the job must stop here (lease lost, or ctx ended).
func (r *runner) checkpoint(ctx context.Context, force bool) bool {
	w, j := r.w, r.job
	now := time.Now().UTC()
	if el := now.Sub(r.rateMark); el >= time.Second {
		rate := float64(r.rateDone) / el.Seconds()
		brate := float64(r.rateBytes) / el.Seconds()
		if j.Rate == 0 {
			j.Rate, j.BytesRate = rate, brate
		} else {
			j.Rate, j.BytesRate = 0.5*j.Rate+0.5*rate, 0.5*j.BytesRate+0.5*brate
		}
		r.rateMark, r.rateDone, r.rateBytes = now, 0, 0
	}
	j.UpdatedAt = now
	j.LeaseUntil = now.Add(w.o.LeaseTTL)
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.jobs.save(saveCtx, j); err != nil {
		w.log.Warn("checkpointing job; leaving it to whoever holds it now", "job_id", j.ID, "error", err)
		return false
	}
	if force || now.Sub(r.lastProgress) >= w.o.ProgressInterval {
		r.lastProgress = now
		w.publishProgress(saveCtx, j)
	}
	return ctx.Err() == nil
}

// renew extends the lease while the job waits.
func (r *runner) renew(ctx context.Context, log *slog.Logger) {
	if time.Until(r.job.LeaseUntil) > r.w.o.LeaseTTL*2/3 {
		return
	}
	r.checkpoint(ctx, false)
}

// release gives up the lease so another instance (or this one, later) may
// resume the job.
func (r *runner) release(log *slog.Logger) {
	j := r.job
	if j.Owner != r.w.o.InstanceID {
		return
	}
	j.Owner, j.LeaseUntil = "", time.Time{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.w.jobs.save(ctx, j); err != nil && !errors.Is(err, ErrJobConflict) {
		log.Warn("releasing job lease", "job_id", j.ID, "error", err)
	}
}

// finalize does what follows a completed job, once: ReencryptionCompleted,
// then for a rotation the retired keys leave the tenant's configuration
// (RotationCompleted), for a deprovisioning the tenant's keys do
// (DeprovisionCompleted). It reports true when the job must walk again
// first (assets arrived under a key that is leaving).
func (r *runner) finalize(ctx context.Context, log *slog.Logger) (bool, error) {
	w, j := r.w, r.job
	if j.Finalized {
		return false, nil
	}
	if err := w.syncLedger(ctx); err != nil {
		return false, err
	}
	switch j.Purpose {
	case events.PurposeRotation:
		var retired []string
		for _, k := range j.FromKeyURIs() {
			left, err := w.hasAny(ctx, j.TenantID, Source{KeyURI: k})
			if err != nil {
				return false, err
			}
			if left {
				return r.again(ctx), nil
			}
			retired = append(retired, k)
		}
		if _, err := w.store.Modify(ctx, j.TenantID, func(c *tenant.Config) error {
			// The coverage start must not move with the retired keys.
			since := c.CoveredSince()
			c.Keys = slices.DeleteFunc(c.Keys, func(k tenant.Key) bool {
				return k.Role == tenant.RoleRetiring && slices.Contains(retired, k.URI)
			})
			if !since.IsZero() && !c.CoveredSince().Equal(since) {
				c.CoveredFrom = &since
			}
			return nil
		}); err != nil {
			return false, fmt.Errorf("removing the retired keys from the tenant: %w", err)
		}
		if err := w.publishCompleted(ctx, j); err != nil {
			return false, err
		}
		ev := &events.RotationCompleted{TenantID: j.TenantID, JobID: j.ID, RetiredKeyURIs: retired, ToKeyURI: j.ToKeyURI,
			Assets: j.Done, CompletedAt: j.CompletedAt}
		if _, err := w.publisher.Publish(ctx, events.Outgoing{Subject: events.SubjectRotationCompleted(j.TenantID),
			MsgID: "rotation_completed." + j.ID, Type: events.TypeRotationCompleted, Event: ev}); err != nil {
			return false, err
		}
		log.Info("rotation completed: the retired keys may be disabled", "retired", retired)
	case events.PurposeDeprovision:
		cfg, ok := w.tenants.Get(j.TenantID)
		if ok && len(cfg.Keys) > 0 {
			var uris []string
			for _, k := range cfg.Keys {
				uris = append(uris, k.URI)
			}
			j.DeprovisionedKeys = uris
			if _, err := w.store.Modify(ctx, j.TenantID, func(c *tenant.Config) error {
				now := time.Now().UTC()
				c.Keys, c.Deprovision, c.DeprovisionedAt = nil, nil, &now
				return nil
			}); err != nil {
				return false, fmt.Errorf("removing the tenant's keys: %w", err)
			}
			// Encryptors may still hold an asset decided under the old
			// configuration: wait, then walk once more.
			sleep(ctx, w.o.DeprovisionGrace)
			return r.again(ctx), nil
		}
		if err := w.publishCompleted(ctx, j); err != nil {
			return false, err
		}
		if len(j.DeprovisionedKeys) == 0 {
			// A follow-up job for assets stored after the tenant was
			// deprovisioned: DeprovisionCompleted was published already.
			log.Info("moved assets stored after the deprovisioning to the platform key", "done", j.Done)
			break
		}
		ev := &events.DeprovisionCompleted{TenantID: j.TenantID, JobID: j.ID, KeyURIs: j.DeprovisionedKeys,
			Assets: j.Done, CompletedAt: j.CompletedAt}
		if _, err := w.publisher.Publish(ctx, events.Outgoing{Subject: events.SubjectDeprovisionCompleted(j.TenantID),
			MsgID: "deprovision_completed." + j.ID, Type: events.TypeDeprovisionCompleted, Event: ev}); err != nil {
			return false, err
		}
		log.Info("deprovisioning completed: the tenant may disable its keys", "keys", j.DeprovisionedKeys)
	default:
		if err := w.publishCompleted(ctx, j); err != nil {
			return false, err
		}
	}
	j.Finalized = true
	return false, boolErr(r.checkpoint(ctx, false))
}

// again reopens a completed job for another pass.
func (r *runner) again(ctx context.Context) bool {
	j := r.job
	j.State, j.CompletedAt, j.Cursor = events.JobRunning, time.Time{}, Cursor{}
	j.PassStats, j.PassCounted = passStats{}, false
	return r.checkpoint(ctx, false)
}

func boolErr(ok bool) error {
	if ok {
		return nil
	}
	return errors.New("checkpoint failed")
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func clip(s string) string {
	const max = 512
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// recount sets Done and Bytes from the ledger: the assets now under the
// job's target key and mode whose last move happened since the job
// started. A run killed between recording a batch and checkpointing it
// would otherwise leave those moves out of the job's figures.
func (r *runner) recount(ctx context.Context) error {
	j := r.job
	var done, bytes int64
	err := r.w.d.Ledger.ByKey(ctx, j.TenantID, j.ToKeyURI, ledger.ScanOptions{}, func(rec ledger.Record) error {
		if rec.Mode == j.ToMode && !rec.ReencryptedAt.Before(j.StartedAt) {
			done++
			bytes += rec.Size
		}
		return nil
	})
	if err != nil {
		return err
	}
	if done > j.Done {
		j.Done, j.Bytes = done, bytes
	}
	return nil
}

// noteFailed lists an asset that could not be moved (the last
// maxFailedListed, one entry per asset).
func (r *runner) noteFailed(f FailedAsset) {
	j := r.job
	j.FailedAssets = slices.DeleteFunc(j.FailedAssets, func(x FailedAsset) bool { return x.AssetID == f.AssetID })
	if len(j.FailedAssets) >= maxFailedListed {
		j.FailedAssets = j.FailedAssets[1:]
	}
	j.FailedAssets = append(j.FailedAssets, f)
}
