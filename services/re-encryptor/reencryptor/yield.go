package reencryptor

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
)

// yielder makes jobs give way to live traffic: while the encryptor's
// durable consumer has more than backlog messages waiting or in flight, a
// job waits before its next batch. The consumer's state is read at most
// every yieldPoll and shared by every job of the instance.
type yielder struct {
	js      jetstream.JetStream
	backlog int

	mu      sync.Mutex
	checked time.Time
	busy    bool
	waits   int64
}

const yieldPoll = 200 * time.Millisecond

func newYielder(js jetstream.JetStream, backlog int) *yielder {
	return &yielder{js: js, backlog: backlog}
}

// liveBusy reports whether live traffic is backed up now.
func (y *yielder) liveBusy(ctx context.Context) bool {
	if y.backlog < 0 {
		return false
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	if time.Since(y.checked) < yieldPoll {
		return y.busy
	}
	y.checked = time.Now()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := y.js.Consumer(cctx, events.StreamIngest, events.ConsumerEncryptor)
	if err != nil {
		y.busy = false // no encryptor consumer: nothing to yield to
		return false
	}
	info := c.CachedInfo()
	if fresh, err := c.Info(cctx); err == nil {
		info = fresh
	}
	y.busy = info != nil && int(info.NumPending)+info.NumAckPending > y.backlog
	if y.busy {
		y.waits++
	}
	return y.busy
}

// wait returns once live traffic is not backed up, calling keepalive about
// every second while it waits.
func (y *yielder) wait(ctx context.Context, keepalive func()) error {
	last := time.Now()
	for y.liveBusy(ctx) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(yieldPoll):
		}
		if time.Since(last) >= time.Second {
			keepalive()
			last = time.Now()
		}
	}
	return ctx.Err()
}

// Waits counts the checks that found live traffic backed up.
func (y *yielder) Waits() int64 {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.waits
}
