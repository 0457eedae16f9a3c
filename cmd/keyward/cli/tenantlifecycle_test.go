package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
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
	before := filepath.Join(t.TempDir(), "before.txt")
	os.WriteFile(before, []byte("before rotation"), 0o644)
	if r = run(t, d.URL(), "", "asset", "put", "--tenant", "hooli", before); r.code != 0 || !strings.Contains(r.stdout, "customer (covered)") {
		t.Fatalf("put before rotation: %+v", r)
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

	// The re-encryptor rewraps the asset stored under the old key, then
	// retires it from the configuration.
	waitJobState(t, d.URL(), "hooli", "rotation", "completed")
	r = run(t, d.URL(), "", "tenant", "key", "list", "--tenant", "hooli")
	if r.code != 0 || strings.Contains(r.stdout, old) || !lineWith(r.stdout, next, "primary") || strings.Contains(r.stdout, "retiring") {
		t.Fatalf("list after the rotation completed: %+v", r)
	}
	r = run(t, d.URL(), "", "asset", "get", "--tenant", "hooli", "before.txt")
	if r.code != 0 || r.stdout != "before rotation" {
		t.Fatalf("the asset stored before the rotation: %+v", r)
	}

	r = run(t, d.URL(), "", "--json", "reencrypt", "status", "--tenant", "hooli")
	var jobs []reencryptor.Job
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &jobs) != nil || len(jobs) != 1 || jobs[0].Purpose != events.PurposeRotation ||
		jobs[0].Done != 1 || jobs[0].ToKeyURI != next || !jobs[0].Finalized {
		t.Fatalf("reencrypt status --json: %+v", r)
	}
	if r = run(t, d.URL(), "", "reencrypt", "status", "--tenant", "nobody"); r.code != 0 || !strings.Contains(r.stdout, "no re-encryption job for tenant nobody") {
		t.Fatalf("status of a tenant without jobs: %+v", r)
	}
	if r = run(t, d.URL(), "", "reencrypt", "status", "--tenant", "No Body"); r.code == 0 || !strings.Contains(r.stderr, "--tenant") {
		t.Fatalf("status with a bad tenant id: %+v", r)
	}

	// Rotating to the key already enrolled, and flag errors.
	r = run(t, d.URL(), "", "tenant", "key", "rotate", "--tenant", "hooli", "--uri", next)
	if r.code != 1 || !strings.Contains(r.stderr, "is already the primary key of tenant hooli") {
		t.Fatalf("rotate to the current primary: %+v", r)
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
	// The re-encryptor moves the stored asset to the platform key and
	// removes the tenant's keys; then nothing can be cancelled.
	waitJobState(t, d.URL(), "umbrella", "deprovision", "completed")
	r = run(t, d.URL(), "", "tenant", "deprovision", "cancel", "--tenant", "umbrella")
	if r.code != 1 || !strings.Contains(r.stderr, "a completed deprovisioning cannot be cancelled") {
		t.Fatalf("cancel after completion: %+v", r)
	}
	r = run(t, d.URL(), "", "tenant", "key", "list", "--tenant", "umbrella")
	if r.code != 0 || strings.Contains(r.stdout, key) {
		t.Fatalf("list after deprovisioning: %+v", r)
	}
	if r = run(t, d.URL(), "", "asset", "get", "--tenant", "umbrella", "f.txt"); r.code != 0 || r.stdout != "before the date" {
		t.Fatalf("the asset stored before the date: %+v", r)
	}
	// Another asset (the asset id is the file name: the same one would be
	// answered with its first outcome) goes under the platform key.
	src = filepath.Join(t.TempDir(), "g.txt")
	os.WriteFile(src, []byte("after the date"), 0o644)
	if r = run(t, d.URL(), "", "asset", "put", "--tenant", "umbrella", src); r.code != 0 || !strings.Contains(r.stdout, "platform (") {
		t.Fatalf("put after deprovisioning: %+v", r)
	}
}

// waitJobState waits until `keyward reencrypt status --tenant T` shows the
// purpose's job in state, finished (its completion event published).
func waitJobState(t *testing.T, url, tenantID, purpose, state string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var r result
	for time.Now().Before(deadline) {
		r = run(t, url, "", "reencrypt", "status", "--tenant", tenantID)
		if r.code == 0 && lineWith(r.stdout, tenantID, purpose, state) && !strings.Contains(r.stdout, "finishing") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the %s job of %s never reached %s: %+v", purpose, tenantID, state, r)
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
