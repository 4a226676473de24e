package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newStatusCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's version, uptime, LUNs, providers, writers and sets",
		Long: `Ask the running daemon (shadowbench serve) how it is: its version and
uptime, where it serves the API and NBD, its LUNs by kind, the store's
use, its volumes, providers (with their commit latency), writers, and the
snapshot sets it ran by outcome.`,
		Example: "  shadowbench status\n  SHADOWBENCH_API=unix:/run/shadowbench.sock shadowbench status --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.Status(ctx)
			})
		},
	}
	f.bind(cmd)
	return cmd
}
