package cli_test

// System tests of issue 4 on the whole `keyward dev` stack: embedded NATS,
// the encryptor (with a circuit breaker per KMS endpoint), the key broker
// and the key-health-monitor, against the AWS KMS emulator driven through
// the real aws-sdk-go-v2. Faults are the emulator's (kmstest.Faults) and
// its admin operations (disable, schedule deletion).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/keyward/keyward/cmd/keyward/cli"
	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/envelope/cobblestone"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keybroker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/producer"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/pkg/vault"
	"github.com/keyward/keyward/services/encryptor/encryptor"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

// khStack is a dev stack with recorders of the key and breaker events and
// a manual metric reader.
type khStack struct {
	t      *testing.T
	d      *cli.Dev
	prod   *producer.Producer
	store  *tenant.Store
	vault  *vault.Store
	reader *sdkmetric.ManualReader

	mu       sync.Mutex
	statuses []events.KeyStatusChanged
	breakers []events.BreakerStateChanged
}

// khFastMonitor: probes every 200 ms while a key is away, every second
// while healthy, two agreeing results make a transition.
var khFastMonitor = monitor.Options{
	HealthyInterval:       time.Second,
	UnhealthyInterval:     200 * time.Millisecond,
	Hysteresis:            2,
	ObservationProbeDelay: 50 * time.Millisecond,
}

// khFastBreaker: the default trip rules, but trial calls after 1 s.
var khFastBreaker = breaker.Settings{OpenTimeout: time.Second}

func khStart(t *testing.T, o cli.DevOptions) *khStack {
	t.Helper()
	o.DataDir, o.Port = filepath.Join(t.TempDir(), "data"), 0
	s := &khStack{t: t, reader: sdkmetric.NewManualReader()}
	o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	ctx := context.Background()
	d, err := cli.StartDev(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	registerDev(t, d)
	s.d = d
	obsNC, _ := observe(t, d)
	for subject, record := range map[string]func(*nats.Msg){
		events.SubjectKeyStatusAll: func(m *nats.Msg) {
			ev, err := events.DecodeKeyStatusChanged(m.Data)
			if err != nil {
				t.Errorf("KeyStatusChanged on %s: %v", m.Subject, err)
				return
			}
			s.mu.Lock()
			s.statuses = append(s.statuses, *ev)
			s.mu.Unlock()
		},
		events.SubjectBreakerAll: func(m *nats.Msg) {
			ev, err := events.DecodeBreakerStateChanged(m.Data)
			if err != nil {
				t.Errorf("BreakerStateChanged on %s: %v", m.Subject, err)
				return
			}
			s.mu.Lock()
			s.breakers = append(s.breakers, *ev)
			s.mu.Unlock()
		},
	} {
		sub, err := obsNC.Subscribe(subject, record)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	prodNC, prodJS := as(t, d, cli.IdentityProducer)
	if s.prod, err = producer.New(ctx, prodNC, prodJS); err != nil {
		t.Fatal(err)
	}
	_, adminJS := as(t, d, "admin")
	if s.store, err = tenant.OpenStore(ctx, adminJS); err != nil {
		t.Fatal(err)
	}
	if s.vault, err = vault.Open(ctx, d.JS, events.BucketVault); err != nil {
		t.Fatal(err)
	}
	return s
}

// khTenant enrolls a tenant with a fresh key in the AWS emulator and waits
// until the encryptor stores its assets under that key and the monitor
// has found it available.
func (s *khStack) tenant(id string, fallback bool, on tenant.FallbackOn) kms.KeyURI {
	s.t.Helper()
	key, err := s.d.AWS.CreateKey(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	s.enroll(id, key, fallback, on)
	// A new key is confirmed at the healthy pace (3 probes, a minute
	// apart, by default); probe it now until the monitor has a status.
	for deadline := time.Now().Add(15 * time.Second); ; {
		if st, ok := s.d.Monitor.Status(id, key.String()); ok && st.Status == events.KeyStatusAvailable {
			return key
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("monitor: the key of %s is not available", id)
		}
		s.d.Monitor.ProbeNow(id, key.String())
		time.Sleep(50 * time.Millisecond)
	}
}

// enroll creates a tenant with key as its primary and waits until the
// encryptor stores its assets under that key.
func (s *khStack) enroll(id string, key kms.KeyURI, fallback bool, on tenant.FallbackOn) {
	s.t.Helper()
	_, err := s.store.Create(context.Background(), &tenant.Config{
		TenantID:      id,
		Keys:          []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC().Add(-time.Minute)}},
		Services:      []string{tenant.All},
		LicensedUsers: []string{tenant.All},
		Fallback:      fallback,
		FallbackOn:    on,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		out := s.put(id, fmt.Sprintf("warmup-%d", i))
		if out.Encrypted != nil && out.Encrypted.Mode == events.ModeCustomer {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("tenant %s: assets are not encrypted under its key: %+v", id, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func khContent(tenantID, assetID string) []byte {
	return []byte("content of " + tenantID + "/" + assetID + strings.Repeat(".", 100))
}

// start publishes an asset.
func (s *khStack) start(tenantID, assetID string) *producer.Pending {
	s.t.Helper()
	body := khContent(tenantID, assetID)
	pd, err := s.prod.Put(context.Background(), producer.Asset{TenantID: tenantID, AssetID: assetID, Service: "recordings", OwnerUserID: "u1"}, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		s.t.Fatal(err)
	}
	return pd
}

func (s *khStack) wait(pd *producer.Pending, timeout time.Duration) *producer.Outcome {
	s.t.Helper()
	defer pd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := pd.Wait(ctx)
	if err != nil {
		s.t.Fatalf("asset %s/%s: %v", pd.Event.TenantID, pd.Event.AssetID, err)
	}
	return out
}

func (s *khStack) put(tenantID, assetID string) *producer.Outcome {
	s.t.Helper()
	return s.wait(s.start(tenantID, assetID), 20*time.Second)
}

// read opens an asset through the key broker and returns its plaintext, or
// the broker's refusal code.
func (s *khStack) read(tenantID, assetID string) ([]byte, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	readerNC, _ := as(s.t, s.d, cli.IdentityReader)
	c := keybroker.NewClient(readerNC, keybroker.WithRetries(0), keybroker.WithTimeout(5*time.Second), keybroker.WithPurpose("playback"))
	a, err := c.Open(ctx, s.vault, tenantID, assetID, cobblestone.WithConcurrency(0))
	if err == nil {
		var size int64
		if size, err = a.Size(); err == nil {
			var buf bytes.Buffer
			if _, err = io.Copy(&buf, io.NewSectionReader(a, 0, size)); err == nil {
				return buf.Bytes(), ""
			}
		}
	}
	var be *keybroker.Error
	if errors.As(err, &be) {
		return nil, be.Code
	}
	s.t.Fatalf("reading %s/%s: %v", tenantID, assetID, err)
	return nil, ""
}

func (s *khStack) waitMonitor(tenantID string, key kms.KeyURI, want events.KeyStatus, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, ok := s.d.Monitor.Status(tenantID, key.String())
		if ok && st.Status == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("monitor: %s key of %s is %+v, want %s", key, tenantID, st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusEvents returns the KeyStatusChanged events of a tenant recorded
// from index from on.
func (s *khStack) statusEvents(tenantID string, from int) []events.KeyStatusChanged {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []events.KeyStatusChanged
	for _, ev := range s.statuses[min(from, len(s.statuses)):] {
		if ev.TenantID == tenantID {
			out = append(out, ev)
		}
	}
	return out
}

func (s *khStack) marks() (statuses, breakers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.statuses), len(s.breakers)
}

// waitStatusEvent waits for a KeyStatusChanged of the tenant to want,
// recorded from index from on, and returns it.
func (s *khStack) waitStatusEvent(tenantID string, want events.KeyStatus, from int, timeout time.Duration) events.KeyStatusChanged {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range s.statusEvents(tenantID, from) {
			if ev.Status == want {
				return ev
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no KeyStatusChanged to %s for %s within %s; saw %+v", want, tenantID, timeout, s.statusEvents(tenantID, from))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// breakerEvents returns the breaker changes recorded from index from on.
func (s *khStack) breakerEvents(from int) []events.BreakerStateChanged {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.breakers[min(from, len(s.breakers)):])
}

func (s *khStack) waitBreaker(to string, from int, timeout time.Duration) events.BreakerStateChanged {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range s.breakerEvents(from) {
			if ev.To == to {
				return ev
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no BreakerStateChanged to %s within %s; saw %+v", to, timeout, s.breakerEvents(from))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counters sums the encryptor's asset counter by "outcome/mode/reason"
// (final settlements only) and the monitor's transitions by "from→to".
func (s *khStack) counters() (assets, transitions map[string]int64) {
	s.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		s.t.Fatal(err)
	}
	assets, transitions = map[string]int64{}, map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				get := func(k string) string { v, _ := dp.Attributes.Value(attribute.Key(k)); return v.AsString() }
				switch m.Name {
				case "keyward_encryptor_assets_total":
					if o := get("outcome"); o == "encrypted" || o == "rejected" {
						assets[o+"/"+get("mode")+"/"+get("reason")] += dp.Value
					}
				case "keyward_key_health_transitions_total":
					transitions[get("from")+"→"+get("to")] += dp.Value
				}
			}
		}
	}
	return assets, transitions
}

func diff(after, before map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// outcomeOf names an outcome "customer", "fallback" or the rejection reason.
func outcomeOf(o *producer.Outcome) string {
	if o.Encrypted != nil {
		return string(o.Encrypted.Mode)
	}
	return string(o.Rejected.Reason)
}

// TestKeyFaultMatrix: each fault of the customer's KMS — hang, refused
// connection, 5xx, throttling, key disabled, key pending deletion, access
// denied — with fallback on, off, and fallback_on: any. For each: what
// becomes of new assets while the key is away, the status transitions the
// monitor publishes (one away, one back: no flapping), the breaker's
// events (endpoint faults only), the counters, reads of assets stored
// before the fault (refused with key_unavailable or key_revoked) and of
// fallback copies (readable), and recovery without a restart.
func TestKeyFaultMatrix(t *testing.T) {
	// Every asset asks the KMS for its own data key (the worst case: a
	// cached seed would let assets skip the KMS until the status changes).
	s := khStart(t, cli.DevOptions{KeyHealth: khFastMonitor, Breaker: khFastBreaker, SeedCache: &kms.SeedCacheConfig{MaxUses: 1}})
	ctx := context.Background()
	type tenantCase struct {
		id       string
		fallback bool
		on       tenant.FallbackOn
		key      kms.KeyURI
	}
	tenants := []*tenantCase{{id: "fb-on", fallback: true}, {id: "fb-off"}, {id: "fb-any", fallback: true, on: tenant.FallbackOnAny}}
	for _, tc := range tenants {
		tc.key = s.tenant(tc.id, tc.fallback, tc.on)
	}
	// An asset of each tenant stored under its key before any fault.
	for _, tc := range tenants {
		if out := s.put(tc.id, "before"); outcomeOf(out) != "customer" {
			t.Fatalf("%s: before the faults: %s", tc.id, outcomeOf(out))
		}
	}

	unavailable := map[string]string{"fb-on": "fallback", "fb-off": "customer_key_unavailable", "fb-any": "fallback"}
	revoked := map[string]string{"fb-on": "customer_key_revoked", "fb-off": "customer_key_revoked", "fb-any": "fallback"}
	faults := s.d.AWS.Server.Faults
	eachKey := func(f func(kms.KeyURI) error) func() {
		return func() {
			for _, tc := range tenants {
				if err := f(tc.key); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cases := []struct {
		name       string
		inject     func()
		heal       func()
		status     events.KeyStatus
		reasonCode string
		decisions  map[string]string // tenant → outcome while away
		readCode   string            // the broker's refusal of a customer asset while away
		endpoint   bool              // the endpoint's breaker opens
	}{
		{"hang", func() { faults.Set(kmstest.FaultHang) }, func() { faults.Set(kmstest.FaultNone) },
			events.KeyStatusUnavailable, "endpoint_unreachable", unavailable, keybroker.CodeKeyUnavailable, true},
		{"refused", func() { faults.Set(kmstest.FaultRefuse) }, func() { faults.Set(kmstest.FaultNone) },
			events.KeyStatusUnavailable, "endpoint_unreachable", unavailable, keybroker.CodeKeyUnavailable, true},
		{"5xx", func() { faults.Set(kmstest.FaultServerError) }, func() { faults.Set(kmstest.FaultNone) },
			events.KeyStatusUnavailable, "endpoint_unreachable", unavailable, keybroker.CodeKeyUnavailable, true},
		{"throttled", func() { faults.Set(kmstest.FaultThrottle) }, func() { faults.Set(kmstest.FaultNone) },
			events.KeyStatusDegraded, "throttled", nil, "", false},
		{"disabled", eachKey(func(k kms.KeyURI) error { return s.d.AWS.DisableKey(ctx, k) }), eachKey(func(k kms.KeyURI) error { return s.d.AWS.EnableKey(ctx, k) }),
			events.KeyStatusRevoked, "key_disabled", revoked, keybroker.CodeKeyRevoked, false},
		{"pending deletion", eachKey(func(k kms.KeyURI) error { return s.d.AWS.ScheduleDeletion(ctx, k, 7) }), eachKey(func(k kms.KeyURI) error { return s.d.AWS.CancelDeletion(ctx, k) }),
			events.KeyStatusRevoked, "key_disabled", revoked, keybroker.CodeKeyRevoked, false},
		{"access denied", func() { faults.Deny(kms.OpGenerateDataKey); faults.Deny(kms.OpDecrypt) }, func() { faults.Allow(kms.OpGenerateDataKey); faults.Allow(kms.OpDecrypt) },
			events.KeyStatusRevoked, "access_denied", revoked, keybroker.CodeKeyRevoked, false},
	}
	for i, c := range cases {
		ok := t.Run(c.name, func(t *testing.T) {
			s.t = t
			defer func() { s.t = nil }()
			statusMark, breakerMark := s.marks()
			assetsBefore, transBefore := s.counters()
			c.inject()
			healed := false
			defer func() {
				if !healed {
					c.heal()
				}
			}()

			// 1. The first assets after the fault meet it in live traffic.
			first := map[string]*producer.Pending{}
			for _, tc := range tenants {
				first[tc.id] = s.start(tc.id, fmt.Sprintf("f%d-first", i))
			}
			// 2. The monitor publishes one transition per key.
			for _, tc := range tenants {
				ev := s.waitStatusEvent(tc.id, c.status, statusMark, 20*time.Second)
				if ev.Previous != events.KeyStatusAvailable || ev.KeyURI != tc.key.String() || !strings.HasPrefix(ev.Reason, c.reasonCode) || ev.Since.IsZero() {
					t.Errorf("%s: KeyStatusChanged %+v; want from available, reason %s…", tc.id, ev, c.reasonCode)
				}
			}
			if c.status == events.KeyStatusDegraded {
				// Throttling: nothing falls back or is refused; the assets
				// wait (backing off) and are stored under the customer key
				// once the KMS answers again.
				c.heal()
				healed = true
				for _, tc := range tenants {
					if got := outcomeOf(s.wait(first[tc.id], 30*time.Second)); got != "customer" {
						t.Errorf("%s: throttled, then healed: %s, want customer", tc.id, got)
					}
				}
			} else {
				for _, tc := range tenants {
					if got := outcomeOf(s.wait(first[tc.id], 20*time.Second)); got != c.decisions[tc.id] {
						t.Errorf("%s: first asset after the fault: %s, want %s", tc.id, got, c.decisions[tc.id])
					}
				}
				// 3. Later assets: the decision comes from the status.
				for _, tc := range tenants {
					start := time.Now()
					got := outcomeOf(s.put(tc.id, fmt.Sprintf("f%d-away", i)))
					if got != c.decisions[tc.id] {
						t.Errorf("%s: asset while the key is %s: %s, want %s", tc.id, c.status, got, c.decisions[tc.id])
					}
					if took := time.Since(start); took > kms.DefaultCallTimeout {
						t.Errorf("%s: an asset while the key is known %s took %s: it waited for the KMS", tc.id, c.status, took)
					}
				}
				// 4. Reads: customer assets are refused, fallback copies
				// read back.
				for _, tc := range tenants {
					if _, code := s.read(tc.id, "before"); code != c.readCode {
						t.Errorf("%s: reading a customer asset while the key is %s: %q, want %q", tc.id, c.status, code, c.readCode)
					}
					if c.decisions[tc.id] == "fallback" {
						id := fmt.Sprintf("f%d-away", i)
						if got, code := s.read(tc.id, id); code != "" || !bytes.Equal(got, khContent(tc.id, id)) {
							t.Errorf("%s: reading a fallback copy while the key is away: %q, %q", tc.id, code, got)
						}
					}
				}
				c.heal()
				healed = true
			}

			// 5. Recovery: the key is available again, without a restart.
			for _, tc := range tenants {
				ev := s.waitStatusEvent(tc.id, events.KeyStatusAvailable, statusMark, 30*time.Second)
				if ev.Previous != c.status {
					t.Errorf("%s: back to available from %s, want from %s", tc.id, ev.Previous, c.status)
				}
			}
			recovering := map[string]int64{} // outcomes until customer again
			for _, tc := range tenants {
				deadline := time.Now().Add(15 * time.Second)
				for j := 0; ; j++ {
					got := outcomeOf(s.put(tc.id, fmt.Sprintf("f%d-after-%d", i, j)))
					recovering[got]++
					if got == "customer" {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: after recovery: %s, want customer", tc.id, got)
					}
					time.Sleep(100 * time.Millisecond)
				}
				if got, code := s.read(tc.id, "before"); code != "" || !bytes.Equal(got, khContent(tc.id, "before")) {
					t.Errorf("%s: reading a customer asset after recovery: %q", tc.id, code)
				}
			}
			if c.endpoint {
				// The breaker is lazy: the first calls after the monitor
				// said "available" found it half-open, and its trial calls
				// closed it.
				open := s.waitBreaker(string(breaker.Open), breakerMark, 5*time.Second)
				if open.Provider != "awskms" || open.From != "closed" || open.Endpoint != tenants[0].key.EndpointID() {
					t.Errorf("breaker opened: %+v", open)
				}
				s.waitBreaker(string(breaker.Closed), breakerMark, 15*time.Second)
			}

			// 6. Events: exactly one transition away and one back per key
			// (hysteresis: no flapping); breaker events only for faults of
			// the endpoint.
			for _, tc := range tenants {
				var seen []string
				for _, ev := range s.statusEvents(tc.id, statusMark) {
					seen = append(seen, string(ev.Previous)+"→"+string(ev.Status))
				}
				want := []string{"available→" + string(c.status), string(c.status) + "→available"}
				if !slices.Equal(seen, want) {
					t.Errorf("%s: transitions %v, want %v", tc.id, seen, want)
				}
			}
			if opened := slices.ContainsFunc(s.breakerEvents(breakerMark), func(e events.BreakerStateChanged) bool { return e.To == "open" }); opened != c.endpoint {
				t.Errorf("breaker opened: %v, want %v (%+v)", opened, c.endpoint, s.breakerEvents(breakerMark))
			}

			// 7. Counters.
			assetsAfter, transAfter := s.counters()
			gotAssets := diff(assetsAfter, assetsBefore)
			wantAssets := map[string]int64{}
			for _, tc := range tenants {
				n := int64(2)
				if c.status == events.KeyStatusDegraded {
					n = 1
				}
				switch d := c.decisions[tc.id]; d {
				case "", "customer":
					wantAssets["encrypted/customer/"] += n
				case "fallback":
					wantAssets["encrypted/fallback/"] += n
				default:
					wantAssets["rejected//"+d] += n
				}
			}
			// While the encryptor catches up with the recovery (its
			// breaker half-opens after OpenTimeout, its status cache
			// follows KW_KEY_STATUS), assets may still be decided as if the
			// key were away; every one of them is counted.
			for o, n := range recovering {
				switch o {
				case "customer", "fallback":
					wantAssets["encrypted/"+o+"/"] += n
				default:
					wantAssets["rejected//"+o] += n
				}
			}
			if recovering["customer"] != int64(len(tenants)) {
				t.Errorf("after recovery: %v, want %d customer", recovering, len(tenants))
			}
			if fmt.Sprint(gotAssets) != fmt.Sprint(wantAssets) {
				t.Errorf("encryptor asset counters %v, want %v", gotAssets, wantAssets)
			}
			gotTrans := diff(transAfter, transBefore)
			// One count per KeyStatusChanged (demo-aws, whose key is on the
			// same endpoint, makes its own transitions on endpoint faults).
			wantTrans := map[string]int64{}
			s.mu.Lock()
			for _, ev := range s.statuses[statusMark:] {
				prev := ev.Previous
				if prev == "" {
					prev = "unknown" // a key's first status (the demo tenants' keys, on a slow start)
				}
				wantTrans[string(prev)+"→"+string(ev.Status)]++
			}
			s.mu.Unlock()
			if wantTrans["available→"+string(c.status)] < int64(len(tenants)) {
				t.Errorf("transitions published: %v", wantTrans)
			}
			if fmt.Sprint(gotTrans) != fmt.Sprint(wantTrans) {
				t.Errorf("monitor transitions counter %v, want %v", gotTrans, wantTrans)
			}
		})
		if !ok {
			break
		}
	}
}

// khTraffic publishes an asset of tenantID every interval until stop is
// closed, and records when each was published and decided.
type khTraffic struct {
	mu   sync.Mutex
	done []khDecided
	wg   sync.WaitGroup
}

type khDecided struct {
	published, decided time.Time
	outcome            string
}

func (s *khStack) traffic(tenantID, prefix string, every time.Duration, stop <-chan struct{}) *khTraffic {
	tr := &khTraffic{}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			body := khContent(tenantID, prefix)
			published := time.Now()
			pd, err := s.prod.Put(context.Background(), producer.Asset{TenantID: tenantID, AssetID: fmt.Sprintf("%s-%d", prefix, i), Service: "recordings", OwnerUserID: "u1"}, bytes.NewReader(body), int64(len(body)))
			if err != nil {
				tr.record(khDecided{published, time.Now(), "publish failed: " + err.Error()})
				continue
			}
			tr.wg.Add(1)
			go func() {
				defer tr.wg.Done()
				defer pd.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out, err := pd.Wait(ctx)
				if err != nil {
					tr.record(khDecided{published, time.Now(), "no outcome: " + err.Error()})
					return
				}
				tr.record(khDecided{published, time.Now(), outcomeOf(out)})
			}()
		}
	}()
	return tr
}

func (tr *khTraffic) record(d khDecided) {
	tr.mu.Lock()
	tr.done = append(tr.done, d)
	tr.mu.Unlock()
}

// wait waits for every outcome and returns them by publication time.
func (tr *khTraffic) wait() []khDecided {
	tr.wg.Wait()
	slices.SortFunc(tr.done, func(a, b khDecided) int { return a.published.Compare(b.published) })
	return tr.done
}

// khQuantile returns the q-quantile of the decision latencies.
func khQuantile(ds []khDecided, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	lat := make([]time.Duration, len(ds))
	for i, d := range ds {
		lat[i] = d.decided.Sub(d.published)
	}
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(q*float64(len(lat))))]
}

// TestHangFailsOverFast: an endpoint that starts hanging under steady
// traffic (an asset every 20 ms, each asking the KMS for its own data key)
// costs at most one KMS timeout per batch until the key is known to be
// away: every asset published after the hang is stored under the fallback
// key within 2 s (p99), and once the breaker is open or the monitor has
// called the key unavailable, whichever comes first, no asset waits for a
// KMS timeout and no call of the encryptor reaches the hanging endpoint.
// Two runs: the production settings of the breaker and the monitor (60 s/
// 10 s probes, hysteresis 3 — the encryptor's reports of its failed calls
// make the monitor decide within seconds), and a monitor that never
// decides, so the breaker alone protects the traffic.
func TestHangFailsOverFast(t *testing.T) {
	for _, tt := range []struct {
		name      string
		monitor   monitor.Options
		byBreaker bool
		p99       time.Duration // of the time to decision after the hang
	}{
		{"production settings", monitor.Options{}, false, 2 * time.Second},
		// Without shared observations assets wait their turn behind each
		// other's timeouts until the breaker opens (5 in a row, ~2.5 s):
		// p99 ~1.9 s here, so the 2 s holds only with them.
		{"breaker alone", monitor.Options{Hysteresis: 1 << 20}, true, 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := cli.DevOptions{SeedCache: &kms.SeedCacheConfig{MaxUses: 1}, KeyHealth: tt.monitor}
			if tt.byBreaker {
				// Every asset tries the key itself: no sharing of live
				// observations between assets, only the breaker.
				o.Encryptor = func(eo *encryptor.Options) { eo.ObservationTTL = -1 }
			}
			s := khStart(t, o)
			var key kms.KeyURI
			if tt.byBreaker {
				// A monitor that never decides has no status to wait for.
				var err error
				if key, err = s.d.AWS.CreateKey(context.Background()); err != nil {
					t.Fatal(err)
				}
				s.enroll("hang", key, true, "")
			} else {
				key = s.tenant("hang", true, "")
			}
			statusMark, breakerMark := s.marks()
			stop := make(chan struct{})
			tr := s.traffic("hang", "a", 20*time.Millisecond, stop)
			time.Sleep(time.Second)
			hangAt := time.Now()
			s.d.AWS.Server.Faults.Set(kmstest.FaultHang)
			defer s.d.AWS.Server.Faults.Set(kmstest.FaultNone)
			// The key is known to be away at the first of: the breaker
			// opens, the monitor says unavailable.
			var knownAt time.Time
			var by string
			for deadline := time.Now().Add(15 * time.Second); knownAt.IsZero(); time.Sleep(10 * time.Millisecond) {
				// (Since is when the monitor's streak began, not when it
				// decided: the moment the event is seen counts.)
				if i := slices.IndexFunc(s.breakerEvents(breakerMark), func(e events.BreakerStateChanged) bool { return e.To == string(breaker.Open) }); i >= 0 {
					knownAt, by = s.breakerEvents(breakerMark)[i].At, "breaker open"
				} else if evs := s.statusEvents("hang", statusMark); len(evs) > 0 && evs[0].Status == events.KeyStatusUnavailable {
					knownAt, by = time.Now(), "monitor: unavailable"
				}
				if time.Now().After(deadline) {
					t.Fatal("neither the breaker nor the monitor found the hanging endpoint within 15 s")
				}
			}
			if tt.byBreaker && by != "breaker open" {
				t.Fatalf("known by %s, want the breaker", by)
			}
			// Calls already in flight then end with their timeout.
			time.Sleep(kms.DefaultCallTimeout + 100*time.Millisecond)
			statsAt := s.d.KMS.Stats()
			time.Sleep(3 * time.Second)
			close(stop)
			decided := tr.wait()
			statsEnd := s.d.KMS.Stats()

			var after, afterKnown []khDecided
			for _, d := range decided {
				if d.published.After(hangAt) {
					after = append(after, d)
				}
				if d.published.After(knownAt) {
					afterKnown = append(afterKnown, d)
				}
			}
			t.Logf("known away %s after the hang (%s); %d assets after the hang: p50 %s p99 %s max %s; %d after it was known: p50 %s p99 %s max %s",
				knownAt.Sub(hangAt).Round(time.Millisecond), by,
				len(after), khQuantile(after, .5), khQuantile(after, .99), khQuantile(after, 1),
				len(afterKnown), khQuantile(afterKnown, .5), khQuantile(afterKnown, .99), khQuantile(afterKnown, 1))
			if len(afterKnown) < 50 {
				t.Fatalf("only %d assets after the key was known away", len(afterKnown))
			}
			for _, d := range after {
				if d.outcome != "fallback" {
					t.Errorf("asset published %s after the hang: %s, want fallback", d.published.Sub(hangAt), d.outcome)
				}
			}
			if p99 := khQuantile(after, .99); p99 > tt.p99 {
				t.Errorf("p99 time to decision after the hang %s, want ≤ %s", p99, tt.p99)
			}
			if slowest := khQuantile(afterKnown, 1); slowest >= kms.DefaultCallTimeout {
				t.Errorf("an asset published after the key was known away took %s: it waited for a KMS timeout", slowest)
			}
			reached := func(st kms.ClientStats) int64 { return st.Failures[kms.CodeEndpointUnreachable] - st.CircuitOpen }
			if n := reached(statsEnd) - reached(statsAt); n != 0 {
				t.Errorf("%d calls of the encryptor reached the hanging endpoint after it was known away", n)
			}
			if tt.byBreaker && statsEnd.CircuitOpen <= statsAt.CircuitOpen {
				t.Errorf("no call was refused by the open breaker (%d, then %d)", statsAt.CircuitOpen, statsEnd.CircuitOpen)
			}
		})
	}
}

// TestIsolation: one tenant's disabled key neither opens the endpoint's
// breaker nor changes anything for another tenant on the same endpoint;
// an outage of one endpoint (AWS) changes nothing for a tenant on another
// (OCI).
func TestIsolation(t *testing.T) {
	s := khStart(t, cli.DevOptions{KeyHealth: khFastMonitor, Breaker: khFastBreaker, SeedCache: &kms.SeedCacheConfig{MaxUses: 1}})
	ctx := context.Background()
	keyA := s.tenant("iso-a", true, "")
	keyB := s.tenant("iso-b", true, "")
	oci, err := s.store.Get(ctx, cli.DemoTenantOCI)
	if err != nil {
		t.Fatal(err)
	}
	ociKey, err := kms.ParseKeyURI(oci.Keys[0].URI)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st, ok := s.d.Monitor.Status(cli.DemoTenantOCI, ociKey.String()); ok && st.Status == events.KeyStatusAvailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the OCI demo key is not available")
		}
		s.d.Monitor.ProbeNow(cli.DemoTenantOCI, ociKey.String())
	}

	t.Run("a disabled key on a shared endpoint", func(t *testing.T) {
		s.t = t
		statusMark, breakerMark := s.marks()
		if err := s.d.AWS.DisableKey(ctx, keyA); err != nil {
			t.Fatal(err)
		}
		defer s.d.AWS.EnableKey(ctx, keyA)
		// Enough failed calls of iso-a's key to open a breaker that
		// counted them (5 in a row), interleaved with iso-b's traffic.
		for i := range 8 {
			if got := outcomeOf(s.put("iso-a", fmt.Sprintf("dis-%d", i))); got != "customer_key_revoked" {
				t.Errorf("iso-a: %s, want customer_key_revoked", got)
			}
			if got := outcomeOf(s.put("iso-b", fmt.Sprintf("dis-%d", i))); got != "customer" {
				t.Errorf("iso-b on the same endpoint: %s, want customer", got)
			}
		}
		s.waitStatusEvent("iso-a", events.KeyStatusRevoked, statusMark, 10*time.Second)
		time.Sleep(time.Second) // several probe rounds of iso-b's key
		if evs := s.statusEvents("iso-b", statusMark); len(evs) != 0 {
			t.Errorf("iso-b's key changed status: %+v", evs)
		}
		if st, _ := s.d.Monitor.Status("iso-b", keyB.String()); st.Status != events.KeyStatusAvailable {
			t.Errorf("iso-b's key is %s", st.Status)
		}
		if evs := s.breakerEvents(breakerMark); len(evs) != 0 {
			t.Errorf("a key-level error moved the endpoint's breaker: %+v", evs)
		}
		if st := s.d.Breakers.State(keyB.EndpointID()); st != breaker.Closed {
			t.Errorf("the endpoint's breaker is %s", st)
		}
	})

	t.Run("an outage of another endpoint", func(t *testing.T) {
		s.t = t
		statusMark, breakerMark := s.marks()
		s.d.AWS.Server.Faults.Set(kmstest.FaultRefuse)
		defer s.d.AWS.Server.Faults.Set(kmstest.FaultNone)
		s.waitStatusEvent("iso-b", events.KeyStatusUnavailable, statusMark, 10*time.Second)
		for i := range 5 {
			if got := outcomeOf(s.put("iso-b", fmt.Sprintf("out-%d", i))); got != "fallback" {
				t.Errorf("iso-b during the AWS outage: %s, want fallback", got)
			}
			start := time.Now()
			if got := outcomeOf(s.put(cli.DemoTenantOCI, fmt.Sprintf("out-%d", i))); got != "customer" {
				t.Errorf("%s during the AWS outage: %s, want customer", cli.DemoTenantOCI, got)
			}
			if took := time.Since(start); took > kms.DefaultCallTimeout {
				t.Errorf("%s waited %s during the AWS outage", cli.DemoTenantOCI, took)
			}
		}
		if evs := s.statusEvents(cli.DemoTenantOCI, statusMark); len(evs) != 0 {
			t.Errorf("the OCI key changed status: %+v", evs)
		}
		for _, ev := range s.breakerEvents(breakerMark) {
			if ev.Provider != "awskms" {
				t.Errorf("breaker of another endpoint moved: %+v", ev)
			}
		}
		if st := s.d.Breakers.State(ociKey.EndpointID()); st != breaker.Closed {
			t.Errorf("the OCI endpoint's breaker is %s", st)
		}
	})
}

// TestRevocationBound measures how fast a revocation takes effect under
// steady traffic served from a warm seed cache (so the traffic itself
// makes no KMS call that could notice): the key is disabled, the monitor
// (probing every second while healthy, 200 ms while not, hysteresis 2)
// publishes revoked, and from then on every asset is rejected. The bound
// the issue sets is 10 s after the monitor sees it; the test asserts it
// and logs the figures.
func TestRevocationBound(t *testing.T) {
	s := khStart(t, cli.DevOptions{KeyHealth: khFastMonitor, Breaker: khFastBreaker})
	key := s.tenant("rev", true, "")
	statusMark, _ := s.marks()
	stop := make(chan struct{})
	tr := s.traffic("rev", "r", 20*time.Millisecond, stop)
	time.Sleep(time.Second)
	disabledAt := time.Now()
	if err := s.d.AWS.DisableKey(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	var seenAt time.Time
	for deadline := time.Now().Add(20 * time.Second); seenAt.IsZero(); time.Sleep(5 * time.Millisecond) {
		if slices.ContainsFunc(s.statusEvents("rev", statusMark), func(e events.KeyStatusChanged) bool { return e.Status == events.KeyStatusRevoked }) {
			seenAt = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor did not find the disabled key revoked within 20 s")
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	decided := tr.wait()

	var firstRejection time.Time
	var underKeyAfterDisable, acceptedAfterSeen int
	for _, d := range decided {
		if d.outcome == "customer_key_revoked" && (firstRejection.IsZero() || d.decided.Before(firstRejection)) {
			firstRejection = d.decided
		}
		if d.outcome == "customer" && d.published.After(disabledAt) {
			underKeyAfterDisable++
			if d.published.After(seenAt) {
				acceptedAfterSeen++
			}
		}
		if d.outcome != "customer" && d.outcome != "customer_key_revoked" {
			t.Errorf("outcome %q", d.outcome)
		}
	}
	if firstRejection.IsZero() {
		t.Fatal("no asset was rejected")
	}
	t.Logf("disabled → monitor's KeyStatusChanged revoked: %s; → first AssetRejected: %s (%s after the monitor's event); %d assets stored under the key after it was disabled, %d of them published after the monitor's event",
		seenAt.Sub(disabledAt).Round(time.Millisecond), firstRejection.Sub(disabledAt).Round(time.Millisecond),
		firstRejection.Sub(seenAt).Round(time.Millisecond), underKeyAfterDisable, acceptedAfterSeen)
	if bound := firstRejection.Sub(seenAt); bound > 10*time.Second {
		t.Errorf("first rejection %s after the monitor saw the revocation, want ≤ 10s", bound)
	}
	// Assets already decided when the record arrived may finish under the
	// key; none published later than a moment after it.
	for _, d := range decided {
		if d.outcome == "customer" && d.published.After(seenAt.Add(500*time.Millisecond)) {
			t.Errorf("asset published %s after the monitor's event stored under the revoked key", d.published.Sub(seenAt))
		}
	}
}

// TestRecoveryThroughHalfOpen: without the monitor's verdict (a monitor
// that never decides), an encryptor recovers by its breaker alone: after
// the open timeout its trial calls reach the endpoint, succeed, close the
// breaker (open → half_open → closed), and assets are stored under the
// customer key again, without a restart.
func TestRecoveryThroughHalfOpen(t *testing.T) {
	s := khStart(t, cli.DevOptions{
		KeyHealth: monitor.Options{Hysteresis: 1 << 20},
		Breaker:   breaker.Settings{OpenTimeout: time.Second, ConsecutiveFailures: 2},
		SeedCache: &kms.SeedCacheConfig{MaxUses: 1},
		Encryptor: func(o *encryptor.Options) { o.ObservationTTL = -1 },
	})
	key, err := s.d.AWS.CreateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.enroll("heal", key, true, "")
	_, breakerMark := s.marks()
	s.d.AWS.Server.Faults.Set(kmstest.FaultRefuse)
	for i := 0; s.d.Breakers.State(key.EndpointID()) != breaker.Open; i++ {
		if i == 10 {
			t.Fatal("the breaker did not open")
		}
		if got := outcomeOf(s.put("heal", fmt.Sprintf("down-%d", i))); got != "fallback" {
			t.Fatalf("endpoint down: %s, want fallback", got)
		}
	}
	s.d.AWS.Server.Faults.Set(kmstest.FaultNone)
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		got := outcomeOf(s.put("heal", fmt.Sprintf("up-%d", i)))
		if got == "customer" {
			break
		}
		if got != "fallback" || time.Now().After(deadline) {
			t.Fatalf("endpoint back: %s", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// HalfOpenRequests (3) successful trials close it.
	for i := 0; s.d.Breakers.State(key.EndpointID()) != breaker.Closed; i++ {
		if i == 10 {
			t.Fatalf("breaker %s after %d assets", s.d.Breakers.State(key.EndpointID()), i)
		}
		if got := outcomeOf(s.put("heal", fmt.Sprintf("trial-%d", i))); got != "customer" {
			t.Fatalf("half-open: %s, want customer", got)
		}
	}
	s.waitBreaker(string(breaker.Closed), breakerMark, 5*time.Second)
	var seen []string
	for _, ev := range s.breakerEvents(breakerMark) {
		seen = append(seen, ev.From+"→"+ev.To)
	}
	if want := []string{"closed→open", "open→half_open", "half_open→closed"}; !slices.Equal(seen, want) {
		t.Errorf("breaker changes %v, want %v", seen, want)
	}
}
