package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNPowercutCmd(f *apiFlags) *cobra.Command {
	var req daemon.PowerCutRequest
	var seed uint64
	cmd := &cobra.Command{
		Use:   "powercut NAME [--keep random|none|all|worst] [--tear] [--seed N]",
		Short: "Cut a LUN's power: it comes back holding what its emulated write cache keeps",
		Long: `Cut the power of a LUN created with --cache: its NBD connections drop, as
they would on a power loss, and it comes back holding its state at the
last FLUSH its cache mode honours, the writes it had to keep (FUA, where
honoured), and of the other writes acknowledged since, those --keep
chooses: random (each with probability one half, drawn from --seed),
none (the most a correct cache may lose), all, or worst (none, and torn).
--tear cuts the writes it keeps at sector boundaries. A write-through or
battery-backed cache keeps every acknowledged write. What survived is
the LUN's new durable point. The seed is printed, and the same seed over
the same writes cuts the same way.

A write belongs to the FLUSH that follows its completion, as dm-log-writes
orders them. On a LUN held by flush & hold the cut happens at once: the
writes waiting at the held gate belong to dropped connections, and fail.`,
		Example:           "  shadowbench lun powercut fs\n  shadowbench lun powercut fs --keep none\n  shadowbench lun powercut fs --tear --seed 42",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Seed = daemon.Seed(seed)
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.PowerCut(ctx, args[0], req)
			})
		},
	}
	cmd.Flags().StringVar(&req.Keep, "keep", "random", "which of the writes it may lose it keeps: random, none, all or worst")
	cmd.Flags().BoolVar(&req.Tear, "tear", false, "tear the writes it keeps at sector boundaries")
	cmd.Flags().Uint64Var(&seed, "seed", 0, "seed of the choices (default: random, and printed)")
	return cmd
}
