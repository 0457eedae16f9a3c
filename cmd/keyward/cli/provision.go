package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/pkg/events"
)

// provisionCmd is `keyward provision`: create or update every stream and
// bucket, as the provisioner identity. With access control on, workers may
// not create streams; this is the one command that does (keyward dev runs
// it itself at start).
func (a *App) provisionCmd() *cobra.Command {
	var replicas int
	cmd := &cobra.Command{
		Use:   "provision [--replicas 3]",
		Short: "Create or update Keyward's streams and buckets (as the provisioner identity)",
		Long: `provision creates or updates every stream, Key-Value and Object Store bucket
Keyward uses (docs/operations.md lists them). It is idempotent. Run it once
per deployment and after an upgrade, with the provisioner's credentials
(--nats-creds, or .keyward/creds/provisioner.creds in the keyward dev
directory): the workers' own identities may not create or change streams.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicas < 1 || replicas > 5 {
				return usagef("--replicas %d: want 1 (one server) to 5; 3 on a cluster", replicas)
			}
			ctx, _, js, done, err := a.sessionAs(cmd, IdentityProvisioner)
			if err != nil {
				return err
			}
			defer done()
			if err := events.Provision(ctx, js, events.ProvisionOptions{Replicas: replicas}); err != nil {
				return err
			}
			n := len(events.StreamConfigs(events.ProvisionOptions{})) + len(events.KeyValueConfigs(events.ProvisionOptions{})) + len(events.ObjectStoreConfigs(events.ProvisionOptions{}))
			fmt.Fprintf(a.Stdout, "provisioned %d streams and buckets (replicas %d)\n", n, replicas)
			return nil
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 1, "replicas of every stream and bucket (3 on a NATS cluster)")
	return cmd
}
