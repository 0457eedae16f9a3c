package phonepolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/tenant"
)

// Defaults of the phone-policy worker. docs/phone-policy.md explains each.
const (
	// DefaultQueue is the queue group instances answer admissions in.
	DefaultQueue = "keyward-phone-policy"
	// ServiceName is the admission endpoint's NATS micro service name
	// (nats micro stats keyward-phone-admission).
	ServiceName = "keyward-phone-admission"
	// DefaultCallHistory: at start, call events of this long ago are read
	// again to rebuild the live calls (a call longer than this is not
	// acted on).
	DefaultCallHistory = 24 * time.Hour
	// DefaultBreakerFreshness: an endpoint whose last breaker event says
	// open counts as down for this long after it (the breaker's open
	// period is 30 s; its next event says closed or half_open).
	DefaultBreakerFreshness = time.Minute
)

// Deps are what a Worker uses; the caller owns them.
type Deps struct {
	// NC receives the breaker events (core NATS); JS reads KW_TENANTS,
	// KW_KEY_STATUS and KW_PHONE and publishes the call actions.
	NC *nats.Conn
	JS jetstream.JetStream
	// AdmitNC is the connection admissions are answered on (the micro
	// service keyward-phone-admission); nil: NC.
	AdmitNC *nats.Conn
}

// Options tune a Worker.
type Options struct {
	Queue                  string
	CallHistory            time.Duration
	BreakerFreshness       time.Duration
	AllowLocalCustomerKeys bool
	Logger                 *slog.Logger
	MeterProvider          metric.MeterProvider
	TracerProvider         trace.TracerProvider
	// Now is the clock (tests).
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.CallHistory <= 0 {
		o.CallHistory = DefaultCallHistory
	}
	if o.BreakerFreshness <= 0 {
		o.BreakerFreshness = DefaultBreakerFreshness
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// liveCall is a call in progress, as the phone system announced it.
type liveCall struct {
	events.CallStarted
	// Stopped: this worker asked the call to stop recording (or drop).
	Stopped bool
	Dropped bool
}

type breakerState struct {
	open bool
	at   time.Time
}

// Worker answers admissions and acts on live calls.
type Worker struct {
	d       Deps
	o       Options
	log     *slog.Logger
	tenants *tenant.Cache
	keys    *keystatus.Cache
	pub     *events.Publisher
	tracer  trace.Tracer
	metrics *metrics

	mu    sync.Mutex
	calls map[string]map[string]*liveCall // tenant → call id → call
	// bmu guards breakers alone: statusOf reads them while mu is held.
	bmu      sync.Mutex
	breakers map[string]breakerState // endpoint id → last state

	ready   chan struct{}
	srv     *rpc.Server
	stopped chan struct{}
}

// New prepares a worker; Run starts it.
func New(ctx context.Context, d Deps, o Options) (*Worker, error) {
	o.setDefaults()
	if d.NC == nil || d.JS == nil {
		return nil, errors.New("phone-policy: a NATS connection and JetStream are required")
	}
	if d.AdmitNC == nil {
		d.AdmitNC = d.NC
	}
	w := &Worker{d: d, o: o, log: o.Logger.With("worker", "phone-policy"),
		calls: map[string]map[string]*liveCall{}, breakers: map[string]breakerState{},
		ready: make(chan struct{}), stopped: make(chan struct{})}
	tkv, err := d.JS.KeyValue(ctx, events.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("phone-policy: tenants bucket: %w", err)
	}
	if w.tenants, err = tenant.NewCache(ctx, tkv, tenant.WithLogger(w.log), tenant.WithValidateOptions(tenant.AllowLocalKeys(o.AllowLocalCustomerKeys))); err != nil {
		return nil, err
	}
	skv, err := d.JS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		return nil, fmt.Errorf("phone-policy: key status bucket: %w", err)
	}
	if w.keys, err = keystatus.NewCache(ctx, skv, w.log); err != nil {
		return nil, err
	}
	w.pub = events.NewPublisher(d.JS, "phone-policy")
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	w.tracer = tp.Tracer("github.com/keyward/keyward/services/phone-policy")
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if w.metrics, err = newMetrics(mp.Meter("github.com/keyward/keyward/services/phone-policy"), w); err != nil {
		return nil, err
	}
	return w, nil
}

// Ready reports nil once the worker answers: tenants, key statuses and live
// calls loaded, admission service subscribed.
func (w *Worker) Ready() error {
	select {
	case <-w.ready:
		return nil
	default:
		return errors.New("loading tenants, key statuses and live calls")
	}
}

// Run loads the state, then answers admissions and follows calls, key
// statuses and breakers until ctx ends; then it stops the admission service
// (every admission received is answered) and returns.
func (w *Worker) Run(ctx context.Context) error {
	defer close(w.stopped)
	defer w.tenants.Stop()
	defer w.keys.Stop()
	for _, ch := range []<-chan struct{}{w.tenants.Ready(), w.keys.Ready()} {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
	// Breakers: core NATS, as they happen.
	bsub, err := w.d.NC.Subscribe(events.SubjectBreakerAll, w.onBreaker)
	if err != nil {
		return err
	}
	defer bsub.Unsubscribe()
	// Live calls: replay the recent history, then follow.
	caughtUp := make(chan struct{})
	callsDone := make(chan error, 1)
	go func() { callsDone <- w.followCalls(ctx, caughtUp) }()
	select {
	case <-caughtUp:
	case err := <-callsDone:
		return err
	case <-ctx.Done():
		return nil
	}
	w.keys.OnChange(func(r keystatus.Record) { w.reconsider(context.WithoutCancel(ctx), r.TenantID, "key_status") })
	w.tenants.OnChange(func(id string) { w.reconsider(context.WithoutCancel(ctx), id, "settings") })
	// Admissions are answered inline, in the subscription's goroutine: the
	// decision does no I/O and a hand-off to a pool costs more than it
	// takes (docs/phone-policy.md).
	if w.srv, err = rpc.Start(w.d.AdmitNC, rpc.Config{
		Name:        ServiceName,
		Description: "Keyward call admission: record, record_fallback, no_record or drop, from the tenant's key and settings",
		QueueGroup:  w.o.Queue,
		Endpoint:    "admit",
		Subject:     events.SubjectPhoneAdmitAll,
		Tracer:      w.tracer,
		SpanSubject: "keyward.phone.admit.{tenant}",
		Logger:      w.log,
		Handler:     w.admit,
	}); err != nil {
		return fmt.Errorf("phone-policy: %w", err)
	}
	close(w.ready)
	w.log.Info("phone-policy answering admissions", "tenants", w.tenants.Len(), "live_calls", w.liveCount())
	select {
	case <-ctx.Done():
	case err := <-callsDone:
		if err != nil && ctx.Err() == nil {
			w.log.Error("following calls stopped", "error", err)
		}
	}
	if err := w.srv.Stop(); err != nil {
		w.log.Warn("stopping the admission service", "error", err)
	}
	return nil
}

// admit answers one CallAdmission: the CallDecision, an error reply with
// micro's error headers carrying its code.
func (w *Worker) admit(ctx context.Context, r *rpc.Request) {
	start := time.Now()
	resp := w.decide(r.Subject(), r.Header(), r.Data())
	outcome, reason := string(resp.Decision), resp.Reason
	if resp.Error != nil {
		outcome, reason = "error", resp.Error.Code
		_ = r.RespondError(resp.Error.Code, resp.Error.Message, resp)
	} else {
		_ = r.Respond(resp)
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("keyward.phone.decision", outcome), attribute.String("keyward.phone.reason", reason))
	attrs := metric.WithAttributes(attribute.String("decision", outcome), attribute.String("reason", reason))
	w.metrics.decisions.Add(ctx, 1, attrs)
	w.metrics.latency.Record(ctx, time.Since(start).Seconds())
}

// Admit decides one admission request received on subject: the decision,
// or an error reply naming what is wrong. It does no I/O.
func (w *Worker) Admit(subject string, data []byte) *events.CallDecision {
	return w.decide(subject, nil, data)
}

// decide is Admit for a request with its headers (h: the phone system's,
// e.g. the server-set Nats-Request-Info; nil in-process).
func (w *Worker) decide(subject string, h nats.Header, data []byte) *events.CallDecision {
	fail := func(code, format string, args ...any) *events.CallDecision {
		return &events.CallDecision{Error: &events.CallError{Code: code, Message: fmt.Sprintf(format, args...)}}
	}
	subjectTenant, err := events.TenantFromSubject(subject)
	if err != nil {
		return fail(events.CallErrInvalidRequest, "%v", err)
	}
	a, err := events.DecodeCallAdmission(data)
	if err != nil {
		return fail(events.CallErrInvalidRequest, "%v", err)
	}
	if a.TenantID != subjectTenant {
		return fail(events.CallErrTenantMismatch, "admission for tenant %q sent on the subject of tenant %q", a.TenantID, subjectTenant)
	}
	cfg, ok := w.tenants.Get(a.TenantID)
	if !ok {
		return fail(events.CallErrUnknownTenant, "tenant %q has no configuration: configure it (keyward tenant apply) before its calls are admitted", a.TenantID)
	}
	d := Decide(cfg, a, w.statusOf(a.TenantID), w.o.Now())
	return &d
}

// statusOf is the effective status of tenantID's keys: the key-health
// status, or unavailable while the key's endpoint breaker was last seen open.
func (w *Worker) statusOf(tenantID string) func(string) events.KeyStatus {
	return func(uri string) events.KeyStatus {
		st := w.keys.Status(tenantID, uri)
		if st.Usable() || st == "" {
			if k, err := kms.ParseKeyURI(uri); err == nil {
				w.bmu.Lock()
				b := w.breakers[k.EndpointID()]
				w.bmu.Unlock()
				if b.open && w.o.Now().Sub(b.at) < w.o.BreakerFreshness {
					return events.KeyStatusUnavailable
				}
			}
		}
		return st
	}
}

func (w *Worker) onBreaker(m *nats.Msg) {
	e, err := events.DecodeBreakerStateChanged(m.Data)
	if err != nil {
		return
	}
	w.bmu.Lock()
	prev := w.breakers[e.Endpoint]
	if !e.At.Before(prev.at) {
		w.breakers[e.Endpoint] = breakerState{open: e.To == "open", at: e.At}
	}
	w.bmu.Unlock()
	// Tenants whose primary key is behind the endpoint may need actions.
	for _, id := range w.tenants.IDs() {
		cfg, ok := w.tenants.Get(id)
		if !ok {
			continue
		}
		if k, ok := cfg.PrimaryKey(); ok {
			if u, err := kms.ParseKeyURI(k.URI); err == nil && u.EndpointID() == e.Endpoint {
				w.reconsider(context.Background(), id, "breaker")
			}
		}
	}
}

// followCalls reads KW_PHONE's call events from CallHistory ago, closing
// caughtUp once it has read what was there, then follows new ones.
func (w *Worker) followCalls(ctx context.Context, caughtUp chan<- struct{}) error {
	since := w.o.Now().Add(-w.o.CallHistory)
	cons, err := w.d.JS.OrderedConsumer(ctx, events.StreamPhone, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectCallEventsAll},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return fmt.Errorf("phone-policy: following %s: %w", events.StreamPhone, err)
	}
	signalled := false
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(256, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			return err
		}
		n := 0
		var pending uint64
		for m := range msgs.Messages() {
			n++
			w.applyCall(m.Subject(), m.Data())
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
		}
		if !signalled && (n == 0 || pending == 0) {
			signalled = true
			close(caughtUp)
		}
	}
	return nil
}

// applyCall records a CallStarted or removes a CallEnded. Invalid call
// events are logged and skipped (they come from phone systems).
func (w *Worker) applyCall(subject string, data []byte) {
	tenantID, err := events.TenantFromSubject(subject)
	if err != nil {
		return
	}
	switch subject {
	case events.SubjectCallStarted(tenantID):
		e, err := events.DecodeCallStarted(data)
		if err != nil || e.TenantID != tenantID {
			w.log.Warn("skipping an invalid CallStarted", "subject", subject, "error", err)
			w.metrics.invalidCalls.Add(context.Background(), 1)
			return
		}
		w.mu.Lock()
		if w.calls[tenantID] == nil {
			w.calls[tenantID] = map[string]*liveCall{}
		}
		w.calls[tenantID][e.CallID] = &liveCall{CallStarted: *e, Dropped: e.Decision == events.DecisionDrop}
		w.mu.Unlock()
	case events.SubjectCallEnded(tenantID):
		e, err := events.DecodeCallEnded(data)
		if err != nil || e.TenantID != tenantID {
			w.log.Warn("skipping an invalid CallEnded", "subject", subject, "error", err)
			w.metrics.invalidCalls.Add(context.Background(), 1)
			return
		}
		w.mu.Lock()
		delete(w.calls[tenantID], e.CallID)
		if len(w.calls[tenantID]) == 0 {
			delete(w.calls, tenantID)
		}
		w.mu.Unlock()
	}
}

func (w *Worker) liveCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.calls {
		n += len(c)
	}
	return n
}

// LiveCalls is the number of calls in progress the worker knows of.
func (w *Worker) LiveCalls() int { return w.liveCount() }

// reconsider decides again, for each live recorded call of tenantID, what
// its admission would be now, and publishes the actions the change calls
// for: a call recorded under the customer key whose recording can no longer
// go on is dropped (drop_calls) or its recording stopped; a call stopped
// that way resumes recording once the key is back.
func (w *Worker) reconsider(ctx context.Context, tenantID, why string) {
	cfg, ok := w.tenants.Get(tenantID)
	if !ok {
		return
	}
	statusOf := w.statusOf(tenantID)
	now := w.o.Now()
	type act struct {
		call   *liveCall
		action events.CallActionKind
		reason string
	}
	var acts []act
	w.mu.Lock()
	for _, c := range w.calls[tenantID] {
		if c.Dropped || (c.Mode != events.ModeCustomer && !c.Stopped) {
			continue // not recording under the customer key: nothing to act on
		}
		d := Decide(cfg, &events.CallAdmission{CallID: c.CallID, TenantID: tenantID, UserID: c.UserID, Direction: c.Direction, RecordingRequested: true}, statusOf, now)
		switch {
		case !c.Stopped && d.Decision == events.DecisionDrop:
			c.Dropped = true
			acts = append(acts, act{c, events.ActionDrop, d.Reason})
		case !c.Stopped && d.Decision == events.DecisionNoRecord:
			c.Stopped = true
			acts = append(acts, act{c, events.ActionStopRecording, d.Reason})
		case c.Stopped && d.Decision == events.DecisionRecord && d.Mode == events.ModeCustomer:
			c.Stopped = false
			acts = append(acts, act{c, events.ActionResumeRecording, "customer_key_available"})
		}
	}
	w.mu.Unlock()
	if len(acts) == 0 {
		return
	}
	key := ""
	if k, ok := cfg.PrimaryKey(); ok {
		key = k.URI
	}
	out := make([]events.Outgoing, 0, len(acts))
	stamp := strconv.FormatInt(now.UnixNano(), 36)
	for _, a := range acts {
		ev := &events.CallAction{CallID: a.call.CallID, TenantID: tenantID, Action: a.action, Reason: a.reason, KeyURI: key, At: now.UTC()}
		out = append(out, events.Outgoing{Subject: events.SubjectCallAction(tenantID),
			MsgID: "action." + tenantID + "." + a.call.CallID + "." + string(a.action) + "." + stamp,
			Type:  events.TypeCallAction, Event: ev})
		w.metrics.actions.Add(ctx, 1, metric.WithAttributes(attribute.String("action", string(a.action)), attribute.String("reason", a.reason)))
	}
	if _, err := w.pub.PublishAll(ctx, out); err != nil {
		w.log.Error("publishing call actions", "tenant_id", tenantID, "actions", len(out), "error", err)
		return
	}
	w.log.Info("acted on live calls", "tenant_id", tenantID, "why", why, "actions", len(out))
}

type metrics struct {
	decisions    metric.Int64Counter
	actions      metric.Int64Counter
	invalidCalls metric.Int64Counter
	latency      metric.Float64Histogram
}

func newMetrics(m metric.Meter, w *Worker) (*metrics, error) {
	var x metrics
	var err error
	if x.decisions, err = m.Int64Counter("keyward.phone.decisions",
		metric.WithDescription("Call admissions answered, by decision (record, record_fallback, no_record, drop, error) and reason")); err != nil {
		return nil, err
	}
	if x.actions, err = m.Int64Counter("keyward.phone.actions",
		metric.WithDescription("Actions asked of live calls, by action (drop, stop_recording, resume_recording) and reason")); err != nil {
		return nil, err
	}
	if x.invalidCalls, err = m.Int64Counter("keyward.phone.call_events.invalid",
		metric.WithDescription("CallStarted/CallEnded events skipped as invalid")); err != nil {
		return nil, err
	}
	if x.latency, err = m.Float64Histogram("keyward.phone.admission.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to decide and answer one admission (in the worker)"),
		metric.WithExplicitBucketBoundaries(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01)); err != nil {
		return nil, err
	}
	_, err = m.Int64ObservableGauge("keyward.phone.live_calls", metric.WithDescription("Calls in progress known to this instance"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(w.liveCount()))
			return nil
		}))
	return &x, err
}
