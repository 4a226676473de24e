package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNFaultCmd(f *apiFlags) *cobra.Command {
	var r daemon.FaultRule
	var clear bool
	cmd := &cobra.Command{
		Use:   "fault NAME [--op OP]... [--latency L] [--error ERRNO] [--probability P] [--nth N] | --clear",
		Short: "Inject latency or errors into a live LUN's I/O",
		Long: `Add a fault to a live LUN: a --latency, an --error, or both (a slow
failure), on the operations --op names (read, write, flush, trim, zero,
extents; all by default), on the --nth matching one only, with
--probability (seeded; the seed is printed so a run can be replayed).
Faults add up; --clear removes them all first. Without a fault, print the
LUN's faults. Latency: 5ms, 1ms..5ms (uniform), exp:5ms, normal:5ms/1ms.
Errors: EIO, ENOSPC, EPERM, EINVAL, ENOMEM.`,
		Example: "  shadowbench lun fault lun0 --op write --latency 5ms --error EIO --probability 0.1\n" +
			"  shadowbench lun fault lun0 --op flush --error EIO --nth 3\n  shadowbench lun fault lun0 --clear",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeLUNs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("nth") && r.Nth < 1 {
				return usageError{fmt.Errorf("--nth %d: want 1 or more (the first matching operation is 1; leave --nth out for every one)", r.Nth)}
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				adding := r.Latency != "" || r.Error != "" || cmd.Flags().Changed("probability") ||
					cmd.Flags().Changed("nth") || len(r.Ops) > 0
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
	fl.Int64Var(&r.Nth, "nth", 0, "affect only the Nth matching operation (from 1)")
	fl.Uint64Var((*uint64)(&r.Seed), "seed", 0, "seed of --probability (default: random, and printed)")
	fl.BoolVar(&clear, "clear", false, "remove the LUN's faults (before adding the one given, if any)")
	return cmd
}
