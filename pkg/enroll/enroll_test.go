package enroll_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/tenant"
)

type rig struct {
	t       *testing.T
	store   *tenant.Store
	client  *enroll.Client
	keysDir string
}

func newRig(t *testing.T, providers ...kms.ClientOption) *rig {
	env := natstest.Start(t)
	ctx := context.Background()
	store, err := tenant.OpenStore(ctx, env.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]kms.ClientOption{kms.WithProvider(kms.SchemeLocal, localkms.New())}, providers...)
	srv := enroll.NewServer(env.NC, env.JS, store, kms.NewClient(opts...), platform.Default(), enroll.AllowLocalKeys(true),
		enroll.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		enroll.WithClock(func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return &rig{t: t, store: store, client: enroll.NewClient(env.NC, 10*time.Second), keysDir: t.TempDir()}
}

func (r *rig) key(name string) string {
	p := filepath.Join(r.keysDir, name)
	if err := localkms.CreateKeyFile(p); err != nil {
		r.t.Fatal(err)
	}
	return "localkms://" + p
}

func (r *rig) add(tenantID, uri string, role tenant.KeyRole) (*enroll.Response, *enroll.Error) {
	resp, err := r.client.Add(context.Background(), enroll.Request{TenantID: tenantID, KeyURI: uri, Role: role})
	var ee *enroll.Error
	if errors.As(err, &ee) {
		return resp, ee
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, nil
}

func TestEnrollSuccessCreatesTheTenant(t *testing.T) {
	r := newRig(t)
	uri := r.key("acme.key")
	resp, e := r.add("acme", uri, "")
	if e != nil {
		t.Fatal(e)
	}
	if resp.Key.Role != tenant.RolePrimary || resp.Key.URI != uri || !resp.Key.EnrolledAt.Equal(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)) || resp.KeyVersion == "" {
		t.Fatalf("response %+v", resp)
	}
	for _, op := range []string{"GenerateDataKey", "Decrypt", "Encrypt"} {
		if _, ok := resp.Probe[op]; !ok {
			t.Errorf("probe did not time %s: %v", op, resp.Probe)
		}
	}
	cfg, err := r.store.Get(context.Background(), "acme")
	if err != nil || len(cfg.Keys) != 1 || cfg.Keys[0].URI != uri || cfg.Revision != resp.Revision {
		t.Fatalf("stored %+v, %v", cfg, err)
	}
	// A new tenant covers everything by default, and does not fall back
	// unless it says so.
	if cfg.Fallback || !cfg.CoversService("whiteboard") || !cfg.LicensesUser("anyone") {
		t.Errorf("defaults of a new tenant: %+v", cfg)
	}
}

func TestEnrollRefusals(t *testing.T) {
	r := newRig(t)
	primary := r.key("p.key")
	if _, e := r.add("acme", primary, tenant.RolePrimary); e != nil {
		t.Fatal(e)
	}
	disabled := r.key("disabled.key")
	if err := localkms.SetDisabled(strings.TrimPrefix(disabled, "localkms://"), true); err != nil {
		t.Fatal(err)
	}
	missing := "localkms://" + filepath.Join(r.keysDir, "missing.key")
	tests := []struct {
		name, tenant, uri string
		role              tenant.KeyRole
		code              string
		mention           string
	}{
		{"bad uri", "acme", "awskms://nope", "", enroll.CodeInvalidKeyURI, "key id"},
		{"region not served", "acme", "ocikms://ocid1.key.oc1.fra.v.k?endpoint=https://v-crypto.kms.eu-frankfurt-1.oraclecloud.com", tenant.RoleReplica, enroll.CodeRegionNotServed, "us-ashburn-1"},
		{"no provider in this build", "acme", "awskms://alias/k?region=eu-west-2", tenant.RoleReplica, enroll.CodeUnsupportedProvider, "no provider"},
		{"disabled key", "initech", disabled, tenant.RolePrimary, enroll.CodeKeyUnusable, "disabled"},
		{"missing key", "initech", missing, tenant.RolePrimary, enroll.CodeKeyUnusable, "no such key"},
		{"second primary", "acme", r.key("p2.key"), tenant.RolePrimary, enroll.CodeConflict, "replica"},
		{"already enrolled", "acme", primary, tenant.RoleReplica, enroll.CodeConflict, "already enrolled"},
		{"replica on the primary's endpoint", "acme", r.key("r.key"), tenant.RoleReplica, enroll.CodeConflict, "another endpoint"},
		{"replica without a primary", "globex", r.key("g.key"), tenant.RoleReplica, enroll.CodeConflict, "no primary"},
		{"bad role", "acme", r.key("x.key"), "retiring", enroll.CodeInvalidRequest, "primary or replica"},
	}
	before, _ := r.store.Get(context.Background(), "acme")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := r.add(tt.tenant, tt.uri, tt.role)
			if e == nil || e.Code != tt.code || !strings.Contains(e.Message, tt.mention) {
				t.Fatalf("error = %+v, want %s mentioning %q", e, tt.code, tt.mention)
			}
		})
	}
	after, _ := r.store.Get(context.Background(), "acme")
	if after.Revision != before.Revision || len(after.Keys) != 1 {
		t.Fatalf("a refused enrollment changed the tenant: %+v", after)
	}
	for _, id := range []string{"globex", "initech"} {
		if _, err := r.store.Get(context.Background(), id); !errors.Is(err, tenant.ErrNotFound) {
			t.Fatalf("refused enrollment created tenant %s: %v", id, err)
		}
	}
	// A malformed tenant id is refused before anything is sent.
	if _, err := r.client.Add(context.Background(), enroll.Request{TenantID: "Acme", KeyURI: primary}); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("bad tenant id: %v", err)
	}
}

func TestEnrollRequestsAreTenantBound(t *testing.T) {
	env := natstest.Start(t)
	// A request on one tenant's subject naming another tenant is refused.
	store, _ := tenant.OpenStore(context.Background(), env.JS)
	srv := enroll.NewServer(env.NC, env.JS, store, kms.NewClient(), platform.Default())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	m, err := env.NC.Request(events.SubjectKeyEnroll("acme"), []byte(`{"tenant_id":"globex","key_uri":"awskms://alias/k?region=eu-west-2"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m.Data), "invalid_request") || !strings.Contains(string(m.Data), "globex") {
		t.Fatalf("reply %s", m.Data)
	}
}

// A key another tenant has enrolled is refused, for an enrollment and for
// a rotation, without naming the other tenant; nothing is stored.
func TestKeyOfAnotherTenantIsRefused(t *testing.T) {
	r := newRig(t)
	acme := r.key("acme.key")
	if _, e := r.add("acme", acme, ""); e != nil {
		t.Fatal(e)
	}
	_, e := r.add("globex", acme, "")
	if e == nil || e.Code != enroll.CodeKeyInUse || strings.Contains(e.Message, "acme") {
		t.Fatalf("globex enrolling acme's key: %+v, want %s without naming acme", e, enroll.CodeKeyInUse)
	}
	if _, err := r.store.Get(context.Background(), "globex"); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("globex exists after the refusal: %v", err)
	}
	globex := r.key("globex.key")
	if _, e := r.add("globex", globex, ""); e != nil {
		t.Fatal(e)
	}
	_, err := r.client.Rotate(context.Background(), enroll.RotateRequest{TenantID: "globex", KeyURI: acme})
	var ee *enroll.Error
	if !errors.As(err, &ee) || ee.Code != enroll.CodeKeyInUse {
		t.Fatalf("globex rotating to acme's key: %v, want %s", err, enroll.CodeKeyInUse)
	}
	// The owner adding its own key again is checkRole's conflict, not
	// key_in_use.
	if _, e := r.add("acme", acme, tenant.RoleReplica); e == nil || e.Code == enroll.CodeKeyInUse {
		t.Fatalf("acme adding its own key again: %+v, want a conflict, not key_in_use", e)
	}
}
