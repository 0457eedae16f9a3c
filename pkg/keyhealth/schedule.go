package keyhealth

import (
	"container/heap"
	"hash/fnv"
	"math"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// Default probe intervals and jitter.
const (
	// DefaultHealthyInterval between probes of an available key.
	DefaultHealthyInterval = 60 * time.Second
	// DefaultUnhealthyInterval between probes of a key that is not
	// available, or whose latest results disagree with its status.
	DefaultUnhealthyInterval = 10 * time.Second
	// DefaultJitter spreads each interval by ±10%, so keys probed together
	// once drift apart.
	DefaultJitter = 0.1
	// DefaultConfirmInterval between probes of a key whose latest results
	// disagree with its known status: a change in the making is confirmed
	// (or refuted) within (Threshold-1) × 2 s of the first result that saw
	// it, not 20 s later, while the Threshold results still damp a
	// flapping endpoint.
	DefaultConfirmInterval = 2 * time.Second
)

// Schedule computes when a key is probed next. The zero value uses the
// defaults.
type Schedule struct {
	Healthy   time.Duration // 0: DefaultHealthyInterval
	Unhealthy time.Duration // 0: DefaultUnhealthyInterval
	// Confirm is the interval while results disagree with a known status
	// (0: DefaultConfirmInterval); never longer than Unhealthy.
	Confirm time.Duration
	// Jitter is the fraction (0 to 0.5) by which an interval varies either
	// way; 0 means DefaultJitter, a negative value none.
	Jitter float64
}

func (s Schedule) healthy() time.Duration {
	if s.Healthy > 0 {
		return s.Healthy
	}
	return DefaultHealthyInterval
}

func (s Schedule) unhealthy() time.Duration {
	if s.Unhealthy > 0 {
		return s.Unhealthy
	}
	return DefaultUnhealthyInterval
}

func (s Schedule) confirm() time.Duration {
	if s.Confirm > 0 {
		return min(s.Confirm, s.unhealthy())
	}
	return min(DefaultConfirmInterval, s.unhealthy())
}

func (s Schedule) jitter() float64 {
	switch {
	case s.Jitter < 0:
		return 0
	case s.Jitter == 0:
		return DefaultJitter
	case s.Jitter > 0.5:
		return 0.5
	}
	return s.Jitter
}

// Interval is the nominal time between two probes of a key in status st
// whose latest results argue for candidate (KeyStatusUnknown when none
// disagree): Confirm while results disagree with the key's status, so a
// change is confirmed or refuted quickly; Unhealthy while the key is not
// usable-and-healthy; Healthy otherwise. A key not known yet (never
// probed) whose results say available is confirmed at the healthy pace:
// it is presumed usable anyway, and 10,000 new keys confirmed faster would
// multiply the probe load of a fresh start.
func (s Schedule) Interval(st, candidate events.KeyStatus) time.Duration {
	healthy := st == events.KeyStatusAvailable || st == events.KeyStatusUnknown
	if healthy && (candidate == events.KeyStatusUnknown || candidate == events.KeyStatusAvailable) {
		return s.healthy()
	}
	if candidate != events.KeyStatusUnknown && candidate != st {
		return s.confirm()
	}
	return s.unhealthy()
}

// Next is the delay before the next probe: Interval ± Jitter. u is a
// uniform random number in [0, 1).
func (s Schedule) Next(st, candidate events.KeyStatus, u float64) time.Duration {
	d := s.Interval(st, candidate)
	j := s.jitter()
	return time.Duration(float64(d) * (1 - j + 2*j*clamp01(u)))
}

// First is the delay before a key's first probe once the monitor owns it,
// drawn so that the probes of many keys started together are as spread as
// they will be in the steady state, from the first second on.
//
// Uniform over [0, Interval) is not enough: the second probes then come
// Interval ± Jitter after the first, so around t = Interval the last first
// probes and the earliest second probes overlap (1.5× the average load)
// and just after it both thin out (0.5×). Instead the delay is drawn from
// the equilibrium distribution of the probe process — the time to the next
// probe seen at a random moment of a key probed every Interval ± Jitter:
// density 1/I on [0, (1-j)I], then falling linearly to 0 at (1+j)I. Every
// key then behaves as if it had been probed for ever, and the total rate
// is flat. u is a uniform random number in [0, 1).
func (s Schedule) First(st, candidate events.KeyStatus, u float64) time.Duration {
	i := float64(s.Interval(st, candidate))
	j := s.jitter()
	u = clamp01(u)
	lo, hi := (1-j)*i, (1+j)*i
	if x := u * i; x <= lo || j == 0 {
		return time.Duration(x)
	}
	// Inverse of the CDF on the falling part: u = lo/i + ((hi-lo)² - (hi-t)²) / (2(hi-lo)i).
	w := hi - lo
	return time.Duration(hi - math.Sqrt(max(0, w*w-2*w*(u*i-lo))))
}

func clamp01(u float64) float64 {
	switch {
	case u < 0:
		return 0
	case u >= 1:
		return 0.9999999999
	}
	return u
}

// Partition returns the partition (0 to n-1) of a tenant: FNV-1a of the
// tenant id modulo n. Every monitor instance must use the same n; the
// monitor keeps it in its lease bucket.
func Partition(tenantID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(tenantID))
	return int(h.Sum32() % uint32(n))
}

// Share is how many of n partitions one of live instances may hold:
// ceil(n / live), so the live instances together can hold them all and
// none holds more than its share plus the rounding.
func Share(n, live int) int {
	if live < 1 {
		live = 1
	}
	return (n + live - 1) / live
}

// Queue is a priority queue of ids by due time (earliest first), with
// update and removal by id. The zero value is ready to use; it is not safe
// for concurrent use.
type Queue struct {
	h    itemHeap
	byID map[string]*item
}

type item struct {
	id    string
	due   time.Time
	index int
}

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].id < h[j].id
	}
	return h[i].due.Before(h[j].due)
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.index = -1
	return it
}

// Set schedules id at due, replacing its previous due time.
func (q *Queue) Set(id string, due time.Time) {
	if q.byID == nil {
		q.byID = map[string]*item{}
	}
	if it, ok := q.byID[id]; ok {
		it.due = due
		heap.Fix(&q.h, it.index)
		return
	}
	it := &item{id: id, due: due}
	q.byID[id] = it
	heap.Push(&q.h, it)
}

// Advance moves id to due if that is earlier than its current due time. It
// reports whether id is queued.
func (q *Queue) Advance(id string, due time.Time) bool {
	it, ok := q.byID[id]
	if !ok {
		return false
	}
	if due.Before(it.due) {
		it.due = due
		heap.Fix(&q.h, it.index)
	}
	return true
}

// Remove unschedules id; it reports whether id was queued.
func (q *Queue) Remove(id string) bool {
	it, ok := q.byID[id]
	if !ok {
		return false
	}
	heap.Remove(&q.h, it.index)
	delete(q.byID, id)
	return true
}

// Due returns the due time of id.
func (q *Queue) Due(id string) (time.Time, bool) {
	it, ok := q.byID[id]
	if !ok {
		return time.Time{}, false
	}
	return it.due, true
}

// Peek returns the earliest id and its due time.
func (q *Queue) Peek() (string, time.Time, bool) {
	if len(q.h) == 0 {
		return "", time.Time{}, false
	}
	return q.h[0].id, q.h[0].due, true
}

// PopDue removes and returns the earliest id if it is due at now.
func (q *Queue) PopDue(now time.Time) (string, bool) {
	if len(q.h) == 0 || q.h[0].due.After(now) {
		return "", false
	}
	it := heap.Pop(&q.h).(*item)
	delete(q.byID, it.id)
	return it.id, true
}

// Len returns the number of queued ids.
func (q *Queue) Len() int { return len(q.h) }
