package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNDeleteCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete LUNs",
		Long: `Delete LUNs from the array. I/O in flight or queued on them fails with
EIO; their blocks return to the store unless snapshots or clones share
them. The deletion stops at the first LUN that cannot be deleted.`,
		Example: "  shadowbench lun delete scratch",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				var res daemon.DeleteResult
				for _, name := range args {
					r, err := c.DeleteLUN(ctx, name)
					if err != nil {
						return res, err
					}
					res.Deleted = append(res.Deleted, r.Deleted...)
				}
				return res, nil
			})
		},
	}
}
