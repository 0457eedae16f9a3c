package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
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

// phoneBenchRequest is one prepared request: the admission's subject and
// body, and the echo's subject (same length) for the same body.
type phoneBenchRequest struct {
	subject, echoSubject string
	body                 []byte
}

// phoneBenchEchoPrefix: the echo answers keyward.bench.echo.<tenant> (no
// stream captures it: core NATS only, like the admissions).
const phoneBenchEchoPrefix = "keyward.bench.echo."

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
	ids, err := LoadPhoneBenchTenants(ctx, js, filepath.Join(dir, "keys"), o.Tenants)
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
	if _, err := enc.QueueSubscribe(phoneBenchEchoPrefix+"*", "keyward-bench-echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
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

	reqs := PhoneBenchRequests(ids, o.Requests, 1)
	// Warm up both paths.
	if _, _, err := phoneBenchRun(ctx, nc, reqs[:min(len(reqs), 1000)], 1, true, nil); err != nil {
		return nil, err
	}
	if _, _, err := phoneBenchRun(ctx, nc, reqs[:min(len(reqs), 1000)], 1, false, nil); err != nil {
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
			ds, busy, err := phoneBenchRun(ctx, nc, chunk, v.clients, true, nil)
			if err != nil {
				return nil, err
			}
			echo, echoBusy = append(echo, ds...), echoBusy+busy
			var decisions map[string]int
			if v.clients == 1 {
				decisions = res.Decisions
			}
			ds, busy, err = phoneBenchRun(ctx, nc, chunk, v.clients, false, decisions)
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

// phoneBenchRun sends reqs (to the echo, or as admissions) from clients
// goroutines, each waiting for its reply before its next request, and
// returns each request's latency and the time the run took. Replies are
// checked after the clock stopped: an echo must return the body, an
// admission must not be an error reply; decisions (when not nil) counts
// the admissions by decision and reason.
func phoneBenchRun(ctx context.Context, nc *nats.Conn, reqs []phoneBenchRequest, clients int, echo bool, decisions map[string]int) ([]time.Duration, time.Duration, error) {
	ds := make([]time.Duration, len(reqs))
	replies := make([][]byte, len(reqs))
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			for i := c; i < len(reqs) && ctx.Err() == nil; i += clients {
				subject := reqs[i].subject
				if echo {
					subject = reqs[i].echoSubject
				}
				t0 := time.Now()
				m, err := nc.Request(subject, reqs[i].body, 2*time.Second)
				ds[i] = time.Since(t0)
				if err != nil {
					errs[c] = fmt.Errorf("request on %s: %w", subject, err)
					return
				}
				replies[i] = m.Data
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, 0, err
	}
	busy := time.Since(start)
	for i, r := range replies {
		if echo {
			if !bytes.Equal(r, reqs[i].body) {
				return nil, 0, fmt.Errorf("the echo answered %q to %q", r, reqs[i].body)
			}
			continue
		}
		var d events.CallDecision
		if err := json.Unmarshal(r, &d); err != nil {
			return nil, 0, fmt.Errorf("admission reply %q: %w", r, err)
		}
		if d.Error != nil {
			return nil, 0, fmt.Errorf("admission %s refused: %s: %s", reqs[i].body, d.Error.Code, d.Error.Message)
		}
		if decisions != nil {
			decisions[string(d.Decision)+" ("+d.Reason+")"]++
		}
	}
	return ds, busy, nil
}

// PhoneBenchTenantID is the id of the i-th benchmark tenant.
func PhoneBenchTenantID(i int) string { return fmt.Sprintf("phone-%05d", i) }

// PhoneBenchTenant is the i-th tenant of the mix (key is its local key URI,
// empty for a tenant that is not enrolled) and the status of its key:
//
//	1 in 10   not enrolled (no key)                       → record, platform key
//	other 9   a local key, enrolled an hour ago, and
//	  services: half "*", a quarter phone_recording and team_chat, a quarter
//	            team_chat only (→ record, platform key: service_not_selected)
//	  users:    1 in 5 license u-0..u-4 only (u-5..u-9 → user_not_licensed)
//	  fallback: on for half; drop_calls on for 1 in 3 (of every tenant)
//	  status:   1 in 7 unavailable, 1 in 11 revoked, the rest available
func PhoneBenchTenant(i int, key string) (*tenant.Config, events.KeyStatus) {
	id := PhoneBenchTenantID(i)
	c := &tenant.Config{TenantID: id, DisplayName: "keyward bench phone", Services: []string{tenant.All}, LicensedUsers: []string{tenant.All}}
	c.Phone.DropCalls = i%3 == 0
	if key == "" {
		return c, ""
	}
	c.Keys = []tenant.Key{{URI: key, Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC().Add(-time.Hour)}}
	c.Fallback = i%4 < 2
	switch i % 4 {
	case 1:
		c.Services = []string{phonepolicy.PhoneService, "team_chat"}
	case 3:
		c.Services = []string{"team_chat"}
	}
	if i%5 == 0 {
		c.LicensedUsers = []string{"u-0", "u-1", "u-2", "u-3", "u-4"}
	}
	st := events.KeyStatusAvailable
	switch {
	case i%11 == 0:
		st = events.KeyStatusRevoked
	case i%7 == 0:
		st = events.KeyStatusUnavailable
	}
	return c, st
}

// phoneBenchEnrolled reports whether tenant i of the mix has a key.
func phoneBenchEnrolled(i int) bool { return i%10 != 9 }

// LoadPhoneBenchTenants creates n tenants of the mix (PhoneBenchTenant) in
// KW_TENANTS, each enrolled one with its own local key file in keyDir, and
// their key statuses in KW_KEY_STATUS, 8 writes at a time. It returns the
// tenant ids.
func LoadPhoneBenchTenants(ctx context.Context, js jetstream.JetStream, keyDir string, n int) ([]string, error) {
	store, err := tenant.OpenStore(ctx, js, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, err
	}
	ids := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = PhoneBenchTenantID(i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = loadPhoneBenchTenant(ctx, store, kv, keyDir, i)
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

func loadPhoneBenchTenant(ctx context.Context, store *tenant.Store, kv jetstream.KeyValue, keyDir string, i int) error {
	key := ""
	if phoneBenchEnrolled(i) {
		path := filepath.Join(keyDir, PhoneBenchTenantID(i)+".key")
		if err := localkms.CreateKeyFile(path); err != nil {
			return err
		}
		u, err := kms.ParseKeyURI("localkms://" + path)
		if err != nil {
			return err
		}
		key = u.String()
	}
	cfg, st := PhoneBenchTenant(i, key)
	if _, err := store.Create(ctx, cfg); err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	return keystatus.Put(ctx, kv, keystatus.Record{TenantID: cfg.TenantID, KeyURI: key, Status: st, Reason: "bench", Since: time.Now().UTC()})
}

// PhoneBenchRequests prepares n admissions of random tenants of ids
// (seeded, so runs compare): users u-0..u-9, both directions, 9 in 10
// asking for a recording.
func PhoneBenchRequests(ids []string, n int, seed uint64) []phoneBenchRequest {
	r := rand.New(rand.NewPCG(seed, 0))
	out := make([]phoneBenchRequest, n)
	for i := range out {
		id := ids[r.IntN(len(ids))]
		a := events.CallAdmission{CallID: "bench-" + strconv.Itoa(i), TenantID: id, UserID: "u-" + strconv.Itoa(r.IntN(10)),
			Direction: events.DirectionInbound, RecordingRequested: r.IntN(10) != 0}
		if r.IntN(2) == 0 {
			a.Direction = events.DirectionOutbound
		}
		body, _ := json.Marshal(a)
		out[i] = phoneBenchRequest{subject: events.SubjectPhoneAdmit(id), echoSubject: phoneBenchEchoPrefix + id, body: body}
	}
	return out
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
