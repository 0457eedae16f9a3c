package monitor_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

// seedAvailable stores an available record, as a previous monitor would
// have, so the key starts available without probes.
func (e *env) seedAvailable(tenantID string, key kms.KeyURI) {
	e.t.Helper()
	if err := keystatus.Put(context.Background(), e.status, keystatus.Record{
		TenantID: tenantID, KeyURI: key.String(), Status: events.KeyStatusAvailable, Reason: "ok", Since: time.Now().Add(-time.Hour).UTC(),
	}); err != nil {
		e.t.Fatal(err)
	}
}

// liveCall is what an encryptor does: one KMS call with the tenant's key,
// reported to the monitor by a keystatus.Reporter.
func liveCall(t testing.TB, client *kms.Client, r *keystatus.Reporter, tenantID string, key kms.KeyURI) error {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	dk, err := client.GenerateDataKey(ctx, key, kms.NewEncryptionContext(tenantID, kms.PurposeAssetSeed))
	if err == nil {
		dk.Destroy()
	}
	r.Observe(ctx, tenantID, key, kms.OpGenerateDataKey, err, time.Since(start))
	return err
}

// Failures seen in live traffic drive the status without any probe: with
// probes a day apart, three workers' reports of an unreachable endpoint
// make the key unavailable within milliseconds, and their reports of the
// first success after it make it available again.
func TestObservationsDriveStatus(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	key := c.newKey(t)
	e.enroll("acme", key)
	e.seedAvailable("acme", key)
	o := fastOptions()
	o.HealthyInterval, o.UnhealthyInterval, o.ObservationProbeDelay = 24*time.Hour, 24*time.Hour, 24*time.Hour
	in := e.start(o)
	waitStatus(t, in, "acme", key, events.KeyStatusAvailable, 2*time.Second)

	// Three encryptors, each with its own client and reporter.
	var workers []*keystatus.Reporter
	for _, name := range []string{"encryptor/a", "encryptor/b", "encryptor/c"} {
		nc, _ := e.nats.Connect(t)
		workers = append(workers, keystatus.NewReporter(nc, name))
	}
	client := e.newClient()
	c.faults.Set(kmstest.FaultServerError)
	start := time.Now()
	for _, r := range workers {
		if err := liveCall(t, client, r, "acme", key); kms.CodeOf(err) != kms.CodeEndpointUnreachable {
			t.Fatalf("live call: %v", err)
		}
	}
	took := waitStatus(t, in, "acme", key, events.KeyStatusUnavailable, 2*time.Second)
	t.Logf("unavailable %v after the first failed live call", time.Since(start))
	st, _ := in.w.Status("acme", key.String())
	if st.Probes != 0 {
		t.Errorf("%d probes; the observations alone should decide", st.Probes)
	}
	if took > time.Second {
		t.Errorf("took %v", took)
	}

	c.faults.Set(kmstest.FaultNone)
	for _, r := range workers {
		if err := liveCall(t, client, r, "acme", key); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, in, "acme", key, events.KeyStatusAvailable, 2*time.Second)
	evs := e.statusEvents("acme")
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(evs), evs)
	}
	for i, want := range []struct {
		status, previous events.KeyStatus
		reason           string
	}{{events.KeyStatusUnavailable, events.KeyStatusAvailable, "endpoint_unreachable"}, {events.KeyStatusAvailable, events.KeyStatusUnavailable, "ok"}} {
		if ev := evs[i]; ev.Status != want.status || ev.Previous != want.previous || ev.Reason != want.reason || ev.Source != events.SourceObservation {
			t.Errorf("event %d: %s ← %s (%s, %s)", i, ev.Status, ev.Previous, ev.Reason, ev.Source)
		}
	}
	if s := in.w.Stats(); s.Observations[monitor.ObsApplied] != 6 || s.Probes != 0 {
		t.Errorf("stats %+v, want 6 observations applied and no probe", s)
	}
}

// One failing observation makes the monitor probe the key soon, instead of
// at the next healthy interval (a day here); the probes confirm the outage.
func TestObservationSchedulesProbe(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	key := c.newKey(t)
	e.enroll("acme", key)
	e.seedAvailable("acme", key)
	o := fastOptions()
	o.HealthyInterval = 24 * time.Hour
	in := e.start(o)
	waitStatus(t, in, "acme", key, events.KeyStatusAvailable, 2*time.Second)

	nc, _ := e.nats.Connect(t)
	c.faults.Set(kmstest.FaultServerError)
	start := time.Now()
	_ = liveCall(t, e.newClient(), keystatus.NewReporter(nc, "encryptor/a"), "acme", key)
	waitStatus(t, in, "acme", key, events.KeyStatusUnavailable, 3*time.Second)
	t.Logf("unavailable %v after one failed live call", time.Since(start))
	st, _ := in.w.Status("acme", key.String())
	if st.Probes < 2 {
		t.Errorf("%d probes after the observation, want the 2 that confirm it", st.Probes)
	}
	if evs := e.statusEvents("acme"); len(evs) != 1 || evs[0].Source != events.SourceProbe {
		t.Errorf("events %+v, want one decided by a probe", evs)
	}
}

// Reports that cannot be trusted change nothing: an invalid one is
// dead-lettered as invalid_event, bytes that are not a report as
// undecodable, a report whose body names another tenant than its subject
// as tenant_mismatch; a valid report for a key nobody enrolled is only
// counted.
func TestObservationsRefused(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	key := c.newKey(t)
	e.enroll("acme", key)
	e.enroll("other", c.newKey(t))
	e.seedAvailable("acme", key)
	o := fastOptions()
	o.HealthyInterval, o.UnhealthyInterval, o.ObservationProbeDelay = 24*time.Hour, 24*time.Hour, 24*time.Hour
	in := e.start(o)

	report := func(tenantID string, mutate func(*events.KeyObserved)) []byte {
		ev := &events.KeyObserved{TenantID: tenantID, KeyURI: key.String(), Op: kms.OpDecrypt, Outcome: "key_disabled",
			LatencyMS: 3, Worker: "encryptor/x", ObservedAt: time.Now().UTC()}
		if mutate != nil {
			mutate(ev)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		subject string
		data    []byte
		reason  events.Reason // "" for not dead-lettered
		result  string
	}{
		{"missing fields", events.SubjectKeyObserved("acme"), []byte(`{"tenant_id":"acme","key_uri":"` + key.String() + `"}`), events.ReasonInvalidEvent, monitor.ObsInvalid},
		{"unknown outcome", events.SubjectKeyObserved("acme"), report("acme", func(e *events.KeyObserved) { e.Outcome = "exploded" }), events.ReasonInvalidEvent, monitor.ObsInvalid},
		{"bad key uri", events.SubjectKeyObserved("acme"), report("acme", func(e *events.KeyObserved) { e.KeyURI = "nokms://x" }), events.ReasonInvalidEvent, monitor.ObsInvalid},
		{"not json", events.SubjectKeyObserved("acme"), []byte("key_disabled!"), events.ReasonUndecodable, monitor.ObsUndecodable},
		{"tenant mismatch", events.SubjectKeyObserved("acme"), report("other", nil), events.ReasonTenantMismatch, monitor.ObsTenantMismatch},
		{"not enrolled", events.SubjectKeyObserved("ghost"), report("ghost", nil), "", monitor.ObsNotEnrolled},
		{"another tenant's key", events.SubjectKeyObserved("other"), report("other", nil), "", monitor.ObsNotEnrolled},
	}
	nc, _ := e.nats.Connect(t)
	for _, tc := range cases {
		// Three of each: enough to change a status if any counted.
		for range 3 {
			m := nats.NewMsg(tc.subject)
			m.Data = tc.data
			m.Header.Set("ce-source", "test")
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "every report to be handled", func() bool {
		s := in.w.Stats()
		n := int64(0)
		for _, v := range s.Observations {
			n += v
		}
		return n == int64(3*len(cases))
	})
	s := in.w.Stats()
	for _, tc := range cases {
		want := int64(3)
		if tc.name == "missing fields" || tc.name == "unknown outcome" || tc.name == "bad key uri" {
			want = 9 // three cases share the invalid result
		}
		if tc.result == monitor.ObsNotEnrolled {
			want = 6
		}
		if got := s.Observations[tc.result]; got != want {
			t.Errorf("%s: %d observations counted %s, want %d", tc.name, got, tc.result, want)
		}
	}

	// The dead letters: one per distinct report (the repeats have the same
	// Nats-Msg-Id), with the reason, the original subject and bytes.
	dlq := readDLQ(t, e)
	byReason := map[events.Reason]int{}
	for _, d := range dlq {
		byReason[d.Reason]++
		if d.Worker != "key-health-monitor" || d.Subject != events.SubjectKeyObserved("acme") || d.TenantID != "acme" || d.Headers["ce-source"][0] != "test" {
			t.Errorf("dead letter %+v", d)
		}
		if d.Detail == "" {
			t.Errorf("dead letter without detail: %+v", d)
		}
	}
	if byReason[events.ReasonInvalidEvent] != 3 || byReason[events.ReasonUndecodable] != 1 || byReason[events.ReasonTenantMismatch] != 1 || len(dlq) != 5 {
		t.Errorf("dead letters by reason %v (%d in all), want 3 invalid_event, 1 undecodable, 1 tenant_mismatch", byReason, len(dlq))
	}
	for _, d := range dlq {
		if d.Reason == events.ReasonUndecodable && string(d.Data) != "key_disabled!" {
			t.Errorf("dead letter data %q", d.Data)
		}
	}

	// Nothing changed.
	if st, _ := in.w.Status("acme", key.String()); st.Status != events.KeyStatusAvailable || st.Streak != 0 {
		t.Errorf("acme's key: %+v", st)
	}
	if evs := e.statusEvents("acme"); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
}

func readDLQ(t testing.TB, e *env) []*events.DeadLetter {
	t.Helper()
	ctx := context.Background()
	cons, err := e.nats.JS.OrderedConsumer(ctx, events.StreamDLQ, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.DeadLetter
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			d, err := events.ParseDeadLetter(m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		if n == 0 {
			return out
		}
	}
}
