package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNListCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list [NAME]",
		Short: "List the LUNs, or describe one",
		Long: `List the array's LUNs (snapshot LUNs and masked ones included) with their
kind, size, flags and NBD export. With a NAME, describe that LUN: its
identity, its faults and its I/O statistics.`,
		Example:           "  shadowbench lun list\n  shadowbench lun list lun0 --json",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				if len(args) == 1 {
					return c.LUN(ctx, args[0])
				}
				ls, err := c.LUNs(ctx)
				return daemon.LUNList(ls), err
			})
		},
	}
}
