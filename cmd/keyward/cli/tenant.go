package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/tenant"
)

func (a *App) tenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Configure tenants (KV bucket KW_TENANTS)"}
	cmd.AddCommand(a.tenantApplyCmd(), a.tenantShowCmd(), a.tenantKeyCmd(), a.tenantDeprovisionCmd(), a.tenantRecipientsCmd(), a.tenantPhoneCmd())
	return cmd
}

func (a *App) tenantStore(ctx context.Context, allowLocal bool) (*tenant.Store, func(), error) {
	nc, js, err := a.connect()
	if err != nil {
		return nil, nil, err
	}
	store, err := tenant.OpenStore(ctx, js, tenant.WithValidateOptions(tenant.AllowLocalKeys(allowLocal)))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return store, nc.Close, nil
}

func (a *App) tenantApplyCmd() *cobra.Command {
	var file string
	var allowLocal bool
	cmd := &cobra.Command{
		Use:   "apply -f tenant.json",
		Short: "Create or update a tenant from a JSON document (schemas/tenant.schema.json)",
		Long: `apply validates the document (every problem reported at once, naming the
field and the fix), then sends it to the enrollment service
(keyward.key.enroll.<tenant>), which validates it again, refuses a key another
tenant has enrolled, and creates the tenant or updates it, checked against the
revision read just before so a concurrent change is never overwritten
silently. Only an operator or an admin of the tenant may apply it; the change
is announced by TenantChanged (stream KW_LIFECYCLE) with who made it and the
document before and after.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r io.Reader = a.Stdin
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			data, err := io.ReadAll(io.LimitReader(r, 1<<20))
			if err != nil {
				return err
			}
			cfg, err := tenant.Parse(data, tenant.AllowLocalKeys(allowLocal))
			if err != nil {
				return fmt.Errorf("%s is not a valid tenant document:\n  %s", file, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			}
			ctx, nc, _, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := enroll.NewClient(nc, a.timeout).Apply(ctx, cfg.TenantID, data)
			var ee *enroll.Error
			switch {
			case errors.As(err, &ee) && ee.Code == enroll.CodeInvalidDocument:
				return fmt.Errorf("%s is not a valid tenant document:\n  %s", file, strings.ReplaceAll(ee.Message, "\n", "\n  "))
			case errors.As(err, &ee) && ee.Code == enroll.CodeConflict:
				return errors.New(ee.Message)
			case errors.As(err, &ee):
				return fmt.Errorf("tenant %s was not applied: %s", cfg.TenantID, ee.Error())
			case err != nil:
				return err
			}
			warn(a.Stderr, resp.Warning)
			stored := resp.Tenant
			if stored == nil {
				return fmt.Errorf("tenant %s: the enrollment service's reply has no tenant document (revision %d)", cfg.TenantID, resp.Revision)
			}
			stored.Revision = resp.Revision
			if a.jsonOut {
				return a.printJSON(stored)
			}
			fmt.Fprintf(a.Stdout, "tenant %s applied (revision %d)\n", stored.TenantID, stored.Revision)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "tenant document (- for stdin)")
	cmd.Flags().BoolVar(&allowLocal, "allow-local-keys", false, "accept localkms:// customer keys (dev only; the enrollment service accepts them only when it runs with AllowLocalKeys)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

func (a *App) tenantShowCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "show [--tenant T]",
		Short: "Show one tenant's configuration, or list every tenant",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
			defer cancel()
			store, closeConn, err := a.tenantStore(ctx, true)
			if err != nil {
				return err
			}
			defer closeConn()
			if tenantID != "" {
				cfg, err := store.Get(ctx, tenantID)
				if errors.Is(err, tenant.ErrNotFound) {
					return fmt.Errorf("tenant %s is not configured (its assets go under the platform key)", tenantID)
				}
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(cfg)
				}
				a.printTenant(cfg)
				return nil
			}
			all, err := store.List(ctx)
			if err != nil && len(all) == 0 {
				return err
			}
			if a.jsonOut {
				return a.printJSON(all)
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tPRIMARY KEY\tFALLBACK\tSERVICES\tUSERS\tREVISION")
			for _, c := range all {
				pk, _ := c.PrimaryKey()
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%d\n", c.TenantID, orDash(pk.URI), c.Fallback, strings.Join(c.Services, ","), strings.Join(c.LicensedUsers, ","), c.Revision)
			}
			tw.Flush()
			return err
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (default: list every tenant)")
	return cmd
}

func (a *App) printTenant(c *tenant.Config) {
	w := a.Stdout
	fmt.Fprintf(w, "tenant %s (revision %d)\n", c.TenantID, c.Revision)
	if c.DisplayName != "" {
		fmt.Fprintf(w, "  name          %s\n", c.DisplayName)
	}
	for _, k := range c.Keys {
		fmt.Fprintf(w, "  key           %s  %s, enrolled %s\n", k.URI, k.Role, k.EnrolledAt.Format("2006-01-02 15:04:05Z07:00"))
	}
	if len(c.Keys) == 0 {
		fmt.Fprintf(w, "  key           none: every asset goes under the platform key\n")
	}
	fmt.Fprintf(w, "  services      %s\n", orDash(strings.Join(c.Services, ", ")))
	fmt.Fprintf(w, "  users         %s\n", orDash(strings.Join(c.LicensedUsers, ", ")))
	fmt.Fprintf(w, "  fallback      %v\n", c.Fallback)
	fmt.Fprintf(w, "  drop calls    %v\n", c.Phone.DropCalls)
	fmt.Fprintf(w, "  recipients    %s\n", orDash(strings.Join(c.Recipients, ", ")))
	if line := describeDeprovision(c, time.Now()); line != "" {
		fmt.Fprintf(w, "  deprovision   %s\n", line)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
