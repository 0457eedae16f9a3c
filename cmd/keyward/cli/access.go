package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/access"
)

// accessCmd is `keyward access`: the deployment's identities, issued and
// revoked from the authority directory (pkg/access).
func (a *App) accessCmd() *cobra.Command {
	var authDir string
	cmd := &cobra.Command{
		Use:   "access",
		Short: "List identities, issue and revoke credentials, print the server configuration",
		Long: `access manages who may connect to Keyward's NATS server. Every identity is a
NATS user with the permissions of its role (docs/security.md lists them);
credentials are files for --nats-creds / NATS_CREDS (and nats --creds).

  keyward access list                          every identity issued, with its role and scope
  keyward access issue NAME --role R [...]     a new credential (reader, producer, tenant-admin, ...)
  keyward access revoke NAME                   revoke it, at once on the running server
  keyward access server-config                 the nats-server authorization configuration

The authority (operator and account keys) is --auth-dir; keyward dev creates
it in .keyward/auth.`,
	}
	cmd.PersistentFlags().StringVar(&authDir, "auth-dir", envOr(a.Getenv, "KEYWARD_AUTH_DIR", ".keyward/auth"), "the authority: operator and account keys, identity registry (env KEYWARD_AUTH_DIR)")
	open := func() (*access.Authority, error) {
		if _, err := os.Stat(filepath.Join(authDir, "operator.nk")); err != nil {
			return nil, usagef("--auth-dir %s holds no authority (operator.nk): run keyward dev once, or point --auth-dir at the deployment's authority", authDir)
		}
		return access.Open(authDir)
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "Every identity issued: name, role, scope, issued, revoked",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			auth, err := open()
			if err != nil {
				return err
			}
			recs := auth.Identities()
			if a.jsonOut {
				return a.printJSON(recs)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSCOPE\tISSUED\tSTATE")
			for _, r := range recs {
				state := "active"
				if r.Revoked() {
					state = "revoked " + r.RevokedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, scopeText(r.Identity), r.IssuedAt.Format(time.RFC3339), state)
			}
			return tw.Flush()
		},
	}

	var id access.Identity
	var role, services, purposes, out string
	issue := &cobra.Command{
		Use:   "issue NAME --role ROLE [--tenant T] [--services a,b] [--purposes p,q] [--out FILE]",
		Short: "Issue a credential for a new identity (or a fresh one for an existing name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			auth, err := open()
			if err != nil {
				return err
			}
			id.Name, id.Role = args[0], access.Role(role)
			id.Services, id.Purposes = splitList(services), splitList(purposes)
			if err := id.Validate(); err != nil {
				return usageError{err}
			}
			creds, rec, err := auth.Issue(id)
			if err != nil {
				return err
			}
			if out == "" {
				out = access.CredsPath(a.credsDir, id.Name)
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(out, creds, 0o600); err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"identity": rec, "creds": out})
			}
			fmt.Fprintf(a.Stdout, "issued %s (role %s%s): credentials in %s\n", rec.Name, rec.Role, scopeSuffix(rec.Identity), out)
			fmt.Fprintf(a.Stdout, "use: --nats-creds %s   (nats CLI: --creds %s --inbox-prefix %s)\n", out, out, access.InboxPrefix(rec.Name))
			return nil
		},
	}
	issue.Flags().StringVar(&role, "role", "", "the identity's role: "+strings.Join(access.RoleNames(), ", "))
	issue.Flags().StringVar(&id.Tenant, "tenant", "", "the tenant of a tenant-admin")
	issue.Flags().StringVar(&services, "services", "", "a reader's or producer's services, comma separated (* for all)")
	issue.Flags().StringVar(&purposes, "purposes", "", "a reader's purposes, comma separated (* for all)")
	issue.Flags().StringVar(&out, "out", "", "where to write the credentials (default <creds-dir>/NAME.creds)")

	var systemCreds string
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke every credential of NAME, on the running server at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			auth, err := open()
			if err != nil {
				return err
			}
			acc, accJWT, err := auth.Revoke(args[0])
			if err != nil {
				return err
			}
			if systemCreds == "" {
				systemCreds = access.CredsPath(a.credsDir, IdentitySystem)
			}
			copts, err := access.ClientOptions(systemCreds)
			if err == nil {
				var topts []nats.Option
				if topts, err = a.tlsOptions(); err == nil {
					copts = append(copts, topts...)
				}
			}
			if err == nil {
				var nc *nats.Conn
				if nc, err = nats.Connect(a.natsURL, append(copts, nats.Name("keyward-access"), nats.Timeout(5*time.Second))...); err == nil {
					err = access.PushAccount(cmd.Context(), nc, accJWT)
					nc.Close()
				}
			}
			if err != nil {
				fmt.Fprintf(a.Stdout, "revoked %s in %s; the running server was not told (%v): it refuses the credential after `keyward access server-config` is applied or the account is pushed\n", args[0], authDir, err)
				return err
			}
			fmt.Fprintf(a.Stdout, "revoked %s: account %s pushed to %s; its connections are closed and it cannot connect again\n", args[0], acc, redactURL(a.natsURL))
			return nil
		},
	}
	revoke.Flags().StringVar(&systemCreds, "system-creds", "", "credentials of the system identity that pushes the account (default <creds-dir>/system.creds)")

	var resolverDir string
	serverConfig := &cobra.Command{
		Use:   "server-config",
		Short: "Print the nats-server authorization configuration (operator, system account, resolver, accounts)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			auth, err := open()
			if err != nil {
				return err
			}
			conf, err := auth.ServerConfig(access.ServerConfigOptions{ResolverDir: resolverDir})
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(a.Stdout, conf)
			return err
		},
	}
	serverConfig.Flags().StringVar(&resolverDir, "resolver-dir", "/data/nats/accounts", "where the server keeps account JWTs")

	cmd.AddCommand(list, issue, revoke, serverConfig)
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func scopeText(id access.Identity) string {
	var parts []string
	if id.Tenant != "" {
		parts = append(parts, "tenant="+id.Tenant)
	}
	if len(id.Services) > 0 {
		parts = append(parts, "services="+strings.Join(id.Services, ","))
	}
	if len(id.Purposes) > 0 {
		parts = append(parts, "purposes="+strings.Join(id.Purposes, ","))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func scopeSuffix(id access.Identity) string {
	if s := scopeText(id); s != "-" {
		return ", " + s
	}
	return ""
}
