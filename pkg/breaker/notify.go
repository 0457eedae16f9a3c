package breaker

import (
	"sync"
	"sync/atomic"
)

// notifier delivers state changes to the OnStateChange callback in the order
// they happened, one at a time, never with a lock held. gobreaker reports a
// change with its own lock held (a callback calling State would deadlock
// there), so changes are queued (push) and delivered once the breaker call
// has returned (flush). Whoever flushes first delivers everything queued,
// including changes queued meanwhile by other goroutines or by the callback
// itself; the others return at once.
type notifier struct {
	fn      func(Change)
	pending atomic.Int64 // len(queue), read without the lock on the fast path

	mu       sync.Mutex
	queue    []Change
	draining bool
}

// push queues c; it is called with a breaker's lock held.
func (n *notifier) push(c Change) {
	if n.fn == nil {
		return
	}
	n.mu.Lock()
	n.queue = append(n.queue, c)
	n.pending.Add(1)
	n.mu.Unlock()
}

// flush delivers the queued changes unless another flush is delivering.
func (n *notifier) flush() {
	if n.pending.Load() == 0 {
		return
	}
	n.mu.Lock()
	if n.draining {
		n.mu.Unlock()
		return
	}
	n.draining = true
	for len(n.queue) > 0 {
		c := n.queue[0]
		n.queue[0] = Change{}
		n.queue = n.queue[1:]
		n.pending.Add(-1)
		n.mu.Unlock()
		n.deliver(c)
		n.mu.Lock()
	}
	n.draining = false
	n.mu.Unlock()
}

// deliver calls the callback; if it panics, the panic goes on up, and the
// next flush delivers the changes still queued.
func (n *notifier) deliver(c Change) {
	returned := false
	defer func() {
		if !returned {
			n.mu.Lock()
			n.draining = false
			n.mu.Unlock()
		}
	}()
	n.fn(c)
	returned = true
}
