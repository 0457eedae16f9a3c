package phonepolicy_test

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy/phonebench"
)

// benchTenants is how many tenants BenchmarkAdmission loads in KW_TENANTS.
const benchTenants = 10000

// BenchmarkAdmission measures a call admission over NATS request-reply
// (CallAdmission on keyward.phone.admit.<tenant> until its CallDecision)
// with 10,000 tenants loaded, next to a bare NATS request-reply echo (a
// plain subscriber responding with the request) on the same embedded
// server, same bodies, in the same run: one client at a time (sequential)
// and 8 clients (parallel, 4 per GOMAXPROCS on 2 cores). Each reports
// p50-µs, p99-µs and p999-µs besides ns/op; run it with a count, e.g.
//
//	go test -run=^$ -bench=Admission -benchtime=20000x ./phonepolicy
//
// The worker and the echo have their own connections, the client a third.
func BenchmarkAdmission(b *testing.B) {
	env := natstest.Start(b)
	ctx := context.Background()
	ids, err := phonebench.Load(ctx, env.JS, b.TempDir(), benchTenants)
	if err != nil {
		b.Fatal(err)
	}

	wnc, wjs := env.Connect(b)
	wctx, stop := context.WithCancel(ctx)
	w, err := phonepolicy.New(wctx, phonepolicy.Deps{NC: wnc, JS: wjs}, phonepolicy.Options{AllowLocalCustomerKeys: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		stop()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	b.Cleanup(func() { stop(); <-done })
	enc, _ := env.Connect(b)
	if _, err := enc.QueueSubscribe(phonebench.EchoPrefix+"*", "bench-echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		b.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); w.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("phone-policy not ready: %v", w.Ready())
		}
	}
	cnc, _ := env.Connect(b)
	reqs := phonebench.Requests(ids, 1<<16, 1)
	// Warm up both paths.
	benchRun(b, cnc, reqs[:1000], 1, true)
	benchRun(b, cnc, reqs[:1000], 1, false)

	for _, v := range []struct {
		name    string
		clients int
	}{{"sequential", 1}, {"parallel", 8}} {
		for _, path := range []struct {
			name string
			echo bool
		}{{"echo", true}, {"admission", false}} {
			b.Run(path.name+"/"+v.name, func(b *testing.B) {
				batch := make([]phonebench.Request, b.N)
				for i := range batch {
					batch[i] = reqs[i%len(reqs)]
				}
				b.ResetTimer()
				ds := benchRun(b, cnc, batch, v.clients, path.echo)
				b.StopTimer()
				slices.Sort(ds)
				q := func(f float64) float64 {
					return float64(ds[max(0, int(math.Ceil(f*float64(len(ds))))-1)]) / float64(time.Microsecond)
				}
				b.ReportMetric(q(0.5), "p50-µs")
				b.ReportMetric(q(0.99), "p99-µs")
				b.ReportMetric(q(0.999), "p999-µs")
			})
		}
	}
}

// benchRun runs reqs through phonebench.Run (each reply checked) and
// returns the latencies.
func benchRun(b *testing.B, nc *nats.Conn, reqs []phonebench.Request, clients int, echo bool) []time.Duration {
	b.Helper()
	ds, _, err := phonebench.Run(context.Background(), nc, reqs, clients, echo, nil)
	if err != nil {
		b.Fatal(err)
	}
	return ds
}
