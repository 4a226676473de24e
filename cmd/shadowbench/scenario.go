package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shadowbench/shadowbench/scenarios"
	"github.com/spf13/cobra"
)

func newScenarioCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenario",
		Short: "Run, check and list VSS scenario files",
		Long: `A scenario file describes an array, providers with their firmware profiles,
writers, a background NBD load, the requesters' steps and what must come out
(results, writer states, the trace of events, data and timing). See
the README (Writing scenarios) and go doc ./scenarios; the library is
scenarios/library.`,
	}
	var scale float64
	var asJSON bool
	var dataDir, prov string
	run := &cobra.Command{
		Use:   "run FILE...",
		Short: "Run scenarios and print each one's timeline and verdict",
		Long: `Run each scenario in-process (array, NBD server on a unix socket, coordinator,
providers, writers) and print its timeline and a PASS or FAIL line that
explains the first mismatch. The command fails if a scenario fails.

--time-scale multiplies every duration of the files: the coordinator's
windows, the firmware profiles' latencies and commit blocks, the writers'
delays and freeze timeouts, sleeps and timing bounds. The files keep real
numbers (a 10 s hold window, a 9.9 s commit); --time-scale 0.01 runs them
100 times faster. A file's min-time-scale raises a smaller scale.

--data-dir runs each scenario on a durable array, in a new directory
under DIR removed at the end, rather than in memory: every flush and
commit is written down on DIR's file system, as serve --data-dir does.

--provider reaches the providers over the provider protocol, not in-process.
--provider loopback serves each file's own providers on 127.0.0.1 for the
run: every scenario must give the verdict it gives in-process. --provider
HOST:PORT runs the provider-facing scenarios against a provider served
elsewhere (a vendor's, or serve --provider-listen's), which stands in for
the file's hardware provider, with its array for the LUNs: the file's LUNs
must exist there under the file's names, and a fresh array gives each run
the state the files expect. A scenario that needs the emulated array's
parts (a firmware profile, LUN faults, loads, data steps) is reported as
not applicable, with the reason; a failure names the rule broken.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scs, err := scenarios.LoadAll(args)
			if err != nil {
				return err
			}
			opts := scenarios.Options{TimeScale: scale, Out: cmd.OutOrStdout(), DataDir: dataDir, Provider: prov}
			if asJSON {
				opts.Out = nil
			}
			results := scenarios.RunAll(cmd.Context(), scs, opts)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(results); err != nil {
					return err
				}
				for _, r := range results {
					fmt.Fprintln(cmd.ErrOrStderr(), r.Verdict())
				}
			}
			summary, ok := scenarios.Tally(results)
			if asJSON {
				fmt.Fprintln(cmd.ErrOrStderr(), summary)
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), summary)
			}
			if !ok {
				return errors.New("scenario run: " + summary)
			}
			return cmd.Context().Err()
		},
	}
	run.Flags().Float64Var(&scale, "time-scale", 1, "multiply every duration of the scenarios by this (0.01: a 10 s window runs in 100 ms)")
	run.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON on stdout (verdicts go to stderr)")
	run.Flags().StringVar(&dataDir, "data-dir", "", "run each scenario on a durable array in a new directory under `DIR`, removed at the end (default: in memory)")
	run.Flags().StringVar(&prov, "provider", "", "reach the providers over the provider protocol: loopback (the files' own, served on 127.0.0.1) or `ADDR` (HOST:PORT of a provider served elsewhere; the provider-facing scenarios only)")

	check := &cobra.Command{
		Use:   "check FILE...",
		Short: "Check scenario files without running them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scs, err := scenarios.LoadAll(args)
			for _, sc := range scs {
				fmt.Fprintf(cmd.OutOrStdout(), "ok   %s (%s)\n", sc.File, sc.Name)
			}
			return err
		},
	}
	list := &cobra.Command{
		Use:   "list [DIR...]",
		Short: "List the scenarios of directories (default scenarios/library)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"scenarios/library"}
			}
			var errs []error
			for _, dir := range args {
				scs, err := scenarios.LoadDir(dir)
				errs = append(errs, err)
				for _, sc := range scs {
					mark := ""
					if sc.KnownFailure != "" {
						mark = " [known failure]"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%-36s %s%s\n", sc.Name, sc.Description, mark)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.AddCommand(run, check, list)
	return cmd
}
