package tenant

import (
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// rotated is a tenant after two rotations: one primary, two retiring keys
// (the older primaries), one replica of the current primary.
func rotated() *Config {
	c := validConfig()
	c.Keys = []Key{
		{URI: azureKey, Role: RoleRetiring, EnrolledAt: enrolled},
		{URI: ociKey, Role: RoleRetiring, EnrolledAt: enrolled.Add(24 * time.Hour)},
		{URI: awsPrimary, Role: RolePrimary, EnrolledAt: enrolled.Add(48 * time.Hour)},
		{URI: awsReplica, Role: RoleReplica, EnrolledAt: enrolled.Add(48 * time.Hour)},
	}
	return c
}

func TestValidateRetiringKeys(t *testing.T) {
	c := rotated()
	if err := Validate(c); err != nil {
		t.Fatalf("several retiring keys with one primary: %v", err)
	}
	if got := c.KeysWithRole(RoleRetiring); len(got) != 2 || got[0].URI != azureKey || got[1].URI != ociKey {
		t.Errorf("KeysWithRole(retiring) = %+v", got)
	}
	// Still exactly one primary.
	c.Keys[1].Role = RolePrimary
	if got := fieldsOf(t, Validate(c)); !slices.Equal(got, []string{"keys[2].role"}) {
		t.Errorf("two primaries among retiring keys: fields %q", got)
	}
	c = rotated()
	c.Keys[2].Role = RoleRetiring
	if got := fieldsOf(t, Validate(c)); !slices.Equal(got, []string{"keys"}) {
		t.Errorf("only retiring keys: fields %q, want keys (no primary)", got)
	}
}

// No key status makes a retiring key encrypt a new asset: not when every
// other key is down, not when it is the only usable key.
func TestDecideKeysNeverPicksRetiring(t *testing.T) {
	c := rotated()
	a := Asset{Service: "cloud_recording", OwnerUserID: "u-alice", Origin: events.OriginCloud, CreatedAt: enrolled.Add(72 * time.Hour)}
	statuses := []events.KeyStatus{events.KeyStatusUnknown, events.KeyStatusAvailable, events.KeyStatusDegraded, events.KeyStatusUnavailable, events.KeyStatusRevoked}
	for _, p := range statuses {
		for _, r := range statuses {
			for _, fallback := range []bool{true, false} {
				c.Fallback = fallback
				d := DecideKeys(c, a, func(uri string) events.KeyStatus {
					switch uri {
					case awsPrimary:
						return p
					case awsReplica:
						return r
					}
					return events.KeyStatusAvailable // the retiring keys
				})
				if d.KeyURI == azureKey || d.KeyURI == ociKey {
					t.Errorf("primary %q, replica %q, fallback %v: decided %+v, a retiring key", p, r, fallback, d)
				}
			}
		}
	}
	// An asset created before the newest primary's enrollment but after the
	// oldest retiring key's is covered (CoveredSince is the earliest key).
	old := a
	old.CreatedAt = enrolled.Add(time.Hour)
	if d := Decide(c, old, events.KeyStatusAvailable); d.Mode != events.ModeCustomer || d.KeyURI != awsPrimary {
		t.Errorf("asset between enrollments: %+v, want the primary", d)
	}
}

func TestDeprovisioningHelpers(t *testing.T) {
	at := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	c := validConfig()
	if c.Deprovisioning(at) || c.Deprovisioned() {
		t.Fatal("a tenant without a schedule is deprovisioning")
	}
	c.Deprovision = &Deprovision{At: at, ScheduledAt: at.Add(-time.Hour)}
	if err := Validate(c); err != nil {
		t.Fatalf("scheduled: %v", err)
	}
	if c.Deprovisioning(at.Add(-time.Nanosecond)) {
		t.Error("Deprovisioning before At")
	}
	if !c.Deprovisioning(at) || !c.Deprovisioning(at.Add(time.Hour)) {
		t.Error("not Deprovisioning at or after At")
	}
	var nilCfg *Config
	if nilCfg.Deprovisioning(at) || nilCfg.Deprovisioned() {
		t.Error("nil config deprovisioning")
	}

	// Clone copies the schedule and the completion time.
	done := at.Add(time.Hour)
	c.DeprovisionedAt = &done
	cl := c.Clone()
	cl.Deprovision.At = at.Add(time.Minute)
	*cl.DeprovisionedAt = at
	if !c.Deprovision.At.Equal(at) || !c.DeprovisionedAt.Equal(done) {
		t.Error("Clone shares Deprovision or DeprovisionedAt")
	}

	// Completed: no keys is valid, keys are not; no longer deprovisioning.
	if got := fieldsOf(t, Validate(c)); !slices.Equal(got, []string{"keys"}) {
		t.Errorf("deprovisioned with keys: fields %q, want keys", got)
	}
	c.Keys = nil
	if err := Validate(c); err != nil {
		t.Errorf("deprovisioned without keys: %v", err)
	}
	if c.Deprovisioning(done.Add(time.Hour)) || !c.Deprovisioned() {
		t.Error("a completed deprovisioning is still deprovisioning")
	}

	// Missing times are named.
	c = validConfig()
	c.Deprovision = &Deprovision{}
	zero := time.Time{}
	c.Keys, c.DeprovisionedAt = nil, &zero
	if got := fieldsOf(t, Validate(c)); !slices.Equal(got, []string{"deprovision.at", "deprovision.scheduled_at", "deprovisioned_at"}) {
		t.Errorf("empty schedule: fields %q", got)
	}
}

func TestSchemaAndParseAgreeOnDeprovisioning(t *testing.T) {
	s := compileSchema(t)
	valid := map[string]string{
		"scheduled":     `{"tenant_id":"acme","keys":[{"uri":"` + awsPrimary + `","role":"primary","enrolled_at":"2026-01-15T09:00:00Z"}],"deprovision":{"at":"2026-12-31T00:00:00Z","scheduled_at":"2026-11-28T10:00:00Z"}}`,
		"deprovisioned": `{"tenant_id":"acme","deprovision":{"at":"2026-12-31T00:00:00Z","scheduled_at":"2026-11-28T10:00:00Z"},"deprovisioned_at":"2026-12-31T00:09:41Z"}`,
	}
	for name, d := range valid {
		if err := schemaValidate(s, d); err != nil {
			t.Errorf("valid %q: schema rejects it: %v", name, err)
		}
		c, err := Parse([]byte(d))
		if err != nil {
			t.Errorf("valid %q: Parse rejects it: %v", name, err)
			continue
		}
		if c.Deprovision == nil || c.Deprovision.At.IsZero() {
			t.Errorf("valid %q: parsed %+v", name, c)
		}
	}
	invalid := map[string]string{
		"at missing":          `{"tenant_id":"acme","deprovision":{"scheduled_at":"2026-11-28T10:00:00Z"}}`,
		"scheduled_at absent": `{"tenant_id":"acme","deprovision":{"at":"2026-12-31T00:00:00Z"}}`,
		"unknown field":       `{"tenant_id":"acme","deprovision":{"at":"2026-12-31T00:00:00Z","scheduled_at":"2026-11-28T10:00:00Z","by":"admin"}}`,
		"at not a time":       `{"tenant_id":"acme","deprovision":{"at":"tomorrow","scheduled_at":"2026-11-28T10:00:00Z"}}`,
		"null schedule":       `{"tenant_id":"acme","deprovision":null}`,
		"completed not time":  `{"tenant_id":"acme","deprovisioned_at":"done"}`,
	}
	for name, d := range invalid {
		if err := schemaValidate(s, d); err == nil {
			t.Errorf("invalid %q: the schema accepts it", name)
		}
		if _, err := Parse([]byte(d)); err == nil {
			t.Errorf("invalid %q: Parse accepts it", name)
		}
	}
	// Go only: a deprovisioned tenant has no keys.
	d := `{"tenant_id":"acme","keys":[{"uri":"` + awsPrimary + `","role":"primary","enrolled_at":"2026-01-15T09:00:00Z"}],"deprovisioned_at":"2026-12-31T00:09:41Z"}`
	if _, err := Parse([]byte(d)); err == nil {
		t.Error("Parse accepts a deprovisioned tenant with keys")
	}
}
