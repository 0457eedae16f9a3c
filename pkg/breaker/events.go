package breaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
)

// Events publishes the state changes of a process's KMS circuit breakers
// as BreakerStateChanged on keyward.kms.breaker.<provider> (stream
// KW_KEYS), in order, without blocking the KMS call that caused them:
// every worker with breakers (encryptor, re-encryptor, keyward dev) uses
// it, so the key-health-monitor, the phone-policy worker and operators see
// every breaker.
type Events struct {
	pub    *events.Publisher
	worker string
	log    *slog.Logger

	ch   chan Change
	once sync.Once
	done chan struct{}
}

// NewEvents starts the publisher; pass OnChange to the breakers
// (WithOnStateChange, providers.Config.OnBreakerChange) and Close it at
// shutdown.
func NewEvents(js jetstream.JetStream, worker string, log *slog.Logger) *Events {
	if log == nil {
		log = slog.Default()
	}
	b := &Events{pub: events.NewPublisher(js, worker), worker: worker, log: log,
		ch: make(chan Change, 256), done: make(chan struct{})}
	go b.run()
	return b
}

// OnChange queues a change for publication; if 256 changes are already
// waiting (NATS unreachable) it is logged and dropped: metrics still carry
// the breaker's state.
func (b *Events) OnChange(c Change) {
	b.log.Warn("KMS circuit breaker changed state", "provider", c.Provider, "endpoint", c.Endpoint, "from", c.From, "to", c.To)
	select {
	case b.ch <- c:
	default:
		b.log.Error("breaker state change not published: too many waiting", "endpoint", c.Endpoint, "to", c.To)
	}
}

// Close publishes what is queued (bounded by 5 s) and stops.
func (b *Events) Close() {
	b.once.Do(func() { close(b.ch) })
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
	}
}

func (b *Events) run() {
	defer close(b.done)
	for c := range b.ch {
		ev := &events.BreakerStateChanged{
			Provider: c.Provider, Endpoint: c.Endpoint, From: string(c.From), To: string(c.To),
			Worker: b.worker, At: c.At.UTC(),
		}
		sum := sha256.Sum256([]byte(c.Endpoint))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.pub.Publish(ctx, events.Outgoing{
			Subject: events.SubjectBreaker(c.Provider),
			MsgID:   "breaker." + b.worker + "." + hex.EncodeToString(sum[:8]) + "." + strconv.FormatInt(c.At.UnixNano(), 10),
			Type:    events.TypeBreakerStateChanged, Event: ev,
		})
		cancel()
		if err != nil {
			b.log.Error("publishing a breaker state change failed", "endpoint", c.Endpoint, "to", c.To, "error", err)
		}
	}
}
