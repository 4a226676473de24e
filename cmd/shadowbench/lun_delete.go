package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNDeleteCmd(f *apiFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete LUNs",
		Long: `Delete LUNs from the array. I/O in flight or queued on them fails with
EIO; their blocks return to the store unless snapshots or clones share
them. The deletion stops at the first LUN that cannot be deleted.

A LUN that has snapshots or clones, that NBD clients have open, or that is
a snapshot of a set is not deleted: the error says what holds it. A set's
snapshot is deleted with snapshot delete, which keeps the set's records.
--force deletes the LUN all the same, with its snapshots and clones first
(a set's snapshot through the service), and prints everything deleted;
its NBD clients get EIO.`,
		Example: `  shadowbench lun delete scratch
  shadowbench lun delete --force db   # db, its snapshots and its clones`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: f.completeLUNs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				var res daemon.DeleteResult
				for _, name := range args {
					r, err := c.DeleteLUN(ctx, name, force)
					res.Deleted = append(res.Deleted, r.Deleted...)
					if err != nil {
						return res, err
					}
				}
				return res, nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete the LUN even with snapshots, clones or NBD clients, and its snapshots and clones with it")
	return cmd
}
