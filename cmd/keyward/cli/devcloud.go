package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/kmstest/awsemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/azureemu"
	"github.com/keyward/keyward/pkg/kms/kmstest/ociemu"
	"github.com/keyward/keyward/pkg/tenant"
)

// The demo tenants of the emulated clouds.
const (
	DemoTenantAWS   = "demo-aws"
	DemoTenantOCI   = "demo-oci"
	DemoTenantAzure = "demo-azure"
)

// DefaultEmulatorPorts are the ports of the AWS, OCI and Azure emulators of
// keyward dev.
var DefaultEmulatorPorts = [3]int{4566, 4567, 4568}

// startEmulators starts the three cloud KMS emulators with their state in
// dataDir/emulators (so keys outlive restarts) and returns the providers
// wired to them.
func (d *Dev) startEmulators(ctx context.Context, dataDir string, o DevOptions) ([]kms.ClientOption, error) {
	ports := o.EmulatorPorts
	if ports == ([3]int{}) && o.Port != 0 {
		ports = DefaultEmulatorPorts
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	addr := func(i int) string { return net.JoinHostPort(host, strconv.Itoa(ports[i])) }
	dir := filepath.Join(dataDir, "emulators")
	// The emulators keep key material: only the developer may read it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if d.AWS, err = awsemu.Start(awsemu.WithRegion("eu-west-2"), awsemu.WithDataDir(filepath.Join(dir, "aws")), awsemu.WithAddr(addr(0))); err != nil {
		return nil, fmt.Errorf("AWS KMS emulator on %s: %w", addr(0), err)
	}
	d.closers = append(d.closers, d.AWS.Close)
	if d.OCI, err = ociemu.Start(ociemu.WithRegion("us-ashburn-1"), ociemu.WithStateFile(filepath.Join(dir, "oci.json")), ociemu.WithAddr(addr(1))); err != nil {
		return nil, fmt.Errorf("OCI Vault emulator on %s: %w", addr(1), err)
	}
	d.closers = append(d.closers, d.OCI.Close)
	if d.Azure, err = azureemu.Start(azureemu.WithStateFile(filepath.Join(dir, "azure.json")), azureemu.WithAddr(addr(2))); err != nil {
		return nil, fmt.Errorf("Azure Key Vault emulator on %s: %w", addr(2), err)
	}
	d.closers = append(d.closers, d.Azure.Close)

	aws, err := d.AWS.Provider(ctx)
	if err != nil {
		return nil, err
	}
	oci, err := d.OCI.Provider()
	if err != nil {
		return nil, err
	}
	azure, err := d.Azure.Provider()
	if err != nil {
		return nil, err
	}
	return []kms.ClientOption{
		kms.WithProvider(kms.SchemeAWS, aws),
		kms.WithProvider(kms.SchemeOCI, oci),
		kms.WithProvider(kms.SchemeAzure, azure),
	}, nil
}

// seedCloudTenants creates, once, a demo tenant on each emulated cloud
// with a fresh key in it; later runs keep them (and their keys, which the
// emulators persist).
func (d *Dev) seedCloudTenants(ctx context.Context) error {
	store, err := tenant.OpenStore(ctx, d.adminJS, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
	if err != nil {
		return err
	}
	demos := []struct {
		id     string
		newKey func() (kms.KeyURI, error)
	}{
		{DemoTenantAWS, func() (kms.KeyURI, error) { return d.AWS.CreateKey(ctx) }},
		{DemoTenantOCI, func() (kms.KeyURI, error) { return d.OCI.CreateKey(), nil }},
		{DemoTenantAzure, func() (kms.KeyURI, error) {
			if u, ok := d.Azure.KeyURI("demo-azure-key"); ok {
				return u, nil
			}
			return d.Azure.CreateRSAKey("keyward-demo", "demo-azure-key"), nil
		}},
	}
	for _, m := range demos {
		if _, err := store.Get(ctx, m.id); err == nil {
			continue
		} else if !errors.Is(err, tenant.ErrNotFound) {
			return err
		}
		key, err := m.newKey()
		if err != nil {
			return fmt.Errorf("demo key of %s: %w", m.id, err)
		}
		_, err = store.Create(ctx, &tenant.Config{
			TenantID:      m.id,
			DisplayName:   "Demo tenant of keyward dev on an emulated cloud KMS",
			Keys:          []tenant.Key{{URI: key.String(), Role: tenant.RolePrimary, EnrolledAt: time.Now().UTC().Add(-time.Minute)}},
			Services:      []string{tenant.All},
			LicensedUsers: []string{tenant.All},
			Recipients:    []string{"security@" + m.id + ".example"},
			Fallback:      true,
		})
		if err != nil && !errors.Is(err, tenant.ErrExists) {
			return err
		}
	}
	return nil
}
