package encryptor

import (
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
)

// A live observation holds for the TTL, per tenant and key, until cleared;
// a negative TTL keeps nothing; the map stays bounded.
func TestLiveObservations(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLiveObservations(2 * time.Second)
	l.now = func() time.Time { return now }
	l.put("acme", "awskms://k", events.KeyStatusUnavailable)
	if s, ok := l.get("acme", "awskms://k"); !ok || s != events.KeyStatusUnavailable {
		t.Fatalf("get = %q, %v", s, ok)
	}
	if _, ok := l.get("other", "awskms://k"); ok {
		t.Error("another tenant's key of the same URI is affected")
	}
	if _, ok := l.get("acme", "awskms://k2"); ok {
		t.Error("another key of the tenant is affected")
	}
	now = now.Add(2 * time.Second)
	if _, ok := l.get("acme", "awskms://k"); ok {
		t.Error("observation outlived its TTL")
	}
	l.put("acme", "awskms://k", events.KeyStatusRevoked)
	l.clear("acme", "awskms://k")
	if _, ok := l.get("acme", "awskms://k"); ok {
		t.Error("cleared observation still returned")
	}

	off := newLiveObservations(-1)
	off.put("acme", "awskms://k", events.KeyStatusUnavailable)
	if _, ok := off.get("acme", "awskms://k"); ok {
		t.Error("negative TTL kept an observation")
	}

	for i := range maxLiveObservations + 10 {
		l.put("t", string(rune('a'+i%26))+time.Duration(i).String(), events.KeyStatusUnavailable)
	}
	if len(l.m) > maxLiveObservations {
		t.Errorf("%d entries, bound %d", len(l.m), maxLiveObservations)
	}
	now = now.Add(time.Hour)
	l.put("acme", "awskms://k", events.KeyStatusUnavailable)
	if len(l.m) != 1 {
		t.Errorf("expired entries not swept: %d", len(l.m))
	}
}
