package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keyward/keyward/pkg/access"
)

// Dev identities: one credentials file each under <data-dir>/creds. The
// workers of the dev stack connect with theirs, the CLI picks the one its
// command needs (operator by default), and the plain nats CLI takes any of
// them with --creds (and --inbox-prefix _INBOX.<name>).
const (
	IdentityOperator    = "operator"
	IdentityProvisioner = "provisioner"
	IdentitySystem      = "system"
	IdentityProducer    = "producer"
	IdentityReader      = "reader"
	IdentityPhone       = "phone"
	IdentityBench       = "bench"
)

// devIdentities lists every identity `keyward dev` issues: the operator,
// the provisioner and system users, one per worker role, a producer, a
// reader and a phone system allowed everything, and admin-<tenant> for
// each demo tenant.
func devIdentities() []access.Identity {
	all := []string{"*"}
	ids := []access.Identity{
		{Name: IdentityOperator, Role: access.RoleOperator},
		{Name: IdentityProvisioner, Role: access.RoleProvisioner},
		{Name: IdentitySystem, Role: access.RoleSystem},
		{Name: IdentityProducer, Role: access.RoleProducer, Services: all},
		{Name: IdentityReader, Role: access.RoleReader, Services: all, Purposes: all},
		{Name: IdentityPhone, Role: access.RolePhone},
		{Name: IdentityBench, Role: access.RoleBench},
	}
	for _, r := range []access.Role{access.RoleEncryptor, access.RoleKeyBroker, access.RoleEnrollment, access.RoleAdmin,
		access.RoleKeyHealth, access.RoleReencryptor, access.RoleNotifier, access.RolePhonePolicy} {
		ids = append(ids, access.Identity{Name: string(r), Role: r})
	}
	for _, t := range []string{DemoTenant, DemoTenantAWS, DemoTenantOCI, DemoTenantAzure} {
		ids = append(ids, access.Identity{Name: "admin-" + t, Role: access.RoleTenantAdmin, Tenant: t})
	}
	return ids
}

// startAuth opens (or creates) the dev deployment's authority under
// dataDir/auth, makes sure every dev identity has current credentials in
// dataDir/creds, and writes the nats-server configuration the embedded
// server runs (dataDir/nats-server.conf): the same generated text a
// production server includes.
func (d *Dev) startAuth(dataDir string) (confPath string, err error) {
	if d.Auth, err = access.Open(filepath.Join(dataDir, "auth")); err != nil {
		return "", err
	}
	d.CredsDir = filepath.Join(dataDir, "creds")
	if _, err := d.Auth.EnsureCreds(d.CredsDir, devIdentities()); err != nil {
		return "", err
	}
	conf, err := d.Auth.ServerConfig(access.ServerConfigOptions{ResolverDir: filepath.Join(dataDir, "nats-accounts")})
	if err != nil {
		return "", err
	}
	confPath = filepath.Join(dataDir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", confPath, err)
	}
	return confPath, nil
}

// Creds is the credentials file of a dev identity ("" when authentication
// is off).
func (d *Dev) Creds(identity string) string {
	if d.CredsDir == "" {
		return ""
	}
	return access.CredsPath(d.CredsDir, identity)
}

// Connect opens a connection to the dev server as identity (any name of
// devIdentities; ignored when authentication is off), over TLS trusting
// Dev.CAFile when the stack runs with TLS. The connection is drained when
// the stack stops.
func (d *Dev) Connect(identity string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("keyward-dev-" + identity), nats.MaxReconnects(-1)}
	if d.CAFile != "" {
		opts = append(opts, nats.RootCAs(d.CAFile))
	}
	creds, err := access.ClientOptions(d.Creds(identity))
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(d.Server.URL(), append(opts, creds...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting as %s: %w", identity, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	d.conns = append(d.conns, nc)
	return nc, js, nil
}
