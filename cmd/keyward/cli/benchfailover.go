package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

// The failover scenarios measure what happens to live traffic when a
// customer's KMS endpoint fails or a key is revoked: `keyward bench
// failover` and the BenchmarkFailover* benchmarks of this package run them
// against an in-process keyward dev, with the AWS KMS emulator as the
// customers' endpoint. docs/benchmarks.md ("Key health and failover") has
// the figures.
//
// Traffic: Tenants tenants, each with its own key on the one AWS emulator
// endpoint (so they share one circuit breaker), fallback on; inline assets
// published at a steady Rate round the tenants, each timed from its
// publication until its AssetEncrypted or AssetRejected is delivered from
// KW_ASSETS (the decision latency). KeyStatusChanged and
// BreakerStateChanged events are recorded as they arrive.

// FailoverOptions tune the failover scenarios. Zero fields take each
// scenario's defaults.
type FailoverOptions struct {
	// Tenants on the AWS emulator's endpoint, each with its own key.
	Tenants int
	// Rate is the assets per second published over all tenants, round robin.
	Rate float64
	// Size is the bytes of each inline asset (1024).
	Size int
	// Healthy is how long the traffic runs before the fault (5 s).
	Healthy time.Duration
	// Hang is how long the endpoint hangs in FailoverHang (10 s).
	Hang time.Duration
	// StepTimeout bounds each wait for a detection or a recovery in
	// FailoverDetect and FailoverRevoke (3 min).
	StepTimeout time.Duration
}

func (o FailoverOptions) withDefaults(tenants int, rate float64) FailoverOptions {
	if o.Tenants <= 0 {
		o.Tenants = tenants
	}
	if o.Rate <= 0 {
		o.Rate = rate
	}
	if o.Size <= 0 {
		o.Size = 1024
	}
	if o.Healthy <= 0 {
		o.Healthy = 5 * time.Second
	}
	if o.Hang <= 0 {
		o.Hang = 10 * time.Second
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 3 * time.Minute
	}
	return o
}

// FailoverShortKeyHealth is the key-health-monitor of the "short settings"
// runs: probes every 1 s while healthy and every 200 ms otherwise, a
// probe 50 ms after an observation that is news; hysteresis stays 3.
func FailoverShortKeyHealth() monitor.Options {
	return monitor.Options{HealthyInterval: time.Second, UnhealthyInterval: 200 * time.Millisecond, ObservationProbeDelay: 50 * time.Millisecond}
}

// FailoverShortBreaker is the breaker of the "short settings" runs: the
// defaults with a 1 s open timeout instead of 30 s.
func FailoverShortBreaker() breaker.Settings { return breaker.Settings{OpenTimeout: time.Second} }

// FailoverLatency summarises decision latencies (publish → outcome).
type FailoverLatency struct {
	N             int
	P50, P99, Max time.Duration
}

func failoverLatency(ds []time.Duration) FailoverLatency {
	if len(ds) == 0 {
		return FailoverLatency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[max(0, int(math.Ceil(f*float64(len(s))))-1)] }
	return FailoverLatency{N: len(s), P50: q(0.5), P99: q(0.99), Max: s[len(s)-1]}
}

func (l FailoverLatency) String() string {
	if l.N == 0 {
		return "no assets"
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s (%d assets)", fmtMS(l.P50), fmtMS(l.P99), fmtMS(l.Max), l.N)
}

func fmtMS(d time.Duration) string {
	v := ms(d)
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 3, 64) + " ms"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// FailoverSlow is the latency from which an asset counts as having waited
// for the KMS: 40 % of the per-call timeout, far above a healthy decision.
const FailoverSlow = 200 * time.Millisecond

// failoverAsset is one asset of the traffic.
type failoverAsset struct {
	tenant, id     string
	published      time.Time
	decided        time.Time // zero until its outcome arrives
	mode           events.Mode
	reason         events.Reason // of a rejection
	keyURI         string
	latency        time.Duration
	done, rejected bool // outcome arrived; it was a rejection
}

// failoverEvent is a KeyStatusChanged or BreakerStateChanged as received.
type failoverEvent struct {
	at       time.Time // received; for a breaker change, when it changed
	tenant   string    // key status
	keyURI   string
	status   events.KeyStatus
	provider string // breaker
	to       string
}

// failoverTraffic publishes the assets, records their outcomes and the
// key-health and breaker events, and samples the encryptor's KMS counters.
type failoverTraffic struct {
	d       *Dev
	nc      *nats.Conn
	js      jetstream.JetStream
	run     string
	payload []byte

	mu      sync.Mutex
	byID    map[string]*failoverAsset // "<tenant>/<asset>"
	all     []*failoverAsset
	events  []failoverEvent
	samples []failoverSample
	pubErr  error
	seq     int

	consume jetstream.ConsumeContext
	subs    []*nats.Subscription
	stop    chan struct{}
	wg      sync.WaitGroup
}

// failoverSample is the encryptor's KMS counters at one moment.
type failoverSample struct {
	at time.Time
	// timeouts: calls that reached the endpoint and got no answer in time
	// (endpoint_unreachable failures less the breaker's refusals).
	timeouts int64
}

func startFailoverTraffic(ctx context.Context, d *Dev, size int) (*failoverTraffic, error) {
	nc, err := nats.Connect(d.URL(), nats.Name("keyward-bench-failover"))
	if err != nil {
		return nil, err
	}
	t := &failoverTraffic{d: d, nc: nc, run: "fo" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36),
		payload: make([]byte, size), byID: map[string]*failoverAsset{}, stop: make(chan struct{})}
	rand.Read(t.payload)
	ok := false
	defer func() {
		if !ok {
			t.close()
		}
	}()
	if t.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<14)); err != nil {
		return nil, err
	}
	cons, err := t.js.OrderedConsumer(ctx, events.StreamAssets, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectAssetEncryptedAll, events.SubjectAssetRejectedAll},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, err
	}
	if t.consume, err = cons.Consume(t.onOutcome); err != nil {
		return nil, err
	}
	sub, err := nc.Subscribe(events.SubjectKeyStatusAll, func(m *nats.Msg) {
		now := time.Now()
		e, err := events.DecodeKeyStatusChanged(m.Data)
		if err != nil {
			return
		}
		t.mu.Lock()
		t.events = append(t.events, failoverEvent{at: now, tenant: e.TenantID, keyURI: e.KeyURI, status: e.Status})
		t.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	t.subs = append(t.subs, sub)
	sub, err = nc.Subscribe(events.SubjectBreakerAll, func(m *nats.Msg) {
		e, err := events.DecodeBreakerStateChanged(m.Data)
		if err != nil {
			return
		}
		t.mu.Lock()
		t.events = append(t.events, failoverEvent{at: e.At, provider: e.Provider, to: e.To})
		t.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	t.subs = append(t.subs, sub)
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	t.wg.Add(1)
	go t.sample()
	ok = true
	return t, nil
}

func (t *failoverTraffic) onOutcome(m jetstream.Msg) {
	now := time.Now()
	var tenantID, assetID, keyURI string
	var mode events.Mode
	var reason events.Reason
	rejected := m.Headers().Get(events.HeaderCEType) == events.TypeAssetRejected
	if rejected {
		e, err := events.DecodeAssetRejected(m.Data())
		if err != nil {
			return
		}
		tenantID, assetID, reason = e.TenantID, e.AssetID, e.Reason
	} else {
		e, err := events.DecodeAssetEncrypted(m.Data())
		if err != nil {
			return
		}
		tenantID, assetID, mode, keyURI = e.TenantID, e.AssetID, e.Mode, e.KeyURI
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.byID[tenantID+"/"+assetID]
	if a == nil || a.done {
		return
	}
	a.decided, a.done, a.rejected, a.mode, a.reason, a.keyURI = now, true, rejected, mode, reason, keyURI
	a.latency = now.Sub(a.published)
}

// sample records the encryptor's KMS counters every 10 ms.
func (t *failoverTraffic) sample() {
	defer t.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := t.d.KMS.Stats()
		s := failoverSample{at: time.Now(), timeouts: st.Failures[kms.CodeEndpointUnreachable] - st.CircuitOpen}
		t.mu.Lock()
		t.samples = append(t.samples, s)
		t.mu.Unlock()
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
	}
}

// publish sends one asset of tenantID now.
func (t *failoverTraffic) publish(ctx context.Context, tenantID string) error {
	t.mu.Lock()
	t.seq++
	id := fmt.Sprintf("%s-%d", t.run, t.seq)
	t.mu.Unlock()
	m, err := benchAsset(ctx, tenantID, id, t.payload)
	if err != nil {
		return err
	}
	a := &failoverAsset{tenant: tenantID, id: id, published: time.Now()}
	t.mu.Lock()
	t.byID[tenantID+"/"+id] = a
	t.all = append(t.all, a)
	t.mu.Unlock()
	_, err = t.js.PublishMsgAsync(m)
	return err
}

// start publishes rate assets per second round the tenants until halted.
func (t *failoverTraffic) start(ctx context.Context, tenants []string, rate float64) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-t.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := t.publish(ctx, tenants[i%len(tenants)]); err != nil {
				t.mu.Lock()
				t.pubErr = err
				t.mu.Unlock()
				return
			}
		}
	}()
}

// drain waits (up to timeout) until every published asset has its outcome.
func (t *failoverTraffic) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		pending := 0
		for _, a := range t.all {
			if !a.done {
				pending++
			}
		}
		err := t.pubErr
		t.mu.Unlock()
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		if pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d assets without an outcome after %v", pending, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// halt stops publishing and sampling (the outcomes are still recorded).
func (t *failoverTraffic) halt() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	t.wg.Wait()
}

func (t *failoverTraffic) close() {
	t.halt()
	if t.consume != nil {
		t.consume.Stop()
	}
	for _, s := range t.subs {
		_ = s.Unsubscribe()
	}
	t.nc.Close()
}

// snapshot returns copies of the assets and events recorded so far.
func (t *failoverTraffic) snapshot() ([]failoverAsset, []failoverEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]failoverAsset, len(t.all))
	for i, a := range t.all {
		out[i] = *a
	}
	return out, slices.Clone(t.events)
}

// timeoutsAt returns the KMS timeouts counted by the first sample at or
// after at (the last sample if none).
func (t *failoverTraffic) timeoutsAt(at time.Time) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.samples {
		if !s.at.Before(at) {
			return s.timeouts
		}
	}
	if len(t.samples) == 0 {
		return 0
	}
	return t.samples[len(t.samples)-1].timeouts
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// failoverTenant is a tenant of the scenarios.
type failoverTenant struct {
	id  string
	key kms.KeyURI
}

// createFailoverTenants enrolls n tenants, each with a new key on the AWS
// emulator, every service and user covered, fallback on (changed by
// mutate), and waits until each has had an asset encrypted under its key
// (the encryptor's tenant cache has them).
func createFailoverTenants(ctx context.Context, d *Dev, t *failoverTraffic, n int, mutate func(*tenant.Config)) ([]failoverTenant, error) {
	store, err := tenant.OpenStore(ctx, d.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		return nil, err
	}
	out := make([]failoverTenant, n)
	for i := range out {
		key, err := d.AWS.CreateKey(ctx)
		if err != nil {
			return nil, err
		}
		id := fmt.Sprintf("%s-%03d", t.run, i)
		cfg := &tenant.Config{
			TenantID:      id,
			DisplayName:   "keyward bench failover",
			Keys:          []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC().Add(-time.Minute)}},
			Services:      []string{tenant.All},
			LicensedUsers: []string{tenant.All},
			Recipients:    []string{"security@" + id + ".example"},
			Fallback:      true,
		}
		if mutate != nil {
			mutate(cfg)
		}
		if _, err := store.Create(ctx, cfg); err != nil {
			return nil, err
		}
		out[i] = failoverTenant{id: id, key: key}
	}
	// Until each tenant's asset is encrypted under its own key: before the
	// encryptor's cache has a tenant, its assets are not covered (platform).
	pending := map[string]bool{}
	for _, ft := range out {
		pending[ft.id] = true
	}
	deadline := time.Now().Add(time.Minute)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d tenants never had an asset encrypted under their key", len(pending), n)
		}
		t.mu.Lock()
		from := len(t.all)
		t.mu.Unlock()
		for id := range pending {
			if err := t.publish(ctx, id); err != nil {
				return nil, err
			}
		}
		if err := t.drain(30 * time.Second); err != nil {
			return nil, err
		}
		t.mu.Lock()
		for _, a := range t.all[from:] {
			if a.mode == events.ModeCustomer {
				delete(pending, a.tenant)
			}
		}
		t.mu.Unlock()
		if len(pending) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out, nil
}

func tenantIDs(ts []failoverTenant) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.id
	}
	return out
}

// FailoverHangResult is what FailoverHang measured. Durations named after
// an event are from the start of the hang to it; zero when it did not
// happen during the hang.
type FailoverHangResult struct {
	Tenants int
	Rate    float64
	// Healthy: assets decided before the hang began (after a 1 s warm-up).
	Healthy FailoverLatency
	// Hang: every asset published while the endpoint hung, or in flight
	// when it began.
	Hang FailoverLatency
	// BeforeOpen: published after the hang began, before the endpoint's
	// breaker opened (every asset of the hang without a breaker).
	BeforeOpen FailoverLatency
	// AfterOpen: published after the breaker opened.
	AfterOpen FailoverLatency
	// AfterStatus: published after the monitor announced their tenant's
	// key unavailable.
	AfterStatus FailoverLatency
	// OtherHealthy, OtherHang: the assets of a tenant whose key is on
	// another endpoint (the local-key tenant "demo", at BystanderRate),
	// before and during the hang.
	OtherHealthy, OtherHang FailoverLatency
	BystanderRate           float64
	// BreakerOpen: the endpoint's breaker opened (BreakerStateChanged.at).
	BreakerOpen time.Duration
	// FirstFallback: the first fallback-mode AssetEncrypted arrived.
	FirstFallback time.Duration
	// FirstUnavailable, AllUnavailable: the first and the last tenant's
	// KeyStatusChanged unavailable arrived (AllUnavailable zero unless
	// every tenant's did); KeysUnavailable how many did.
	FirstUnavailable, AllUnavailable time.Duration
	KeysUnavailable                  int
	// Outcomes of the assets of the hang.
	Customer, Fallback, Rejected int
	// Slow: assets of the hang that took FailoverSlow or more (they waited
	// for the hanging KMS); SlowAfterOpen those published after the breaker
	// opened; LastSlow when the last slow one was published.
	Slow, SlowAfterOpen int
	LastSlow            time.Duration
	// TimeoutsAfterOpen: encryptor KMS calls that timed out having started
	// after the breaker opened (a call is refused while it is open, so 0
	// unless it half-opened onto the dead endpoint).
	TimeoutsAfterOpen int64
}

// FailoverHang runs traffic against d for o.Healthy, makes the AWS
// emulator hang every request for o.Hang, clears the fault and reports the
// decision latencies of each phase. Defaults: 20 tenants, 40 assets/s;
// besides, the local-key tenant DemoTenant sends 10 assets/s throughout,
// to show what the hang costs tenants on other endpoints.
func FailoverHang(ctx context.Context, d *Dev, o FailoverOptions) (*FailoverHangResult, error) {
	o = o.withDefaults(20, 40)
	t, err := startFailoverTraffic(ctx, d, o.Size)
	if err != nil {
		return nil, err
	}
	defer t.close()
	ts, err := createFailoverTenants(ctx, d, t, o.Tenants, nil)
	if err != nil {
		return nil, err
	}
	faults := d.AWS.Server.Faults
	defer faults.Set(kmstest.FaultNone)
	const bystanderRate = 10
	begin := time.Now()
	t.start(ctx, tenantIDs(ts), o.Rate)
	t.start(ctx, []string{DemoTenant}, bystanderRate)
	sleepCtx(ctx, o.Healthy)
	t0 := time.Now()
	faults.Set(kmstest.FaultHang)
	sleepCtx(ctx, o.Hang)
	t1 := time.Now()
	faults.Set(kmstest.FaultNone)
	t.halt()
	if err := t.drain(time.Minute); err != nil {
		return nil, err
	}
	assets, evs := t.snapshot()

	r := &FailoverHangResult{Tenants: o.Tenants, Rate: o.Rate, BystanderRate: bystanderRate}
	var openAt time.Time
	for _, e := range evs {
		if e.provider == kms.SchemeAWS && e.to == string(breaker.Open) && !e.at.Before(t0) && e.at.Before(t1) && openAt.IsZero() {
			openAt = e.at
		}
	}
	if !openAt.IsZero() {
		r.BreakerOpen = openAt.Sub(t0)
	}
	unavailable := keyStatusTimes(evs, ts, events.KeyStatusUnavailable, t0, t1)
	r.KeysUnavailable = len(unavailable)
	first, last := spread(unavailable)
	r.FirstUnavailable = sinceOrZero(first, t0)
	if len(unavailable) == len(ts) {
		r.AllUnavailable = sinceOrZero(last, t0)
	}
	var healthy, hang, before, after, afterStatus, otherHealthy, otherHang []time.Duration
	var firstFallback time.Time
	for _, a := range assets {
		if a.tenant == DemoTenant {
			switch {
			case a.published.Before(begin.Add(time.Second)):
			case a.decided.Before(t0):
				otherHealthy = append(otherHealthy, a.latency)
			case a.published.Before(t1):
				otherHang = append(otherHang, a.latency)
			}
			continue
		}
		if a.mode == events.ModeFallback && !a.decided.Before(t0) && (firstFallback.IsZero() || a.decided.Before(firstFallback)) {
			firstFallback = a.decided
		}
		switch {
		case a.published.Before(begin.Add(time.Second)):
			// set-up and warm-up
		case a.decided.Before(t0):
			healthy = append(healthy, a.latency)
		case a.published.Before(t1):
			// Published during the hang, or in flight when it began.
			hang = append(hang, a.latency)
			switch {
			case a.rejected:
				r.Rejected++
			case a.mode == events.ModeFallback:
				r.Fallback++
			case a.mode == events.ModeCustomer:
				r.Customer++
			}
			opened := !openAt.IsZero() && !a.published.Before(openAt)
			if opened {
				after = append(after, a.latency)
			} else {
				before = append(before, a.latency)
			}
			if at, ok := unavailable[a.tenant]; ok && a.published.After(at) {
				afterStatus = append(afterStatus, a.latency)
			}
			if a.latency >= FailoverSlow {
				r.Slow++
				if opened {
					r.SlowAfterOpen++
				}
				r.LastSlow = max(r.LastSlow, a.published.Sub(t0))
			}
		}
	}
	r.Healthy, r.Hang, r.BeforeOpen, r.AfterOpen, r.AfterStatus =
		failoverLatency(healthy), failoverLatency(hang), failoverLatency(before), failoverLatency(after), failoverLatency(afterStatus)
	r.OtherHealthy, r.OtherHang = failoverLatency(otherHealthy), failoverLatency(otherHang)
	r.FirstFallback = sinceOrZero(firstFallback, t0)
	if !openAt.IsZero() {
		// Calls in flight when it opened end within a call timeout.
		r.TimeoutsAfterOpen = t.timeoutsAt(t1) - t.timeoutsAt(openAt.Add(kms.DefaultCallTimeout+100*time.Millisecond))
	}
	return r, nil
}

// keyStatusTimes returns, per tenant of ts, when the first KeyStatusChanged
// to status for its key arrived in [from, to) (to zero: no end).
func keyStatusTimes(evs []failoverEvent, ts []failoverTenant, status events.KeyStatus, from, to time.Time) map[string]time.Time {
	keys := map[string]string{}
	for _, t := range ts {
		keys[t.id] = t.key.String()
	}
	out := map[string]time.Time{}
	for _, e := range evs {
		if e.status != status || keys[e.tenant] == "" || keys[e.tenant] != e.keyURI || e.at.Before(from) || (!to.IsZero() && !e.at.Before(to)) {
			continue
		}
		if _, ok := out[e.tenant]; !ok {
			out[e.tenant] = e.at
		}
	}
	return out
}

func spread(m map[string]time.Time) (first, last time.Time) {
	for _, at := range m {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return first, last
}

func sinceOrZero(at, from time.Time) time.Duration {
	if at.IsZero() {
		return 0
	}
	return at.Sub(from)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// FailoverDetectResult is what FailoverDetect measured. The outage
// figures are from the fault being set, the recovery figures from it
// being cleared; zero: did not happen within the step timeout.
type FailoverDetectResult struct {
	Tenants int
	Rate    float64
	// Outage.
	BreakerOpen, FirstFallback       time.Duration
	FirstUnavailable, AllUnavailable time.Duration
	// Outage lasted this long (until every tenant's key was announced
	// unavailable, plus a second).
	Outage time.Duration
	// Recovery.
	BreakerHalfOpen, BreakerClosed time.Duration
	FirstAvailable, AllAvailable   time.Duration
	// FirstCustomer, AllCustomer: the first customer-mode AssetEncrypted of
	// an asset published after the fault was cleared, of any tenant and of
	// the last tenant to get one.
	FirstCustomer, AllCustomer time.Duration
	// Outcomes of the assets published during the outage.
	Customer, Fallback, Rejected int
}

// FailoverDetect runs traffic against d, makes the AWS emulator fail with
// fault until every tenant's key has been announced unavailable (at most
// o.StepTimeout), clears it, and waits until every tenant's assets are
// encrypted under its key again, the breaker is closed and every key is
// announced available (at most o.StepTimeout). Defaults: 20 tenants, 40
// assets/s, 3 s of healthy traffic.
func FailoverDetect(ctx context.Context, d *Dev, o FailoverOptions, fault kmstest.Fault) (*FailoverDetectResult, error) {
	if o.Healthy <= 0 {
		o.Healthy = 3 * time.Second
	}
	o = o.withDefaults(20, 40)
	t, err := startFailoverTraffic(ctx, d, o.Size)
	if err != nil {
		return nil, err
	}
	defer t.close()
	ts, err := createFailoverTenants(ctx, d, t, o.Tenants, nil)
	if err != nil {
		return nil, err
	}
	faults := d.AWS.Server.Faults
	defer faults.Set(kmstest.FaultNone)
	t.start(ctx, tenantIDs(ts), o.Rate)
	sleepCtx(ctx, o.Healthy)
	t0 := time.Now()
	faults.Set(fault)
	waitFor(ctx, o.StepTimeout, func() bool {
		_, evs := t.snapshot()
		return len(keyStatusTimes(evs, ts, events.KeyStatusUnavailable, t0, time.Time{})) == len(ts)
	})
	sleepCtx(ctx, time.Second)
	t1 := time.Now()
	faults.Set(kmstest.FaultNone)
	recovered := func() bool {
		assets, evs := t.snapshot()
		if len(keyStatusTimes(evs, ts, events.KeyStatusAvailable, t1, time.Time{})) < len(ts) {
			return false
		}
		if d.Breakers != nil && breakerAt(evs, breaker.Closed, t1).IsZero() {
			return false
		}
		return len(customerAgain(assets, t1)) == len(ts)
	}
	waitFor(ctx, o.StepTimeout, recovered)
	sleepCtx(ctx, 500*time.Millisecond)
	t.halt()
	if err := t.drain(time.Minute); err != nil {
		return nil, err
	}
	assets, evs := t.snapshot()
	r := &FailoverDetectResult{Tenants: o.Tenants, Rate: o.Rate, Outage: t1.Sub(t0)}
	r.BreakerOpen = sinceOrZero(breakerAt(evs, breaker.Open, t0), t0)
	r.BreakerHalfOpen = sinceOrZero(breakerAt(evs, breaker.HalfOpen, t1), t1)
	r.BreakerClosed = sinceOrZero(breakerAt(evs, breaker.Closed, t1), t1)
	down := keyStatusTimes(evs, ts, events.KeyStatusUnavailable, t0, t1)
	first, last := spread(down)
	r.FirstUnavailable = sinceOrZero(first, t0)
	if len(down) == len(ts) {
		r.AllUnavailable = last.Sub(t0)
	}
	up := keyStatusTimes(evs, ts, events.KeyStatusAvailable, t1, time.Time{})
	first, last = spread(up)
	r.FirstAvailable = sinceOrZero(first, t1)
	if len(up) == len(ts) {
		r.AllAvailable = last.Sub(t1)
	}
	back := customerAgain(assets, t1)
	first, last = spread(back)
	r.FirstCustomer = sinceOrZero(first, t1)
	if len(back) == len(ts) {
		r.AllCustomer = last.Sub(t1)
	}
	var firstFallback time.Time
	for _, a := range assets {
		if a.mode == events.ModeFallback && !a.decided.Before(t0) && (firstFallback.IsZero() || a.decided.Before(firstFallback)) {
			firstFallback = a.decided
		}
		if a.published.Before(t0) || !a.published.Before(t1) {
			continue
		}
		switch {
		case a.rejected:
			r.Rejected++
		case a.mode == events.ModeFallback:
			r.Fallback++
		case a.mode == events.ModeCustomer:
			r.Customer++
		}
	}
	r.FirstFallback = sinceOrZero(firstFallback, t0)
	return r, nil
}

// breakerAt returns when the AWS endpoint's breaker first changed to st at
// or after from (zero: it did not).
func breakerAt(evs []failoverEvent, st breaker.State, from time.Time) time.Time {
	var at time.Time
	for _, e := range evs {
		if e.provider == kms.SchemeAWS && e.to == string(st) && !e.at.Before(from) && (at.IsZero() || e.at.Before(at)) {
			at = e.at
		}
	}
	return at
}

// customerAgain returns, per tenant, when the first customer-mode outcome
// of an asset published after from arrived.
func customerAgain(assets []failoverAsset, from time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, a := range assets {
		if a.mode != events.ModeCustomer || a.published.Before(from) {
			continue
		}
		if at, ok := out[a.tenant]; !ok || a.decided.Before(at) {
			out[a.tenant] = a.decided
		}
	}
	return out
}

// FailoverRevokeResult is what FailoverRevoke measured: durations from the
// key being disabled (zero: did not happen within the step timeout).
type FailoverRevokeResult struct {
	Tenants int
	Rate    float64
	// FirstKMSUse: the first request with the disabled key that reached the
	// emulator (with the seed cache on and the traffic served from cached
	// seeds, the monitor's probe: when the monitor first saw it).
	FirstKMSUse time.Duration
	// StatusRevoked: the KeyStatusChanged revoked of the key arrived.
	StatusRevoked time.Duration
	// FirstRejected: the first AssetRejected customer_key_revoked of the
	// tenant arrived.
	FirstRejected time.Duration
	// StatusToRejected: from the KeyStatusChanged to the first rejection
	// (negative: live traffic rejected before the monitor announced it).
	StatusToRejected time.Duration
	// EncryptedAfterDisable: assets of the tenant published after the key
	// was disabled and still encrypted under it; EncryptedAfterStatus those
	// decided after the KeyStatusChanged arrived; LastEncrypted when the
	// last one's outcome arrived.
	EncryptedAfterDisable, EncryptedAfterStatus int
	LastEncrypted                               time.Duration
	// VictimAssets: the tenant's assets published after the disable.
	VictimAssets int
	// Others: assets of the other tenants (same endpoint) published after
	// the disable; OthersNotCustomer those not encrypted under their key.
	Others, OthersNotCustomer int
}

// FailoverRevoke runs traffic against d for o.Healthy, disables the first
// tenant's key in the AWS emulator (as the customer would) and waits until
// its KeyStatusChanged revoked and its first AssetRejected
// customer_key_revoked have both arrived (at most o.StepTimeout), then 2 s
// more. The tenant has fallback on (fallback_on outage, the default), so a
// revocation must reject. Defaults: 4 tenants, 40 assets/s.
func FailoverRevoke(ctx context.Context, d *Dev, o FailoverOptions) (*FailoverRevokeResult, error) {
	o = o.withDefaults(4, 40)
	t, err := startFailoverTraffic(ctx, d, o.Size)
	if err != nil {
		return nil, err
	}
	defer t.close()
	ts, err := createFailoverTenants(ctx, d, t, o.Tenants, nil)
	if err != nil {
		return nil, err
	}
	victim := ts[0]
	defer d.AWS.EnableKey(context.WithoutCancel(ctx), victim.key)
	t.start(ctx, tenantIDs(ts), o.Rate)
	sleepCtx(ctx, o.Healthy)
	t0 := time.Now()
	if err := d.AWS.DisableKey(ctx, victim.key); err != nil {
		return nil, err
	}
	firstRejected := func(assets []failoverAsset) time.Time {
		var at time.Time
		for _, a := range assets {
			if a.tenant == victim.id && a.rejected && a.reason == events.ReasonCustomerKeyRevoked && (at.IsZero() || a.decided.Before(at)) {
				at = a.decided
			}
		}
		return at
	}
	waitFor(ctx, o.StepTimeout, func() bool {
		assets, evs := t.snapshot()
		return len(keyStatusTimes(evs, ts[:1], events.KeyStatusRevoked, t0, time.Time{})) == 1 && !firstRejected(assets).IsZero()
	})
	sleepCtx(ctx, 2*time.Second)
	t.halt()
	if err := t.drain(time.Minute); err != nil {
		return nil, err
	}
	assets, evs := t.snapshot()
	r := &FailoverRevokeResult{Tenants: o.Tenants, Rate: o.Rate}
	statusAt := keyStatusTimes(evs, ts[:1], events.KeyStatusRevoked, t0, time.Time{})[victim.id]
	rejectedAt := firstRejected(assets)
	r.StatusRevoked, r.FirstRejected = sinceOrZero(statusAt, t0), sinceOrZero(rejectedAt, t0)
	if !statusAt.IsZero() && !rejectedAt.IsZero() {
		r.StatusToRejected = rejectedAt.Sub(statusAt)
	}
	for _, req := range d.AWS.Server.Faults.Requests() {
		if req.Time.Before(t0) || (req.Op != kms.OpGenerateDataKey && req.Op != kms.OpDecrypt) || !sameAWSKey(req.KeyID, victim.key) {
			continue
		}
		if r.FirstKMSUse == 0 || req.Time.Sub(t0) < r.FirstKMSUse {
			r.FirstKMSUse = req.Time.Sub(t0)
		}
	}
	for _, a := range assets {
		if a.published.Before(t0) {
			continue
		}
		if a.tenant != victim.id {
			r.Others++
			if a.mode != events.ModeCustomer {
				r.OthersNotCustomer++
			}
			continue
		}
		r.VictimAssets++
		if a.mode == events.ModeCustomer && a.keyURI == victim.key.String() {
			r.EncryptedAfterDisable++
			if !statusAt.IsZero() && a.decided.After(statusAt) {
				r.EncryptedAfterStatus++
			}
			r.LastEncrypted = max(r.LastEncrypted, a.decided.Sub(t0))
		}
	}
	return r, nil
}

// sameAWSKey reports whether an emulator request's key id (an id or an
// ARN) names key.
func sameAWSKey(id string, key kms.KeyURI) bool {
	if id == "" {
		return false
	}
	last := func(s string) string { return s[strings.LastIndexByte(s, '/')+1:] }
	return last(id) == last(key.KeyID)
}

// FailoverRoundTrip is the raw baseline of the decision latencies: n
// messages of size bytes published one at a time into a fresh file-backed
// stream, each timed from the publish to its ack (the JetStream round
// trip an AssetCreated makes before any Keyward work).
func FailoverRoundTrip(ctx context.Context, js jetstream.JetStream, n, size int) (FailoverLatency, error) {
	name := fmt.Sprintf("BENCH_RTT_%d", time.Now().UnixNano())
	subj := "bench.rtt." + name
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage}); err != nil {
		return FailoverLatency{}, err
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), name)
	payload := make([]byte, size)
	rand.Read(payload)
	ds := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := js.Publish(ctx, subj, payload); err != nil {
			return FailoverLatency{}, err
		}
		ds = append(ds, time.Since(start))
	}
	return failoverLatency(ds), nil
}

// FailoverDevOptions are the keyward dev options of the scenarios:
// seedCache "off" makes every asset call the KMS (a seed serves one asset,
// Keyward's own rate limits lifted), "default" keeps the default cache;
// short selects FailoverShortKeyHealth and FailoverShortBreaker instead of
// the production defaults.
func FailoverDevOptions(dir, seedCache string, short, noBreaker bool) DevOptions {
	o := DevOptions{DataDir: dir, Port: 0, NoBreaker: noBreaker, NoAuth: benchNoAuth}
	if seedCache == "off" {
		o.SeedCache, o.KMSOptions = NoSeedCache(), NoRateLimits()
	}
	if short {
		o.KeyHealth, o.Breaker = FailoverShortKeyHealth(), FailoverShortBreaker()
	}
	return o
}

// benchFailoverCmd is `keyward bench failover`.
func (a *App) benchFailoverCmd() *cobra.Command {
	var o FailoverOptions
	var production bool
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Measure failover: decision latency while a KMS endpoint hangs, time to detect an outage and its end, the revocation bound",
		Long: `failover starts in-process Keyward stacks (like keyward dev, in temporary
directories, on free ports) with tenants whose keys live in the AWS KMS
emulator, runs steady traffic through them and measures:

  - decision latency (publish → AssetEncrypted/AssetRejected) while the
    endpoint answers and while it hangs, with the circuit breaker and
    without it; every asset calls the KMS (seed cache off), the worst case
    (targets: fallback within 2 s p99 of the hang, no KMS timeout waits
    once the breaker is open);
  - time from the hang to the breaker opening, the monitor's
    KeyStatusChanged unavailable and the first fallback asset, and from
    its end to the breaker closing, KeyStatusChanged available and the
    first customer-mode asset;
  - the revocation bound: a key disabled in the emulator while its tenant
    sends assets (default seed cache) → KeyStatusChanged revoked → first
    AssetRejected customer_key_revoked, and the assets still encrypted
    under the key meanwhile (target: 10 s after the monitor sees it);

next to the raw JetStream publish → ack round trip on the same server.
The monitor and breaker run with short test settings (probes every 1 s /
200 ms, breaker open 1 s) unless --production, which uses the production
defaults (60 s / 10 s probes, hysteresis 3, breaker open 30 s) and takes
several minutes. Figures go to docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			results, err := FailoverBench(ctx, o, production)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(results)
			}
			settings := "short test settings"
			if production {
				settings = "production defaults"
			}
			fmt.Fprintf(a.Stdout, "keyward bench failover: AWS KMS emulator, monitor and breaker with %s\n\n", settings)
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEASURE\tVALUE\tTARGET")
			for _, r := range results {
				fmt.Fprintf(tw, "%s\t%.4g %s\t%s\n", r.Name, r.Value, r.Unit, r.Target)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Tenants, "tenants", 0, "tenants on the emulated endpoint (default 20; 4 in the revocation run)")
	f.Float64Var(&o.Rate, "rate", 0, "assets per second over all tenants (default 40)")
	f.DurationVar(&o.Hang, "hang", 0, "how long the endpoint hangs in the latency run (default 10s)")
	f.BoolVar(&production, "production", false, "monitor and breaker with the production defaults (several minutes)")
	return cmd
}

// FailoverBench runs every failover scenario, each on a fresh stack, and
// returns the figures with the raw JetStream round trip of the first stack.
func FailoverBench(ctx context.Context, o FailoverOptions, production bool) ([]BenchResult, error) {
	var out []BenchResult
	add := func(name string, d time.Duration, target string) {
		out = append(out, BenchResult{Name: name, Unit: "ms", Value: ms(d), Target: target})
	}
	lat := func(prefix string, l FailoverLatency, target string) {
		add(prefix+" p50", l.P50, "")
		add(prefix+" p99", l.P99, target)
		add(prefix+" max", l.Max, "")
	}
	withDev := func(seedCache string, short, noBreaker bool, fn func(d *Dev) error) error {
		dir, err := os.MkdirTemp("", "keyward-bench-failover")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		d, err := StartDev(ctx, FailoverDevOptions(dir, seedCache, short, noBreaker))
		if err != nil {
			return err
		}
		defer d.Stop()
		return fn(d)
	}
	for _, noBreaker := range []bool{false, true} {
		label := "breaker on"
		if noBreaker {
			label = "no breaker"
		}
		err := withDev("off", false, noBreaker, func(d *Dev) error {
			if !noBreaker {
				js, err := jetstream.New(d.NC)
				if err != nil {
					return err
				}
				rtt, err := FailoverRoundTrip(ctx, js, 500, 1024)
				if err != nil {
					return err
				}
				lat("raw JetStream publish → ack, 1 KiB (baseline)", rtt, "")
			}
			r, err := FailoverHang(ctx, d, o)
			if err != nil {
				return err
			}
			lat("healthy: decision latency ("+label+")", r.Healthy, "")
			lat("hang, before the breaker opened ("+label+")", r.BeforeOpen, "")
			if !noBreaker {
				lat("hang, after the breaker opened", r.AfterOpen, "no KMS wait")
				add("hang → breaker open", r.BreakerOpen, "")
			}
			lat("hang, every asset ("+label+")", r.Hang, "<= 2000")
			lat("hang, tenant on another endpoint ("+label+")", r.OtherHang, "")
			add("hang → first fallback asset ("+label+")", r.FirstFallback, "")
			add("hang → last asset that waited for the KMS was published ("+label+")", r.LastSlow, "")
			out = append(out, BenchResult{Name: fmt.Sprintf("assets of the hang that waited >= 200 ms (%s, of %d)", label, r.Hang.N), Unit: "assets", Value: float64(r.Slow)})
			if !noBreaker {
				out = append(out, BenchResult{Name: "... of them published after the breaker opened", Unit: "assets", Value: float64(r.SlowAfterOpen), Target: "0"})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	settings := "short settings"
	if production {
		settings = "production defaults"
	}
	err := withDev("off", !production, false, func(d *Dev) error {
		r, err := FailoverDetect(ctx, d, o, kmstest.FaultHang)
		if err != nil {
			return err
		}
		add("outage → breaker open ("+settings+")", r.BreakerOpen, "")
		add("outage → first fallback asset ("+settings+")", r.FirstFallback, "")
		add("outage → first key announced unavailable ("+settings+")", r.FirstUnavailable, "")
		add("outage → every key announced unavailable ("+settings+")", r.AllUnavailable, "")
		add("recovery → first key announced available ("+settings+")", r.FirstAvailable, "")
		add("recovery → every key announced available ("+settings+")", r.AllAvailable, "")
		add("recovery → breaker closed ("+settings+")", r.BreakerClosed, "")
		add("recovery → first customer-mode asset ("+settings+")", r.FirstCustomer, "")
		add("recovery → every tenant in customer mode ("+settings+")", r.AllCustomer, "")
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = withDev("default", !production, false, func(d *Dev) error {
		r, err := FailoverRevoke(ctx, d, o)
		if err != nil {
			return err
		}
		add("key disabled → KeyStatusChanged revoked ("+settings+")", r.StatusRevoked, "")
		add("key disabled → first customer_key_revoked rejection ("+settings+")", r.FirstRejected, "")
		add("KeyStatusChanged revoked → first rejection ("+settings+")", r.StatusToRejected, "<= 10000")
		out = append(out, BenchResult{Name: "assets encrypted under the key after it was disabled (" + settings + ")", Unit: "assets", Value: float64(r.EncryptedAfterDisable)},
			BenchResult{Name: "... of them after KeyStatusChanged revoked", Unit: "assets", Value: float64(r.EncryptedAfterStatus), Target: "0"},
			BenchResult{Name: "other tenants' assets not in customer mode", Unit: "assets", Value: float64(r.OthersNotCustomer), Target: "0"})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
