package enroll_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/tenant"
)

// clock is a settable clock for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

type lifecycleRig struct {
	*rig
	js    jetstream.JetStream
	clock *clock
}

func newLifecycleRig(t *testing.T) *lifecycleRig {
	env := natstest.Start(t)
	ctx := context.Background()
	store, err := tenant.OpenStore(ctx, env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: t0}
	srv := enroll.NewServer(env.NC, env.JS, store, kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New())), platform.Default(),
		enroll.AllowLocalKeys(true), enroll.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), enroll.WithClock(c.now))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return &lifecycleRig{
		rig:   &rig{t: t, store: store, client: enroll.NewClient(env.NC, 10*time.Second), keysDir: t.TempDir()},
		js:    env.JS,
		clock: c,
	}
}

func asRefusal(t *testing.T, err error) *enroll.Error {
	t.Helper()
	var ee *enroll.Error
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return ee
}

func (r *lifecycleRig) rotate(tenantID, uri string) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.Rotate(context.Background(), enroll.RotateRequest{TenantID: tenantID, KeyURI: uri})
	return resp, asRefusal(r.t, err)
}

func (r *lifecycleRig) schedule(tenantID string, at time.Time) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.ScheduleDeprovision(context.Background(), enroll.ScheduleDeprovisionRequest{TenantID: tenantID, At: at})
	return resp, asRefusal(r.t, err)
}

func (r *lifecycleRig) cancel(tenantID string) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.CancelDeprovision(context.Background(), tenantID)
	return resp, asRefusal(r.t, err)
}

func (r *lifecycleRig) get(tenantID string) *tenant.Config {
	r.t.Helper()
	c, err := r.store.Get(context.Background(), tenantID)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// lifecycleMsgs returns every message of KW_LIFECYCLE but the
// TenantChanged records (tenantChanged has those).
func (r *lifecycleRig) lifecycleMsgs() []jetstream.RawStreamMsg {
	r.t.Helper()
	var out []jetstream.RawStreamMsg
	for _, m := range r.allLifecycleMsgs() {
		if !strings.HasPrefix(m.Subject, "keyward.lifecycle.tenant_changed.") {
			out = append(out, m)
		}
	}
	return out
}

// tenantChanged returns the TenantChanged records of KW_LIFECYCLE, decoded,
// checking each one's subject and message id.
func (r *lifecycleRig) tenantChanged() []*events.TenantChanged {
	r.t.Helper()
	var out []*events.TenantChanged
	for _, m := range r.allLifecycleMsgs() {
		if !strings.HasPrefix(m.Subject, "keyward.lifecycle.tenant_changed.") {
			continue
		}
		e, err := events.DecodeTenantChanged(m.Data)
		if err != nil {
			r.t.Fatalf("%s: %v", m.Data, err)
		}
		if m.Subject != events.SubjectTenantChanged(e.TenantID) || m.Header.Get(events.HeaderMsgID) != events.TenantChangedMsgID(e.TenantID, e.Revision) ||
			m.Header.Get(events.HeaderCEType) != events.TypeTenantChanged {
			r.t.Errorf("TenantChanged on %s with %v", m.Subject, m.Header)
		}
		out = append(out, e)
	}
	return out
}

// allLifecycleMsgs returns every message of KW_LIFECYCLE.
func (r *lifecycleRig) allLifecycleMsgs() []jetstream.RawStreamMsg {
	r.t.Helper()
	ctx := context.Background()
	s, err := r.js.Stream(ctx, events.StreamLifecycle)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, *m)
	}
	return out
}

func TestRotate(t *testing.T) {
	r := newLifecycleRig(t)
	old, replicaDir := r.key("old.key"), t.TempDir()
	if _, e := r.add("acme", old, tenant.RolePrimary); e != nil {
		t.Fatal(e)
	}
	// A replica (stored directly: every localkms key has the same endpoint,
	// so the service would refuse it as a replica).
	replica := "localkms://" + replicaDir + "/replica.key"
	if _, err := r.store.Modify(context.Background(), "acme", func(c *tenant.Config) error {
		c.Keys = append(c.Keys, tenant.Key{URI: replica, Role: tenant.RoleReplica, EnrolledAt: t0})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := r.get("acme")

	r.clock.set(t0.Add(24 * time.Hour))
	next := r.key("new.key")
	resp, e := r.rotate("acme", next)
	if e != nil {
		t.Fatal(e)
	}
	if resp.Key == nil || resp.Key.URI != next || resp.Key.Role != tenant.RolePrimary || !resp.Key.EnrolledAt.Equal(t0.Add(24*time.Hour)) ||
		resp.KeyVersion == "" || resp.Warning != "" || len(resp.Retiring) != 2 || resp.Retiring[0] != old || resp.Retiring[1] != replica {
		t.Fatalf("response %+v", resp)
	}
	after := r.get("acme")
	if after.Revision != resp.Revision || after.Revision != before.Revision+1 {
		t.Errorf("revision %d, response %d, before %d: want one update", after.Revision, resp.Revision, before.Revision)
	}
	want := map[string]tenant.Key{
		old:     {URI: old, Role: tenant.RoleRetiring, EnrolledAt: t0},
		replica: {URI: replica, Role: tenant.RoleRetiring, EnrolledAt: t0},
		next:    {URI: next, Role: tenant.RolePrimary, EnrolledAt: t0.Add(24 * time.Hour)},
	}
	if len(after.Keys) != 3 {
		t.Fatalf("keys %+v", after.Keys)
	}
	for _, k := range after.Keys {
		if w := want[k.URI]; k.Role != w.Role || !k.EnrolledAt.Equal(w.EnrolledAt) {
			t.Errorf("key %s = %+v, want %+v", k.URI, k, w)
		}
	}
	if !after.CoveredSince().Equal(t0) {
		t.Errorf("CoveredSince moved to %v", after.CoveredSince())
	}

	// KeyEnrolled of the first key, then RotationStarted.
	msgs := r.lifecycleMsgs()
	if len(msgs) != 2 {
		t.Fatalf("%d lifecycle messages, want 2", len(msgs))
	}
	if msgs[0].Subject != events.SubjectKeyEnrolled("acme") {
		t.Errorf("first message on %s, want %s", msgs[0].Subject, events.SubjectKeyEnrolled("acme"))
	}
	m := msgs[1]
	if m.Subject != events.SubjectRotationStarted("acme") || m.Header.Get(events.HeaderMsgID) != "rotation_started.acme."+itoa(resp.Revision) ||
		m.Header.Get(events.HeaderCEType) != events.TypeRotationStarted {
		t.Errorf("message %s %v", m.Subject, m.Header)
	}
	ev, err := events.DecodeRotationStarted(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.FromKeyURI != old || ev.ToKeyURI != next || ev.ToKeyVersion != resp.KeyVersion || !ev.StartedAt.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("event %+v", ev)
	}

	// A second rotation: the first new key retires too, with its own time.
	r.clock.set(t0.Add(48 * time.Hour))
	third := r.key("third.key")
	if _, e := r.rotate("acme", third); e != nil {
		t.Fatal(e)
	}
	c := r.get("acme")
	if p, _ := c.PrimaryKey(); p.URI != third || len(c.KeysWithRole(tenant.RoleRetiring)) != 3 {
		t.Errorf("after a second rotation: %+v", c.Keys)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestRotateRefusals(t *testing.T) {
	r := newLifecycleRig(t)
	primary := r.key("p.key")
	if _, e := r.add("acme", primary, ""); e != nil {
		t.Fatal(e)
	}
	retiring := r.key("retiring.key")
	if _, e := r.rotate("acme", retiring); e != nil {
		t.Fatal(e)
	}
	primary, retiring = retiring, primary
	disabled := r.key("disabled.key")
	if err := localkms.SetDisabled(strings.TrimPrefix(disabled, "localkms://"), true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tenant, uri, code, mention string
	}{
		{"no tenant", "globex", r.key("g.key"), enroll.CodeConflict, "no primary key"},
		{"already primary", "acme", primary, enroll.CodeConflict, "already the primary"},
		{"already retiring", "acme", retiring, enroll.CodeConflict, "as retiring"},
		{"bad uri", "acme", "awskms://nope", enroll.CodeInvalidKeyURI, "key id"},
		{"no provider", "acme", "awskms://alias/k?region=eu-west-2", enroll.CodeUnsupportedProvider, "no provider"},
		{"region not served", "acme", "ocikms://ocid1.key.oc1.fra.v.k?endpoint=https://v-crypto.kms.eu-frankfurt-1.oraclecloud.com", enroll.CodeRegionNotServed, "us-ashburn-1"},
		{"disabled key", "acme", disabled, enroll.CodeKeyUnusable, "disabled"},
	}
	before := r.get("acme")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := r.rotate(tt.tenant, tt.uri)
			if e == nil || e.Code != tt.code || !strings.Contains(e.Message, tt.mention) {
				t.Fatalf("error = %+v, want %s mentioning %q", e, tt.code, tt.mention)
			}
			if !strings.HasPrefix(e.Error(), "rotation refused") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
	// A scheduled deprovisioning blocks rotation until it is cancelled.
	if _, e := r.schedule("acme", t0.Add(time.Hour)); e != nil {
		t.Fatal(e)
	}
	if _, e := r.rotate("acme", r.key("n.key")); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "cancel it first") {
		t.Fatalf("rotation while a deprovisioning is scheduled: %+v", e)
	}
	r.clock.set(t0.Add(2 * time.Hour))
	if _, e := r.rotate("acme", r.key("n2.key")); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "being deprovisioned") {
		t.Fatalf("rotation while deprovisioning: %+v", e)
	}
	after := r.get("acme")
	if len(after.Keys) != len(before.Keys) {
		t.Fatalf("a refused rotation changed the keys: %+v", after.Keys)
	}
	if p, _ := after.PrimaryKey(); p.URI != primary {
		t.Fatalf("primary %s, want %s", p.URI, primary)
	}
}

func TestDeprovisionScheduleAndCancel(t *testing.T) {
	r := newLifecycleRig(t)
	if _, e := r.add("acme", r.key("p.key"), ""); e != nil {
		t.Fatal(e)
	}
	at := t0.Add(30 * 24 * time.Hour)
	resp, e := r.schedule("acme", at)
	if e != nil {
		t.Fatal(e)
	}
	if resp.Deprovision == nil || !resp.Deprovision.At.Equal(at) || !resp.Deprovision.ScheduledAt.Equal(t0) || resp.Warning != "" {
		t.Fatalf("response %+v", resp)
	}
	c := r.get("acme")
	if c.Deprovision == nil || !c.Deprovision.At.Equal(at) || c.Deprovisioning(t0) || !c.Deprovisioning(at) {
		t.Fatalf("stored %+v", c.Deprovision)
	}
	// Rescheduling before the date replaces it.
	r.clock.set(t0.Add(time.Hour))
	later := at.Add(24 * time.Hour)
	resp2, e := r.schedule("acme", later)
	if e != nil {
		t.Fatal(e)
	}
	if c := r.get("acme"); !c.Deprovision.At.Equal(later) || !c.Deprovision.ScheduledAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("rescheduled %+v", c.Deprovision)
	}
	// Cancel before the date.
	r.clock.set(t0.Add(2 * time.Hour))
	resp3, e := r.cancel("acme")
	if e != nil {
		t.Fatal(e)
	}
	if resp3.Deprovision == nil || !resp3.Deprovision.At.Equal(later) {
		t.Fatalf("cancel response %+v", resp3)
	}
	if c := r.get("acme"); c.Deprovision != nil {
		t.Fatalf("cancelled but stored %+v", c.Deprovision)
	}
	// Nothing scheduled: nothing to cancel.
	if _, e := r.cancel("acme"); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "no deprovisioning is scheduled") ||
		!strings.HasPrefix(e.Error(), "cancellation refused") {
		t.Fatalf("second cancel: %+v", e)
	}

	msgs := r.lifecycleMsgs()
	if len(msgs) != 4 || msgs[0].Subject != events.SubjectKeyEnrolled("acme") {
		t.Fatalf("%d lifecycle messages, want KeyEnrolled and 3 more", len(msgs))
	}
	msgs = msgs[1:]
	wantSubjects := []string{events.SubjectDeprovisionScheduled("acme"), events.SubjectDeprovisionScheduled("acme"), events.SubjectDeprovisionCancelled("acme")}
	wantIDs := []string{"deprovision_scheduled.acme." + itoa(resp.Revision), "deprovision_scheduled.acme." + itoa(resp2.Revision), "deprovision_cancelled.acme." + itoa(resp3.Revision)}
	if len(msgs) != 3 {
		t.Fatalf("%d lifecycle messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.Subject != wantSubjects[i] || m.Header.Get(events.HeaderMsgID) != wantIDs[i] {
			t.Errorf("message %d: %s %s, want %s %s", i, m.Subject, m.Header.Get(events.HeaderMsgID), wantSubjects[i], wantIDs[i])
		}
	}
	s2, err := events.DecodeDeprovisionScheduled(msgs[1].Data)
	if err != nil || !s2.At.Equal(later) || !s2.ScheduledAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("second DeprovisionScheduled %+v, %v", s2, err)
	}
	cn, err := events.DecodeDeprovisionCancelled(msgs[2].Data)
	if err != nil || !cn.At.Equal(later) || !cn.CancelledAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("DeprovisionCancelled %+v, %v", cn, err)
	}
}

func TestDeprovisionInThePastStartsNow(t *testing.T) {
	r := newLifecycleRig(t)
	if _, e := r.add("acme", r.key("p.key"), ""); e != nil {
		t.Fatal(e)
	}
	now := t0.Add(time.Hour)
	r.clock.set(now)
	resp, e := r.schedule("acme", t0.Add(-24*time.Hour))
	if e != nil {
		t.Fatal(e)
	}
	if !resp.Deprovision.At.Equal(now) {
		t.Fatalf("at = %v, want now (%v)", resp.Deprovision.At, now)
	}
	c := r.get("acme")
	if !c.Deprovisioning(now) {
		t.Fatal("not deprovisioning at once")
	}
	// New assets go to the platform key from now on.
	a := tenant.Asset{Service: "team_chat", OwnerUserID: "u", Origin: events.OriginCloud, CreatedAt: now}
	if d := tenant.Decide(c, a, events.KeyStatusAvailable); d.Mode != events.ModePlatform || d.Coverage != tenant.CoverageDeprovisioned {
		t.Errorf("decision after scheduling now: %+v", d)
	}
	// Started: it can be neither cancelled nor rescheduled, and no key can
	// be added.
	r.clock.set(now.Add(time.Minute))
	if _, e := r.cancel("acme"); e == nil || e.Code != enroll.CodeConflict ||
		!strings.Contains(e.Message, "deprovisioning started at "+now.Format(time.RFC3339)+"; it cannot be cancelled; it completes with DeprovisionCompleted") {
		t.Fatalf("cancel after start: %+v", e)
	}
	if _, e := r.schedule("acme", now.Add(48*time.Hour)); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "cannot be rescheduled") {
		t.Fatalf("reschedule after start: %+v", e)
	}
	other := t.TempDir() + "/replica.key"
	if err := localkms.CreateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	if _, e := r.add("acme", "localkms://"+other, tenant.RoleReplica); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "being deprovisioned") {
		t.Fatalf("add during deprovisioning: %+v", e)
	}
}

func TestDeprovisionRefusals(t *testing.T) {
	r := newLifecycleRig(t)
	if _, e := r.schedule("globex", t0); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "no configuration") {
		t.Fatalf("unknown tenant: %+v", e)
	}
	if _, e := r.cancel("globex"); e == nil || e.Code != enroll.CodeConflict {
		t.Fatalf("cancel for an unknown tenant: %+v", e)
	}
	// A tenant without keys has nothing to deprovision.
	if _, err := r.store.Create(context.Background(), &tenant.Config{TenantID: "initech"}); err != nil {
		t.Fatal(err)
	}
	if _, e := r.schedule("initech", t0); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "no keys") ||
		!strings.HasPrefix(e.Error(), "deprovisioning refused") {
		t.Fatalf("no keys: %+v", e)
	}
	// A deprovisioned tenant (as the re-encryptor leaves it).
	done := t0.Add(-time.Hour)
	if _, err := r.store.Create(context.Background(), &tenant.Config{TenantID: "hooli", DeprovisionedAt: &done}); err != nil {
		t.Fatal(err)
	}
	if _, e := r.schedule("hooli", t0); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "was deprovisioned") {
		t.Fatalf("deprovisioned: %+v", e)
	}
	if _, e := r.cancel("hooli"); e == nil || e.Code != enroll.CodeConflict || !strings.Contains(e.Message, "cannot be cancelled") {
		t.Fatalf("cancel deprovisioned: %+v", e)
	}
	// Enrolling again starts afresh.
	resp, e := r.add("hooli", r.key("h.key"), "")
	if e != nil {
		t.Fatal(e)
	}
	if c := r.get("hooli"); c.DeprovisionedAt != nil || c.Deprovision != nil || !c.Enrolled() || c.Revision != resp.Revision {
		t.Fatalf("re-enrolled %+v", c)
	}
	// A request without "at" on the wire is refused with the field named.
	m, err := r.client.Do(context.Background(), enroll.Request{Op: enroll.OpDeprovisionSchedule, TenantID: "hooli"})
	if e := asRefusal(t, err); e == nil || e.Code != enroll.CodeInvalidRequest || !strings.Contains(e.Message, "at is required") {
		t.Fatalf("no at: %+v %+v", m, e)
	}
	if _, err := r.client.Do(context.Background(), enroll.Request{Op: "delete", TenantID: "hooli"}); asRefusal(t, err) == nil || asRefusal(t, err).Code != enroll.CodeInvalidRequest {
		t.Fatalf("unknown op: %v", err)
	}
	// Only the enrollment of hooli published something.
	if msgs := r.lifecycleMsgs(); len(msgs) != 1 || msgs[0].Subject != events.SubjectKeyEnrolled("hooli") {
		t.Errorf("refusals published lifecycle events: %d messages", len(msgs))
	}
}

// An older client's request (no "op") still enrolls.
func TestEnrollWithoutOpIsAdd(t *testing.T) {
	r := newLifecycleRig(t)
	uri := r.key("p.key")
	m, err := r.client.Do(context.Background(), enroll.Request{TenantID: "acme", KeyURI: uri})
	if err != nil || m.Key == nil || m.Key.Role != tenant.RolePrimary {
		t.Fatalf("%+v, %v", m, err)
	}
}

// A key added is announced by KeyEnrolled with the stored enrollment time
// and the revision in its message id; a refused add publishes nothing.
func TestEnrollPublishesKeyEnrolled(t *testing.T) {
	r := newLifecycleRig(t)
	r.clock.set(t0.Add(1500 * time.Millisecond))
	uri := r.key("p.key")
	resp, e := r.add("acme", uri, "")
	if e != nil {
		t.Fatal(e)
	}
	if resp.Warning != "" {
		t.Errorf("warning %q", resp.Warning)
	}
	if _, e := r.add("acme", uri, tenant.RoleReplica); e == nil {
		t.Fatal("enrolling a key twice was accepted")
	}
	msgs := r.lifecycleMsgs()
	if len(msgs) != 1 {
		t.Fatalf("%d lifecycle messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Subject != events.SubjectKeyEnrolled("acme") || m.Header.Get(events.HeaderMsgID) != "key_enrolled.acme."+itoa(resp.Revision) ||
		m.Header.Get(events.HeaderCEType) != events.TypeKeyEnrolled {
		t.Errorf("message %s %v", m.Subject, m.Header)
	}
	ev, err := events.DecodeKeyEnrolled(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	want := events.KeyEnrolled{TenantID: "acme", KeyURI: uri, Role: events.EnrolledPrimary, KeyVersion: resp.KeyVersion, EnrolledAt: t0.Add(time.Second)}
	if *ev != want || !ev.EnrolledAt.Equal(resp.Key.EnrolledAt) {
		t.Errorf("event %+v, want %+v (stored enrollment time %v)", *ev, want, resp.Key.EnrolledAt)
	}
}

// When KW_LIFECYCLE cannot take the event, the key stays enrolled and the
// response carries a warning naming the event and the revision.
func TestEnrollPublishFailureIsAWarning(t *testing.T) {
	r := newLifecycleRig(t)
	if err := r.js.DeleteStream(context.Background(), events.StreamLifecycle); err != nil {
		t.Fatal(err)
	}
	uri := r.key("p.key")
	resp, e := r.add("acme", uri, "")
	if e != nil {
		t.Fatal(e)
	}
	if !strings.Contains(resp.Warning, "revision "+itoa(resp.Revision)) || !strings.Contains(resp.Warning, events.TypeKeyEnrolled) ||
		!strings.Contains(resp.Warning, "only the notification is missing") {
		t.Errorf("warning %q", resp.Warning)
	}
	if c := r.get("acme"); len(c.Keys) != 1 || c.Keys[0].URI != uri || c.Revision != resp.Revision {
		t.Errorf("stored %+v", c)
	}
}
