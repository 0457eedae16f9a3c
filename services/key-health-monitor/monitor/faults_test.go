package monitor_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

type fault struct {
	name          string
	inject, clear func(t testing.TB, c *cloud, key kms.KeyURI)
	status        events.KeyStatus
	reason        string
}

func setFault(f kmstest.Fault) func(testing.TB, *cloud, kms.KeyURI) {
	return func(_ testing.TB, c *cloud, _ kms.KeyURI) { c.faults.Set(f) }
}

func clearFault(_ testing.TB, c *cloud, _ kms.KeyURI) { c.faults.Set(kmstest.FaultNone) }

func deny(op func(*cloud) string) func(testing.TB, *cloud, kms.KeyURI) {
	return func(_ testing.TB, c *cloud, _ kms.KeyURI) { c.faults.Deny(op(c)) }
}

func allow(op func(*cloud) string) func(testing.TB, *cloud, kms.KeyURI) {
	return func(_ testing.TB, c *cloud, _ kms.KeyURI) { c.faults.Allow(op(c)) }
}

func opGenerate(c *cloud) string { return c.opGenerate }
func opDecrypt(c *cloud) string  { return c.opDecrypt }

func disable(t testing.TB, c *cloud, k kms.KeyURI) { c.disable(t, k) }
func enable(t testing.TB, c *cloud, k kms.KeyURI)  { c.enable(t, k) }

// Each fault of a customer KMS, through the emulator and the real SDK
// provider: the key is available, the fault makes it the right status
// after the hysteresis with exactly one event per transition (previous,
// reason, source) and the KV record updated, and clearing the fault makes
// it available again with one more event.
func TestFaultsAWS(t *testing.T) {
	t.Parallel()
	runFaults(t, awsCloud, []fault{
		{"hang", setFault(kmstest.FaultHang), clearFault, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"refused", setFault(kmstest.FaultRefuse), clearFault, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"5xx", setFault(kmstest.FaultServerError), clearFault, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"throttled", setFault(kmstest.FaultThrottle), clearFault, events.KeyStatusDegraded, "throttled"},
		{"disabled", disable, enable, events.KeyStatusRevoked, "key_disabled"},
		{"pending deletion", func(t testing.TB, c *cloud, k kms.KeyURI) {
			if err := awsEmu(t, c).ScheduleDeletion(context.Background(), k, 7); err != nil {
				t.Fatal(err)
			}
		}, func(t testing.TB, c *cloud, k kms.KeyURI) {
			if err := awsEmu(t, c).CancelDeletion(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}, events.KeyStatusRevoked, "key_disabled:key_pending_deletion"},
		{"decrypt denied", deny(opDecrypt), allow(opDecrypt), events.KeyStatusRevoked, "access_denied:not_allowed"},
		{"generate denied", deny(opGenerate), allow(opGenerate), events.KeyStatusRevoked, "access_denied:not_allowed"},
	})
}

func TestFaultsOCI(t *testing.T) {
	t.Parallel()
	runFaults(t, ociCloud, []fault{
		{"hang", setFault(kmstest.FaultHang), clearFault, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"refused", setFault(kmstest.FaultRefuse), clearFault, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"5xx", setFault(kmstest.FaultServerError), clearFault, events.KeyStatusUnavailable, "endpoint_unreachable"},
		{"throttled", setFault(kmstest.FaultThrottle), clearFault, events.KeyStatusDegraded, "throttled"},
		{"disabled", disable, enable, events.KeyStatusRevoked, "key_disabled"},
		// OCI answers a policy without the operation like a missing key
		// (404 NotAuthorizedOrNotFound).
		{"decrypt denied", deny(opDecrypt), allow(opDecrypt), events.KeyStatusRevoked, "key_not_found"},
		{"generate denied", deny(opGenerate), allow(opGenerate), events.KeyStatusRevoked, "key_not_found"},
	})
}

func runFaults(t *testing.T, newCloud func(testing.TB) *cloud, faults []fault) {
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			c := newCloud(t)
			e := newEnv(t, c)
			key := c.newKey(t)
			// A second tenant on the same endpoint with a healthy key is
			// only affected by endpoint faults.
			e.enroll("acme", key)
			in := e.start(fastOptions())
			waitStatus(t, in, "acme", key, events.KeyStatusAvailable, 5*time.Second)

			f.inject(t, c, key)
			took := waitStatus(t, in, "acme", key, f.status, 10*time.Second)
			t.Logf("%s: %s after %v", f.name, f.status, took)
			st, _ := in.w.Status("acme", key.String())
			if st.Reason != f.reason {
				t.Errorf("reason %q, want %q", st.Reason, f.reason)
			}
			rec, ok := e.record("acme", key)
			if !ok || rec.Status != f.status || rec.Previous != events.KeyStatusAvailable || rec.Reason != f.reason || !rec.Since.Equal(st.Since) {
				t.Errorf("KV record %+v, want %s (previous available, reason %s, since %v)", rec, f.status, f.reason, st.Since)
			}

			f.clear(t, c, key)
			waitStatus(t, in, "acme", key, events.KeyStatusAvailable, 10*time.Second)
			// Let a few more probes pass: nothing else may be announced.
			time.Sleep(4 * testHealthy)

			evs := e.statusEvents("acme")
			want := []struct {
				status, previous events.KeyStatus
				reason           string
			}{
				{events.KeyStatusAvailable, "", "ok"},
				{f.status, events.KeyStatusAvailable, f.reason},
				{events.KeyStatusAvailable, f.status, "ok"},
			}
			if len(evs) != len(want) {
				for _, ev := range evs {
					t.Logf("event %s ← %s (%s) %s", ev.Status, ev.Previous, ev.Reason, ev.MsgID)
				}
				t.Fatalf("%d KeyStatusChanged events, want %d", len(evs), len(want))
			}
			for i, w := range want {
				ev := evs[i]
				if ev.Status != w.status || ev.Previous != w.previous || ev.Reason != w.reason || ev.Source != events.SourceProbe {
					t.Errorf("event %d: %s ← %q (%s, %s), want %s ← %q (%s, probe)", i, ev.Status, ev.Previous, ev.Reason, ev.Source, w.status, w.previous, w.reason)
				}
				if ev.TenantID != "acme" || ev.KeyURI != key.String() {
					t.Errorf("event %d names %s %s", i, ev.TenantID, ev.KeyURI)
				}
				if wantID := monitorStatusID("acme", key, ev.Since); ev.MsgID != wantID {
					t.Errorf("event %d Nats-Msg-Id %q, want %q", i, ev.MsgID, wantID)
				}
				if i > 0 && !ev.Since.After(evs[i-1].Since) {
					t.Errorf("event %d since %v not after %v", i, ev.Since, evs[i-1].Since)
				}
			}
			rec, _ = e.record("acme", key)
			if rec.Status != events.KeyStatusAvailable || rec.Previous != f.status {
				t.Errorf("KV record after recovery %+v", rec)
			}
		})
	}
}
