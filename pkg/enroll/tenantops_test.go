package enroll_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

func (r *lifecycleRig) apply(tenantID, doc string) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.Apply(context.Background(), tenantID, []byte(doc))
	return resp, asRefusal(r.t, err)
}

func (r *lifecycleRig) recipients(tenantID string, add, remove []string) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.Recipients(context.Background(), tenantID, add, remove)
	return resp, asRefusal(r.t, err)
}

func (r *lifecycleRig) phone(tenantID string, drop bool) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.PhoneSettings(context.Background(), tenantID, drop)
	return resp, asRefusal(r.t, err)
}

func docField(t *testing.T, raw json.RawMessage, field string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return string(m[field])
}

// TestApplyCreatesAndUpdates: apply creates a tenant (TenantChanged
// without before, every field listed) and replaces it (before and after,
// only the fields that changed); the stored document is the one applied.
func TestApplyCreatesAndUpdates(t *testing.T) {
	r := newLifecycleRig(t)
	resp, e := r.apply("acme", `{"tenant_id":"acme","services":["*"],"licensed_users":["*"],"fallback_enabled":true,"phone":{"drop_calls":false}}`)
	if e != nil {
		t.Fatal(e)
	}
	if resp.Warning != "" || resp.Tenant == nil || !resp.Tenant.Fallback || resp.Revision == 0 {
		t.Fatalf("%+v", resp)
	}
	uri := r.key("p.key")
	doc := fmt.Sprintf(`{"tenant_id":"acme","keys":[{"uri":%q,"role":"primary","enrolled_at":"2026-11-28T12:00:00Z"}],"services":["*"],"licensed_users":["*"],"recipients":["sec@acme.example"],"fallback_enabled":true,"phone":{"drop_calls":false}}`, uri)
	resp2, e := r.apply("acme", doc)
	if e != nil {
		t.Fatal(e)
	}
	if c := r.get("acme"); c.Revision != resp2.Revision || len(c.Keys) != 1 || !slices.Equal(c.Recipients, []string{"sec@acme.example"}) {
		t.Fatalf("stored %+v", c)
	}
	evs := r.tenantChanged()
	if len(evs) != 2 {
		t.Fatalf("%d TenantChanged, want 2", len(evs))
	}
	created, updated := evs[0], evs[1]
	if created.Op != events.TenantOpApply || created.Before != nil || created.Revision != resp.Revision ||
		!slices.Equal(created.Fields, []string{"fallback_enabled", "licensed_users", "phone", "services", "tenant_id"}) {
		t.Errorf("creation %+v", created)
	}
	if *created.ChangedBy != (events.ChangedBy{}) {
		t.Errorf("changed_by %+v without authentication, want empty", created.ChangedBy)
	}
	if updated.Op != events.TenantOpApply || updated.Revision != resp2.Revision || !slices.Equal(updated.Fields, []string{"keys", "recipients"}) {
		t.Errorf("update %+v", updated)
	}
	if got := docField(t, updated.Before, "recipients"); got != "" {
		t.Errorf("before has recipients %s", got)
	}
	if got := docField(t, updated.After, "recipients"); got != `["sec@acme.example"]` {
		t.Errorf("after has recipients %s", got)
	}
}

// TestApplyRefusals: a document that is not valid, of another tenant, or
// naming another tenant's key is refused, and nothing is stored or published.
func TestApplyRefusals(t *testing.T) {
	r := newLifecycleRig(t)
	uri := r.key("globex.key")
	if _, e := r.add("globex", uri, ""); e != nil {
		t.Fatal(e)
	}
	before := len(r.tenantChanged())
	for _, tc := range []struct{ name, doc, code, mention string }{
		{"unknown field", `{"tenant_id":"acme","fallback":true}`, enroll.CodeInvalidDocument, "fallback"},
		{"bad recipient", `{"tenant_id":"acme","recipients":["not an address"]}`, enroll.CodeInvalidDocument, "recipients[0]"},
		// Today's silent loss of coverage: a misspelt service is refused,
		// with the name it most likely meant.
		{"misspelt service", `{"tenant_id":"acme","services":["cloud_recordings"]}`, enroll.CodeInvalidDocument, `did you mean "cloud_recording"?`},
		{"unknown service", `{"tenant_id":"acme","services":["telepathy"]}`, enroll.CodeInvalidDocument, "use one of cloud_recording"},
		{"another tenant's document", `{"tenant_id":"hooli"}`, enroll.CodeInvalidRequest, "hooli"},
		{"another tenant's key", fmt.Sprintf(`{"tenant_id":"acme","keys":[{"uri":%q,"role":"primary","enrolled_at":"2026-11-28T12:00:00Z"}]}`, uri), enroll.CodeKeyInUse, "another tenant"},
	} {
		_, e := r.apply("acme", tc.doc)
		if e == nil || e.Code != tc.code || !strings.Contains(e.Message, tc.mention) {
			t.Errorf("%s: %v, want %s mentioning %q", tc.name, e, tc.code, tc.mention)
		}
	}
	if _, err := r.store.Get(context.Background(), "acme"); err == nil {
		t.Error("a refused apply stored acme")
	}
	if n := len(r.tenantChanged()); n != before {
		t.Errorf("refusals published %d TenantChanged", n-before)
	}
}

// TestRecipients: add (idempotent), remove (an address not listed refuses
// the whole request), each change one TenantChanged; no change, no event.
func TestRecipients(t *testing.T) {
	r := newLifecycleRig(t)
	if _, e := r.recipients("acme", []string{"a@acme.example"}, nil); e == nil || e.Code != enroll.CodeUnknownTenant {
		t.Fatalf("unknown tenant: %v", e)
	}
	if _, e := r.add("acme", r.key("p.key"), ""); e != nil {
		t.Fatal(e)
	}
	resp, e := r.recipients("acme", []string{"a@acme.example", "b@acme.example"}, nil)
	if e != nil || !slices.Equal(resp.Added, []string{"a@acme.example", "b@acme.example"}) || !slices.Equal(resp.Recipients, resp.Added) {
		t.Fatalf("%+v, %v", resp, e)
	}
	resp, e = r.recipients("acme", []string{"A@acme.example"}, nil)
	if e != nil || !resp.NoChange || !slices.Equal(resp.Unchanged, []string{"a@acme.example"}) {
		t.Fatalf("again: %+v, %v", resp, e)
	}
	resp, e = r.recipients("acme", nil, []string{"B@ACME.example", "c@acme.example"})
	if e == nil || e.Code != enroll.CodeNotRecipient || !slices.Equal(resp.Absent, []string{"c@acme.example"}) ||
		!slices.Equal(resp.Recipients, []string{"a@acme.example", "b@acme.example"}) {
		t.Fatalf("absent: %+v, %v", resp, e)
	}
	if _, e := r.recipients("acme", []string{"not an address"}, nil); e == nil || e.Code != enroll.CodeInvalidRequest {
		t.Fatalf("invalid address: %v", e)
	}
	resp, e = r.recipients("acme", nil, []string{"B@ACME.example"})
	if e != nil || !slices.Equal(resp.Removed, []string{"b@acme.example"}) || !slices.Equal(r.get("acme").Recipients, []string{"a@acme.example"}) {
		t.Fatalf("remove: %+v, %v", resp, e)
	}
	var ops []string
	for _, ev := range r.tenantChanged() {
		ops = append(ops, ev.Op+":"+strings.Join(ev.Fields, ","))
	}
	if want := []string{"key_enrolled:fallback_enabled,keys,licensed_users,phone,services,tenant_id", "recipients:recipients", "recipients:recipients"}; !slices.Equal(ops, want) {
		t.Errorf("TenantChanged %v, want %v", ops, want)
	}
}

// TestPhoneSettings: a change stores drop_calls and publishes
// PhoneSettingsChanged and TenantChanged at its revision; the same value
// again changes and publishes nothing.
func TestPhoneSettings(t *testing.T) {
	r := newLifecycleRig(t)
	if _, e := r.phone("acme", true); e == nil || e.Code != enroll.CodeUnknownTenant {
		t.Fatalf("unknown tenant: %v", e)
	}
	if _, e := r.add("acme", r.key("p.key"), ""); e != nil {
		t.Fatal(e)
	}
	resp, e := r.phone("acme", true)
	if e != nil || resp.NoChange || resp.Previous == nil || *resp.Previous || resp.EventID != events.PhoneSettingsChangedMsgID("acme", resp.Revision) || resp.Warning != "" {
		t.Fatalf("%+v, %v", resp, e)
	}
	if !r.get("acme").Phone.DropCalls {
		t.Fatal("drop_calls not stored")
	}
	again, e := r.phone("acme", true)
	if e != nil || !again.NoChange || again.Revision != resp.Revision || again.EventID != "" {
		t.Fatalf("again: %+v, %v", again, e)
	}
	var phone []*events.PhoneSettingsChanged
	for _, m := range r.lifecycleMsgs() {
		if m.Subject == events.SubjectPhoneSettingsChanged("acme") {
			ev, err := events.DecodePhoneSettingsChanged(m.Data)
			if err != nil || m.Header.Get(events.HeaderMsgID) != resp.EventID {
				t.Fatalf("%v %v", err, m.Header)
			}
			phone = append(phone, ev)
		}
	}
	if len(phone) != 1 || !phone[0].DropCalls || phone[0].Previous {
		t.Errorf("PhoneSettingsChanged %+v", phone)
	}
	evs := r.tenantChanged()
	if last := evs[len(evs)-1]; len(evs) != 2 || last.Op != events.TenantOpPhoneSettings || last.Revision != resp.Revision || !slices.Equal(last.Fields, []string{"phone"}) {
		t.Errorf("TenantChanged %+v", evs)
	}
}

// TestKeyOpsPublishTenantChanged: rotation and a deprovisioning schedule
// and cancellation are each announced with their op, the keys and
// deprovision fields, before and after.
func TestKeyOpsPublishTenantChanged(t *testing.T) {
	r := newLifecycleRig(t)
	if _, e := r.add("acme", r.key("p.key"), ""); e != nil {
		t.Fatal(e)
	}
	rot, e := r.rotate("acme", r.key("q.key"))
	if e != nil {
		t.Fatal(e)
	}
	evs := r.tenantChanged()
	if len(evs) != 2 || evs[1].Op != events.TenantOpRotation || evs[1].Revision != rot.Revision || !slices.Equal(evs[1].Fields, []string{"keys"}) ||
		evs[1].Before == nil {
		t.Fatalf("after rotation %+v", evs)
	}
	var before, after tenant.Config
	if json.Unmarshal(evs[1].Before, &before) != nil || json.Unmarshal(evs[1].After, &after) != nil || len(before.Keys) != 1 || len(after.Keys) != 2 {
		t.Errorf("before %s after %s", evs[1].Before, evs[1].After)
	}
	if _, e := r.schedule("acme", t0.Add(48*3600e9)); e != nil {
		t.Fatal(e)
	}
	if _, e := r.cancel("acme"); e != nil {
		t.Fatal(e)
	}
	evs = r.tenantChanged()
	if len(evs) != 4 || evs[2].Op != events.TenantOpDeprovisionScheduled || evs[3].Op != events.TenantOpDeprovisionCancelled ||
		!slices.Equal(evs[2].Fields, []string{"deprovision"}) || !slices.Equal(evs[3].Fields, []string{"deprovision"}) {
		t.Errorf("deprovisioning %+v", evs)
	}
}
