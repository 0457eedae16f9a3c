package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/keystatus"
	"github.com/keyward/keyward/pkg/tenant"
)

func (a *App) tenantKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Enroll and rotate tenants' keys, list them, print the policy a customer must add"}
	cmd.AddCommand(a.tenantKeyAddCmd(), a.tenantKeyRotateCmd(), a.tenantKeyListCmd(), a.tenantKeyPolicyCmd())
	return cmd
}

func (a *App) tenantKeyAddCmd() *cobra.Command {
	var tenantID, uri, role string
	cmd := &cobra.Command{
		Use:   "add --tenant T --uri KEY-URI [--role primary|replica]",
		Short: "Enroll a key after a live round trip proves the platform can use it",
		Long: `add asks the enrollment service (part of the encryptor, which holds the
platform's KMS credentials) to enroll a key: it checks the URI and that the
platform serves the key's region, then performs a live round trip with the
platform's own identity under the tenant's encryption context
(GenerateDataKey, Decrypt, Encrypt, Decrypt, compare). Only then is the key
stored, with its enrollment time; assets created from then on are covered.

On failure nothing is stored and the error says what to change: a policy
missing a permission, a wrong endpoint or region, a disabled key, a region
the platform does not serve.

A tenant has one primary key and may have replicas on other endpoints
(regions or vaults): when the primary is unreachable, a replica is used
before the fallback key.`,
		Example: `  keyward tenant key add --tenant acme --uri awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
  keyward tenant key add --tenant acme --role replica --uri awskms://arn:aws:kms:eu-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			ctx, nc, _, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := enroll.NewClient(nc, a.timeout).Add(ctx, enroll.Request{TenantID: tenantID, KeyURI: uri, Role: tenant.KeyRole(role)})
			if done, err := a.enrollOutcome(resp, err, fmt.Sprintf("%s was not enrolled for %s", uri, tenantID)); done {
				return err
			}
			warn(a.Stderr, resp.Warning)
			w := a.Stdout
			fmt.Fprintf(w, "enrolled %s for tenant %s as %s (key version %s, enrolled at %s)\n", resp.Key.URI, tenantID, resp.Key.Role, resp.KeyVersion, resp.Key.EnrolledAt.Format("2006-01-02T15:04:05Z"))
			ops := make([]string, 0, len(resp.Probe))
			for op, ms := range resp.Probe {
				ops = append(ops, fmt.Sprintf("%s %.1f ms", op, ms))
			}
			sort.Strings(ops)
			fmt.Fprintf(w, "  round trip   %s\n", strings.Join(ops, ", "))
			if len(resp.Identities) > 0 {
				fmt.Fprintf(w, "  used by      ")
				for i, id := range resp.Identities {
					if i > 0 {
						fmt.Fprintf(w, "\n               ")
					}
					region := id.Region
					if region == "" {
						region = "all regions"
					}
					fmt.Fprintf(w, "%s %s (%s)", id.Kind, id.ID, region)
				}
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "  covers       assets created from now on; tenant revision %d\n", resp.Revision)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenantID, "tenant", "", "tenant id (required)")
	f.StringVar(&uri, "uri", "", "key URI: awskms://…, ocikms://…?endpoint=…, azurekv://… (required)")
	f.StringVar(&role, "role", "primary", "primary, or replica (same key material on another endpoint)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("uri")
	return cmd
}

func (a *App) tenantKeyListCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "list --tenant T",
		Short: "List a tenant's keys with their role, enrollment time and current status, and a scheduled deprovisioning",
		Long: `list prints the tenant's keys: the primary (encrypts new assets), replicas
(the primary's key material on other endpoints) and retiring keys (old
primaries of a rotation: they only decrypt, until the rotation job has
rewrapped their assets and RotationCompleted says they may be disabled).
A scheduled, running or completed deprovisioning is shown under the table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, _, js, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			store, err := tenant.OpenStore(ctx, js, tenant.WithValidateOptions(tenant.AllowLocalKeys(true)))
			if err != nil {
				return err
			}
			cfg, err := store.Get(ctx, tenantID)
			if errors.Is(err, tenant.ErrNotFound) {
				return fmt.Errorf("tenant %s has no keys (it is not configured)", tenantID)
			}
			if err != nil {
				return err
			}
			kv, err := js.KeyValue(ctx, events.BucketKeyStatus)
			if err != nil {
				return err
			}
			type row struct {
				URI        string           `json:"uri"`
				Role       tenant.KeyRole   `json:"role"`
				EnrolledAt string           `json:"enrolled_at"`
				Status     events.KeyStatus `json:"status"`
				Reason     string           `json:"reason,omitempty"`
			}
			var rows []row
			for _, k := range cfg.Keys {
				r := row{URI: k.URI, Role: k.Role, EnrolledAt: k.EnrolledAt.Format("2006-01-02T15:04:05Z07:00"), Status: "unknown"}
				if e, err := kv.Get(ctx, keystatus.Key(tenantID, k.URI)); err == nil {
					if rec, err := keystatus.Parse(e.Value()); err == nil {
						r.Status, r.Reason = rec.Status, rec.Reason
					}
				}
				rows = append(rows, r)
			}
			if a.jsonOut {
				return a.printJSON(rows)
			}
			if len(rows) > 0 {
				tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY\tROLE\tENROLLED\tSTATUS")
				for _, r := range rows {
					st := string(r.Status)
					if r.Reason != "" {
						st += " (" + r.Reason + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.URI, r.Role, r.EnrolledAt, st)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.Stdout, "tenant %s has no keys: every asset goes under the platform key\n", tenantID)
			}
			if n := len(cfg.KeysWithRole(tenant.RoleRetiring)); n > 0 {
				fmt.Fprintf(a.Stdout, "%d retiring: decrypt only, until the rotation job has rewrapped their assets; keep them enabled until RotationCompleted\n", n)
			}
			if line := describeDeprovision(cfg, time.Now()); line != "" {
				fmt.Fprintln(a.Stdout, line)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (required)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// enrollOutcome settles a reply of the enrollment service: a refusal comes
// back as an error saying what did not happen (the reply printed first
// with --json), a transport error as is, and with --json a success is
// printed; done says the caller has nothing more to print.
func (a *App) enrollOutcome(resp *enroll.Response, err error, what string) (done bool, _ error) {
	var ee *enroll.Error
	if errors.As(err, &ee) {
		if a.jsonOut {
			_ = a.printJSON(resp)
		}
		return true, fmt.Errorf("%s: %s", what, ee.Error())
	}
	if err != nil {
		return true, err
	}
	if a.jsonOut {
		return true, a.printJSON(resp)
	}
	return false, nil
}
