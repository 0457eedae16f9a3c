package reencryptor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/ledger"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/vault"
)

// Worker is one re-encryptor instance: it projects KW_ASSETS into its
// ledger, watches tenants and key statuses, and runs the jobs that are due.
type Worker struct {
	d         Deps
	o         Options
	log       *slog.Logger
	vault     *vault.Store
	jobs      *Jobs
	tenants   *tenant.Cache
	store     *tenant.Store
	keys      *keystatus.Cache
	projector *projector.Projector
	publisher *events.Publisher
	seeds     *kms.SeedCache
	kms       *kms.Client
	wraps     *wrapCache
	chunkOpts []cobblestone.Option
	metrics   *metrics
	tracer    trace.Tracer
	yield     *yielder

	runCtx        context.Context // Run's: jobs run until it ends
	statusChanged atomic.Bool     // a key status changed since the last round
	mu            sync.Mutex
	running       map[string]*runner // by JobKey
	pending       map[string]struct{}
	wake          chan struct{}
	started       chan struct{}
	wg            sync.WaitGroup
}

// New prepares a worker; Run starts it.
func New(ctx context.Context, d Deps, o Options) (*Worker, error) {
	o.setDefaults()
	if err := o.validate(d); err != nil {
		return nil, err
	}
	w := &Worker{
		d: d, o: o, log: o.Logger.With("worker", "re-encryptor"),
		seeds: d.Seeds, kms: d.KMS, wraps: newWrapCache(4096),
		chunkOpts: []cobblestone.Option{cobblestone.WithConcurrency(o.ChunkConcurrency)},
		running:   map[string]*runner{}, pending: map[string]struct{}{},
		wake: make(chan struct{}, 1), started: make(chan struct{}),
	}
	var err error
	if w.vault, err = vault.Open(ctx, d.JS, events.BucketVault); err != nil {
		return nil, err
	}
	if w.jobs, err = OpenJobs(ctx, d.JS); err != nil {
		return nil, err
	}
	tkv, err := d.JS.KeyValue(ctx, events.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("re-encryptor: tenants bucket: %w", err)
	}
	tenantOpts := []tenant.Option{tenant.WithLogger(w.log), tenant.WithValidateOptions(tenant.AllowLocalKeys(o.AllowLocalCustomerKeys))}
	if w.tenants, err = tenant.NewCache(ctx, tkv, tenantOpts...); err != nil {
		return nil, err
	}
	w.store = tenant.NewStore(tkv, tenantOpts...)
	skv, err := d.JS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		return nil, fmt.Errorf("re-encryptor: key status bucket: %w", err)
	}
	if w.keys, err = keystatus.NewCache(ctx, skv, w.log); err != nil {
		return nil, err
	}
	w.projector = projector.New(d.JS, d.Ledger, projector.WithLogger(w.log))
	w.publisher = events.NewPublisher(d.JS, "re-encryptor")
	w.yield = newYielder(d.JS, o.YieldBacklog)
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if w.metrics, err = newMetrics(mp.Meter("github.com/keyward/keyward/services/re-encryptor"), w); err != nil {
		return nil, err
	}
	w.tracer = otel.Tracer("github.com/keyward/keyward/services/re-encryptor")
	return w, nil
}

// InstanceID names this instance in job records.
func (w *Worker) InstanceID() string { return w.o.InstanceID }

// Jobs is the worker's job store (read it for status).
func (w *Worker) Jobs() *Jobs { return w.jobs }

// Ready reports nil once the worker can run jobs: tenant and key-status
// caches loaded, ledger caught up with KW_ASSETS.
func (w *Worker) Ready() error {
	for _, c := range []struct {
		name string
		ch   <-chan struct{}
	}{{"tenant cache", w.tenants.Ready()}, {"key status cache", w.keys.Ready()}, {"ledger projection", w.projector.CaughtUp()}, {"job scheduler", w.started}} {
		select {
		case <-c.ch:
		default:
			return fmt.Errorf("%s not ready", c.name)
		}
	}
	return nil
}

// Run projects the ledger and runs due jobs until ctx ends; then running
// jobs checkpoint and release their leases, and Run returns.
func (w *Worker) Run(ctx context.Context) error {
	defer w.tenants.Stop()
	defer w.keys.Stop()
	w.runCtx = ctx
	projCtx, stopProjector := context.WithCancel(context.WithoutCancel(ctx))
	var projWG sync.WaitGroup
	projWG.Add(1)
	go func() { defer projWG.Done(); _ = w.projector.Run(projCtx) }()
	defer func() { stopProjector(); projWG.Wait() }()

	for _, ch := range []<-chan struct{}{w.tenants.Ready(), w.keys.Ready(), w.projector.CaughtUp()} {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
	w.keys.OnChange(func(r keystatus.Record) {
		if key, err := kms.ParseKeyURI(r.KeyURI); err == nil {
			w.seeds.FlushKey(key)
		}
		w.wraps.flush()
		w.statusChanged.Store(true)
		w.poke(r.TenantID)
	})
	w.tenants.OnChange(w.poke)
	w.pokeAll()
	close(w.started)
	w.log.Info("re-encryptor started", "instance", w.o.InstanceID)

	tick := time.NewTicker(w.o.RescanInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.wg.Wait()
			return nil
		case <-tick.C:
			w.pokeAll()
		case <-w.wake:
		}
		if w.statusChanged.Swap(false) {
			// A key came back: fallback copies stored just before must be
			// in the ledger before the heal check looks for them.
			syncCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := w.syncLedger(syncCtx); err != nil && ctx.Err() == nil {
				w.log.Warn("waiting for the ledger to catch up", "error", err)
			}
			cancel()
		}
		for _, t := range w.takePending() {
			evalCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := w.evaluate(evalCtx, t)
			cancel()
			if err != nil && ctx.Err() == nil {
				w.log.Warn("checking a tenant for re-encryption work", "tenant_id", t, "error", err)
			}
		}
	}
}

// poke asks the scheduler to check tenantID soon. It never blocks.
func (w *Worker) poke(tenantID string) {
	w.mu.Lock()
	w.pending[tenantID] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pokeAll asks for every tenant and every unfinished job to be checked.
func (w *Worker) pokeAll() {
	ids := w.tenants.IDs()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if jobs, err := w.jobs.List(ctx, ""); err == nil {
		for _, j := range jobs {
			if !j.Terminal() || !j.Finalized {
				ids = append(ids, j.TenantID)
			}
		}
	}
	w.mu.Lock()
	for _, id := range ids {
		w.pending[id] = struct{}{}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Worker) takePending() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.pending))
	for id := range w.pending {
		out = append(out, id)
	}
	clear(w.pending)
	slices.Sort(out)
	return out
}

// plan is what a job of a purpose would do for a tenant now.
type plan struct {
	purpose events.ReencryptPurpose
	target  target
	sources []Source
	from    []string
}

// usable reports whether a key in status st can be used by a job.
func usable(st events.KeyStatus) bool {
	return st != events.KeyStatusUnavailable && st != events.KeyStatusRevoked
}

// planFor returns the job tenantID needs for purpose now, or nil.
func (w *Worker) planFor(ctx context.Context, tenantID string, purpose events.ReencryptPurpose) (*plan, error) {
	cfg, ok := w.tenants.Get(tenantID)
	now := time.Now()
	switch purpose {
	case events.PurposeDeprovision:
		if !ok {
			return nil, nil
		}
		var from []string
		switch {
		case cfg.Deprovision != nil && !now.Before(cfg.Deprovision.At):
			for _, k := range cfg.Keys {
				from = append(from, k.URI)
			}
		case cfg.DeprovisionedAt != nil && len(cfg.Keys) == 0:
			// Deprovisioned: an asset an encryptor stored under the old
			// configuration after the job's last pass is moved too.
			var straggler string
			for _, m := range []events.Mode{events.ModeCustomer, events.ModeFallback} {
				if err := w.scan(ctx, tenantID, Source{Mode: m}, ledger.ScanOptions{Limit: 1}, func(r ledger.Record) error {
					straggler = r.KeyURI
					return nil
				}); err != nil {
					return nil, err
				}
				if straggler != "" {
					break
				}
			}
			if straggler == "" {
				return nil, nil
			}
			if straggler != w.o.FallbackKey.String() {
				from = append(from, straggler)
			}
		default:
			return nil, nil
		}
		return &plan{purpose: purpose,
			target:  target{key: w.o.PlatformKey, mode: events.ModePlatform, purpose: purpose, rewrap: true},
			sources: []Source{{Mode: events.ModeCustomer}, {Mode: events.ModeFallback}},
			from:    append(from, w.o.FallbackKey.String())}, nil
	}
	if !ok || cfg.Deprovision != nil {
		return nil, nil
	}
	primary, ok := cfg.PrimaryKey()
	if !ok {
		return nil, nil
	}
	key, err := kms.ParseKeyURI(primary.URI)
	if err != nil {
		return nil, nil
	}
	if !usable(w.keys.Status(tenantID, primary.URI)) {
		return nil, nil
	}
	t := target{key: key, mode: events.ModeCustomer, purpose: purpose}
	switch purpose {
	case events.PurposeHeal:
		any, err := w.hasAny(ctx, tenantID, Source{Mode: events.ModeFallback})
		if err != nil || !any {
			return nil, err
		}
		return &plan{purpose: purpose, target: t, sources: []Source{{Mode: events.ModeFallback}}, from: []string{w.o.FallbackKey.String()}}, nil
	case events.PurposeRotation:
		var sources []Source
		var from []string
		for _, k := range cfg.Keys {
			if k.Role == tenant.RoleRetiring {
				sources = append(sources, Source{KeyURI: k.URI})
				from = append(from, k.URI)
			}
		}
		if len(sources) == 0 {
			return nil, nil
		}
		t.rewrap = true
		return &plan{purpose: purpose, target: t, sources: sources, from: from}, nil
	}
	return nil, nil
}

// anyRevoked reports whether one of tenantID's keys uris is revoked: a job
// that needs it would only stop again.
func (w *Worker) anyRevoked(tenantID string, uris []string) bool {
	for _, u := range uris {
		if w.keys.Status(tenantID, u) == events.KeyStatusRevoked {
			return true
		}
	}
	return false
}

// hasAny reports whether the source holds at least one asset of tenantID.
func (w *Worker) hasAny(ctx context.Context, tenantID string, s Source) (bool, error) {
	found := false
	err := w.scan(ctx, tenantID, s, ledger.ScanOptions{Limit: 1}, func(ledger.Record) error { found = true; return nil })
	return found, err
}

// scan walks one source of tenantID.
func (w *Worker) scan(ctx context.Context, tenantID string, s Source, opt ledger.ScanOptions, fn func(ledger.Record) error) error {
	if s.KeyURI != "" {
		return w.d.Ledger.ByKey(ctx, tenantID, s.KeyURI, opt, func(r ledger.Record) error {
			if r.Mode != events.ModeCustomer {
				return nil
			}
			return fn(r)
		})
	}
	return w.d.Ledger.ByMode(ctx, tenantID, s.Mode, opt, fn)
}

var purposes = []events.ReencryptPurpose{events.PurposeDeprovision, events.PurposeRotation, events.PurposeHeal}

// evaluate starts, resumes or finalizes tenantID's jobs as needed.
func (w *Worker) evaluate(ctx context.Context, tenantID string) error {
	var errs []error
	for _, p := range purposes {
		if err := w.evaluateOne(ctx, tenantID, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func (w *Worker) evaluateOne(ctx context.Context, tenantID string, purpose events.ReencryptPurpose) error {
	key := JobKey(tenantID, purpose)
	w.mu.Lock()
	_, busy := w.running[key]
	w.mu.Unlock()
	if busy {
		return nil
	}
	job, err := w.jobs.Get(ctx, tenantID, purpose)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if job != nil && job.Owner != "" && job.Owner != w.o.InstanceID && now.Before(job.LeaseUntil) {
		return nil // another instance runs it
	}
	if job != nil && (!job.Terminal() || (job.State == events.JobCompleted && !job.Finalized)) {
		w.start(ctx, job)
		return nil
	}
	if job != nil && job.State == events.JobStopped && job.Reason == ReasonKeyRevoked &&
		w.anyRevoked(tenantID, append([]string{job.ToKeyURI}, job.FromKeyURIs()...)) {
		return nil // stopped, and stays so (one report) until the key is back
	}
	p, err := w.planFor(ctx, tenantID, purpose)
	if err != nil || p == nil {
		return err
	}
	nj := &Job{
		ID: newJobID(tenantID, purpose, now), TenantID: tenantID, Purpose: purpose,
		State: events.JobRunning, ToKeyURI: p.target.key.String(), ToMode: p.target.mode,
		Sources: p.sources, FromKeys: p.from, StartedAt: now, UpdatedAt: now,
		Owner: w.o.InstanceID, LeaseUntil: now.Add(w.o.LeaseTTL),
	}
	if err := w.jobs.create(ctx, nj, job); err != nil {
		if errors.Is(err, ErrJobConflict) {
			return nil // another instance made or moved it; the next check sees it
		}
		return err
	}
	w.log.Info("re-encryption job started", "job_id", nj.ID, "tenant_id", tenantID, "purpose", purpose,
		"to_key_uri", nj.ToKeyURI, "sources", len(nj.Sources))
	w.start(ctx, nj)
	return nil
}

// start runs job in its own goroutine unless it already runs here. The job
// runs until Run's context ends, whatever ctx (the caller's) does.
func (w *Worker) start(_ context.Context, job *Job) {
	ctx := w.runCtx
	key := JobKey(job.TenantID, job.Purpose)
	w.mu.Lock()
	if _, busy := w.running[key]; busy {
		w.mu.Unlock()
		return
	}
	r := &runner{w: w, job: job}
	w.running[key] = r
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() {
			w.mu.Lock()
			delete(w.running, key)
			w.mu.Unlock()
		}()
		r.run(ctx)
	}()
}

// syncLedger waits until the ledger has applied every KW_ASSETS event
// published before the call, so a pass that starts now sees every asset
// stored so far (at most 10 s; after that the pass goes on and the next
// one catches up).
func (w *Worker) syncLedger(ctx context.Context) error {
	st, err := w.d.JS.Stream(ctx, events.StreamAssets)
	if err != nil {
		return fmt.Errorf("reading %s: %w", events.StreamAssets, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading %s: %w", events.StreamAssets, err)
	}
	last := info.State.LastSeq
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, err := w.d.Ledger.Cursor(ctx, projector.CursorName)
		if err != nil {
			return err
		}
		if cur >= last || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
