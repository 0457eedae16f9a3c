package monitor_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/tenant"
)

// A key that does not exist (deleted, or a wrong URI) is revoked from its
// first status on, with the provider's code as reason and no previous.
func TestMissingKeyIsRevoked(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	key := c.missing()
	e.enroll("acme", key)
	in := e.start(fastOptions())
	waitStatus(t, in, "acme", key, events.KeyStatusRevoked, 5*time.Second)
	time.Sleep(3 * testUnhealthy)
	evs := e.statusEvents("acme")
	if len(evs) != 1 || evs[0].Previous != "" || evs[0].Reason != "key_not_found" || evs[0].Source != events.SourceProbe {
		t.Fatalf("events %+v, want one revoked (key_not_found) with no previous", evs)
	}
	if rec, ok := e.record("acme", key); !ok || rec.Status != events.KeyStatusRevoked || rec.Previous != "" {
		t.Errorf("KV record %+v", rec)
	}
}

// A round trip slower than the threshold makes the key degraded ("slow").
func TestSlowKeyIsDegraded(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	key := c.newKey(t)
	e.enroll("acme", key)
	o := fastOptions()
	o.SlowThreshold = time.Nanosecond
	in := e.start(o)
	waitStatus(t, in, "acme", key, events.KeyStatusDegraded, 5*time.Second)
	if st, _ := in.w.Status("acme", key.String()); st.Reason != "slow" || st.Last.Latency <= 0 {
		t.Errorf("status %+v, want degraded for being slow", st)
	}
	if evs := e.statusEvents("acme"); len(evs) != 1 || evs[0].Reason != "slow" || evs[0].LatencyMS <= 0 {
		t.Errorf("events %+v", evs)
	}
}

// A flapping endpoint — 5xx on and off faster than the hysteresis — does
// not flap the status: two transitions of the key are always at least
// Hysteresis probes apart. The same flapping with a hysteresis of 1 (no
// hysteresis) changes the status many times, which shows the test can
// tell.
func TestFlappingEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hysteresis int
		check      func(t *testing.T, changes int)
	}{
		{3, func(t *testing.T, changes int) {}},
		{1, func(t *testing.T, changes int) {
			if changes < 6 {
				t.Errorf("without hysteresis the flapping made only %d changes; the test flaps too slowly to show anything", changes)
			}
		}},
	} {
		t.Run("hysteresis="+string(rune('0'+tc.hysteresis)), func(t *testing.T) {
			t.Parallel()
			c := awsCloud(t)
			e := newEnv(t, c)
			key := c.newKey(t)
			e.enroll("acme", key)
			o := fastOptions()
			o.Hysteresis = tc.hysteresis
			in := e.start(o)
			waitStatus(t, in, "acme", key, events.KeyStatusAvailable, 5*time.Second)
			before := len(e.statusEvents("acme"))

			// Flap: the fault lasts 30-350 ms, then 30-350 ms without;
			// probes come every ~60 ms while results disagree with the
			// status, every ~300 ms otherwise.
			rng := rand.New(rand.NewPCG(7, uint64(tc.hysteresis)))
			stop := time.Now().Add(5 * time.Second)
			for on := true; time.Now().Before(stop); on = !on {
				if on {
					c.faults.Set(kmstest.FaultServerError)
				} else {
					c.faults.Set(kmstest.FaultNone)
				}
				time.Sleep(time.Duration(30+rng.IntN(320)) * time.Millisecond)
			}
			c.faults.Set(kmstest.FaultNone)
			st, _ := in.w.Status("acme", key.String())
			probes := st.Probes

			evs := e.statusEvents("acme")[before:]
			t.Logf("hysteresis %d: %d changes in 5 s of flapping, %d probes", tc.hysteresis, len(evs), probes)
			// Probes are at least the unhealthy interval less its jitter
			// apart, so Hysteresis results take at least that long.
			minGap := time.Duration(tc.hysteresis) * (testUnhealthy * 9 / 10)
			for i := 1; i < len(evs); i++ {
				if gap := evs[i].Stored.Sub(evs[i-1].Stored); gap < minGap-10*time.Millisecond {
					t.Errorf("changes %d and %d (%s, %s) %v apart: less than %d probes", i-1, i, evs[i-1].Status, evs[i].Status, gap, tc.hysteresis)
				}
			}
			if max := int(probes)/tc.hysteresis + 1; len(evs) > max {
				t.Errorf("%d changes for %d probes: more than one per %d results", len(evs), probes, tc.hysteresis)
			}
			tc.check(t, len(evs))
		})
	}
}

// A restarted monitor neither re-announces nor forgets a status: it seeds
// every key from KW_KEY_STATUS.
func TestRestartDoesNotReannounce(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	healthy, revoked := c.newKey(t), c.newKey(t)
	e.enroll("acme", healthy)
	e.enroll("beta", revoked)
	c.disable(t, revoked)
	first := e.start(fastOptions())
	waitStatus(t, first, "acme", healthy, events.KeyStatusAvailable, 5*time.Second)
	waitStatus(t, first, "beta", revoked, events.KeyStatusRevoked, 5*time.Second)
	first.stop()
	recBefore, _ := e.record("beta", revoked)

	second := e.start(fastOptions())
	// It knows the statuses from the records before probing them.
	eventually(t, 2*time.Second, "the new instance to seed the statuses", func() bool {
		a, okA := second.w.Status("acme", healthy.String())
		b, okB := second.w.Status("beta", revoked.String())
		return okA && okB && a.Status == events.KeyStatusAvailable && b.Status == events.KeyStatusRevoked
	})
	eventually(t, 5*time.Second, "several probes of both keys", func() bool {
		a, _ := second.w.Status("acme", healthy.String())
		b, _ := second.w.Status("beta", revoked.String())
		return a.Probes >= 4 && b.Probes >= 6
	})
	if evs := e.statusEvents("acme"); len(evs) != 1 {
		t.Errorf("acme: %d events after the restart, want the 1 from before", len(evs))
	}
	if evs := e.statusEvents("beta"); len(evs) != 1 {
		t.Errorf("beta: %d events after the restart, want the 1 from before", len(evs))
	}
	if rec, _ := e.record("beta", revoked); !rec.Since.Equal(recBefore.Since) {
		t.Errorf("revoked since %v after the restart, was %v", rec.Since, recBefore.Since)
	}
	if s := second.w.Stats(); s.Transitions != 0 {
		t.Errorf("the restarted instance published %d transitions", s.Transitions)
	}

	// And it still announces real changes.
	c.enable(t, revoked)
	waitStatus(t, second, "beta", revoked, events.KeyStatusAvailable, 5*time.Second)
	evs := e.statusEvents("beta")
	if len(evs) != 2 || evs[1].Previous != events.KeyStatusRevoked || !evs[1].Since.After(evs[0].Since) {
		t.Errorf("beta events %+v", evs)
	}
}

// A key removed from its tenant is no longer probed and its status record
// is deleted; so is the record of a key no tenant enrolls when the
// partition is taken.
func TestRemovedKeys(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	primary, replica, orphan := c.newKey(t), c.newKey(t), c.newKey(t)
	// A record left by a key removed while no monitor ran.
	if err := keystatus.Put(context.Background(), e.status, keystatus.Record{TenantID: "gone", KeyURI: orphan.String(), Status: events.KeyStatusAvailable, Reason: "ok"}); err != nil {
		t.Fatal(err)
	}
	e.enroll("acme", primary, replica)
	in := e.start(fastOptions())
	waitStatus(t, in, "acme", primary, events.KeyStatusAvailable, 5*time.Second)
	waitStatus(t, in, "acme", replica, events.KeyStatusAvailable, 5*time.Second)
	eventually(t, 5*time.Second, "the orphan record to be deleted", func() bool {
		_, ok := e.record("gone", orphan)
		return !ok
	})

	cfg, err := e.tenants.Get(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys = []tenant.Key{cfg.Keys[0]}
	if _, err := e.tenants.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the replica to be dropped and its record deleted", func() bool {
		_, probed := in.w.Status("acme", replica.String())
		_, recorded := e.record("acme", replica)
		return !probed && !recorded
	})
	time.Sleep(testUnhealthy) // a probe in flight at the removal may still land
	c.faults.ResetLog()
	time.Sleep(4 * testHealthy)
	for _, r := range c.faults.Requests() {
		if r.KeyID == replica.KeyID {
			t.Fatalf("the removed key was probed: %+v", r)
		}
	}
	if _, ok := e.record("acme", primary); !ok {
		t.Error("the primary's record was deleted too")
	}

	// A deleted tenant: no key of it is probed any more.
	if err := e.tenants.Delete(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the deleted tenant's key to be dropped", func() bool {
		_, probed := in.w.Status("acme", primary.String())
		_, recorded := e.record("acme", primary)
		return !probed && !recorded
	})
	if s := in.w.Stats(); s.Keys != 0 {
		t.Errorf("%d keys still probed", s.Keys)
	}
	_ = kms.SchemeAWS
}
