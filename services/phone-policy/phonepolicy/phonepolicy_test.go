package phonepolicy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/tenant/tenanttest"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
)

type stack struct {
	t       *testing.T
	env     *natstest.Env
	dir     string
	tenants *tenant.Store
	pub     *events.Publisher
	w       *phonepolicy.Worker
	stop    func()

	mu      sync.Mutex
	actions []events.CallAction
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{t: t, env: natstest.Start(t), dir: t.TempDir()}
	var err error
	if s.tenants, err = tenant.OpenStore(context.Background(), s.env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true))); err != nil {
		t.Fatal(err)
	}
	s.pub = events.NewPublisher(s.env.JS, "test-phone-system")
	sub, err := s.env.NC.Subscribe(events.SubjectCallActionAll, func(m *nats.Msg) {
		a, err := events.DecodeCallAction(m.Data)
		if err != nil {
			t.Errorf("CallAction: %v", err)
			return
		}
		s.mu.Lock()
		s.actions = append(s.actions, *a)
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	t.Cleanup(func() { s.stopWorker() })
	return s
}

func (s *stack) start() {
	s.t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := phonepolicy.New(ctx, phonepolicy.Deps{NC: s.env.NC, JS: s.env.JS}, phonepolicy.Options{AllowLocalCustomerKeys: true, Logger: log})
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	s.w = w
	s.stop = func() { cancel(); <-done }
	deadline := time.Now().Add(10 * time.Second)
	for w.Ready() != nil {
		if time.Now().After(deadline) {
			s.t.Fatal("phone-policy not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *stack) stopWorker() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// tenant applies a tenant with a new local key and returns the key URI.
func (s *stack) tenant(id string, mutate ...func(*tenant.Config)) string {
	s.t.Helper()
	key := tenanttest.LocalKey(s.t, s.dir, id+".key")
	cfg := tenanttest.Covered(id, key, mutate...)
	if _, err := s.tenants.Apply(context.Background(), cfg); err != nil {
		s.t.Fatal(err)
	}
	return key.String()
}

func (s *stack) setStatus(tenantID, key string, st events.KeyStatus) {
	s.t.Helper()
	kv, err := s.env.JS.KeyValue(context.Background(), events.BucketKeyStatus)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := keystatus.Put(context.Background(), kv, keystatus.Record{TenantID: tenantID, KeyURI: key, Status: st, Reason: "test", Since: time.Now().UTC()}); err != nil {
		s.t.Fatal(err)
	}
}

// admit sends an admission request over NATS and decodes the reply.
func (s *stack) admit(subjectTenant string, body any) events.CallDecision {
	s.t.Helper()
	var data []byte
	switch b := body.(type) {
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			s.t.Fatal(err)
		}
	}
	m, err := s.env.NC.Request(events.SubjectPhoneAdmit(subjectTenant), data, 2*time.Second)
	if err != nil {
		s.t.Fatalf("admission request: %v", err)
	}
	var d events.CallDecision
	if err := json.Unmarshal(m.Data, &d); err != nil {
		s.t.Fatal(err)
	}
	return d
}

func call(tenantID, callID, user string, rec bool) events.CallAdmission {
	return events.CallAdmission{CallID: callID, TenantID: tenantID, UserID: user, Direction: events.DirectionInbound, RecordingRequested: rec}
}

// eventually polls cond for up to 10 s.
func (s *stack) eventually(what string, cond func() bool) {
	s.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The decision table, row by row, through NATS request-reply.
func TestDecisionTable(t *testing.T) {
	s := newStack(t)
	covered := s.tenant("covered")
	s.tenant("unlicensed", func(c *tenant.Config) { c.LicensedUsers = []string{"u-licensed"} })
	s.tenant("no-phone", func(c *tenant.Config) { c.Services = []string{"meeting_chat"} })
	if _, err := s.tenants.Apply(context.Background(), &tenant.Config{TenantID: "not-enrolled", Services: []string{"*"}, LicensedUsers: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	degraded := s.tenant("degraded")
	s.setStatus("degraded", degraded, events.KeyStatusDegraded)
	down := s.tenant("down")
	s.setStatus("down", down, events.KeyStatusUnavailable)
	downStrict := s.tenant("down-strict", func(c *tenant.Config) { c.Fallback = false })
	s.setStatus("down-strict", downStrict, events.KeyStatusUnavailable)
	downDrop := s.tenant("down-drop", func(c *tenant.Config) { c.Fallback = false; c.Phone.DropCalls = true })
	s.setStatus("down-drop", downDrop, events.KeyStatusUnavailable)
	revoked := s.tenant("revoked", func(c *tenant.Config) { c.Phone.DropCalls = true })
	s.setStatus("revoked", revoked, events.KeyStatusRevoked)
	revokedAny := s.tenant("revoked-any", func(c *tenant.Config) { c.FallbackOn = tenant.FallbackOnAny })
	s.setStatus("revoked-any", revokedAny, events.KeyStatusRevoked)
	// A key on its own endpoint (an AWS region), so its breaker is its own.
	breakerKey := "awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	if _, err := s.tenants.Apply(context.Background(), &tenant.Config{TenantID: "breaker-open", Services: []string{"*"}, LicensedUsers: []string{"*"}, Fallback: true,
		Keys: []tenant.Key{{URI: breakerKey, Role: tenant.RolePrimary, EnrolledAt: time.Now().Add(-time.Hour).UTC()}}}); err != nil {
		t.Fatal(err)
	}
	s.start()

	// An encryptor's breaker for breaker-open's endpoint is open.
	k := kms.MustParseKeyURI(breakerKey)
	bc := &events.BreakerStateChanged{Provider: k.Scheme, Endpoint: k.EndpointID(), From: "closed", To: "open", Worker: "encryptor/test", At: time.Now().UTC()}
	data, _ := json.Marshal(bc)
	if err := s.env.NC.Publish(events.SubjectBreaker(k.Scheme), data); err != nil {
		t.Fatal(err)
	}
	s.env.NC.Flush()
	time.Sleep(100 * time.Millisecond)

	for _, row := range []struct {
		name     string
		tenant   string
		user     string
		rec      bool
		decision events.CallDecisionKind
		mode     events.Mode
		reason   string
	}{
		{"recording not requested", "covered", "u", false, events.DecisionNoRecord, "", "recording_not_requested"},
		{"covered, key available", "covered", "u", true, events.DecisionRecord, events.ModeCustomer, "covered"},
		{"covered, key degraded", "degraded", "u", true, events.DecisionRecord, events.ModeCustomer, "covered"},
		{"user not licensed", "unlicensed", "u-other", true, events.DecisionRecord, events.ModePlatform, "user_not_licensed"},
		{"licensed user", "unlicensed", "u-licensed", true, events.DecisionRecord, events.ModeCustomer, "covered"},
		{"phone recordings not selected", "no-phone", "u", true, events.DecisionRecord, events.ModePlatform, "service_not_selected"},
		{"tenant not enrolled", "not-enrolled", "u", true, events.DecisionRecord, events.ModePlatform, "not_enrolled"},
		{"key unavailable, fallback on", "down", "u", true, events.DecisionRecordFallback, events.ModeFallback, "customer_key_unavailable"},
		{"key unavailable, fallback off", "down-strict", "u", true, events.DecisionNoRecord, "", "customer_key_unavailable"},
		{"key unavailable, fallback off, drop calls", "down-drop", "u", true, events.DecisionDrop, "", "customer_key_unavailable"},
		{"key revoked, fallback on outage only, drop calls", "revoked", "u", true, events.DecisionDrop, "", "customer_key_revoked"},
		{"key revoked, fallback on any", "revoked-any", "u", true, events.DecisionRecordFallback, events.ModeFallback, "customer_key_revoked"},
		{"endpoint breaker open, fallback on", "breaker-open", "u", true, events.DecisionRecordFallback, events.ModeFallback, "customer_key_unavailable"},
	} {
		t.Run(row.name, func(t *testing.T) {
			s.t = t
			d := s.admit(row.tenant, call(row.tenant, "c-1", row.user, row.rec))
			if d.Error != nil || d.Decision != row.decision || d.Mode != row.mode || d.Reason != row.reason || d.CallID != "c-1" {
				t.Fatalf("got %+v (error %+v), want %s %q %s", d, d.Error, row.decision, row.mode, row.reason)
			}
		})
	}
	s.t = t
	_ = covered

	// Errors, never silence.
	for _, row := range []struct {
		name    string
		subject string
		body    any
		code    string
		mention string
	}{
		{"unknown tenant", "nobody", call("nobody", "c-1", "u", true), events.CallErrUnknownTenant, "nobody"},
		{"not JSON", "covered", []byte("{not json"), events.CallErrInvalidRequest, ""},
		{"missing call id", "covered", call("covered", "", "u", true), events.CallErrInvalidRequest, "call_id"},
		{"bad direction", "covered", map[string]any{"call_id": "c", "tenant_id": "covered", "user_id": "u", "direction": "sideways", "recording_requested": true}, events.CallErrInvalidRequest, "direction"},
		{"tenant mismatch", "down", call("covered", "c-1", "u", true), events.CallErrTenantMismatch, "covered"},
	} {
		d := s.admit(row.subject, row.body)
		if d.Error == nil || d.Error.Code != row.code || !strings.Contains(d.Error.Message, row.mention) || d.Decision != "" {
			t.Errorf("%s: %+v (error %+v), want error %s mentioning %q", row.name, d, d.Error, row.code, row.mention)
		}
	}
}

// startCall publishes a CallStarted as a phone system does.
func (s *stack) startCall(tenantID, callID string, d events.CallDecision) {
	s.t.Helper()
	e := &events.CallStarted{CallID: callID, TenantID: tenantID, UserID: "u", Direction: events.DirectionOutbound,
		Decision: d.Decision, Mode: d.Mode, StartedAt: time.Now().UTC()}
	if _, err := s.pub.Publish(context.Background(), events.Outgoing{Subject: events.SubjectCallStarted(tenantID),
		MsgID: "started." + tenantID + "." + callID, Type: events.TypeCallStarted, Event: e}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) endCall(tenantID, callID string) {
	s.t.Helper()
	e := &events.CallEnded{CallID: callID, TenantID: tenantID, EndedAt: time.Now().UTC()}
	if _, err := s.pub.Publish(context.Background(), events.Outgoing{Subject: events.SubjectCallEnded(tenantID),
		MsgID: "ended." + tenantID + "." + callID, Type: events.TypeCallEnded, Event: e}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) actionsBy(tenantID string) map[events.CallActionKind]map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[events.CallActionKind]map[string]int{}
	for _, a := range s.actions {
		if a.TenantID != tenantID {
			continue
		}
		if out[a.Action] == nil {
			out[a.Action] = map[string]int{}
		}
		out[a.Action][a.CallID]++
	}
	return out
}

// The key goes away during 100 live calls: each tenant's policy decides
// (drop, stop recording, or nothing under fallback); when the key is back,
// stopped recordings resume. Calls that ended, or were not recorded under
// the customer key, are left alone.
func TestLiveCallsFollowTheKey(t *testing.T) {
	s := newStack(t)
	keys := map[string]string{
		"dropper": s.tenant("dropper", func(c *tenant.Config) { c.Fallback = false; c.Phone.DropCalls = true }),
		"stopper": s.tenant("stopper", func(c *tenant.Config) { c.Fallback = false }),
		"faller":  s.tenant("faller"),
	}
	s.start()
	n := 0
	for _, id := range []string{"dropper", "stopper", "faller"} {
		for i := range 33 {
			d := s.admit(id, call(id, fmt.Sprintf("%s-%02d", id, i), "u", true))
			if d.Decision != events.DecisionRecord || d.Mode != events.ModeCustomer {
				t.Fatalf("admission: %+v", d)
			}
			s.startCall(id, fmt.Sprintf("%s-%02d", id, i), d)
			n++
		}
	}
	// One more call, not recorded under the customer key, and one that ends.
	s.startCall("stopper", "platform-call", events.CallDecision{Decision: events.DecisionRecord, Mode: events.ModePlatform})
	s.endCall("stopper", "stopper-32")
	s.eventually("the worker to know every live call", func() bool { return s.w.LiveCalls() == n })

	for id, key := range keys {
		s.setStatus(id, key, events.KeyStatusUnavailable)
	}
	s.eventually("the actions", func() bool {
		return len(s.actionsBy("dropper")[events.ActionDrop]) == 33 && len(s.actionsBy("stopper")[events.ActionStopRecording]) == 32
	})
	time.Sleep(300 * time.Millisecond)
	if a := s.actionsBy("faller"); len(a) != 0 {
		t.Fatalf("fallback tenant's calls were acted on: %v", a)
	}
	stop := s.actionsBy("stopper")
	if stop[events.ActionStopRecording]["platform-call"] != 0 || stop[events.ActionStopRecording]["stopper-32"] != 0 || len(stop) != 1 {
		t.Fatalf("stopper actions: %v", stop)
	}
	for _, m := range s.actionsBy("dropper")[events.ActionDrop] {
		if m != 1 {
			t.Fatalf("a call was dropped %d times", m)
		}
	}
	// The key comes back: stopped recordings resume; dropped calls stay dropped.
	for id, key := range keys {
		s.setStatus(id, key, events.KeyStatusAvailable)
	}
	s.eventually("resume actions", func() bool { return len(s.actionsBy("stopper")[events.ActionResumeRecording]) == 32 })
	time.Sleep(300 * time.Millisecond)
	if a := s.actionsBy("dropper")[events.ActionResumeRecording]; len(a) != 0 {
		t.Fatalf("dropped calls resumed: %v", a)
	}
	s.mu.Lock()
	for _, a := range s.actions {
		if a.Reason == "" || a.KeyURI != keys[a.TenantID] {
			t.Errorf("action %+v: reason or key missing", a)
		}
	}
	s.mu.Unlock()
}

// A restarted instance rebuilds tenants, key statuses and live calls before
// it answers (it does not subscribe before), answers the same, and still
// acts on calls that started before the restart.
func TestRestartRebuildsBeforeAnswering(t *testing.T) {
	s := newStack(t)
	key := s.tenant("acme", func(c *tenant.Config) { c.Fallback = false; c.Phone.DropCalls = true })
	s.tenant("globex")
	s.start()
	before := map[string]events.CallDecision{}
	for _, id := range []string{"acme", "globex"} {
		before[id] = s.admit(id, call(id, "c-1", "u", true))
	}
	s.startCall("acme", "live-1", before["acme"])
	s.eventually("the live call", func() bool { return s.w.LiveCalls() == 1 })
	s.stopWorker()

	// Down: nobody answers (no responders), rather than a wrong answer.
	if _, err := s.env.NC.Request(events.SubjectPhoneAdmit("acme"), []byte("{}"), 200*time.Millisecond); err == nil {
		t.Fatal("an admission was answered with no instance running")
	}
	s.start()
	if got := s.w.LiveCalls(); got != 1 {
		t.Fatalf("after restart %d live calls, want 1", got)
	}
	for id, want := range before {
		if got := s.admit(id, call(id, "c-1", "u", true)); got != want {
			t.Fatalf("%s after restart: %+v, before %+v", id, got, want)
		}
	}
	s.setStatus("acme", key, events.KeyStatusRevoked)
	s.eventually("the drop of the call started before the restart", func() bool {
		return s.actionsBy("acme")[events.ActionDrop]["live-1"] == 1
	})
}
