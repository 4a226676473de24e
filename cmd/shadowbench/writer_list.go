package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newWriterListCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the writers the daemon knows",
		Long: `List the daemon's writers: those of its configuration (scripted, exec,
fsfreeze) and the remote ones attached through the API, with their level
and whether their client is connected.`,
		Example: "  shadowbench writer list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				l, err := c.Writers(ctx)
				return daemon.WriterList(l), err
			})
		},
	}
}
