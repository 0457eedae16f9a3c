package encryptor_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/tenant"
)

// During an outage within the tenant's hold window an asset waits: a blip
// that ends inside the window leaves no fallback copy; an outage that
// outlasts it falls back (or rejects) once the window has passed.
func TestHoldWindow(t *testing.T) {
	s := newStack(t)
	hold := func(c *tenant.Config) { c.HoldWindow = tenant.Duration(3 * time.Second) }
	blip := s.enroll("blip", hold)
	long := s.enroll("long", hold)
	strict := s.enroll("strict", hold, func(c *tenant.Config) { c.Fallback = false })
	none := s.enroll("none") // no hold window: decides at once
	for id, k := range map[string]kms.KeyURI{"blip": blip, "long": long, "strict": strict, "none": none} {
		s.setStatus(id, k, events.KeyStatusUnavailable)
	}

	// The blip ends after ~1 s: the held asset is encrypted under the
	// customer key when it comes back.
	done := make(chan *events.AssetEncrypted, 1)
	start := time.Now()
	go func() { done <- s.mustEncrypt("blip", "during-blip", pattern(1<<10, 1)) }()
	time.Sleep(time.Second)
	s.setStatus("blip", blip, events.KeyStatusAvailable)
	e := <-done
	if e.Mode != events.ModeCustomer || e.KeyURI != blip.String() {
		t.Fatalf("asset of a blip within the hold window: mode %s under %s, want customer", e.Mode, e.KeyURI)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("asset settled after %v, before the blip ended", d)
	}

	start = time.Now()
	if e := s.mustEncrypt("long", "during-outage", pattern(1<<10, 2)); e.Mode != events.ModeFallback {
		t.Fatalf("asset of a long outage: mode %s, want fallback", e.Mode)
	}
	if d := time.Since(start); d < 2500*time.Millisecond || d > 8*time.Second {
		t.Fatalf("fallback after %v, want after the 3s hold window", d)
	}
	start = time.Now()
	if out := s.put("strict", "during-outage", pattern(1<<10, 3)); out.Rejected == nil || out.Rejected.Reason != events.ReasonCustomerKeyUnavailable {
		t.Fatalf("no fallback, long outage: %+v", out)
	}
	if d := time.Since(start); d < 2500*time.Millisecond {
		t.Fatalf("rejected after %v, before the hold window passed", d)
	}
	start = time.Now()
	if e := s.mustEncrypt("none", "at-once", pattern(1<<10, 4)); e.Mode != events.ModeFallback || time.Since(start) > 2*time.Second {
		t.Fatalf("no hold window: mode %s after %v", e.Mode, time.Since(start))
	}
	// Nothing was dead-lettered for being held.
	if dl := s.dlq(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// A revoked key rejects the asset by default, even with fallback on; the
// tenant choice fallback_on "any" falls back instead. Either way the live
// failure is reported to the key-health-monitor.
func TestFallbackOnRevocation(t *testing.T) {
	s := newStack(t)
	observed := make(chan *events.KeyObserved, 16)
	sub, err := s.env.NC.Subscribe(events.SubjectKeyObservedAll, func(m *nats.Msg) {
		if e, err := events.DecodeKeyObserved(m.Data); err == nil {
			observed <- e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	outage := s.enroll("outage-only") // fallback on, fallback_on default (outage)
	anyLoss := s.enroll("any-loss", func(c *tenant.Config) { c.FallbackOn = tenant.FallbackOnAny })
	for _, k := range []string{outage.KeyID, anyLoss.KeyID} {
		if err := localkms.SetDisabled(k, true); err != nil {
			t.Fatal(err)
		}
	}
	if out := s.put("outage-only", "a", pattern(1<<10, 1)); out.Rejected == nil || out.Rejected.Reason != events.ReasonCustomerKeyRevoked {
		t.Fatalf("revoked key, fallback on outage only: %+v", out)
	}
	if e := s.mustEncrypt("any-loss", "a", pattern(1<<10, 2)); e.Mode != events.ModeFallback || !e.PendingReencryption {
		t.Fatalf("revoked key, fallback on any loss: mode %s, pending %v", e.Mode, e.PendingReencryption)
	}
	got := map[string]string{}
	deadline := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case e := <-observed:
			got[e.TenantID] = e.Outcome
			if e.Op != "GenerateDataKey" || e.Worker == "" {
				t.Errorf("observation %+v", e)
			}
		case <-deadline:
			t.Fatalf("observations: %v", got)
		}
	}
	if got["outage-only"] != "key_disabled" || got["any-loss"] != "key_disabled" {
		t.Fatalf("observations: %v", got)
	}
}

// Reads of customer-encrypted assets fail with key_revoked once the
// monitor has found the key revoked — without a KMS call, cached seeds or
// not — while the tenant's fallback assets stay readable; reads work again
// when the key is back.
func TestReadsWhileTheKeyIsAway(t *testing.T) {
	s := newStack(t)
	key := s.enroll("acme")
	want := pattern(2<<10, 7)
	s.mustEncrypt("acme", "customer-asset", want)
	if _, err := s.get("acme", "customer-asset"); err != nil {
		t.Fatal(err) // warms the unwrap cache
	}
	s.setStatus("acme", key, events.KeyStatusUnavailable)
	fb := pattern(1<<10, 8)
	if e := s.mustEncrypt("acme", "fallback-asset", fb); e.Mode != events.ModeFallback {
		t.Fatalf("mode %s", e.Mode)
	}

	s.setStatus("acme", key, events.KeyStatusRevoked)
	calls := s.client.Stats().Calls
	_, err := s.get("acme", "customer-asset")
	var be *keybroker.Error
	if !errors.As(err, &be) || be.Code != keybroker.CodeKeyRevoked {
		t.Fatalf("read with the key revoked: %v, want key_revoked", err)
	}
	if n := s.client.Stats().Calls - calls; n != 0 {
		t.Fatalf("the broker made %d KMS calls for a revoked key", n)
	}
	if got, err := s.get("acme", "fallback-asset"); err != nil || string(got) != string(fb) {
		t.Fatalf("fallback asset while the key is revoked: %v", err)
	}

	s.setStatus("acme", key, events.KeyStatusAvailable)
	if got, err := s.get("acme", "customer-asset"); err != nil || string(got) != string(want) {
		t.Fatalf("read after the key is back: %v", err)
	}
}
