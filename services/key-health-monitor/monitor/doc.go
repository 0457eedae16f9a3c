// Package monitor is the key-health-monitor worker: it probes every
// enrolled customer key of every tenant it owns, derives each key's status
// with hysteresis (package keyhealth), publishes every transition as
// KeyStatusChanged on keyward.key.status.<tenant> (stream KW_KEYS) and
// keeps the current status in KV KW_KEY_STATUS, which encryptors and the
// phone-policy worker read. Workers' reports of live KMS calls
// (KeyObserved, core NATS) count like probe results, so an outage seen in
// traffic is announced within seconds. Several instances share the tenants
// by partition, each partition held under a lease in KV
// KW_KEY_HEALTH_LEASES.
//
// docs/key-health.md describes the statuses, intervals, hysteresis,
// observations, partitions and leases, flags and metrics.
//
// # Embedding
//
//	w, err := monitor.New(ctx, monitor.Deps{NC: nc, JS: js, KMS: client}, monitor.Options{})
//	go w.Run(ctx)          // until ctx ends; then releases its leases
//	w.Ready()              // nil once tenants are loaded, leases taken, observations subscribed
//	w.Status(tenant, uri)  // what this instance knows of a key it probes
//	w.ProbeNow(tenant, uri)
//
// The KMS client must not have a circuit breaker: the monitor is what sees
// an endpoint recover.
//
// # Telemetry
//
// keyward_key_health_probes_total{provider,outcome},
// keyward_key_health_probe_seconds{provider},
// keyward_key_health_transitions_total{from,to,source},
// keyward_key_health_observations_total{result},
// keyward_key_health_publish_failures_total{what},
// keyward_key_health_partitions_owned, keyward_key_health_keys; the
// kms.Client's own keyward.kms.calls and spans per call; a publish span per
// KeyStatusChanged. Logs never carry key material.
package monitor
