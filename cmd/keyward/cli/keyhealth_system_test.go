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
	s.d = d
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
		sub, err := d.NC.Subscribe(subject, record)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	if s.prod, err = producer.New(ctx, d.NC, d.JS); err != nil {
		t.Fatal(err)
	}
	if s.store, err = tenant.OpenStore(ctx, d.JS); err != nil {
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
	ctx := context.Background()
	key, err := s.d.AWS.CreateKey(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	_, err = s.store.Create(ctx, &tenant.Config{
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
	s.d.Monitor.ProbeNow(id, key.String())
	s.waitMonitor(id, key, events.KeyStatusAvailable, 15*time.Second)
	return key
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
	c := keybroker.NewClient(s.d.NC, keybroker.WithRetries(0), keybroker.WithTimeout(5*time.Second))
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
				wantTrans[string(ev.Previous)+"→"+string(ev.Status)]++
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
