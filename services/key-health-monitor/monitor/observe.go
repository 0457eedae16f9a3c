package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keyhealth"
	"github.com/keyward/keyward/pkg/kms"
)

// maxObservedLatency bounds the latency an observation may claim (a bigger
// number is clamped, not trusted to fit a time.Duration).
const maxObservedLatency = time.Hour

// onObserved handles KeyObserved reports (core NATS, untrusted: anyone
// allowed on keyward.key.observed.* may publish). Every instance receives
// every report; only the owner of the partition of the subject's tenant
// token handles it — applies it, or dead-letters it when invalid — so a
// report is handled once however many instances run.
func (w *Worker) onObserved(ctx context.Context) nats.MsgHandler {
	return func(m *nats.Msg) {
		if ctx.Err() != nil {
			return
		}
		mctx := context.WithoutCancel(ctx)
		token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		p := keyhealth.Partition(token, w.partitions)
		w.mu.Lock()
		part := w.owned[p]
		w.mu.Unlock()
		if part == nil || !part.owns(w.mono()) {
			w.metrics.observation(mctx, ObsNotOwned)
			return
		}
		tenantID, err := events.TenantFromSubject(m.Subject)
		if err != nil {
			w.reject(mctx, m, ObsInvalid, events.ReasonInvalidEvent, err)
			return
		}
		ev, err := events.DecodeKeyObserved(m.Data)
		switch {
		case errors.Is(err, events.ErrUndecodable):
			w.reject(mctx, m, ObsUndecodable, events.ReasonUndecodable, err)
			return
		case err != nil:
			w.reject(mctx, m, ObsInvalid, events.ReasonInvalidEvent, err)
			return
		case ev.TenantID != tenantID:
			w.reject(mctx, m, ObsTenantMismatch, events.ReasonTenantMismatch,
				fmt.Errorf("subject tenant %q differs from tenant_id %q", tenantID, ev.TenantID))
			return
		}
		if _, err := kms.ParseKeyURI(ev.KeyURI); err != nil {
			w.reject(mctx, m, ObsInvalid, events.ReasonInvalidEvent, fmt.Errorf("key_uri: %w", err))
			return
		}
		latency := maxObservedLatency
		if ev.LatencyMS < float64(maxObservedLatency/time.Millisecond) {
			latency = time.Duration(ev.LatencyMS * float64(time.Millisecond))
		}
		r, err := w.classifier.Outcome(ev.Outcome, latency)
		if err != nil {
			w.reject(mctx, m, ObsInvalid, events.ReasonInvalidEvent, fmt.Errorf("outcome: %w", err))
			return
		}
		// The monitor's clock, not the worker's: since stays monotonic.
		r.At = time.Now()
		w.mu.Lock()
		ks := w.lookup(tenantID, ev.KeyURI)
		if ks != nil && ks.part.active.Load() {
			ks.part.busy.Add(1)
		} else {
			ks = nil
		}
		w.mu.Unlock()
		if ks == nil {
			w.metrics.observation(mctx, ObsNotEnrolled)
			return
		}
		if r.Class == keyhealth.ClassInconclusive {
			ks.part.busy.Done()
			w.metrics.observation(mctx, ObsInconclusive)
			return
		}
		select {
		case w.obsQ <- observation{ks: ks, r: r}:
		default:
			ks.part.busy.Done()
			w.metrics.observation(mctx, ObsDropped)
		}
	}
}

// observationWorker applies queued observations until ctx ends.
func (w *Worker) observationWorker(ctx context.Context) {
	for {
		select {
		case o := <-w.obsQ:
			w.applyObservation(ctx, o)
		case <-ctx.Done():
			for {
				select {
				case o := <-w.obsQ:
					o.ks.part.busy.Done()
				default:
					return
				}
			}
		}
	}
}

func (w *Worker) applyObservation(ctx context.Context, o observation) {
	defer o.ks.part.busy.Done()
	news := w.apply(ctx, o.ks, o.r)
	w.metrics.observation(context.WithoutCancel(ctx), ObsApplied)
	if news {
		// Confirm (or refute) what live traffic saw with a probe now
		// rather than at the next healthy interval.
		w.probeSoon(o.ks, w.o.ObservationProbeDelay)
	}
}

// reject counts an invalid report and dead-letters it (up to
// MaxDeadLettersPerSecond): KW_DLQ keeps the subject, headers and bytes
// with the reason, as for a stream message. Its Nats-Msg-Id is derived from
// the subject and bytes, so two instances handling the same report during
// a partition handover store it once.
func (w *Worker) reject(ctx context.Context, m *nats.Msg, result string, reason events.Reason, err error) {
	w.metrics.observation(ctx, result)
	if !w.dlqLimit.Allow() {
		return
	}
	dl := &events.DeadLetter{
		Reason: reason, Detail: clipDetail(err.Error()), Worker: w.o.Name, Subject: m.Subject,
		Data: m.Data, Deliveries: 1, FailedAt: time.Now().UTC(),
	}
	if t, terr := events.TenantFromSubject(m.Subject); terr == nil {
		dl.TenantID = t
	}
	if len(m.Header) > 0 {
		dl.Headers = make(map[string][]string, len(m.Header))
		for k, v := range m.Header {
			dl.Headers[k] = append([]string(nil), v...)
		}
	}
	msg := dl.Msg()
	sum := sha256.Sum256(append([]byte(m.Subject+"\n"), m.Data...))
	msg.Header.Set(events.HeaderMsgID, "dlq.observed."+hex.EncodeToString(sum[:16]))
	pctx, cancel := context.WithTimeout(ctx, w.o.PublishTimeout)
	defer cancel()
	if _, perr := w.d.JS.PublishMsg(pctx, msg); perr != nil {
		w.log.Warn("dead-lettering an invalid key observation failed", "subject", m.Subject, "reason", reason, "error", perr)
		return
	}
	w.metrics.dlqSent.Add(1)
	w.log.Warn("invalid key observation dead-lettered", "subject", m.Subject, "reason", reason, "detail", dl.Detail)
}

// clipDetail makes an error message a header value: one line, at most
// events.MaxDetailLen bytes.
func clipDetail(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", "; ").Replace(s)
	if len(s) > events.MaxDetailLen {
		s = s[:events.MaxDetailLen-3] + "..."
	}
	return s
}
