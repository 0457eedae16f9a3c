package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// keyward tenant recipients add|remove|list: the email addresses the
// notifier tells of every key status change and lifecycle event of a tenant
// (tenant.Config.Recipients in KW_TENANTS).

func (a *App) tenantRecipientsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recipients",
		Short: "Name the email addresses told of the tenant's key status changes and lifecycle events",
		Long: `recipients edits the tenant's email recipients (the "recipients" list of its
configuration in KW_TENANTS). The notifier emails every recipient on every key
status change (available, degraded, unavailable, revoked) and every lifecycle
event (key enrolled, rotation started and completed, deprovisioning scheduled,
cancelled and completed).

Each address is checked as a tenant document's recipients are: a bare RFC 5322
address (name@example.com, without a display name, quotes or angle brackets),
at most 254 characters, unique regardless of case. add and remove ask the
enrollment service (keyward.key.enroll.<tenant>), which only an operator or an
admin of the tenant may ask: it writes the change with a revision check, so a
concurrent change to the tenant is never overwritten, and announces it by
TenantChanged (stream KW_LIFECYCLE) with who made it and the document before
and after.`,
	}
	cmd.AddCommand(a.tenantRecipientsAddCmd(), a.tenantRecipientsRemoveCmd(), a.tenantRecipientsListCmd())
	return cmd
}

// recipientsChange is what add and remove print with --json.
type recipientsChange struct {
	TenantID   string   `json:"tenant_id"`
	Revision   uint64   `json:"revision"`
	Recipients []string `json:"recipients"`
	// Changed are the addresses added or removed; Unchanged the addresses
	// add found listed already (as they are listed).
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged,omitempty"`
}

func (a *App) tenantRecipientsAddCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "add --tenant T EMAIL...",
		Short: "Add email recipients (an address listed already is left as it is)",
		Long: `add appends each address to the tenant's recipients. An address listed
already (in any case) is left as it is, with a note: add is idempotent. An
address that is not valid refuses the whole command (exit status 2) and
nothing is changed.`,
		Example: `  keyward tenant recipients add --tenant acme security@acme.example oncall@acme.example`,
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs, err := recipientArgs(tenantID, args)
			if err != nil {
				return err
			}
			return a.changeRecipients(cmd, tenantID, addrs, nil, func(ch *recipientsChange) {
				for _, addr := range ch.Unchanged {
					fmt.Fprintf(a.Stdout, "%s is already a recipient of tenant %s: nothing to add\n", addr, tenantID)
				}
				for _, addr := range ch.Changed {
					fmt.Fprintf(a.Stdout, "added %s\n", addr)
				}
			})
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (required)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func (a *App) tenantRecipientsRemoveCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "remove --tenant T EMAIL...",
		Short: "Remove email recipients (an address not listed is an error)",
		Long: `remove takes each address off the tenant's recipients, matching regardless
of case. An address that is not a recipient is an error (exit status 1) and
nothing is removed, so a typo never passes for a removal.`,
		Example: `  keyward tenant recipients remove --tenant acme oncall@acme.example`,
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs, err := recipientArgs(tenantID, args)
			if err != nil {
				return err
			}
			return a.changeRecipients(cmd, tenantID, nil, addrs, func(ch *recipientsChange) {
				for _, addr := range ch.Changed {
					fmt.Fprintf(a.Stdout, "removed %s\n", addr)
				}
			})
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (required)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func (a *App) tenantRecipientsListCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "list --tenant T",
		Short: "Print the tenant's email recipients, one per line (--json: an array)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
			defer cancel()
			store, closeConn, err := a.tenantStore(ctx, true)
			if err != nil {
				return err
			}
			defer closeConn()
			c, err := store.Get(ctx, tenantID)
			if errors.Is(err, tenant.ErrNotFound) {
				return unknownTenant(tenantID)
			}
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(nonNil(c.Recipients))
			}
			for _, r := range c.Recipients {
				fmt.Fprintln(a.Stdout, r)
			}
			if len(c.Recipients) == 0 {
				fmt.Fprintf(a.Stderr, "tenant %s has no recipients: nobody is emailed of its key events (keyward tenant recipients add --tenant %s EMAIL)\n", tenantID, tenantID)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (required)")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// changeRecipients asks the enrollment service to remove and add the
// addresses (it writes nothing when nothing changes) and prints the
// outcome: report's lines, then the count, or with --json a
// recipientsChange.
func (a *App) changeRecipients(cmd *cobra.Command, tenantID string, add, remove []string, report func(*recipientsChange)) error {
	ctx, nc, _, done, err := a.session(cmd)
	if err != nil {
		return err
	}
	defer done()
	resp, err := enroll.NewClient(nc, a.timeout).Recipients(ctx, tenantID, add, remove)
	var ee *enroll.Error
	switch {
	case errors.As(err, &ee) && ee.Code == enroll.CodeNotRecipient:
		return notRecipients(tenantID, resp.Absent, resp.Recipients)
	case errors.As(err, &ee) && ee.Code == enroll.CodeUnknownTenant:
		return unknownTenant(tenantID)
	case errors.As(err, &ee) && ee.Code == enroll.CodeConflict:
		return errors.New(ee.Message)
	case errors.As(err, &ee):
		return fmt.Errorf("the recipients of tenant %s were not changed: %s", tenantID, ee.Error())
	case err != nil:
		return err
	}
	warn(a.Stderr, resp.Warning)
	ch := recipientsChange{TenantID: tenantID, Revision: resp.Revision, Recipients: nonNil(resp.Recipients),
		Changed: slices.Concat(resp.Removed, resp.Added), Unchanged: resp.Unchanged}
	if a.jsonOut {
		ch.Changed = nonNil(ch.Changed)
		return a.printJSON(ch)
	}
	report(&ch)
	fmt.Fprintf(a.Stdout, "tenant %s has %d recipient%s (revision %d)\n", tenantID, len(ch.Recipients), plural(len(ch.Recipients)), ch.Revision)
	return nil
}

// recipientArgs checks the tenant id and the addresses given: at least one,
// each valid as a tenant document's recipient. Addresses repeated in the
// arguments (in any case) are kept once. Every problem is reported at once,
// as a usage error.
func recipientArgs(tenantID string, args []string) ([]string, error) {
	if err := events.ValidateTenantID(tenantID); err != nil {
		return nil, usagef("--tenant: %v", err)
	}
	if len(args) == 0 {
		return nil, usagef("give at least one email address, e.g. security@%s.example", tenantID)
	}
	var errs []error
	var addrs []string
	for _, s := range args {
		if err := checkRecipient(s); err != nil {
			errs = append(errs, err)
			continue
		}
		if indexFold(addrs, s) < 0 {
			addrs = append(addrs, s)
		}
	}
	if len(errs) > 0 {
		return nil, usageError{errors.Join(errs...)}
	}
	return addrs, nil
}

// checkRecipient validates one address exactly as tenant.Validate validates
// a recipient (the enrollment service checks it the same way).
func checkRecipient(addr string) error {
	if p := enroll.RecipientProblem(addr); p != "" {
		return errors.New(p)
	}
	return nil
}

// notRecipientsError: remove named addresses the tenant does not list.
type notRecipientsError struct {
	tenantID string
	absent   []string
	listed   []string
}

func notRecipients(tenantID string, absent, listed []string) *notRecipientsError {
	return &notRecipientsError{tenantID: tenantID, absent: absent, listed: listed}
}

func (e *notRecipientsError) Error() string {
	what := "is not a recipient"
	if len(e.absent) > 1 {
		what = "are not recipients"
	}
	listed := "it has none"
	if len(e.listed) > 0 {
		listed = "its recipients are " + strings.Join(e.listed, ", ")
	}
	return fmt.Sprintf("%s %s of tenant %s (%s): nothing was removed; check the spelling (keyward tenant recipients list --tenant %s)",
		strings.Join(e.absent, ", "), what, e.tenantID, listed, e.tenantID)
}

func unknownTenant(tenantID string) error {
	return fmt.Errorf("tenant %s is not configured: enroll its key first (keyward tenant key add --tenant %s --uri KEY-URI) or apply its document (keyward tenant apply -f FILE)", tenantID, tenantID)
}

// indexFold returns the index of the first element of list equal to s
// regardless of case (as tenant validation compares recipients), or -1.
func indexFold(list []string, s string) int {
	low := strings.ToLower(s)
	for i, x := range list {
		if strings.ToLower(x) == low {
			return i
		}
	}
	return -1
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// clipText shortens an argument quoted in an error.
func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
