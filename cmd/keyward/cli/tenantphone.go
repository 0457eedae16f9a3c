package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/enroll"
	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/pkg/tenant"
)

// keyward tenant phone: the tenant's phone settings (tenant.Config.Phone in
// KW_TENANTS), read by the phone-policy worker for every call admission.

// phoneSettings is what tenant phone prints with --json.
type phoneSettings struct {
	TenantID  string `json:"tenant_id"`
	Revision  uint64 `json:"revision"`
	DropCalls bool   `json:"drop_calls"`
	// Changed, Previous and EventID are set when --drop-calls was given:
	// whether the setting changed, what it was, and the Nats-Msg-Id of the
	// PhoneSettingsChanged published (empty when nothing changed).
	Changed  *bool  `json:"changed,omitempty"`
	Previous *bool  `json:"previous,omitempty"`
	EventID  string `json:"event_id,omitempty"`
}

func (a *App) tenantPhoneCmd() *cobra.Command {
	var tenantID, dropCalls string
	cmd := &cobra.Command{
		Use:   "phone --tenant T [--drop-calls on|off]",
		Short: "Show or set the tenant's phone settings (drop calls that cannot be recorded under its key)",
		Long: `phone prints the tenant's phone settings, or with --drop-calls sets them.

drop_calls decides what happens to a covered call whose recording cannot be
stored under the tenant's key (the key is unavailable and fallback does not
apply, or the key is revoked): on drops the call, off lets it go on without
a recording. The phone-policy worker applies it to new calls at admission
and to live calls when the key's status changes.

The change is asked of the enrollment service (keyward.key.enroll.<tenant>),
which only an operator or an admin of the tenant may ask. It is written with a
revision check, so a concurrent change to the tenant is never overwritten, and
announced by TenantChanged (who made it, the document before and after) and
the audit event PhoneSettingsChanged on keyward.lifecycle.phone_settings_changed.<tenant>
(stream KW_LIFECYCLE, Nats-Msg-Id phone_settings_changed.<tenant>.<revision>).
Setting the value the tenant has already changes nothing and publishes
nothing.`,
		Example: `  keyward tenant phone --tenant acme
  keyward tenant phone --tenant acme --drop-calls on`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := events.ValidateTenantID(tenantID); err != nil {
				return usagef("--tenant: %v", err)
			}
			if !cmd.Flags().Changed("drop-calls") {
				return a.showPhone(cmd, tenantID)
			}
			var want bool
			switch dropCalls {
			case "on":
				want = true
			case "off":
			default:
				return usagef("--drop-calls: %q is not a setting: use on (drop calls that cannot be recorded under the tenant's key) or off (let them go on unrecorded)", clipText(dropCalls))
			}
			return a.setDropCalls(cmd, tenantID, want)
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id (required)")
	cmd.Flags().StringVar(&dropCalls, "drop-calls", "", "on: drop a covered call that cannot be recorded under the tenant's key; off: let it go on unrecorded")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

func (a *App) showPhone(cmd *cobra.Command, tenantID string) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	store, closeConn, err := a.tenantStore(ctx, true)
	if err != nil {
		return err
	}
	defer closeConn()
	c, err := store.Get(ctx, tenantID)
	if errors.Is(err, tenant.ErrNotFound) {
		return fmt.Errorf("--tenant: %w", unknownTenant(tenantID))
	}
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(phoneSettings{TenantID: tenantID, Revision: c.Revision, DropCalls: c.Phone.DropCalls})
	}
	fmt.Fprintf(a.Stdout, "tenant %s (revision %d)\n  drop_calls  %s  %s\n", tenantID, c.Revision, onOff(c.Phone.DropCalls), dropCallsText(c.Phone.DropCalls))
	return nil
}

func (a *App) setDropCalls(cmd *cobra.Command, tenantID string, want bool) error {
	ctx, nc, _, done, err := a.session(cmd)
	if err != nil {
		return err
	}
	defer done()
	resp, err := enroll.NewClient(nc, a.timeout).PhoneSettings(ctx, tenantID, want)
	var ee *enroll.Error
	switch {
	case errors.As(err, &ee) && ee.Code == enroll.CodeUnknownTenant:
		return fmt.Errorf("--tenant: %w", unknownTenant(tenantID))
	case errors.As(err, &ee) && ee.Code == enroll.CodeConflict:
		return errors.New(ee.Message)
	case errors.As(err, &ee):
		return fmt.Errorf("the phone settings of tenant %s were not changed: %s", tenantID, ee.Error())
	case err != nil:
		return err
	}
	previous := want
	if resp.Previous != nil {
		previous = *resp.Previous
	}
	out := phoneSettings{TenantID: tenantID, Revision: resp.Revision, DropCalls: want, Previous: &previous}
	if resp.NoChange {
		out.Changed = new(bool)
		if a.jsonOut {
			return a.printJSON(out)
		}
		fmt.Fprintf(a.Stdout, "tenant %s already has drop_calls %s: nothing changed, no event published (revision %d)\n", tenantID, onOff(want), resp.Revision)
		return nil
	}
	changed := true
	out.Changed, out.EventID = &changed, resp.EventID
	if resp.Warning != "" {
		return fmt.Errorf("tenant %s: drop_calls is now %s (revision %d), but its audit events were not all published: %s", tenantID, onOff(want), resp.Revision, resp.Warning)
	}
	if a.jsonOut {
		return a.printJSON(out)
	}
	fmt.Fprintf(a.Stdout, "tenant %s: drop_calls %s (was %s), revision %d\n  %s\n  published PhoneSettingsChanged %s\n",
		tenantID, onOff(want), onOff(previous), resp.Revision, dropCallsText(want), out.EventID)
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func dropCallsText(drop bool) string {
	if drop {
		return "a covered call that cannot be recorded under the tenant's key is dropped"
	}
	return "a covered call that cannot be recorded under the tenant's key goes on without a recording"
}
