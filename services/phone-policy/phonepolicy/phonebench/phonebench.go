// Package phonebench is the workload of the phone admission benchmarks —
// `keyward bench phone` and phonepolicy's BenchmarkAdmission — so both load
// the same tenant mix and send the same requests: tenants in KW_TENANTS with
// their key statuses, admission requests of random tenants, and a client
// loop timing each request against the worker or a bare echo.
package phonebench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/phone-policy/phonepolicy"
)

// Request is one admission of the workload: its subject, the echo's
// subject for the same tenant, and the body.
type Request struct {
	Subject, EchoSubject string
	Body                 []byte
}

// EchoPrefix: the bare echo answers keyward.bench.echo.<tenant> (no stream
// captures it: core NATS only, like the admissions).
const EchoPrefix = "keyward.bench.echo."

// Run sends reqs (to the echo, or as admissions) from clients
// goroutines, each waiting for its reply before its next request, and
// returns each request's latency and the time the run took. Replies are
// checked after the clock stopped: an echo must return the body, an
// admission must not be an error reply; decisions (when not nil) counts
// the admissions by decision and reason.
func Run(ctx context.Context, nc *nats.Conn, reqs []Request, clients int, echo bool, decisions map[string]int) ([]time.Duration, time.Duration, error) {
	ds := make([]time.Duration, len(reqs))
	replies := make([][]byte, len(reqs))
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			for i := c; i < len(reqs) && ctx.Err() == nil; i += clients {
				subject := reqs[i].Subject
				if echo {
					subject = reqs[i].EchoSubject
				}
				t0 := time.Now()
				m, err := nc.Request(subject, reqs[i].Body, 2*time.Second)
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
			if !bytes.Equal(r, reqs[i].Body) {
				return nil, 0, fmt.Errorf("the echo answered %q to %q", r, reqs[i].Body)
			}
			continue
		}
		var d events.CallDecision
		if err := json.Unmarshal(r, &d); err != nil {
			return nil, 0, fmt.Errorf("admission reply %q: %w", r, err)
		}
		if d.Error != nil {
			return nil, 0, fmt.Errorf("admission %s refused: %s: %s", reqs[i].Body, d.Error.Code, d.Error.Message)
		}
		if decisions != nil {
			decisions[string(d.Decision)+" ("+d.Reason+")"]++
		}
	}
	return ds, busy, nil
}

// TenantID is the id of the i-th benchmark tenant.
func TenantID(i int) string { return fmt.Sprintf("phone-%05d", i) }

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
func Tenant(i int, key string) (*tenant.Config, events.KeyStatus) {
	id := TenantID(i)
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

// enrolled reports whether tenant i of the mix has a key.
func enrolled(i int) bool { return i%10 != 9 }

// Load creates n tenants of the mix (Tenant) in
// KW_TENANTS, each enrolled one with its own local key file in keyDir, and
// their key statuses in KW_KEY_STATUS, 8 writes at a time. It returns the
// tenant ids.
func Load(ctx context.Context, js jetstream.JetStream, keyDir string, n int) ([]string, error) {
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
		ids[i] = TenantID(i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = loadTenant(ctx, store, kv, keyDir, i)
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

func loadTenant(ctx context.Context, store *tenant.Store, kv jetstream.KeyValue, keyDir string, i int) error {
	key := ""
	if enrolled(i) {
		path := filepath.Join(keyDir, TenantID(i)+".key")
		if err := localkms.CreateKeyFile(path); err != nil {
			return err
		}
		u, err := kms.ParseKeyURI("localkms://" + path)
		if err != nil {
			return err
		}
		key = u.String()
	}
	cfg, st := Tenant(i, key)
	if _, err := store.Create(ctx, cfg); err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	return keystatus.Put(ctx, kv, keystatus.Record{TenantID: cfg.TenantID, KeyURI: key, Status: st, Reason: "bench", Since: time.Now().UTC()})
}

// Requests prepares n admissions of random tenants of ids
// (seeded, so runs compare): users u-0..u-9, both directions, 9 in 10
// asking for a recording.
func Requests(ids []string, n int, seed uint64) []Request {
	r := rand.New(rand.NewPCG(seed, 0))
	out := make([]Request, n)
	for i := range out {
		id := ids[r.IntN(len(ids))]
		a := events.CallAdmission{CallID: "bench-" + strconv.Itoa(i), TenantID: id, UserID: "u-" + strconv.Itoa(r.IntN(10)),
			Direction: events.DirectionInbound, RecordingRequested: r.IntN(10) != 0}
		if r.IntN(2) == 0 {
			a.Direction = events.DirectionOutbound
		}
		body, _ := json.Marshal(a)
		out[i] = Request{Subject: events.SubjectPhoneAdmit(id), EchoSubject: EchoPrefix + id, Body: body}
	}
	return out
}
