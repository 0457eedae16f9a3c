package monitor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/natsembed/natstest"
	"github.com/keyward/keyward/pkg/svc"
	"github.com/keyward/keyward/pkg/tenant"
	"github.com/keyward/keyward/services/key-health-monitor/monitor"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfig(t *testing.T) {
	c, err := monitor.ParseConfig([]string{"-hysteresis", "4"}, envOf(map[string]string{
		"KEYWARD_PROBE_INTERVAL":           "2m",
		"KEYWARD_PROBE_INTERVAL_UNHEALTHY": "15s",
		"KEYWARD_PROBE_JITTER":             "0.2",
		"KEYWARD_SLOW_THRESHOLD":           "750ms",
		"KEYWARD_HYSTERESIS":               "5",
		"KEYWARD_PROBE_CONCURRENCY":        "8",
		"KEYWARD_PARTITIONS":               "16",
		"KEYWARD_PROBE_RATE_SHARE":         "0.25",
		"KEYWARD_INSTANCE_ID":              "mon-1",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options()
	if o.HealthyInterval != 2*time.Minute || o.UnhealthyInterval != 15*time.Second || o.Jitter != 0.2 ||
		o.SlowThreshold != 750*time.Millisecond || o.Hysteresis != 4 || o.Concurrency != 8 || o.Partitions != 16 ||
		o.ProbeRateShare != 0.25 || o.InstanceID != "mon-1" {
		t.Errorf("options %+v", o)
	}
	d, err := monitor.ParseConfig(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o := d.Options(); o.HealthyInterval != time.Minute || o.UnhealthyInterval != 10*time.Second || o.Hysteresis != 3 || o.Jitter != 0.1 || o.ProbeRateShare != 0.5 {
		t.Errorf("default options %+v", o)
	}
	_, err = monitor.ParseConfig(nil, envOf(map[string]string{
		"KEYWARD_PROBE_JITTER": "0.9", "KEYWARD_PROBE_RATE_SHARE": "lots", "KEYWARD_HYSTERESIS": "0",
		"KEYWARD_PROBE_INTERVAL": "5s", "KEYWARD_PROBE_INTERVAL_UNHEALTHY": "10s", "KEYWARD_INSTANCE_ID": "a.b", "KEYWARD_PARTITIONS": "many",
	}), io.Discard)
	// Unset, the unhealthy interval follows a short healthy one.
	if c, err := monitor.ParseConfig(nil, envOf(map[string]string{"KEYWARD_PROBE_INTERVAL": "6s"}), io.Discard); err != nil || c.UnhealthyInterval != time.Second {
		t.Errorf("-probe-interval 6s: unhealthy interval %v, %v; want 1s", c.UnhealthyInterval, err)
	}
	for _, name := range []string{"KEYWARD_PROBE_JITTER", "KEYWARD_PROBE_RATE_SHARE", "KEYWARD_HYSTERESIS", "KEYWARD_PROBE_INTERVAL_UNHEALTHY", "KEYWARD_INSTANCE_ID", "KEYWARD_PARTITIONS"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

// The process: flags and environment, NATS, provisioning, a localkms
// customer key probed to available, a clean stop on cancel.
func TestMainProcess(t *testing.T) {
	nenv := natstest.Start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "acme.key")
	if err := localkms.CreateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	key := kms.MustParseKeyURI("localkms://" + path)
	store, err := tenant.OpenStore(context.Background(), nenv.JS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(context.Background(), &tenant.Config{TenantID: "acme", Services: []string{"*"}, LicensedUsers: []string{"*"},
		Keys: []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC()}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- monitor.Main(ctx, nil, envOf(map[string]string{
			"NATS_URL":                          nenv.URL,
			"KEYWARD_HTTP_ADDR":                 "",
			"KEYWARD_DATA_DIR":                  dir,
			"KEYWARD_OCI_AUTH":                  "none",
			"KEYWARD_AZURE_AUTH":                "none",
			"KEYWARD_ALLOW_LOCAL_CUSTOMER_KEYS": "true",
			"KEYWARD_PROBE_INTERVAL":            "200ms",
			"KEYWARD_PROBE_INTERVAL_UNHEALTHY":  "50ms",
		}), &stdout, &stderr)
	}()
	kv, err := nenv.JS.KeyValue(context.Background(), events.BucketKeyStatus)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the key to be available in KW_KEY_STATUS", func() bool {
		e, err := kv.Get(context.Background(), keystatus.Key("acme", key.String()))
		if err != nil {
			return false
		}
		r, err := keystatus.Parse(e.Value())
		return err == nil && r.Status == events.KeyStatusAvailable
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
	if !strings.Contains(stdout.String(), "key-health-monitor") || !strings.Contains(stderr.String(), `"msg":"key status changed"`) {
		t.Errorf("stdout %q\nstderr %s", stdout.String(), stderr.String())
	}
	if err := monitor.Main(context.Background(), []string{"-hysteresis", "x"}, envOf(nil), io.Discard, io.Discard); !errors.Is(err, svc.ErrUsage) {
		t.Errorf("bad flag: %v, want a usage error", err)
	}
}
