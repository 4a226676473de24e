package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotRevertCmd(f *apiFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "revert SNAPSHOT",
		Short: "Copy a snapshot back onto its volume, inside the array",
		Long: `Revert the snapshot's volume to the snapshot's content (RevertToSnapshot:
the provider's ResyncLuns, in O(1) inside the array). I/O admitted before
the revert drains first; the snapshot is kept.

The data changes under the clients of the volume's LUNs, so a revert is
refused while NBD clients have them open (unmount and disconnect first, as
LVM's merge waits for the origin to close); --force disconnects them, and
their requests in flight fail.`,
		Example:           "  shadowbench snapshot revert {8121ADFD-64AF-4750-876C-61F2B0015D95}",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeSnapshots(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				id, err := resolveRef(ctx, c, args[0], refSnapshot)
				if err != nil {
					return nil, err
				}
				return c.RevertSnapshot(ctx, id, force)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "disconnect the NBD clients of the volume's LUNs first")
	return cmd
}
