package enroll

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/tenant"
)

// The caller of TenantChanged comes from the server-set Nats-Request-Info;
// without one (no authentication) it is empty.
func TestChangedByFromRequestInfo(t *testing.T) {
	h := nats.Header{}
	h.Set("Nats-Request-Info", `{"acc":"AACME","user":"UA","name_tag":"admin-acme","tags":["keyward-role:tenant-admin","keyward-tenant:acme"]}`)
	got := callerOf(withCaller(context.Background(), h))
	want := events.ChangedBy{Name: "admin-acme", User: "UA", Account: "AACME", Role: "tenant-admin"}
	if got != want {
		t.Errorf("changed_by %+v, want %+v", got, want)
	}
	if got := callerOf(withCaller(context.Background(), nats.Header{})); got != (events.ChangedBy{}) {
		t.Errorf("without a caller %+v", got)
	}
}

// A tenant admin's apply may change the tenant's settings but not its keys
// or deprovisioning (those have their own ops, with the probe); an
// operator's may.
func TestTenantAdminApplyKeepsKeyFields(t *testing.T) {
	env := natstest.Start(t)
	store, err := tenant.OpenStore(context.Background(), env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(env.NC, env.JS, store, kms.NewClient(kms.WithProvider(kms.SchemeLocal, localkms.New())), platform.Default(),
		AllowLocalKeys(true), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	as := func(role string) context.Context {
		h := nats.Header{}
		h.Set("Nats-Request-Info", `{"acc":"A","user":"U","name_tag":"x","tags":["keyward-role:`+role+`","keyward-tenant:acme"]}`)
		return withCaller(context.Background(), h)
	}
	key := filepath.Join(t.TempDir(), "k.key")
	if err := localkms.CreateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	withKey := `{"tenant_id":"acme","keys":[{"uri":"localkms://` + key + `","role":"primary","enrolled_at":"2026-11-28T12:00:00Z"}],"services":["*"],"licensed_users":["*"]}`
	if r := s.Apply(as("tenant-admin"), Request{TenantID: "acme", Tenant: []byte(withKey)}); r.Error == nil || r.Error.Code != CodeNotAuthorized || !strings.Contains(r.Error.Message, "keys") {
		t.Fatalf("tenant admin creating a tenant with a key: %+v", r.Error)
	}
	if r := s.Apply(as("operator"), Request{TenantID: "acme", Tenant: []byte(withKey)}); r.Error != nil {
		t.Fatalf("operator: %v", r.Error)
	}
	settings := strings.Replace(withKey, `"services":["*"]`, `"services":["*"],"recipients":["sec@acme.example"],"fallback_enabled":true`, 1)
	if r := s.Apply(as("tenant-admin"), Request{TenantID: "acme", Tenant: []byte(settings)}); r.Error != nil {
		t.Fatalf("tenant admin changing settings, keys kept: %v", r.Error)
	}
	noKeys := `{"tenant_id":"acme","services":["*"],"licensed_users":["*"]}`
	if r := s.Apply(as("tenant-admin"), Request{TenantID: "acme", Tenant: []byte(noKeys)}); r.Error == nil || r.Error.Code != CodeNotAuthorized {
		t.Fatalf("tenant admin dropping the keys: %+v", r.Error)
	}
	if c, err := store.Get(context.Background(), "acme"); err != nil || len(c.Keys) != 1 || !c.Fallback {
		t.Fatalf("stored %+v, %v", c, err)
	}
}
