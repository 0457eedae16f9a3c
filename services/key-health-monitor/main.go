// Command key-health-monitor is the Keyward key-health-monitor: it probes
// every enrolled customer key, publishes KeyStatusChanged on
// keyward.key.status.<tenant> and keeps KV KW_KEY_STATUS current, counting
// workers' KeyObserved reports like probes. Configuration: flags or
// environment (key-health-monitor -h); docs/key-health.md.
package main

import (
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

func main() { svc.Exec("key-health-monitor", monitor.Main) }
