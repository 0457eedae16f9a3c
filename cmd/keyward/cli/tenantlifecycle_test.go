package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/enroll"
)

// devKey creates a local key in keyward dev's key directory and returns its
// URI.
func devKey(t *testing.T, url, dir, name string) string {
	t.Helper()
	r := run(t, url, "", "dev", "key", "create", "--data-dir", dir, name)
	if r.code != 0 {
		t.Fatalf("dev key create %s: %+v", name, r)
	}
	return strings.SplitN(r.stdout, "\n", 2)[0]
}

func TestTenantKeyRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	old, next := devKey(t, d.URL(), dir, "hooli-1"), devKey(t, d.URL(), dir, "hooli-2")

	// Nothing to rotate from.
	r := run(t, d.URL(), "", "tenant", "key", "rotate", "--tenant", "hooli", "--uri", next)
	if r.code != 1 || !strings.Contains(r.stderr, "rotation refused (conflict)") || !strings.Contains(r.stderr, "keyward tenant key add --tenant hooli") {
		t.Fatalf("rotate without a primary: %+v", r)
	}
	if r = run(t, d.URL(), "", "tenant", "key", "add", "--tenant", "hooli", "--uri", old); r.code != 0 {
		t.Fatalf("add: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "rotate", "--tenant", "hooli", "--uri", next)
	if r.code != 0 {
		t.Fatalf("rotate: %+v", r)
	}
	for _, want := range []string{
		"rotated tenant hooli to " + next,
		"new primary  " + next,
		"retiring     " + old + " (the old primary)",
		"a rotation job rewraps every asset from " + old + " to " + next + "; keep " + old + " enabled until RotationCompleted (watch with `keyward reencrypt status --tenant hooli`)",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rotate output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.stderr != "" {
		t.Errorf("rotate stderr: %s", r.stderr)
	}

	r = run(t, d.URL(), "", "tenant", "key", "list", "--tenant", "hooli")
	if r.code != 0 || !lineWith(r.stdout, old, "retiring") || !lineWith(r.stdout, next, "primary") || !strings.Contains(r.stdout, "1 retiring: decrypt only") {
		t.Fatalf("list after rotation: %+v", r)
	}

	// Rotating to a key already enrolled, and flag errors.
	r = run(t, d.URL(), "", "tenant", "key", "rotate", "--tenant", "hooli", "--uri", old)
	if r.code != 1 || !strings.Contains(r.stderr, "as retiring") {
		t.Fatalf("rotate back to the retiring key: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "rotate", "--tenant", "Hooli", "--uri", next)
	if r.code == 0 || !strings.Contains(r.stderr, "--tenant") {
		t.Fatalf("bad tenant: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "rotate", "--tenant", "hooli")
	if r.code == 0 || !strings.Contains(r.stderr, "uri") {
		t.Fatalf("no --uri: %+v", r)
	}

	// A new asset is under the new key.
	src := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(src, []byte("after rotation"), 0o644)
	if r = run(t, d.URL(), "", "asset", "put", "--tenant", "hooli", src); r.code != 0 || !strings.Contains(r.stdout, "customer (covered)") {
		t.Fatalf("put after rotation: %+v", r)
	}
}

func TestTenantDeprovision(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	key := devKey(t, d.URL(), dir, "umbrella")

	r := run(t, d.URL(), "", "tenant", "deprovision", "schedule", "--tenant", "umbrella", "--at", "now")
	if r.code != 1 || !strings.Contains(r.stderr, "deprovisioning refused (conflict)") {
		t.Fatalf("schedule for an unknown tenant: %+v", r)
	}
	if r = run(t, d.URL(), "", "tenant", "key", "add", "--tenant", "umbrella", "--uri", key); r.code != 0 {
		t.Fatalf("add: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "deprovision", "schedule", "--tenant", "umbrella", "--at", "tomorrow")
	if r.code == 0 || !strings.Contains(r.stderr, `--at: "tomorrow" is not a time`) || !strings.Contains(r.stderr, "RFC 3339") {
		t.Fatalf("bad --at: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "deprovision", "schedule", "--tenant", "umbrella")
	if r.code == 0 || !strings.Contains(r.stderr, "at") {
		t.Fatalf("no --at: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "deprovision", "cancel", "--tenant", "umbrella")
	if r.code != 1 || !strings.Contains(r.stderr, "no deprovisioning is scheduled") {
		t.Fatalf("cancel with nothing scheduled: %+v", r)
	}

	at := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	atText := at.Format(time.RFC3339)
	r = run(t, d.URL(), "", "tenant", "deprovision", "schedule", "--tenant", "umbrella", "--at", atText)
	if r.code != 0 || !strings.Contains(r.stdout, "deprovisioning of tenant umbrella scheduled for "+atText) ||
		!strings.Contains(r.stdout, "keyward tenant deprovision cancel --tenant umbrella") {
		t.Fatalf("schedule: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "list", "--tenant", "umbrella")
	if r.code != 0 || !strings.Contains(r.stdout, "deprovisioning scheduled for "+atText) {
		t.Fatalf("list with a schedule: %+v", r)
	}
	// Assets before the date stay under the customer key.
	src := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(src, []byte("before the date"), 0o644)
	if r = run(t, d.URL(), "", "asset", "put", "--tenant", "umbrella", src); r.code != 0 || !strings.Contains(r.stdout, "customer (covered)") {
		t.Fatalf("put before the date: %+v", r)
	}

	r = run(t, d.URL(), "", "--json", "tenant", "deprovision", "cancel", "--tenant", "umbrella")
	var resp enroll.Response
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &resp) != nil || resp.Deprovision == nil || !resp.Deprovision.At.Equal(at) {
		t.Fatalf("cancel --json: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "list", "--tenant", "umbrella")
	if r.code != 0 || strings.Contains(r.stdout, "deprovision") {
		t.Fatalf("list after cancel: %+v", r)
	}

	// Now: it starts at once and cannot be cancelled.
	r = run(t, d.URL(), "", "tenant", "deprovision", "schedule", "--tenant", "umbrella", "--at", "now")
	if r.code != 0 || !strings.Contains(r.stdout, "deprovisioning of tenant umbrella started now") || !strings.Contains(r.stdout, "no longer possible") {
		t.Fatalf("schedule now: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "deprovision", "cancel", "--tenant", "umbrella")
	if r.code != 1 || !strings.Contains(r.stderr, "it cannot be cancelled; it completes with DeprovisionCompleted") {
		t.Fatalf("cancel after start: %+v", r)
	}
	// Another asset (the asset id is the file name: the same one would be
	// answered with its first outcome).
	src = filepath.Join(t.TempDir(), "g.txt")
	os.WriteFile(src, []byte("after the date"), 0o644)
	if r = run(t, d.URL(), "", "asset", "put", "--tenant", "umbrella", src); r.code != 0 || !strings.Contains(r.stdout, "platform (deprovisioned)") {
		t.Fatalf("put after the start: %+v", r)
	}
}

// lineWith reports whether one line of out contains every part.
func lineWith(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}
