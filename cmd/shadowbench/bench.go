package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shadowbench/shadowbench/bench"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// benchOut are the output flags every workload shares.
type benchOut struct {
	json, report, compare, csv string
}

// workloads names bench's workloads in the order help lists them.
var workloads = []string{"commit", "sequence", "hold", "io-impact", "first-write", "nbd"}

func newBenchCmd() *cobra.Command {
	var out benchOut
	cmd := &cobra.Command{
		Use:   "bench WORKLOAD [flags]",
		Short: "Measure commits, snapshot sequences, the hold window and NBD I/O",
		Long: `Run one workload in-process and print its latency percentiles.

Workloads: ` + strings.Join(workloads, ", ") + `. "shadowbench bench WORKLOAD --help"
explains each and its defaults. --json writes the result as JSON (- for
stdout, the text then going to stderr); --report writes a self-contained HTML
page with the charts, over which --compare draws an earlier --json run; --csv
writes every series as CSV files. A progress bar is drawn on runs longer than two seconds
when stderr is a terminal.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("bench: name a workload: %s", strings.Join(workloads, ", "))
			}
			return fmt.Errorf("bench: unknown workload %q: want one of %s", args[0], strings.Join(workloads, ", "))
		},
	}
	cmd.PersistentFlags().StringVar(&out.json, "json", "", "write the result as JSON to `FILE` (- for stdout)")
	cmd.PersistentFlags().StringVar(&out.report, "report", "", "write an HTML report with charts to `FILE`")
	cmd.PersistentFlags().StringVar(&out.compare, "compare", "", "overlay on the report's charts the run of the same workload in `OLD.json` (an earlier --json)")
	cmd.PersistentFlags().StringVar(&out.csv, "csv", "", "write every series of the result as CSV files into `DIR`")

	commit := bench.DefaultCommitConfig()
	cmd.AddCommand(workload(&out, "commit", "The provider's CommitSnapshots over N LUNs, and cow's Snapshot alone",
		`Drive the emulated array provider through whole snapshot sets of each size
in --luns (no coordinator, no writers, no hold) and time each CommitSnapshots
call, with the provider's own measure of its pointer swaps; then time
cow.Volume.Snapshot alone. Each case runs for --duration.`,
		func(fs *pflag.FlagSet) {
			fs.IntSliceVar(&commit.LUNs, "luns", commit.LUNs, "set sizes to measure, in LUNs")
			fs.Var(&commit.LUNSize, "lun-size", "size of each LUN")
			fs.Var(&commit.Data, "data", "data written to each LUN before the first commit")
			fs.BoolVar(&commit.Cow, "cow", commit.Cow, "also time cow's Snapshot alone")
			fs.DurationVar(&commit.Duration, "duration", commit.Duration, "how long each case runs")
			dataDirFlag(fs, &commit.DataDir)
		},
		runner(bench.RunCommit, &commit)))

	seq := bench.DefaultSequenceConfig()
	cmd.AddCommand(workload(&out, "sequence", "Whole DoSnapshotSets, per phase",
		`Run complete backups one after another (the requester conversation of
vss-spec.md A) and time each DoSnapshotSet from the call to Wait's return,
split into phases from the set's timeline: prepare, freeze, hold, commit,
thaw, post-snapshot, and other for the time inside no step. Also reports the
hold and freeze windows, each A.7 step, and the requester's own calls. The
writers answer at once unless --writer-delay is set.

--remote also runs the sets across 3 arrays (--remote=N for N) reached over
the provider protocol on 127.0.0.1, each an array with its provider served
as serve --provider-listen serves it, in this process; the LUNs are spread
over them, one volume each. Remote and in-process sets alternate, so both
meet the same machine; remote/... are the remote figures, with the calls to
the arrays per set (remote/call/METHOD) and the round trips on the set's
critical path.`,
		func(fs *pflag.FlagSet) {
			fs.IntVar(&seq.Writers, "writers", seq.Writers, "VSS writers")
			fs.IntVar(&seq.LUNs, "luns", seq.LUNs, "LUNs in each set, a volume each")
			fs.Var(&seq.LUNSize, "lun-size", "size of each LUN")
			fs.DurationVar(&seq.WriterDelay, "writer-delay", seq.WriterDelay, "time each writer takes in PrepareForSnapshot, Freeze, Thaw and PostSnapshot")
			fs.DurationVar(&seq.Duration, "duration", seq.Duration, "how long to run")
			fs.IntVar(&seq.Sets, "sets", seq.Sets, "stop after this many sets (0: run for --duration)")
			fs.IntVar(&seq.Warmup, "warmup", seq.Warmup, "sets run first and not counted")
			fs.IntVar(&seq.Remote, "remote", seq.Remote, "also run the sets across `N` arrays over the provider protocol on 127.0.0.1, in turn with the in-process ones (--remote alone: 3)")
			fs.Lookup("remote").NoOptDefVal = "3"
			dataDirFlag(fs, &seq.DataDir)
		},
		runner(bench.RunSequence, &seq)))

	hold := bench.DefaultHoldConfig()
	cmd.AddCommand(workload(&out, "hold", "The flush & hold window under NBD write load",
		`Take whole snapshot sets at --rate while Go NBD clients write to every LUN
through the project's server, and time the hold window (vss-spec.md B.2):
flush, hold and drain, commit, release.

The clients run in this process, on the array's cores. When they saturate
every core, the kernel's network work and Go's idle threads keep taking
threads off the CPU for a scheduler tick, and a drain that waits on a write
caught that way sets the tail. On a small machine, GOMAXPROCS set to one
less than the cores leaves the kernel a core: on 2 cores the saturated p99
fell from about 500 µs to under 100 µs at the same writes a second.`,
		func(fs *pflag.FlagSet) {
			loadFlags(fs, &hold.LUNs, &hold.LUNSize, &hold.Span, &hold.Conns, &hold.QD, &hold.BlockSize, &hold.Network)
			fs.IntVar(&hold.Writers, "writers", hold.Writers, "VSS writers")
			fs.Var(&hold.Rate, "rate", "how often a set starts: 50/s, 1/m, 200ms; 0 for back to back")
			fs.Var(&hold.LoadRate, "load-rate", "pace the writes at this many a second in all (open loop); 0 writes as fast as possible, saturating the cores")
			fs.DurationVar(&hold.Duration, "duration", hold.Duration, "how long to run")
			dataDirFlag(fs, &hold.DataDir)
		},
		runner(bench.RunHold, &hold)))

	io := bench.DefaultIOImpactConfig()
	cmd.AddCommand(workload(&out, "io-impact", "NBD write latency before, during and after snapshots",
		`Write through NBD for --duration: a quarter without snapshots, half with a
snapshot set every 1/--rate, a quarter without again. Reports write latency
p50, p99 and p99.9 in each part, the writes that met a hold window, and the
ratio of the p99 during snapshots to the steady p99.`,
		func(fs *pflag.FlagSet) {
			loadFlags(fs, &io.LUNs, &io.LUNSize, &io.Span, &io.Conns, &io.QD, &io.BlockSize, &io.Network)
			fs.IntVar(&io.Writers, "writers", io.Writers, "VSS writers")
			fs.Var(&io.Rate, "rate", "how often a set starts in the middle half: 1/s, 30/m, 500ms")
			fs.DurationVar(&io.Duration, "duration", io.Duration, "how long to run, all three parts")
			dataDirFlag(fs, &io.DataDir)
		},
		runner(bench.RunIOImpact, &io)))

	fw := bench.DefaultFirstWriteConfig()
	cmd.AddCommand(workload(&out, "first-write", "The copy-on-write cost of the first write after a snapshot",
		`For each grain and write size, write the span, take a snapshot, and time a
write at every slot in random order (first writes, which copy the grains they
partly cover), then the same writes again (steady). Writes go to the LUN
directly, without the network.`,
		func(fs *pflag.FlagSet) {
			fs.Var(&fw.Grains, "grains", "copy-on-write grains, comma-separated")
			fs.Var(&fw.Sizes, "sizes", "write sizes, comma-separated")
			fs.Var(&fw.Span, "span", "bytes written per snapshot")
			fs.DurationVar(&fw.Duration, "duration", fw.Duration, "how long each grain and size pair runs")
		},
		runner(bench.RunFirstWrite, &fw)))

	nb := bench.DefaultNBDConfig()
	cmd.AddCommand(workload(&out, "nbd", "Throughput and latency of the NBD server through the Go client",
		`Read and write random blocks through the project's NBD server with its Go
client, over 127.0.0.1 or a unix socket. Client and server share the cores.`,
		func(fs *pflag.FlagSet) {
			loadFlags(fs, &nb.LUNs, &nb.LUNSize, &nb.Span, &nb.Conns, &nb.QD, &nb.BlockSize, &nb.Network)
			fs.IntVar(&nb.ReadPct, "read-pct", nb.ReadPct, "share of reads, in percent")
			fs.DurationVar(&nb.Duration, "duration", nb.Duration, "how long to run")
			dataDirFlag(fs, &nb.DataDir)
		},
		runner(bench.RunNBD, &nb)))
	return cmd
}

// loadFlags binds the flags of NBD load.
func loadFlags(fs *pflag.FlagSet, luns *int, lunSize, span *bench.Size, conns, qd *int, bs *bench.Size, network *string) {
	fs.IntVar(luns, "luns", *luns, "LUNs")
	fs.Var(lunSize, "lun-size", "size of each LUN")
	fs.Var(span, "span", "bytes of each LUN the load addresses, written first")
	fs.IntVar(conns, "conns", *conns, "NBD connections, spread over the LUNs")
	fs.IntVar(qd, "qd", *qd, "requests in flight per connection")
	fs.Var(bs, "block-size", "bytes per request")
	fs.StringVar(network, "network", *network, "tcp (127.0.0.1) or unix (a socket in a temporary directory)")
}

// dataDirFlag binds --data-dir, which puts a workload's array on disk.
func dataDirFlag(fs *pflag.FlagSet, dir *string) {
	fs.StringVar(dir, "data-dir", "", "run on a durable array in a new directory under `DIR`, removed at the end, as serve --data-dir keeps one (default: in memory)")
}

// runner runs a workload with its Config as the flags left it.
func runner[C any](run func(context.Context, C, bench.Progress) (*bench.Result, error), cfg *C) func(context.Context, bench.Progress) (*bench.Result, error) {
	return func(ctx context.Context, p bench.Progress) (*bench.Result, error) { return run(ctx, *cfg, p) }
}

// workload makes one workload's subcommand.
func workload(out *benchOut, name, short, long string, bind func(*pflag.FlagSet),
	run func(context.Context, bench.Progress) (*bench.Result, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use: name + " [flags]", Short: short, Long: long + "\n\nThe defaults are those shown with each flag.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p bench.Progress
			var bar *bench.ProgressBar
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && bench.IsTerminal(f) {
				bar = bench.NewProgressBar(f, name)
				p = bar
			}
			res, err := run(cmd.Context(), p)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), cmd.ErrOrStderr(), out, res)
		},
	}
	bind(cmd.Flags())
	return cmd
}

// writeResult prints the text, then writes the JSON and the report.
func writeResult(stdout, stderr io.Writer, out *benchOut, res *bench.Result) error {
	text := stdout
	if out.json == "-" {
		text = stderr
	}
	if err := res.WriteText(text); err != nil {
		return err
	}
	write := func(path string, fn func(io.Writer) error) error {
		if path == "-" {
			return fn(stdout)
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if out.json != "" {
		if err := write(out.json, res.WriteJSON); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	var old []*bench.Result
	if out.compare != "" {
		if out.report == "" {
			return fmt.Errorf("--compare draws on the report: give --report too")
		}
		f, err := os.Open(out.compare)
		if err != nil {
			return fmt.Errorf("--compare: %w", err)
		}
		old, err = bench.ReadResults(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--compare %s: %w", out.compare, err)
		}
	}
	if out.report != "" {
		if err := write(out.report, func(w io.Writer) error { return bench.WriteHTMLCompare(w, old, res) }); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if out.csv != "" {
		paths, err := bench.WriteCSV(out.csv, res)
		if err != nil {
			return fmt.Errorf("--csv: %w", err)
		}
		fmt.Fprintf(text, "CSV: %d files in %s\n", len(paths), out.csv)
	}
	return nil
}
