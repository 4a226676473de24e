package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotExposeCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "expose SNAPSHOT",
		Short: "Export a snapshot's LUN over NBD and print its URL",
		Long: `Make a snapshot's LUN reachable by hosts (ExposeSnapshot) and print its
NBD export name and URLs: read-only, or read-write after "snapshot break
--make-read-write". The snapshot must be imported (auto-import does it for
sets that are not transportable).`,
		Example:           "  shadowbench snapshot expose {8121ADFD-64AF-4750-876C-61F2B0015D95}",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeSnapshots(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				id, err := resolveRef(ctx, c, args[0], refSnapshot)
				if err != nil {
					return nil, err
				}
				return c.ExposeSnapshot(ctx, id)
			})
		},
	}
}
