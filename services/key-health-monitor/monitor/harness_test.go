package monitor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

// Test timing: everything a hundred times faster than production, so a
// status change takes well under a second.
const (
	testHealthy   = 300 * time.Millisecond
	testUnhealthy = 60 * time.Millisecond
	testTimeout   = 250 * time.Millisecond // per KMS call (hang → unreachable)
	testLeaseTTL  = 2 * time.Second
)

// cloud is one emulated customer KMS reached through its real SDK
// provider.
type cloud struct {
	name     string
	faults   *kmstest.Faults
	provider kms.Provider
	scheme   string
	newKey   func(t testing.TB) kms.KeyURI
	missing  func() kms.KeyURI
	disable  func(t testing.TB, k kms.KeyURI)
	enable   func(t testing.TB, k kms.KeyURI)
	// opGenerate and opDecrypt are the emulator's names of the
	// operations behind kms GenerateDataKey and Decrypt (for Deny).
	opGenerate, opDecrypt string

	aws *awsemu.Emulator // set for the AWS cloud
}

func awsCloud(t testing.TB) *cloud {
	t.Helper()
	emu := awsemu.StartT(t)
	p, err := emu.Provider(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{
		name: "aws", faults: emu.Server.Faults, provider: p, scheme: kms.SchemeAWS, aws: emu,
		newKey: func(t testing.TB) kms.KeyURI {
			k, err := emu.CreateKey(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return k
		},
		missing: emu.MissingKey,
		disable: func(t testing.TB, k kms.KeyURI) {
			if err := emu.DisableKey(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		},
		enable: func(t testing.TB, k kms.KeyURI) {
			if err := emu.EnableKey(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		},
		opGenerate: kms.OpGenerateDataKey, opDecrypt: kms.OpDecrypt,
	}
}

func ociCloud(t testing.TB) *cloud {
	t.Helper()
	emu := ociemu.StartT(t)
	p, err := emu.Provider()
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{
		name: "oci", faults: emu.Server.Faults, provider: p, scheme: kms.SchemeOCI,
		newKey:  func(testing.TB) kms.KeyURI { return emu.CreateKey() },
		missing: emu.UnknownKey,
		disable: func(_ testing.TB, k kms.KeyURI) { emu.DisableKey(k) },
		enable:  func(_ testing.TB, k kms.KeyURI) { emu.EnableKey(k) },
		// The OCI provider makes data keys itself and wraps them with Encrypt.
		opGenerate: ociemu.OpEncrypt, opDecrypt: ociemu.OpDecrypt,
	}
}

// env is an embedded nats-server with Keyward provisioned (leases with a
// short TTL), the tenants store and a KMS client on one emulated cloud.
type env struct {
	t       testing.TB
	nats    *natstest.Env
	cloud   *cloud
	client  *kms.Client
	tenants *tenant.Store
	status  jetstream.KeyValue
}

func newEnv(t testing.TB, c *cloud) *env {
	t.Helper()
	e := &env{t: t, nats: natstest.Start(t), cloud: c}
	ctx := context.Background()
	if err := events.Provision(ctx, e.nats.JS, events.ProvisionOptions{KeyHealthLeaseTTL: testLeaseTTL}); err != nil {
		t.Fatal(err)
	}
	e.client = e.newClient()
	var err error
	if e.tenants, err = tenant.OpenStore(ctx, e.nats.JS); err != nil {
		t.Fatal(err)
	}
	if e.status, err = e.nats.JS.KeyValue(ctx, events.BucketKeyStatus); err != nil {
		t.Fatal(err)
	}
	return e
}

// newClient is a kms.Client on the env's cloud, as a monitor process has
// its own: no circuit breaker, short call timeout.
func (e *env) newClient() *kms.Client {
	return kms.NewClient(kms.WithProvider(e.cloud.scheme, e.cloud.provider), kms.WithCallTimeout(testTimeout))
}

func fastOptions() monitor.Options {
	return monitor.Options{
		HealthyInterval:       testHealthy,
		UnhealthyInterval:     testUnhealthy,
		ObservationProbeDelay: 20 * time.Millisecond,
		Partitions:            4,
		Logger:                testLogger(),
	}
}

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("MONITOR_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// instance is a running monitor.
type instance struct {
	w      *monitor.Worker
	nc     *nats.Conn
	client *kms.Client
	cancel context.CancelFunc
	done   chan error
	t      testing.TB
}

// start runs a monitor with its own NATS connection and KMS client until
// the test ends (or stop).
func (e *env) start(o monitor.Options) *instance {
	e.t.Helper()
	nc, js := e.nats.Connect(e.t)
	in := &instance{nc: nc, client: e.newClient(), done: make(chan error, 1), t: e.t}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := monitor.New(ctx, monitor.Deps{NC: nc, JS: js, KMS: in.client}, o)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	in.w, in.cancel = w, cancel
	go func() { in.done <- w.Run(ctx) }()
	eventually(e.t, 10*time.Second, "the monitor to be ready", func() bool { return w.Ready() == nil })
	e.t.Cleanup(in.stop)
	return in
}

func (in *instance) stop() {
	if in.cancel == nil {
		return
	}
	in.cancel()
	select {
	case err := <-in.done:
		if err != nil {
			in.t.Errorf("monitor Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		in.t.Error("monitor did not stop")
	}
	in.cancel = nil
}

// enroll stores a tenant whose primary key is keys[0] and the others
// replicas.
func (e *env) enroll(id string, keys ...kms.KeyURI) {
	e.t.Helper()
	cfg := &tenant.Config{TenantID: id, Services: []string{"*"}, LicensedUsers: []string{"*"}}
	for i, k := range keys {
		role := tenant.RoleReplica
		if i == 0 {
			role = tenant.RolePrimary
		}
		cfg.Keys = append(cfg.Keys, tenant.Key{URI: k.String(), Role: role, EnrolledAt: time.Now().Add(-time.Hour).UTC()})
	}
	if _, err := e.tenants.Apply(context.Background(), cfg); err != nil {
		e.t.Fatal(err)
	}
}

// record reads a key's KW_KEY_STATUS record.
func (e *env) record(tenantID string, key kms.KeyURI) (keystatus.Record, bool) {
	e.t.Helper()
	en, err := e.status.Get(context.Background(), keystatus.Key(tenantID, key.String()))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return keystatus.Record{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := keystatus.Parse(en.Value())
	if err != nil {
		e.t.Fatal(err)
	}
	return r, true
}

// statusEvent is one KeyStatusChanged read back from KW_KEYS.
type statusEvent struct {
	events.KeyStatusChanged
	MsgID  string
	Stored time.Time
}

// statusEvents reads every KeyStatusChanged of a tenant from KW_KEYS.
func (e *env) statusEvents(tenantID string) []statusEvent {
	e.t.Helper()
	return e.readStatusEvents(events.SubjectKeyStatus(tenantID))
}

// allStatusEvents reads every KeyStatusChanged from KW_KEYS, by tenant.
func (e *env) allStatusEvents() map[string][]statusEvent {
	e.t.Helper()
	out := map[string][]statusEvent{}
	for _, ev := range e.readStatusEvents(events.SubjectKeyStatusAll) {
		out[ev.TenantID] = append(out[ev.TenantID], ev)
	}
	return out
}

func (e *env) readStatusEvents(filter string) []statusEvent {
	e.t.Helper()
	ctx := context.Background()
	cons, err := e.nats.JS.OrderedConsumer(ctx, events.StreamKeys, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []statusEvent
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(150*time.Millisecond))
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := events.DecodeKeyStatusChanged(m.Data())
			if err != nil {
				e.t.Fatalf("KeyStatusChanged on %s does not decode: %v", m.Subject(), err)
			}
			md, _ := m.Metadata()
			out = append(out, statusEvent{KeyStatusChanged: *ev, MsgID: m.Headers().Get(events.HeaderMsgID), Stored: md.Timestamp})
		}
		if n == 0 {
			return out
		}
	}
}

// keyEvents keeps the events of one key.
func keyEvents(all []statusEvent, key kms.KeyURI) []statusEvent {
	var out []statusEvent
	for _, ev := range all {
		if ev.KeyURI == key.String() {
			out = append(out, ev)
		}
	}
	return out
}

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus waits until the instance's committed status of a key is st
// and returns how long that took.
func waitStatus(t testing.TB, in *instance, tenantID string, key kms.KeyURI, st events.KeyStatus, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, within, "status "+string(st)+" of "+tenantID, func() bool {
		s, ok := in.w.Status(tenantID, key.String())
		return ok && s.Status == st
	})
	return time.Since(start)
}

func awsEmu(t testing.TB, c *cloud) *awsemu.Emulator {
	t.Helper()
	if c.aws == nil {
		t.Fatal("not the AWS cloud")
	}
	return c.aws
}

func monitorStatusID(tenantID string, key kms.KeyURI, since time.Time) string {
	return monitor.StatusMsgID(tenantID, key.String(), since)
}
