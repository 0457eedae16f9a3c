package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the health and metrics endpoints.
const (
	// ReadyTimeout bounds one /readyz request: checks still running after
	// it are reported as failed.
	ReadyTimeout = 2 * time.Second
	// ShutdownTimeout bounds the graceful shutdown Serve does when its
	// context ends.
	ShutdownTimeout = 5 * time.Second
)

// ErrReadyTimeout is reported for a readiness check still running when
// ReadyTimeout expires.
var ErrReadyTimeout = errors.New("check did not finish in time")

// readiness is the set of named readiness checks and states.
type readiness struct {
	mu     sync.Mutex
	checks map[string]func(context.Context) error
}

// AddReadyCheck registers check under name for /readyz, replacing any
// check or state of that name. Checks run concurrently on every request
// with a context that ends after ReadyTimeout; they must honour it. A
// check should be cheap (NATS connection status, a cached flag), not a
// round trip to a KMS.
func (t *Telemetry) AddReadyCheck(name string, check func(ctx context.Context) error) {
	t.ready.mu.Lock()
	defer t.ready.mu.Unlock()
	if t.ready.checks == nil {
		t.ready.checks = map[string]func(context.Context) error{}
	}
	t.ready.checks[name] = check
}

// SetReady records a state-style readiness condition under name: nil
// means ready, an error means not ready and is shown on /readyz. It
// replaces any check of that name. Call SetReady(name, err) early with a
// "starting" error for conditions that must be met before the first
// ready answer (for example "ledger" until the ledger has caught up).
func (t *Telemetry) SetReady(name string, err error) {
	t.AddReadyCheck(name, func(context.Context) error { return err })
}

// readyBody is the JSON answer of /readyz.
type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

func (t *Telemetry) checkReady(ctx context.Context) (ok bool, results map[string]string) {
	t.ready.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(t.ready.checks))
	for name, c := range t.ready.checks {
		checks[name] = c
	}
	t.ready.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()

	type result struct {
		name string
		err  error
	}
	// Buffered so a check that ignores ctx cannot block its goroutine
	// forever after the request has been answered.
	ch := make(chan result, len(checks))
	for name, c := range checks {
		go func() {
			var err error
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("check panicked: %v", p)
				}
				ch <- result{name, err}
			}()
			err = c(ctx)
		}()
	}

	ok = true
	results = make(map[string]string, len(checks))
	for range checks {
		select {
		case r := <-ch:
			if r.err != nil {
				ok = false
				results[r.name] = r.err.Error()
			} else {
				results[r.name] = "ok"
			}
		case <-ctx.Done():
			for name := range checks {
				if _, done := results[name]; !done {
					ok = false
					results[name] = ErrReadyTimeout.Error()
				}
			}
			return ok, results
		}
	}
	return ok, results
}

// Handler returns the HTTP handler of the health and metrics endpoints:
//
//	GET /metrics  Prometheus text exposition of Registry()
//	GET /healthz  liveness: 200 "ok" while the process can serve HTTP
//	GET /readyz   readiness: runs the checks; 200 {"status":"ready","checks":{"nats":"ok"}}
//	              or 503 {"status":"not_ready","checks":{"nats":"ok","ledger":"<error>"}}
//
// HEAD is accepted wherever GET is; other methods get 405.
func (t *Telemetry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		ErrorLog:      promErrorLog{t},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      t.registry, // promhttp_metric_handler_errors_total
		Timeout:       10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, results := t.checkReady(r.Context())
		body := readyBody{Status: "ready", Checks: results}
		code := http.StatusOK
		if !ok {
			body.Status = "not_ready"
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
	return mux
}

type promErrorLog struct{ t *Telemetry }

func (l promErrorLog) Println(v ...any) {
	l.t.log().Warn("metrics collection error", "err", fmt.Sprint(v...))
}

// ListenAndServe listens on addr (host:port) and calls Serve. An empty
// addr disables the endpoints: it returns nil at once, which suits an
// errgroup. Use Serve with your own listener to learn the bound port.
func (t *Telemetry) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("telemetry: listen on %q: %w", addr, err)
	}
	return t.Serve(ctx, ln)
}

// Serve serves Handler() on ln until ctx is done, then shuts the server
// down gracefully (in-flight requests get up to ShutdownTimeout) and
// returns nil. It closes ln. It returns an error only if serving fails.
//
// To keep /metrics and /healthz up while a worker drains on SIGTERM, pass
// a context that ends after the drain rather than the signal context.
func (t *Telemetry) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           t.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(t.log().Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("telemetry: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("telemetry: shutting down server on %s: %w", ln.Addr(), err)
	}
	return nil
}
