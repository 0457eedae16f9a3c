package cli_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// keyward dev answers call admissions: the demo tenant's call is recorded
// under its key; with the demo key disabled, it continues unrecorded (the
// demo tenant falls back only on outages), and with drop calls on it is
// dropped.
func TestDevAnswersCallAdmissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	phoneNC, _ := as(t, d, "phone")
	admit := func() events.CallDecision {
		t.Helper()
		req, _ := json.Marshal(events.CallAdmission{CallID: "call-1", TenantID: "demo", UserID: "u-1", Direction: events.DirectionInbound, RecordingRequested: true})
		m, err := phoneNC.Request(events.SubjectPhoneAdmit("demo"), req, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var dec events.CallDecision
		if err := json.Unmarshal(m.Data, &dec); err != nil {
			t.Fatal(err)
		}
		return dec
	}
	if dec := admit(); dec.Decision != events.DecisionRecord || dec.Mode != events.ModeCustomer {
		t.Fatalf("demo call: %+v", dec)
	}
	if r := run(t, d.URL(), "", "dev", "key", "disable", "--data-dir", dir, "demo"); r.code != 0 {
		t.Fatalf("dev key disable: %+v", r)
	}
	waitDecision(t, admit, events.DecisionNoRecord)
	if r := run(t, d.URL(), "", "tenant", "phone", "--tenant", "demo", "--drop-calls", "on"); r.code != 0 {
		t.Fatalf("tenant phone: %+v", r)
	}
	waitDecision(t, admit, events.DecisionDrop)
}

func waitDecision(t *testing.T, admit func() events.CallDecision, want events.CallDecisionKind) {
	t.Helper()
	var last events.CallDecision
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if last = admit(); last.Decision == want {
			return
		}
	}
	t.Fatalf("decision %+v, want %s", last, want)
}
