package cli_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/cmd/keyward/cli"
)

// producerConn is a connection of its own for the load generator, as a
// producer process would have: the bench identity's when d authenticates,
// no credentials when it does not.
func producerConn(b *testing.B, d *cli.Dev) (*nats.Conn, jetstream.JetStream) {
	nc, _, err := d.Connect(cli.IdentityBench)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		b.Fatal(err)
	}
	return nc, js
}

// benchSecurity are the stacks of the pipeline benchmarks, by
// sub-benchmark name: NATS authentication on (as keyward dev runs),
// authentication and TLS on (keyward dev --tls), and neither.
var benchSecurity = []struct {
	name string
	o    cli.DevOptions
}{
	{"auth=on", cli.DevOptions{}},
	{"auth=on,tls=on", cli.DevOptions{TLS: true}},
	{"auth=off", cli.DevOptions{NoAuth: true}},
}

// startBenchDevs starts one stack per benchSecurity entry, all up while
// any is measured.
func startBenchDevs(b *testing.B) []*cli.Dev {
	var ds []*cli.Dev
	for _, s := range benchSecurity {
		o := s.o
		o.DataDir, o.Port = filepath.Join(b.TempDir(), "data"), 0
		d, err := cli.StartDev(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(d.Stop)
		ds = append(ds, d)
	}
	return ds
}

// BenchmarkPipelineInline1KiB: publish → AssetEncrypted for 1 KiB inline
// assets, with NATS authentication on (auth=on: the load generator is the
// bench identity, every worker its own), with authentication and TLS
// (auth=on,tls=on) and with neither (auth=off), the stacks of the same
// run. raw-msgs/s is raw JetStream async publish + consume of b.N messages
// on the same server just before, outside the timer; assets/s of each
// over auth=off's is the cost of its settings.
func BenchmarkPipelineInline1KiB(b *testing.B) {
	ds := startBenchDevs(b)
	// Warm every stack before any is measured, so the work of a stack
	// just started (first probes, scans, caches) lands on none.
	for _, d := range ds {
		nc, js := producerConn(b, d)
		if _, err := cli.Pipeline(context.Background(), nc, js, cli.DemoTenant, 2000, 1024); err != nil {
			b.Fatal(err)
		}
	}
	for i, s := range benchSecurity {
		d := ds[i]
		b.Run(s.name, func(b *testing.B) {
			nc, js := producerConn(b, d)
			ctx := context.Background()
			if _, err := cli.RawJetStream(ctx, js, 1000, 1024); err != nil {
				b.Fatal(err)
			}
			if _, err := cli.Pipeline(ctx, nc, js, cli.DemoTenant, 500, 1024); err != nil {
				b.Fatal(err)
			}
			raw, err := cli.RawJetStream(ctx, js, b.N, 1024)
			if err != nil {
				b.Fatal(err)
			}
			calls := d.KMS.Stats().Calls
			b.SetBytes(1024)
			b.ResetTimer()
			rate, err := cli.Pipeline(ctx, nc, js, cli.DemoTenant, b.N, 1024)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(rate, "assets/s")
			b.ReportMetric(raw, "raw-msgs/s")
			b.ReportMetric(float64(d.KMS.Stats().Calls-calls)/float64(b.N), "kms-calls/asset")
		})
	}
}

// BenchmarkRawJetStream1KiB is the baseline: async publish + pull consume
// with acks of 1 KiB messages on the same embedded server setup, with
// authentication on (the bench identity on its stream BENCH_RAW), with
// authentication and TLS, and with neither.
func BenchmarkRawJetStream1KiB(b *testing.B) {
	ds := startBenchDevs(b)
	for i, s := range benchSecurity {
		d := ds[i]
		b.Run(s.name, func(b *testing.B) {
			_, js := producerConn(b, d)
			b.SetBytes(1024)
			b.ResetTimer()
			rate, err := cli.RawJetStream(context.Background(), js, b.N, 1024)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(rate, "msgs/s")
		})
	}
}

// BenchmarkProviderAsset: one inline 1 KiB asset at a time (publish →
// AssetEncrypted) for a tenant on each emulated cloud, with the seed cache
// on and off; provider=localkms is the baseline of the same run. ns/op is
// the latency per asset; kms-calls/asset counts the KMS calls the stack
// made per asset. Keyward's own rate limits are lifted with
// the cache off so the provider, not the quota guard, is measured. The
// stacks authenticate; the load generator is the bench identity.
func BenchmarkProviderAsset(b *testing.B) {
	for _, cache := range []string{"on", "off"} {
		o := cli.DevOptions{DataDir: filepath.Join(b.TempDir(), "data"), Port: 0}
		if cache == "off" {
			o.SeedCache, o.KMSOptions = cli.NoSeedCache(), cli.NoRateLimits()
		}
		d, err := cli.StartDev(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		_, js := producerConn(b, d)
		for _, p := range cli.BenchProviders {
			b.Run("seedcache="+cache+"/provider="+p.Name, func(b *testing.B) {
				ctx := context.Background()
				if _, err := cli.AssetLatency(ctx, js, []string{p.Tenant}, 20, 1024); err != nil {
					b.Fatal(err)
				}
				calls := d.KMS.Stats().Calls
				b.ResetTimer()
				if _, err := cli.AssetLatency(ctx, js, []string{p.Tenant}, b.N, 1024); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(d.KMS.Stats().Calls-calls)/float64(b.N), "kms-calls/asset")
			})
		}
		d.Stop()
	}
}
