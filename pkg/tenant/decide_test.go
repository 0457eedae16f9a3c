package tenant

import (
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

func TestDecide(t *testing.T) {
	since := enrolled // CoveredSince of validConfig: the primary's enrolled_at
	covered := Asset{Service: "cloud_recording", OwnerUserID: "u-alice", Origin: events.OriginCloud, CreatedAt: since.Add(time.Minute)}
	with := func(change func(a *Asset)) Asset { a := covered; change(&a); return a }
	cfg := func(change func(c *Config)) *Config { c := validConfig(); change(c); return c }
	noFallback := cfg(func(c *Config) { c.Fallback = false })

	platform := func(cv Coverage) Decision { return Decision{Mode: events.ModePlatform, Coverage: cv} }
	customer := Decision{Mode: events.ModeCustomer, Coverage: CoverageCovered, KeyURI: awsPrimary}
	fallback := Decision{Mode: events.ModeFallback, Coverage: CoverageCovered}
	rejectUnavailable := Decision{Reject: true, Reason: events.ReasonCustomerKeyUnavailable, Coverage: CoverageCovered}
	rejectRevoked := Decision{Reject: true, Reason: events.ReasonCustomerKeyRevoked, Coverage: CoverageCovered}

	tests := []struct {
		name   string
		cfg    *Config
		asset  Asset
		status events.KeyStatus
		want   Decision
	}{
		// 1. Not covered → platform, whatever the key's status.
		{"never enrolled (nil)", nil, covered, events.KeyStatusAvailable, platform(CoverageNotEnrolled)},
		{"no keys", cfg(func(c *Config) { c.Keys = nil }), covered, events.KeyStatusAvailable, platform(CoverageNotEnrolled)},
		{"no primary key", cfg(func(c *Config) { c.Keys[0].Role = RoleRetiring }), covered, events.KeyStatusAvailable, platform(CoverageNotEnrolled)},
		{"created before enrollment", validConfig(), with(func(a *Asset) { a.CreatedAt = since.Add(-time.Nanosecond) }), events.KeyStatusAvailable, platform(CoverageBeforeEnrollment)},
		{"created at zero time", validConfig(), with(func(a *Asset) { a.CreatedAt = time.Time{} }), events.KeyStatusAvailable, platform(CoverageBeforeEnrollment)},
		{"service not selected", validConfig(), with(func(a *Asset) { a.Service = "whiteboard" }), events.KeyStatusAvailable, platform(CoverageServiceNotSelected)},
		{"no services selected", cfg(func(c *Config) { c.Services = nil }), covered, events.KeyStatusAvailable, platform(CoverageServiceNotSelected)},
		{"owner not licensed", validConfig(), with(func(a *Asset) { a.OwnerUserID = "u-carol" }), events.KeyStatusAvailable, platform(CoverageUserNotLicensed)},
		{"local upload", validConfig(), with(func(a *Asset) { a.Origin = events.OriginLocalUpload }), events.KeyStatusAvailable, platform(CoverageLocalUpload)},
		{"not covered ignores revoked", validConfig(), with(func(a *Asset) { a.Origin = events.OriginLocalUpload }), events.KeyStatusRevoked, platform(CoverageLocalUpload)},
		{"not covered ignores unavailable", noFallback, with(func(a *Asset) { a.Service = "team_chat" }), events.KeyStatusUnavailable, platform(CoverageServiceNotSelected)},

		// A scheduled deprovisioning covers nothing created from its date on.
		{"deprovisioning: created at its date", cfg(func(c *Config) { c.Deprovision = &Deprovision{At: since.Add(time.Minute), ScheduledAt: since} }),
			covered, events.KeyStatusAvailable, platform(CoverageDeprovisioned)},
		{"deprovisioning: created after, key revoked", cfg(func(c *Config) { c.Deprovision = &Deprovision{At: since, ScheduledAt: since} }),
			covered, events.KeyStatusRevoked, platform(CoverageDeprovisioned)},
		{"deprovisioning: created before its date", cfg(func(c *Config) { c.Deprovision = &Deprovision{At: since.Add(time.Hour), ScheduledAt: since} }),
			covered, events.KeyStatusAvailable, customer},
		{"deprovisioned: no keys left", cfg(func(c *Config) {
			at := since.Add(time.Hour)
			c.Keys, c.Deprovision, c.DeprovisionedAt = nil, &Deprovision{At: since, ScheduledAt: since}, &at
		}), covered, events.KeyStatusAvailable, platform(CoverageNotEnrolled)},

		// Check order: the first failing check names the coverage.
		{"order: deprovisioned before enrollment", cfg(func(c *Config) { c.Deprovision = &Deprovision{At: since.Add(-2 * time.Hour), ScheduledAt: since} }),
			with(func(a *Asset) { a.CreatedAt = since.Add(-time.Hour); a.Service = "whiteboard" }), "", platform(CoverageDeprovisioned)},
		{"order: not enrolled before deprovisioned", cfg(func(c *Config) { c.Keys = nil; c.Deprovision = &Deprovision{At: since, ScheduledAt: since} }),
			covered, "", platform(CoverageNotEnrolled)},
		{"order: enrollment before service", validConfig(), with(func(a *Asset) { a.CreatedAt = since.Add(-time.Hour); a.Service = "whiteboard" }), "", platform(CoverageBeforeEnrollment)},
		{"order: service before user", validConfig(), with(func(a *Asset) { a.Service = "whiteboard"; a.OwnerUserID = "u-carol" }), "", platform(CoverageServiceNotSelected)},
		{"order: user before origin", validConfig(), with(func(a *Asset) { a.OwnerUserID = "u-carol"; a.Origin = events.OriginLocalUpload }), "", platform(CoverageUserNotLicensed)},
		{"order: enrollment first", cfg(func(c *Config) { c.Keys = nil; c.Services = nil }), with(func(a *Asset) { a.Origin = events.OriginLocalUpload }), "", platform(CoverageNotEnrolled)},

		// 2. Covered and usable → customer.
		{"created exactly at CoveredSince", validConfig(), with(func(a *Asset) { a.CreatedAt = since }), events.KeyStatusAvailable, customer},
		{"CoveredSince is the earliest key", cfg(func(c *Config) { c.Keys[1].EnrolledAt = since.Add(-time.Hour) }),
			with(func(a *Asset) { a.CreatedAt = since.Add(-time.Minute) }), events.KeyStatusAvailable, customer},
		{"status unknown", validConfig(), covered, events.KeyStatusUnknown, customer},
		{"status available", validConfig(), covered, events.KeyStatusAvailable, customer},
		{"status degraded", noFallback, covered, events.KeyStatusDegraded, customer},
		{"wildcards", cfg(func(c *Config) { c.Services = []string{"*"}; c.LicensedUsers = []string{"*"} }),
			with(func(a *Asset) { a.Service = "whiteboard"; a.OwnerUserID = "anyone" }), events.KeyStatusAvailable, customer},
		{"primary not first", cfg(func(c *Config) { c.Keys[0].Role, c.Keys[1].Role = RoleRetiring, RolePrimary }), covered, "",
			Decision{Mode: events.ModeCustomer, Coverage: CoverageCovered, KeyURI: awsReplica}},
		{"retiring key enrolled earlier keeps coverage", cfg(func(c *Config) {
			c.Keys[0].Role, c.Keys[1].Role = RoleRetiring, RolePrimary
		}), with(func(a *Asset) { a.CreatedAt = since.Add(time.Minute) }), events.KeyStatusAvailable,
			Decision{Mode: events.ModeCustomer, Coverage: CoverageCovered, KeyURI: awsReplica}},

		// 3./4. Covered and unreachable → fallback or reject.
		{"unavailable with fallback", validConfig(), covered, events.KeyStatusUnavailable, fallback},
		{"unavailable without fallback", noFallback, covered, events.KeyStatusUnavailable, rejectUnavailable},
		{"unknown status string with fallback", validConfig(), covered, "pending_deletion", fallback},
		{"unknown status string without fallback", noFallback, covered, "pending_deletion", rejectUnavailable},

		// Revoked → reject, unless the tenant chose fallback_on "any".
		{"revoked with fallback", validConfig(), covered, events.KeyStatusRevoked, rejectRevoked},
		{"revoked with fallback on outage", cfg(func(c *Config) { c.FallbackOn = FallbackOnOutage }), covered, events.KeyStatusRevoked, rejectRevoked},
		{"revoked without fallback", noFallback, covered, events.KeyStatusRevoked, rejectRevoked},
		{"revoked with fallback on any", cfg(func(c *Config) { c.FallbackOn = FallbackOnAny }), covered, events.KeyStatusRevoked, fallback},
		{"revoked, fallback on any but off", cfg(func(c *Config) { c.FallbackOn = FallbackOnAny; c.Fallback = false }), covered, events.KeyStatusRevoked, rejectRevoked},
		{"unavailable with fallback on any", cfg(func(c *Config) { c.FallbackOn = FallbackOnAny }), covered, events.KeyStatusUnavailable, fallback},

		// The hold window comes with outage decisions only.
		{"hold: unavailable with fallback", cfg(func(c *Config) { c.HoldWindow = Duration(10 * time.Second) }), covered, events.KeyStatusUnavailable,
			Decision{Mode: events.ModeFallback, Coverage: CoverageCovered, Hold: 10 * time.Second}},
		{"hold: unavailable without fallback", cfg(func(c *Config) { c.HoldWindow = Duration(10 * time.Second); c.Fallback = false }), covered, events.KeyStatusUnavailable,
			Decision{Reject: true, Reason: events.ReasonCustomerKeyUnavailable, Coverage: CoverageCovered, Hold: 10 * time.Second}},
		{"hold: not for a revocation", cfg(func(c *Config) { c.HoldWindow = Duration(10 * time.Second) }), covered, events.KeyStatusRevoked, rejectRevoked},
		{"hold: not for a revocation under any", cfg(func(c *Config) { c.HoldWindow = Duration(10 * time.Second); c.FallbackOn = FallbackOnAny }), covered, events.KeyStatusRevoked, fallback},
		{"hold: not when usable", cfg(func(c *Config) { c.HoldWindow = Duration(10 * time.Second) }), covered, events.KeyStatusDegraded, customer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.cfg, tt.asset, tt.status)
			if got != tt.want {
				t.Fatalf("Decide(%s, %+v, %q) = %+v, want %+v", tt.name, tt.asset, tt.status, got, tt.want)
			}
			// Invariants of every decision.
			if got.Reject != (got.Mode == "") {
				t.Errorf("Reject = %v with Mode %q", got.Reject, got.Mode)
			}
			if got.Reject != (got.Reason != "") {
				t.Errorf("Reject = %v with Reason %q", got.Reject, got.Reason)
			}
			if (got.Mode == events.ModeCustomer) != (got.KeyURI != "") {
				t.Errorf("Mode %q with KeyURI %q", got.Mode, got.KeyURI)
			}
			if got.Coverage.Covered() == (got.Mode == events.ModePlatform) {
				t.Errorf("Coverage %q with Mode %q", got.Coverage, got.Mode)
			}
		})
	}
}

// The decision only reads the configuration.
func TestDecideDoesNotModify(t *testing.T) {
	c := validConfig()
	before := c.Clone()
	Decide(c, Asset{Service: "cloud_recording", OwnerUserID: "u-alice", Origin: events.OriginCloud, CreatedAt: enrolled}, events.KeyStatusUnavailable)
	if err := Validate(c); err != nil || c.Keys[0] != before.Keys[0] || c.Fallback != before.Fallback {
		t.Fatal("Decide changed the configuration")
	}
}

func TestDecideKeysUsesReplicas(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &Config{
		TenantID: "acme",
		Keys: []Key{
			{URI: "awskms://alias/p?region=eu-west-2", Role: RolePrimary, EnrolledAt: t0},
			{URI: "awskms://alias/r1?region=eu-west-1", Role: RoleReplica, EnrolledAt: t0},
			{URI: "awskms://alias/r2?region=us-east-1", Role: RoleReplica, EnrolledAt: t0},
		},
		Services: []string{All}, LicensedUsers: []string{All}, Fallback: true,
	}
	a := Asset{Service: "team_chat", OwnerUserID: "u", Origin: events.OriginCloud, CreatedAt: t0.Add(time.Hour)}
	status := func(m map[string]events.KeyStatus) func(string) events.KeyStatus {
		return func(uri string) events.KeyStatus { return m[uri] }
	}
	tests := []struct {
		name   string
		st     map[string]events.KeyStatus
		mode   events.Mode
		key    string
		reject events.Reason
	}{
		{"primary fine", nil, events.ModeCustomer, "awskms://alias/p?region=eu-west-2", ""},
		{"primary down, first replica", map[string]events.KeyStatus{"awskms://alias/p?region=eu-west-2": events.KeyStatusUnavailable}, events.ModeCustomer, "awskms://alias/r1?region=eu-west-1", ""},
		{"primary and first replica down", map[string]events.KeyStatus{
			"awskms://alias/p?region=eu-west-2": events.KeyStatusUnavailable, "awskms://alias/r1?region=eu-west-1": events.KeyStatusUnavailable,
		}, events.ModeCustomer, "awskms://alias/r2?region=us-east-1", ""},
		{"all down: fallback", map[string]events.KeyStatus{
			"awskms://alias/p?region=eu-west-2": events.KeyStatusUnavailable, "awskms://alias/r1?region=eu-west-1": events.KeyStatusUnavailable,
			"awskms://alias/r2?region=us-east-1": events.KeyStatusRevoked,
		}, events.ModeFallback, "", ""},
		{"primary revoked: replicas not used", map[string]events.KeyStatus{"awskms://alias/p?region=eu-west-2": events.KeyStatusRevoked}, "", "", events.ReasonCustomerKeyRevoked},
	}
	for _, tt := range tests {
		d := DecideKeys(cfg, a, status(tt.st))
		if tt.reject != "" {
			if !d.Reject || d.Reason != tt.reject {
				t.Errorf("%s: %+v, want rejection %s", tt.name, d, tt.reject)
			}
			continue
		}
		if d.Reject || d.Mode != tt.mode || d.KeyURI != tt.key || d.Replica != (tt.key != "" && tt.key != "awskms://alias/p?region=eu-west-2") {
			t.Errorf("%s: %+v, want %s %s", tt.name, d, tt.mode, tt.key)
		}
	}
}
