package cli_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

// The re-encryption benchmarks run the scenarios of `keyward bench
// reencrypt` (docs/benchmarks.md, "Re-encryption") through the AWS KMS
// emulator: each sub-benchmark starts a keyward dev stack with the
// re-encryptor's KMS rate share set (the default, 0.2) or unset
// (unlimited). One iteration is one heal and one rotation job (or one live
// latency run), so run them with -benchtime=1x; ns/op is the length of the
// run, not a figure. Sizes are small by default; `keyward bench reencrypt`
// takes --n and --max-mib for the recorded runs.

var reencryptBenchSizes = []struct {
	name string
	o    cli.ReencryptOptions
}{
	{"1KiB", cli.ReencryptOptions{Assets: 1000, Size: 1 << 10}},
	{"1MiB", cli.ReencryptOptions{Assets: 32, Size: 1 << 20}},
}

func reencryptDev(b *testing.B, share float64) *cli.Dev {
	b.Helper()
	d, err := cli.StartDev(context.Background(), cli.ReencryptDevOptions(filepath.Join(b.TempDir(), "data"), share))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.Stop)
	return d
}

func reportReencrypt(b *testing.B, prefix string, r cli.ReencryptJobResult) {
	b.ReportMetric(r.AssetsPerSec(), prefix+"_assets/s")
	b.ReportMetric(r.MiBPerSec(), prefix+"_MiB/s")
	b.ReportMetric(r.MovingAssetsPerSec(), prefix+"_moving_assets/s")
	b.ReportMetric(r.MovingMiBPerSec(), prefix+"_moving_MiB/s")
	b.ReportMetric(float64(r.KMSCalls), prefix+"_kms_calls")
	b.Logf("%s of %d × %d B: %v to completed and finalized (job %v, moving %v), %d KMS calls", r.Purpose, r.Done, r.Size, r.Elapsed, r.Job, r.Moving, r.KMSCalls)
}

// BenchmarkReencryptJobs: a heal job (key announced unavailable, assets
// stored under the fallback key, key announced available) then a rotation
// job of the same assets to a new emulator key; heal_* and rotation_* over
// the time from the trigger to the job record completed and finalized,
// *_moving_* from the job's start to its last AssetReencrypted.
func BenchmarkReencryptJobs(b *testing.B) {
	for _, share := range []struct {
		name  string
		share float64
	}{{"ratelimit=set", reencryptor.DefaultKMSRateShare}, {"ratelimit=unset", 0}} {
		for _, sz := range reencryptBenchSizes {
			b.Run(share.name+"/size="+sz.name, func(b *testing.B) {
				d := reencryptDev(b, share.share)
				ctx := context.Background()
				for b.Loop() {
					setup, err := cli.PrepareHeal(ctx, d, sz.o)
					if err != nil {
						b.Fatal(err)
					}
					heal, err := setup.Heal(ctx, d, 0)
					if err != nil {
						b.Fatal(err)
					}
					rot, err := setup.Rotate(ctx, d, 0)
					if err != nil {
						b.Fatal(err)
					}
					reportReencrypt(b, "heal", heal)
					reportReencrypt(b, "rotation", rot)
				}
			})
		}
	}
}

// BenchmarkReencryptBaselines: the raw floors for moving an asset on the
// same kind of stack: Object Store get + put of each asset (4 workers, like
// a job) and AES-256-GCM open + seal of each asset on one core.
func BenchmarkReencryptBaselines(b *testing.B) {
	d := reencryptDev(b, 0)
	for _, sz := range reencryptBenchSizes {
		b.Run("size="+sz.name, func(b *testing.B) {
			for b.Loop() {
				store, crypto, err := cli.ReencryptBaselines(context.Background(), d, sz.o.N(), sz.o.Size)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(store.AssetsPerSec, "raw_store_assets/s")
				b.ReportMetric(store.MiBPerSec(), "raw_store_MiB/s")
				b.ReportMetric(crypto.AssetsPerSec, "raw_aes_gcm_assets/s")
				b.ReportMetric(crypto.MiBPerSec(), "raw_aes_gcm_MiB/s")
			}
		})
	}
}

// BenchmarkReencryptLive: decision latency (publish → AssetEncrypted) of
// the local-key tenant "demo", 1 KiB at 100/s, for 3 s with no job, then
// while a heal of 1 MiB assets runs.
func BenchmarkReencryptLive(b *testing.B) {
	d := reencryptDev(b, reencryptor.DefaultKMSRateShare)
	for b.Loop() {
		r, err := cli.ReencryptLive(context.Background(), d, cli.ReencryptOptions{Assets: 64, Size: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("idle: %s; during the heal: %s", r.Idle, r.During)
		b.ReportMetric(fobMS(r.Idle.P50), "idle_p50_ms")
		b.ReportMetric(fobMS(r.Idle.P99), "idle_p99_ms")
		b.ReportMetric(fobMS(r.During.P50), "during_p50_ms")
		b.ReportMetric(fobMS(r.During.P99), "during_p99_ms")
		b.ReportMetric(float64(r.During.N), "during_assets")
		reportReencrypt(b, "heal", r.Heal)
	}
}
