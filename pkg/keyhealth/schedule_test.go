package keyhealth_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keyhealth"
)

func TestScheduleInterval(t *testing.T) {
	s := keyhealth.Schedule{}
	const (
		none        = events.KeyStatusUnknown
		available   = events.KeyStatusAvailable
		degraded    = events.KeyStatusDegraded
		unavailable = events.KeyStatusUnavailable
		revoked     = events.KeyStatusRevoked
	)
	cases := []struct {
		st, candidate events.KeyStatus
		want          time.Duration
	}{
		{none, none, 60 * time.Second},
		{none, available, 60 * time.Second}, // a new key is confirmed at the healthy pace
		// Results disagreeing with the status are confirmed at 2 s.
		{none, unavailable, 2 * time.Second},
		{none, revoked, 2 * time.Second},
		{available, none, 60 * time.Second},
		{available, degraded, 2 * time.Second},
		{available, unavailable, 2 * time.Second},
		{available, revoked, 2 * time.Second},
		{degraded, none, 10 * time.Second},
		{degraded, available, 2 * time.Second},
		{unavailable, none, 10 * time.Second},
		{unavailable, available, 2 * time.Second},
		{unavailable, revoked, 2 * time.Second},
		{revoked, none, 10 * time.Second},
	}
	for _, tc := range cases {
		if got := s.Interval(tc.st, tc.candidate); got != tc.want {
			t.Errorf("Interval(%q, %q) = %v, want %v", tc.st, tc.candidate, got, tc.want)
		}
	}
	custom := keyhealth.Schedule{Healthy: time.Second, Unhealthy: 100 * time.Millisecond}
	if custom.Interval(available, none) != time.Second || custom.Interval(revoked, none) != 100*time.Millisecond {
		t.Error("custom intervals ignored")
	}
	// Confirm is never slower than Unhealthy.
	if got := custom.Interval(available, revoked); got != 100*time.Millisecond {
		t.Errorf("confirm with a short unhealthy interval: %v", got)
	}
	if got := (keyhealth.Schedule{Confirm: 500 * time.Millisecond}).Interval(unavailable, available); got != 500*time.Millisecond {
		t.Errorf("custom confirm interval: %v", got)
	}
}

func TestScheduleJitter(t *testing.T) {
	cases := []struct {
		jitter   float64
		u        float64
		min, max time.Duration
	}{
		{0, 0, 54 * time.Second, 54 * time.Second},
		{0, 0.5, 60 * time.Second, 60 * time.Second},
		{0, 0.99999, 65 * time.Second, 66 * time.Second},
		{-1, 0, 60 * time.Second, 60 * time.Second},
		{-1, 0.9, 60 * time.Second, 60 * time.Second},
		{0.25, 0, 45 * time.Second, 45 * time.Second},
		{0.9, 0, 30 * time.Second, 30 * time.Second}, // capped at 0.5
		{0, 7, 65 * time.Second, 66 * time.Second},   // u clamped
	}
	for _, tc := range cases {
		s := keyhealth.Schedule{Jitter: tc.jitter}
		if got := s.Next(events.KeyStatusAvailable, "", tc.u); got < tc.min || got > tc.max {
			t.Errorf("jitter %v u %v: Next = %v, want in [%v, %v]", tc.jitter, tc.u, got, tc.min, tc.max)
		}
	}
}

// First spreads 10,000 keys' first probes so that, with every later probe
// Next after the previous one, the probe rate is flat from the start: no
// second of the first five intervals sees more than 1.35× or less than
// 0.65× the average (±4.5 standard deviations of the count), in particular not around the end of the first
// interval, where first and second probes meet.
func TestScheduleFirstIsSteadyFromTheStart(t *testing.T) {
	for _, tc := range []struct{ jitter, effective float64 }{{0, 0.1}, {-1, 0}, {0.1, 0.1}, {0.3, 0.3}} {
		jitter := tc.jitter
		longest := time.Duration(float64(60*time.Second) * (1 + tc.effective))
		s := keyhealth.Schedule{Jitter: jitter}
		rng := rand.New(rand.NewPCG(1, 2))
		const keys, seconds = 10000, 300
		var perSecond [seconds]int
		for range keys {
			at := s.First(events.KeyStatusUnknown, "", rng.Float64())
			if at < 0 || at > longest {
				t.Fatalf("First = %v outside [0, %v]", at, longest)
			}
			for at < seconds*time.Second {
				perSecond[int(at/time.Second)]++
				at += s.Next(events.KeyStatusAvailable, "", rng.Float64())
			}
		}
		avg := float64(keys) / 60
		for sec, n := range perSecond {
			if float64(n) > 1.35*avg || float64(n) < 0.65*avg {
				t.Errorf("jitter %v, second %d: %d probes, average %.0f", jitter, sec, n, avg)
			}
		}
	}
	if d := (keyhealth.Schedule{Jitter: -1}).First(events.KeyStatusRevoked, "", 0.5); d != 5*time.Second {
		t.Errorf("First of a revoked key = %v, want half the unhealthy interval", d)
	}
	if d := (keyhealth.Schedule{}).First(events.KeyStatusAvailable, "", 0.9999999); d < 65*time.Second || d > 66*time.Second {
		t.Errorf("First at u→1 = %v, want the longest interval, 66 s", d)
	}
}

func TestPartition(t *testing.T) {
	const n = 32
	counts := make([]int, n)
	for i := range 10000 {
		id := fmt.Sprintf("tenant-%d", i)
		p := keyhealth.Partition(id, n)
		if p != keyhealth.Partition(id, n) {
			t.Fatal("not deterministic")
		}
		counts[p]++
	}
	for p, c := range counts {
		if c < 200 || c > 430 { // 312 on average
			t.Errorf("partition %d holds %d of 10000 tenants", p, c)
		}
	}
	// Pinned: changing the function moves every tenant between instances.
	if got := keyhealth.Partition("acme", 32); got != 15 {
		t.Errorf("Partition(acme, 32) = %d, want 15", got)
	}
	if keyhealth.Partition("acme", 1) != 0 || keyhealth.Partition("acme", 0) != 0 {
		t.Error("a single partition must be 0")
	}
}

func TestShare(t *testing.T) {
	for _, tc := range []struct{ n, live, want int }{
		{32, 1, 32}, {32, 2, 16}, {32, 3, 11}, {32, 5, 7}, {32, 64, 1}, {32, 0, 32}, {1, 2, 1},
	} {
		if got := keyhealth.Share(tc.n, tc.live); got != tc.want {
			t.Errorf("Share(%d, %d) = %d, want %d", tc.n, tc.live, got, tc.want)
		}
	}
}

func TestQueue(t *testing.T) {
	var q keyhealth.Queue
	if _, _, ok := q.Peek(); ok {
		t.Fatal("empty queue peeked")
	}
	q.Set("c", t0.Add(3*time.Second))
	q.Set("a", t0.Add(1*time.Second))
	q.Set("b", t0.Add(2*time.Second))
	q.Set("d", t0.Add(4*time.Second))
	if id, due, _ := q.Peek(); id != "a" || !due.Equal(t0.Add(time.Second)) {
		t.Fatalf("Peek = %s %v", id, due)
	}
	q.Set("a", t0.Add(10*time.Second)) // moved later
	if !q.Advance("d", t0) || q.Advance("zz", t0) {
		t.Fatal("Advance")
	}
	q.Advance("b", t0.Add(time.Hour)) // never later
	if !q.Remove("c") || q.Remove("c") {
		t.Fatal("Remove")
	}
	if due, ok := q.Due("b"); !ok || !due.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("Due(b) = %v %v", due, ok)
	}
	var order []string
	for {
		id, ok := q.PopDue(t0.Add(5 * time.Second))
		if !ok {
			break
		}
		order = append(order, id)
	}
	if fmt.Sprint(order) != "[d b]" || q.Len() != 1 {
		t.Fatalf("popped %v, %d left", order, q.Len())
	}
	if _, ok := q.PopDue(t0.Add(9 * time.Second)); ok {
		t.Fatal("popped a key not due")
	}
	if id, ok := q.PopDue(t0.Add(10 * time.Second)); !ok || id != "a" {
		t.Fatalf("PopDue = %s %v", id, ok)
	}
}
