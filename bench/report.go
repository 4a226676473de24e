package bench

import (
	"html/template"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report element ids, for tests and for links into a report: the Gantt
// chart of result i is "gantt-i", its hold window zoomed "hold-i", its
// load's throughput and latency over time "series-i"; a
// latency group g's charts are "percentiles-i-g" and "histogram-i-g", g
// made of [a-z0-9-].
const (
	GanttID      = "gantt"
	HoldID       = "hold"
	SeriesID     = "series"
	PercentileID = "percentiles"
	HistogramID  = "histogram"
)

var nonID = regexp.MustCompile(`[^a-z0-9]+`)

// chartID builds an element id from a kind, a result index and a group.
func chartID(kind string, i int, group string) string {
	id := kind + "-" + strconv.Itoa(i)
	if g := strings.Trim(nonID.ReplaceAllString(strings.ToLower(group), "-"), "-"); g != "" {
		id += "-" + g
	}
	return id
}

type reportChart struct {
	Title string
	SVG   template.HTML
}

type reportResult struct {
	*Result
	Gantt  template.HTML
	Hold   template.HTML
	Series template.HTML
	Charts []reportChart
	Rows   [][]string
	// Old is the result compared against, if any.
	Old *Result
}

// WriteHTML writes a self-contained HTML report of the results: for each,
// its parameters and machine, the Gantt chart of its snapshot set when it
// has one, its load's throughput and latency over time when it ran one, a
// percentile table, and per group of latencies a percentile curve and a
// histogram. It loads nothing: no script, font or style sheet from
// anywhere.
func WriteHTML(w io.Writer, results ...*Result) error {
	return WriteHTMLCompare(w, nil, results...)
}

// WriteHTMLCompare writes the report of results as WriteHTML does, with
// each result's charts overlaid by those of the result of old of the same
// workload (the first such), drawn dashed and named "old: ...". The
// series of a latency group are matched by name.
func WriteHTMLCompare(w io.Writer, old []*Result, results ...*Result) error {
	var rs []reportResult
	used := map[*Result]bool{}
	for i, r := range results {
		rr := reportResult{Result: r}
		for _, o := range old {
			if o.Workload == r.Workload && !used[o] {
				rr.Old, used[o] = o, true
				break
			}
		}
		if r.Timeline != nil {
			rr.Gantt = template.HTML(ganttSVG(chartID(GanttID, i, ""), r.Timeline))
			rr.Hold = template.HTML(holdInsetSVG(chartID(HoldID, i, ""), r.Timeline))
		}
		if r.Series != nil && len(r.Series.Points) > 0 {
			var os *TimeSeries
			if rr.Old != nil {
				os = rr.Old.Series
			}
			rr.Series = template.HTML(timeSeriesSVG(chartID(SeriesID, i, ""), r.Workload+": throughput and latency over time, snapshots marked", r.Series, os))
		}
		oldGroups := map[string][]series{}
		if rr.Old != nil {
			for _, l := range rr.Old.Latencies {
				if l.Count > 0 {
					g := l.Group()
					oldGroups[g] = append(oldGroups[g], series{name: strings.TrimPrefix(strings.TrimPrefix(l.Name, g), "/"), lat: l})
				}
			}
		}
		var order []string
		groups := map[string][]series{}
		for _, l := range r.Latencies {
			row := []string{l.Name, strconv.FormatInt(l.Count, 10), "-", "-", "-", "-", "-", "-", "-"}
			if l.Count > 0 {
				row = []string{l.Name, strconv.FormatInt(l.Count, 10), FormatDuration(l.Min), FormatDuration(l.Mean),
					FormatDuration(l.P50), FormatDuration(l.P90), FormatDuration(l.P99), FormatDuration(l.P999), FormatDuration(l.Max)}
			}
			rr.Rows = append(rr.Rows, row)
			if l.Count == 0 {
				continue
			}
			g := l.Group()
			if _, ok := groups[g]; !ok {
				order = append(order, g)
			}
			name := strings.TrimPrefix(strings.TrimPrefix(l.Name, g), "/")
			groups[g] = append(groups[g], series{name: name, lat: l})
		}
		for _, g := range order {
			title := g
			if title == "" {
				title = r.Workload
			}
			ss := withOld(groups[g], oldGroups[g])
			rr.Charts = append(rr.Charts,
				reportChart{Title: title + ": percentiles", SVG: template.HTML(percentileSVG(chartID(PercentileID, i, g), title+": latency by percentile", ss))},
				reportChart{Title: title + ": distribution", SVG: template.HTML(histogramSVG(chartID(HistogramID, i, g), title+": share of operations by latency", ss))})
		}
		rs = append(rs, rr)
	}
	return reportTmpl.Execute(w, struct {
		Results []reportResult
		Now     string
	}{rs, time.Now().UTC().Format(time.RFC3339)})
}

// withOld appends to a group's series those of the old run of the same
// names, marked old.
func withOld(ss, old []series) []series {
	out := slices.Clone(ss)
	for _, o := range old {
		for _, s := range ss {
			if s.name == o.name {
				out = append(out, series{name: o.name, lat: o.lat, old: true})
			}
		}
	}
	return out
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur":   FormatDuration,
	"bytes": FormatBytes,
	"date":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>shadowbench report{{range .Results}} · {{.Workload}}{{end}}</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; background: #fff; max-width: 1150px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.kv td:first-child { color: #555; }
.chart { display: block; margin: 12px 0; }
.chart .title { font-size: 14px; font-weight: bold; fill: #222; }
.chart .tick { font-size: 11px; fill: #555; }
.chart .axis { font-size: 12px; fill: #333; }
.chart .legend { font-size: 12px; fill: #222; }
.chart .lane { font-size: 11px; fill: #222; }
.chart .barlabel { font-size: 10px; fill: #fff; }
.chart .grid { stroke: #e4e4e4; stroke-width: 1; }
.chart .band { fill: #f4f1e6; }
.chart .series { fill: none; stroke-width: 2; }
.note { color: #555; font-size: 13px; }
</style>
</head>
<body>
<h1>shadowbench report</h1>
<p class="note">Written {{.Now}}. Durations: ns, µs, ms, s; sizes in binary units.</p>
{{range $i, $r := .Results}}
<section class="result" id="result-{{$i}}">
<h2>{{$r.Workload}}</h2>
<p>{{$r.Summary}}</p>
{{if $r.Old}}<p class="note">Compared with the run started {{date $r.Old.Started}} on {{$r.Old.Machine.CPU}}: its series are dashed and named "old: …". {{$r.Old.Summary}}</p>{{end}}
<h3>Parameters</h3>
<table class="kv params">
{{range $r.Params}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}<tr><td>started</td><td>{{date $r.Started}}</td></tr>
<tr><td>elapsed</td><td>{{dur $r.Elapsed}}</td></tr>
</table>
<h3>Machine</h3>
<table class="kv machine">
<tr><td>CPU</td><td>{{$r.Machine.CPU}}</td></tr>
<tr><td>cores</td><td>{{$r.Machine.Cores}}</td></tr>
<tr><td>GOMAXPROCS</td><td>{{$r.Machine.Procs}}</td></tr>
<tr><td>memory</td><td>{{bytes $r.Machine.MemBytes}}</td></tr>
<tr><td>Go</td><td>{{$r.Machine.GoVersion}}</td></tr>
<tr><td>OS</td><td>{{$r.Machine.OS}} {{$r.Machine.Kernel}}</td></tr>
<tr><td>date</td><td>{{date $r.Machine.Date}}</td></tr>
</table>
{{if $r.Gantt}}<h3>Timeline</h3>
<p class="note">One snapshot set, named in the chart's title; DoSnapshotSet's interval is shaded. Each lane is a step of the sequence (vss-spec.md A.7), a window (the hold window, each writer's freeze window), a provider method or a writer's events. A bar's colour is the stage of the sequence it belongs to; the dashed frame is the hold window, drawn again below on its own time axis.</p>
{{$r.Gantt}}
{{$r.Hold}}
{{end}}{{if $r.Series}}<h3>Over time</h3>
<p class="note">The load's throughput and latency per 100 ms, with each snapshot set marked where its CommitSnapshots began (the mark spans its hold window), so that what a snapshot costs the I/O around it can be seen.</p>
{{$r.Series}}
{{end}}<h3>Latency</h3>
<table class="latency">
<tr><th>latency</th><th>count</th><th>min</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{range $r.Rows}}<tr>{{range $j, $c := .}}{{if eq $j 0}}<td>{{$c}}</td>{{else}}<td class="num">{{$c}}</td>{{end}}{{end}}</tr>
{{end}}</table>
{{if $r.Metrics}}<table class="kv metrics">
{{range $r.Metrics}}<tr><td>{{.Name}}</td><td class="num">{{.String}}</td></tr>
{{end}}</table>{{end}}
{{range $r.Notes}}<p class="note">{{.}}</p>
{{end}}
{{range $r.Charts}}{{.SVG}}
{{end}}
</section>
{{end}}
</body>
</html>
`))
