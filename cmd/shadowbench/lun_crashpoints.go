package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNMarkCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "mark NAME LABEL",
		Short: "Add a crash point: the LUN with every write completed so far, labelled",
		Long: `Add a mark to the crash points of a LUN created with --cache and
--crash-points, as dm-log-writes' marks are: the point holds every write
completed before it, flushed or not. lun crashpoints lists it, lun expose
--at shows the LUN as it was then, and crash-test checks it.`,
		Example:           "  shadowbench lun mark fs before-rename",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.Mark(ctx, args[0], args[1])
			})
		},
	}
}

func newLUNCrashpointsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "crashpoints NAME",
		Short: "List the crash points a LUN keeps: its FLUSHes and marks",
		Long: `List the crash points of a LUN created with --cache and --crash-points N:
each completed FLUSH (the LUN as a power cut then would leave it, keeping
none of the writes its cache may lose) and each mark (every write completed
before it), the newest N, with the writes between each and the one before.`,
		Example:           "  shadowbench lun crashpoints fs",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				pts, err := c.CrashPoints(ctx, args[0])
				return daemon.CrashPointList(pts), err
			})
		},
	}
}

func newLUNExposeCmd(f *apiFlags) *cobra.Command {
	var at string
	var req daemon.ExposePointRequest
	cmd := &cobra.Command{
		Use:   "expose NAME --at POINT [--writable] [--as NEWNAME]",
		Short: "Export a LUN as it would be after a power cut at one of its crash points",
		Long: `Make a LUN, exported over NBD, holding what NAME would hold after a power cut
at crash point POINT (a number from lun crashpoints): read-only, or with
--writable a clone a file system can replay its journal on. It is an O(1)
clone; deleting it (lun delete) changes nothing of NAME.`,
		Example:           "  shadowbench lun expose fs --at 12 --writable",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.Atoi(at)
			if err != nil || id < 1 {
				return usageError{fmt.Errorf("--at %q: want a crash point's number, from lun crashpoints", at)}
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.ExposeCrashPoint(ctx, args[0], id, req)
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the crash point (required)")
	cmd.Flags().BoolVar(&req.Writable, "writable", false, "a writable clone rather than a read-only LUN")
	cmd.Flags().StringVar(&req.Name, "as", "", "the new LUN's name (default NAME.at-POINT)")
	_ = cmd.MarkFlagRequired("at")
	return cmd
}
