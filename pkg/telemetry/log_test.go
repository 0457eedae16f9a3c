package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyward/keyward/pkg/telemetry"
)

// logLines decodes every JSON line written to buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func newTracer(t *testing.T) trace.Tracer {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("test")
}

func TestNewLoggerWithoutSpan(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, telemetry.LogOptions{Service: "encryptor", Version: "1.2.3"})
	log.InfoContext(context.Background(), "hello", "n", 1)
	log.Info("no context")

	lines := logLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, m := range lines {
		if m["service"] != "encryptor" || m["version"] != "1.2.3" {
			t.Errorf("service, version = %v, %v, want encryptor, 1.2.3", m["service"], m["version"])
		}
		for _, k := range []string{"trace_id", "span_id"} {
			if _, ok := m[k]; ok {
				t.Errorf("line %v has %s without an active span", m, k)
			}
		}
	}
	if lines[0]["msg"] != "hello" || lines[0]["n"] != float64(1) {
		t.Errorf("line = %v, want msg hello and n 1", lines[0])
	}
}

func TestNewLoggerWithSpan(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, telemetry.LogOptions{Service: "encryptor", Version: "v1"})
	ctx, span := newTracer(t).Start(context.Background(), "op")
	defer span.End()
	sc := span.SpanContext()

	log.InfoContext(ctx, "plain")
	log.With("a", "b").WithGroup("req").With("c", "d").InfoContext(ctx, "grouped", "e", "f")
	log.WithGroup("req").InfoContext(context.Background(), "grouped no span")

	lines := logLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}
	for i, m := range lines[:2] {
		if m["trace_id"] != sc.TraceID().String() || m["span_id"] != sc.SpanID().String() {
			t.Errorf("line %d: trace_id, span_id = %v, %v, want %s, %s (top level)", i, m["trace_id"], m["span_id"], sc.TraceID(), sc.SpanID())
		}
		if m["service"] != "encryptor" {
			t.Errorf("line %d: service = %v, want encryptor", i, m["service"])
		}
	}
	req, _ := lines[1]["req"].(map[string]any)
	if lines[1]["a"] != "b" || req["c"] != "d" || req["e"] != "f" {
		t.Errorf("grouped line = %v, want a=b and req={c:d,e:f}", lines[1])
	}
	if _, ok := req["trace_id"]; ok {
		t.Errorf("trace_id inside the group: %v", lines[1])
	}
	if _, ok := lines[2]["trace_id"]; ok {
		t.Errorf("line without span has trace_id: %v", lines[2])
	}
}

func TestNewLoggerRemoteParent(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, telemetry.LogOptions{Service: "s"})
	h := nats.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	log.InfoContext(telemetry.ExtractNATS(context.Background(), h), "remote")
	m := logLines(t, &buf)[0]
	if m["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || m["span_id"] != "00f067aa0ba902b7" {
		t.Errorf("trace_id, span_id = %v, %v, want the remote parent's", m["trace_id"], m["span_id"])
	}
}

func TestNewLoggerLevel(t *testing.T) {
	var buf bytes.Buffer
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelWarn)
	log := telemetry.NewLogger(&buf, telemetry.LogOptions{Level: lvl})
	log.Info("dropped")
	log.Warn("kept")
	lvl.Set(slog.LevelDebug)
	log.Debug("kept too")
	lines := logLines(t, &buf)
	if len(lines) != 2 || lines[0]["msg"] != "kept" || lines[1]["msg"] != "kept too" {
		t.Errorf("lines = %v, want only kept and kept too", lines)
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"", slog.LevelInfo},
		{" WARN ", slog.LevelWarn},
		{"Error", slog.LevelError},
	} {
		got, err := telemetry.ParseLevel(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q) = %v, %v, want %v, nil", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"verbose", "warning", "0", "trace"} {
		_, err := telemetry.ParseLevel(in)
		if !errors.Is(err, telemetry.ErrInvalidLogLevel) {
			t.Errorf("ParseLevel(%q) err = %v, want %v", in, err, telemetry.ErrInvalidLogLevel)
		}
		var envErr *telemetry.EnvError
		if !errors.As(err, &envErr) || envErr.Name != "KEYWARD_LOG_LEVEL" {
			t.Errorf("ParseLevel(%q) err = %#v, want an *EnvError naming KEYWARD_LOG_LEVEL", in, err)
		}
		if err != nil && !strings.Contains(err.Error(), "debug, info, warn, error") {
			t.Errorf("ParseLevel(%q) err = %q, want the allowed values listed", in, err)
		}
	}
}
