package svc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/svc"
)

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{{nil, 0}, {errors.New("boom"), 1}, {fmt.Errorf("%w: -x: bad", svc.ErrUsage), 2}} {
		if got := svc.ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestInstanceID(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	a, b := svc.InstanceID("re-encryptor"), svc.InstanceID("re-encryptor")
	if !re.MatchString(a) || !strings.HasPrefix(a, "re-encryptor-") {
		t.Fatalf("InstanceID = %q", a)
	}
	if a == b {
		t.Fatalf("two instance ids are equal: %q", a)
	}
	long := svc.InstanceID(strings.Repeat("very long service name/", 10))
	if !re.MatchString(long) {
		t.Fatalf("long name: %q", long)
	}
}

func TestRunUntilDrained(t *testing.T) {
	env := natstest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// A worker that returns when ctx ends: its result comes back.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	want := errors.New("stopped")
	if err := svc.RunUntilDrained(ctx, func(ctx context.Context) error { <-ctx.Done(); return want }, time.Second, env.NC, log); !errors.Is(err, want) {
		t.Fatalf("drained worker: %v", err)
	}
	// A worker that does not drain in time.
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	err := svc.RunUntilDrained(ctx, func(context.Context) error { <-block; return nil }, 100*time.Millisecond, env.NC, log)
	if err == nil || !strings.Contains(err.Error(), "drain took longer than 100ms") || time.Since(start) > 2*time.Second {
		t.Fatalf("stuck worker: %v after %v", err, time.Since(start))
	}
	// A worker that ends on its own.
	if err := svc.RunUntilDrained(context.Background(), func(context.Context) error { return nil }, time.Second, env.NC, log); err != nil {
		t.Fatal(err)
	}
}

type testConfig struct {
	svc.Common
	Name string
}

func TestSetup(t *testing.T) {
	parse := func(args []string, getenv func(string) string, out io.Writer) (*testConfig, error) {
		var c testConfig
		f := svc.NewFlags("thing", getenv, out)
		c.Common.Register(f, "thing")
		f.String(&c.Name, "name", "KEYWARD_NAME", "", "a name")
		if err := f.Parse(args); err != nil {
			return nil, err
		}
		if c.Name == "" {
			return &c, errors.New("KEYWARD_NAME (-name) is required")
		}
		return &c, nil
	}
	getenv := func(string) string { return "" }
	cfg, obs, err := svc.Setup(context.Background(), "thing", parse, []string{"-name", "x", "-log-level", "warn"}, getenv, io.Discard)
	if err != nil || obs == nil || cfg.Name != "x" || cfg.Settings().LogLevel != "warn" {
		t.Fatalf("Setup = %+v, %v, %v", cfg, obs, err)
	}
	obs.Shutdown()
	if _, obs, err := svc.Setup(context.Background(), "thing", parse, []string{"-h"}, getenv, io.Discard); err != nil || obs != nil {
		t.Fatalf("-h: %v, %v", obs, err)
	}
	_, _, err = svc.Setup(context.Background(), "thing", parse, nil, getenv, io.Discard)
	if !errors.Is(err, svc.ErrUsage) || !strings.Contains(err.Error(), "KEYWARD_NAME") || svc.ExitCode(err) != 2 {
		t.Fatalf("missing flag: %v", err)
	}
}
