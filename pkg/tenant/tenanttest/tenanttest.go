// Package tenanttest builds what the workers' tests need of tenants: a
// local customer key and the usual covered configuration around it.
package tenanttest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/tenant"
)

// LocalKey creates the localkms key file dir/name (dir made if needed) and
// returns its URI.
func LocalKey(t testing.TB, dir, name string) kms.KeyURI {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := localkms.CreateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	return kms.MustParseKeyURI("localkms://" + path)
}

// Covered is tenant id's configuration with key as its primary, enrolled an
// hour ago, covering every service and user, fallback on; mutate adjusts
// it.
func Covered(id string, key kms.KeyURI, mutate ...func(*tenant.Config)) *tenant.Config {
	cfg := &tenant.Config{
		TenantID:      id,
		Keys:          []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().Add(-time.Hour).UTC()}},
		Services:      []string{tenant.All},
		LicensedUsers: []string{tenant.All},
		Fallback:      true,
	}
	for _, m := range mutate {
		m(cfg)
	}
	return cfg
}
