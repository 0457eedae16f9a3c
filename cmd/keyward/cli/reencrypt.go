package cli

import (
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
	"github.com/keyward/keyward/services/re-encryptor/reencryptor"
)

func (a *App) reencryptCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "reencrypt", Short: "Watch the re-encryptor's jobs (heal, rotation, deprovisioning)"}
	cmd.AddCommand(a.reencryptStatusCmd())
	return cmd
}

func (a *App) reencryptStatusCmd() *cobra.Command {
	var tenantID string
	cmd := &cobra.Command{
		Use:   "status [--tenant T]",
		Short: "Show every re-encryption job: state, progress, rate and ETA",
		Long: `status prints the re-encryption jobs recorded in KV KW_REENCRYPT_JOBS (one per
tenant and purpose: the running or paused one, or the last that ended):

  heal         fallback copies re-encrypted under the customer key once it is back
  rotation     assets rewrapped from retiring keys to the new primary
  deprovision  assets rewrapped to the platform key at the scheduled date

A paused job waits for a key to come back; a stopped one says why (e.g.
customer_key_revoked) and what is left is exactly what the ledger says.
Live progress events are on keyward.reencrypt.progress.<tenant>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenantID != "" {
				if err := events.ValidateTenantID(tenantID); err != nil {
					return usageError{fmt.Errorf("--tenant: %w", err)}
				}
			}
			ctx, _, js, done, err := a.session(cmd)
			if err != nil {
				return err
			}
			defer done()
			store, err := reencryptor.OpenJobs(ctx, js)
			if err != nil {
				return err
			}
			jobs, err := store.List(ctx, tenantID)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if jobs == nil {
					jobs = []*reencryptor.Job{}
				}
				return a.printJSON(jobs)
			}
			if len(jobs) == 0 {
				if tenantID != "" {
					fmt.Fprintf(a.Stdout, "no re-encryption job for tenant %s\n", tenantID)
				} else {
					fmt.Fprintln(a.Stdout, "no re-encryption jobs")
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tPURPOSE\tSTATE\tDONE\tLEFT\tFAILED\tRATE\tETA\tTO KEY\tSTARTED")
			for _, j := range jobs {
				state := string(j.State)
				if j.Reason != "" {
					state += " (" + j.Reason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", j.TenantID, j.Purpose, state,
					j.Done, j.Left, j.Failed, rateText(j), etaText(j), j.ToKeyURI, j.StartedAt.UTC().Format(time.RFC3339))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, j := range jobs {
				if j.Detail != "" {
					fmt.Fprintf(a.Stdout, "%s %s: %s\n", j.TenantID, j.Purpose, j.Detail)
				}
				for _, f := range j.FailedAssets {
					fmt.Fprintf(a.Stdout, "%s %s: asset %s failed: %s\n", j.TenantID, j.Purpose, f.AssetID, f.Error)
				}
				if j.State == events.JobCompleted && !j.Finalized {
					fmt.Fprintf(a.Stdout, "%s %s: completed; finishing (configuration update and completion event)\n", j.TenantID, j.Purpose)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "only this tenant's jobs")
	return cmd
}

func rateText(j *reencryptor.Job) string {
	if j.State != events.JobRunning || j.Rate <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/s %s/s", j.Rate, byteCount(j.BytesRate))
}

func etaText(j *reencryptor.Job) string {
	if j.State != events.JobRunning || j.Rate <= 0 || j.Left <= 0 {
		return "-"
	}
	return (time.Duration(float64(j.Left)/j.Rate*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
}

func byteCount(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 || b >= 100 || math.Trunc(b) == b {
		return fmt.Sprintf("%.0f %s", b, units[i])
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f %s", b, units[i]), ".0")
}
