package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// summary prints the first set's timeline, the latency table, writes the
// report and prints the verdict.
func (d *demo) summary(started time.Time) {
	if fs := d.res.FirstSet; fs != nil {
		d.printf("\nTimeline of set 1, from StartSnapshotSet (vss-spec.md A.7 names the steps; provider calls\n")
		d.printf("and writer events are indented under the step that made them):\n")
		tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "   offset\tduration\tkind\tname\tactor\tresult\t")
		rows := append([]coordinator.Span{{Kind: "requester", Name: "DoSnapshotSet",
			Start: fs.Start, End: fs.End, Result: fs.Result}}, fs.Spans...)
		slices.SortStableFunc(rows, func(a, b coordinator.Span) int {
			if a.Start != b.Start {
				return int(a.Start - b.Start)
			}
			return int(b.End - a.End) // the enclosing span first
		})
		for _, sp := range rows {
			name := sp.Name
			if sp.Kind == coordinator.KindProvider || sp.Kind == coordinator.KindWriter {
				name = "  " + name
			}
			res := sp.Result
			if sp.Detail != "" && sp.Kind != coordinator.KindWindow {
				res += " (" + sp.Detail + ")"
			}
			fmt.Fprintf(tw, "   %.3fms\t%s\t%s\t%s\t%s\t%s\t\n", float64(sp.Start)/1e6, FormatDuration(sp.Duration()),
				sp.Kind, name, dash(sp.Actor), res)
		}
		_ = tw.Flush()
	}

	d.printf("\nLatency over the %d sets created, and over the load's writes:\n", d.res.Sets)
	labels := map[string]string{
		"set/CommitSnapshots":              "CommitSnapshots, as the coordinator timed it",
		"set/array commit (pointer swaps)": "the array's commit itself (pointer swaps)",
		"set/hold window":                  "hold window: flush, hold, commit, release",
		"set/DoSnapshotSet":                "DoSnapshotSet, the whole sequence",
		"load/write":                       "load write, from its scheduled start",
		"load/write that met a hold":       "load write that met a hold window",
	}
	width := 0
	for _, l := range d.res.Latencies {
		width = max(width, len(labels[l.Name]))
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, " %-*s\tcount\tp50\tp99\tp99.9\tmax\t\n", width, "")
	for _, l := range d.res.Latencies {
		if l.Count == 0 {
			fmt.Fprintf(tw, " %-*s\t0\t-\t-\t-\t-\t\n", width, labels[l.Name])
			continue
		}
		fmt.Fprintf(tw, " %-*s\t%d\t%s\t%s\t%s\t%s\t\n", width, labels[l.Name], l.Count,
			FormatDuration(l.P50), FormatDuration(l.P99), FormatDuration(l.P999), FormatDuration(l.Max))
	}
	_ = tw.Flush()
	if d.cfg.SlowDelay > 0 && d.res.Sets > 2 {
		d.printf("   DoSnapshotSet's tail is sets 1 and 2, which waited for the slow writer.\n")
	}
	if d.res.Sets < 1000 {
		d.printf("   With %d sets, p99.9 is the slowest set; --sets 1000 gives the tail some meaning.\n", d.res.Sets)
	}

	d.res.Results = d.results(started)
	if d.cfg.Report != "" {
		if err := writeReport(d.cfg.Report, d.res.Results); err != nil {
			d.check(false, "the report", err.Error())
			d.res.Passed = false
		} else {
			d.res.Report = d.cfg.Report
			where := d.cfg.Report
			if abs, err := filepath.Abs(where); err == nil {
				where = abs
			}
			d.printf("\nReport: %s\n", d.cfg.Report)
			d.printf("   Open file://%s in a browser: the Gantt chart of sets 1 and 2, percentile curves, histograms.\n", where)
		}
	}

	if d.cfg.CSV != "" {
		if paths, err := WriteCSV(d.cfg.CSV, d.res.Results...); err != nil {
			d.check(false, "the CSV files", err.Error())
			d.res.Passed = false
		} else {
			d.printf("CSV: %d files in %s, one per series.\n", len(paths), d.cfg.CSV)
		}
	}

	if failed := d.res.Failed(); len(failed) == 0 {
		d.printf("\nAll %d checks passed in %s.\n", len(d.res.Checks), FormatDuration(time.Since(started)))
	} else {
		d.printf("\n%d of %d checks FAILED:\n", len(failed), len(d.res.Checks))
		for _, c := range failed {
			d.printf("   step %d, %s: %s\n", c.Step, c.Name, c.Detail)
		}
	}
}

// plural writes n things: "1 write", "7 writes".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// results builds what the report shows.
func (d *demo) results(started time.Time) []*Result {
	m := Describe()
	var notes []string
	for _, c := range d.res.Checks {
		v := "PASS"
		if !c.Pass {
			v = "FAIL"
		}
		notes = append(notes, fmt.Sprintf("%s (step %d) %s: %s", v, c.Step, c.Name, c.Detail))
	}
	first := &Result{Workload: "demo", Config: d.cfg, Params: d.cfg.params(), Machine: m, Started: started,
		Elapsed: time.Since(started), Latencies: d.res.Latencies, Metrics: d.res.Metrics, Notes: notes,
		Summary: fmt.Sprintf("%d snapshot sets of D: and E: under %d NBD load writes; the timeline is set 1's, with writers app, slow and quick",
			d.res.Sets, d.loadWrites)}
	if d.load != nil {
		first.Series = d.load.series()
		first.Series.Snapshots = d.snaps
	}
	if fs := d.res.FirstSet; fs != nil {
		first.Timeline = &Timeline{Caption: fmt.Sprintf("set 1, %v: DoSnapshotSet %s", fs.ID, FormatDuration(fs.End-fs.Start)),
			Start: fs.Start, End: fs.End, Spans: fs.Spans}
	}
	out := []*Result{first}
	if vs := d.res.VetoSet; vs != nil {
		var wn []string
		for _, s := range vs.Writers {
			wn = append(wn, fmt.Sprintf("writer %s: %v, %s %s", s.Name, s.State, s.Failure.Name(), s.Message))
		}
		out = append(out, &Result{Workload: "demo: set 2, vetoed", Machine: m, Started: started,
			Elapsed: vs.End - vs.Start, Notes: wn,
			Params:  []Param{{"writers", "app, slow, quick, vetoer"}, {"vetoer", "vetoes Freeze with VSS_E_WRITERERROR_RETRYABLE"}},
			Summary: fmt.Sprintf("DoSnapshotSet returned %s although vetoer vetoed (vss-spec.md D)", vs.Result),
			Timeline: &Timeline{Caption: fmt.Sprintf("set 2, %v: DoSnapshotSet %s", vs.ID, FormatDuration(vs.End-vs.Start)),
				Start: vs.Start, End: vs.End, Spans: vs.Spans}})
	}
	return out
}

// writeReport writes the HTML report to path.
func writeReport(path string, results []*Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteHTML(f, results...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteJSON writes the result as indented JSON. Durations are integers of
// nanoseconds in fields ending in _ns.
func (r *DemoResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
