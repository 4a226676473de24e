package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/shadowbench/shadowbench/bench"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/spf13/cobra"
)

func newDemoCmd(a *app) *cobra.Command {
	cfg := bench.DefaultDemoConfig()
	var jsonPath, profile string
	var noReport bool
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "A guided tour: an array over NBD, VSS snapshot sets under load, and checks (about 15 s)",
		Long: `Run everything in this process, with no setup and no root: a two-LUN array
served over NBD on 127.0.0.1, NBD clients writing to it all the time, VSS
writers (an application writing through NBD, a slow one, a quick one, then one
that vetoes) and the emulated array provider (--profile: its firmware). Take a
clean set, a vetoed set and a burst of --sets, and check each through NBD.

It prints what it does and why, PASS or FAIL per check, the first set's
timeline and latency percentiles, and writes demo-report.html. It exits with an
error when a check fails. Logs are off unless --log-level is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if noReport {
				if cmd.Flags().Changed("report") {
					return fmt.Errorf("demo: --report and --no-report exclude each other")
				}
				cfg.Report = ""
			}
			if profile != "" {
				p, err := provider.LoadProfile(profile)
				if err != nil {
					return fmt.Errorf("--profile: %w", err)
				}
				cfg.Profile = p
			}
			if cmd.Flags().Changed("log-level") || cmd.Flags().Changed("log-format") {
				cfg.Logger = a.log
			}
			out := cmd.OutOrStdout()
			if jsonPath == "-" {
				out = cmd.ErrOrStderr()
			}
			var bar *bench.ProgressBar
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && bench.IsTerminal(f) {
				bar = bench.NewProgressBar(f, "burst")
				cfg.Progress = bar
			}
			res, err := bench.RunDemo(cmd.Context(), cfg, out)
			if err != nil {
				return err
			}
			if jsonPath != "" {
				if err := writeTo(cmd.OutOrStdout(), jsonPath, res); err != nil {
					return fmt.Errorf("--json: %w", err)
				}
			}
			if failed := res.Failed(); len(failed) > 0 {
				return fmt.Errorf("demo: %d of %d checks failed", len(failed), len(res.Checks))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&cfg.Sets, "sets", cfg.Sets, "quick snapshot sets in the burst, for latency percentiles")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load runs; the burst's sets are spread over it")
	fs.Var(&cfg.LoadRate, "load-rate", "NBD load writes a second, in all")
	fs.DurationVar(&cfg.SlowDelay, "slow-delay", cfg.SlowDelay, "time the slow writer takes in PrepareForSnapshot and in Freeze")
	fs.StringVar(&profile, "profile", "", "the array provider's firmware profile, a YAML `FILE` (examples in provider/profiles)")
	fs.StringVar(&cfg.Report, "report", cfg.Report, "write the HTML report to `FILE`")
	fs.BoolVar(&noReport, "no-report", false, "write no HTML report")
	fs.StringVar(&cfg.CSV, "csv", "", "write every series of the report as CSV files into `DIR`")
	dataDirFlag(fs, &cfg.DataDir)
	fs.StringVar(&jsonPath, "json", "", "write the result as JSON to `FILE` (- for stdout, the narrative then going to stderr)")
	return cmd
}

// writeTo writes the result as JSON to path, or to stdout for "-".
func writeTo(stdout io.Writer, path string, res *bench.DemoResult) error {
	if path == "-" {
		return res.WriteJSON(stdout)
	}
	f, err := os.Create(path)
	if err == nil {
		err = errors.Join(res.WriteJSON(f), f.Close())
	}
	return err
}
