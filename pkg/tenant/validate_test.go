package tenant

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		opts   []ValidateOption
		want   []string // fields named, in order
	}{
		{name: "valid", change: func(c *Config) {}},
		{name: "valid not enrolled", change: func(c *Config) { c.Keys = nil; c.Services = nil; c.LicensedUsers = nil; c.Recipients = nil }},
		{name: "valid wildcards", change: func(c *Config) { c.Services = []string{"*"}; c.LicensedUsers = []string{"*"} }},
		{name: "valid azure and oci", change: func(c *Config) {
			c.Keys = []Key{{URI: azureKey, Role: RolePrimary, EnrolledAt: enrolled}, {URI: ociKey, Role: RoleRetiring, EnrolledAt: enrolled}}
		}},
		{name: "valid local key when allowed", opts: []ValidateOption{AllowLocalKeys(true)},
			change: func(c *Config) { c.Keys[0].URI = localKey }},
		{name: "valid catalog", opts: []ValidateOption{WithServiceCatalog(DefaultServices)}, change: func(c *Config) {}},
		{name: "valid user ids", change: func(c *Config) {
			c.LicensedUsers = []string{"alice@acme.example", "ユーザー42", strings.Repeat("x", MaxUserIDLen)}
		}},

		{name: "tenant id missing", change: func(c *Config) { c.TenantID = "" }, want: []string{"tenant_id"}},
		{name: "tenant id upper case", change: func(c *Config) { c.TenantID = "Acme" }, want: []string{"tenant_id"}},
		{name: "tenant id with dot", change: func(c *Config) { c.TenantID = "acme.corp" }, want: []string{"tenant_id"}},
		{name: "display name too long", change: func(c *Config) { c.DisplayName = strings.Repeat("é", MaxDisplayNameLen+1) }, want: []string{"display_name"}},
		{name: "display name control", change: func(c *Config) { c.DisplayName = "Acme\r\nBcc: x@evil.example" }, want: []string{"display_name"}},

		{name: "key uri missing", change: func(c *Config) { c.Keys[1].URI = "" }, want: []string{"keys[1].uri"}},
		{name: "key uri unparsable", change: func(c *Config) { c.Keys[1].URI = "awskms://alias/keyward" }, want: []string{"keys[1].uri"}},
		{name: "key uri unknown scheme", change: func(c *Config) { c.Keys[0].URI = "gcpkms://projects/p/keys/k" }, want: []string{"keys[0].uri"}},
		{name: "key uri local not allowed", change: func(c *Config) { c.Keys[0].URI = localKey }, want: []string{"keys[0].uri"}},
		{name: "key uri not canonical", change: func(c *Config) { c.Keys[0].URI = awsPrimary + "?region=eu-west-2" }, want: []string{"keys[0].uri"}},
		{name: "key uri duplicate", change: func(c *Config) { c.Keys[1].URI = awsPrimary }, want: []string{"keys[1].uri"}},
		{name: "key role missing", change: func(c *Config) { c.Keys[1].Role = "" }, want: []string{"keys[1].role"}},
		{name: "key role unknown", change: func(c *Config) { c.Keys[1].Role = "secondary" }, want: []string{"keys[1].role"}},
		{name: "two primaries", change: func(c *Config) { c.Keys[1].Role = RolePrimary }, want: []string{"keys[1].role"}},
		{name: "no primary", change: func(c *Config) { c.Keys[0].Role = RoleRetiring }, want: []string{"keys"}},
		{name: "enrolled_at missing", change: func(c *Config) { c.Keys[1].EnrolledAt = time.Time{} }, want: []string{"keys[1].enrolled_at"}},
		{name: "too many keys", change: func(c *Config) {
			c.Keys = c.Keys[:1]
			for i := 1; i <= MaxKeys; i++ {
				c.Keys = append(c.Keys, Key{URI: fmt.Sprintf("azurekv://acme-vault.vault.azure.net/keys/k%d", i), Role: RoleRetiring, EnrolledAt: enrolled})
			}
		}, want: []string{"keys"}},

		{name: "service malformed", change: func(c *Config) { c.Services[1] = "Phone-Recording" }, want: []string{"services[1]"}},
		{name: "service empty", change: func(c *Config) { c.Services[0] = "" }, want: []string{"services[0]"}},
		{name: "service duplicate", change: func(c *Config) { c.Services[1] = c.Services[0] }, want: []string{"services[1]"}},
		{name: "service not in catalog", opts: []ValidateOption{WithServiceCatalog(DefaultServices)},
			change: func(c *Config) { c.Services[1] = "fax" }, want: []string{"services[1]"}},
		{name: "service not checked without catalog", change: func(c *Config) { c.Services[1] = "fax" }},
		{name: "service wildcard mixed", change: func(c *Config) { c.Services = []string{"*", "cloud_recording"} }, want: []string{"services"}},

		{name: "user empty", change: func(c *Config) { c.LicensedUsers[1] = "" }, want: []string{"licensed_users[1]"}},
		{name: "user whitespace", change: func(c *Config) { c.LicensedUsers[0] = "u alice" }, want: []string{"licensed_users[0]"}},
		{name: "user unicode space", change: func(c *Config) { c.LicensedUsers[0] = "u\u00a0alice" }, want: []string{"licensed_users[0]"}},
		{name: "user control", change: func(c *Config) { c.LicensedUsers[0] = "u\x00alice" }, want: []string{"licensed_users[0]"}},
		{name: "user too long", change: func(c *Config) { c.LicensedUsers[0] = strings.Repeat("x", MaxUserIDLen+1) }, want: []string{"licensed_users[0]"}},
		{name: "user duplicate", change: func(c *Config) { c.LicensedUsers[1] = c.LicensedUsers[0] }, want: []string{"licensed_users[1]"}},
		{name: "user wildcard mixed", change: func(c *Config) { c.LicensedUsers = append(c.LicensedUsers, "*") }, want: []string{"licensed_users"}},

		{name: "recipient empty", change: func(c *Config) { c.Recipients = []string{""} }, want: []string{"recipients[0]"}},
		{name: "recipient not an address", change: func(c *Config) { c.Recipients = []string{"ok@acme.example", "security"} }, want: []string{"recipients[1]"}},
		{name: "recipient with display name", change: func(c *Config) { c.Recipients = []string{"Security <security@acme.example>"} }, want: []string{"recipients[0]"}},
		{name: "recipient angle brackets", change: func(c *Config) { c.Recipients = []string{"<security@acme.example>"} }, want: []string{"recipients[0]"}},
		{name: "recipient too long", change: func(c *Config) {
			c.Recipients = []string{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 190) + ".example"}
		}, want: []string{"recipients[0]"}},
		{name: "recipient duplicate any case", change: func(c *Config) { c.Recipients = []string{"Security@Acme.example", "security@acme.example"} }, want: []string{"recipients[1]"}},

		{name: "valid denied purposes", change: func(c *Config) { c.DeniedPurposes = []string{"support", "legal_hold"} }},
		{name: "valid every purpose denied", change: func(c *Config) {
			c.DeniedPurposes = nil
			for _, p := range events.Purposes {
				c.DeniedPurposes = append(c.DeniedPurposes, string(p))
			}
		}},
		{name: "denied purpose unknown", change: func(c *Config) { c.DeniedPurposes = []string{"support", "debugging"} }, want: []string{"denied_purposes[1]"}},
		{name: "denied purpose case", change: func(c *Config) { c.DeniedPurposes = []string{"Support"} }, want: []string{"denied_purposes[0]"}},
		{name: "denied purpose empty", change: func(c *Config) { c.DeniedPurposes = []string{""} }, want: []string{"denied_purposes[0]"}},
		{name: "denied purpose wildcard", change: func(c *Config) { c.DeniedPurposes = []string{"*"} }, want: []string{"denied_purposes[0]"}},
		{name: "denied purpose duplicate", change: func(c *Config) { c.DeniedPurposes = []string{"export", "support", "export"} }, want: []string{"denied_purposes[2]"}},

		{name: "every problem at once", change: func(c *Config) {
			c.TenantID = "ACME"
			c.Keys[0].URI = "nope"
			c.Keys[1].EnrolledAt = time.Time{}
			c.Services = []string{"bad name"}
			c.LicensedUsers = []string{" "}
			c.Recipients = []string{"x"}
			c.DeniedPurposes = []string{"x"}
		}, want: []string{"tenant_id", "keys[0].uri", "keys[1].enrolled_at", "services[0]", "licensed_users[0]", "recipients[0]", "denied_purposes[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(c)
			err := Validate(c, tt.opts...)
			got := fieldsOf(t, err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Validate() fields = %q, want %q\nerr = %v", got, tt.want, err)
			}
			for _, fe := range fieldErrors(err) {
				if fe.Problem == "" {
					t.Errorf("%s: empty problem", fe.Field)
				}
			}
		})
	}
}

func TestValidateMessages(t *testing.T) {
	c := validConfig()
	c.Keys[0].URI = "awskms://alias/keyward" // no region
	c.Keys[1].URI = awsReplica + "?region=eu-west-1"
	c.Services = []string{"fax"}
	err := Validate(c, WithServiceCatalog(DefaultServices))
	fes := fieldErrors(err)
	if len(fes) != 3 {
		t.Fatalf("Validate() = %v, want 3 field errors", err)
	}
	// The key URI parser's own message is kept.
	if !strings.Contains(fes[0].Problem, "region is missing") {
		t.Errorf("keys[0].uri problem = %q, want the parser's message", fes[0].Problem)
	}
	if fes[1].Fix != "write it as "+awsReplica {
		t.Errorf("keys[1].uri fix = %q, want the canonical form", fes[1].Fix)
	}
	if !strings.Contains(fes[2].Fix, "cloud_recording") {
		t.Errorf("services[0] fix = %q, want the catalog", fes[2].Fix)
	}
	if Validate(nil) == nil || !errors.Is(Validate(nil), events.ErrInvalid) {
		t.Errorf("Validate(nil) = %v, want an ErrInvalid", Validate(nil))
	}
}

func TestParse(t *testing.T) {
	const base = `{"tenant_id":"acme","keys":[{"uri":"` + awsPrimary + `","role":"primary","enrolled_at":"2026-01-15T09:00:00Z"}],` +
		`"services":["*"],"licensed_users":["*"],"fallback_enabled":true,"phone":{"drop_calls":true}}`
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatalf("Parse(base) err = %v", err)
	}
	if !c.Fallback || !c.Phone.DropCalls || !c.Enrolled() || c.Keys[0].EnrolledAt != enrolled {
		t.Errorf("Parse(base) = %+v", c)
	}

	tests := []struct {
		name      string
		doc       string
		opts      []ValidateOption
		wantField []string
		wantFix   string // substring of the first error's fix
	}{
		{name: "misspelt top-level field", doc: strings.Replace(base, `"tenant_id"`, `"tenat_id"`, 1),
			wantField: []string{"tenat_id"}, wantFix: `did you mean "tenant_id"?`},
		{name: "misspelt field suggests", doc: strings.Replace(base, `"fallback_enabled"`, `"fallback_enable"`, 1),
			wantField: []string{"fallback_enable"}, wantFix: `did you mean "fallback_enabled"?`},
		{name: "transposition suggests", doc: strings.Replace(base, `"services"`, `"sevrices"`, 1),
			wantField: []string{"sevrices"}, wantFix: `did you mean "services"?`},
		{name: "case differs suggests", doc: strings.Replace(base, `"services"`, `"Services"`, 1),
			wantField: []string{"Services"}, wantFix: `did you mean "services"?`},
		{name: "nested unknown suggests", doc: strings.Replace(base, `"uri"`, `"url"`, 1),
			wantField: []string{"keys[0].url"}, wantFix: `did you mean "uri"?`},
		{name: "phone unknown suggests", doc: strings.Replace(base, `"drop_calls"`, `"drop_call"`, 1),
			wantField: []string{"phone.drop_call"}, wantFix: `did you mean "drop_calls"?`},
		{name: "far unknown lists fields", doc: strings.Replace(base, `{"tenant_id"`, `{"colour":"blue","tenant_id"`, 1),
			wantField: []string{"colour"}, wantFix: "known fields: tenant_id, display_name, keys, services, licensed_users, recipients, fallback_enabled, fallback_on, hold_window, phone, denied_purposes, deprovision, deprovisioned_at, covered_from, updated_at"},
		{name: "revision is not a field", doc: strings.Replace(base, `{"tenant_id"`, `{"Revision":3,"tenant_id"`, 1),
			wantField: []string{"Revision"}},
		{name: "wrong type", doc: strings.Replace(base, `"fallback_enabled":true`, `"fallback_enabled":"yes"`, 1),
			wantField: []string{"fallback_enabled"}},
		{name: "bad time", doc: strings.Replace(base, `"2026-01-15T09:00:00Z"`, `"yesterday"`, 1),
			wantField: []string{"keys[0].enrolled_at"}, wantFix: "2026-01-15T09:00:00Z"},
		{name: "null", doc: strings.Replace(base, `"services":["*"]`, `"services":null`, 1),
			wantField: []string{"services"}},
		{name: "not an object", doc: `["acme"]`, wantField: []string{"document"}},
		{name: "not JSON", doc: `{"tenant_id":`, wantField: []string{"document"}},
		{name: "trailing data", doc: base + ` {}`, wantField: []string{"document"}},
		{name: "validation after decoding", doc: strings.Replace(base, `"role":"primary"`, `"role":"replica"`, 1),
			wantField: []string{"keys"}},
		{name: "options reach Validate", doc: strings.Replace(base, `"services":["*"]`, `"services":["fax"]`, 1),
			opts: []ValidateOption{WithServiceCatalog(DefaultServices)}, wantField: []string{"services[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc), tt.opts...)
			if c != nil {
				t.Errorf("Parse() config = %+v, want nil", c)
			}
			got := fieldsOf(t, err)
			if !slices.Equal(got, tt.wantField) {
				t.Fatalf("Parse() fields = %q, want %q\nerr = %v", got, tt.wantField, err)
			}
			if tt.wantFix != "" && !strings.Contains(fieldErrors(err)[0].Fix, tt.wantFix) {
				t.Errorf("Parse() fix = %q, want it to contain %q", fieldErrors(err)[0].Fix, tt.wantFix)
			}
		})
	}
}

func TestParseReportsEveryUnknownField(t *testing.T) {
	doc := `{"tenant_id":"acme","displayname":"x","keys":[{"uri":"` + awsPrimary + `","role":"primary","enrolled_at":"2026-01-15T09:00:00Z","enroled_at":"x"}],"phone":{"drop":1}}`
	_, err := Parse([]byte(doc))
	got := fieldsOf(t, err)
	want := []string{"displayname", "keys[0].enroled_at", "phone.drop"}
	if !slices.Equal(got, want) {
		t.Fatalf("Parse() fields = %q, want %q (err %v)", got, want, err)
	}
	if fix := fieldErrors(err)[0].Fix; fix != `did you mean "display_name"?` {
		t.Errorf("displayname fix = %q", fix)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"uri", "uri", 0}, {"url", "uri", 1}, {"", "abc", 3},
		{"sevrices", "services", 1}, {"tenat_id", "tenant_id", 1}, {"kyes", "keys", 1},
		{"phone", "phoen", 1}, {"ab", "ba", 1}, {"abc", "xyz", 3}, {"ünï", "uni", 2},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestConfigHelpers(t *testing.T) {
	var nilCfg *Config
	if nilCfg.Enrolled() || !nilCfg.CoveredSince().IsZero() || nilCfg.CoversService("x") || nilCfg.LicensesUser("u") || nilCfg.Clone() != nil {
		t.Error("nil *Config helpers should report nothing covered")
	}
	c := validConfig()
	c.Keys = append(c.Keys, Key{URI: azureKey, Role: RoleRetiring, EnrolledAt: enrolled.Add(-48 * time.Hour)})
	if k, ok := c.PrimaryKey(); !ok || k.URI != awsPrimary {
		t.Errorf("PrimaryKey() = %v, %v", k, ok)
	}
	if got, want := c.CoveredSince(), enrolled.Add(-48*time.Hour); !got.Equal(want) {
		t.Errorf("CoveredSince() = %v, want the earliest enrolled_at %v", got, want)
	}
	if !c.CoversService("cloud_recording") || c.CoversService("whiteboard") {
		t.Error("CoversService wrong for a list")
	}
	if !c.LicensesUser("u-bob") || c.LicensesUser("u-BOB") || c.LicensesUser("") {
		t.Error("LicensesUser wrong for a list")
	}
	c.Services, c.LicensedUsers = []string{"*"}, []string{"*"}
	if !c.CoversService("whiteboard") || !c.LicensesUser("anyone") {
		t.Error("wildcards should cover everything")
	}
	c.Services, c.LicensedUsers = nil, nil
	if c.CoversService("cloud_recording") || c.LicensesUser("u-alice") {
		t.Error("empty lists should cover nothing")
	}
	c.Keys[0].Role = RoleRetiring
	if c.Enrolled() {
		t.Error("Enrolled() without a primary")
	}

	// Clone is deep.
	a := validConfig()
	a.Revision = 7
	b := a.Clone()
	b.Keys[0].URI, b.Services[0], b.LicensedUsers[0], b.Recipients[0] = "x", "x", "x", "x"
	if a.Keys[0].URI == "x" || a.Services[0] == "x" || a.LicensedUsers[0] == "x" || a.Recipients[0] == "x" {
		t.Error("Clone shares slices with the original")
	}
	if b.Revision != 7 {
		t.Error("Clone dropped Revision")
	}
}

func TestDeniedPurposes(t *testing.T) {
	c := validConfig()
	c.DeniedPurposes = []string{"legal_hold", "legal_hold", "debugging"}
	err := Validate(c)
	fes := fieldErrors(err)
	if len(fes) != 2 || fes[0].Field != "denied_purposes[1]" || fes[1].Field != "denied_purposes[2]" {
		t.Fatalf("Validate() = %v, want errors on denied_purposes[1] and [2]", err)
	}
	if !strings.Contains(fes[0].Problem, "repeats denied_purposes[0]") {
		t.Errorf("duplicate problem = %q", fes[0].Problem)
	}
	// The unknown purpose is named, and the fix lists the set.
	if !strings.Contains(fes[1].Problem, `"debugging"`) {
		t.Errorf("unknown purpose problem = %q, want it to name the value", fes[1].Problem)
	}
	for _, p := range events.Purposes {
		if !strings.Contains(fes[1].Fix, string(p)) {
			t.Errorf("unknown purpose fix = %q, want it to list %q", fes[1].Fix, p)
		}
	}

	c = validConfig()
	if c.PurposeDenied("support") {
		t.Error("PurposeDenied(support) with no denied purposes")
	}
	c.DeniedPurposes = []string{"support", "export"}
	for p, want := range map[string]bool{"support": true, "export": true, "playback": false, "Support": false, "": false} {
		if got := c.PurposeDenied(p); got != want {
			t.Errorf("PurposeDenied(%q) = %v, want %v", p, got, want)
		}
	}
	var nilCfg *Config
	if nilCfg.PurposeDenied("support") {
		t.Error("nil *Config denies a purpose")
	}
	// Clone is deep.
	d := c.Clone()
	d.DeniedPurposes[0] = "playback"
	if c.DeniedPurposes[0] != "support" {
		t.Error("Clone shares DeniedPurposes with the original")
	}

	// The schema's enum is the set, in its order.
	items := readSchemaDoc(t)["properties"].(map[string]any)["denied_purposes"].(map[string]any)["items"].(map[string]any)
	var enum []string
	for _, p := range items["enum"].([]any) {
		enum = append(enum, p.(string))
	}
	var set []string
	for _, p := range events.Purposes {
		set = append(set, string(p))
	}
	if !slices.Equal(enum, set) {
		t.Errorf("schema denied_purposes enum %q, events.Purposes %q", enum, set)
	}

	// Parse reads the field and validates it.
	got, err := Parse([]byte(`{"tenant_id":"acme","denied_purposes":["support","legal_hold"]}`))
	if err != nil || !got.PurposeDenied("legal_hold") || got.PurposeDenied("playback") {
		t.Errorf("Parse(denied_purposes) = %+v, %v", got, err)
	}
	if _, err := Parse([]byte(`{"tenant_id":"acme","denied_purposes":["support","support"]}`)); !slices.Equal(fieldsOf(t, err), []string{"denied_purposes[1]"}) {
		t.Errorf("Parse(duplicate denied purpose) err = %v", err)
	}
}

func TestValidateFallbackChoices(t *testing.T) {
	c := validConfig()
	c.FallbackOn, c.HoldWindow = "always", Duration(6*time.Minute)
	err := Validate(c)
	for _, want := range []string{`fallback_on "always" is not a fallback choice`, `"outage"`, `hold_window is 6m0s, more than 5m0s`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if _, err := Parse([]byte(`{"tenant_id":"acme","hold_window":"soon"}`)); err == nil || !strings.Contains(err.Error(), "hold_window") || !strings.Contains(err.Error(), "10s") {
		t.Errorf("a hold window that is not a duration: %v", err)
	}
}

// A service name that is almost a catalog entry gets a "did you mean"; one
// that is nothing like any gets the list only.
func TestServiceDidYouMean(t *testing.T) {
	c := &Config{TenantID: "acme", Services: []string{"cloud_recordings", "telepathy"}, LicensedUsers: []string{All}}
	err := Validate(c, WithServiceCatalog(DefaultServices))
	if err == nil {
		t.Fatal("unknown services accepted")
	}
	msg := err.Error()
	if !strings.Contains(msg, `services[0]`) || !strings.Contains(msg, `did you mean "cloud_recording"?`) {
		t.Errorf("services[0] error %q: want a did-you-mean of cloud_recording", msg)
	}
	if !strings.Contains(msg, `services[1]`) || strings.Count(msg, "did you mean") != 1 {
		t.Errorf("services[1] error %q: want the list without a guess", msg)
	}
	for _, tc := range []struct{ in, want string }{
		{"cloud_recordings", "cloud_recording"}, {"team-chat", "team_chat"}, {"whitebord", "whiteboard"}, {"x", ""}, {"telepathy", ""},
	} {
		if got := closest(tc.in, DefaultServices); got != tc.want {
			t.Errorf("closest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
