package events_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

func TestPhoneSubjects(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{events.SubjectPhoneAdmit("acme"), "keyward.phone.admit.acme"},
		{events.SubjectCallStarted("acme"), "keyward.phone.call.started.acme"},
		{events.SubjectCallEnded("acme"), "keyward.phone.call.ended.acme"},
		{events.SubjectCallAction("acme"), "keyward.phone.action.acme"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("subject = %q, want %q", tt.got, tt.want)
		}
		tenant, err := events.TenantFromSubject(tt.got)
		if err != nil || tenant != "acme" {
			t.Errorf("TenantFromSubject(%q) = %q, %v, want acme", tt.got, tenant, err)
		}
	}
	var phone []string
	for _, cfg := range events.StreamConfigs(events.ProvisionOptions{}) {
		if cfg.Name == events.StreamPhone {
			phone = cfg.Subjects
		}
	}
	// Call events and actions are stored; admissions (request-reply) are not.
	if !slices.Equal(phone, []string{"keyward.phone.call.*.*", "keyward.phone.action.*"}) {
		t.Errorf("%s subjects = %v", events.StreamPhone, phone)
	}
}

func TestPhoneEventsValidate(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	admission := events.CallAdmission{CallID: "c1", TenantID: "acme", UserID: "u1", Direction: events.DirectionInbound, RecordingRequested: true}
	started := events.CallStarted{CallID: "c1", TenantID: "acme", UserID: "u1", Direction: events.DirectionOutbound,
		Decision: events.DecisionRecord, Mode: events.ModeCustomer, StartedAt: now}
	ended := events.CallEnded{CallID: "c1", TenantID: "acme", EndedAt: now}
	action := events.CallAction{CallID: "c1", TenantID: "acme", Action: events.ActionStopRecording,
		Reason: string(events.ReasonCustomerKeyUnavailable), KeyURI: newKey, At: now}
	unrecorded := started
	unrecorded.Decision, unrecorded.Mode = events.DecisionNoRecord, ""
	longest := admission
	longest.CallID, longest.UserID = strings.Repeat("~", events.MaxCallIDLen), "!"
	for _, v := range []interface{ Validate() error }{&admission, &started, &ended, &action, &unrecorded, &longest} {
		if err := v.Validate(); err != nil {
			t.Errorf("%T: %v", v, err)
		}
	}
	cases := []struct {
		field string
		bad   interface{ Validate() error }
	}{
		{"call_id", func() *events.CallAdmission { e := admission; e.CallID = ""; return &e }()},
		{"call_id", func() *events.CallAdmission {
			e := admission
			e.CallID = strings.Repeat("c", events.MaxCallIDLen+1)
			return &e
		}()},
		{"call_id", func() *events.CallAdmission { e := admission; e.CallID = "call 1"; return &e }()},
		{"call_id", func() *events.CallAdmission { e := admission; e.CallID = "caf\u00e9"; return &e }()},
		{"tenant_id", func() *events.CallAdmission { e := admission; e.TenantID = "acme.>"; return &e }()},
		{"tenant_id", func() *events.CallAdmission { e := admission; e.TenantID = ""; return &e }()},
		{"user_id", func() *events.CallAdmission { e := admission; e.UserID = ""; return &e }()},
		{"user_id", func() *events.CallAdmission { e := admission; e.UserID = "u\t1"; return &e }()},
		{"direction", func() *events.CallAdmission { e := admission; e.Direction = "sideways"; return &e }()},
		{"direction", func() *events.CallAdmission { e := admission; e.Direction = ""; return &e }()},
		{"call_id", func() *events.CallStarted { e := started; e.CallID = ""; return &e }()},
		{"tenant_id", func() *events.CallStarted { e := started; e.TenantID = "*"; return &e }()},
		{"user_id", func() *events.CallStarted {
			e := started
			e.UserID = strings.Repeat("u", events.MaxCallIDLen+1)
			return &e
		}()},
		{"direction", func() *events.CallStarted { e := started; e.Direction = "Inbound"; return &e }()},
		{"decision", func() *events.CallStarted { e := started; e.Decision = "maybe"; return &e }()},
		{"decision", func() *events.CallStarted { e := started; e.Decision = ""; return &e }()},
		{"mode", func() *events.CallStarted { e := started; e.Mode = "cloud"; return &e }()},
		{"started_at", func() *events.CallStarted { e := started; e.StartedAt = time.Time{}; return &e }()},
		{"call_id", func() *events.CallEnded { e := ended; e.CallID = "a\nb"; return &e }()},
		{"tenant_id", func() *events.CallEnded { e := ended; e.TenantID = "Acme"; return &e }()},
		{"ended_at", func() *events.CallEnded { e := ended; e.EndedAt = time.Time{}; return &e }()},
		{"call_id", func() *events.CallAction { e := action; e.CallID = ""; return &e }()},
		{"tenant_id", func() *events.CallAction { e := action; e.TenantID = "ac me"; return &e }()},
		{"action", func() *events.CallAction { e := action; e.Action = "hang_up"; return &e }()},
		{"action", func() *events.CallAction { e := action; e.Action = ""; return &e }()},
		{"reason", func() *events.CallAction { e := action; e.Reason = ""; return &e }()},
		{"reason", func() *events.CallAction { e := action; e.Reason = strings.Repeat("r", 65); return &e }()},
		{"reason", func() *events.CallAction { e := action; e.Reason = "key\ngone"; return &e }()},
		{"at", func() *events.CallAction { e := action; e.At = time.Time{}; return &e }()},
	}
	for _, c := range cases {
		wantFieldError(t, c.bad.Validate(), c.field)
	}
	// Every problem is reported at once.
	bad := events.CallAdmission{CallID: "", TenantID: "*", UserID: "", Direction: "up"}
	for _, field := range []string{"call_id", "tenant_id", "user_id", "direction"} {
		wantFieldError(t, bad.Validate(), field)
	}
}

// TestInvalidCallAdmissionAgree: CallAdmission documents the schema
// rejects, Go rejects too; both accept each direction.
func TestInvalidCallAdmissionAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"call_id": "c1", "tenant_id": "acme", "user_id": "u1", "direction": "inbound", "recording_requested": true}
	}
	cases := map[string]func(m map[string]any){
		"missing call":         func(m map[string]any) { delete(m, "call_id") },
		"empty call":           func(m map[string]any) { m["call_id"] = "" },
		"call with space":      func(m map[string]any) { m["call_id"] = "c 1" },
		"call non-ASCII":       func(m map[string]any) { m["call_id"] = "c\u00e91" },
		"call too long":        func(m map[string]any) { m["call_id"] = strings.Repeat("c", events.MaxCallIDLen+1) },
		"missing tenant":       func(m map[string]any) { delete(m, "tenant_id") },
		"tenant wildcard":      func(m map[string]any) { m["tenant_id"] = "*" },
		"tenant with dot":      func(m map[string]any) { m["tenant_id"] = "ac.me" },
		"empty user":           func(m map[string]any) { m["user_id"] = "" },
		"user control char":    func(m map[string]any) { m["user_id"] = "u\x7f" },
		"bad direction":        func(m map[string]any) { m["direction"] = "sideways" },
		"missing direction":    func(m map[string]any) { delete(m, "direction") },
		"recording as string":  func(m map[string]any) { m["recording_requested"] = "yes" },
		"unknown field":        func(m map[string]any) { m["decision"] = "record" },
		"call id as number":    func(m map[string]any) { m["call_id"] = 7 },
		"direction upper case": func(m map[string]any) { m["direction"] = "Inbound" },
	}
	schemaAndGoAgree(t, "call_admission.schema.json", base, decodeErr(events.DecodeCallAdmission), cases, map[string]mutation{
		"inbound":      func(map[string]any) {},
		"outbound":     func(m map[string]any) { m["direction"] = "outbound" },
		"not recorded": func(m map[string]any) { m["recording_requested"] = false },
		"longest ids":  func(m map[string]any) { m["call_id"], m["user_id"] = strings.Repeat("~", events.MaxCallIDLen), "!" },
	})
	// Go's bool has no "absent": the schema is stricter and requires
	// recording_requested, Go reads it as false (no recording).
	m := base()
	delete(m, "recording_requested")
	raw, _ := json.Marshal(m)
	sch, _ := compile(t, "call_admission.schema.json")
	if schemaErr, goErr := sch.Validate(instance(t, raw)), decodeErr(events.DecodeCallAdmission)(raw); schemaErr == nil || goErr != nil {
		t.Errorf("recording omitted: schema %v, Go %v; want schema to refuse, Go to accept as false", schemaErr, goErr)
	}
}

// TestInvalidCallStartedAgree: CallStarted documents the schema rejects, Go
// rejects too; both accept each decision.
func TestInvalidCallStartedAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"call_id": "c1", "tenant_id": "acme", "user_id": "u1", "direction": "outbound",
			"decision": "record", "mode": "customer", "started_at": "2026-11-28T10:15:02Z"}
	}
	cases := map[string]func(m map[string]any){
		"empty call":       func(m map[string]any) { m["call_id"] = "" },
		"tenant wildcard":  func(m map[string]any) { m["tenant_id"] = ">" },
		"user with space":  func(m map[string]any) { m["user_id"] = "u 1" },
		"bad direction":    func(m map[string]any) { m["direction"] = "both" },
		"bad decision":     func(m map[string]any) { m["decision"] = "maybe" },
		"missing decision": func(m map[string]any) { delete(m, "decision") },
		"bad mode":         func(m map[string]any) { m["mode"] = "cloud" },
		"missing time":     func(m map[string]any) { delete(m, "started_at") },
		"bad time":         func(m map[string]any) { m["started_at"] = "now" },
		"unknown field":    func(m map[string]any) { m["reason"] = "covered" },
	}
	accept := map[string]mutation{}
	for _, d := range []events.CallDecisionKind{events.DecisionRecord, events.DecisionRecordFallback, events.DecisionNoRecord, events.DecisionDrop} {
		accept[string(d)] = func(m map[string]any) {
			m["decision"] = string(d)
			if d == events.DecisionNoRecord || d == events.DecisionDrop {
				delete(m, "mode")
			}
		}
	}
	schemaAndGoAgree(t, "call_started.schema.json", base, decodeErr(events.DecodeCallStarted), cases, accept)
}

// TestCallDecisionSchema: every reply the worker can build — each decision
// and each error code — is one the schema accepts, and the schema refuses a
// reply mixing a decision and an error.
func TestCallDecisionSchema(t *testing.T) {
	sch, _ := compile(t, "call_decision.schema.json")
	replies := []events.CallDecision{
		{CallID: "c1", Decision: events.DecisionRecord, Mode: events.ModeCustomer, Reason: "covered"},
		{CallID: "c1", Decision: events.DecisionRecord, Mode: events.ModePlatform, Reason: "user_not_licensed"},
		{CallID: "c1", Decision: events.DecisionRecordFallback, Mode: events.ModeFallback, Reason: string(events.ReasonCustomerKeyUnavailable)},
		{CallID: "c1", Decision: events.DecisionNoRecord, Reason: "recording_not_requested"},
		{CallID: "c1", Decision: events.DecisionDrop, Reason: string(events.ReasonCustomerKeyRevoked)},
	}
	for _, code := range []string{events.CallErrInvalidRequest, events.CallErrUnknownTenant, events.CallErrTenantMismatch, events.CallErrNotReady} {
		replies = append(replies, events.CallDecision{Error: &events.CallError{Code: code, Message: "m"}})
	}
	for _, r := range replies {
		raw, _ := json.Marshal(r)
		if err := sch.Validate(instance(t, raw)); err != nil {
			t.Errorf("schema rejects the reply %s: %v", raw, err)
		}
	}
	for _, raw := range []string{
		`{}`,
		`{"call_id":"c1","decision":"record","reason":"covered","error":{"code":"not_ready","message":"m"}}`,
		`{"decision":"record","error":{"code":"not_ready","message":"m"}}`,
		`{"error":{"code":"busy","message":"m"}}`,
		`{"call_id":"c1","decision":"maybe","reason":"covered"}`,
		`{"call_id":"c1","decision":"record"}`,
	} {
		if err := sch.Validate(instance(t, []byte(raw))); err == nil {
			t.Errorf("schema accepts %s", raw)
		}
	}
}

func FuzzDecodeCallAdmission(f *testing.F) {
	f.Add([]byte(`{"call_id":"c1","tenant_id":"acme","user_id":"u1","direction":"inbound","recording_requested":true}`))
	f.Add([]byte(`{"call_id":"c 1","tenant_id":"acme.*","user_id":"","direction":"up","recording_requested":"yes"}`))
	f.Add([]byte(`{"call_id":"\u00e9","direction":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeCallAdmission, func(e *events.CallAdmission) string {
			if !e.Direction.Valid() || !printableID(e.CallID) || !printableID(e.UserID) {
				t.Fatalf("accepted direction %q, call %q, user %q", e.Direction, e.CallID, e.UserID)
			}
			return e.TenantID
		})
	})
}

func FuzzDecodeCallStarted(f *testing.F) {
	f.Add([]byte(`{"call_id":"c1","tenant_id":"acme","user_id":"u1","direction":"outbound","decision":"record_fallback","mode":"fallback","started_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"call_id":"c1","tenant_id":"acme","user_id":"u1","direction":"inbound","decision":"","mode":"cloud","started_at":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"started_at":"2026-01-01T00:00:00+14:00","mode":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeCallStarted, func(e *events.CallStarted) string {
			if !e.Decision.Valid() || (e.Mode != "" && !e.Mode.Valid()) || !printableID(e.CallID) || e.StartedAt.IsZero() {
				t.Fatalf("accepted decision %q, mode %q, call %q, started %v", e.Decision, e.Mode, e.CallID, e.StartedAt)
			}
			return e.TenantID
		})
	})
}

func FuzzDecodeCallEnded(f *testing.F) {
	f.Add([]byte(`{"call_id":"c1","tenant_id":"acme","ended_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"call_id":"","tenant_id":"acme","ended_at":"2026-01-01T00:00:00.123456789-07:00"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeCallEnded, func(e *events.CallEnded) string {
			if !printableID(e.CallID) || e.EndedAt.IsZero() {
				t.Fatalf("accepted call %q ended %v", e.CallID, e.EndedAt)
			}
			return e.TenantID
		})
	})
}

func FuzzDecodeCallAction(f *testing.F) {
	f.Add([]byte(`{"call_id":"c1","tenant_id":"acme","action":"drop","reason":"customer_key_revoked","key_uri":"localkms:///k","at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"call_id":"c1","tenant_id":"acme","action":"hang_up","reason":"","at":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeCallAction, func(e *events.CallAction) string {
			if !e.Action.Valid() || e.Reason == "" || len(e.Reason) > 64 || !printableID(e.CallID) {
				t.Fatalf("accepted action %q, reason %q, call %q", e.Action, e.Reason, e.CallID)
			}
			return e.TenantID
		})
	})
}

// printableID: 1 to MaxCallIDLen printable ASCII characters, no spaces.
func printableID(s string) bool {
	if s == "" || len(s) > events.MaxCallIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func TestPhoneSettingsChanged(t *testing.T) {
	if got := events.SubjectPhoneSettingsChanged("acme"); got != "keyward.lifecycle.phone_settings_changed.acme" {
		t.Errorf("subject = %q", got)
	}
	if got := events.PhoneSettingsChangedMsgID("acme", 42); got != "phone_settings_changed.acme.42" {
		t.Errorf("msg id = %q", got)
	}
	now := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	ok := events.PhoneSettingsChanged{TenantID: "acme", DropCalls: true, Previous: false, ChangedAt: now}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	cases := []struct {
		field  string
		mutate func(e *events.PhoneSettingsChanged)
	}{
		{"tenant_id", func(e *events.PhoneSettingsChanged) { e.TenantID = "acme.*" }},
		{"drop_calls", func(e *events.PhoneSettingsChanged) { e.Previous = true }},
		{"changed_at", func(e *events.PhoneSettingsChanged) { e.ChangedAt = time.Time{} }},
	}
	for _, c := range cases {
		e := ok
		c.mutate(&e)
		wantFieldError(t, e.Validate(), c.field)
	}
	// The schema refuses what Go refuses: no change is no event.
	sch, _ := compile(t, "phone_settings_changed.schema.json")
	for _, raw := range []string{
		`{"tenant_id":"acme","drop_calls":true,"previous":true,"changed_at":"2026-11-28T10:15:00Z"}`,
		`{"tenant_id":"acme","drop_calls":false,"previous":false,"changed_at":"2026-11-28T10:15:00Z"}`,
		`{"tenant_id":"acme","drop_calls":"on","previous":false,"changed_at":"2026-11-28T10:15:00Z"}`,
		`{"tenant_id":"acme","drop_calls":true,"previous":false,"changed_at":"now"}`,
	} {
		if err := sch.Validate(instance(t, []byte(raw))); err == nil {
			t.Errorf("schema accepts %s", raw)
		}
		if _, err := events.DecodePhoneSettingsChanged([]byte(raw)); err == nil {
			t.Errorf("Go accepts %s", raw)
		}
	}
	raw := `{"tenant_id":"acme","drop_calls":false,"previous":true,"changed_at":"2026-11-28T10:15:00Z"}`
	if err := sch.Validate(instance(t, []byte(raw))); err != nil {
		t.Errorf("schema rejects %s: %v", raw, err)
	}
	if _, err := events.DecodePhoneSettingsChanged([]byte(raw)); err != nil {
		t.Errorf("Go rejects %s: %v", raw, err)
	}
}
