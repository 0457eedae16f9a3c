package cli_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
)

// keyward status counts keys by status, lists those that are away, and
// shows breakers whose last reported state is not closed.
func TestStatusShowsKeyHealth(t *testing.T) {
	d := startDev(t, filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	// Play the key-health-monitor and an encryptor, as their identities.
	_, monJS := as(t, d, "key-health-monitor")
	_, encJS := as(t, d, "encryptor")
	kv, err := monJS.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, r := range []keystatus.Record{
		{TenantID: "acme", KeyURI: "awskms://alias/a?region=eu-west-2", Status: events.KeyStatusRevoked, Reason: "key_disabled", Since: since},
		{TenantID: "globex", KeyURI: "awskms://alias/g?region=eu-west-2", Status: events.KeyStatusAvailable, Reason: "ok", Since: since},
	} {
		if err := keystatus.Put(ctx, kv, r); err != nil {
			t.Fatal(err)
		}
	}
	pub := events.NewPublisher(encJS, "test")
	for i, to := range []string{"open", "half_open", "open"} {
		from := "closed"
		if i > 0 {
			from = "open"
		}
		e := &events.BreakerStateChanged{Provider: "awskms", Endpoint: "awskms:eu-west-2", From: from, To: to, Worker: "encryptor/a", At: since.Add(time.Duration(i) * time.Second)}
		if _, err := pub.Publish(ctx, events.Outgoing{Subject: events.SubjectBreaker("awskms"), MsgID: "b" + to + string(rune('0'+i)), Type: events.TypeBreakerStateChanged, Event: e}); err != nil {
			t.Fatal(err)
		}
	}
	closed := &events.BreakerStateChanged{Provider: "ocikms", Endpoint: "ocikms:us-ashburn-1:x", From: "open", To: "closed", Worker: "encryptor/a", At: since}
	if _, err := pub.Publish(ctx, events.Outgoing{Subject: events.SubjectBreaker("ocikms"), MsgID: "c", Type: events.TypeBreakerStateChanged, Event: closed}); err != nil {
		t.Fatal(err)
	}

	r := run(t, d.URL(), "", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "acme awskms://alias/a?region=eu-west-2") || !strings.Contains(r.stdout, "revoked since 2026-11-28T12:00:00Z") ||
		!strings.Contains(r.stdout, "awskms:eu-west-2") || strings.Contains(r.stdout, "ocikms:us-ashburn-1") || strings.Contains(r.stdout, "globex") {
		t.Fatalf("status: %+v", r)
	}
	r = run(t, d.URL(), "", "--json", "status")
	var st struct {
		Keys struct {
			ByStatus map[string]int `json:"by_status"`
			Breakers []struct{ Endpoint, State string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Keys.ByStatus["revoked"] != 1 || st.Keys.ByStatus["available"] != 1 || len(st.Keys.Breakers) != 1 || st.Keys.Breakers[0].State != "open" {
		t.Fatalf("status --json keys: %+v", st.Keys)
	}
}
