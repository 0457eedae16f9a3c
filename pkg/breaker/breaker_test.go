package breaker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/kmstest"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
)

var ec = kms.NewEncryptionContext("acme", kms.PurposeAssetSeed)

// region is one AWS KMS emulator (one endpoint) with a key.
type region struct {
	e   *awsemu.Emulator
	key kms.KeyURI
}

func startRegion(t *testing.T, name string) *region {
	t.Helper()
	e := awsemu.StartT(t, awsemu.WithRegion(name))
	key, err := e.CreateKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &region{e: e, key: key}
}

func (r *region) fault(t *testing.T, f kmstest.Fault) {
	t.Helper()
	r.e.Server.Faults.Set(f)
	t.Cleanup(func() { r.e.Server.Faults.Set(kmstest.FaultNone) })
}

// requests is how many data-plane requests reached the emulator.
func (r *region) requests() int { return len(r.e.Server.Faults.Requests()) }

func provider(t *testing.T, r *region, opts ...awskms.Option) *awskms.Provider {
	t.Helper()
	p, err := r.e.Provider(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// client is a kms.Client over p guarded by set, with the given call timeout
// and no rate limit.
func client(set *breaker.Set, p kms.Provider, timeout time.Duration) *kms.Client {
	return kms.NewClient(kms.WithProvider(kms.SchemeAWS, p), kms.WithGuard(set),
		kms.WithCallTimeout(timeout), kms.WithRateLimit(kms.SchemeAWS, kms.RateLimit{}))
}

func generate(ctx context.Context, c *kms.Client, key kms.KeyURI) error {
	dk, err := c.GenerateDataKey(ctx, key, ec)
	dk.Destroy()
	return err
}

// changeLog records the changes a Set reports; its callback calls State and
// States, which must not deadlock.
type changeLog struct {
	set     *breaker.Set
	mu      sync.Mutex
	changes []breaker.Change
	seen    []breaker.State // State(endpoint) as the callback saw it
}

func (l *changeLog) add(c breaker.Change) {
	st := l.set.State(c.Endpoint)
	_ = l.set.States()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, c)
	l.seen = append(l.seen, st)
}

func (l *changeLog) transitions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.changes {
		out = append(out, string(c.From)+"→"+string(c.To))
	}
	return out
}

func newSet(opts ...breaker.Option) (*breaker.Set, *changeLog) {
	log := &changeLog{}
	log.set = breaker.New(append(opts, breaker.WithOnStateChange(log.add))...)
	return log.set, log
}

func wantState(t *testing.T, set *breaker.Set, key kms.KeyURI, want breaker.State, when string) {
	t.Helper()
	if got := set.State(key.EndpointID()); got != want {
		t.Fatalf("%s: state of %s = %s, want %s", when, key.EndpointID(), got, want)
	}
}

// checkRefusal checks a call refused by an open breaker: immediate,
// endpoint_unreachable matching ErrCircuitOpen, naming the endpoint and the
// next trial. An empty state accepts any.
func checkRefusal(t *testing.T, err error, elapsed time.Duration, key kms.KeyURI, state breaker.State) *breaker.OpenError {
	t.Helper()
	if elapsed >= 50*time.Millisecond {
		t.Errorf("refused call took %v, want < 50ms", elapsed)
	}
	if !kms.IsCircuitOpen(err) || kms.CodeOf(err) != kms.CodeEndpointUnreachable || !kms.IsEndpointFailure(err) || kms.IsCanceled(err) {
		t.Fatalf("err = %v, want endpoint_unreachable matching kms.ErrCircuitOpen", err)
	}
	var oe *breaker.OpenError
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v: no *breaker.OpenError", err)
	}
	if oe.Endpoint != key.EndpointID() || oe.Provider != kms.SchemeAWS || (state != "" && oe.State != state) {
		t.Errorf("OpenError = %+v, want endpoint %s, provider awskms, state %s", oe, key.EndpointID(), state)
	}
	if !strings.Contains(err.Error(), key.EndpointID()) {
		t.Errorf("message %q does not name the endpoint %s", err, key.EndpointID())
	}
	if state == breaker.Open && !strings.Contains(err.Error(), "next trial call at") {
		t.Errorf("message %q does not say when the next trial call is allowed", err)
	}
	return oe
}

// A hanging endpoint: the breaker opens on the 5th consecutive timeout, and
// from then on calls fail in well under 50 ms and never reach the KMS.
func TestHangOpensBreaker(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, log := newSet()
	c := client(set, provider(t, r), 100*time.Millisecond)
	r.fault(t, kmstest.FaultHang)

	for i := 1; i <= breaker.DefaultConsecutiveFailures; i++ {
		wantState(t, set, r.key, breaker.Closed, "before failure "+string(rune('0'+i)))
		err := generate(context.Background(), c, r.key)
		if !kms.IsEndpointFailure(err) || kms.IsCircuitOpen(err) {
			t.Fatalf("call %d = %v, want a timeout (endpoint failure)", i, err)
		}
	}
	wantState(t, set, r.key, breaker.Open, "after 5 timeouts")
	reached := r.requests()
	if reached != breaker.DefaultConsecutiveFailures {
		t.Errorf("%d requests reached the emulator before the breaker opened, want %d", reached, breaker.DefaultConsecutiveFailures)
	}

	opened := time.Now()
	for range 20 {
		start := time.Now()
		err := generate(context.Background(), c, r.key)
		oe := checkRefusal(t, err, time.Since(start), r.key, breaker.Open)
		if until := time.Until(oe.RetryAt); until <= 0 || until > breaker.DefaultOpenTimeout || oe.RetryAt.Before(opened.Add(breaker.DefaultOpenTimeout-time.Second)) {
			t.Errorf("RetryAt = %v, want about 30s after the breaker opened at %v", oe.RetryAt, opened)
		}
	}
	if n := r.requests() - reached; n != 0 {
		t.Errorf("%d refused calls reached the emulator", n)
	}
	st := c.Stats()
	if st.CircuitOpen != 20 || st.Failures[kms.CodeEndpointUnreachable] != 25 {
		t.Errorf("Stats = %+v, want 20 circuit-open refusals among 25 endpoint_unreachable failures", st)
	}
	if got := strings.Join(log.transitions(), " "); got != "closed→open" {
		t.Errorf("changes = %s, want closed→open", got)
	}
}

// Concurrent callers fail together: with 10 calls in flight, the breaker is
// open after about one call timeout.
func TestConcurrentCallersOpenWithinOneTimeout(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, _ := newSet()
	const timeout = 200 * time.Millisecond
	c := client(set, provider(t, r), timeout)
	r.fault(t, kmstest.FaultHang)
	start := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { _ = generate(context.Background(), c, r.key) })
	}
	wg.Wait()
	if d := time.Since(start); d > 2*timeout {
		t.Errorf("10 concurrent calls took %v, want about one %v timeout", d, timeout)
	}
	wantState(t, set, r.key, breaker.Open, "after 10 concurrent timeouts")
}

// Open → after the open timeout, half-open lets exactly 3 trial calls reach
// the endpoint; a failing trial opens it again; 3 successful trials close it;
// then calls flow.
func TestHalfOpen(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	const openTimeout = 300 * time.Millisecond
	set, log := newSet(breaker.WithOpenTimeout(openTimeout), breaker.WithHalfOpenRequests(3))
	p := provider(t, r)
	fast := client(set, p, 100*time.Millisecond)
	slow := client(set, p, 5*time.Second)
	r.fault(t, kmstest.FaultHang)
	for range 5 {
		_ = generate(context.Background(), fast, r.key)
	}
	wantState(t, set, r.key, breaker.Open, "after 5 timeouts")

	// waitTrial sleeps until the open breaker allows trial calls, as its
	// refusal says.
	waitTrial := func() {
		t.Helper()
		start := time.Now()
		oe := checkRefusal(t, generate(context.Background(), fast, r.key), time.Since(start), r.key, breaker.Open)
		if d := time.Until(oe.RetryAt); d > openTimeout {
			t.Fatalf("next trial in %v, want within the %v open timeout", d, openTimeout)
		}
		time.Sleep(time.Until(oe.RetryAt) + 10*time.Millisecond)
		wantState(t, set, r.key, breaker.HalfOpen, "after the open timeout")
	}

	// A dead endpoint: 10 concurrent callers, 3 trials reach it and time
	// out, the others are refused at once; the breaker opens again.
	waitTrial()
	r.e.Server.Faults.ResetLog()
	var refused, failed int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			start := time.Now()
			err := generate(context.Background(), fast, r.key)
			mu.Lock()
			defer mu.Unlock()
			if kms.IsCircuitOpen(err) {
				refused++
				// Half-open, or open again if this caller came late.
				oe := checkRefusal(t, err, time.Since(start), r.key, "")
				if oe.State != breaker.HalfOpen && oe.State != breaker.Open {
					t.Errorf("refused in state %s", oe.State)
				}
			} else if kms.IsEndpointFailure(err) {
				failed++
			}
		})
	}
	wg.Wait()
	if reached := r.requests(); reached != 3 || failed != 3 || refused != 7 {
		t.Errorf("half-open with a dead endpoint: %d requests reached it, %d calls failed, %d refused; want 3, 3, 7", reached, failed, refused)
	}
	wantState(t, set, r.key, breaker.Open, "after failed trials")

	// The endpoint recovers: hold the 3 trials in the emulator until the
	// other 7 callers have been refused, then let them answer.
	waitTrial()
	r.e.Server.Faults.ResetLog()
	results := make(chan error, 10)
	for range 10 {
		go func() { results <- generate(context.Background(), slow, r.key) }()
	}
	var errs []error
	for range 7 {
		select {
		case err := <-results:
			errs = append(errs, err)
		case <-time.After(5 * time.Second):
			t.Fatal("7 callers were not refused")
		}
	}
	for _, err := range errs {
		if !kms.IsCircuitOpen(err) {
			t.Errorf("while 3 trials are in flight: err = %v, want a half-open refusal", err)
		}
	}
	// The admitted trials may still be on their way to the emulator.
	for deadline := time.Now().Add(3 * time.Second); r.requests() < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if reached := r.requests(); reached != 3 {
		t.Errorf("%d trial calls reached the emulator, want 3", reached)
	}
	r.e.Server.Faults.Set(kmstest.FaultNone) // the trials get their answers
	for range 3 {
		if err := <-results; err != nil {
			t.Errorf("trial call: %v", err)
		}
	}
	wantState(t, set, r.key, breaker.Closed, "after 3 successful trials")

	for i := range 20 {
		if err := generate(context.Background(), fast, r.key); err != nil {
			t.Fatalf("call %d after closing: %v", i, err)
		}
	}
	if reached := r.requests(); reached != 23 {
		t.Errorf("%d requests reached the emulator, want 3 trials + 20", reached)
	}
	want := "closed→open open→half_open half_open→open open→half_open half_open→closed"
	if got := strings.Join(log.transitions(), " "); got != want {
		t.Errorf("changes = %s, want %s", got, want)
	}
}

// OnStateChange sees closed → open → half_open → closed in order, with the
// provider, the endpoint and non-decreasing times, and may call State.
func TestOnStateChange(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, log := newSet(breaker.WithOpenTimeout(100*time.Millisecond), breaker.WithHalfOpenRequests(1))
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), time.Second)
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		r.e.Server.Faults.Set(kmstest.FaultServerError)
		for range 5 {
			_ = generate(context.Background(), c, r.key)
		}
		r.e.Server.Faults.Set(kmstest.FaultNone)
		time.Sleep(110 * time.Millisecond)
		_ = set.States() // turns it half-open
		_ = generate(context.Background(), c, r.key)
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("deadlock: the callback calls State")
	}
	want := []string{"closed→open", "open→half_open", "half_open→closed"}
	if got := log.transitions(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	prev := start
	for i, ch := range log.changes {
		if ch.Provider != kms.SchemeAWS || ch.Endpoint != r.key.EndpointID() {
			t.Errorf("change %d = %+v, want provider awskms, endpoint %s", i, ch, r.key.EndpointID())
		}
		if ch.At.Before(prev) || ch.At.After(time.Now()) {
			t.Errorf("change %d at %v, out of order or in the future", i, ch.At)
		}
		prev = ch.At
		if log.seen[i] != ch.To {
			t.Errorf("change %d: State from the callback = %s, want %s", i, log.seen[i], ch.To)
		}
	}
}

// An endpoint failing every other call opens on the failure ratio (never 5
// failures in a row); one failure of one call does not.
func TestFailureRatioTrips(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, _ := newSet() // defaults: 50 % of at least 10 calls in 10 s
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), time.Second)
	call := func(fail bool) {
		t.Helper()
		f := kmstest.FaultNone
		if fail {
			f = kmstest.FaultServerError
		}
		r.e.Server.Faults.Set(f)
		err := generate(context.Background(), c, r.key)
		if (err != nil) != fail || (fail && !kms.IsEndpointFailure(err)) {
			t.Fatalf("call (fail %v) = %v", fail, err)
		}
	}
	defer r.e.Server.Faults.Set(kmstest.FaultNone)
	// f o f o f o f o f: 5 failures of 9 calls, below the minimum of 10.
	for i := range 9 {
		call(i%2 == 0)
		wantState(t, set, r.key, breaker.Closed, "5 failures of 9 calls")
	}
	call(false) // 5 of 10, but only a failure can trip it
	wantState(t, set, r.key, breaker.Closed, "after a success")
	call(true) // 6 of 11
	wantState(t, set, r.key, breaker.Open, "6 failures of 11 calls")
}

// Key-level errors of one tenant's key — disabled, not found, access denied,
// invalid ciphertext — never open the breaker for another key on the same
// endpoint, and count as successes: they break a run of failures.
func TestKeyLevelErrorsDoNotOpen(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	ctx := context.Background()
	disabled, err := r.e.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.e.DisableKey(ctx, disabled); err != nil {
		t.Fatal(err)
	}
	set, log := newSet()
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), time.Second)
	dk, err := c.GenerateDataKey(ctx, r.key, ec)
	if err != nil {
		t.Fatal(err)
	}
	dk.Destroy()
	tampered := append([]byte(nil), dk.Ciphertext...)
	tampered[len(tampered)-5] ^= 0x40

	calls := []struct {
		name string
		code kms.Code
		call func() error
	}{
		{"disabled key", kms.CodeKeyDisabled, func() error { return generate(ctx, c, disabled) }},
		{"missing key", kms.CodeKeyNotFound, func() error { return generate(ctx, c, r.e.MissingKey()) }},
		{"invalid ciphertext", kms.CodeInvalidCiphertext, func() error {
			s, err := c.Decrypt(ctx, r.key, tampered, ec)
			s.Destroy()
			return err
		}},
		{"access denied", kms.CodeAccessDenied, func() error {
			r.e.Server.Faults.Deny(kms.OpDecrypt)
			defer r.e.Server.Faults.Allow(kms.OpDecrypt)
			s, err := c.Decrypt(ctx, r.key, dk.Ciphertext, ec)
			s.Destroy()
			return err
		}},
	}
	for _, k := range calls {
		for range 2 * breaker.DefaultConsecutiveFailures {
			if err := k.call(); kms.CodeOf(err) != k.code {
				t.Fatalf("%s: err = %v, want %s", k.name, err, k.code)
			}
		}
		wantState(t, set, r.key, breaker.Closed, "after 10 calls with "+k.name)
		if err := generate(ctx, c, r.key); err != nil {
			t.Fatalf("another key on the endpoint after %s: %v", k.name, err)
		}
	}

	// 4 failures, a disabled key's answer, 4 failures: no 5 in a row.
	fail := func(n int) {
		r.e.Server.Faults.Set(kmstest.FaultServerError)
		defer r.e.Server.Faults.Set(kmstest.FaultNone)
		for range n {
			if err := generate(ctx, c, r.key); !kms.IsEndpointFailure(err) {
				t.Fatalf("err = %v, want an endpoint failure", err)
			}
		}
	}
	fail(4)
	if err := generate(ctx, c, disabled); kms.CodeOf(err) != kms.CodeKeyDisabled {
		t.Fatalf("disabled key: %v", err)
	}
	fail(4)
	wantState(t, set, r.key, breaker.Closed, "4 failures, a key_disabled answer, 4 failures")
	if got := log.transitions(); len(got) != 0 {
		t.Errorf("changes = %v, want none", got)
	}
}

// Throttling — the KMS's and Keyward's own rate limiter — never opens the
// breaker, and is not a success either: it does not break a run of failures.
func TestThrottlingDoesNotOpen(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	ctx := context.Background()
	set, log := newSet()
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), time.Second)

	throttle := func(n int) {
		t.Helper()
		r.e.Server.Faults.Set(kmstest.FaultThrottle)
		defer r.e.Server.Faults.Set(kmstest.FaultNone)
		for range n {
			if err := generate(ctx, c, r.key); kms.CodeOf(err) != kms.CodeThrottled {
				t.Fatalf("err = %v, want throttled", err)
			}
		}
	}
	throttle(20)
	wantState(t, set, r.key, breaker.Closed, "after 20 throttled calls")

	limited := kms.NewClient(kms.WithProvider(kms.SchemeAWS, provider(t, r)), kms.WithGuard(set),
		kms.WithRateLimit(kms.SchemeAWS, kms.RateLimit{PerSecond: 0.001, Burst: 1}),
		kms.WithCallTimeout(10*time.Millisecond))
	_ = generate(ctx, limited, r.key) // the only turn
	for range 10 {
		if err := generate(ctx, limited, r.key); kms.CodeOf(err) != kms.CodeThrottled {
			t.Fatalf("rate limited: err = %v, want throttled", err)
		}
	}
	wantState(t, set, r.key, breaker.Closed, "after 10 calls refused by the rate limiter")

	fail := func(n int) {
		t.Helper()
		r.e.Server.Faults.Set(kmstest.FaultServerError)
		defer r.e.Server.Faults.Set(kmstest.FaultNone)
		for range n {
			_ = generate(ctx, c, r.key)
		}
	}
	fail(4)
	throttle(10)
	fail(1)
	wantState(t, set, r.key, breaker.Open, "4 failures, 10 throttled, 1 failure")
	if got := strings.Join(log.transitions(), " "); got != "closed→open" {
		t.Errorf("changes = %s, want closed→open", got)
	}
}

// A call abandoned because the caller's context ended is not counted: many
// cancellations do not open the breaker, nor break a run of failures.
func TestCallerCancellationNotCounted(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, _ := newSet()
	p := provider(t, r)
	fast := client(set, p, 50*time.Millisecond)
	slow := client(set, p, 10*time.Second)
	r.fault(t, kmstest.FaultHang)
	cancelled := func(n int) {
		t.Helper()
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			err := generate(ctx, slow, r.key)
			cancel()
			if !kms.IsCanceled(err) {
				t.Fatalf("err = %v, want the caller's cancellation", err)
			}
		}
	}
	cancelled(10)
	wantState(t, set, r.key, breaker.Closed, "after 10 cancelled calls")
	for range 4 {
		_ = generate(context.Background(), fast, r.key)
	}
	cancelled(10)
	wantState(t, set, r.key, breaker.Closed, "4 failures, 10 cancelled")
	_ = generate(context.Background(), fast, r.key)
	wantState(t, set, r.key, breaker.Open, "4 failures, 10 cancelled, 1 failure")
	if st := slow.Stats(); st.Canceled != 20 {
		t.Errorf("Stats = %+v, want 20 cancellations", st)
	}
}

// Two regions are two endpoints with independent breakers.
func TestEndpointsAreIndependent(t *testing.T) {
	west, east := startRegion(t, "eu-west-2"), startRegion(t, "us-east-1")
	if west.key.EndpointID() == east.key.EndpointID() {
		t.Fatal("both emulators have the same endpoint id")
	}
	set, log := newSet()
	c := client(set, provider(t, west), 100*time.Millisecond) // one provider, both regions
	west.fault(t, kmstest.FaultHang)
	for range breaker.DefaultConsecutiveFailures {
		_ = generate(context.Background(), c, west.key)
	}
	wantState(t, set, west.key, breaker.Open, "west after 5 timeouts")
	westReached, eastReached := west.requests(), east.requests()
	for range 10 {
		start := time.Now()
		checkRefusal(t, generate(context.Background(), c, west.key), time.Since(start), west.key, breaker.Open)
		if err := generate(context.Background(), c, east.key); err != nil {
			t.Fatalf("east while west is open: %v", err)
		}
	}
	wantState(t, set, east.key, breaker.Closed, "east")
	if n := west.requests() - westReached; n != 0 {
		t.Errorf("%d calls reached the open west endpoint", n)
	}
	if n := east.requests() - eastReached; n != 10 {
		t.Errorf("%d calls reached east, want 10", n)
	}
	states := set.States()
	if len(states) != 2 || states[west.key.EndpointID()] != breaker.Open || states[east.key.EndpointID()] != breaker.Closed {
		t.Errorf("States = %v, want west open and east closed", states)
	}
	if got := strings.Join(log.transitions(), " "); got != "closed→open" || log.changes[0].Endpoint != west.key.EndpointID() {
		t.Errorf("changes = %s (%+v), want one closed→open of west", got, log.changes)
	}
	if st := set.State("awskms:ap-south-1"); st != breaker.Closed {
		t.Errorf("State of an endpoint never called = %s, want closed", st)
	}
}

// Calls older than the window are forgotten, by the ratio rule and by the
// consecutive rule alike.
func TestWindowForgets(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	const window = 300 * time.Millisecond
	set, _ := newSet(breaker.WithFailureRatio(0.5, 10, window))
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), time.Second)
	defer r.e.Server.Faults.Set(kmstest.FaultNone)
	call := func(fail bool) {
		t.Helper()
		f := kmstest.FaultNone
		if fail {
			f = kmstest.FaultServerError
		}
		r.e.Server.Faults.Set(f)
		if err := generate(context.Background(), c, r.key); (err != nil) != fail {
			t.Fatalf("call (fail %v) = %v", fail, err)
		}
	}
	// 4 failures in a row and 4 of 8: neither rule trips yet.
	for range 4 {
		call(true)
	}
	for range 4 {
		call(false)
	}
	time.Sleep(window + window/5)
	// Within the window: 1 failure in a row, 3 of 6 calls.
	call(true)
	wantState(t, set, r.key, breaker.Closed, "5 failures in a row, but 4 of them older than the window")
	for range 2 {
		call(false)
		call(true)
	}
	call(false)
	wantState(t, set, r.key, breaker.Closed, "7 failures of 14 calls, but only 3 of 6 within the window")
	// Without the sleep the same calls trip it.
	for range 4 {
		call(true)
	}
	wantState(t, set, r.key, breaker.Open, "5 failures in a row within the window")
}

// ResetEndpoint closes an open breaker at once (the monitor found the
// endpoint answering): calls flow again without waiting for the open
// timeout, the change is reported, a late outcome of a call that was in
// flight on the old breaker changes nothing, a closed or unknown endpoint
// is left alone, and the fresh breaker trips again by the same rules.
func TestResetEndpoint(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, log := newSet(breaker.WithOpenTimeout(time.Hour), breaker.WithConsecutiveFailures(2))
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), 300*time.Millisecond)
	ctx := context.Background()
	endpoint := r.key.EndpointID()
	if set.ResetEndpoint(endpoint) || set.ResetEndpoint("awskms:nowhere") {
		t.Fatal("reset an endpoint that is not open")
	}
	r.e.Server.Faults.Set(kmstest.FaultServerError)
	for range 2 {
		_ = generate(ctx, c, r.key)
	}
	if st := set.State(endpoint); st != breaker.Open {
		t.Fatalf("state %s, want open", st)
	}
	// A call in flight on the old breaker: it hangs past the reset.
	r.e.Server.Faults.Set(kmstest.FaultNone)
	if !set.ResetEndpoint(endpoint) {
		t.Fatal("ResetEndpoint did not close an open breaker")
	}
	if st := set.State(endpoint); st != breaker.Closed {
		t.Fatalf("state after reset %s, want closed", st)
	}
	if err := generate(ctx, c, r.key); err != nil {
		t.Fatalf("call after reset: %v", err)
	}
	want := []string{"closed→open", "open→closed"}
	if got := log.transitions(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if c.EndpointRecovered(r.key) {
		t.Error("EndpointRecovered reset a closed breaker")
	}
	r.e.Server.Faults.Set(kmstest.FaultServerError)
	for range 2 {
		_ = generate(ctx, c, r.key)
	}
	if st := set.State(endpoint); st != breaker.Open {
		t.Fatalf("the fresh breaker did not trip: %s", st)
	}
	if !c.EndpointRecovered(r.key) || set.State(endpoint) != breaker.Closed {
		t.Error("kms.Client.EndpointRecovered did not close the breaker")
	}
}

// A call that was in flight on a breaker replaced by ResetEndpoint reports
// to the old breaker: no change is reported for it.
func TestResetEndpointIgnoresLateOutcomes(t *testing.T) {
	r := startRegion(t, "eu-west-2")
	set, log := newSet(breaker.WithOpenTimeout(50*time.Millisecond), breaker.WithConsecutiveFailures(1), breaker.WithHalfOpenRequests(1))
	c := client(set, provider(t, r, awskms.WithMaxAttempts(1)), 300*time.Millisecond)
	ctx := context.Background()
	endpoint := r.key.EndpointID()
	r.e.Server.Faults.Set(kmstest.FaultServerError)
	_ = generate(ctx, c, r.key)
	time.Sleep(60 * time.Millisecond)
	r.e.Server.Faults.Set(kmstest.FaultHang)
	done := make(chan struct{})
	go func() { defer close(done); _ = generate(ctx, c, r.key) }() // the half-open trial, hanging
	for set.State(endpoint) != breaker.HalfOpen {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	set.ResetEndpoint(endpoint)
	<-done // the trial times out: a failure reported to the retired breaker
	r.e.Server.Faults.Set(kmstest.FaultNone)
	if st := set.State(endpoint); st != breaker.Closed {
		t.Errorf("state %s after a late failure on the retired breaker, want closed", st)
	}
	want := []string{"closed→open", "open→half_open", "half_open→closed"}
	if got := log.transitions(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("changes = %v, want %v", got, want)
	}
}
