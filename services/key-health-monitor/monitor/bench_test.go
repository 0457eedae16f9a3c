package monitor_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/tenant"
)

// BenchmarkProbeLoad measures the probe load the monitor puts on one KMS
// endpoint: 10,000 tenants, each with its own key, all in one AWS KMS
// region (one awsemu endpoint, reached with the real SDK), one monitor
// instance with the production defaults (hysteresis 3, ±10% jitter, 32
// probes in flight, 32 partitions). It starts the monitor cold (no
// status known: the worst case, every key new), records the time of every
// call the endpoint receives for two probe intervals and reports:
//
//	calls/s           average calls per second (GenerateDataKey + Decrypt)
//	expected_calls/s  2 × tenants / interval: the interval-derived average
//	peak_calls/s      the most calls in any 1 s window (sliding)
//	peak/avg          peak over average: how bursty the schedule is
//	min_calls/s       the fewest calls in any whole second of the window
//
// interval=60s is production (the probes paced to half the endpoint's
// rate limit, which they stay under); interval=30s is twice the load with
// that pacing off, to show the schedule's spread alone. Run with -benchtime=1x; each case takes
// about two intervals plus set-up (docs/benchmarks.md has the figures).
func BenchmarkProbeLoad(b *testing.B) {
	for _, tc := range []struct {
		tenants  int
		interval time.Duration
		share    float64
		label    string
	}{
		{10000, 60 * time.Second, 0, "paced"},
		{10000, 30 * time.Second, -1, "unpaced"},
	} {
		b.Run(fmt.Sprintf("tenants=%d/interval=%v/%s", tc.tenants, tc.interval, tc.label), func(b *testing.B) {
			for b.Loop() {
				benchProbeLoad(b, tc.tenants, tc.interval, tc.share)
			}
		})
	}
}

func benchProbeLoad(b *testing.B, tenants int, interval time.Duration, share float64) {
	c := awsCloud(b)
	e := newEnv(b, c)
	keys := make([]kms.KeyURI, tenants)
	for i := range keys {
		keys[i] = c.newKey(b)
	}
	// Enroll in parallel: the set-up is not what is measured.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < tenants; i += 8 {
				cfg := &tenant.Config{TenantID: fmt.Sprintf("t-%05d", i), Services: []string{"*"}, LicensedUsers: []string{"*"},
					Keys: []tenant.Key{{URI: keys[i].String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC()}}}
				if _, err := e.tenants.Apply(context.Background(), cfg); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	c.faults.ResetLog()

	o := fastOptions()
	o.HealthyInterval, o.UnhealthyInterval = interval, interval/6
	o.Partitions = 0 // the default, 32
	o.ObservationProbeDelay = time.Second
	o.ProbeRateShare = share
	in := e.start(o)
	started := time.Now()
	time.Sleep(2 * interval)
	stats := in.w.Stats()
	in.stop()

	var times []time.Time
	for _, r := range c.faults.Requests() {
		if (r.Op == kms.OpGenerateDataKey || r.Op == kms.OpDecrypt) && r.Time.Before(started.Add(2*interval)) {
			times = append(times, r.Time)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	if len(times) == 0 {
		b.Fatal("no calls")
	}
	window := 2 * interval
	avg := float64(len(times)) / window.Seconds()
	peak := 0
	for i, j := 0, 0; j < len(times); j++ {
		for times[j].Sub(times[i]) >= time.Second {
			i++
		}
		peak = max(peak, j-i+1)
	}
	perSecond := make([]int, int(window/time.Second))
	for _, t := range times {
		if s := int(t.Sub(started) / time.Second); s >= 0 && s < len(perSecond) {
			perSecond[s]++
		}
	}
	least := slices.Min(perSecond[1:]) // the first second includes the start-up
	if testing.Verbose() {
		b.Logf("calls per second: %v", perSecond)
	}
	expected := 2 * float64(tenants) / interval.Seconds()
	b.ReportMetric(avg, "calls/s")
	b.ReportMetric(expected, "expected_calls/s")
	b.ReportMetric(float64(peak), "peak_calls/s")
	b.ReportMetric(float64(peak)/avg, "peak/avg")
	b.ReportMetric(float64(least), "min_calls/s")
	b.Logf("%d tenants, interval %v: %d calls in %v (%d probes, %d transitions); avg %.0f/s, expected %.0f/s, peak %d in 1 s, min %d in a whole second",
		tenants, interval, len(times), window, stats.Probes, stats.Transitions, avg, expected, peak, least)
}
