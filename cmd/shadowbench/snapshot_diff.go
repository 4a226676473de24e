package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/vss"
)

func newSnapshotDiffCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "diff SNAPSHOT [AGAINST]",
		Short: "The extents where a snapshot differs from another of its volume, or from the volume now",
		Long: `List the byte ranges where SNAPSHOT's LUNs differ from AGAINST's, an older or
newer snapshot of the same volume, or, without AGAINST, from the volume's
LUNs as they are now: what an incremental backup between the two would
copy, as thin_delta tells it for dm-thin. No data is read: the cost follows
what changed, not the LUN's size. Ranges are whole copy-on-write grains; a
grain rewritten with the same bytes still counts. Each argument is an ID, a
set's name (snapshot create --name) or NAME/VOLUME.`,
		Example: "  shadowbench snapshot diff nightly-1 nightly-2\n" +
			"  shadowbench snapshot diff nightly-2 --json",
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: f.completeSnapshots(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				id, err := resolveRef(ctx, c, args[0], refSnapshot)
				if err != nil {
					return nil, err
				}
				var against *vss.ID
				if len(args) == 2 {
					a, err := resolveRef(ctx, c, args[1], refSnapshot)
					if err != nil {
						return nil, err
					}
					against = &a
				}
				return c.Diff(ctx, id, against)
			})
		},
	}
}
