package bench

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// WriteCSV writes every series of the results as CSV files in dir, which
// it creates if need be, and returns their paths: per result, named after
// its workload ("io-impact-latency.csv"), the latency summaries, the
// percentile curves, the histograms' buckets, the set's timeline, the
// load's time series and its snapshots, and the metrics. A file whose
// table would be empty is not written. Durations are integers of
// nanoseconds, in columns ending in _ns, as in the JSON.
func WriteCSV(dir string, results ...*Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	seen := map[string]int{}
	for _, r := range results {
		slug := strings.Trim(nonID.ReplaceAllString(strings.ToLower(r.Workload), "-"), "-")
		if slug == "" {
			slug = "result"
		}
		if n := seen[slug]; n > 0 {
			seen[slug]++
			slug += "-" + strconv.Itoa(n+1)
		} else {
			seen[slug] = 1
		}
		for _, t := range csvTables(r) {
			if len(t.rows) == 0 {
				continue
			}
			p := filepath.Join(dir, slug+"-"+t.name+".csv")
			if err := writeCSVFile(p, t.header, t.rows); err != nil {
				return paths, err
			}
			paths = append(paths, p)
		}
	}
	return paths, nil
}

type csvTable struct {
	name   string
	header []string
	rows   [][]string
}

func i64[T ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }

// csvTables are the tables of one result.
func csvTables(r *Result) []csvTable {
	lat := csvTable{name: "latency", header: []string{"name", "count", "min_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p99_9_ns", "max_ns"}}
	curve := csvTable{name: "percentiles", header: []string{"name", "percentile", "value_ns"}}
	hist := csvTable{name: "histogram", header: []string{"name", "low_ns", "high_ns", "count"}}
	for _, l := range r.Latencies {
		lat.rows = append(lat.rows, []string{l.Name, i64(l.Count), i64(l.Min), i64(l.Mean), i64(l.P50), i64(l.P90), i64(l.P99), i64(l.P999), i64(l.Max)})
		for _, c := range l.Curve {
			curve.rows = append(curve.rows, []string{l.Name, strconv.FormatFloat(c.Percentile, 'g', -1, 64), i64(c.Value)})
		}
		for _, b := range l.Buckets {
			hist.rows = append(hist.rows, []string{l.Name, i64(b.Low), i64(b.High), i64(b.Count)})
		}
	}
	tl := csvTable{name: "timeline", header: []string{"kind", "name", "actor", "start_ns", "end_ns", "result", "detail"}}
	if r.Timeline != nil {
		tl.rows = append(tl.rows, []string{"requester", "DoSnapshotSet", "", i64(r.Timeline.Start), i64(r.Timeline.End), "", ""})
		for _, s := range r.Timeline.Spans {
			tl.rows = append(tl.rows, []string{string(s.Kind), s.Name, s.Actor, i64(s.Start), i64(s.End), s.Result, s.Detail})
		}
	}
	ts := csvTable{name: "series", header: []string{"start_ns", "reads", "writes", "read_bytes", "write_bytes", "p50_ns", "p99_ns", "max_ns"}}
	snaps := csvTable{name: "snapshots", header: []string{"hold_start_ns", "commit_ns", "hold_end_ns"}}
	if r.Series != nil {
		for _, p := range r.Series.Points {
			ts.rows = append(ts.rows, []string{i64(p.Start), i64(p.Reads), i64(p.Writes), i64(p.ReadBytes), i64(p.WriteBytes), i64(p.P50), i64(p.P99), i64(p.Max)})
		}
		for _, m := range r.Series.Snapshots {
			snaps.rows = append(snaps.rows, []string{i64(m.HoldStart), i64(m.Commit), i64(m.HoldEnd)})
		}
	}
	met := csvTable{name: "metrics", header: []string{"name", "value", "unit"}}
	for _, m := range r.Metrics {
		met.rows = append(met.rows, []string{m.Name, strconv.FormatFloat(m.Value, 'g', -1, 64), m.Unit})
	}
	return []csvTable{lat, curve, hist, tl, ts, snaps, met}
}

func writeCSVFile(path string, header []string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(header)
	_ = w.WriteAll(rows) // WriteAll flushes
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	return f.Close()
}
