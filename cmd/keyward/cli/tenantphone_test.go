package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// phoneSettings is what tenant phone prints with --json.
type phoneSettings struct {
	TenantID  string `json:"tenant_id"`
	Revision  uint64 `json:"revision"`
	DropCalls bool   `json:"drop_calls"`
	Changed   *bool  `json:"changed"`
	Previous  *bool  `json:"previous"`
	EventID   string `json:"event_id"`
}

func TestTenantPhone(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	url := d.URL()
	ctx := context.Background()
	_, adminJS := as(t, d, "admin")
	store, err := tenant.OpenStore(ctx, adminJS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	lifecycle, err := d.JS.Stream(ctx, events.StreamLifecycle)
	if err != nil {
		t.Fatal(err)
	}
	subject := events.SubjectPhoneSettingsChanged("demo")
	// last is the last PhoneSettingsChanged of tenant demo in KW_LIFECYCLE
	// (nil when there is none).
	last := func() *jetstream.RawStreamMsg {
		t.Helper()
		m, err := lifecycle.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	settings := func(args ...string) phoneSettings {
		t.Helper()
		r := run(t, url, "", append([]string{"--json", "tenant", "phone", "--tenant", "demo"}, args...)...)
		var s phoneSettings
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil || s.TenantID != "demo" || s.Revision == 0 {
			t.Fatalf("tenant phone %v: %+v", args, r)
		}
		return s
	}

	// keyward dev's demo tenant keeps calls going unrecorded.
	r := run(t, url, "", "tenant", "phone", "--tenant", "demo")
	if r.code != 0 || !strings.Contains(r.stdout, "drop_calls  off") || !strings.Contains(r.stdout, "goes on without a recording") {
		t.Fatalf("show: %+v", r)
	}
	shown := settings()
	if shown.DropCalls || shown.Changed != nil || shown.Previous != nil || shown.EventID != "" {
		t.Fatalf("show --json: %+v", shown)
	}

	// Setting the value it has is a note: nothing written, nothing published.
	r = run(t, url, "", "tenant", "phone", "--tenant", "demo", "--drop-calls", "off")
	if r.code != 0 || !strings.Contains(r.stdout, "already has drop_calls off: nothing changed, no event published") {
		t.Fatalf("same value: %+v", r)
	}
	if same := settings("--drop-calls", "off"); same.Changed == nil || *same.Changed || same.Revision != shown.Revision || same.EventID != "" {
		t.Fatalf("same value --json: %+v, shown at revision %d", same, shown.Revision)
	}
	if m := last(); m != nil {
		t.Fatalf("an unchanged setting published %s", m.Data)
	}

	// On: stored with a new revision, announced once with the revision in
	// its message id.
	r = run(t, url, "", "tenant", "phone", "--tenant", "demo", "--drop-calls", "on")
	if r.code != 0 || !strings.Contains(r.stdout, "tenant demo: drop_calls on (was off), revision ") || !strings.Contains(r.stdout, "is dropped") {
		t.Fatalf("on: %+v", r)
	}
	c, err := store.Get(ctx, "demo")
	if err != nil || !c.Phone.DropCalls || c.Revision <= shown.Revision {
		t.Fatalf("stored after on: %+v, %v", c, err)
	}
	wantID := "phone_settings_changed.demo." + strconv.FormatUint(c.Revision, 10)
	if !strings.Contains(r.stdout, "published PhoneSettingsChanged "+wantID) {
		t.Errorf("on output lacks the event id %s:\n%s", wantID, r.stdout)
	}
	m := last()
	if m == nil {
		t.Fatal("no PhoneSettingsChanged after on")
	}
	e, err := events.DecodePhoneSettingsChanged(m.Data)
	if err != nil || !e.DropCalls || e.Previous || e.TenantID != "demo" {
		t.Fatalf("event after on: %+v, %v", e, err)
	}
	if got := m.Header.Get(events.HeaderMsgID); got != wantID {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, wantID)
	}
	if got := m.Header.Get(events.HeaderCEType); got != events.TypePhoneSettingsChanged {
		t.Errorf("ce-type = %q, want %q", got, events.TypePhoneSettingsChanged)
	}
	onSeq := m.Sequence

	// On again: nothing new.
	if again := settings("--drop-calls", "on"); again.Changed == nil || *again.Changed || !again.DropCalls || again.Revision != c.Revision {
		t.Fatalf("on again: %+v", again)
	}
	if m := last(); m.Sequence != onSeq {
		t.Fatalf("on again published %s", m.Data)
	}

	// Off, with --json: the change, its previous value and event id.
	off := settings("--drop-calls", "off")
	if off.DropCalls || off.Changed == nil || !*off.Changed || off.Previous == nil || !*off.Previous || off.Revision <= c.Revision ||
		off.EventID != "phone_settings_changed.demo."+strconv.FormatUint(off.Revision, 10) {
		t.Fatalf("off --json: %+v", off)
	}
	m = last()
	if e, err := events.DecodePhoneSettingsChanged(m.Data); err != nil || e.DropCalls || !e.Previous || m.Header.Get(events.HeaderMsgID) != off.EventID {
		t.Fatalf("event after off: %+v, %v, %v", e, err, m.Header)
	}
	if c, err := store.Get(ctx, "demo"); err != nil || c.Phone.DropCalls || c.Revision != off.Revision {
		t.Fatalf("stored after off: %+v, %v", c, err)
	}
	// The change touched nothing else of the tenant.
	if c, _ := store.Get(ctx, "demo"); len(c.Keys) == 0 || len(c.Recipients) != 1 || !c.Fallback {
		t.Errorf("other settings changed: %+v", c)
	}

	// Bad values and tenants: errors naming the flag, nothing changed.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tenant", "demo", "--drop-calls", "yes"}, 2, `--drop-calls: "yes" is not a setting: use on`},
		{[]string{"--tenant", "demo", "--drop-calls", ""}, 2, `--drop-calls: "" is not a setting`},
		{[]string{"--tenant", "demo", "--drop-calls", "ON"}, 2, "--drop-calls"},
		{[]string{"--tenant", "demo", "--drop-calls"}, 2, "--drop-calls"},
		{[]string{"--tenant", "globex", "--drop-calls", "on"}, 1, "--tenant: tenant globex is not configured"},
		{[]string{"--tenant", "globex"}, 1, "--tenant: tenant globex is not configured"},
		{[]string{"--tenant", "Demo"}, 2, "--tenant"},
		// cobra's own checks exit 1, as everywhere in keyward.
		{[]string{"--drop-calls", "on"}, 1, `required flag(s) "tenant" not set`},
		{[]string{"--tenant", "demo", "on"}, 1, `unknown command "on"`},
	} {
		r := run(t, url, "", append([]string{"tenant", "phone"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v; want status %d and %q", tc.args, r, tc.code, tc.want)
		}
	}
	if m := last(); m.Header.Get(events.HeaderMsgID) != off.EventID {
		t.Errorf("a refused command published %s", m.Data)
	}
	if c, _ := store.Get(ctx, "demo"); c.Revision != off.Revision {
		t.Errorf("a refused command wrote revision %d", c.Revision)
	}
}
