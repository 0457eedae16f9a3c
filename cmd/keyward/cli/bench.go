package cli

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/access"
	"github.com/keyward/keyward/pkg/envelope"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/kms"
)

// BenchResult is one measured figure next to its raw baseline from the same run.
type BenchResult struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Value    float64 `json:"value"`
	Baseline string  `json:"baseline"`
	Raw      float64 `json:"raw"`
	Ratio    float64 `json:"ratio"`
	Target   string  `json:"target"`
}

// benchRawSubject is the subject of the raw baseline's stream
// access.BenchStream, under access.BenchSubjects (role bench).
const benchRawSubject = "bench.raw"

// RawJetStream measures raw JetStream: n messages of size bytes published
// asynchronously into a fresh file-backed stream while a pull consumer
// acknowledges them, timed from the first publish to the last ack. Returns
// msgs/s. The stream is access.BenchStream, the one stream the bench
// identity may create and delete: one left over from an interrupted run is
// deleted first, and the stream is deleted after, so two measurements
// must not run at once on one server.
func RawJetStream(ctx context.Context, js jetstream.JetStream, n, size int) (float64, error) {
	name := access.BenchStream
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("deleting a leftover %s: %w", name, err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{benchRawSubject}, Storage: jetstream.FileStorage})
	if err != nil {
		return 0, err
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), name)
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return 0, err
	}
	payload := make([]byte, size)
	rand.Read(payload)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		it, err := cons.Messages(jetstream.PullMaxMessages(512))
		if err != nil {
			done <- err
			return
		}
		defer it.Stop()
		for got := 0; got < n; got++ {
			m, err := it.Next()
			if err != nil {
				done <- err
				return
			}
			_ = m.Ack()
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		if _, err := js.PublishAsync(benchRawSubject, payload); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := <-done; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// Pipeline measures Keyward: n inline assets of size bytes published as
// AssetCreated, timed from the first publish until the n-th AssetEncrypted
// is in KW_ASSETS. It returns assets/s.
func Pipeline(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, tenantID string, n, size int) (float64, error) {
	run := fmt.Sprintf("b%d", time.Now().UnixNano())
	st, err := js.Stream(ctx, events.StreamAssets)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamAssets, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectAssetEncrypted(tenantID), events.SubjectAssetRejected(tenantID)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return 0, err
	}
	payload := make([]byte, size)
	rand.Read(payload)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		it, err := cons.Messages()
		if err != nil {
			done <- err
			return
		}
		defer it.Stop()
		for got := 0; got < n; got++ {
			m, err := it.Next()
			if err != nil {
				done <- err
				return
			}
			if m.Headers().Get(events.HeaderCEType) == events.TypeAssetRejected {
				done <- fmt.Errorf("benchmark asset rejected: %s", m.Data())
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		m, err := benchAsset(ctx, tenantID, fmt.Sprintf("%s-%d", run, i), payload)
		if err != nil {
			return 0, err
		}
		if _, err := js.PublishMsgAsync(m); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case err := <-done:
		if err != nil {
			return 0, err
		}
	case <-ctx.Done():
		return 0, errors.New("the pipeline did not finish in time")
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// benchAsset is the AssetCreated message of one inline benchmark asset.
func benchAsset(ctx context.Context, tenantID, assetID string, payload []byte) (*nats.Msg, error) {
	sum := sha256.Sum256(payload)
	sz := int64(len(payload))
	ev := &events.AssetCreated{
		TenantID: tenantID, AssetID: assetID, Service: "team_chat", OwnerUserID: "bench",
		Origin: events.OriginCloud, CreatedAt: time.Now().UTC(), Content: events.Content{Inline: payload},
		Size: &sz, SHA256: hex.EncodeToString(sum[:]),
	}
	return events.NewMsg(ctx, "keyward-bench", events.Outgoing{
		Subject: events.SubjectAssetCreated(tenantID), MsgID: "created." + tenantID + "." + assetID,
		Type: events.TypeAssetCreated, Event: ev,
	})
}

// RawSeal measures plain AES-256-GCM Seal over size bytes in 16 KiB pieces
// on one core, in bytes/s.
func RawSeal(size int) float64 {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	src := make([]byte, cobblestone.ChunkSize)
	dst := make([]byte, 0, cobblestone.EncryptedChunkSize)
	start := time.Now()
	for done := 0; done < size; done += len(src) {
		dst = aead.Seal(dst[:0], nonce, src, nil)
	}
	return float64(size) / time.Since(start).Seconds()
}

// EnvelopeSeal measures envelope encryption of size bytes streamed to
// io.Discard with the given chunk concurrency, in bytes/s, and reports the
// peak heap seen while doing it.
func EnvelopeSeal(size, concurrency int) (float64, uint64) {
	seedBytes := make([]byte, 32)
	rand.Read(seedBytes)
	seed := kms.NewSecret(seedBytes)
	defer seed.Destroy()
	hdr := &envelope.Header{KeyURI: "localkms:///bench.key", KeyVersion: "1", WrappedSeed: make([]byte, 60)}
	id := envelope.Identity{TenantID: "bench", AssetID: "a", Service: "cloud_recording"}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var max uint64
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > base.HeapInuse && ms.HeapInuse-base.HeapInuse > max {
					max = ms.HeapInuse - base.HeapInuse
				}
			}
		}
	}()
	start := time.Now()
	w, _ := envelope.NewWriter(io.Discard, hdr, seed, id, cobblestone.WithConcurrency(concurrency))
	buf := make([]byte, 1<<20)
	for done := 0; done < size; done += len(buf) {
		w.Write(buf[:min(len(buf), size-done)])
	}
	w.Close()
	rate := float64(size) / time.Since(start).Seconds()
	close(stop)
	return rate, <-peak
}

func (a *App) benchCmd() *cobra.Command {
	var assets, size, providerAssets, rounds int
	var envMiB int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Keyward against its raw baselines in one run (pipeline vs raw JetStream, envelope vs raw AES-GCM)",
		Long: `bench starts an in-process Keyward (like keyward dev, in a temporary
directory, on a free port) and measures, in the same run:

  - pipeline throughput: inline assets published as AssetCreated until their
    AssetEncrypted is stored, vs raw JetStream async publish + consume of the
    same count and size on the same server (target: at least 0.2 of raw),
    on a stack with NATS authentication (as keyward dev runs; the load
    generator is the bench identity), one with authentication and TLS
    (keyward dev --tls) and one with neither, in alternating rounds; the
    ratio of each to the last is the cost of its settings (target: at least
    0.9);
  - KMS calls per asset with the seed cache (target: at most 0.01);
  - per cloud (AWS, OCI, Azure through their emulators), with the seed cache
    on and off: KMS calls per asset, and the latency of one asset at a time
    (publish → AssetEncrypted) next to a local-key tenant's in the same stack,
    so the difference is what the provider adds;
  - envelope encryption bandwidth vs raw AES-256-GCM Seal of the same bytes
    on one core (targets: 0.8 single-threaded, above 1.0 with parallel chunks),
    and the peak heap while encrypting.

Figures go to docs/benchmarks.md with the command that produced them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			// The envelope first, alone in the process, so nothing else
			// competes for the cores or shows up in the heap.
			envResults := EnvelopeBench(envMiB << 20)
			// The stack with authentication (as keyward dev runs), measured
			// next to the stacks of benchCompared; the provider run's too.
			d, err := benchStack(ctx, DevOptions{})
			if err != nil {
				return err
			}
			defer func() { d.Stop() }() // the last stack started
			results, err := compareSecurity(ctx, d, assets, size, rounds)
			if err != nil {
				return err
			}
			if providerAssets > 0 {
				on, err := ProviderBench(ctx, d, "on", providerAssets, size)
				if err != nil {
					return err
				}
				results = append(results, on...)
				// A second stack whose seeds serve one asset each: every
				// asset calls its KMS. Keyward's own rate limits are lifted
				// there, or one asset at a time would measure them (OCI's
				// default paces an endpoint at 10 ms per call).
				d.Stop()
				if d, err = benchStack(ctx, DevOptions{SeedCache: NoSeedCache(), KMSOptions: NoRateLimits()}); err != nil {
					return err
				}
				off, err := ProviderBench(ctx, d, "off", providerAssets, size)
				if err != nil {
					return err
				}
				results = append(results, off...)
			}
			results = append(results, envResults...)
			if a.jsonOut {
				return a.printJSON(results)
			}
			labels := []string{"auth on"}
			for _, c := range benchCompared {
				labels = append(labels, c.label)
			}
			fmt.Fprintf(a.Stdout, "keyward bench: %d assets of %d B (%d round(s) per stack: %s), envelope %d MiB, GOMAXPROCS=%d, %s/%s, %s\n\n",
				assets, size, rounds, strings.Join(labels, ", "), envMiB, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MEASURE\tVALUE\tBASELINE (same run)\tRAW\tRATIO\tTARGET")
			for _, r := range results {
				raw, ratio := "", ""
				if r.Baseline != "" {
					raw, ratio = fmt.Sprintf("%.0f", r.Raw), fmt.Sprintf("%.2f", r.Ratio)
				}
				fmt.Fprintf(tw, "%s\t%.4g %s\t%s\t%s\t%s\t%s\n", r.Name, r.Value, r.Unit, r.Baseline, raw, ratio, r.Target)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&assets, "assets", 20000, "assets in the pipeline run")
	cmd.Flags().IntVar(&rounds, "rounds", 2, "pipeline measurements per stack (auth on; auth and TLS on; auth off), in alternating order")
	cmd.Flags().IntVar(&size, "size", 1024, "bytes per asset (inline)")
	cmd.Flags().IntVar(&envMiB, "envelope-mib", 256, "MiB encrypted in the envelope run")
	cmd.Flags().IntVar(&providerAssets, "provider-assets", 300, "assets per provider in the latency run through the AWS, OCI and Azure emulators, seed cache on and off (0 skips it)")
	cmd.AddCommand(a.benchFailoverCmd(), a.benchReencryptCmd(), a.benchPhoneCmd())
	return cmd
}

// PipelineFigures are one measurement of a stack: the pipeline and the raw
// JetStream baseline on the same server, and the KMS calls of the timed
// assets.
type PipelineFigures struct {
	Pipeline, Raw float64 // assets/s, msgs/s
	KMSCalls      int64
}

// MeasurePipeline measures the pipeline of a running dev stack against raw
// JetStream on the same server, after a warm-up of both (consumer creation,
// seed cache, page cache). The producer and the raw baseline use a
// connection of their own, as a separate process would, so their
// publishing does not queue behind the workers': as the bench identity
// when the stack authenticates, with no credentials when it does not.
func MeasurePipeline(ctx context.Context, d *Dev, assets, size int) (PipelineFigures, error) {
	nc, js, err := benchConn(d)
	if err != nil {
		return PipelineFigures{}, err
	}
	defer nc.Close()
	if _, err := RawJetStream(ctx, js, 1000, size); err != nil {
		return PipelineFigures{}, err
	}
	if _, err := Pipeline(ctx, nc, js, DemoTenant, 500, size); err != nil {
		return PipelineFigures{}, err
	}
	var f PipelineFigures
	if f.Raw, err = RawJetStream(ctx, js, assets, size); err != nil {
		return PipelineFigures{}, err
	}
	calls := d.KMS.Stats().Calls
	if f.Pipeline, err = Pipeline(ctx, nc, js, DemoTenant, assets, size); err != nil {
		return PipelineFigures{}, err
	}
	f.KMSCalls = int64(d.KMS.Stats().Calls - calls)
	return f, nil
}

// benchConn is the load generator's connection to d: the bench identity's
// (Dev.Connect: no credentials when authentication is off), with room for
// the async publishes of a whole run.
func benchConn(d *Dev) (*nats.Conn, jetstream.JetStream, error) {
	nc, _, err := d.Connect(IdentityBench)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// PipelineBench measures the pipeline of a running dev stack against raw
// JetStream on the same server (MeasurePipeline).
func PipelineBench(ctx context.Context, d *Dev, assets, size int) ([]BenchResult, error) {
	f, err := MeasurePipeline(ctx, d, assets, size)
	if err != nil {
		return nil, err
	}
	return []BenchResult{
		{Name: "pipeline inline assets", Unit: "assets/s", Value: f.Pipeline, Baseline: "raw JetStream pub+consume, msgs/s", Raw: f.Raw, Ratio: f.Pipeline / f.Raw, Target: ">= 0.2"},
		{Name: "KMS calls per asset", Unit: "calls", Value: float64(f.KMSCalls) / float64(assets), Target: "<= 0.01"},
	}, nil
}

// benchSettle is the pause between two measurements of SecurityBench:
// the workers of the stack measured last still project its outcomes (the
// re-encryptor's ledger, the notifier), work that would otherwise land on
// the next measurement.
const benchSettle = time.Second

// BenchStack is one stack of SecurityBench: a running dev stack and what
// it runs with ("auth on", "auth on, TLS on", "auth off").
type BenchStack struct {
	Label string
	Dev   *Dev
}

// SecurityBench measures the pipeline on stacks of the same run that
// differ in their security settings, each against raw JetStream on its
// own server: rounds rounds of assets assets per stack, the order
// alternating (first to last, then last to first, ...) so a drift of the
// machine falls on all. The last stack is the baseline (no
// authentication, no TLS). Figures are the means over the rounds; the names carry
// each stack's range. For every other stack a row gives its pipeline
// assets/s over the baseline's — the cost of its settings (target: at
// least 0.9) — with the range and median of the ratio of each round's two
// measurements, and the same for raw JetStream.
func SecurityBench(ctx context.Context, stacks []BenchStack, assets, size, rounds int) ([]BenchResult, error) {
	if len(stacks) < 2 {
		return nil, errors.New("SecurityBench: want a stack to measure and a baseline")
	}
	rounds = max(rounds, 1)
	n := len(stacks)
	figs := make([][]PipelineFigures, n)
	for r := range rounds {
		for k := range n {
			i := k
			if r%2 == 1 {
				i = n - 1 - k
			}
			if r > 0 || k > 0 {
				sleepCtx(ctx, benchSettle)
			}
			f, err := MeasurePipeline(ctx, stacks[i].Dev, assets, size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", stacks[i].Label, err)
			}
			figs[i] = append(figs[i], f)
		}
	}
	type summary struct {
		pipe, raw           float64
		pipeRange, rawRange string
		calls               int64
	}
	sums := make([]summary, n)
	for i, fs := range figs {
		var pipes, raws []float64
		for _, f := range fs {
			pipes, raws = append(pipes, f.Pipeline), append(raws, f.Raw)
			sums[i].calls += f.KMSCalls
		}
		sums[i].pipe, sums[i].pipeRange = meanRange(pipes)
		sums[i].raw, sums[i].rawRange = meanRange(raws)
	}
	var out []BenchResult
	for i, st := range stacks {
		s := sums[i]
		name := "pipeline inline assets (" + st.Label + ")"
		if rounds > 1 {
			name = fmt.Sprintf("pipeline inline assets (%s; %d rounds %s, raw %s)", st.Label, rounds, s.pipeRange, s.rawRange)
		}
		out = append(out, BenchResult{Name: name, Unit: "assets/s", Value: s.pipe, Baseline: "raw JetStream pub+consume, same server, msgs/s", Raw: s.raw, Ratio: s.pipe / s.raw, Target: ">= 0.2"})
	}
	base, bs := stacks[n-1], sums[n-1]
	for i, st := range stacks[:n-1] {
		s := sums[i]
		out = append(out,
			BenchResult{Name: fmt.Sprintf("pipeline %s / %s%s", st.Label, base.Label, perRound(figs[i], figs[n-1], func(f PipelineFigures) float64 { return f.Pipeline })),
				Unit: "assets/s", Value: s.pipe, Baseline: "pipeline " + base.Label + ", assets/s", Raw: bs.pipe, Ratio: s.pipe / bs.pipe, Target: ">= 0.9"},
			BenchResult{Name: fmt.Sprintf("raw JetStream %s / %s%s", st.Label, base.Label, perRound(figs[i], figs[n-1], func(f PipelineFigures) float64 { return f.Raw })),
				Unit: "msgs/s", Value: s.raw, Baseline: "raw JetStream " + base.Label + ", msgs/s", Raw: bs.raw, Ratio: s.raw / bs.raw},
		)
	}
	return append(out, BenchResult{Name: "KMS calls per asset (" + stacks[0].Label + ")", Unit: "calls", Value: float64(sums[0].calls) / float64(rounds*assets), Target: "<= 0.01"}), nil
}

// perRound is the range and median of the ratio of a's figure to b's in
// each round (the two measured one after the other: a slow moment of a
// shared machine moves both), "" for a single round.
func perRound(a, b []PipelineFigures, fig func(PipelineFigures) float64) string {
	if len(a) < 2 {
		return ""
	}
	qs := make([]float64, len(a))
	for r := range a {
		qs[r] = fig(a[r]) / fig(b[r])
	}
	slices.Sort(qs)
	m := len(qs) / 2
	median := qs[m]
	if len(qs)%2 == 0 {
		median = (qs[m-1] + qs[m]) / 2
	}
	return fmt.Sprintf(" (per round %.2f-%.2f, median %.2f)", qs[0], qs[len(qs)-1], median)
}

// meanRange is the mean of xs and their range ("16.1k-17.0k").
func meanRange(xs []float64) (float64, string) {
	if len(xs) == 0 {
		return 0, ""
	}
	lo, hi, total := xs[0], xs[0], 0.0
	for _, x := range xs {
		lo, hi, total = min(lo, x), max(hi, x), total+x
	}
	return total / float64(len(xs)), fmt.Sprintf("%.1fk-%.1fk", lo/1000, hi/1000)
}

// EnvelopeBench measures envelope encryption against raw AES-256-GCM Seal of
// the same bytes on one core, and the peak heap while encrypting (measured
// with the default GOGC, so it is live memory, not deferred garbage).
func EnvelopeBench(envBytes int) []BenchResult {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	var out []BenchResult
	rawSeal := RawSeal(envBytes)
	for _, conc := range []int{1, 2} {
		rate, peak := EnvelopeSeal(envBytes, conc)
		target := ">= 0.8"
		if conc > 1 {
			target = "> 1.0"
		}
		out = append(out, BenchResult{Name: fmt.Sprintf("envelope encrypt, %d core(s)", conc), Unit: "MiB/s", Value: rate / (1 << 20),
			Baseline: "raw AES-256-GCM Seal, 1 core, MiB/s", Raw: rawSeal / (1 << 20), Ratio: rate / rawSeal, Target: target})
		out = append(out, BenchResult{Name: fmt.Sprintf("envelope peak heap, %d core(s)", conc), Unit: "MiB", Value: float64(peak) / (1 << 20), Target: "< 32"})
	}
	return out
}

// benchCompared are the stacks `keyward bench` measures the pipeline of
// its authenticated stack against, each started in the same run; the last
// is the baseline of every ratio.
var benchCompared = []struct {
	label string
	o     DevOptions
}{
	{"auth on, TLS on", DevOptions{TLS: true}},
	{"auth off", DevOptions{NoAuth: true}},
}

// compareSecurity starts the stacks of benchCompared next to d ("auth
// on"), runs SecurityBench over all of them and stops the ones it started.
func compareSecurity(ctx context.Context, d *Dev, assets, size, rounds int) ([]BenchResult, error) {
	stacks := []BenchStack{{Label: "auth on", Dev: d}}
	defer func() {
		for _, s := range stacks[1:] {
			s.Dev.Stop()
		}
	}()
	for _, c := range benchCompared {
		sd, err := benchStack(ctx, c.o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.label, err)
		}
		stacks = append(stacks, BenchStack{Label: c.label, Dev: sd})
	}
	return SecurityBench(ctx, stacks, assets, size, rounds)
}

// benchStack starts a dev stack for `keyward bench` in a temporary
// directory on free ports (o's DataDir and Port are set here); the
// directory is removed when the stack stops.
func benchStack(ctx context.Context, o DevOptions) (*Dev, error) {
	dir, err := os.MkdirTemp("", "keyward-bench")
	if err != nil {
		return nil, err
	}
	o.DataDir, o.Port = dir, 0
	d, err := StartDev(ctx, o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d.closers = append(d.closers, func() { os.RemoveAll(dir) })
	return d, nil
}

// benchNoAuth: the failover and re-encryption benchmark stacks
// (benchfailover.go, benchreencrypt.go) run without authentication. Their
// scenarios act as several roles at once, which no least-privilege
// identity may: the failover traffic subscribes to key statuses and
// breaker events on a connection of its own and creates its own
// round-trip stream, and writes tenants on Dev.NC; the re-encryption
// scenarios write key statuses (KW_KEY_STATUS, the key-health-monitor's
// alone) on Dev.NC and create their own Object Store bucket for the raw
// baseline. `keyward bench` itself (pipeline and provider runs) runs with
// authentication on, next to a stack with authentication and TLS and an
// unauthenticated one for the comparison (SecurityBench), as does the go
// test -bench form (bench_test.go).
const benchNoAuth = true
