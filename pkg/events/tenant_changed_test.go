package events_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

func TestTenantChanged(t *testing.T) {
	if got := events.SubjectTenantChanged("acme"); got != "keyward.lifecycle.tenant_changed.acme" {
		t.Errorf("subject = %q", got)
	}
	if got := events.TenantChangedMsgID("acme", 42); got != "tenant_changed.acme.42" {
		t.Errorf("msg id = %q", got)
	}
	now := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	ok := events.TenantChanged{
		TenantID: "acme", Revision: 3, Op: events.TenantOpApply, ChangedBy: &events.ChangedBy{}, Fields: []string{"fallback_enabled", "recipients"},
		Before: json.RawMessage(`{"tenant_id":"acme"}`), After: json.RawMessage(`{"tenant_id":"acme"}`), At: now,
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	created := ok
	created.Before = nil
	if err := created.Validate(); err != nil {
		t.Fatalf("a creation (no before): %v", err)
	}
	cases := []struct {
		field  string
		mutate func(e *events.TenantChanged)
	}{
		{"tenant_id", func(e *events.TenantChanged) { e.TenantID = "acme.*" }},
		{"revision", func(e *events.TenantChanged) { e.Revision = 0 }},
		{"op", func(e *events.TenantChanged) { e.Op = "delete" }},
		{"changed_by", func(e *events.TenantChanged) { e.ChangedBy = nil }},
		{"changed_by.name", func(e *events.TenantChanged) { e.ChangedBy = &events.ChangedBy{Name: "a\nb"} }},
		{"fields", func(e *events.TenantChanged) { e.Fields = nil }},
		{"fields[1]", func(e *events.TenantChanged) { e.Fields = []string{"recipients", "keys"} }},
		{"fields[1]", func(e *events.TenantChanged) { e.Fields = []string{"keys", "keys"} }},
		{"fields[0]", func(e *events.TenantChanged) { e.Fields = []string{"Keys"} }},
		{"before", func(e *events.TenantChanged) { e.Before = json.RawMessage(`[1]`) }},
		{"after", func(e *events.TenantChanged) { e.After = nil }},
		{"after", func(e *events.TenantChanged) { e.After = json.RawMessage(`null`) }},
		{"at", func(e *events.TenantChanged) { e.At = time.Time{} }},
	}
	for _, c := range cases {
		e := ok
		c.mutate(&e)
		wantFieldError(t, e.Validate(), c.field)
	}
}

// TestInvalidTenantChangedAgree: TenantChanged documents the schema rejects,
// Go rejects too; both accept each op and a creation.
func TestInvalidTenantChangedAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"tenant_id": "acme", "revision": 4, "op": "recipients",
			"changed_by": map[string]any{"name": "acme-admin", "user": "UABC", "account": "AABC", "role": "tenant_admin"},
			"fields":     []any{"recipients"},
			"before":     map[string]any{"tenant_id": "acme"}, "after": map[string]any{"tenant_id": "acme"},
			"at": "2026-11-28T10:15:00Z",
		}
	}
	cases := map[string]func(m map[string]any){
		"unknown op":          func(m map[string]any) { m["op"] = "delete" },
		"empty op":            func(m map[string]any) { m["op"] = "" },
		"missing op":          func(m map[string]any) { delete(m, "op") },
		"zero revision":       func(m map[string]any) { m["revision"] = 0 },
		"negative revision":   func(m map[string]any) { m["revision"] = -1 },
		"missing revision":    func(m map[string]any) { delete(m, "revision") },
		"missing changed_by":  func(m map[string]any) { delete(m, "changed_by") },
		"null changed_by":     func(m map[string]any) { m["changed_by"] = nil },
		"unknown caller":      func(m map[string]any) { m["changed_by"] = map[string]any{"tenant": "acme"} },
		"missing fields":      func(m map[string]any) { delete(m, "fields") },
		"null fields":         func(m map[string]any) { m["fields"] = nil },
		"repeated field":      func(m map[string]any) { m["fields"] = []any{"keys", "keys"} },
		"bad field":           func(m map[string]any) { m["fields"] = []any{"Keys"} },
		"before array":        func(m map[string]any) { m["before"] = []any{1} },
		"before null":         func(m map[string]any) { m["before"] = nil },
		"after string":        func(m map[string]any) { m["after"] = "{}" },
		"missing after":       func(m map[string]any) { delete(m, "after") },
		"bad time":            func(m map[string]any) { m["at"] = "now" },
		"missing time":        func(m map[string]any) { delete(m, "at") },
		"tenant wildcard":     func(m map[string]any) { m["tenant_id"] = "*" },
		"unknown field":       func(m map[string]any) { m["by"] = "someone" },
		"revision as string":  func(m map[string]any) { m["revision"] = "4" },
		"name with a newline": func(m map[string]any) { m["changed_by"] = map[string]any{"name": "a\nb"} },
	}
	accept := map[string]mutation{
		"a creation":           func(m map[string]any) { delete(m, "before"); m["op"] = "apply" },
		"no caller":            func(m map[string]any) { m["changed_by"] = map[string]any{} },
		"no field changed":     func(m map[string]any) { m["fields"] = []any{} },
		"several fields":       func(m map[string]any) { m["fields"] = []any{"fallback_enabled", "keys", "recipients"} },
		"a newline in a value": func(m map[string]any) { m["after"] = map[string]any{"display_name": "a\nb"} },
	}
	for _, op := range events.TenantOps {
		accept["op "+op] = func(m map[string]any) { m["op"] = op }
	}
	schemaAndGoAgree(t, "tenant_changed.schema.json", base, decodeErr(events.DecodeTenantChanged), cases, accept)
}

func FuzzDecodeTenantChanged(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","revision":2,"op":"apply","changed_by":{},"fields":["keys"],"after":{"tenant_id":"acme"},"at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","revision":0,"op":"delete","changed_by":{"role":"x"},"fields":["b","a"],"before":[],"after":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeTenantChanged, func(e *events.TenantChanged) string {
			if !slices.Contains(events.TenantOps, e.Op) {
				t.Fatalf("accepted op %q", e.Op)
			}
			if !slices.IsSorted(e.Fields) || len(slices.Compact(slices.Clone(e.Fields))) != len(e.Fields) {
				t.Fatalf("accepted fields %q", e.Fields)
			}
			return e.TenantID
		})
	})
}
