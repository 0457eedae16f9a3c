package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PermanentError marks a handler failure that no retry can fix: the message
// goes to KW_DLQ with Reason and is terminated.
type PermanentError struct {
	Reason Reason
	Err    error
}

func (e *PermanentError) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with reason.
func Permanent(reason Reason, err error) error { return &PermanentError{Reason: reason, Err: err} }

// AsPermanent reports the reason if err is (or wraps) a PermanentError.
func AsPermanent(err error) (Reason, bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe.Reason, true
	}
	return "", false
}

// Backoff maps the delivery count of a message (1 for the first delivery)
// to the delay before it is redelivered after a transient failure.
type Backoff func(delivered uint64) time.Duration

// ExponentialBackoff doubles from base up to max, with ±20% jitter so a
// burst of failures does not come back as a burst.
func ExponentialBackoff(base, max time.Duration) Backoff {
	return func(delivered uint64) time.Duration {
		d := base
		for i := uint64(1); i < delivered && d < max; i++ {
			d *= 2
		}
		d = min(d, max)
		jitter := 0.8 + 0.4*rand.Float64()
		return time.Duration(float64(d) * jitter)
	}
}

// Settlement is what Settle did with a message.
type Settlement string

// Settlements, also used as the outcome label of worker metrics.
const (
	SettledAcked        Settlement = "acked"
	SettledRetry        Settlement = "retry"
	SettledDeadLettered Settlement = "dead_lettered"
	SettledLeft         Settlement = "left"
	SettledHeld         Settlement = "held"
)

// HoldError asks Settle to redeliver a message after Delay because its
// handler is waiting for something (a customer key's short outage, within
// the tenant's hold window), not failing. It is not retried with backoff
// and never dead-lettered: the handler bounds how long it holds.
type HoldError struct {
	Delay time.Duration
	Why   string
}

func (e *HoldError) Error() string { return "held for " + e.Delay.String() + ": " + e.Why }

// Hold returns a HoldError.
func Hold(delay time.Duration, why string) error { return &HoldError{Delay: delay, Why: why} }

// Settler is the one place that turns a handler's result into an ack verb:
//   - nil: Ack.
//   - the worker is shutting down (ctx done): Nak, so another instance (or
//     this one after restart) gets it at once;
//   - HoldError: NakWithDelay(its delay), whatever the delivery count;
//   - PermanentError: dead letter with its reason, then Term;
//   - anything else is transient: NakWithDelay(Backoff(delivery count)),
//     until MaxDeliver deliveries, then dead letter as max_deliveries.
//
// A message is never acked or terminated before its dead letter is stored.
// If storing the dead letter fails, the message is nak'ed for a retry.
type Settler struct {
	DLQ        *DeadLetterer
	MaxDeliver int
	Backoff    Backoff
	Logger     *slog.Logger
}

// Settle settles msg according to err and reports what it did.
func (s *Settler) Settle(ctx context.Context, msg jetstream.Msg, err error) Settlement {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	if err == nil {
		if aerr := msg.Ack(); aerr != nil {
			log.WarnContext(ctx, "ack failed; the message will be redelivered and handled idempotently", "subject", msg.Subject(), "error", aerr)
		}
		return SettledAcked
	}
	if ctx.Err() != nil {
		_ = msg.Nak()
		return SettledLeft
	}
	var hold *HoldError
	if errors.As(err, &hold) {
		_ = msg.NakWithDelay(hold.Delay)
		return SettledHeld
	}
	var delivered uint64 = 1
	if md, mderr := msg.Metadata(); mderr == nil {
		delivered = md.NumDelivered
	}
	reason, permanent := AsPermanent(err)
	if !permanent && s.MaxDeliver > 0 && delivered >= uint64(s.MaxDeliver) {
		reason, permanent = ReasonMaxDeliveries, true
		err = fmt.Errorf("gave up after %d deliveries: %w", delivered, err)
	}
	if permanent {
		if dlqErr := s.DLQ.Send(ctx, msg, reason, err.Error()); dlqErr != nil {
			log.ErrorContext(ctx, "dead-lettering failed; retrying the message", "subject", msg.Subject(), "reason", reason, "error", dlqErr)
			_ = msg.NakWithDelay(s.delay(delivered))
			return SettledRetry
		}
		log.WarnContext(ctx, "message dead-lettered", "subject", msg.Subject(), "reason", reason, "detail", err.Error(), "deliveries", delivered)
		if terr := msg.TermWithReason(string(reason)); terr != nil {
			log.WarnContext(ctx, "term failed; the redelivery will be dead-lettered again and deduplicated", "error", terr)
		}
		return SettledDeadLettered
	}
	d := s.delay(delivered)
	log.InfoContext(ctx, "transient failure; message will be retried", "subject", msg.Subject(), "deliveries", delivered, "retry_in", d.String(), "error", err.Error())
	_ = msg.NakWithDelay(d)
	return SettledRetry
}

func (s *Settler) delay(delivered uint64) time.Duration {
	if s.Backoff == nil {
		return ExponentialBackoff(time.Second, time.Minute)(delivered)
	}
	return s.Backoff(delivered)
}
