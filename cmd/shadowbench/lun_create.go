package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/daemon"
)

func newLUNCreateCmd(f *apiFlags) *cobra.Command {
	var size, cacheSize string
	req := daemon.CreateLUNRequest{BlockSize: 512}
	cmd := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create an empty LUN, exported over NBD at once",
		Long: `Create an empty, sparse LUN of --size bytes (1GiB, 512MiB, 4096...) in
the daemon's array. It is exported over NBD under its name at once.

A LUN is thick unless --thin: it is created only if the sizes of the
array's thick LUNs, its own included, add up within the array's capacity
(status shows it), as a classic array provisions; otherwise it is refused
with the figures. Thick is admission, not a reservation: the array sets
no blocks aside, so thin LUNs and snapshots can still fill it. A thin LUN
may overcommit the capacity, as a thin pool's volumes do: its size is not
counted, and its writes fail with ENOSPC once the array is full. Snapshot
LUNs and clones are thin.

--cache MODE makes the LUN emulate an array's write cache, which decides
what lun powercut leaves of it: write-through (every acknowledged write
survives), write-back (a write survives once a FLUSH after it completes,
or at once with FUA), write-back-battery (the cache survives the cut), or
the firmware defects ignore-flush (FLUSH persists nothing), ignore-fua and
reorder (the cache destages in any order). Without --cache the LUN gets
the cache of the firmware profile (its cache key), if it sets one;
--cache none opts out. status shows each cache's use: the writes its log
holds against --cache-size, the crash points against --crash-points.
In-memory arrays only.`,
		Example: "  shadowbench lun create db --size 4GiB --block-size 4096\n  shadowbench lun create scratch --size 1TiB --thin\n" +
			"  shadowbench lun create fs --size 1GiB --cache write-back",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := daemon.ParseSize(size)
			if err != nil {
				return err
			}
			req.Name, req.Size = args[0], s
			if cacheSize != "" {
				if req.CacheSize, err = daemon.ParseSize(cacheSize); err != nil {
					return fmt.Errorf("--cache-size: %w", err)
				}
			}
			return f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				return c.CreateLUN(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&size, "size", "", "size of the LUN, such as 1GiB (required)")
	cmd.Flags().IntVar(&req.BlockSize, "block-size", 512, "logical block size: 512 or 4096")
	cmd.Flags().BoolVar(&req.ReadOnly, "read-only", false, "refuse writes")
	cmd.Flags().BoolVar(&req.Thin, "thin", false, "let the LUN overcommit the array's capacity (default: thick, refused unless the thick LUNs' sizes fit)")
	cmd.Flags().StringVar(&req.Cache, "cache", "", "emulate a write cache: none, write-through, write-back, write-back-battery, ignore-flush, ignore-fua or reorder (default: the firmware profile's, else none; lun powercut refused)")
	cmd.Flags().IntVar(&req.CrashPoints, "crash-points", 0, "keep the newest N crash points (FLUSHes and marks) for lun crashpoints, lun expose --at and crash-test; needs --cache")
	cmd.Flags().StringVar(&cacheSize, "cache-size", "", "the writes the emulated cache holds since its last durable point; past it, it destages them all (default 64MiB)")
	_ = cmd.MarkFlagRequired("size")
	return cmd
}
