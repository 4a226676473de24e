package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// Result is what a workload's Run returns: its parameters, the machine,
// latency summaries and scalar metrics, and, for workloads that create
// snapshot sets, the timeline of one of them.
type Result struct {
	Workload string `json:"workload"`
	// Summary says in one line what ran.
	Summary string `json:"summary"`
	// Config is the workload's Config with defaults filled in.
	Config any `json:"config"`
	// Params is Config in human units, for text and HTML.
	Params  []Param       `json:"params"`
	Machine Machine       `json:"machine"`
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Latencies are the histograms' summaries, in the order printed.
	Latencies []Latency `json:"latencies"`
	// Metrics are scalar results: throughput, ratios, counts.
	Metrics []Metric `json:"metrics,omitempty"`
	// Timeline is one snapshot set's timeline, the one whose DoSnapshotSet
	// took the median time, for the Gantt chart.
	Timeline *Timeline `json:"timeline,omitempty"`
	// Series is the load's throughput and latency over time, with the
	// snapshot sets taken under it marked, for workloads that run NBD
	// load.
	Series *TimeSeries `json:"series,omitempty"`
	// Notes are remarks a reader needs to interpret the figures.
	Notes []string `json:"notes,omitempty"`
}

// Param is one parameter of a run.
type Param struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Metric is one scalar result. Unit is "B/s", "op/s", "x" (a ratio),
// "ns" or empty for a count.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// Timeline is one snapshot set's spans, as the coordinator recorded them,
// with DoSnapshotSet's own start and end on the same clock.
type Timeline struct {
	Caption string             `json:"caption"`
	Start   time.Duration      `json:"start_ns"`
	End     time.Duration      `json:"end_ns"`
	Spans   []coordinator.Span `json:"spans"`
}

// Group names the chart a latency belongs to: latencies of one group are
// drawn together. It is the part of the name before the last "/", or the
// whole name.
func (l Latency) Group() string {
	if i := strings.LastIndex(l.Name, "/"); i >= 0 {
		return l.Name[:i]
	}
	return ""
}

// Latency returns the latency summary of the given name.
func (r *Result) Latency(name string) (Latency, bool) {
	for _, l := range r.Latencies {
		if l.Name == name {
			return l, true
		}
	}
	return Latency{}, false
}

// Metric returns the metric of the given name.
func (r *Result) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

func (r *Result) addLatency(name string, h *Histogram) {
	r.Latencies = append(r.Latencies, h.Summary(name))
}

func (r *Result) addMetric(name string, v float64, unit string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Unit: unit})
}

// String formats a metric's value in its unit.
func (m Metric) String() string {
	switch m.Unit {
	case "B/s":
		return FormatRate(m.Value)
	case "op/s":
		return FormatOps(m.Value)
	case "set/s":
		return FormatCount(m.Value, m.Unit)
	case "x":
		return fmt.Sprintf("%.2fx", m.Value)
	case "ns":
		return FormatDuration(time.Duration(m.Value))
	case "":
		return fmt.Sprintf("%.0f", m.Value)
	}
	return fmt.Sprintf("%g %s", m.Value, m.Unit)
}

// WriteText prints the result as a table of percentiles with units,
// then the metrics and notes.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", r.Workload, r.Summary)
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	if len(r.Latencies) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "latency\tcount\tmin\tmean\tp50\tp90\tp99\tp99.9\tmax\t")
		for _, l := range r.Latencies {
			if l.Count == 0 {
				fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t-\t-\t-\t-\t\n", l.Name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", l.Name, l.Count,
				FormatDuration(l.Min), FormatDuration(l.Mean), FormatDuration(l.P50), FormatDuration(l.P90),
				FormatDuration(l.P99), FormatDuration(l.P999), FormatDuration(l.Max))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, m := range r.Metrics {
		fmt.Fprintf(&b, "%s: %s\n", m.Name, m)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the result as indented JSON. Durations are integers of
// nanoseconds in fields ending in _ns.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResults reads results as WriteJSON writes them, for a report that
// compares against an earlier run: one result, several one after another,
// or a JSON array of them.
func ReadResults(r io.Reader) ([]*Result, error) {
	dec := json.NewDecoder(r)
	var out []*Result
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("bench: reading results: %w", err)
		}
		if t := strings.TrimSpace(string(raw)); strings.HasPrefix(t, "[") {
			var rs []*Result
			if err := json.Unmarshal(raw, &rs); err != nil {
				return nil, fmt.Errorf("bench: reading results: %w", err)
			}
			out = append(out, rs...)
			continue
		}
		var res Result
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("bench: reading results: %w", err)
		}
		if res.Workload == "" {
			return nil, fmt.Errorf("bench: reading results: an object without a workload is not a result of bench --json")
		}
		out = append(out, &res)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench: reading results: no result")
	}
	return out, nil
}
