package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shadowbench/shadowbench/bench"
	"github.com/shadowbench/shadowbench/daemon"
)

// errCrashTestFailed is the exit of a crash test with a failed check.
var errCrashTestFailed = errors.New("crash-test: some crash points failed their check")

func newCrashTestCmd() *cobra.Command {
	var f apiFlags
	var o daemon.CrashTestOptions
	cmd := &cobra.Command{
		Use:   "crash-test --lun NAME --workload CMD --check CMD [--sample N] [--seed N]",
		Short: "Run a workload on a LUN, then check the LUN as a power cut at each crash point would leave it",
		Long: `Run --workload (a /bin/sh command) against a LUN created with --cache and
--crash-points, then, for every crash point it made (each completed FLUSH and
each lun mark) or a --sample of them drawn with --seed, expose the LUN as a
power cut at that point would have left it, as a writable clone, and run
--check against it: fsck.ext4 -n through nbdfuse, a database's recovery, any
script. A check passes when it exits 0. CrashMonkey's loop, for any software
that runs on Linux.

Both commands find $uri (the NBD URI of their LUN: the LUN under test for the
workload, the crash point's clone for the check), $lun and SHADOWBENCH_API in
their environment; the check finds $point, $kind and $label too. Each clone is
deleted after its check. The exit status is 1 when a check failed; --json
prints every check's result, with the output of those that failed.`,
		Example: `  shadowbench lun create fs --size 1GiB --cache write-back --crash-points 1000
  shadowbench crash-test --lun fs --workload ./make-files.sh --check ./fsck-uri.sh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Seed == 0 {
				o.Seed = uint64(time.Now().UnixNano()) | 1
			}
			o.Stdout, o.Stderr = cmd.ErrOrStderr(), cmd.ErrOrStderr()
			var bar *bench.ProgressBar
			if fl, ok := cmd.ErrOrStderr().(*os.File); ok && bench.IsTerminal(fl) && !f.json {
				bar = bench.NewProgressBar(fl, "crash points")
			}
			failed := 0
			o.Progress = func(done, total int, r daemon.CrashPointCheck) {
				if !r.Passed {
					failed++
				}
				if bar != nil {
					bar.Update(float64(done)/float64(total), fmt.Sprintf("%d/%d, %d failed", done, total, failed))
				}
			}
			err := f.call(cmd, func(ctx context.Context, c *daemon.Client) (daemon.Texter, error) {
				res, err := c.CrashTest(ctx, o)
				if bar != nil {
					bar.Finish()
				}
				if err != nil {
					return nil, err
				}
				return crashTestText{res}, nil
			})
			if err == nil && failed > 0 {
				return printedError{errCrashTestFailed}
			}
			return err
		},
	}
	f.bind(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.LUN, "lun", "", "the LUN under test, with a cache mode and crash points (required)")
	fl.StringVar(&o.Workload, "workload", "", "the workload, a /bin/sh command run once (required)")
	fl.StringVar(&o.Check, "check", "", "the check, a /bin/sh command run at each crash point (required)")
	fl.IntVar(&o.Sample, "sample", 0, "check this many crash points, drawn with --seed (default: all)")
	fl.Uint64Var(&o.Seed, "seed", 0, "seed of --sample (default: random, and printed)")
	fl.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long one check may take")
	for _, name := range []string{"lun", "workload", "check"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// crashTestText prints a crash test's result: its summary, then each
// failed point with the end of its output.
type crashTestText struct{ *daemon.CrashTestResult }

func (r crashTestText) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "LUN %s (cache %s): %d crash points, %d checked (seed %d): %d passed, %d failed, in %v\n",
		r.LUN, r.Cache, r.Points, r.Checked, uint64(r.Seed), r.Passed, r.Failed, time.Duration(r.Elapsed).Round(time.Millisecond))
	for _, c := range r.Checks {
		if c.Passed {
			continue
		}
		fmt.Fprintf(&b, "\nFAIL point %d (%s %s), exit %d:\n%s\n", c.Point.ID, c.Point.Kind, c.Point.Label, c.Exit, c.Output)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
