package cli_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/kms/kmstest"
)

// The failover benchmarks measure the failover targets on the
// keyward dev stack (docs/benchmarks.md, "Key health and failover"): each
// iteration starts a stack, enrolls tenants with keys in the AWS KMS
// emulator, runs steady traffic and injects the fault, so one iteration
// takes 10-30 s with the short settings and up to a few minutes with the
// production defaults. Run them with -benchtime=1x; ns/op is the length of
// the run, not a figure. The production-defaults cases run only with
// KEYWARD_LONG_BENCH=1 (and never with -short).

// fobLong skips b unless the long benchmarks were asked for.
func fobLong(b *testing.B) {
	b.Helper()
	if testing.Short() || os.Getenv("KEYWARD_LONG_BENCH") == "" {
		b.Skip("production-default timings take minutes: set KEYWARD_LONG_BENCH=1 (and no -short)")
	}
}

func fobDev(b *testing.B, seedCache string, short, noBreaker bool) *cli.Dev {
	b.Helper()
	d, err := cli.StartDev(context.Background(), cli.FailoverDevOptions(filepath.Join(b.TempDir(), "data"), seedCache, short, noBreaker))
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func fobMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fobBaselines reports the raw baselines measured on d's server in the
// same run: the JetStream publish → ack round trip of one 1 KiB message
// (p50, p99), raw JetStream throughput (async publish + consume), and one
// raw AES-256-GCM seal of a 1 KiB asset on one core.
func fobBaselines(b *testing.B, d *cli.Dev) {
	b.Helper()
	ctx := context.Background()
	_, js := producerConn(b, d)
	rtt, err := cli.FailoverRoundTrip(ctx, js, 500, 1024)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := cli.RawJetStream(ctx, js, 20000, 1024)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(fobMS(rtt.P50), "raw_js_rtt_p50_ms")
	b.ReportMetric(fobMS(rtt.P99), "raw_js_rtt_p99_ms")
	b.ReportMetric(raw, "raw_js_msgs/s")
	b.ReportMetric(fobSeal1KiB(), "raw_seal_1KiB_ns")
	b.Logf("raw JetStream publish → ack, 1 KiB: %s; raw JetStream async publish + consume: %.0f msgs/s", rtt, raw)
}

// fobSeal1KiB is the time of one AES-256-GCM seal of 1 KiB, in ns.
func fobSeal1KiB() float64 {
	block, _ := aes.NewCipher(make([]byte, 32))
	aead, _ := cipher.NewGCM(block)
	nonce, src := make([]byte, 12), make([]byte, 1024)
	dst := make([]byte, 0, 1024+16)
	const n = 100000
	start := time.Now()
	for range n {
		dst = aead.Seal(dst[:0], nonce, src, nil)
	}
	return float64(time.Since(start).Nanoseconds()) / n
}

// BenchmarkFailoverHang: decision latency (publish → AssetEncrypted or
// AssetRejected) of 20 tenants on one AWS endpoint at 40 assets/s in all,
// fallback on, for 5 s of a healthy endpoint and 10 s of a hanging one
// (kmstest.FaultHang: requests accepted, never answered; the per-call
// timeout is 500 ms). Monitor and breaker with the production defaults.
// seedcache=off makes every asset call the KMS (the worst case: every
// asset meets the hang); seedcache=default serves assets from cached seeds.
// The local-key tenant "demo" sends 10 assets/s throughout: other_* is
// what the hang costs a tenant on another endpoint.
// Metrics (ms unless named otherwise): the healthy phase; the hang before
// and after the breaker opened; every asset of the hang; when the breaker
// opened, the first fallback asset arrived and the first key was announced
// unavailable; slow_* count assets that took ≥ 200 ms (they waited for
// the hanging KMS), last_slow_ms when the last of them was published.
func BenchmarkFailoverHang(b *testing.B) {
	for _, tc := range []struct {
		name      string
		seedCache string
		noBreaker bool
	}{
		{"seedcache=off/breaker=on", "off", false},
		{"seedcache=off/breaker=off", "off", true},
		{"seedcache=default/breaker=on", "default", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				d := fobDev(b, tc.seedCache, false, tc.noBreaker)
				fobBaselines(b, d)
				r, err := cli.FailoverHang(context.Background(), d, cli.FailoverOptions{})
				d.Stop()
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%d tenants, %.0f assets/s: healthy %s", r.Tenants, r.Rate, r.Healthy)
				b.Logf("hang: every asset %s; before the breaker opened %s; after %s; after the key was announced unavailable %s",
					r.Hang, r.BeforeOpen, r.AfterOpen, r.AfterStatus)
				b.Logf("tenant %q on another endpoint (local key, %.0f assets/s): healthy %s; during the hang %s", cli.DemoTenant, r.BystanderRate, r.OtherHealthy, r.OtherHang)
				b.Logf("hang → breaker open %v, first fallback %v, first key unavailable %v (%d of %d keys within the hang, all %v); outcomes: %d customer, %d fallback, %d rejected; %d slow (≥ %v), %d after the breaker opened, the last published %v after the hang began; %d KMS timeouts begun after it opened",
					r.BreakerOpen, r.FirstFallback, r.FirstUnavailable, r.KeysUnavailable, r.Tenants, r.AllUnavailable,
					r.Customer, r.Fallback, r.Rejected, r.Slow, cli.FailoverSlow, r.SlowAfterOpen, r.LastSlow, r.TimeoutsAfterOpen)
				b.ReportMetric(fobMS(r.Healthy.P50), "healthy_p50_ms")
				b.ReportMetric(fobMS(r.Healthy.P99), "healthy_p99_ms")
				b.ReportMetric(fobMS(r.Hang.P50), "hang_p50_ms")
				b.ReportMetric(fobMS(r.Hang.P99), "hang_p99_ms")
				b.ReportMetric(fobMS(r.Hang.Max), "hang_max_ms")
				b.ReportMetric(fobMS(r.BeforeOpen.P50), "before_open_p50_ms")
				b.ReportMetric(fobMS(r.BeforeOpen.P99), "before_open_p99_ms")
				if !tc.noBreaker && tc.seedCache == "off" {
					if r.BreakerOpen == 0 {
						b.Errorf("the breaker did not open during the hang")
					}
					b.ReportMetric(fobMS(r.AfterOpen.P50), "after_open_p50_ms")
					b.ReportMetric(fobMS(r.AfterOpen.P99), "after_open_p99_ms")
					b.ReportMetric(fobMS(r.AfterOpen.Max), "after_open_max_ms")
					b.ReportMetric(fobMS(r.BreakerOpen), "breaker_open_ms")
					b.ReportMetric(float64(r.SlowAfterOpen), "slow_after_open")
					b.ReportMetric(float64(r.TimeoutsAfterOpen), "timeouts_after_open")
				}
				b.ReportMetric(fobMS(r.OtherHealthy.P99), "other_healthy_p99_ms")
				b.ReportMetric(fobMS(r.OtherHang.P50), "other_hang_p50_ms")
				b.ReportMetric(fobMS(r.OtherHang.P99), "other_hang_p99_ms")
				b.ReportMetric(fobMS(r.OtherHang.Max), "other_hang_max_ms")
				b.ReportMetric(fobMS(r.FirstFallback), "first_fallback_ms")
				b.ReportMetric(fobMS(r.FirstUnavailable), "first_unavailable_ms")
				b.ReportMetric(float64(r.Slow), "slow")
				b.ReportMetric(fobMS(r.LastSlow), "last_slow_ms")
				b.ReportMetric(100*float64(r.Fallback)/float64(max(1, r.Hang.N)), "fallback_%")
			}
		})
	}
}

// BenchmarkFailoverDetect: time to detect an outage and its end. 20
// tenants on one AWS endpoint at 40 assets/s in all, every asset calling
// the KMS (seed cache off). The endpoint hangs until every tenant's key
// has been announced unavailable (+1 s), then answers again until every
// tenant's assets are encrypted under its key again, the breaker is closed
// and every key announced available. settings=short: monitor probes every
// 1 s healthy / 200 ms unhealthy, hysteresis 3, breaker open timeout 1 s;
// settings=production: the defaults (60 s / 10 s, hysteresis 3, breaker 5
// failures or 50 %/10 s, open 30 s) — KEYWARD_LONG_BENCH=1 only.
// Metrics: ms from the fault (outage_*) or from its end (recovery_*).
func BenchmarkFailoverDetect(b *testing.B) {
	for _, settings := range []string{"short", "production"} {
		b.Run("settings="+settings, func(b *testing.B) {
			if settings == "production" {
				fobLong(b)
			}
			for b.Loop() {
				d := fobDev(b, "off", settings == "short", false)
				r, err := cli.FailoverDetect(context.Background(), d, cli.FailoverOptions{}, kmstest.FaultHang)
				d.Stop()
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%+v", *r)
				for name, v := range map[string]time.Duration{
					"breaker open": r.BreakerOpen, "first fallback": r.FirstFallback, "every key unavailable": r.AllUnavailable,
					"breaker closed": r.BreakerClosed, "every key available": r.AllAvailable, "every tenant in customer mode": r.AllCustomer,
				} {
					if v == 0 {
						b.Errorf("%s: did not happen within the step timeout", name)
					}
				}
				b.ReportMetric(fobMS(r.BreakerOpen), "outage_breaker_open_ms")
				b.ReportMetric(fobMS(r.FirstFallback), "outage_first_fallback_ms")
				b.ReportMetric(fobMS(r.FirstUnavailable), "outage_first_unavailable_ms")
				b.ReportMetric(fobMS(r.AllUnavailable), "outage_all_unavailable_ms")
				b.ReportMetric(fobMS(r.BreakerHalfOpen), "recovery_breaker_half_open_ms")
				b.ReportMetric(fobMS(r.BreakerClosed), "recovery_breaker_closed_ms")
				b.ReportMetric(fobMS(r.FirstAvailable), "recovery_first_available_ms")
				b.ReportMetric(fobMS(r.AllAvailable), "recovery_all_available_ms")
				b.ReportMetric(fobMS(r.FirstCustomer), "recovery_first_customer_ms")
				b.ReportMetric(fobMS(r.AllCustomer), "recovery_all_customer_ms")
				b.ReportMetric(float64(r.Rejected), "outage_rejected")
			}
		})
	}
}

// BenchmarkFailoverRevocation: the revocation bound. 4 tenants on one AWS
// endpoint at 40 assets/s in all, fallback on (fallback_on outage, the
// default: a revoked key rejects); after 5 s the first tenant's key is
// disabled in the emulator, as its owner would. seedcache=default is the
// interesting case: the traffic is served from cached seeds (up to 5 min
// or 4096 assets), so only the monitor's probe sees the key go and its
// KeyStatusChanged flushes the cache; seedcache=off has every asset call
// the KMS. Metrics: ms from the disable to the first request with the key
// reaching the emulator (first_kms_use), the KeyStatusChanged revoked and
// the first AssetRejected customer_key_revoked; status_to_rejected_ms from
// the one to the other (the bound: ≤ 10 s); the tenant's assets
// published after the disable and still encrypted under the key (after
// the KeyStatusChanged arrived: must be 0); other tenants' assets not in
// customer mode (must be 0). settings=production needs KEYWARD_LONG_BENCH=1.
func BenchmarkFailoverRevocation(b *testing.B) {
	for _, tc := range []struct {
		name, seedCache string
		short           bool
	}{
		{"seedcache=default/settings=short", "default", true},
		{"seedcache=off/settings=short", "off", true},
		{"seedcache=default/settings=production", "default", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if !tc.short {
				fobLong(b)
			}
			for b.Loop() {
				d := fobDev(b, tc.seedCache, tc.short, false)
				r, err := cli.FailoverRevoke(context.Background(), d, cli.FailoverOptions{})
				d.Stop()
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%+v", *r)
				if r.StatusRevoked == 0 || r.FirstRejected == 0 {
					b.Errorf("no KeyStatusChanged revoked (%v) or no rejection (%v) within the step timeout", r.StatusRevoked, r.FirstRejected)
				}
				if r.EncryptedAfterStatus != 0 {
					b.Errorf("%d assets encrypted under the key after its KeyStatusChanged revoked arrived", r.EncryptedAfterStatus)
				}
				if r.OthersNotCustomer != 0 {
					b.Errorf("%d assets of the other tenants on the endpoint not in customer mode", r.OthersNotCustomer)
				}
				b.ReportMetric(fobMS(r.FirstKMSUse), "first_kms_use_ms")
				b.ReportMetric(fobMS(r.StatusRevoked), "status_revoked_ms")
				b.ReportMetric(fobMS(r.FirstRejected), "first_rejected_ms")
				b.ReportMetric(fobMS(r.StatusToRejected), "status_to_rejected_ms")
				b.ReportMetric(float64(r.EncryptedAfterDisable), "encrypted_after_disable")
				b.ReportMetric(float64(r.EncryptedAfterStatus), "encrypted_after_status")
				b.ReportMetric(fobMS(r.LastEncrypted), "last_encrypted_ms")
				b.ReportMetric(float64(r.OthersNotCustomer), "others_not_customer")
			}
		})
	}
}
