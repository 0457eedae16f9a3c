package cli

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/natsembed"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy/phonebench"
)

// keyward bench phone: call admission latency over NATS request-reply
// (keyward.phone.admit.<tenant>, answered by the phone-policy worker) next
// to a bare NATS request-reply echo on the same embedded server, in the
// same run.

// PhoneBenchOptions tune PhoneBench.
type PhoneBenchOptions struct {
	// Tenants loaded in KW_TENANTS (default 10,000).
	Tenants int
	// Requests measured per variant and path (default 20,000).
	Requests int
	// Clients of the parallel variant, each doing requests one after the
	// other (default 8).
	Clients int
	// Rounds: the requests are measured in this many alternating rounds
	// of echo then admission, so a slower moment of a shared machine
	// weighs on both (default 10).
	Rounds int
}

func (o PhoneBenchOptions) withDefaults() PhoneBenchOptions {
	if o.Tenants <= 0 {
		o.Tenants = 10000
	}
	if o.Requests <= 0 {
		o.Requests = 20000
	}
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	return o
}

// PhoneLatency is the latency distribution of one path and the rate it
// was served at.
type PhoneLatency struct {
	N      int           `json:"n"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
	P999   time.Duration `json:"p999_ns"`
	Max    time.Duration `json:"max_ns"`
	PerSec float64       `json:"per_second"`
}

// NewPhoneLatency summarises request latencies measured over busy time
// (the rate is len(ds)/busy).
func NewPhoneLatency(ds []time.Duration, busy time.Duration) PhoneLatency {
	if len(ds) == 0 {
		return PhoneLatency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[max(0, int(math.Ceil(f*float64(len(s))))-1)] }
	return PhoneLatency{N: len(s), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: s[len(s)-1], PerSec: float64(len(s)) / busy.Seconds()}
}

// PhoneBenchRow is one variant: the admission next to the echo.
type PhoneBenchRow struct {
	Variant   string       `json:"variant"`
	Clients   int          `json:"clients"`
	Admission PhoneLatency `json:"admission"`
	Echo      PhoneLatency `json:"echo"`
}

// PhoneBenchResult is what PhoneBench measured.
type PhoneBenchResult struct {
	Tenants  int             `json:"tenants"`
	Requests int             `json:"requests"`
	Load     time.Duration   `json:"load_ns"`
	Rows     []PhoneBenchRow `json:"rows"`
	// Decisions counts the measured admissions by decision and reason.
	Decisions map[string]int `json:"decisions"`
}

// phonebench.Request is one prepared request: the admission's subject and
// body, and the echo's subject (same length) for the same body.

// PhoneBench starts an embedded NATS server in a temporary directory,
// loads o.Tenants tenants (PhoneBenchTenant) and their key statuses, runs
// the phone-policy worker in-process on its own connection and a bare echo
// responder on another, and measures, from a third connection, o.Requests
// admissions and as many echoes of the same bodies: one client at a time,
// then o.Clients clients at once.
func PhoneBench(ctx context.Context, o PhoneBenchOptions) (*PhoneBenchResult, error) {
	o = o.withDefaults()
	dir, err := os.MkdirTemp("", "keyward-bench-phone")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "nats"), ServerName: "keyward-bench-phone"})
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	connect := func(name string) (*nats.Conn, jetstream.JetStream, error) {
		nc, err := nats.Connect(srv.URL(), nats.Name(name))
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return nc, js, nil
	}
	nc, js, err := connect("keyward-bench-phone-client")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if err := events.Provision(ctx, js, events.ProvisionOptions{Replicas: 1}); err != nil {
		return nil, err
	}
	res := &PhoneBenchResult{Tenants: o.Tenants, Requests: o.Requests, Decisions: map[string]int{}}
	start := time.Now()
	ids, err := phonebench.Load(ctx, js, filepath.Join(dir, "keys"), o.Tenants)
	if err != nil {
		return nil, err
	}
	res.Load = time.Since(start)

	// The worker, on its own connection as its own process would be.
	wnc, wjs, err := connect("keyward-bench-phone-policy")
	if err != nil {
		return nil, err
	}
	defer wnc.Close()
	wctx, stop := context.WithCancel(ctx)
	w, err := phonepolicy.New(wctx, phonepolicy.Deps{NC: wnc, JS: wjs}, phonepolicy.Options{AllowLocalCustomerKeys: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		stop()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	// The echo, on another connection.
	enc, err := nats.Connect(srv.URL(), nats.Name("keyward-bench-phone-echo"))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	if _, err := enc.QueueSubscribe(phonebench.EchoPrefix+"*", "keyward-bench-echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		return nil, err
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(time.Minute); w.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("phone-policy did not load %d tenants within a minute: %v", o.Tenants, w.Ready())
		}
	}

	reqs := phonebench.Requests(ids, o.Requests, 1)
	// Warm up both paths.
	if _, _, err := phonebench.Run(ctx, nc, reqs[:min(len(reqs), 1000)], 1, true, nil); err != nil {
		return nil, err
	}
	if _, _, err := phonebench.Run(ctx, nc, reqs[:min(len(reqs), 1000)], 1, false, nil); err != nil {
		return nil, err
	}
	for _, v := range []struct {
		name    string
		clients int
	}{{"sequential", 1}, {"parallel", o.Clients}} {
		var echo, adm []time.Duration
		var echoBusy, admBusy time.Duration
		per := (len(reqs) + o.Rounds - 1) / o.Rounds
		for i := 0; i < len(reqs); i += per {
			chunk := reqs[i:min(i+per, len(reqs))]
			ds, busy, err := phonebench.Run(ctx, nc, chunk, v.clients, true, nil)
			if err != nil {
				return nil, err
			}
			echo, echoBusy = append(echo, ds...), echoBusy+busy
			var decisions map[string]int
			if v.clients == 1 {
				decisions = res.Decisions
			}
			ds, busy, err = phonebench.Run(ctx, nc, chunk, v.clients, false, decisions)
			if err != nil {
				return nil, err
			}
			adm, admBusy = append(adm, ds...), admBusy+busy
		}
		res.Rows = append(res.Rows, PhoneBenchRow{Variant: v.name, Clients: v.clients,
			Admission: NewPhoneLatency(adm, admBusy), Echo: NewPhoneLatency(echo, echoBusy)})
	}
	return res, nil
}

func fmtUS(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + " µs"
}

// benchPhoneCmd is `keyward bench phone`.
func (a *App) benchPhoneCmd() *cobra.Command {
	var o PhoneBenchOptions
	cmd := &cobra.Command{
		Use:   "phone",
		Short: "Measure call admission latency (phone-policy over NATS request-reply) next to a bare NATS request-reply echo",
		Long: `phone starts an embedded NATS server (in a temporary directory, on a free
loopback port), loads --tenants tenants into KW_TENANTS — a mix of tenants not
enrolled and tenants enrolled with local keys whose statuses are in
KW_KEY_STATUS (available, unavailable, revoked), selecting phone_recording or
not, licensing every user or some, with and without fallback and drop_calls —
runs the phone-policy worker in-process on its own connection, and measures
from another connection, in the same run:

  - call admission: a CallAdmission request on keyward.phone.admit.<tenant>
    until its CallDecision reply;
  - a bare NATS request-reply echo: the same body to a plain subscriber
    (its own connection) that responds with the request;

first one request at a time (sequential), then --clients clients at once
(parallel), --requests of each, in alternating rounds so both paths see the
same moments of a shared machine. Target: admission p99 below 1 ms.
Figures go to docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Tenants <= 0 || o.Requests <= 0 || o.Clients <= 0 {
				return usagef("--tenants, --requests and --clients must be positive")
			}
			res, err := PhoneBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.Stdout, "keyward bench phone: %d tenants (loaded in %s), %d requests per path and variant, GOMAXPROCS=%d, %s/%s, %s\n\n",
				res.Tenants, fmtMS(res.Load), res.Requests, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "VARIANT\tCLIENTS\tADMISSION P50\tP99\tP999\tMAX\tREQ/S\tECHO P50\tP99\tP999\tMAX\tREQ/S\tP99 RATIO\tTARGET P99\t")
			for _, r := range res.Rows {
				ad, ec := r.Admission, r.Echo
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t%s\t\n", r.Variant, r.Clients,
					fmtUS(ad.P50), fmtUS(ad.P99), fmtUS(ad.P999), fmtUS(ad.Max), ad.PerSec,
					fmtUS(ec.P50), fmtUS(ec.P99), fmtUS(ec.P999), fmtUS(ec.Max), ec.PerSec,
					float64(ad.P99)/float64(ec.P99), phoneTarget(ad.P99))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.Stdout, "\nlatency: request sent → reply received, at the client. ECHO: a plain subscriber responding with the request, same server, same bodies.")
			fmt.Fprintln(a.Stdout, "decisions of the sequential admissions:")
			keys := make([]string, 0, len(res.Decisions))
			for k := range res.Decisions {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(a.Stdout, "  %6d  %s\n", res.Decisions[k], k)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Tenants, "tenants", 10000, "tenants loaded in KW_TENANTS")
	f.IntVar(&o.Requests, "requests", 20000, "requests per path (admission, echo) and variant (sequential, parallel)")
	f.IntVar(&o.Clients, "clients", 8, "concurrent clients of the parallel variant")
	return cmd
}

func phoneTarget(p99 time.Duration) string {
	if p99 < time.Millisecond {
		return "< 1 ms: met"
	}
	return "< 1 ms: MISSED"
}
