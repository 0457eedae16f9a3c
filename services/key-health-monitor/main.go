// Command key-health-monitor is the Keyward key-health-monitor: it probes
// every enrolled customer key, publishes KeyStatusChanged on
// keyward.key.status.<tenant> and keeps KV KW_KEY_STATUS current, counting
// workers' KeyObserved reports like probes. Configuration: flags or
// environment (key-health-monitor -h); docs/key-health.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

func main() {
	svc.TuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := monitor.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "key-health-monitor:", err)
		if errors.Is(err, svc.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
