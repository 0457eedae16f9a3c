package events_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
)

func TestAuditSubjects(t *testing.T) {
	if got, want := events.SubjectKeyAccess("acme"), "keyward.audit.key_access.acme"; got != want {
		t.Errorf("SubjectKeyAccess = %q, want %q", got, want)
	}
	if tenant, err := events.TenantFromSubject(events.SubjectKeyAccess("acme")); err != nil || tenant != "acme" {
		t.Errorf("TenantFromSubject(%q) = %q, %v, want acme", events.SubjectKeyAccess("acme"), tenant, err)
	}
	if events.SubjectKeyAccessAll != "keyward.audit.key_access.*" || events.SubjectAuditAll != "keyward.audit.>" {
		t.Errorf("wildcards %q %q", events.SubjectKeyAccessAll, events.SubjectAuditAll)
	}
	var found bool
	for _, cfg := range events.StreamConfigs(events.ProvisionOptions{}) {
		if cfg.Name != events.StreamAudit {
			continue
		}
		found = true
		if !slices.Equal(cfg.Subjects, []string{"keyward.audit.>"}) {
			t.Errorf("%s subjects = %v", cfg.Name, cfg.Subjects)
		}
		if cfg.MaxAge != 365*24*time.Hour || cfg.Duplicates != 10*time.Minute || cfg.MaxMsgSize != events.MaxMessageBytes ||
			cfg.Discard.String() != "DiscardOld" || cfg.Retention.String() != "Limits" {
			t.Errorf("%s: max age %v, duplicates %v, max message %d, discard %v, retention %v",
				cfg.Name, cfg.MaxAge, cfg.Duplicates, cfg.MaxMsgSize, cfg.Discard, cfg.Retention)
		}
	}
	if !found || events.StreamAudit != "KW_AUDIT" {
		t.Errorf("stream %q not declared", events.StreamAudit)
	}
}

func TestAuditStreamProvisioned(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, events.StreamAudit)
	if err != nil {
		t.Fatalf("stream %s: %v", events.StreamAudit, err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != events.KeysMaxAge || c.Duplicates != 10*time.Minute {
		t.Errorf("stream %s: max age %v, duplicates %v", events.StreamAudit, c.MaxAge, c.Duplicates)
	}
	// A record published twice with one message id is stored once.
	p := events.NewPublisher(env.JS, "test")
	e := validKeyAccess()
	o := events.Outgoing{Subject: events.SubjectKeyAccess("acme"), MsgID: "key_access.acme.1", Type: events.TypeKeyAccess, Event: e}
	if _, err := p.Publish(ctx, o); err != nil {
		t.Fatal(err)
	}
	ack, err := p.Publish(ctx, o)
	if err != nil || !ack.Duplicate || ack.Stream != events.StreamAudit {
		t.Fatalf("second publish = %+v, %v; want a duplicate on %s", ack, err, events.StreamAudit)
	}
}

func validKeyAccess() events.KeyAccess {
	return events.KeyAccess{
		TenantID: "acme", AssetID: "rec-1", Service: "cloud_recording", Purpose: string(events.PurposePlayback),
		Caller: events.KeyAccessCaller{Name: "reader", User: "UABC", Account: "AABC", Role: "reader"},
		Result: events.KeyAccessReleased, KeyURI: newKey, Mode: string(events.ModeCustomer),
		At: time.Date(2026, 11, 28, 10, 20, 31, 0, time.UTC),
	}
}

func refusedKeyAccess() events.KeyAccess {
	e := validKeyAccess()
	e.Result, e.Code, e.Detail, e.Mode = events.KeyAccessRefused, "purpose_denied", "tenant acme denies purpose support", ""
	e.Purpose = string(events.PurposeSupport)
	return e
}

func TestKeyAccessValidate(t *testing.T) {
	for name, e := range map[string]events.KeyAccess{
		"released": validKeyAccess(),
		"refused":  refusedKeyAccess(),
		"minimal": {TenantID: "acme", AssetID: "a", Result: events.KeyAccessRefused, Code: "not_authorized",
			At: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)},
		"detail at the limit": func() events.KeyAccess { e := refusedKeyAccess(); e.Detail = strings.Repeat("é", 512); return e }(),
	} {
		if err := e.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
	cases := []struct {
		field  string
		base   func() events.KeyAccess
		mutate func(e *events.KeyAccess)
	}{
		{"tenant_id", validKeyAccess, func(e *events.KeyAccess) { e.TenantID = "acme.>" }},
		{"tenant_id", validKeyAccess, func(e *events.KeyAccess) { e.TenantID = "" }},
		{"asset_id", validKeyAccess, func(e *events.KeyAccess) { e.AssetID = "" }},
		{"asset_id", validKeyAccess, func(e *events.KeyAccess) { e.AssetID = ".a" }},
		{"service", validKeyAccess, func(e *events.KeyAccess) { e.Service = "Cloud Recording" }},
		{"purpose", validKeyAccess, func(e *events.KeyAccess) { e.Purpose = "debugging" }},
		{"result", validKeyAccess, func(e *events.KeyAccess) { e.Result = "" }},
		{"result", validKeyAccess, func(e *events.KeyAccess) { e.Result = "granted" }},
		{"code", validKeyAccess, func(e *events.KeyAccess) { e.Code = "purpose_denied" }},
		{"code", refusedKeyAccess, func(e *events.KeyAccess) { e.Code = "" }},
		{"code", refusedKeyAccess, func(e *events.KeyAccess) { e.Code = "Purpose Denied" }},
		{"code", refusedKeyAccess, func(e *events.KeyAccess) { e.Code = strings.Repeat("a", 65) }},
		{"detail", refusedKeyAccess, func(e *events.KeyAccess) { e.Detail = strings.Repeat("x", 513) }},
		{"key_uri", validKeyAccess, func(e *events.KeyAccess) { e.KeyURI = "awskms://k\n" }},
		{"mode", validKeyAccess, func(e *events.KeyAccess) { e.Mode = "cloud" }},
		{"at", validKeyAccess, func(e *events.KeyAccess) { e.At = time.Time{} }},
		{"caller.name", validKeyAccess, func(e *events.KeyAccess) { e.Caller.Name = strings.Repeat("n", 257) }},
		{"caller.user", validKeyAccess, func(e *events.KeyAccess) { e.Caller.User = strings.Repeat("U", 257) }},
		{"caller.account", validKeyAccess, func(e *events.KeyAccess) { e.Caller.Account = strings.Repeat("A", 257) }},
		{"caller.role", validKeyAccess, func(e *events.KeyAccess) { e.Caller.Role = strings.Repeat("r", 257) }},
	}
	for _, c := range cases {
		e := c.base()
		c.mutate(&e)
		wantFieldError(t, e.Validate(), c.field)
	}
	// Every problem at once.
	e := events.KeyAccess{TenantID: "*", Result: events.KeyAccessRefused, Purpose: "x"}
	for _, f := range []string{"tenant_id", "asset_id", "purpose", "code", "at"} {
		wantFieldError(t, e.Validate(), f)
	}
}

// TestInvalidKeyAccessAgree: KeyAccess documents the schema rejects, Go
// rejects too (the result and code rules included); both accept each
// result, purpose and mode. (An absent caller is refused by the schema
// only: Go reads it as the empty caller, and always writes it.)
func TestInvalidKeyAccessAgree(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"tenant_id": "acme", "asset_id": "rec-1", "service": "cloud_recording", "purpose": "playback",
			"caller": map[string]any{"name": "reader", "user": "UABC", "account": "AABC", "role": "reader"},
			"result": "released", "key_uri": newKey, "mode": "customer", "at": "2026-11-28T10:20:31Z",
		}
	}
	refused := func(m map[string]any) { m["result"], m["code"] = "refused", "purpose_denied"; delete(m, "mode") }
	cases := map[string]func(m map[string]any){
		"missing tenant":        func(m map[string]any) { delete(m, "tenant_id") },
		"tenant wildcard":       func(m map[string]any) { m["tenant_id"] = "*" },
		"missing asset":         func(m map[string]any) { delete(m, "asset_id") },
		"asset leading dot":     func(m map[string]any) { m["asset_id"] = ".a" },
		"bad service":           func(m map[string]any) { m["service"] = "Cloud Recording" },
		"unknown purpose":       func(m map[string]any) { m["purpose"] = "debugging" },
		"purpose upper case":    func(m map[string]any) { m["purpose"] = "Playback" },
		"missing result":        func(m map[string]any) { delete(m, "result") },
		"unknown result":        func(m map[string]any) { m["result"] = "granted" },
		"released with code":    func(m map[string]any) { m["code"] = "purpose_denied" },
		"refused without code":  func(m map[string]any) { refused(m); delete(m, "code") },
		"refused empty code":    func(m map[string]any) { refused(m); m["code"] = "" },
		"refused bad code":      func(m map[string]any) { refused(m); m["code"] = "Purpose Denied" },
		"refused long code":     func(m map[string]any) { refused(m); m["code"] = strings.Repeat("a", 65) },
		"long detail":           func(m map[string]any) { m["detail"] = strings.Repeat("é", 513) },
		"unknown mode":          func(m map[string]any) { m["mode"] = "cloud" },
		"missing time":          func(m map[string]any) { delete(m, "at") },
		"bad time":              func(m map[string]any) { m["at"] = "now" },
		"caller not an object":  func(m map[string]any) { m["caller"] = "reader" },
		"caller unknown field":  func(m map[string]any) { m["caller"].(map[string]any)["tenant"] = "acme" },
		"caller long name":      func(m map[string]any) { m["caller"].(map[string]any)["name"] = strings.Repeat("n", 257) },
		"caller role as number": func(m map[string]any) { m["caller"].(map[string]any)["role"] = 3 },
		"long key uri":          func(m map[string]any) { m["key_uri"] = "awskms://" + strings.Repeat("k", 1024) },
		"unknown field":         func(m map[string]any) { m["reason"] = "purpose_denied" },
	}
	accept := map[string]mutation{
		events.KeyAccessReleased: func(map[string]any) {},
		events.KeyAccessRefused: func(m map[string]any) {
			refused(m)
			m["detail"] = strings.Repeat("é", 512)
		},
		"refused, no purpose, anonymous caller": func(m map[string]any) {
			refused(m)
			m["code"] = "not_authorized"
			delete(m, "purpose")
			delete(m, "service")
			delete(m, "key_uri")
			m["caller"] = map[string]any{}
		},
		"released with an empty code": func(m map[string]any) { m["code"] = "" },
	}
	for _, p := range events.Purposes {
		accept["purpose "+string(p)] = func(m map[string]any) { m["purpose"] = string(p) }
	}
	for _, mode := range []events.Mode{events.ModeCustomer, events.ModeFallback, events.ModePlatform} {
		accept["mode "+string(mode)] = func(m map[string]any) { m["mode"] = string(mode) }
	}
	schemaAndGoAgree(t, "key_access.schema.json", base, decodeErr(events.DecodeKeyAccess), cases, accept)
}

func FuzzDecodeKeyAccess(f *testing.F) {
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","service":"team_chat","purpose":"playback","caller":{"name":"reader","user":"U1","account":"A1","role":"reader"},"result":"released","key_uri":"k","mode":"customer","at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","caller":{},"result":"refused","code":"purpose_denied","detail":"no","at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","caller":{},"result":"released","code":"x","purpose":"debugging","mode":"cloud"}`))
	f.Add([]byte(`{"tenant_id":"acme","asset_id":"a","caller":null,"result":"refused","at":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, events.DecodeKeyAccess, func(e *events.KeyAccess) string {
			switch {
			case e.Result == events.KeyAccessReleased && e.Code != "",
				e.Result == events.KeyAccessRefused && e.Code == "",
				e.Result != events.KeyAccessReleased && e.Result != events.KeyAccessRefused:
				t.Fatalf("accepted result %q with code %q", e.Result, e.Code)
			}
			if e.Purpose != "" && events.ValidatePurpose(e.Purpose) != nil {
				t.Fatalf("accepted purpose %q", e.Purpose)
			}
			if events.ValidateAssetID(e.AssetID) != nil {
				t.Fatalf("accepted asset id %q", e.AssetID)
			}
			return e.TenantID
		})
	})
}
