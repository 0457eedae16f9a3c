package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

const stampLayout = "2006-01-02T15:04:05Z07:00"

func (a *App) tenantKeyRotateCmd() *cobra.Command {
	var tenantID, uri string
	cmd := &cobra.Command{
		Use:   "rotate --tenant T --uri KEY-URI",
		Short: "Make a new key the tenant's primary; the old one retires once every asset is rewrapped",
		Long: `rotate asks the enrollment service to make a new key the tenant's primary
key. The new key passes the same checks and live round trip as
'keyward tenant key add'. Then, in one update of the tenant's configuration,
the old primary (and its replicas) become "retiring" and the new key becomes
the primary: assets created from now on are encrypted under the new key, and
the retiring keys are never used for new assets.

A rotation job of the re-encryptor then rewraps every asset from the old key
to the new one. The old key must stay enabled until the job completes:
RotationCompleted (stream KW_LIFECYCLE) says the retired keys may be
disabled. Watch the job with 'keyward reencrypt status --tenant T'.

Refused (conflict) when the tenant has no primary key, when the key is
already enrolled, or when a deprovisioning is scheduled (cancel it first).

For a new version of the same key (automatic rotation by the provider) no
rotation is needed: see docs/operations.md.`,
		Example: `  keyward tenant key rotate --tenant acme --uri awskms://arn:aws:kms:eu-west-2:111122223333:key/9876fedc-98fe-76dc-54ba-0987654321fe`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			if strings.TrimSpace(uri) == "" {
				return usagef("--uri is empty: give the URI of the new key, e.g. awskms://arn:aws:kms:<region>:<account>:key/<id>")
			}
			ctx, nc, _, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := enroll.NewClient(nc, a.timeout).Rotate(ctx, enroll.RotateRequest{TenantID: tenantID, KeyURI: uri})
			if done, err := a.enrollOutcome(resp, err, fmt.Sprintf("tenant %s was not rotated to %s", tenantID, uri)); done {
				return err
			}
			a.printRotation(tenantID, resp)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenantID, "tenant", "", "tenant id (required)")
	f.StringVar(&uri, "uri", "", "URI of the new key: awskms://…, ocikms://…?endpoint=…, azurekv://… (required)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("uri")
	return cmd
}

func (a *App) printRotation(tenantID string, resp *enroll.Response) {
	w := a.Stdout
	next := resp.Key.URI
	fmt.Fprintf(w, "rotated tenant %s to %s (key version %s, enrolled at %s)\n", tenantID, next, resp.KeyVersion, resp.Key.EnrolledAt.Format(stampLayout))
	fmt.Fprintf(w, "  new primary  %s: encrypts every asset created from now on\n", next)
	for i, k := range resp.Retiring {
		label := "  retiring     "
		if i > 0 {
			label = "               "
		}
		was := "the old primary"
		if i > 0 {
			was = "a replica of the old primary"
		}
		fmt.Fprintf(w, "%s%s (%s): decrypts only, never encrypts again\n", label, k, was)
	}
	ops := make([]string, 0, len(resp.Probe))
	for op, ms := range resp.Probe {
		ops = append(ops, fmt.Sprintf("%s %.1f ms", op, ms))
	}
	sort.Strings(ops)
	fmt.Fprintf(w, "  round trip   %s\n", strings.Join(ops, ", "))
	if len(resp.Retiring) > 0 {
		old := resp.Retiring[0]
		keep := old
		if len(resp.Retiring) > 1 {
			keep = strings.Join(resp.Retiring, " and ")
		}
		fmt.Fprintf(w, "a rotation job rewraps every asset from %s to %s; keep %s enabled until RotationCompleted (watch with `keyward reencrypt status --tenant %s`)\n",
			old, next, keep, tenantID)
	}
	fmt.Fprintf(w, "tenant revision %d\n", resp.Revision)
	warn(a.Stderr, resp.Warning)
}

func warn(w io.Writer, msg string) {
	if msg != "" {
		fmt.Fprintf(w, "warning: %s\n", msg)
	}
}

func (a *App) tenantDeprovisionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deprovision",
		Short: "Schedule or cancel a tenant's deprovisioning (every asset moves to the platform key)",
		Long: `A deprovisioning ends a tenant's use of customer-managed keys. From its date
on, new assets are encrypted under the platform key (coverage
"deprovisioned"), and a deprovision job of the re-encryptor rewraps every
stored asset from the tenant's keys (and the fallback key) to the platform
key. When it is done, the tenant's configuration has no keys and
DeprovisionCompleted (stream KW_LIFECYCLE) names the keys the tenant may now
disable. Until then the tenant must keep its keys enabled.

A deprovisioning can be rescheduled or cancelled until its date; once it
has started it cannot be cancelled.`,
	}
	cmd.AddCommand(a.tenantDeprovisionScheduleCmd(), a.tenantDeprovisionCancelCmd())
	return cmd
}

// parseAt reads --at: "now" or an RFC 3339 time.
func parseAt(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "now") {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usagef("--at: %q is not a time: give an RFC 3339 time such as 2026-12-31T00:00:00Z, or now", v)
	}
	return t, nil
}

func (a *App) tenantDeprovisionScheduleCmd() *cobra.Command {
	var tenantID, atFlag string
	cmd := &cobra.Command{
		Use:   "schedule --tenant T --at <RFC 3339 | now>",
		Short: "Deprovision a tenant at a date (or now); reschedule one that has not started",
		Long: `schedule sets the date of the tenant's deprovisioning. A date in the past, or
"now", starts it at once. Scheduling again before the date replaces it.
Refused (conflict) when the tenant has no keys, is deprovisioned already, or
its deprovisioning has started.`,
		Example: `  keyward tenant deprovision schedule --tenant acme --at 2026-12-31T00:00:00Z
  keyward tenant deprovision schedule --tenant acme --at now`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			at, err := parseAt(atFlag)
			if err != nil {
				return err
			}
			ctx, nc, _, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := enroll.NewClient(nc, a.timeout).ScheduleDeprovision(ctx, enroll.ScheduleDeprovisionRequest{TenantID: tenantID, At: at})
			if done, err := a.enrollOutcome(resp, err, fmt.Sprintf("the deprovisioning of tenant %s was not scheduled", tenantID)); done {
				return err
			}
			w := a.Stdout
			d := resp.Deprovision
			if !d.At.After(d.ScheduledAt) {
				fmt.Fprintf(w, "deprovisioning of tenant %s started now (%s)\n", tenantID, d.At.Format(stampLayout))
				fmt.Fprintf(w, "  new assets   go under the platform key from now on\n")
				fmt.Fprintf(w, "  cancel       no longer possible: it has started\n")
			} else {
				fmt.Fprintf(w, "deprovisioning of tenant %s scheduled for %s\n", tenantID, d.At.Format(stampLayout))
				fmt.Fprintf(w, "  new assets   go under the platform key from %s on\n", d.At.Format(stampLayout))
				fmt.Fprintf(w, "  cancel       until then: keyward tenant deprovision cancel --tenant %s\n", tenantID)
			}
			fmt.Fprintf(w, "  stored       a deprovision job rewraps every stored asset to the platform key; keep the tenant's keys enabled until DeprovisionCompleted (watch with `keyward reencrypt status --tenant %s`)\n", tenantID)
			fmt.Fprintf(w, "tenant revision %d\n", resp.Revision)
			warn(a.Stderr, resp.Warning)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tenantID, "tenant", "", "tenant id (required)")
	f.StringVar(&atFlag, "at", "", `when the deprovisioning starts: an RFC 3339 time (2026-12-31T00:00:00Z) or "now" (required)`)
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("at")
	return cmd
}

func (a *App) tenantDeprovisionCancelCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "cancel --tenant T",
		Short: "Cancel a scheduled deprovisioning before its date",
		Long: `cancel removes the tenant's scheduled deprovisioning. Refused (conflict)
when nothing is scheduled or when the deprovisioning has started: a started
deprovisioning completes with DeprovisionCompleted.`,
		Example: `  keyward tenant deprovision cancel --tenant acme`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			ctx, nc, _, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			resp, err := enroll.NewClient(nc, a.timeout).CancelDeprovision(ctx, tenantID)
			if done, err := a.enrollOutcome(resp, err, fmt.Sprintf("the deprovisioning of tenant %s was not cancelled", tenantID)); done {
				return err
			}
			fmt.Fprintf(a.Stdout, "cancelled the deprovisioning of tenant %s scheduled for %s; its keys protect new assets as before\n",
				tenantID, resp.Deprovision.At.Format(stampLayout))
			fmt.Fprintf(a.Stdout, "tenant revision %d\n", resp.Revision)
			warn(a.Stderr, resp.Warning)
			return nil
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (required)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// describeDeprovision is the line `tenant key list` and `tenant show` print
// about a tenant's deprovisioning, "" when there is none.
func describeDeprovision(c *tenant.Config, now time.Time) string {
	switch {
	case c.DeprovisionedAt != nil:
		return fmt.Sprintf("deprovisioned at %s: every asset is under the platform key", c.DeprovisionedAt.Format(stampLayout))
	case c.Deprovision == nil:
		return ""
	case c.Deprovisioning(now):
		return fmt.Sprintf("deprovisioning since %s: new assets go under the platform key and stored ones are being moved there; keep the keys enabled until DeprovisionCompleted", c.Deprovision.At.Format(stampLayout))
	}
	return fmt.Sprintf("deprovisioning scheduled for %s (scheduled %s); cancel with keyward tenant deprovision cancel --tenant %s",
		c.Deprovision.At.Format(stampLayout), c.Deprovision.ScheduledAt.Format(stampLayout), c.TenantID)
}
