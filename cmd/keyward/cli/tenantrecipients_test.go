package cli_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// recipientsChange is what tenant recipients add and remove print with --json.
type recipientsChange struct {
	TenantID   string   `json:"tenant_id"`
	Revision   uint64   `json:"revision"`
	Recipients []string `json:"recipients"`
	Changed    []string `json:"changed"`
	Unchanged  []string `json:"unchanged"`
}

func TestTenantRecipients(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	url := d.URL()
	// change runs a --json add or remove and decodes what it prints.
	change := func(args ...string) recipientsChange {
		t.Helper()
		r := run(t, url, "", append([]string{"--json", "tenant", "recipients"}, args...)...)
		var ch recipientsChange
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ch) != nil || ch.TenantID != "demo" || ch.Recipients == nil || ch.Changed == nil {
			t.Fatalf("%v: %+v", args, r)
		}
		return ch
	}
	list := func() []string {
		t.Helper()
		r := run(t, url, "", "--json", "tenant", "recipients", "list", "--tenant", "demo")
		var got []string
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil || got == nil {
			t.Fatalf("recipients list --json: %+v", r)
		}
		return got
	}

	// keyward dev's demo tenant starts with one recipient.
	r := run(t, url, "", "tenant", "recipients", "list", "--tenant", "demo")
	if r.code != 0 || r.stdout != "security@demo.example\n" {
		t.Fatalf("list: %+v", r)
	}

	// Adding what is listed already (in any case) is a note and writes
	// nothing.
	before := change("add", "--tenant", "demo", "SECURITY@demo.example")
	if len(before.Changed) != 0 || !slices.Equal(before.Unchanged, []string{"security@demo.example"}) || before.Revision == 0 {
		t.Fatalf("add of a listed address: %+v", before)
	}

	// Add two, one of them listed already in another case.
	r = run(t, url, "", "tenant", "recipients", "add", "--tenant", "demo", "oncall@demo.example", "Security@Demo.example", "ciso@demo.example")
	if r.code != 0 {
		t.Fatalf("add: %+v", r)
	}
	for _, want := range []string{
		"security@demo.example is already a recipient of tenant demo: nothing to add",
		"added oncall@demo.example",
		"added ciso@demo.example",
		"tenant demo has 3 recipients (revision ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("add output lacks %q:\n%s", want, r.stdout)
		}
	}
	if got, want := list(), []string{"security@demo.example", "oncall@demo.example", "ciso@demo.example"}; !slices.Equal(got, want) {
		t.Fatalf("after add: %v, want %v", got, want)
	}
	// Revisions are KW_TENANTS sequence numbers: the add wrote one, adding
	// again writes none.
	again := change("add", "--tenant", "demo", "ONCALL@demo.example")
	if again.Revision <= before.Revision || len(again.Changed) != 0 || !strings.Contains(r.stdout, "(revision "+strconv.FormatUint(again.Revision, 10)+")") {
		t.Fatalf("idempotent add after %q: %+v", r.stdout, again)
	}

	// Addresses tenant validation refuses: every one named with its fix,
	// usage status, nothing changed.
	long := strings.Repeat("a", tenant.MaxRecipientLen) + "@demo.example"
	r = run(t, url, "", "tenant", "recipients", "add", "--tenant", "demo", "Bob <bob@demo.example>", "not an address", "ok@demo.example", long)
	if r.code != 2 {
		t.Fatalf("add of bad addresses: %+v", r)
	}
	for _, want := range []string{
		`"Bob <bob@demo.example>" is not a bare email address: write only the address, without a display name`,
		`"not an address" is not an email address: write it as name@example.com`,
		"more than 254: use a shorter address",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "ok@demo.example") || slices.Contains(list(), "ok@demo.example") {
		t.Errorf("a refused add: %+v, recipients %v", r, list())
	}

	// Remove matches regardless of case; an address not listed is an error
	// and nothing is removed.
	r = run(t, url, "", "tenant", "recipients", "remove", "--tenant", "demo", "oncall@demo.example", "nobody@demo.example")
	if r.code != 1 || !strings.Contains(r.stderr, "nobody@demo.example is not a recipient of tenant demo") ||
		!strings.Contains(r.stderr, "nothing was removed") {
		t.Fatalf("remove of an absent address: %+v", r)
	}
	if len(list()) != 3 {
		t.Fatalf("a refused remove removed something: %v", list())
	}
	r = run(t, url, "", "tenant", "recipients", "remove", "--tenant", "demo", "OnCall@Demo.Example")
	if r.code != 0 || !strings.Contains(r.stdout, "removed oncall@demo.example") || !strings.Contains(r.stdout, "tenant demo has 2 recipients") {
		t.Fatalf("remove: %+v", r)
	}
	ch := change("remove", "--tenant", "demo", "security@demo.example", "ciso@demo.example")
	if len(ch.Recipients) != 0 || !slices.Equal(ch.Changed, []string{"security@demo.example", "ciso@demo.example"}) || ch.Revision <= again.Revision {
		t.Fatalf("remove --json: %+v", ch)
	}
	r = run(t, url, "", "tenant", "recipients", "list", "--tenant", "demo")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "tenant demo has no recipients") {
		t.Fatalf("list of none: %+v", r)
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("list --json of none: %v", got)
	}
	r = run(t, url, "", "tenant", "recipients", "remove", "--tenant", "demo", "security@demo.example")
	if r.code != 1 || !strings.Contains(r.stderr, "it has none") {
		t.Fatalf("remove from none: %+v", r)
	}

	// Unknown and malformed tenants, missing addresses.
	for _, args := range [][]string{
		{"list", "--tenant", "globex"},
		{"add", "--tenant", "globex", "a@globex.example"},
		{"remove", "--tenant", "globex", "a@globex.example"},
	} {
		r = run(t, url, "", append([]string{"tenant", "recipients"}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, "tenant globex is not configured") || !strings.Contains(r.stderr, "keyward tenant key add --tenant globex") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if r = run(t, url, "", "tenant", "recipients", "add", "--tenant", "Demo", "a@demo.example"); r.code != 2 || !strings.Contains(r.stderr, "--tenant") {
		t.Errorf("bad tenant: %+v", r)
	}
	if r = run(t, url, "", "tenant", "recipients", "add", "--tenant", "demo"); r.code != 2 || !strings.Contains(r.stderr, "at least one email address") {
		t.Errorf("no address: %+v", r)
	}
	if r = run(t, url, "", "tenant", "recipients", "list", "--tenant", "demo", "x@demo.example"); r.code == 0 {
		t.Errorf("list with an argument: %+v", r)
	}
}

// TestTenantAdminChangesRecipientsThroughTheService: a tenant admin changes
// its own tenant's recipients (the enrollment service writes them) and the
// change is recorded by TenantChanged naming the admin, with the recipients
// before and after; another tenant's are out of its reach.
func TestTenantAdminChangesRecipientsThroughTheService(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	own := d.Creds("admin-" + cli.DemoTenant)
	r := run(t, d.URL(), "", "--nats-creds", own, "tenant", "recipients", "add", "--tenant", cli.DemoTenant, "oncall@demo.example")
	if r.code != 0 || !strings.Contains(r.stdout, "added oncall@demo.example") {
		t.Fatalf("admin-demo adding a recipient: %+v", r)
	}
	ctx := context.Background()
	lifecycle, err := d.JS.Stream(ctx, events.StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lifecycle.GetLastMsgForSubject(ctx, events.SubjectTenantChanged(cli.DemoTenant))
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.DecodeTenantChanged(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if e.Op != events.TenantOpRecipients || !slices.Equal(e.Fields, []string{"recipients"}) ||
		e.ChangedBy.Name != "admin-"+cli.DemoTenant || e.ChangedBy.Role != "tenant-admin" || e.ChangedBy.User == "" || e.ChangedBy.Account == "" {
		t.Fatalf("TenantChanged %+v by %+v", e, e.ChangedBy)
	}
	var before, after tenant.Config
	if json.Unmarshal(e.Before, &before) != nil || json.Unmarshal(e.After, &after) != nil ||
		!slices.Equal(before.Recipients, []string{"security@demo.example"}) ||
		!slices.Equal(after.Recipients, []string{"security@demo.example", "oncall@demo.example"}) {
		t.Fatalf("before %s\nafter %s", e.Before, e.After)
	}
	if got := m.Header.Get(events.HeaderMsgID); got != events.TenantChangedMsgID(cli.DemoTenant, e.Revision) {
		t.Errorf("Nats-Msg-Id %q", got)
	}
	r = run(t, d.URL(), "", "--nats-creds", own, "--timeout", "3s", "tenant", "recipients", "add", "--tenant", cli.DemoTenantAWS, "attacker@evil.example")
	if r.code == 0 {
		t.Fatalf("admin-demo changed demo-aws's recipients: %+v", r)
	}
	if r := run(t, d.URL(), "", "tenant", "recipients", "list", "--tenant", cli.DemoTenantAWS); strings.Contains(r.stdout, "attacker") {
		t.Fatalf("demo-aws recipients: %+v", r)
	}
}
