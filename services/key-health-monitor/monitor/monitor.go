package monitor

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"golang.org/x/time/rate"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keyhealth"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/tenant"
)

// Worker is one key-health-monitor instance.
type Worker struct {
	d   Deps
	o   Options
	log *slog.Logger

	classifier keyhealth.Classifier
	schedule   keyhealth.Schedule
	publisher  *events.Publisher
	metrics    *metrics
	validate   []tenant.ValidateOption
	dlqLimit   *rate.Limiter

	tenantsKV, statusKV, leaseKV jetstream.KeyValue
	leaseTTL                     time.Duration
	partitions                   int
	started                      time.Time

	mu      sync.Mutex
	tenants map[string]*tenant.Config
	byPart  []map[string]struct{} // partition → tenant ids
	owned   map[int]*partition
	keys    map[string]*keyState // keystatus.Key(tenant, uri) → state, keys of owned partitions only
	queue   keyhealth.Queue
	pacers  map[string]*rate.Limiter
	// endpointHints: when probeEndpointSoon last ran per endpoint.
	endpointHints map[string]time.Time
	live          int // instances seen at the last lease tick

	wake chan struct{}
	obsQ chan observation

	tenantsLoaded, leasesReady, subscribed chan struct{}
	loadedOnce, leasesOnce                 sync.Once
}

// partition is one tenant partition this instance holds a lease on.
type partition struct {
	n   int
	rev uint64 // the lease's revision; lease goroutine only
	// validUntil is the end of the lease as this instance may assume it
	// (nanoseconds since Worker.started, monotonic): three quarters of the
	// TTL after the start of the last successful renewal.
	validUntil atomic.Int64
	active     atomic.Bool
	// busy counts probes and observations of this partition's keys in
	// progress; a graceful release waits for them.
	busy sync.WaitGroup
}

// keyState is one enrolled key of an owned partition.
type keyState struct {
	id       string // keystatus.Key(tenant, uri)
	tenantID string
	uriStr   string // as enrolled
	uri      kms.KeyURI
	part     *partition
	gone     atomic.Bool // dropped (partition lost or key removed): results are not applied
	probes   atomic.Int64

	// Under Worker.mu.
	inflight bool
	soon     bool

	// paced is set by probeKey (and read by reschedule, in the same
	// goroutine) when the endpoint's probe budget had no token: the key
	// is due again then, without having been probed.
	paced time.Duration

	mu        sync.Mutex // serialises the key's results
	seeded    bool
	tracker   *keyhealth.Tracker
	last      keyhealth.Result
	kvPending *keystatus.Record // published, not yet stored in KW_KEY_STATUS
}

type observation struct {
	ks *keyState
	r  keyhealth.Result
}

// New wires a worker: it binds the buckets and reads the partition count
// the running instances use. It starts nothing until Run.
func New(ctx context.Context, d Deps, o Options) (*Worker, error) {
	o.setDefaults()
	if err := o.validate(d); err != nil {
		return nil, err
	}
	w := &Worker{
		d: d, o: o,
		log:     o.Logger.With("worker", o.Name, "instance", o.InstanceID),
		tenants: map[string]*tenant.Config{},
		owned:   map[int]*partition{},
		keys:    map[string]*keyState{},
		pacers:  map[string]*rate.Limiter{},

		endpointHints: map[string]time.Time{},
		wake:          make(chan struct{}, 1),
		obsQ:          make(chan observation, 4096),
		started:       time.Now(),
		validate:      []tenant.ValidateOption{tenant.AllowLocalKeys(o.AllowLocalCustomerKeys)},
		dlqLimit:      rate.NewLimiter(rate.Limit(o.MaxDeadLettersPerSecond), int(max(1, o.MaxDeadLettersPerSecond))),

		tenantsLoaded: make(chan struct{}),
		leasesReady:   make(chan struct{}),
		subscribed:    make(chan struct{}),
	}
	w.classifier = keyhealth.Classifier{SlowThreshold: o.SlowThreshold, Detail: providerReason}
	w.schedule = keyhealth.Schedule{Healthy: o.HealthyInterval, Unhealthy: o.UnhealthyInterval, Confirm: o.ConfirmInterval, Jitter: o.Jitter}
	var err error
	if w.tenantsKV, err = d.JS.KeyValue(ctx, events.BucketTenants); err != nil {
		return nil, fmt.Errorf("monitor: tenants bucket: %w", err)
	}
	if w.statusKV, err = d.JS.KeyValue(ctx, events.BucketKeyStatus); err != nil {
		return nil, fmt.Errorf("monitor: key status bucket: %w", err)
	}
	if w.leaseKV, err = d.JS.KeyValue(ctx, events.BucketKeyHealthLeases); err != nil {
		return nil, fmt.Errorf("monitor: lease bucket: %w", err)
	}
	st, err := w.leaseKV.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("monitor: lease bucket: %w", err)
	}
	if w.leaseTTL = st.TTL(); w.leaseTTL <= 0 {
		return nil, fmt.Errorf("monitor: bucket %s has no TTL, so a dead instance's leases would never expire: provision it again (events.Provision)", events.BucketKeyHealthLeases)
	}
	if w.partitions, err = w.agreePartitions(ctx); err != nil {
		return nil, err
	}
	w.byPart = make([]map[string]struct{}, w.partitions)
	for i := range w.byPart {
		w.byPart[i] = map[string]struct{}{}
	}
	w.publisher = events.NewPublisher(d.JS, o.Name)
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	w.metrics, err = newMetrics(mp.Meter("github.com/keyward/keyward/services/key-health-monitor"),
		func() int64 { w.mu.Lock(); defer w.mu.Unlock(); return int64(len(w.owned)) },
		func() int64 { w.mu.Lock(); defer w.mu.Unlock(); return int64(len(w.keys)) })
	if err != nil {
		return nil, err
	}
	return w, nil
}

// providerReason is the provider's own reason for a failure, where it
// gives one (AWS: disabled, pending deletion, not allowed, ...).
func providerReason(err error) string { return string(awskms.ReasonOf(err)) }

// Ready reports nil once the worker serves: tenants loaded, a first lease
// round done, observations subscribed.
func (w *Worker) Ready() error {
	for _, c := range []struct {
		name string
		ch   <-chan struct{}
	}{{"tenant watch", w.tenantsLoaded}, {"partition leases", w.leasesReady}, {"observation subscription", w.subscribed}} {
		select {
		case <-c.ch:
		default:
			return fmt.Errorf("%s not ready", c.name)
		}
	}
	return nil
}

// Run monitors until ctx ends, then stops probing, lets the probes and
// transitions in progress finish, releases its partitions (so another
// instance takes them over at once) and returns.
func (w *Worker) Run(ctx context.Context) error {
	watcher, err := w.tenantsKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("monitor: watching %s: %w", events.BucketTenants, err)
	}
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); w.watchTenants(ctx, watcher) }()
	defer func() { _ = watcher.Stop(); <-watchDone }()
	select {
	case <-w.tenantsLoaded:
	case <-ctx.Done():
		return nil
	}

	sub, err := w.d.NC.Subscribe(events.SubjectKeyObservedAll, w.onObserved(ctx))
	if err != nil {
		return fmt.Errorf("monitor: subscribing to %s: %w", events.SubjectKeyObservedAll, err)
	}
	_ = sub.SetPendingLimits(65536, 64<<20)
	if err := w.d.NC.FlushTimeout(5 * time.Second); err != nil {
		w.log.Warn("flushing the observation subscription", "error", err)
	}
	close(w.subscribed)

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); w.observationWorker(ctx) }()
	}
	jobs := make(chan *keyState)
	var pool sync.WaitGroup
	for range w.o.Concurrency {
		pool.Add(1)
		go func() {
			defer pool.Done()
			for ks := range jobs {
				w.probeKey(ctx, ks)
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); defer close(jobs); w.dispatch(ctx, jobs) }()
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); w.leaseLoop(ctx) }()
	w.log.Info("key-health-monitor running", "partitions", w.partitions, "lease_ttl", w.leaseTTL.String(),
		"healthy_interval", w.o.HealthyInterval.String(), "unhealthy_interval", w.o.UnhealthyInterval.String(),
		"hysteresis", w.o.Hysteresis, "concurrency", w.o.Concurrency)

	<-ctx.Done()
	_ = sub.Unsubscribe()
	<-leaseDone
	wg.Wait()
	pool.Wait()
	// Release what is held, so the other instances take it over now
	// rather than after the lease TTL.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	w.releaseAll(rctx)
	w.log.Info("key-health-monitor stopped")
	return nil
}

// mono is the time since the worker started, on the monotonic clock.
func (w *Worker) mono() int64 { return int64(time.Since(w.started)) }

func (p *partition) owns(now int64) bool { return p.active.Load() && now < p.validUntil.Load() }

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// watchTenants keeps w.tenants current and adds and drops the keys of
// owned partitions as tenants change.
func (w *Worker) watchTenants(ctx context.Context, watcher jetstream.KeyWatcher) {
	for e := range watcher.Updates() {
		if e == nil {
			w.loadedOnce.Do(func() { close(w.tenantsLoaded) })
			continue
		}
		id := e.Key()
		if events.ValidateTenantID(id) != nil {
			continue
		}
		switch e.Operation() {
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			w.setTenant(ctx, id, nil)
			continue
		}
		var c tenant.Config
		err := json.Unmarshal(e.Value(), &c)
		if err == nil && c.TenantID != id {
			err = fmt.Errorf("tenant_id %q differs from its key", c.TenantID)
		}
		if err == nil {
			err = tenant.Validate(&c, w.validate...)
		}
		if err != nil {
			// Keep the last valid configuration, as tenant.Cache does.
			w.log.Warn("skipping invalid tenant configuration", "tenant_id", id, "revision", e.Revision(), "error", err)
			continue
		}
		c.Revision = e.Revision()
		w.setTenant(ctx, id, &c)
	}
}

// enrolledKeys returns the distinct key URIs of cfg, by key id.
func enrolledKeys(cfg *tenant.Config) map[string]string {
	out := map[string]string{}
	if cfg == nil {
		return out
	}
	for _, k := range cfg.Keys {
		out[keystatus.Key(cfg.TenantID, k.URI)] = k.URI
	}
	return out
}

func (w *Worker) setTenant(ctx context.Context, id string, cfg *tenant.Config) {
	p := keyhealth.Partition(id, w.partitions)
	var removed []*keyState
	w.mu.Lock()
	old := w.tenants[id]
	if cfg == nil {
		delete(w.tenants, id)
		delete(w.byPart[p], id)
	} else {
		w.tenants[id] = cfg
		w.byPart[p][id] = struct{}{}
	}
	if part := w.owned[p]; part != nil {
		want := enrolledKeys(cfg)
		for kid := range enrolledKeys(old) {
			if _, ok := want[kid]; !ok {
				if ks := w.keys[kid]; ks != nil {
					w.dropKey(ks)
					removed = append(removed, ks)
				}
			}
		}
		for kid, uri := range want {
			if w.keys[kid] == nil {
				w.addKey(part, id, uri)
			}
		}
	}
	w.mu.Unlock()
	for _, ks := range removed {
		go w.forget(context.WithoutCancel(ctx), ks)
	}
}

// addKey starts probing a key of an owned partition; its first probe is
// spread over one interval. Called with w.mu held.
func (w *Worker) addKey(part *partition, tenantID, uriStr string) {
	uri, err := kms.ParseKeyURI(uriStr)
	if err != nil {
		w.log.Warn("not probing an unparseable key URI", "tenant_id", tenantID, "error", err)
		return
	}
	ks := &keyState{
		id: keystatus.Key(tenantID, uriStr), tenantID: tenantID, uriStr: uriStr, uri: uri, part: part,
		tracker: keyhealth.NewTracker(w.o.Hysteresis),
	}
	w.keys[ks.id] = ks
	w.queue.Set(ks.id, time.Now().Add(w.schedule.First(events.KeyStatusUnknown, events.KeyStatusUnknown, rand.Float64())))
	w.signal()
}

// dropKey stops probing a key. Called with w.mu held.
func (w *Worker) dropKey(ks *keyState) {
	ks.gone.Store(true)
	delete(w.keys, ks.id)
	w.queue.Remove(ks.id)
}

// forget deletes the KW_KEY_STATUS record of a key removed from its
// tenant: a status nobody probes any more would only go stale (and an
// encryptor never asks for a key that is not enrolled). Re-enrolling the
// key starts from no status.
func (w *Worker) forget(ctx context.Context, ks *keyState) {
	ks.mu.Lock() // after any transition of the key in progress
	defer ks.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, w.o.PublishTimeout)
	defer cancel()
	e, err := w.statusKV.Get(ctx, ks.id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return
	}
	if err == nil {
		err = w.statusKV.Delete(ctx, ks.id, jetstream.LastRevision(e.Revision()))
	}
	if err != nil {
		w.log.Warn("deleting the status of a removed key", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
		return
	}
	w.log.Info("key removed from its tenant: no longer probed, status deleted", "tenant_id", ks.tenantID, "key_uri", ks.uriStr)
}

// dispatch hands due keys to the probe pool, earliest first, until ctx
// ends. The pool's size bounds the probes in flight; a key is never probed
// twice at once.
func (w *Worker) dispatch(ctx context.Context, jobs chan<- *keyState) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Hour
		var ks *keyState
		w.mu.Lock()
		now := time.Now()
		for {
			id, due, ok := w.queue.Peek()
			if !ok {
				break
			}
			if due.After(now) {
				wait = due.Sub(now)
				break
			}
			w.queue.PopDue(now)
			if k := w.keys[id]; k != nil && k.part.active.Load() {
				k.inflight = true
				k.part.busy.Add(1)
				ks = k
				break
			}
		}
		w.mu.Unlock()
		if ks != nil {
			select {
			case jobs <- ks:
				continue
			case <-ctx.Done():
				ks.part.busy.Done()
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		}
	}
}

// probeKey probes one key, applies the result and schedules the next probe.
func (w *Worker) probeKey(ctx context.Context, ks *keyState) {
	defer ks.part.busy.Done()
	defer w.reschedule(ks)
	if ks.gone.Load() {
		return // dropped while it waited for a free slot
	}
	if lim := w.pacer(ks.uri); lim != nil {
		// Never wait for the endpoint's budget while holding a probe
		// slot: keys of other endpoints would wait too. Give the slot
		// back and come back when a token is there.
		res := lim.Reserve()
		if d := res.Delay(); d > 0 {
			res.Cancel()
			ks.paced = d
			return
		}
	}
	ks.mu.Lock()
	if !ks.seeded {
		if err := w.seed(ctx, ks); err != nil {
			ks.mu.Unlock()
			if ctx.Err() == nil {
				w.log.Warn("reading a key's status before probing it", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
			}
			return
		}
	}
	ks.mu.Unlock()
	r := w.probe(ctx, ks)
	ks.probes.Add(1)
	w.metrics.probe(context.WithoutCancel(ctx), kmsProvider(ks.uri), r.Code(), r.Latency)
	if r.Class == keyhealth.ClassInconclusive && ctx.Err() == nil {
		w.log.Warn("probe inconclusive", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "reason", r.Reason)
	}
	w.apply(ctx, ks, r)
}

// probe is the round trip: GenerateDataKey, Decrypt of its ciphertext,
// constant-time comparison; under the tenant's encryption context with
// purpose key-probe, so the tenant's audit log names it.
func (w *Worker) probe(ctx context.Context, ks *keyState) keyhealth.Result {
	ec := kms.NewEncryptionContext(ks.tenantID, kms.PurposeProbe)
	start := time.Now()
	result := func(r keyhealth.Result) keyhealth.Result { r.At = start; return r }
	dk, err := w.d.KMS.GenerateDataKey(ctx, ks.uri, ec)
	if err != nil {
		return result(w.classifier.Probe(err, time.Since(start)))
	}
	defer dk.Destroy()
	back, err := w.d.KMS.Decrypt(ctx, ks.uri, dk.Ciphertext, ec)
	latency := time.Since(start)
	if err != nil {
		return result(w.classifier.Probe(err, latency))
	}
	same := subtle.ConstantTimeCompare(back.Bytes(), dk.Plaintext.Bytes()) == 1
	back.Destroy()
	if !same {
		return result(w.classifier.Mismatch(latency))
	}
	return result(w.classifier.Probe(nil, latency))
}

// reschedule queues a key's next probe after a probe.
func (w *Worker) reschedule(ks *keyState) {
	ks.mu.Lock()
	st, _, _ := ks.tracker.Status()
	candidate, _ := ks.tracker.Candidate()
	ks.mu.Unlock()
	d := w.schedule.Next(st, candidate, rand.Float64())
	if ks.paced > 0 {
		d, ks.paced = ks.paced, 0
	}
	w.mu.Lock()
	ks.inflight = false
	if w.keys[ks.id] == ks {
		if ks.soon {
			d, ks.soon = min(d, w.o.ObservationProbeDelay), false
		}
		w.queue.Set(ks.id, time.Now().Add(d))
	}
	w.mu.Unlock()
	w.signal()
}

// probeEndpointSoon brings the next probe of every other key this
// instance holds on ks's endpoint forward to within ObservationProbeDelay
// (spread over another such delay), at most once per endpoint per
// unhealthy interval, so 10,000 keys announcing one outage do not each
// reschedule all the others.
func (w *Worker) probeEndpointSoon(ks *keyState) {
	endpoint := ks.uri.EndpointID()
	now := time.Now()
	w.mu.Lock()
	if last, ok := w.endpointHints[endpoint]; ok && now.Sub(last) < w.o.UnhealthyInterval {
		w.mu.Unlock()
		return
	}
	w.endpointHints[endpoint] = now
	n := 0
	for _, k := range w.keys {
		if k == ks || k.uri.EndpointID() != endpoint {
			continue
		}
		n++
		if k.inflight {
			k.soon = true
			continue
		}
		w.queue.Advance(k.id, now.Add(w.o.ObservationProbeDelay+time.Duration(rand.Float64()*float64(w.o.ObservationProbeDelay))))
	}
	w.mu.Unlock()
	if n > 0 {
		w.log.Info("an endpoint changed for one key: probing its other keys soon", "endpoint", endpoint, "keys", n)
		w.signal()
	}
}

// probeSoon moves a key's next probe to within ObservationProbeDelay.
func (w *Worker) probeSoon(ks *keyState, delay time.Duration) {
	w.mu.Lock()
	if w.keys[ks.id] == ks {
		if ks.inflight {
			ks.soon = true
		} else {
			w.queue.Advance(ks.id, time.Now().Add(delay))
		}
	}
	w.mu.Unlock()
	w.signal()
}

// pacer returns the probes' rate limiter of the key's endpoint: a share of
// the endpoint's default kms rate limit, two calls a probe, so the probes
// never crowd the kms.Client's own limiter (a refusal there would read as
// throttling). Nil when the scheme has no limit.
func (w *Worker) pacer(u kms.KeyURI) *rate.Limiter {
	if w.o.ProbeRateShare < 0 {
		return nil
	}
	lim, ok := kms.DefaultRateLimits()[u.Scheme]
	if !ok || lim.PerSecond <= 0 {
		return nil
	}
	id := u.EndpointID()
	w.mu.Lock()
	defer w.mu.Unlock()
	if l, ok := w.pacers[id]; ok {
		return l
	}
	perSecond := lim.PerSecond * w.o.ProbeRateShare / 2
	l := rate.NewLimiter(rate.Limit(perSecond), max(1, int(float64(lim.Burst)*w.o.ProbeRateShare/2)))
	w.pacers[id] = l
	return l
}

// seed sets a key's tracker from its KW_KEY_STATUS record, so a restarted
// or new owner neither re-announces nor forgets its status. Called with
// ks.mu held.
func (w *Worker) seed(ctx context.Context, ks *keyState) error {
	ctx, cancel := context.WithTimeout(ctx, w.o.PublishTimeout)
	defer cancel()
	e, err := w.statusKV.Get(ctx, ks.id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return err
	default:
		rec, perr := keystatus.Parse(e.Value())
		if perr != nil || rec.TenantID != ks.tenantID || rec.KeyURI != ks.uriStr {
			w.log.Warn("ignoring a malformed key status record; the next transition replaces it", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", perr)
			break
		}
		ks.tracker.Seed(rec.Status, rec.Reason, rec.Since)
	}
	ks.seeded = true
	return nil
}

// apply counts one result of a key and, when it completes a transition,
// publishes the transition: the event to KW_KEYS first, then the record
// in KW_KEY_STATUS. It reports whether the result disagreed with the
// key's status (news worth a probe soon).
//
// Why the event first: the event is what the notifier and the
// re-encryptor act on, the record is what a restarted monitor seeds from.
// If the monitor dies between the two, the record still holds the old
// status, so the next owner re-decides the transition and publishes it
// again (a duplicate announcement, deduplicated by Nats-Msg-Id when it
// has the same Since); in the other order a death between the two would
// lose the announcement for ever, since the seeded status would already
// be the new one. A failed publish leaves the tracker uncommitted, so the
// next agreeing result publishes again with the same Nats-Msg-Id; a failed
// record write is retried before the key's next result is counted.
func (w *Worker) apply(ctx context.Context, ks *keyState, r keyhealth.Result) (news bool) {
	var endpointChanged bool // runs after ks.mu is released (deferred first)
	defer func() {
		if endpointChanged {
			w.probeEndpointSoon(ks)
		}
	}()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.gone.Load() {
		return false
	}
	if !ks.seeded {
		if err := w.seed(ctx, ks); err != nil {
			w.log.Warn("reading a key's status", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
			return false
		}
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.PublishTimeout)
	defer cancel()
	if ks.kvPending != nil {
		if err := keystatus.Put(pctx, w.statusKV, *ks.kvPending); err != nil {
			w.log.Warn("storing a key's status, again", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
		} else {
			ks.kvPending = nil
		}
	}
	ks.last = r
	st, _, _ := ks.tracker.Status()
	news = r.Class != keyhealth.ClassInconclusive && r.Status() != st
	tr, ok := ks.tracker.Observe(r)
	if !ok {
		return news
	}
	if !ks.part.owns(w.mono()) {
		// The lease lapsed while the key was being probed: its next owner
		// decides.
		return news
	}
	ev := &events.KeyStatusChanged{
		TenantID: ks.tenantID, KeyURI: ks.uriStr, Status: tr.To, Previous: tr.From,
		Reason: tr.Reason, Since: tr.Since.UTC(), LatencyMS: float64(tr.Latency.Microseconds()) / 1000, Source: tr.Source,
	}
	if err := ev.Validate(); err != nil {
		w.log.Error("not publishing an invalid key status change", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
		return news
	}
	if _, err := w.publisher.Publish(pctx, events.Outgoing{
		Subject: events.SubjectKeyStatus(ks.tenantID),
		MsgID:   StatusMsgID(ks.tenantID, ks.uriStr, tr.Since),
		Type:    events.TypeKeyStatusChanged,
		Event:   ev,
	}); err != nil {
		w.metrics.publishFailed(pctx, "event")
		w.log.Warn("publishing a key status change failed; retried on the key's next result", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "status", tr.To, "error", err)
		return news
	}
	ks.tracker.Commit(tr)
	rec := keystatus.Record{TenantID: ks.tenantID, KeyURI: ks.uriStr, Status: tr.To, Previous: tr.From, Reason: tr.Reason, Since: tr.Since.UTC()}
	if err := keystatus.Put(pctx, w.statusKV, rec); err != nil {
		ks.kvPending = &rec
		w.metrics.publishFailed(pctx, "kv")
		w.log.Warn("storing a key's status failed; retried", "tenant_id", ks.tenantID, "key_uri", ks.uriStr, "error", err)
	}
	// The endpoint went dark or came back for this key: likely for every
	// key behind it, so probe them soon rather than at their own pace
	// (each still needs its own agreeing results).
	endpointChanged = tr.To == events.KeyStatusUnavailable || (tr.From == events.KeyStatusUnavailable && tr.To.Usable())
	w.metrics.transition(pctx, string(tr.From), string(tr.To), tr.Source)
	w.log.Info("key status changed", "tenant_id", ks.tenantID, "key_uri", ks.uriStr,
		"status", tr.To, "previous", tr.From, "reason", tr.Reason, "source", tr.Source, "since", tr.Since.UTC())
	return news
}

// StatusMsgID is the Nats-Msg-Id of a KeyStatusChanged event:
// status.<tenant>.<key hash>.<since, Unix ns> (schemas/key_status_changed.schema.json).
func StatusMsgID(tenantID, keyURI string, since time.Time) string {
	return "status." + keystatus.Key(tenantID, keyURI) + "." + strconv.FormatInt(since.UnixNano(), 10)
}

func kmsProvider(u kms.KeyURI) string {
	switch u.Scheme {
	case kms.SchemeAWS, kms.SchemeOCI, kms.SchemeAzure, kms.SchemeLocal:
		return u.Scheme
	}
	return "unknown"
}

// KeyState is what an instance knows of a key it probes.
type KeyState struct {
	TenantID string
	KeyURI   string
	// Status is the committed status (KeyStatusUnknown before the first),
	// with its reason and since when.
	Status events.KeyStatus
	Reason string
	Since  time.Time
	// Candidate is the status the latest results argue for, Streak how
	// many agreed in a row (Hysteresis of them make a transition).
	Candidate events.KeyStatus
	Streak    int
	Partition int
	// Probes made of the key by this instance since it took the key's
	// partition.
	Probes int64
	// Last is the latest result counted (probe or observation).
	Last keyhealth.Result
	// NextProbe is when the key is due; zero while a probe is in flight.
	NextProbe time.Time
}

// Status returns what this instance knows of a tenant's key, and false if
// it does not probe it (not enrolled, or another instance's partition).
func (w *Worker) Status(tenantID, keyURI string) (KeyState, bool) {
	w.mu.Lock()
	ks := w.lookup(tenantID, keyURI)
	var due time.Time
	if ks != nil {
		due, _ = w.queue.Due(ks.id)
	}
	w.mu.Unlock()
	if ks == nil {
		return KeyState{}, false
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st, reason, since := ks.tracker.Status()
	cand, streak := ks.tracker.Candidate()
	return KeyState{
		TenantID: ks.tenantID, KeyURI: ks.uriStr, Status: st, Reason: reason, Since: since,
		Candidate: cand, Streak: streak, Partition: ks.part.n, Probes: ks.probes.Load(), Last: ks.last, NextProbe: due,
	}, true
}

// lookup finds a key by the URI as enrolled or in canonical form. Called
// with w.mu held.
func (w *Worker) lookup(tenantID, keyURI string) *keyState {
	if ks := w.keys[keystatus.Key(tenantID, keyURI)]; ks != nil {
		return ks
	}
	if u, err := kms.ParseKeyURI(keyURI); err == nil {
		return w.keys[keystatus.Key(tenantID, u.String())]
	}
	return nil
}

// ProbeNow makes a key due at once (ops tooling, keyward dev, tests). It
// reports whether this instance probes the key.
func (w *Worker) ProbeNow(tenantID, keyURI string) bool {
	w.mu.Lock()
	ks := w.lookup(tenantID, keyURI)
	w.mu.Unlock()
	if ks == nil {
		return false
	}
	w.probeSoon(ks, 0)
	return true
}

// Partitions returns the partitions this instance holds, ascending.
func (w *Worker) Partitions() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, 0, len(w.owned))
	for p := range w.owned {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// PartitionCount is the number of partitions the instances share.
func (w *Worker) PartitionCount() int { return w.partitions }

// InstanceID names this instance in the lease bucket.
func (w *Worker) InstanceID() string { return w.o.InstanceID }

// Stats counts what the instance did since New.
type Stats struct {
	Probes        int64            // probes made (every outcome)
	Transitions   int64            // transitions published
	Observations  map[string]int64 // KeyObserved reports by result (Obs* constants)
	DeadLetters   int64            // invalid reports dead-lettered
	PublishFails  int64            // failed event or record writes
	Keys          int              // keys probed now
	Partitions    int              // partitions held now
	LiveInstances int              // instances seen at the last lease round
}

// Stats returns the instance's counters.
func (w *Worker) Stats() Stats {
	s := Stats{
		Probes: w.metrics.probeCount.Load(), Transitions: w.metrics.transCount.Load(),
		DeadLetters: w.metrics.dlqSent.Load(), PublishFails: w.metrics.publishFails.Load(),
		Observations: map[string]int64{},
	}
	w.metrics.obsCounts.Range(func(k, v any) bool {
		s.Observations[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	w.mu.Lock()
	s.Keys, s.Partitions, s.LiveInstances = len(w.keys), len(w.owned), w.live
	w.mu.Unlock()
	return s
}
