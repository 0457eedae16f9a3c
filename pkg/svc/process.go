package svc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// MainFunc is a service's Main: it runs until ctx ends (SIGTERM), then
// drains and returns.
type MainFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Exec runs main as the process: the GC tuned from the environment (TuneGC),
// ctx cancelled on SIGINT or SIGTERM, an error printed as "<name>: <error>"
// on stderr with exit status 2 for a usage error (ErrUsage) and 1 for any
// other. Each service's main package is one call to it.
func Exec(name string, main MainFunc) {
	TuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(ExitCode(err))
	}
}

// ExitCode is the process exit status for a Main's error: 0 for nil, 2 for
// a usage error, 1 otherwise.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

// RunUntilDrained runs run (a worker's Run) until it returns. When ctx ends
// first, run is given drain to return (it drains on ctx's end); past that
// RunUntilDrained returns an error saying so. Then the NATS connection is
// flushed (at most 5 s), so what the worker published is on the server.
func RunUntilDrained(ctx context.Context, run func(context.Context) error, drain time.Duration, nc *nats.Conn, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		select {
		case runErr = <-done:
		case <-time.After(drain):
			runErr = fmt.Errorf("drain took longer than %v", drain)
		}
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(flushCtx); err != nil && runErr == nil {
		log.Warn("flushing NATS at shutdown", "error", err)
	}
	return runErr
}

// InstanceID names one process of a service where several share work
// (leases, job owners): "<name>-<host>-<pid>-<6 random hex digits>", at most
// 64 characters of [A-Za-z0-9_-].
func InstanceID(name string) string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := idPart(name) + "-" + idPart(host) + "-" + fmt.Sprint(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	if len(id) > 64 {
		id = id[len(id)-64:]
		id = strings.TrimLeft(id, "-_")
	}
	return id
}

// idPart keeps letters, digits, '-' and '_' of s (others become '-'), at
// most 24 characters.
func idPart(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() > 24 {
		return b.String()[:24]
	}
	return b.String()
}

// Configured is a service's configuration: it embeds Common.
type Configured interface{ Settings() *Common }

// Settings returns c (so a configuration embedding Common is Configured).
func (c *Common) Settings() *Common { return c }

// Setup is the start of every service's Main: parse the configuration
// (flags with environment fallbacks) and set up logging, metrics and
// tracing. A parse error is returned wrapped in ErrUsage; -h returns a nil
// *Observability and a nil error (Main then returns nil). The caller must
// Shutdown the Observability.
func Setup[C Configured](ctx context.Context, service string, parse func(args []string, getenv func(string) string, out io.Writer) (C, error),
	args []string, getenv func(string) string, stderr io.Writer) (C, *Observability, error) {
	var zero C
	cfg, err := parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return zero, nil, nil
	}
	if err != nil {
		return zero, nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	obs, err := Observe(ctx, service, Version, cfg.Settings().LogLevel, getenv, stderr)
	if err != nil {
		return zero, nil, err
	}
	return cfg, obs, nil
}
