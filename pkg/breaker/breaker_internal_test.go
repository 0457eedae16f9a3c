package breaker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

func TestReadyToTrip(t *testing.T) {
	d := DefaultSettings()
	noConsecutive := d
	noConsecutive.ConsecutiveFailures = -1
	noRatio := d
	noRatio.FailureRatio = -1
	tests := []struct {
		name string
		st   Settings
		c    gobreaker.Counts
		want bool
	}{
		{"4 in a row", d, gobreaker.Counts{Requests: 4, TotalFailures: 4, ConsecutiveFailures: 4}, false},
		{"5 in a row", d, gobreaker.Counts{Requests: 5, TotalFailures: 5, ConsecutiveFailures: 5}, true},
		{"1 of 1", d, gobreaker.Counts{Requests: 1, TotalFailures: 1, ConsecutiveFailures: 1}, false},
		{"5 of 9: too few calls", d, gobreaker.Counts{Requests: 9, TotalSuccesses: 4, TotalFailures: 5, ConsecutiveFailures: 1}, false},
		{"5 of 10", d, gobreaker.Counts{Requests: 10, TotalSuccesses: 5, TotalFailures: 5, ConsecutiveFailures: 1}, true},
		{"4 of 10", d, gobreaker.Counts{Requests: 10, TotalSuccesses: 6, TotalFailures: 4, ConsecutiveFailures: 1}, false},
		// Calls in flight and excluded calls (throttled, cancelled) are in
		// Requests but not in the ratio.
		{"5 of 10 with 90 in flight", d, gobreaker.Counts{Requests: 100, TotalSuccesses: 5, TotalFailures: 5, ConsecutiveFailures: 1}, true},
		{"4 of 9 with 20 excluded", d, gobreaker.Counts{Requests: 29, TotalSuccesses: 5, TotalFailures: 4, TotalExclusions: 20, ConsecutiveFailures: 1}, false},
		{"consecutive rule off", noConsecutive, gobreaker.Counts{Requests: 5, TotalFailures: 5, ConsecutiveFailures: 5}, false},
		{"consecutive rule off, ratio trips", noConsecutive, gobreaker.Counts{Requests: 10, TotalFailures: 10, ConsecutiveFailures: 10}, true},
		{"ratio rule off", noRatio, gobreaker.Counts{Requests: 10, TotalSuccesses: 5, TotalFailures: 5, ConsecutiveFailures: 1}, false},
	}
	for _, tt := range tests {
		if got := tt.st.normalized().readyToTrip(tt.c); got != tt.want {
			t.Errorf("%s: readyToTrip(%+v) = %v, want %v", tt.name, tt.c, got, tt.want)
		}
	}
}

func TestSettingsNormalized(t *testing.T) {
	if got := (Settings{}).normalized(); got != DefaultSettings() {
		t.Errorf("zero settings = %+v, want the defaults %+v", got, DefaultSettings())
	}
	got := Settings{ConsecutiveFailures: -1, FailureRatio: 7, MinRequests: -3, Window: -time.Second, OpenTimeout: time.Second, HalfOpenRequests: 1}.normalized()
	want := Settings{ConsecutiveFailures: -1, FailureRatio: 1, MinRequests: DefaultMinRequests, Window: DefaultWindow, OpenTimeout: time.Second, HalfOpenRequests: 1}
	if got != want {
		t.Errorf("normalized = %+v, want %+v", got, want)
	}
}

// Changes pushed from many goroutines are each delivered once, never two at
// a time, in the order each goroutine pushed them; a change pushed by the
// callback itself is delivered after it returns.
func TestNotifierOrder(t *testing.T) {
	var (
		n        notifier
		inside   atomic.Int32
		mu       sync.Mutex
		seen     = map[string][]int{}
		overlaps atomic.Int32
	)
	n.fn = func(c Change) {
		if inside.Add(1) != 1 {
			overlaps.Add(1)
		}
		defer inside.Add(-1)
		mu.Lock()
		seen[c.Endpoint] = append(seen[c.Endpoint], int(c.At.UnixNano()))
		mu.Unlock()
		if c.Provider == "echo" {
			n.push(Change{Endpoint: "echo", At: time.Unix(0, c.At.UnixNano()+1)})
			n.flush() // a callback calling State: must not deadlock nor recurse
		}
	}
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				n.push(Change{Endpoint: fmt.Sprint(g), At: time.Unix(0, int64(i))})
				n.flush()
			}
		})
	}
	wg.Wait()
	n.push(Change{Provider: "echo", Endpoint: "echo", At: time.Unix(0, 0)})
	n.flush()
	if overlaps.Load() != 0 {
		t.Errorf("the callback ran concurrently with itself %d times", overlaps.Load())
	}
	for g := range goroutines {
		got := seen[fmt.Sprint(g)]
		if len(got) != each {
			t.Fatalf("goroutine %d: %d changes delivered, want %d", g, len(got), each)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("goroutine %d: change %d delivered as number %d", g, v, i)
			}
		}
	}
	if got := seen["echo"]; len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("echo changes = %v, want [0 1]", got)
	}
	if n.pending.Load() != 0 {
		t.Errorf("%d changes left pending", n.pending.Load())
	}
}

// A callback that panics does not stop later deliveries.
func TestNotifierPanic(t *testing.T) {
	var n notifier
	var got []string
	n.fn = func(c Change) {
		if c.Endpoint == "boom" {
			panic("boom")
		}
		got = append(got, c.Endpoint)
	}
	n.push(Change{Endpoint: "boom"})
	n.push(Change{Endpoint: "a"})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the callback's panic was swallowed")
			}
		}()
		n.flush()
	}()
	n.push(Change{Endpoint: "b"})
	n.flush()
	if fmt.Sprint(got) != "[a b]" {
		t.Errorf("delivered %v after the panic, want [a b]", got)
	}
}
