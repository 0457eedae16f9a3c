package encryptor

import (
	"sync"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// DefaultObservationTTL is how long a customer key that failed in live
// traffic is taken to be away by the assets that follow, before one of
// them tries it again (Options.ObservationTTL). See liveObservations.
const DefaultObservationTTL = 2 * time.Second

// liveObservations remembers, per tenant and key, what a live KMS call
// showed — unavailable (the endpoint did not answer) or revoked (the key
// is unusable) — for a short TTL, so the assets processed next decide from
// it instead of each waiting for the same failure. Without it, assets
// processed one after another (Options.Concurrency at a time) each wait a
// KMS timeout when an endpoint starts hanging: the seed cache merges only
// calls in flight together, and the breaker opens only after 5
// consecutive failures, so a batch would take seconds. With it, an outage
// costs one call timeout per TTL until the monitor's status (KW_KEY_STATUS)
// or the breaker takes over; a call that succeeds clears the entry at
// once. The price: after a single blip, the tenant's assets are decided as
// in an outage (fallback, hold or rejection) for up to the TTL.
type liveObservations struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[liveKey]liveObservation
}

type liveKey struct{ tenant, uri string }

type liveObservation struct {
	status events.KeyStatus
	until  time.Time
}

// maxLiveObservations bounds the map; expired entries are swept beyond it.
const maxLiveObservations = 4096

func newLiveObservations(ttl time.Duration) *liveObservations {
	return &liveObservations{ttl: ttl, now: time.Now, m: map[liveKey]liveObservation{}}
}

// get returns the status a live call showed of a tenant's key within the
// TTL.
func (l *liveObservations) get(tenantID, uri string) (events.KeyStatus, bool) {
	if l.ttl <= 0 {
		return "", false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.m[liveKey{tenantID, uri}]
	if !ok || !l.now().Before(o.until) {
		return "", false
	}
	return o.status, true
}

// put records that a live call showed status.
func (l *liveObservations) put(tenantID, uri string, status events.KeyStatus) {
	if l.ttl <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.m) >= maxLiveObservations {
		for k, o := range l.m {
			if !now.Before(o.until) {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxLiveObservations {
			return // every entry is fresh: an attack or a mass outage; the breaker and the monitor cover it
		}
	}
	l.m[liveKey{tenantID, uri}] = liveObservation{status: status, until: now.Add(l.ttl)}
}

// clear forgets an observation: the key just worked.
func (l *liveObservations) clear(tenantID, uri string) {
	if l.ttl <= 0 {
		return
	}
	l.mu.Lock()
	delete(l.m, liveKey{tenantID, uri})
	l.mu.Unlock()
}
