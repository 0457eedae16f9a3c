package monitor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// When one key finds its endpoint unreachable, the other keys behind that
// endpoint are probed soon, not at their healthy pace: here a minute, so
// without the hint they would keep their status for the whole test. The
// same when the endpoint comes back. Each key still changes on its own
// results only.
func TestEndpointChangeProbesItsOtherKeys(t *testing.T) {
	c := awsCloud(t)
	e := newEnv(t, c)
	var keys []kms.KeyURI
	for i := range 5 {
		k := c.newKey(t)
		keys = append(keys, k)
		e.enroll(fmt.Sprintf("t%d", i), k)
	}
	o := fastOptions()
	o.HealthyInterval = time.Minute
	o.UnhealthyInterval = 200 * time.Millisecond
	o.ObservationProbeDelay = 50 * time.Millisecond
	o.Hysteresis = 2
	in := e.start(o)
	// A new key is confirmed at the healthy pace: make them known now.
	for i, k := range keys {
		tenantID := fmt.Sprintf("t%d", i)
		eventually(t, 10*time.Second, "key of "+tenantID+" available", func() bool {
			in.w.ProbeNow(tenantID, k.String())
			st, ok := in.w.Status(tenantID, k.String())
			return ok && st.Status == events.KeyStatusAvailable
		})
	}
	time.Sleep(100 * time.Millisecond) // past the last probes ProbeNow caused

	c.faults.Set(kmstest.FaultRefuse)
	start := time.Now()
	in.w.ProbeNow("t0", keys[0].String()) // one key finds out
	for i, k := range keys {
		waitStatus(t, in, fmt.Sprintf("t%d", i), k, events.KeyStatusUnavailable, 5*time.Second)
	}
	t.Logf("every key unavailable %s after the first probe that failed", time.Since(start).Round(time.Millisecond))

	c.faults.Set(kmstest.FaultNone)
	start = time.Now()
	// Unavailable keys are probed every 200 ms anyway; the hint makes the
	// others follow the first one that recovers within its delay.
	for i, k := range keys {
		waitStatus(t, in, fmt.Sprintf("t%d", i), k, events.KeyStatusAvailable, 5*time.Second)
	}
	t.Logf("every key available %s after the endpoint came back", time.Since(start).Round(time.Millisecond))
}
