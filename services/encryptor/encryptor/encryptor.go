// Package encryptor is the encryptor worker: it consumes AssetCreated events
// from KW_INGEST, decides per asset which key protects it (tenant policy,
// key status), encrypts the staged or inline plaintext into KW_VAULT as an
// envelope (pkg/envelope), records the outcome in its bbolt ledger,
// publishes AssetEncrypted or AssetRejected to KW_ASSETS, deletes the staging
// copy and acknowledges. It also serves the key broker (package broker).
//
// Every step is idempotent with the asset id as identity, so a redelivered or
// replayed event changes nothing and produces no second ciphertext; a crash
// at any line loses nothing (docs/design.md walks through each crash point).
//
// Telemetry: keyward_encryptor_assets_total{outcome,mode,reason},
// keyward_encryptor_batch_seconds, spans per message (process
// keyward.asset.created.{tenant}) with the producer's trace as parent.
package encryptor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/ledger/projector"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/vault"
	"github.com/keyward/keyward/services/encryptor/broker"
)

// Worker is one encryptor instance.
type Worker struct {
	d   Deps
	o   Options
	log *slog.Logger

	staging   *vault.Store
	vault     *vault.Store
	tenants   *tenant.Cache
	keys      *keystatus.Cache
	reporter  *keystatus.Reporter
	live      *liveObservations
	projector *projector.Projector
	broker    *broker.Server
	enroll    *enroll.Server
	publisher *events.Publisher
	settler   *events.Settler
	tracer    trace.Tracer
	metrics   *metrics

	consumerReady chan struct{}
	consumerOnce  sync.Once

	inflightMu sync.Mutex
	inflight   map[string]struct{} // tenant/asset of every asset being processed
}

// New wires a worker: it binds the buckets, starts the tenant and key-status
// watches and the ledger projection, and declares the durable consumer. It
// does not consume until Run.
func New(ctx context.Context, d Deps, o Options) (*Worker, error) {
	o.setDefaults()
	if err := o.validate(d); err != nil {
		return nil, err
	}
	w := &Worker{d: d, o: o, log: o.Logger.With("worker", o.Name), consumerReady: make(chan struct{}), inflight: map[string]struct{}{}}
	var err error
	if w.staging, err = vault.Open(ctx, d.JS, events.BucketStaging); err != nil {
		return nil, err
	}
	if w.vault, err = vault.Open(ctx, d.JS, events.BucketVault); err != nil {
		return nil, err
	}
	tkv, err := d.JS.KeyValue(ctx, events.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("encryptor: tenants bucket: %w", err)
	}
	tenantOpts := []tenant.Option{tenant.WithLogger(w.log), tenant.WithValidateOptions(tenant.AllowLocalKeys(o.AllowLocalCustomerKeys))}
	if w.tenants, err = tenant.NewCache(ctx, tkv, tenantOpts...); err != nil {
		return nil, err
	}
	etkv := tkv
	if d.EnrollJS != nil {
		if etkv, err = d.EnrollJS.KeyValue(ctx, events.BucketTenants); err != nil {
			return nil, fmt.Errorf("encryptor: tenants bucket of the enrollment service: %w", err)
		}
	}
	w.enroll = enroll.NewServer(d.enrollNC(), d.enrollJS(), tenant.NewStore(etkv, tenantOpts...), d.KMS, o.Platform,
		enroll.AllowLocalKeys(o.AllowLocalCustomerKeys), enroll.Authorize(o.AuthorizeCallers), enroll.WithLogger(w.log), enroll.WithStored(w.awaitTenant))
	skv, err := d.JS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		return nil, fmt.Errorf("encryptor: key status bucket: %w", err)
	}
	w.live = newLiveObservations(o.ObservationTTL)
	if w.keys, err = keystatus.NewCache(ctx, skv, w.log); err != nil {
		return nil, err
	}
	// A key whose status changes must not keep encrypting from cached seeds.
	w.keys.OnChange(w.flushKey)
	w.reporter = keystatus.NewReporter(d.NC, instanceName(o.Name), keystatus.WithReporterLogger(w.log))
	w.projector = projector.New(d.JS, d.Ledger, projector.WithLogger(w.log))
	w.publisher = events.NewPublisher(d.JS, o.Name)
	if w.broker, err = broker.New(d.brokerNC(), d.Ledger, d.Seeds, broker.Options{
		Logger: w.log, MeterProvider: o.MeterProvider,
		KeyStatus: w.keys.Status, Reporter: w.reporter,
		Authorize: o.AuthorizeCallers, Tenant: w.tenants.Get, Record: w.recordKeyAccess,
	}); err != nil {
		return nil, err
	}
	w.settler = &events.Settler{
		DLQ:        events.NewDeadLetterer(d.JS, o.Name),
		MaxDeliver: o.MaxDeliver,
		Backoff:    events.ExponentialBackoff(time.Second, 2*time.Minute),
		Logger:     w.log,
	}
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if w.metrics, err = newMetrics(mp.Meter("github.com/keyward/keyward/services/encryptor")); err != nil {
		return nil, err
	}
	w.tracer = otel.Tracer("github.com/keyward/keyward/services/encryptor")
	return w, nil
}

// recordKeyAccess stores one key broker decision on KW_AUDIT
// (keyward.audit.key_access.<tenant>), published with the encryptor's own
// identity: the broker's serving identity publishes nothing but replies.
func (w *Worker) recordKeyAccess(ctx context.Context, e *events.KeyAccess) error {
	_, err := w.publisher.Publish(ctx, events.Outgoing{
		Subject: events.SubjectKeyAccess(e.TenantID),
		MsgID:   "key_access." + e.TenantID + "." + e.AssetID + "." + nuid.Next(),
		Type:    events.TypeKeyAccess,
		Event:   e,
	})
	return err
}

// awaitTenant waits (at most 2 s) until this worker's tenant cache holds
// revision of tenantID. Other instances see it within their own watch delay
// (milliseconds).
func (w *Worker) awaitTenant(ctx context.Context, tenantID string, revision uint64) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c, ok := w.tenants.Get(tenantID); ok && c.Revision >= revision {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// instanceName names this process in key observations: "<name>/<host>-<pid>".
func instanceName(name string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "/" + host + "-" + strconv.Itoa(os.Getpid())
}

// ConsumerConfig is the encryptor's durable consumer on KW_INGEST.
func ConsumerConfig(o Options) jetstream.ConsumerConfig {
	o.setDefaults()
	return jetstream.ConsumerConfig{
		Durable:       events.ConsumerEncryptor,
		Description:   "Keyward encryptor: AssetCreated → AssetEncrypted | AssetRejected",
		FilterSubject: events.SubjectAssetCreatedAll,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		// No BackOff: transient failures and holds are nak'ed with their
		// own delay by the Settler, and nats-server (v2.15.2, measured) does
		// not honour a nak's delay from the second delivery on when the
		// consumer has a BackOff — a 1 s retry came back after more than a
		// minute. A crashed worker's messages come back after AckWait.
		MaxAckPending: 16 * o.BatchSize,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Ready reports nil once the worker can serve: tenant and key-status caches
// loaded, ledger caught up with KW_ASSETS, consumer declared.
func (w *Worker) Ready() error {
	for name, ch := range map[string]<-chan struct{}{
		"tenant cache":      w.tenants.Ready(),
		"key status cache":  w.keys.Ready(),
		"ledger projection": w.projector.CaughtUp(),
		"consumer":          w.consumerReady,
	} {
		select {
		case <-ch:
		default:
			return fmt.Errorf("%s not ready", name)
		}
	}
	return nil
}

// Run consumes until ctx ends, then drains: the batch in progress finishes
// and is settled, the broker answers what it received, and Run returns.
func (w *Worker) Run(ctx context.Context) error {
	defer w.tenants.Stop()
	defer w.keys.Stop()

	projCtx, stopProjector := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.projector.Run(projCtx) }()
	defer func() { stopProjector(); wg.Wait() }()

	// Decide nothing before knowing every tenant, key status and asset
	// already recorded: a replayed event must be recognised as a duplicate.
	for _, ch := range []<-chan struct{}{w.tenants.Ready(), w.keys.Ready(), w.projector.CaughtUp()} {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
	if err := w.broker.Start(); err != nil {
		return err
	}
	defer w.broker.Stop()
	if err := w.enroll.Start(); err != nil {
		return err
	}
	defer w.enroll.Stop()

	// Consume until ctx ends. If the consumer goes away under the worker
	// (deleted by an operator, a stream restored, a leadership change the
	// client cannot ride out), it is declared again and consuming resumes.
	delay := 250 * time.Millisecond
	for {
		cons, err := w.d.JS.CreateOrUpdateConsumer(ctx, events.StreamIngest, ConsumerConfig(w.o))
		if err == nil {
			w.consumerOnce.Do(func() { close(w.consumerReady) })
			w.log.Info("encryptor consuming", "consumer", events.ConsumerEncryptor, "batch", w.o.BatchSize, "lanes", w.o.Lanes, "concurrency", w.o.Concurrency)
			err = w.consume(ctx, cons)
			delay = 250 * time.Millisecond
		}
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("consuming stopped; declaring the consumer again", "consumer", events.ConsumerEncryptor, "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// consume pulls messages continuously and hands them over in batches: a
// batch is whatever has arrived, up to BatchSize, so a lone asset is
// processed at once and a burst is committed together.
func (w *Worker) consume(ctx context.Context, cons jetstream.Consumer) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * w.o.BatchSize))
	if err != nil {
		return fmt.Errorf("encryptor: consuming: %w", err)
	}
	msgs := make(chan jetstream.Msg, w.o.BatchSize)
	var iterErr error
	go func() {
		defer close(msgs)
		for {
			m, err := iter.Next()
			if err != nil {
				// Reconnects and missed heartbeats are handled inside the
				// iterator; what reaches here ends it (stopped, drained,
				// consumer deleted, connection closed).
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() == nil {
					iterErr = err
				}
				return
			}
			msgs <- m
		}
	}()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			iter.Drain()
		case <-stopped:
		}
	}()
	defer close(stopped)
	defer iter.Stop()

	// Lanes: each takes a batch, prepares it and commits it; several lanes
	// keep several batches in flight, so one batch's waits (vault acks,
	// publish acks, the ledger fsync) overlap another's work.
	var lanes sync.WaitGroup
	for range w.o.Lanes {
		lanes.Add(1)
		go func() {
			defer lanes.Done()
			for {
				batch := nextBatch(msgs, w.o.BatchSize)
				if batch == nil {
					return
				}
				// A batch is finished even while shutting down: its work
				// is done or cheap to settle; ctx only stops new batches.
				bctx := context.WithoutCancel(ctx)
				w.commit(bctx, w.prepare(bctx, batch))
			}
		}()
	}
	lanes.Wait()
	if iterErr == nil && ctx.Err() == nil {
		iterErr = errors.New("message iterator closed")
	}
	return iterErr
}

// nextBatch waits for one message, then takes whatever else has arrived, up
// to max. It returns nil once msgs is closed and drained.
func nextBatch(msgs <-chan jetstream.Msg, max int) []jetstream.Msg {
	first, ok := <-msgs
	if !ok {
		return nil
	}
	batch := []jetstream.Msg{first}
	for len(batch) < max {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

func (w *Worker) flushKey(r keystatus.Record) {
	// The monitor's new status supersedes what live calls showed.
	w.live.clear(r.TenantID, r.KeyURI)
	key, err := parseKey(r.KeyURI)
	if err != nil {
		return
	}
	w.d.Seeds.FlushKey(key)
	w.log.Info("key status changed; cached seeds flushed", "tenant_id", r.TenantID, "key_uri", r.KeyURI, "status", r.Status)
	// The monitor's own calls found the key usable: its endpoint answers,
	// so an open breaker need not wait out its open timeout.
	if r.Status.Usable() && w.d.KMS.EndpointRecovered(key) {
		w.log.Info("KMS endpoint breaker closed: the key-health-monitor found a key behind it usable", "endpoint", key.EndpointID(), "key_uri", r.KeyURI)
	}
}

// Tenant returns the worker's current view of a tenant's configuration
// (from its watch of KW_TENANTS).
func (w *Worker) Tenant(id string) (*tenant.Config, bool) { return w.tenants.Get(id) }

// KeyStatus returns the worker's current view of a key's status.
func (w *Worker) KeyStatus(tenantID, keyURI string) events.KeyStatus {
	return w.keys.Status(tenantID, keyURI)
}
