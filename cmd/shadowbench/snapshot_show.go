package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show SNAPSHOT-OR-SET",
		Short: "Describe a snapshot, or a snapshot set with its writers and timeline",
		Long: `Describe a snapshot (its properties, LUNs and exports) or, for a set ID,
the set: its outcome, snapshots, the writers' status after it, and the
timeline of every step (offset, duration, kind, name, actor, result).`,
		Example:           "  shadowbench snapshot show {675A76AA-4447-484E-B28F-68BC910E5D46}",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeSnapshots(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				id, err := resolveRef(ctx, c, args[0], refEither)
				if err != nil {
					return nil, err
				}
				return c.Describe(ctx, id)
			})
		},
	}
}
