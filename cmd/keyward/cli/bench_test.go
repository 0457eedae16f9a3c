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
// producer process would have.
func producerConn(b *testing.B, d *cli.Dev) (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(d.URL())
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

func startBenchDev(b *testing.B) *cli.Dev {
	d, err := cli.StartDev(context.Background(), cli.DevOptions{DataDir: filepath.Join(b.TempDir(), "data"), Port: 0, NoAuth: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.Stop)
	return d
}

// BenchmarkPipelineInline1KiB: publish → AssetEncrypted for 1 KiB inline
// assets. Compare with BenchmarkRawJetStream1KiB from the same run.
func BenchmarkPipelineInline1KiB(b *testing.B) {
	d := startBenchDev(b)
	nc, js := producerConn(b, d)
	ctx := context.Background()
	if _, err := cli.Pipeline(ctx, nc, js, cli.DemoTenant, 500, 1024); err != nil {
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
	b.ReportMetric(float64(d.KMS.Stats().Calls-calls)/float64(b.N), "kms-calls/asset")
}

// BenchmarkRawJetStream1KiB is the baseline: async publish + pull consume
// with acks of 1 KiB messages on the same embedded server setup.
func BenchmarkRawJetStream1KiB(b *testing.B) {
	d := startBenchDev(b)
	_, js := producerConn(b, d)
	b.SetBytes(1024)
	b.ResetTimer()
	rate, err := cli.RawJetStream(context.Background(), js, b.N, 1024)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(rate, "msgs/s")
}

// BenchmarkProviderAsset: one inline 1 KiB asset at a time (publish →
// AssetEncrypted) for a tenant on each emulated cloud, with the seed cache
// on and off; provider=localkms is the baseline of the same run. ns/op is
// the latency per asset; kms-calls/asset counts the KMS calls the stack
// made per asset. Keyward's own rate limits are lifted with
// the cache off so the provider, not the quota guard, is measured.
func BenchmarkProviderAsset(b *testing.B) {
	for _, cache := range []string{"on", "off"} {
		o := cli.DevOptions{DataDir: filepath.Join(b.TempDir(), "data"), Port: 0, NoAuth: true}
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
