package phonepolicy

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/keyward/keyward/pkg/svc"
)

// Config is the phone-policy process's configuration: flags with
// environment fallbacks.
type Config struct {
	svc.Common
	Queue            string
	CallHistory      time.Duration
	AllowLocalKeys   bool
	ShutdownDeadline time.Duration
}

// ParseConfig reads flags and environment.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	var c Config
	f := svc.NewFlags("phone-policy", getenv, out)
	c.Common.Register(f, "phone-policy")
	f.String(&c.Queue, "queue", "KEYWARD_PHONE_QUEUE", DefaultQueue, "queue group the instances answer admissions in")
	f.Duration(&c.CallHistory, "call-history", "KEYWARD_CALL_HISTORY", DefaultCallHistory, "call events this old are read again at start to rebuild the live calls")
	f.Bool(&c.AllowLocalKeys, "allow-local-customer-keys", "KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS", false, "accept localkms:// customer keys in tenant configurations (dev and tests only)")
	f.Duration(&c.ShutdownDeadline, "shutdown-deadline", "KEYWARD_SHUTDOWN_DEADLINE", 30*time.Second, "how long a SIGTERM drain may take")
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	return &c, nil
}

// Main runs the phone-policy worker until ctx ends (SIGTERM), then drains.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, obs, err := svc.Setup(ctx, "phone-policy", ParseConfig, args, getenv, stderr)
	if err != nil || obs == nil {
		return err // obs is nil after -h
	}
	defer obs.Shutdown()
	log := obs.Log
	nc, js, err := svc.Connect(cfg.Common, "keyward-phone-policy", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	obs.Serve(healthCtx, cfg.HTTPAddr)
	if err := svc.WaitProvisioned(ctx, cfg.Common, js, log); err != nil {
		return nil // interrupted before start
	}
	w, err := New(ctx, Deps{NC: nc, JS: js}, Options{
		Queue: cfg.Queue, CallHistory: cfg.CallHistory, AllowLocalCustomerKeys: cfg.AllowLocalKeys,
		Logger: log, MeterProvider: obs.Telemetry.MeterProvider(),
	})
	if err != nil {
		return err
	}
	obs.Telemetry.AddReadyCheck("phone-policy", func(context.Context) error { return w.Ready() })
	obs.Telemetry.AddReadyCheck("nats", svc.NATSReady(nc))
	fmt.Fprintf(stdout, "keyward phone-policy %s: answering keyward.phone.admit.* in queue %s\n", svc.Version, cfg.Queue)
	runErr := svc.RunUntilDrained(ctx, w.Run, cfg.ShutdownDeadline, nc, log)
	log.Info("phone-policy stopped")
	return runErr
}
