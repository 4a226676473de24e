package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotRevertCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revert SNAPSHOT-ID",
		Short: "Copy a snapshot back onto its volume, inside the array",
		Long: `Revert the snapshot's volume to the snapshot's content (RevertToSnapshot:
the provider's ResyncLuns, in O(1) inside the array). I/O admitted before
the revert drains first; the snapshot is kept.`,
		Example: "  shadowbench snapshot revert {8121ADFD-64AF-4750-876C-61F2B0015D95}",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("snapshot ID", args[0])
			if err != nil {
				return err
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.RevertSnapshot(ctx, id)
			})
		},
	}
}
