package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newSnapshotBreakCmd(f *apiFlags) *cobra.Command {
	var req daemon.BreakRequest
	cmd := &cobra.Command{
		Use:   "break SET [--make-read-write] [--mask] [--revert-identity all|none]",
		Short: "Break a snapshot set: its snapshot LUNs become ordinary LUNs",
		Long: `Break a snapshot set (BreakSnapshotSetEx): VSS forgets its snapshots and
their LUNs stay in the array as ordinary LUNs. --make-read-write makes
them writable (an O(1) clone), --mask hides them from hosts,
--revert-identity all gives them the originals' identity (refused with
VSS_E_BREAK_REVERT_ID_FAILED while the originals exist).`,
		Example:           "  shadowbench snapshot break {675A76AA-4447-484E-B28F-68BC910E5D46} --make-read-write",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeSets(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				id, err := resolveRef(ctx, c, args[0], refSet)
				if err != nil {
					return nil, err
				}
				return c.BreakSet(ctx, id, req)
			})
		},
	}
	cmd.Flags().BoolVar(&req.MakeReadWrite, "make-read-write", false, "make the LUNs writable (VSS_BREAKEX_FLAG_MAKE_READ_WRITE)")
	cmd.Flags().BoolVar(&req.Mask, "mask", false, "mask the LUNs from hosts (VSS_BREAKEX_FLAG_MASK_LUNS)")
	cmd.Flags().StringVar(&req.RevertIdentity, "revert-identity", "", "all or none (VSS_BREAKEX_FLAG_REVERT_IDENTITY_*)")
	return cmd
}
