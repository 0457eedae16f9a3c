package phonepolicy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
)

// benchTenants is how many tenants BenchmarkAdmission loads in KW_TENANTS.
const benchTenants = 10000

// benchEchoPrefix is the subject prefix of the bare request-reply echo.
const benchEchoPrefix = "keyward.bench.echo."

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
	ids := loadBenchTenants(b, env.JS, benchTenants)

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
	if _, err := enc.QueueSubscribe(benchEchoPrefix+"*", "bench-echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
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
	reqs := benchRequests(ids, 1<<16)
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
				batch := make([]benchRequest, b.N)
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

type benchRequest struct {
	subject, echoSubject string
	body                 []byte
}

// benchRun sends reqs from clients goroutines, each waiting for its reply
// before its next request, and returns each request's latency. Replies are
// checked: an echo returns the body, an admission is not an error.
func benchRun(b *testing.B, nc *nats.Conn, reqs []benchRequest, clients int, echo bool) []time.Duration {
	b.Helper()
	ds := make([]time.Duration, len(reqs))
	replies := make([][]byte, len(reqs))
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			for i := c; i < len(reqs); i += clients {
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
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	for i, r := range replies {
		if echo {
			if !bytes.Equal(r, reqs[i].body) {
				b.Fatalf("echo answered %q to %q", r, reqs[i].body)
			}
			continue
		}
		var d events.CallDecision
		if err := json.Unmarshal(r, &d); err != nil || d.Error != nil || !d.Decision.Valid() {
			b.Fatalf("admission %s answered %s (%v)", reqs[i].body, r, err)
		}
	}
	return ds
}

// loadBenchTenants creates n tenants in KW_TENANTS, 8 writes at a time,
// and the statuses of their keys in KW_KEY_STATUS:
//
//	1 in 10   not enrolled (no key)                       → record, platform key
//	other 9   a local key file of its own, enrolled an hour ago, and
//	  services: half "*", a quarter phone_recording and team_chat, a quarter
//	            team_chat only (→ service_not_selected)
//	  users:    1 in 5 license u-0..u-4 only (u-5..u-9 → user_not_licensed)
//	  fallback: on for half; drop_calls on for 1 in 3 (of every tenant)
//	  status:   1 in 7 unavailable, 1 in 11 revoked, the rest available
//
// (the mix of keyward bench phone).
func loadBenchTenants(b *testing.B, js jetstream.JetStream, n int) []string {
	b.Helper()
	ctx := context.Background()
	store, err := tenant.OpenStore(ctx, js, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.BucketKeyStatus)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ids := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = fmt.Sprintf("phone-%05d", i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = loadBenchTenant(ctx, store, kv, filepath.Join(dir, ids[i]+".key"), ids[i], i)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

func loadBenchTenant(ctx context.Context, store *tenant.Store, kv jetstream.KeyValue, keyPath, id string, i int) error {
	c := &tenant.Config{TenantID: id, Services: []string{tenant.All}, LicensedUsers: []string{tenant.All}}
	c.Phone.DropCalls = i%3 == 0
	if i%10 == 9 {
		_, err := store.Create(ctx, c)
		return err
	}
	if err := localkms.CreateKeyFile(keyPath); err != nil {
		return err
	}
	u, err := kms.ParseKeyURI("localkms://" + keyPath)
	if err != nil {
		return err
	}
	key := u.String()
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
	if _, err := store.Create(ctx, c); err != nil {
		return err
	}
	return keystatus.Put(ctx, kv, keystatus.Record{TenantID: id, KeyURI: key, Status: st, Reason: "bench", Since: time.Now().UTC()})
}

// benchRequests prepares n admissions of random tenants of ids (seeded):
// users u-0..u-9, both directions, 9 in 10 asking for a recording.
func benchRequests(ids []string, n int) []benchRequest {
	r := rand.New(rand.NewPCG(1, 0))
	out := make([]benchRequest, n)
	for i := range out {
		id := ids[r.IntN(len(ids))]
		a := events.CallAdmission{CallID: "bench-" + strconv.Itoa(i), TenantID: id, UserID: "u-" + strconv.Itoa(r.IntN(10)),
			Direction: events.DirectionInbound, RecordingRequested: r.IntN(10) != 0}
		if r.IntN(2) == 0 {
			a.Direction = events.DirectionOutbound
		}
		body, _ := json.Marshal(a)
		out[i] = benchRequest{subject: events.SubjectPhoneAdmit(id), echoSubject: benchEchoPrefix + id, body: body}
	}
	return out
}
