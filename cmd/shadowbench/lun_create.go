package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNCreateCmd(f *apiFlags) *cobra.Command {
	var size string
	req := daemon.CreateLUNRequest{BlockSize: 512}
	cmd := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create an empty LUN, exported over NBD at once",
		Long: `Create an empty, sparse LUN of --size bytes (1GiB, 512MiB, 4096...) in
the daemon's array. It is exported over NBD under its name at once.`,
		Example: "  shadowbench lun create db --size 4GiB --block-size 4096",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := daemon.ParseSize(size)
			if err != nil {
				return err
			}
			req.Name, req.Size = args[0], s
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.CreateLUN(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "size of the LUN, such as 1GiB (required)")
	cmd.Flags().IntVar(&req.BlockSize, "block-size", 512, "logical block size: 512 or 4096")
	cmd.Flags().BoolVar(&req.ReadOnly, "read-only", false, "refuse writes")
	_ = cmd.MarkFlagRequired("size")
	return cmd
}
