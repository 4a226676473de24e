package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNPowercutCmd(f *apiFlags) *cobra.Command {
	var req daemon.PowerCutRequest
	var seed uint64
	var afterWrites int64
	var within time.Duration
	cmd := &cobra.Command{
		Use:   "powercut NAME [--keep random|none|all|worst] [--tear] [--seed N] [--after-writes N | --within D]",
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

--after-writes N arms the cut instead, right after the Nth write from now
lands (the writes after it fail); --within D arms it at a random instant
in [0, D), drawn from --seed. Both are power-cut fault rules (lun fault
--powercut, which can count any operation): listed by lun fault, cleared
when fired; lun list NAME gives the last cut.

A write belongs to the FLUSH that follows its completion, as dm-log-writes
orders them. On a LUN held by flush & hold the cut happens at once: the
hold goes on, and the writes waiting at the held gate belong to dropped
connections, and fail.`,
		Example: "  shadowbench lun powercut fs\n  shadowbench lun powercut fs --keep none\n  shadowbench lun powercut fs --tear --seed 42\n" +
			"  shadowbench lun powercut fs --after-writes 1000 --keep none\n  shadowbench lun powercut fs --within 10s",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Seed = daemon.Seed(seed)
			armed := cmd.Flags().Changed("after-writes") || within != 0
			switch {
			case cmd.Flags().Changed("after-writes") && afterWrites < 1:
				return usageError{fmt.Errorf("--after-writes %d: want 1 or more", afterWrites)}
			case afterWrites > 0 && within != 0:
				return usageError{fmt.Errorf("give --after-writes or --within, not both")}
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				if !armed {
					return c.PowerCut(ctx, args[0], req)
				}
				r := daemon.FaultRule{PowerCut: &req, Seed: req.Seed, Within: daemon.Duration(within)}
				if afterWrites > 0 {
					r.Ops, r.Nth = []string{"write"}, afterWrites
				}
				return c.AddFault(ctx, args[0], r)
			})
		},
	}
	cmd.Flags().StringVar(&req.Keep, "keep", "random", "which of the writes it may lose it keeps: random, none, all or worst")
	cmd.Flags().BoolVar(&req.Tear, "tear", false, "tear the writes it keeps at sector boundaries")
	cmd.Flags().Uint64Var(&seed, "seed", 0, "seed of the choices, and of --within's instant (default: random, and printed)")
	cmd.Flags().Int64Var(&afterWrites, "after-writes", 0, "arm the cut right after the Nth write from now, rather than cutting at once")
	cmd.Flags().DurationVar(&within, "within", 0, "arm the cut at a random instant in [0, D) from now")
	return cmd
}
