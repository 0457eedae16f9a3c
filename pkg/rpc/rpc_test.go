package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/rpc"
	"github.com/keyward/keyward/pkg/rpc/rpctest"
)

// reply is the shape of every Keyward reply: a value or an error object.
type reply struct {
	Echo  string `json:"echo,omitempty"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// echo answers {"echo": <body>}, or refuses a body starting with "bad".
func echo(_ context.Context, r *rpc.Request) {
	if body := string(r.Data()); strings.HasPrefix(body, "bad") {
		_ = r.RespondError("bad_body", "the body "+body+" is bad", map[string]any{"error": map[string]string{"code": "bad_body", "message": "the body " + body + " is bad"}})
		return
	}
	_ = r.Respond(reply{Echo: string(r.Data())})
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, nc *nats.Conn, c rpc.Config) *rpc.Server {
	t.Helper()
	if c.Name == "" {
		c.Name = "keyward-test"
	}
	if c.QueueGroup == "" {
		c.QueueGroup = "keyward-test"
	}
	if c.Endpoint == "" {
		c.Endpoint = "echo"
	}
	if c.Subject == "" {
		c.Subject = "keyward.test.*"
	}
	if c.Handler == nil {
		c.Handler = echo
	}
	if c.Logger == nil {
		c.Logger = quiet()
	}
	s, err := rpc.Start(nc, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func request(t *testing.T, nc *nats.Conn, subject, body string) (*nats.Msg, reply) {
	t.Helper()
	m, err := nc.RequestMsg(&nats.Msg{Subject: subject, Data: []byte(body)}, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s %q: %v", subject, body, err)
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("reply %q: %v", m.Data, err)
	}
	return m, r
}

func TestServiceIsDiscoverable(t *testing.T) {
	for _, concurrency := range []int{0, 3} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) {
			env := natstest.Start(t, natstest.WithoutProvisioning())
			srvNC, _ := env.Connect(t)
			start(t, srvNC, rpc.Config{Version: "v1.2.3", Description: "test service", Concurrency: concurrency, Timeout: time.Second})

			ping := rpctest.Ping(t, env.NC, "keyward-test")
			if ping.Name != "keyward-test" || ping.Version != "1.2.3" || ping.Type != micro.PingResponseType {
				t.Fatalf("PING %+v", ping)
			}
			info := rpctest.Info(t, env.NC, "keyward-test")
			if info.Description != "test service" || len(info.Endpoints) != 1 || info.Metadata["keyward.version"] != "v1.2.3" {
				t.Fatalf("INFO %+v", info)
			}
			ep := info.Endpoints[0]
			want := "inline"
			if concurrency > 0 {
				want = fmt.Sprint(concurrency)
			}
			if ep.Name != "echo" || ep.Subject != "keyward.test.*" || ep.QueueGroup != "keyward-test" || ep.Metadata["concurrency"] != want || ep.Metadata["timeout"] != "1s" {
				t.Fatalf("INFO endpoint %+v", ep)
			}

			for _, body := range []string{"one", "two", "bad-three"} {
				m, r := request(t, env.NC, "keyward.test.acme", body)
				if body == "bad-three" {
					if r.Error == nil || r.Error.Code != "bad_body" || m.Header.Get(micro.ErrorCodeHeader) != "bad_body" ||
						m.Header.Get(micro.ErrorHeader) != "the body bad-three is bad" {
						t.Fatalf("refusal %q headers %v", m.Data, m.Header)
					}
					continue
				}
				if r.Echo != body || r.Error != nil || m.Header.Get(micro.ErrorCodeHeader) != "" {
					t.Fatalf("reply %q headers %v", m.Data, m.Header)
				}
			}

			// The package's own counts, in every mode. Answers are counted
			// just after they are sent: await them.
			var e *micro.EndpointStats
			rpctest.AwaitStats(t, env.NC, "keyward-test", func(es *micro.EndpointStats, d rpc.Stats) error {
				e = es
				if d.Requests != 3 || d.Errors != 1 || d.ErrorsByCode["bad_body"] != 1 || d.LastError != "bad_body: the body bad-three is bad" ||
					d.Concurrency != concurrency || d.InFlight != 0 || e.NumRequests != 3 || e.QueueGroup != "keyward-test" {
					return fmt.Errorf("STATS %s", rpctest.String(e, d))
				}
				return nil
			})
			// micro counts the error itself only when the answer is sent
			// before its handler returns: inline.
			if concurrency == 0 && (e.NumErrors != 1 || e.LastError != "bad_body:the body bad-three is bad") {
				t.Fatalf("STATS endpoint %+v, want micro's own error count", e)
			}
		})
	}
}

func TestHandlerSeesHeaders(t *testing.T) {
	env := natstest.Start(t, natstest.WithoutProvisioning())
	got := make(chan string, 1)
	start(t, env.NC, rpc.Config{Concurrency: 2, Handler: func(_ context.Context, r *rpc.Request) {
		got <- r.Header().Get("Nats-Request-Info") + "|" + r.Subject()
		_ = r.Respond(reply{Echo: "ok"})
	}})
	m := nats.NewMsg("keyward.test.acme")
	m.Header.Set("Nats-Request-Info", `{"acc":"A"}`)
	m.Data = []byte("x")
	if _, err := env.NC.RequestMsg(m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != `{"acc":"A"}|keyward.test.acme` {
		t.Fatalf("handler saw %q", g)
	}
}

func TestPoolBoundsHandlersAndAnswersAll(t *testing.T) {
	const bound, total = 4, 40
	env := natstest.Start(t, natstest.WithoutProvisioning())
	srvNC, _ := env.Connect(t)
	var running, peak, done atomic.Int64
	release := make(chan struct{})
	s := start(t, srvNC, rpc.Config{Concurrency: bound, Handler: func(ctx context.Context, r *rpc.Request) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		done.Add(1)
		_ = r.Respond(reply{Echo: string(r.Data())})
	}})

	replies := make(chan error, total)
	for i := range total {
		go func() {
			body := fmt.Sprint(i)
			m, err := env.NC.Request("keyward.test.t"+body, []byte(body), 30*time.Second)
			if err == nil && !strings.Contains(string(m.Data), `"echo":"`+body+`"`) {
				err = fmt.Errorf("reply %q to %s", m.Data, body)
			}
			replies <- err
		}()
	}
	// The pool fills up to its bound, and no further.
	rpctest.CheckFor(t, 10*time.Second, func() error {
		if n := s.Stats().InFlight; n != bound || running.Load() != bound {
			return fmt.Errorf("in flight %d, running %d, want %d", n, running.Load(), bound)
		}
		return nil
	})
	close(release)
	for range total {
		if err := <-replies; err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p > bound {
		t.Fatalf("%d handlers ran at once, bound %d", p, bound)
	}
	if d := done.Load(); d != total {
		t.Fatalf("%d handled, want %d", d, total)
	}
}

// TestStopAnswersEveryRequestReceived: Stop returns only once every request
// routed to the instance before it stopped is answered, those in handlers
// and those still waiting in the subscription (with a bound of 1, the pool
// is empty between two requests: only the barrier behind the pending
// requests keeps Stop waiting).
func TestStopAnswersEveryRequestReceived(t *testing.T) {
	for _, concurrency := range []int{0, 1} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) { testStopAnswers(t, concurrency) })
	}
}

func testStopAnswers(t *testing.T, concurrency int) {
	const total = 12
	env := natstest.Start(t, natstest.WithoutProvisioning())
	srvNC, _ := env.Connect(t)
	var started, done atomic.Int64
	release := make(chan struct{})
	s := start(t, srvNC, rpc.Config{Concurrency: concurrency, Handler: func(ctx context.Context, r *rpc.Request) {
		started.Add(1)
		<-release
		done.Add(1)
		_ = r.Respond(reply{Echo: string(r.Data())})
	}})

	// Every request is published and routed to the service before Stop:
	// one in its handler, the rest waiting in the subscription.
	inbox := nats.NewInbox()
	got := make(chan *nats.Msg, total)
	sub, err := env.NC.ChanSubscribe(inbox, got)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := range total {
		if err := env.NC.PublishRequest(fmt.Sprintf("keyward.test.t%d", i), inbox, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	rpctest.CheckFor(t, 10*time.Second, func() error {
		if n := started.Load(); n != 1 {
			return fmt.Errorf("%d handlers started, want 1", n)
		}
		return nil
	})

	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop() }()
	// Once the endpoint is unsubscribed, with requests still in handlers
	// and in the subscription, let the handlers finish.
	rpctest.CheckFor(t, 10*time.Second, func() error {
		if !s.Service().Stopped() {
			return errors.New("service not stopped")
		}
		return nil
	})
	close(release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not return")
	}
	if d := done.Load(); d != total {
		t.Fatalf("Stop returned with %d of %d requests handled", d, total)
	}
	seen := map[string]bool{}
	for len(seen) < total {
		select {
		case m := <-got:
			var r reply
			if err := json.Unmarshal(m.Data, &r); err != nil || r.Echo == "" {
				t.Fatalf("reply %q: %v", m.Data, err)
			}
			seen[r.Echo] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d replies", len(seen), total)
		}
	}
	if !s.Service().Stopped() {
		t.Fatal("service not stopped")
	}
	// Stopped: no one answers any more.
	if _, err := env.NC.Request("keyward.test.t0", []byte("late"), time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request after Stop: %v, want no responders", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestHandlerFailuresAreAnsweredInternal(t *testing.T) {
	for _, concurrency := range []int{0, 2} {
		t.Run(fmt.Sprintf("concurrency=%d", concurrency), func(t *testing.T) {
			env := natstest.Start(t, natstest.WithoutProvisioning())
			var twice error
			var mu sync.Mutex
			start(t, env.NC, rpc.Config{Concurrency: concurrency, Handler: func(_ context.Context, r *rpc.Request) {
				switch string(r.Data()) {
				case "panic":
					panic("boom")
				case "silent":
					return
				default:
					_ = r.Respond(reply{Echo: "once"})
					mu.Lock()
					twice = r.Respond(reply{Echo: "twice"})
					mu.Unlock()
				}
			}})
			for _, body := range []string{"panic", "silent"} {
				m, r := request(t, env.NC, "keyward.test.acme", body)
				if r.Error == nil || r.Error.Code != rpc.CodeInternal || m.Header.Get(micro.ErrorCodeHeader) != rpc.CodeInternal {
					t.Fatalf("%s: reply %q headers %v", body, m.Data, m.Header)
				}
			}
			if _, r := request(t, env.NC, "keyward.test.acme", "ok"); r.Echo != "once" {
				t.Fatalf("reply %+v", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if !errors.Is(twice, rpc.ErrAnswered) {
				t.Fatalf("second answer: %v, want ErrAnswered", twice)
			}
		})
	}
}

func TestStartRefusesWhatMicroRefuses(t *testing.T) {
	env := natstest.Start(t, natstest.WithoutProvisioning())
	for _, c := range []rpc.Config{
		{Name: "keyward key broker", QueueGroup: "q", Endpoint: "e", Subject: "s.*", Handler: echo},
		{Name: "ok", QueueGroup: "q", Endpoint: "e", Subject: "bad subject", Handler: echo},
		{Name: "ok", QueueGroup: "q", Endpoint: "e.f", Subject: "s.*", Handler: echo},
	} {
		if s, err := rpc.Start(env.NC, c); !errors.Is(err, micro.ErrConfigValidation) {
			if s != nil {
				_ = s.Stop()
			}
			t.Errorf("Start(%+v) = %v, want %v", c, err, micro.ErrConfigValidation)
		}
	}
	if _, err := rpc.Start(env.NC, rpc.Config{Name: "ok", Endpoint: "e", Subject: "s.*", Handler: echo}); err == nil {
		t.Error("Start without a queue group succeeded")
	}
}

func TestSemVer(t *testing.T) {
	for in, want := range map[string]string{
		"1.4.0":         "1.4.0",
		"v1.4.0":        "1.4.0",
		"1.4.0-rc.1+g1": "1.4.0-rc.1+g1",
		"dev":           "0.0.0-dev",
		"":              "0.0.0",
		"abc1234+dirty": "0.0.0-abc1234-dirty",
		"0123":          "0.0.0+0123",
		"v1.4":          "0.0.0-v1-4",
	} {
		if got := rpc.SemVer(in); got != want {
			t.Errorf("SemVer(%q) = %q, want %q", in, got, want)
		}
	}
}
