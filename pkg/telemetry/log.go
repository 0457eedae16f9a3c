package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the handler NewLogger builds.
const (
	LogKeyService = "service"
	LogKeyVersion = "version"
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// LogOptions configures NewLogger.
type LogOptions struct {
	// Service and Version are added to every line as "service" and
	// "version".
	Service string
	Version string

	// Level is the minimum level written; nil means slog.LevelInfo. Parse
	// the KEYWARD_LOG_LEVEL string with ParseLevel, or pass a
	// *slog.LevelVar to change the level at run time.
	Level slog.Leveler

	// AddSource adds the "source" attribute (file:line of the call).
	AddSource bool
}

// ParseLevel parses a log level as written in KEYWARD_LOG_LEVEL: "debug",
// "info", "warn" or "error", in any case and surrounded by any space. The
// empty string means "info", so an unset variable gives the default. Any
// other value returns an *EnvError naming KEYWARD_LOG_LEVEL that wraps
// ErrInvalidLogLevel.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, envErr("KEYWARD_LOG_LEVEL", "%w %q: want one of debug, info, warn, error", ErrInvalidLogLevel, s)
}

// NewLogger returns a logger writing one JSON object per line to w. Every
// line carries "service" and "version"; a line logged with a context that
// holds a valid span context (an active span, or a parent extracted from a
// message) also carries "trace_id" and "span_id" at the top level, even
// inside groups opened with WithGroup. Without a span neither key appears.
//
// Use the *Context methods (InfoContext, ErrorContext, ...) or
// slog.Logger.LogAttrs with the handler's context to get the ids.
func NewLogger(w io.Writer, opts LogOptions) *slog.Logger {
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	base := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, AddSource: opts.AddSource}).
		WithAttrs([]slog.Attr{
			slog.String(LogKeyService, opts.Service),
			slog.String(LogKeyVersion, opts.Version),
		})
	return slog.New(NewTraceHandler(base))
}

// NewTraceHandler wraps h so that records logged with a context holding a
// valid span context get top-level "trace_id" and "span_id" attributes.
// NewLogger uses it; it is exported for callers that build their own
// handler chain.
func NewTraceHandler(h slog.Handler) slog.Handler {
	return &traceHandler{inner: h, root: h}
}

// traceHandler adds trace ids to records. inner is the full handler chain.
// While no group is open, root == inner and ops is empty. Once a group is
// open, root is the chain before the first group and ops replays the
// groups and attributes added since, so the ids can be added above them.
type traceHandler struct {
	inner slog.Handler
	root  slog.Handler
	ops   []func(slog.Handler) slog.Handler
}

func (h *traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.inner.Handle(ctx, r)
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h.inner.Handle(ctx, r)
	}
	ids := []slog.Attr{
		slog.String(LogKeyTraceID, sc.TraceID().String()),
		slog.String(LogKeySpanID, sc.SpanID().String()),
	}
	if len(h.ops) == 0 {
		r = r.Clone()
		r.AddAttrs(ids...)
		return h.inner.Handle(ctx, r)
	}
	// Rare path: a group is open. Rebuild the chain with the ids at the
	// top so they stay where log pipelines look for them.
	hh := h.root.WithAttrs(ids)
	for _, op := range h.ops {
		hh = op(hh)
	}
	return hh.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	n := &traceHandler{inner: h.inner.WithAttrs(attrs), root: h.root}
	if len(h.ops) == 0 {
		n.root = n.inner
		return n
	}
	n.ops = append(append([]func(slog.Handler) slog.Handler(nil), h.ops...),
		func(x slog.Handler) slog.Handler { return x.WithAttrs(attrs) })
	return n
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &traceHandler{
		inner: h.inner.WithGroup(name),
		root:  h.root,
		ops: append(append([]func(slog.Handler) slog.Handler(nil), h.ops...),
			func(x slog.Handler) slog.Handler { return x.WithGroup(name) }),
	}
}
