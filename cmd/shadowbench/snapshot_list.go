package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotListCmd(f *apiFlags) *cobra.Command {
	var sets bool
	cmd := &cobra.Command{
		Use:   "list [--sets]",
		Short: "List the snapshots, or the snapshot sets",
		Long: `List the snapshots the coordinator holds, with their set, volume, target
LUNs and NBD exports. With --sets, list the snapshot sets the daemon ran,
failed ones included, with their outcome; a deleted set is not listed.`,
		Example: "  shadowbench snapshot list\n  shadowbench snapshot list --sets --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				if sets {
					l, err := c.Sets(ctx)
					return daemon.SetList(l), err
				}
				l, err := c.Snapshots(ctx)
				return daemon.SnapshotList(l), err
			})
		},
	}
	cmd.Flags().BoolVar(&sets, "sets", false, "list snapshot sets instead")
	return cmd
}
