package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/pkg/telemetry"
)

// CodeInternal is the code of the answer the package sends for a handler
// that panicked or returned without answering.
const CodeInternal = "internal"

// ErrAnswered is returned by Respond and RespondError when the request was
// answered already.
var ErrAnswered = errors.New("rpc: request already answered")

// Handler decides one request and answers it with r.Respond or
// r.RespondError, once, before it returns. ctx ends after Config.Timeout.
type Handler func(ctx context.Context, r *Request)

// Config describes a service with one endpoint.
type Config struct {
	// Name is the micro service name (letters, digits, '-' and '_'),
	// e.g. keyward-key-broker.
	Name string
	// Version of the service; default svc.Version. It is made SemVer with
	// SemVer; the version as given is in the metadata "keyward.version".
	Version     string
	Description string
	// Metadata annotates the service in INFO.
	Metadata map[string]string
	// QueueGroup every instance's endpoint joins, so one instance answers
	// each request. Required.
	QueueGroup string
	// Endpoint names the endpoint in INFO and STATS (e.g. "unwrap").
	Endpoint string
	// Subject the endpoint listens on, with its wildcard tenant token
	// (e.g. keyward.key.unwrap.*).
	Subject string
	// Concurrency bounds the handlers running at once. 0: the handler runs
	// inline, in the subscription's goroutine, one request at a time.
	Concurrency int
	// Timeout bounds each handler's context; 0: no deadline.
	Timeout time.Duration
	// DrainTimeout bounds how long Stop waits for requests already
	// delivered to reach the handler; default Timeout plus 5s, at least 10s.
	DrainTimeout time.Duration
	// Tracer, when set, starts a process span for each request (named
	// after SpanSubject, e.g. keyward.key.unwrap.{tenant}).
	Tracer      trace.Tracer
	SpanSubject string
	Logger      *slog.Logger
	Handler     Handler
}

// Server is a running service.
type Server struct {
	nc    *nats.Conn
	cfg   Config
	log   *slog.Logger
	svc   micro.Service
	sem   chan struct{}
	spanO []telemetry.MessagingOption

	// running counts pool handlers started and not finished; idle is
	// signalled when it drops to 0.
	runMu   sync.Mutex
	running int
	idle    *sync.Cond

	inFlight atomic.Int64

	mu    sync.Mutex
	stats Stats

	stopOnce sync.Once
	stopErr  error
}

// Stats are the package's counts for an endpoint, also the "data" of the
// endpoint in micro's STATS reply.
type Stats struct {
	// Concurrency is the bound of handlers at once (0: inline).
	Concurrency int `json:"concurrency"`
	// InFlight is the number of requests being handled now.
	InFlight int64 `json:"in_flight"`
	// Requests answered (or whose answer failed).
	Requests uint64 `json:"requests"`
	// Errors are the requests answered with RespondError, by code in
	// ErrorsByCode (the codes are the endpoint's closed set).
	Errors       uint64            `json:"errors"`
	ErrorsByCode map[string]uint64 `json:"errors_by_code,omitempty"`
	// LastError is "<code>: <message>" of the last error answer.
	LastError string `json:"last_error,omitempty"`
	// ReplyFailures are answers that could not be published.
	ReplyFailures uint64 `json:"reply_failures,omitempty"`
	// ProcessingTime is the handlers' total time, answer included.
	ProcessingTime time.Duration `json:"processing_time"`
}

// Start adds the service on nc and subscribes its endpoint.
func Start(nc *nats.Conn, c Config) (*Server, error) {
	if nc == nil {
		return nil, errors.New("rpc: a NATS connection is required")
	}
	if c.Handler == nil || c.Endpoint == "" || c.Subject == "" || c.QueueGroup == "" {
		return nil, fmt.Errorf("rpc %s: handler, endpoint, subject and queue group are required", c.Name)
	}
	if c.Concurrency < 0 {
		return nil, fmt.Errorf("rpc %s: concurrency %d: use 0 (inline) or more", c.Name, c.Concurrency)
	}
	if c.Version == "" {
		c.Version = svc.Version
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = max(c.Timeout+5*time.Second, 10*time.Second)
	}
	s := &Server{nc: nc, cfg: c, log: c.Logger.With("service", c.Name)}
	s.idle = sync.NewCond(&s.runMu)
	s.stats.Concurrency = c.Concurrency
	if c.Concurrency > 0 {
		s.sem = make(chan struct{}, c.Concurrency)
	}
	if c.SpanSubject != "" {
		s.spanO = []telemetry.MessagingOption{telemetry.WithDestinationTemplate(c.SpanSubject)}
	}
	md := maps.Clone(c.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	md["keyward.version"] = c.Version
	concurrency := "inline"
	if c.Concurrency > 0 {
		concurrency = strconv.Itoa(c.Concurrency)
	}
	var err error
	s.svc, err = micro.AddService(nc, micro.Config{
		Name:         c.Name,
		Version:      SemVer(c.Version),
		Description:  c.Description,
		Metadata:     md,
		QueueGroup:   c.QueueGroup,
		StatsHandler: func(*micro.Endpoint) any { return s.Stats() },
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			s.log.Warn("service subscription error", "subject", e.Subject, "error", e.Description)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("rpc %s: %w", c.Name, err)
	}
	epMeta := map[string]string{"concurrency": concurrency}
	if c.Timeout > 0 {
		epMeta["timeout"] = c.Timeout.String()
	}
	if err := s.svc.AddEndpoint(c.Endpoint, micro.HandlerFunc(s.dispatch),
		micro.WithEndpointSubject(c.Subject), micro.WithEndpointQueueGroup(c.QueueGroup),
		micro.WithEndpointMetadata(epMeta)); err != nil {
		_ = s.svc.Stop()
		return nil, fmt.Errorf("rpc %s: endpoint %s on %s: %w", c.Name, c.Endpoint, c.Subject, err)
	}
	// Once Start returns, the server routes requests here (readiness
	// follows Start). A connection that is away gets the subscriptions
	// again when it reconnects.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		s.log.Warn("service added while its connection is not flushed", "error", err)
	}
	return s, nil
}

// Service is the micro service (Info, Stats, Stopped).
func (s *Server) Service() micro.Service { return s.svc }

// Stats returns the package's counts for the endpoint.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.ErrorsByCode = maps.Clone(s.stats.ErrorsByCode)
	s.mu.Unlock()
	st.InFlight = s.inFlight.Load()
	return st
}

// Stop stops the service and returns once every request it received has
// been answered (see the package documentation). It may be called more
// than once; later calls wait for the first and return its result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.svc.Stop()
		s.awaitDelivered()
		s.runMu.Lock()
		for s.running > 0 {
			s.idle.Wait()
		}
		s.runMu.Unlock()
	})
	return s.stopErr
}

// awaitDelivered waits until the requests the server routed to this
// connection before the endpoint was unsubscribed have reached the handler:
// the flush makes sure they are all in the subscription's pending list,
// and the barrier runs behind them.
func (s *Server) awaitDelivered() {
	if s.nc.IsClosed() {
		return
	}
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	if err := s.nc.FlushTimeout(s.cfg.DrainTimeout); err != nil {
		s.log.Warn("stopping: flush failed; requests may still be arriving", "error", err)
	}
	done := make(chan struct{})
	if err := s.nc.Barrier(func() { close(done) }); err != nil {
		return // the connection closed: nothing more can arrive or be answered
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("stopping: requests still queued on the connection after the drain timeout", "drain_timeout", s.cfg.DrainTimeout)
	}
}

// dispatch is micro's handler: inline, or into the pool once a slot is
// free (the subscription waits meanwhile).
func (s *Server) dispatch(mr micro.Request) {
	if s.sem == nil {
		s.inFlight.Add(1)
		s.serve(&Request{req: mr, srv: s, inline: true})
		s.inFlight.Add(-1)
		return
	}
	s.sem <- struct{}{}
	s.inFlight.Add(1)
	s.runMu.Lock()
	s.running++
	s.runMu.Unlock()
	go func() {
		defer func() {
			s.inFlight.Add(-1)
			s.runMu.Lock()
			if s.running--; s.running == 0 {
				s.idle.Broadcast()
			}
			s.runMu.Unlock()
			<-s.sem
		}()
		s.serve(&Request{req: mr, srv: s})
	}()
}

// serve runs the handler for r and answers for it when it did not.
func (s *Server) serve(r *Request) {
	start := time.Now()
	ctx := context.Background()
	if s.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
	}
	if s.cfg.Tracer != nil {
		var span trace.Span
		ctx, span = telemetry.StartProcessSpan(ctx, s.cfg.Tracer, r.Subject(), r.Header(), s.spanO...)
		defer span.End()
	}
	r.ctx = ctx
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "request handler panicked", "subject", r.Subject(), "panic", p, "stack", string(debug.Stack()))
			if !r.answered {
				msg := fmt.Sprintf("the %s service failed on this request", s.cfg.Name)
				_ = r.RespondError(CodeInternal, msg, internalBody(msg))
			}
		} else if !r.answered {
			s.log.ErrorContext(ctx, "request handler returned without answering", "subject", r.Subject())
			msg := fmt.Sprintf("the %s service did not answer this request", s.cfg.Name)
			_ = r.RespondError(CodeInternal, msg, internalBody(msg))
		}
		s.mu.Lock()
		s.stats.ProcessingTime += time.Since(start)
		s.mu.Unlock()
	}()
	s.cfg.Handler(ctx, r)
}

// internalBody is the body of CodeInternal answers: the {"error":{code,
// message}} object every Keyward reply type carries.
func internalBody(message string) any {
	type e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	return struct {
		Error e `json:"error"`
	}{e{CodeInternal, message}}
}

func (s *Server) count(code, message string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	if code != "" {
		s.stats.Errors++
		if s.stats.ErrorsByCode == nil {
			s.stats.ErrorsByCode = map[string]uint64{}
		}
		s.stats.ErrorsByCode[code]++
		s.stats.LastError = code + ": " + message
	}
	if err != nil {
		s.stats.ReplyFailures++
	}
}

// Request is one request as a Handler sees it.
type Request struct {
	req      micro.Request
	srv      *Server
	ctx      context.Context
	inline   bool
	answered bool
}

// Subject the request was sent on (the tenant is its last token).
func (r *Request) Subject() string { return r.req.Subject() }

// Data is the request body.
func (r *Request) Data() []byte { return r.req.Data() }

// Header is the request's headers (nil when it has none): traceparent, and
// Nats-Request-Info when the server sets it. Do not modify it.
func (r *Request) Header() nats.Header { return nats.Header(r.req.Headers()) }

// Reply is the subject the answer goes to ("" when the sender expects
// none).
func (r *Request) Reply() string { return r.req.Reply() }

// Respond answers with body encoded as JSON.
func (r *Request) Respond(body any) error { return r.answer("", "", body) }

// RespondError answers with body encoded as JSON and micro's error headers:
// Nats-Service-Error-Code code and Nats-Service-Error message (its first
// 512 bytes). Give the typed code of the body's error object as code.
func (r *Request) RespondError(code, message string, body any) error {
	if code == "" {
		code = CodeInternal
	}
	return r.answer(code, message, body)
}

func (r *Request) answer(code, message string, body any) error {
	if r.answered {
		return ErrAnswered
	}
	r.answered = true
	data, err := json.Marshal(body)
	if err != nil {
		r.srv.log.ErrorContext(r.ctx, "encoding a reply", "subject", r.Subject(), "error", err)
		code, message, data = CodeInternal, "the reply could not be encoded", nil
	}
	if code != "" {
		message = headerText(message, code)
	}
	switch {
	case r.Reply() == "":
		err = nats.ErrMsgNoReply
	case r.inline && code != "":
		// micro counts the error in its own stats.
		err = r.req.Error(code, message, data)
	case r.inline:
		err = r.req.Respond(data)
	default:
		// Answered after micro's handler returned: publish directly, so
		// micro's request (whose error state micro has read already) is
		// not touched from this goroutine.
		m := &nats.Msg{Subject: r.Reply(), Data: data}
		if code != "" {
			m.Header = nats.Header{micro.ErrorCodeHeader: {code}, micro.ErrorHeader: {message}}
		}
		err = r.srv.nc.PublishMsg(m)
	}
	r.srv.count(code, message, err)
	if err != nil {
		r.srv.log.WarnContext(r.ctx, "could not answer a request", "subject", r.Subject(), "error", err)
	}
	return err
}

// headerText is message as a header value: not empty, at most 512 bytes
// (cut on a rune boundary). nats.go turns CR and LF into spaces.
func headerText(message, code string) string {
	message = strings.TrimSpace(message)
	if message == "" {
		return code
	}
	const limit = 512
	if len(message) <= limit {
		return message
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(message[cut]) {
		cut--
	}
	return message[:cut] + "..."
}

// semVer is micro's SemVer check (semver.org's suggested expression).
var semVer = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

var notIdentifier = regexp.MustCompile(`[^0-9A-Za-z-]+`)

// SemVer returns version as micro requires it (SemVer): as it is, or
// without a leading "v", when that is SemVer ("v1.4.0" → "1.4.0"); else a
// pre-release (or build) of 0.0.0 naming it ("dev" → "0.0.0-dev",
// "abc1234+dirty" → "0.0.0-abc1234-dirty"); "0.0.0" when nothing is left.
func SemVer(version string) string {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	if semVer.MatchString(v) {
		return v
	}
	id := strings.Trim(notIdentifier.ReplaceAllString(version, "-"), "-")
	if id == "" {
		return "0.0.0"
	}
	for _, c := range []string{"0.0.0-" + id, "0.0.0+" + id} {
		if semVer.MatchString(c) {
			return c
		}
	}
	return "0.0.0"
}
