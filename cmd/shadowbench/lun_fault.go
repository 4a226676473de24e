package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNFaultCmd(f *apiFlags) *cobra.Command {
	var r daemon.FaultRule
	var cut daemon.PowerCutRequest
	var clear, powercut bool
	var within time.Duration
	cmd := &cobra.Command{
		Use:   "fault NAME [--op OP]... [--latency L] [--error ERRNO] [--probability P] [--nth N] [--powercut [--within D]] | --clear",
		Short: "Inject latency, errors or a power cut into a live LUN's I/O",
		Long: `Add a fault to a live LUN: a --latency, an --error, or both (a slow
failure), on the operations --op names (read, write, flush, trim, zero,
extents; all by default), on the --nth matching one only, with
--probability (seeded; the seed is printed so a run can be replayed).
Faults add up; --clear removes them all first. Without a fault, print the
LUN's faults. Latency: 5ms, 1ms..5ms (uniform), exp:5ms, normal:5ms/1ms.
Errors: EIO, ENOSPC, EPERM, EINVAL, ENOMEM.

--powercut makes the fault a power cut of a LUN with an emulated cache,
as lun powercut cuts (--keep, --tear), fired once: right after the --nth
matching operation lands (nothing admitted after it lands before the
cut; the operations after it fail and the LUN's connections drop), or at
a random instant in [0, --within) from now, drawn from --seed (printed,
with the instant). Once fired, the rule is cleared; lun list NAME gives the
last cut.`,
		Example: "  shadowbench lun fault lun0 --op write --latency 5ms --error EIO --probability 0.1\n" +
			"  shadowbench lun fault lun0 --op flush --error EIO --nth 3\n" +
			"  shadowbench lun fault fs --powercut --op write --nth 100 --keep none\n" +
			"  shadowbench lun fault fs --powercut --within 30s --seed 7\n  shadowbench lun fault lun0 --clear",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("nth") && r.Nth < 1 {
				return usageError{fmt.Errorf("--nth %d: want 1 or more (the first matching operation is 1; leave --nth out for every one)", r.Nth)}
			}
			if powercut {
				r.PowerCut, r.Within = &cut, daemon.Duration(within)
			} else if within != 0 || cmd.Flags().Changed("keep") || cut.Tear {
				return usageError{fmt.Errorf("--within, --keep and --tear are a power cut's: add --powercut")}
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				adding := r.Latency != "" || r.Error != "" || cmd.Flags().Changed("probability") ||
					cmd.Flags().Changed("nth") || len(r.Ops) > 0 || powercut
				if clear {
					l, err := c.ClearFaults(ctx, args[0])
					if err != nil || !adding {
						return l, err
					}
				}
				if !adding {
					return c.Faults(ctx, args[0])
				}
				return c.AddFault(ctx, args[0], r)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&r.Ops, "op", nil, "operations to affect: read, write, flush, trim, zero, extents (repeatable; default all)")
	fl.StringVar(&r.Latency, "latency", "", "delay each affected operation: 5ms, 1ms..5ms, exp:5ms or normal:5ms/1ms")
	fl.StringVar(&r.Error, "error", "", "fail each affected operation with EIO, ENOSPC, EPERM, EINVAL or ENOMEM")
	fl.Float64Var(&r.Probability, "probability", 0, "affect each operation with this probability, in (0, 1]")
	fl.Int64Var(&r.Nth, "nth", 0, "affect only the Nth matching operation (from 1); with --powercut, cut right after it")
	fl.Uint64Var((*uint64)(&r.Seed), "seed", 0, "seed of --probability, and of --powercut's instant and choices (default: random, and printed)")
	fl.BoolVar(&clear, "clear", false, "remove the LUN's faults (before adding the one given, if any)")
	fl.BoolVar(&powercut, "powercut", false, "cut the LUN's power once, at --nth or --within, then clear the rule")
	fl.DurationVar(&within, "within", 0, "with --powercut: cut at a random instant in [0, D) from now")
	fl.StringVar(&cut.Keep, "keep", "", "with --powercut: which writes the cut may lose it keeps: random (default), none, all or worst")
	fl.BoolVar(&cut.Tear, "tear", false, "with --powercut: tear the writes it keeps at sector boundaries")
	return cmd
}
