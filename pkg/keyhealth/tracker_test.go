package keyhealth_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keyhealth"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// results builds one result per letter, 10 s apart: o ok, s slow,
// t throttled, u unreachable, r revoked (disabled), f failed, i inconclusive.
func results(seq string) []keyhealth.Result {
	var out []keyhealth.Result
	for i, c := range seq {
		r := keyhealth.Result{At: t0.Add(time.Duration(i) * 10 * time.Second), Source: events.SourceProbe}
		switch c {
		case 'o':
			r.Class, r.Reason = keyhealth.ClassOK, "ok"
		case 's':
			r.Class, r.Reason = keyhealth.ClassSlow, "slow"
		case 't':
			r.Class, r.Reason = keyhealth.ClassThrottled, "throttled"
		case 'u':
			r.Class, r.Reason = keyhealth.ClassUnreachable, "endpoint_unreachable"
		case 'r':
			r.Class, r.Reason = keyhealth.ClassKeyUnusable, "key_disabled"
		case 'f':
			r.Class, r.Reason = keyhealth.ClassFailed, "invalid_ciphertext"
		case 'i':
			r.Class, r.Reason = keyhealth.ClassInconclusive, "internal"
		}
		out = append(out, r)
	}
	return out
}

// run feeds seq to a tracker, committing every transition, and returns the
// statuses taken, as "index:status" joined by spaces.
func run(tr *keyhealth.Tracker, seq string) string {
	var got []string
	for i, r := range results(seq) {
		if x, ok := tr.Observe(r); ok {
			tr.Commit(x)
			got = append(got, string(rune('0'+i%10))+":"+string(x.To))
		}
	}
	return strings.Join(got, " ")
}

func TestTrackerHysteresis(t *testing.T) {
	cases := []struct {
		name      string
		threshold int
		seed      events.KeyStatus
		seq       string
		want      string
	}{
		{"first status after three", 3, "", "ooo", "2:available"},
		{"two are not enough", 3, "", "oo", ""},
		{"outage", 3, events.KeyStatusAvailable, "ouuu", "3:unavailable"},
		{"outage and recovery", 3, events.KeyStatusAvailable, "uuuooo", "2:unavailable 5:available"},
		{"a blip is ignored", 3, events.KeyStatusAvailable, "ouuouuoo", ""},
		{"inconclusive neither breaks nor extends a run", 3, events.KeyStatusAvailable, "uiuiu", "4:unavailable"},
		{"another failure restarts the run", 3, events.KeyStatusAvailable, "uutuuu", "5:unavailable"},
		{"slow and throttled agree on degraded", 3, events.KeyStatusAvailable, "sts", "2:degraded"},
		{"unreachable and failed agree on unavailable", 3, events.KeyStatusAvailable, "ufu", "2:unavailable"},
		{"revoked", 3, events.KeyStatusAvailable, "rrr", "2:revoked"},
		{"revoked to unavailable", 3, events.KeyStatusRevoked, "uuu", "2:unavailable"},
		{"agreeing with the status clears the run", 3, events.KeyStatusDegraded, "ootoo", ""},
		{"threshold one follows every change", 1, events.KeyStatusAvailable, "uou", "0:unavailable 1:available 2:unavailable"},
		{"threshold two", 2, events.KeyStatusAvailable, "uouuoo", "3:unavailable 5:available"},
		{"perfect flapping never changes", 3, events.KeyStatusAvailable, "uouououououo", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := keyhealth.NewTracker(tc.threshold)
			if tc.seed != "" {
				tr.Seed(tc.seed, "seeded", t0.Add(-time.Hour))
			}
			if got := run(tr, tc.seq); got != tc.want {
				t.Errorf("%q: transitions %q, want %q", tc.seq, got, tc.want)
			}
		})
	}
}

func TestTrackerTransitionFields(t *testing.T) {
	tr := keyhealth.NewTracker(3)
	tr.Seed(events.KeyStatusAvailable, "ok", t0.Add(-time.Hour))
	rs := results("ouuu")
	rs[3].Latency, rs[3].Source = 2*time.Second, events.SourceObservation
	var x keyhealth.Transition
	var ok bool
	for _, r := range rs {
		x, ok = tr.Observe(r)
	}
	if !ok {
		t.Fatal("no transition")
	}
	want := keyhealth.Transition{From: events.KeyStatusAvailable, To: events.KeyStatusUnavailable, Reason: "endpoint_unreachable",
		Since: rs[1].At, Latency: 2 * time.Second, Source: events.SourceObservation}
	if x != want {
		t.Errorf("transition %+v, want %+v", x, want)
	}
	// Not committed: the status stays and the next agreeing result proposes
	// the same transition again, with the same Since (the same event id).
	if st, _, _ := tr.Status(); st != events.KeyStatusAvailable {
		t.Errorf("status %s before Commit", st)
	}
	again, ok := tr.Observe(results("oooou")[4])
	if !ok || again.Since != x.Since || again.To != x.To {
		t.Errorf("re-proposed %+v, %v", again, ok)
	}
	tr.Commit(again)
	if st, reason, since := tr.Status(); st != events.KeyStatusUnavailable || reason != "endpoint_unreachable" || !since.Equal(rs[1].At) {
		t.Errorf("after Commit: %s %q %v", st, reason, since)
	}
	if tr.Pending() {
		t.Error("pending after Commit")
	}
}

func TestTrackerPendingAndCandidate(t *testing.T) {
	tr := keyhealth.NewTracker(0)
	if tr.Threshold() != keyhealth.DefaultThreshold {
		t.Fatalf("threshold %d", tr.Threshold())
	}
	tr.Seed(events.KeyStatusAvailable, "ok", t0)
	tr.Observe(results("t")[0])
	if c, n := tr.Candidate(); !tr.Pending() || c != events.KeyStatusDegraded || n != 1 {
		t.Errorf("candidate %s×%d pending %v", c, n, tr.Pending())
	}
	tr.Observe(results("o")[0])
	if tr.Pending() {
		t.Error("still pending after an agreeing result")
	}
}

// A flapping key changes status at most once per hysteresis window: between
// two transitions there are always at least Threshold results, whatever
// the sequence. Random sequences of healthy and failing results, biased
// towards runs shorter than the window.
func TestTrackerFlappingChangesAtMostOncePerWindow(t *testing.T) {
	letters := "ooooouuutsr"
	for _, threshold := range []int{1, 2, 3, 5} {
		rng := rand.New(rand.NewPCG(uint64(threshold), 42))
		for trial := 0; trial < 200; trial++ {
			tr := keyhealth.NewTracker(threshold)
			tr.Seed(events.KeyStatusAvailable, "ok", t0)
			last := -1
			changes := 0
			n := 200
			for i := 0; i < n; i++ {
				r := results(string(letters[rng.IntN(len(letters))]))[0]
				x, ok := tr.Observe(r)
				if !ok {
					continue
				}
				tr.Commit(x)
				changes++
				if last >= 0 && i-last < threshold {
					t.Fatalf("threshold %d: transitions at results %d and %d, fewer than %d apart", threshold, last, i, threshold)
				}
				last = i
			}
			if changes > n/threshold {
				t.Fatalf("threshold %d: %d changes in %d results", threshold, changes, n)
			}
		}
	}
}
