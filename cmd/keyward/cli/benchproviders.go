package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
)

// AssetLatency publishes n inline assets of size bytes for each tenant,
// one asset at a time — each after the previous one's outcome is stored —
// going round the tenants so that all of them see the same stack (stream
// sizes, caches, background work). It returns each tenant's latencies
// (publish → AssetEncrypted in KW_ASSETS). Every asset must be encrypted
// under its tenant's customer key: a fallback or a rejection (an emulator
// that is not answering) fails the run rather than flattering it.
func AssetLatency(ctx context.Context, js jetstream.JetStream, tenants []string, n, size int) (map[string][]time.Duration, error) {
	st, err := js.Stream(ctx, events.StreamAssets)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var filters []string
	for _, t := range tenants {
		filters = append(filters, events.SubjectAssetEncrypted(t), events.SubjectAssetRejected(t))
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamAssets, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	payload := make([]byte, size)
	rand.Read(payload)
	run := fmt.Sprintf("lat%d", time.Now().UnixNano())
	out := map[string][]time.Duration{}
	for i := range n {
		for _, tenantID := range tenants {
			m, err := benchAsset(ctx, tenantID, fmt.Sprintf("%s-%d", run, i), payload)
			if err != nil {
				return nil, err
			}
			start := time.Now()
			if _, err := js.PublishMsg(ctx, m); err != nil {
				return nil, err
			}
			got, err := it.Next()
			if err != nil {
				return nil, err
			}
			out[tenantID] = append(out[tenantID], time.Since(start))
			if err := checkCustomer(got); err != nil {
				return nil, fmt.Errorf("tenant %s: %w", tenantID, err)
			}
		}
	}
	return out, nil
}

func checkCustomer(m jetstream.Msg) error {
	if m.Headers().Get(events.HeaderCEType) != events.TypeAssetEncrypted {
		return fmt.Errorf("benchmark asset rejected: %s", m.Data())
	}
	var e events.AssetEncrypted
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return err
	}
	if e.Mode != events.ModeCustomer {
		return fmt.Errorf("benchmark asset %s encrypted in %s mode, not under the customer key: is the emulator answering?", e.AssetID, e.Mode)
	}
	return nil
}

// BenchProvider is one tenant of the provider run.
type BenchProvider struct {
	Name, Tenant string
	// requests counts the data-plane requests its emulator received (nil:
	// no emulator, the local key).
	requests func(d *Dev) int
}

// BenchProviders are the tenants of the provider run: the local demo key
// (the baseline: no network KMS) and one demo tenant per emulated cloud.
var BenchProviders = []BenchProvider{
	{Name: "localkms", Tenant: DemoTenant},
	{Name: "aws", Tenant: DemoTenantAWS, requests: func(d *Dev) int { return len(d.AWS.Server.Faults.Requests()) }},
	{Name: "oci", Tenant: DemoTenantOCI, requests: func(d *Dev) int { return len(d.OCI.Server.Faults.Requests()) }},
	{Name: "azure", Tenant: DemoTenantAzure, requests: func(d *Dev) int {
		ops := d.Azure.Server.Faults.Ops()
		return ops[azureemu.OpWrapKey] + ops[azureemu.OpUnwrapKey] // not the token requests
	}},
}

// ProviderStats summarises one provider's run.
type ProviderStats struct {
	Median, P90, P99 time.Duration
	// CallsPerAsset is the KMS requests its endpoint received per asset.
	CallsPerAsset float64
}

// ProviderLatency runs AssetLatency over every BenchProviders tenant after
// a warm-up (consumer, token and seed caches), and counts each emulator's
// data-plane requests; the local key's calls are the client's other calls.
func ProviderLatency(ctx context.Context, d *Dev, js jetstream.JetStream, n, size int) (map[string]ProviderStats, error) {
	tenants := make([]string, len(BenchProviders))
	for i, p := range BenchProviders {
		tenants[i] = p.Tenant
	}
	if _, err := AssetLatency(ctx, js, tenants, 20, size); err != nil {
		return nil, err
	}
	before := map[string]int{}
	calls := d.KMS.Stats().Calls
	for _, p := range BenchProviders {
		if p.requests != nil {
			before[p.Name] = p.requests(d)
		}
	}
	lat, err := AssetLatency(ctx, js, tenants, n, size)
	if err != nil {
		return nil, err
	}
	out := map[string]ProviderStats{}
	local := int(d.KMS.Stats().Calls - calls)
	for _, p := range BenchProviders {
		l := lat[p.Tenant]
		slices.Sort(l)
		q := func(f float64) time.Duration { return l[min(len(l)-1, int(f*float64(len(l))))] }
		s := ProviderStats{Median: q(0.5), P90: q(0.9), P99: q(0.99)}
		if p.requests != nil {
			got := p.requests(d) - before[p.Name]
			local -= got
			s.CallsPerAsset = float64(got) / float64(n)
		}
		out[p.Name] = s
	}
	s := out[BenchProviders[0].Name]
	s.CallsPerAsset = float64(max(local, 0)) / float64(n)
	out[BenchProviders[0].Name] = s
	return out, nil
}

// NoSeedCache is a seed cache configuration that makes every asset call
// the KMS: a seed serves one asset.
func NoSeedCache() *kms.SeedCacheConfig {
	c := kms.DefaultSeedCacheConfig()
	c.MaxUses = 1
	return &c
}

// NoRateLimits lifts Keyward's own per-endpoint rate limits, so a latency
// run measures the provider and not the quota guard (which paces a single
// endpoint at 100 calls/s for OCI, 150 for Azure, 1,000 for AWS).
func NoRateLimits() []kms.ClientOption {
	var out []kms.ClientOption
	for scheme := range kms.DefaultRateLimits() {
		out = append(out, kms.WithRateLimit(scheme, kms.RateLimit{}))
	}
	return out
}

// ProviderBench measures, for each emulated cloud, the KMS calls per asset
// and the latency each asset gains over the local-key baseline measured in
// the same run on the same stack, with the seed cache as configured in d.
// The load generator connects as the bench identity (a producer that reads
// the outcomes; no credentials when d runs without authentication).
func ProviderBench(ctx context.Context, d *Dev, cache string, n, size int) ([]BenchResult, error) {
	nc, js, err := benchConn(d)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	stats, err := ProviderLatency(ctx, d, js, n, size)
	if err != nil {
		return nil, err
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) }
	base := stats[BenchProviders[0].Name]
	var out []BenchResult
	for i, p := range BenchProviders {
		s := stats[p.Name]
		out = append(out,
			BenchResult{Name: fmt.Sprintf("%s, seed cache %s: KMS calls per asset", p.Name, cache), Unit: "calls", Value: s.CallsPerAsset},
			BenchResult{Name: fmt.Sprintf("%s, seed cache %s: asset latency p50 (p90 %d µs, p99 %d µs)", p.Name, cache, s.P90.Microseconds(), s.P99.Microseconds()),
				Unit: "µs", Value: us(s.Median), Baseline: "localkms p50, µs", Raw: us(base.Median), Ratio: us(s.Median) / us(base.Median)},
		)
		if i > 0 {
			out = append(out, BenchResult{Name: fmt.Sprintf("%s, seed cache %s: added latency per asset (p50)", p.Name, cache), Unit: "µs", Value: us(s.Median - base.Median)})
		}
	}
	return out, nil
}
