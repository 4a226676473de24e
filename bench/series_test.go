package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTimeSeriesOfALoad checks an io-impact run's time series: a point per
// 100 ms that between them count every write, and every set marked on the
// same clock, inside the run.
func TestTimeSeriesOfALoad(t *testing.T) {
	res, err := RunIOImpact(context.Background(), tinyIOImpact(), nil)
	require.NoError(t, err)
	ts := res.Series
	require.NotNil(t, ts)
	require.Equal(t, SeriesInterval, ts.Interval)
	require.InDelta(t, float64(res.Elapsed/SeriesInterval), float64(len(ts.Points)), 2)
	var writes int64
	for i, p := range ts.Points {
		require.Equal(t, time.Duration(i)*SeriesInterval, p.Start)
		writes += p.Writes
		if p.Writes > 0 {
			require.Positive(t, p.P50)
			require.LessOrEqual(t, p.P50, p.P99)
			require.LessOrEqual(t, p.P99, p.Max)
			require.Equal(t, p.Writes*int64(tinyIOImpact().BlockSize), p.WriteBytes)
		}
	}
	var counted int64
	for _, name := range []string{"write/before", "write/during", "write/after"} {
		l, ok := res.Latency(name)
		require.True(t, ok)
		counted += l.Count
	}
	require.Equal(t, counted, writes, "every write is in one point")
	sets, ok := res.Metric("sets")
	require.True(t, ok)
	require.Len(t, ts.Snapshots, int(sets.Value))
	require.NotEmpty(t, ts.Snapshots)
	for _, m := range ts.Snapshots {
		require.True(t, 0 <= m.HoldStart && m.HoldStart <= m.Commit && m.Commit <= m.HoldEnd && m.HoldEnd <= res.Elapsed, "%+v", m)
	}

	html := reportOf(t, res)
	c := charts(t, html)
	var chart string
	for _, src := range svgRe.FindAllString(html, -1) {
		if strings.HasPrefix(src, `<svg id="series-0"`) {
			chart = src
		}
	}
	require.NotEmpty(t, chart, "the report draws the series")
	require.Equal(t, 2*len(ts.Snapshots), strings.Count(chart, `class="bar mark"`), "each set marked on both panels")
	checkLegends(t, c)
	checkTextInside(t, c)
}

// TestMergeSeries checks the merge of the workers' points and the
// percentiles taken from their buckets.
func TestMergeSeries(t *testing.T) {
	var a, b seriesRecorder
	for i := range 99 {
		a.record(50*time.Millisecond, 10*time.Microsecond, 4096, false)
		_ = i
	}
	b.record(60*time.Millisecond, 5*time.Millisecond, 4096, true)
	b.record(250*time.Millisecond, time.Millisecond, 512, false)
	ts := mergeSeries([]*seriesRecorder{&a, &b})
	require.Len(t, ts.Points, 3)
	p := ts.Points[0]
	require.EqualValues(t, 99, p.Writes)
	require.EqualValues(t, 1, p.Reads)
	require.EqualValues(t, 4096, p.ReadBytes)
	require.Equal(t, 5*time.Millisecond, p.Max)
	require.InEpsilon(t, float64(10*time.Microsecond), float64(p.P50), 0.2)
	require.InEpsilon(t, float64(10*time.Microsecond), float64(p.P99), 0.2, "99 of 100 took 10 µs")
	require.Zero(t, ts.Points[1].Ops())
	require.EqualValues(t, 512, ts.Points[2].WriteBytes)
	require.InEpsilon(t, float64(time.Millisecond), float64(ts.Points[2].P99), 0.2)
}

// TestCompareReport checks a report that overlays an earlier run: the old
// run's series are in the charts, dashed and named, and the charts keep
// their rules.
func TestCompareReport(t *testing.T) {
	cur, old := chartResults(), chartResults()
	old[0].Started = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var js bytes.Buffer
	require.NoError(t, old[0].WriteJSON(&js))
	read, err := ReadResults(&js)
	require.NoError(t, err)
	require.Len(t, read, 1)
	require.Equal(t, old[0].Latencies, read[0].Latencies)
	require.Equal(t, old[0].Series, read[0].Series)

	var buf bytes.Buffer
	require.NoError(t, WriteHTMLCompare(&buf, read, cur...))
	html := buf.String()
	require.Contains(t, html, "Compared with the run started 2026-01-02 03:04:05 UTC")
	require.Contains(t, html, ">old: write</text>")
	require.Contains(t, html, ">old: CommitSnapshots</text>", "steps too")
	require.Contains(t, html, ">old: written, MiB/s</text>", "and the time series")
	require.Contains(t, html, `stroke-dasharray="`+oldDash+`"`)
	cs := charts(t, html)
	checkLegends(t, cs)
	checkTextInside(t, cs)

	// Results are read one after another or as an array; anything else is
	// an error.
	var two bytes.Buffer
	require.NoError(t, cur[0].WriteJSON(&two))
	require.NoError(t, old[0].WriteJSON(&two))
	rs, err := ReadResults(&two)
	require.NoError(t, err)
	require.Len(t, rs, 2)
	rs, err = ReadResults(strings.NewReader(`[{"workload":"a"},{"workload":"b"}]`))
	require.NoError(t, err)
	require.Len(t, rs, 2)
	_, err = ReadResults(strings.NewReader(`{"sets": 3}`))
	require.Error(t, err)
	_, err = ReadResults(strings.NewReader(``))
	require.Error(t, err)
}

// TestWriteCSV checks that every series of a result is written as CSV,
// one file per table, with a header and a row per value.
func TestWriteCSV(t *testing.T) {
	rs := chartResults()
	rs = append(rs, &Result{Workload: "charts", Metrics: []Metric{{Name: "sets", Value: 3}}})
	dir := filepath.Join(t.TempDir(), "csv")
	paths, err := WriteCSV(dir, rs...)
	require.NoError(t, err)
	read := func(name string) [][]string {
		f, err := os.Open(filepath.Join(dir, name))
		require.NoError(t, err)
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		require.NoError(t, err)
		return rows
	}
	r := rs[0]
	lat := read("charts-latency.csv")
	require.Equal(t, []string{"name", "count", "min_ns", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p99_9_ns", "max_ns"}, lat[0])
	require.Len(t, lat, len(r.Latencies)+1)
	curve, hist := 0, 0
	for _, l := range r.Latencies {
		curve += len(l.Curve)
		hist += len(l.Buckets)
	}
	require.Len(t, read("charts-percentiles.csv"), curve+1)
	require.Len(t, read("charts-histogram.csv"), hist+1)
	require.Len(t, read("charts-timeline.csv"), len(r.Timeline.Spans)+2)
	series := read("charts-series.csv")
	require.Len(t, series, len(r.Series.Points)+1)
	require.Equal(t, "start_ns", series[0][0])
	require.Len(t, read("charts-snapshots.csv"), len(r.Series.Snapshots)+1)
	require.Equal(t, [][]string{{"name", "value", "unit"}, {"sets", "3", ""}}, read("charts-2-metrics.csv"), "a second result of one workload gets its own files")
	require.NoFileExists(t, filepath.Join(dir, "charts-2-latency.csv"), "no empty table")
	for _, p := range paths {
		require.FileExists(t, p)
	}
}

// TestSeriesLastPointOverItsLength checks that the last point, which the
// end of the load cuts short, is read over its own length: a load that
// stopped 20 ms into its last interval does not show its throughput
// falling to a fifth there.
func TestSeriesLastPointOverItsLength(t *testing.T) {
	ts := &TimeSeries{Interval: SeriesInterval, End: 120 * time.Millisecond, Points: []SeriesPoint{
		{Start: 0, Writes: 100, WriteBytes: 100 << 20}, {Start: SeriesInterval, Writes: 20, WriteBytes: 20 << 20}}}
	require.Equal(t, SeriesInterval, ts.width(0))
	require.Equal(t, 20*time.Millisecond, ts.width(SeriesInterval))
	svg := timeSeriesSVG("series-0", "t", ts, nil)
	// Both points at 1000 MiB/s: one flat line at the top of the axis.
	m := regexp.MustCompile(`stroke="` + colourWrite + `" points="([0-9.]+),([0-9.]+) ([0-9.]+),([0-9.]+)"`).FindStringSubmatch(svg)
	require.NotNil(t, m, svg)
	require.Equal(t, m[2], m[4])
}
