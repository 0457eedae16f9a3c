package monitor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

type enrolled struct {
	tenant string
	key    kms.KeyURI
}

func enrollMany(t testing.TB, e *env, n int) []enrolled {
	t.Helper()
	out := make([]enrolled, n)
	for i := range out {
		out[i] = enrolled{fmt.Sprintf("tenant-%02d", i), e.cloud.newKey(t)}
		e.enroll(out[i].tenant, out[i].key)
	}
	return out
}

func named(o monitor.Options, id string) monitor.Options { o.InstanceID = id; return o }

// balanced waits until the instances hold every partition between them,
// each its share.
func balanced(t testing.TB, within time.Duration, ins ...*instance) {
	t.Helper()
	eventually(t, within, "the partitions to be shared out", func() bool {
		total, share := 0, 0
		for _, in := range ins {
			s := in.w.Stats()
			if s.LiveInstances != len(ins) {
				return false
			}
			total += s.Partitions
			share = (in.w.PartitionCount() + len(ins) - 1) / len(ins)
			if s.Partitions > share || s.Partitions == 0 {
				return false
			}
		}
		return total == ins[0].w.PartitionCount()
	})
}

// owners returns, per key, the instances that probe it.
func owners(keys []enrolled, ins ...*instance) map[enrolled][]int {
	out := map[enrolled][]int{}
	for _, k := range keys {
		for i, in := range ins {
			if _, ok := in.w.Status(k.tenant, k.key.String()); ok {
				out[k] = append(out[k], i)
			}
		}
	}
	return out
}

// Two instances on one NATS share the tenants: every key is probed by
// exactly one of them (their views and the emulator's request log agree),
// and when one stops, the other takes its partitions over within the
// lease TTL — at once when it stops gracefully, after the TTL when it
// dies without releasing them.
func TestTwoInstancesShareTenants(t *testing.T) {
	t.Parallel()
	c := awsCloud(t)
	e := newEnv(t, c)
	keys := enrollMany(t, e, 24)
	o := fastOptions()
	o.Partitions = 8
	a := e.start(named(o, "mon-a"))
	b := e.start(named(o, "mon-b"))
	balanced(t, 4*testLeaseTTL, a, b)
	t.Logf("balanced: a holds %v, b holds %v", a.w.Partitions(), b.w.Partitions())

	for k, who := range owners(keys, a, b) {
		if len(who) != 1 {
			t.Fatalf("%s is probed by instances %v", k.tenant, who)
		}
	}
	// Over ten healthy intervals, each key is probed about ten times:
	// twice that if two instances probed it.
	for _, k := range keys {
		a.w.ProbeNow(k.tenant, k.key.String()) // every key available quickly
		b.w.ProbeNow(k.tenant, k.key.String())
	}
	for _, k := range keys {
		in := a
		if _, ok := b.w.Status(k.tenant, k.key.String()); ok {
			in = b
		}
		waitStatus(t, in, k.tenant, k.key, events.KeyStatusAvailable, 5*time.Second)
	}
	c.faults.ResetLog()
	window := 10 * testHealthy
	time.Sleep(window)
	perKey := map[string]int{}
	for _, r := range c.faults.Requests() {
		if r.Op == kms.OpGenerateDataKey {
			perKey[r.KeyID]++
		}
	}
	most := int(window/(testHealthy*9/10)) + 1
	for _, k := range keys {
		if n := perKey[k.key.KeyID]; n == 0 || n > most {
			t.Errorf("%s: %d probes in %v, want 1 to %d (one prober)", k.tenant, n, window, most)
		}
	}
	if sa, sb := a.w.Stats(), b.w.Stats(); sa.Keys+sb.Keys != len(keys) {
		t.Errorf("a probes %d keys, b %d; %d enrolled", sa.Keys, sb.Keys, len(keys))
	}

	// A graceful stop releases the leases: b takes them at its next round.
	stopped := time.Now()
	a.stop()
	eventually(t, testLeaseTTL, "b to hold every partition", func() bool { return len(b.w.Partitions()) == 8 })
	t.Logf("graceful stop: b took over after %v", time.Since(stopped))
	for k, who := range owners(keys, b) {
		if len(who) != 1 {
			t.Errorf("%s is not probed after the takeover", k.tenant)
		}
	}

	// A crash leaves the leases until they expire.
	c2 := e.start(named(o, "mon-c"))
	balanced(t, 4*testLeaseTTL, b, c2)
	held := c2.w.Partitions()
	crashed := time.Now()
	c2.nc.Close() // no release can reach NATS now
	c2.stop()
	eventually(t, testLeaseTTL+2*testLeaseTTL/4+500*time.Millisecond, "b to take the crashed instance's partitions", func() bool {
		return len(b.w.Partitions()) == 8
	})
	t.Logf("crash: b took over %v after %v (lease TTL %v)", held, time.Since(crashed), testLeaseTTL)
	if s := b.w.Stats(); s.Keys != len(keys) {
		t.Errorf("b probes %d keys after the takeover, want %d", s.Keys, len(keys))
	}
	// No status was re-announced by the handovers.
	all := e.allStatusEvents()
	for _, k := range keys {
		if evs := all[k.tenant]; len(evs) != 1 {
			t.Errorf("%s: %d events, want the first status only", k.tenant, len(evs))
		}
	}
}

// Instances agree on the partition count: a later instance configured
// otherwise uses the running ones' count.
func TestPartitionCountAgreed(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	o := fastOptions()
	o.Partitions = 8
	a := e.start(named(o, "mon-a"))
	o.Partitions = 5
	b := e.start(named(o, "mon-b"))
	if a.w.PartitionCount() != 8 || b.w.PartitionCount() != 8 {
		t.Fatalf("partition counts %d and %d, want 8 for both", a.w.PartitionCount(), b.w.PartitionCount())
	}
	balanced(t, 4*testLeaseTTL, a, b)
}
