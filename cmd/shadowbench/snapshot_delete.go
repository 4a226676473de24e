package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotDeleteCmd(f *apiFlags) *cobra.Command {
	var set bool
	cmd := &cobra.Command{
		Use:   "delete SNAPSHOT | --set SET",
		Short: "Delete a snapshot, or every snapshot of a set",
		Long: `Delete one snapshot (DeleteSnapshots with VSS_OBJECT_SNAPSHOT) or, with
--set, every snapshot of a set and then the set, which leaves the listing.
The provider reclaims each target LUN (FillInLunInfo, then OnLunEmpty). For
an auto-release set the daemon releases the requester it holds, which sends
BackupShutdown to the writers. A set with no snapshot left (it failed, was
abandoned, or its snapshots were deleted one by one) is deleted at once.`,
		Example: "  shadowbench snapshot delete {8121ADFD-64AF-4750-876C-61F2B0015D95}\n" +
			"  shadowbench snapshot delete --set {675A76AA-4447-484E-B28F-68BC910E5D46}",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeSnapshots(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				kind := refSnapshot
				if set {
					kind = refSet
				}
				id, err := resolveRef(ctx, c, args[0], kind)
				if err != nil {
					return nil, err
				}
				if set {
					return c.DeleteSet(ctx, id)
				}
				return c.DeleteSnapshot(ctx, id)
			})
		},
	}
	cmd.Flags().BoolVar(&set, "set", false, "the ID is a snapshot set's: delete all its snapshots, then the set")
	return cmd
}
