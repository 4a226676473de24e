package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/coordinator"
)

// demoLikeTimeline is a set shaped as the demo's first: a slow writer
// makes it 600 ms long, while its hold window and commit take about
// 130 µs; one writer's Freeze fails and it gets Abort.
func demoLikeTimeline() *Timeline {
	us := func(n float64) time.Duration { return time.Duration(n * float64(time.Microsecond)) }
	var spans []coordinator.Span
	at := us(40)
	step := func(name string, d time.Duration) (time.Duration, time.Duration) {
		a := at
		at += d
		spans = append(spans, coordinator.Span{Kind: coordinator.KindPhase, Name: name, Start: a, End: at, Result: "S_OK"})
		return a, at
	}
	call := func(name string, a, b time.Duration) {
		spans = append(spans, coordinator.Span{Kind: coordinator.KindProvider, Name: name, Actor: "array", Start: a, End: b, Result: "S_OK"})
	}
	event := func(writer, name string, a, b time.Duration, result string) {
		spans = append(spans, coordinator.Span{Kind: coordinator.KindWriter, Name: name, Actor: writer, Start: a, End: b, Result: result})
	}
	call("AreLunsSupported", us(1), us(3))
	call("BeginPrepareSnapshot", us(4), us(9))
	a, b := step("EndPrepareSnapshots", us(5))
	call("EndPrepareSnapshots", a, b)
	step("SetSourceFlags", us(2))
	a, b = step("PrepareForSnapshot", 300*time.Millisecond)
	event("app", "PrepareForSnapshot", a, a+us(50), "true")
	event("slow", "PrepareForSnapshot", a, b, "true")
	event("quick", "PrepareForSnapshot", a, a+us(3), "true")
	a, b = step("Freeze", 300*time.Millisecond)
	event("app", "Freeze", a, a+us(80), "true")
	event("slow", "Freeze", a, b, "true")
	event("quick", "Freeze", a, a+us(2), "false")
	a, b = step("PreCommitSnapshots", us(8))
	call("PreCommitSnapshots", a, b)
	h0, _ := step("FlushAndHold", us(60))
	a, b = step("CommitSnapshots", us(20))
	call("CommitSnapshots", a, b)
	_, h1 := step("ReleaseWrites", us(50))
	spans = append(spans, coordinator.Span{Kind: coordinator.KindWindow, Name: "hold", Start: h0, End: h1})
	step("ClearSourceFlags", us(2))
	a, b = step("PostCommitSnapshots", us(9))
	call("PostCommitSnapshots", a, b)
	spans = append(spans, coordinator.Span{Kind: coordinator.KindWindow, Name: "freeze-window", Actor: "slow", Start: 300 * time.Millisecond, End: b})
	a, _ = step("Thaw", us(200))
	event("app", "Thaw", a, a+us(100), "true")
	event("slow", "Thaw", a, a+us(100), "true")
	event("quick", "Abort", a, a+us(20), "true")
	for _, n := range []string{"GetTargetLuns", "AutoImport", "PreFinalCommitSnapshots", "PostSnapshot", "PostFinalCommitSnapshots"} {
		a, b = step(n, us(30))
		if n != "AutoImport" && n != "PostSnapshot" {
			call(n, a, b)
		}
		if n == "GetTargetLuns" {
			call("LocateLuns", a+us(5), a+us(10))
			call("FillInLunInfo", a+us(11), a+us(20))
		}
		if n == "PostSnapshot" {
			event("app", "PostSnapshot", a, b, "true")
			event("slow", "PostSnapshot", a, b, "true")
		}
	}
	return &Timeline{Caption: "set 1, {98D7D0F8-5C24-4697-A96D-55A621AB1A0C}: DoSnapshotSet 600ms", Start: 0, End: at + us(10), Spans: spans}
}

// latencyOf is the summary of n values spread over three decades from
// base.
func latencyOf(name string, n int, base time.Duration, seed int64) Latency {
	h := NewHistogram()
	r := rand.New(rand.NewSource(seed))
	for range n {
		h.Record(time.Duration(float64(base) * (1 + 999*r.Float64()*r.Float64())))
	}
	return h.Summary(name)
}

// chartResults are every kind of chart with the cases that broke them: a
// long set with a short hold, the sixteen steps in one chart, a series
// of 200 000 values (its axis reaches p99.999) and long series names.
func chartResults() []*Result {
	r := &Result{Workload: "charts", Timeline: demoLikeTimeline()}
	for i, s := range []string{"EndPrepareSnapshots", "SetSourceFlags", "PrepareForSnapshot", "Freeze", "PreCommitSnapshots",
		"FlushAndHold", "CommitSnapshots", "ReleaseWrites", "ClearSourceFlags", "PostCommitSnapshots", "Thaw",
		"GetTargetLuns", "AutoImport", "PreFinalCommitSnapshots", "PostSnapshot", "PostFinalCommitSnapshots"} {
		r.Latencies = append(r.Latencies, latencyOf("step/"+s, 200, time.Duration(i+1)*time.Microsecond, int64(i)))
	}
	for i, p := range Phases {
		r.Latencies = append(r.Latencies, latencyOf("phase/"+p, 300, time.Duration(i+1)*time.Microsecond, int64(i)))
	}
	r.Latencies = append(r.Latencies, latencyOf("load/write", 200000, 20*time.Microsecond, 1),
		latencyOf("load/write that met a hold window while a snapshot was being committed", 50, 40*time.Microsecond, 2))
	for i := range 12 {
		r.Latencies = append(r.Latencies, latencyOf(fmt.Sprintf("many/series %d", i), 100, time.Microsecond, int64(i)))
	}
	// Ten seconds of load at 100 ms with a set a second.
	r.Series = &TimeSeries{Interval: SeriesInterval}
	for i := range 100 {
		p := SeriesPoint{Start: time.Duration(i) * SeriesInterval, Writes: 4000 + int64(i%7)*100, Reads: 1000,
			P50: 40 * time.Microsecond, P99: 400 * time.Microsecond, Max: time.Duration(1+i%10) * time.Millisecond}
		p.WriteBytes, p.ReadBytes = p.Writes*4096, p.Reads*4096
		r.Series.Points = append(r.Series.Points, p)
		if i%10 == 5 {
			at := p.Start + 30*time.Millisecond
			r.Series.Snapshots = append(r.Series.Snapshots, SnapshotMark{HoldStart: at - 60*time.Microsecond, Commit: at, HoldEnd: at + 70*time.Microsecond})
		}
	}
	return []*Result{r}
}

// svgText is one text element of a chart.
type svgText struct {
	x, y              float64
	anchor, class, tf string
	body              string
}

// swatch is one legend entry's mark.
type swatch struct{ colour, dash string }

// chart is what the tests read of one SVG chart.
type chart struct {
	id       string
	w, h     float64
	texts    []svgText
	used     map[string]bool // colours of the marks: bars and series
	swatches []swatch
}

var svgRe = regexp.MustCompile(`(?s)<svg id="[^"]*".*?</svg>`)

// charts parses every chart of an HTML report.
func charts(t *testing.T, html string) []chart {
	t.Helper()
	var out []chart
	for _, src := range svgRe.FindAllString(html, -1) {
		out = append(out, parseChart(t, src))
	}
	require.NotEmpty(t, out)
	return out
}

func parseChart(t *testing.T, src string) chart {
	t.Helper()
	c := chart{used: map[string]bool{}}
	dec := xml.NewDecoder(strings.NewReader(src))
	dec.Strict = false
	dec.Entity = xml.HTMLEntity
	var cur *svgText
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		switch e := tok.(type) {
		case xml.StartElement:
			a := map[string]string{}
			for _, at := range e.Attr {
				a[at.Name.Local] = at.Value
			}
			f := func(k string) float64 {
				v, err := strconv.ParseFloat(a[k], 64)
				require.NoError(t, err, "%s %s=%q", e.Name.Local, k, a[k])
				return v
			}
			switch e.Name.Local {
			case "svg":
				c.id = a["id"]
				vb := strings.Fields(a["viewBox"])
				require.Len(t, vb, 4)
				c.w, _ = strconv.ParseFloat(vb[2], 64)
				c.h, _ = strconv.ParseFloat(vb[3], 64)
			case "text":
				cur = &svgText{x: f("x"), y: f("y"), anchor: a["text-anchor"], class: a["class"], tf: a["transform"]}
			}
			classes := strings.Fields(a["class"])
			colours := func() []string {
				var cs []string
				for _, k := range []string{"fill", "stroke"} {
					if v := a[k]; v != "" && v != "none" {
						cs = append(cs, strings.ToLower(v))
					}
				}
				return cs
			}
			switch {
			case slices.Contains(classes, "bar") || slices.Contains(classes, "series"):
				for _, col := range colours() {
					c.used[col+"|"+a["stroke-dasharray"]] = true
				}
			case slices.Contains(classes, "swatch"):
				for _, col := range colours() {
					c.swatches = append(c.swatches, swatch{col, a["stroke-dasharray"]})
				}
			}
		case xml.CharData:
			if cur != nil {
				cur.body += string(e)
			}
		case xml.EndElement:
			if e.Name.Local == "text" && cur != nil {
				c.texts = append(c.texts, *cur)
				cur = nil
			}
		}
	}
	return c
}

// reportOf writes the HTML report of results.
func reportOf(t *testing.T, results ...*Result) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteHTML(&buf, results...))
	return buf.String()
}

// checkLegends requires that every colour (and dash) a chart draws a mark
// in is in its legend, and that no legend entry shares its mark with
// another: one colour, one meaning.
func checkLegends(t *testing.T, cs []chart) {
	t.Helper()
	for _, c := range cs {
		inLegend := map[string]bool{}
		for _, s := range c.swatches {
			key := s.colour + "|" + s.dash
			require.False(t, inLegend[key], "%s: two legend entries drawn as %s", c.id, key)
			inLegend[key] = true
		}
		for u := range c.used {
			ok := inLegend[u]
			if col, dash, _ := strings.Cut(u, "|"); dash != "" && !ok {
				// A dashed frame (the zoomed hold window) is drawn in a
				// bar colour the legend shows solid.
				ok = inLegend[col+"|"] && strings.Contains(c.id, "gantt")
			}
			require.True(t, ok, "%s: colour %s is drawn but not in the legend %v", c.id, u, c.swatches)
		}
	}
}

// checkTextInside requires every text of a chart to lie within its view
// box, by textWidth's conservative estimate of its width.
func checkTextInside(t *testing.T, cs []chart) {
	t.Helper()
	const slack = 0.5
	for _, c := range cs {
		for _, tx := range c.texts {
			size, ok := fontSize[tx.class]
			require.True(t, ok, "%s: text %q has no known class %q", c.id, tx.body, tx.class)
			w := textWidth(tx.class, tx.body)
			var lo float64
			switch tx.anchor {
			case "start":
				lo = 0
			case "middle":
				lo = -w / 2
			case "end":
				lo = -w
			default:
				t.Fatalf("%s: text %q without an anchor", c.id, tx.body)
			}
			x0, x1, y0, y1 := tx.x+lo, tx.x+lo+w, tx.y-size, tx.y+0.25*size
			if strings.HasPrefix(tx.tf, "rotate(-90") {
				// Turned a quarter about (x, y): it runs upwards from y.
				x0, x1, y0, y1 = tx.x-size, tx.x+0.25*size, tx.y-lo-w, tx.y-lo
			}
			require.True(t, x0 >= -slack && x1 <= c.w+slack && y0 >= -slack && y1 <= c.h+slack,
				"%s: text %q (%.0f..%.0f, %.0f..%.0f) leaves the view box 0 0 %.0f %.0f", c.id, tx.body, x0, x1, y0, y1, c.w, c.h)
		}
	}
}

// TestChartsLegendsAndText checks the two rules of every chart, on the
// charts of real runs and on the cases that broke them.
func TestChartsLegendsAndText(t *testing.T) {
	for name, html := range map[string]string{"sample": reportOf(t, sampleResults(t)...), "hard cases": reportOf(t, chartResults()...)} {
		t.Run(name, func(t *testing.T) {
			cs := charts(t, html)
			checkLegends(t, cs)
			checkTextInside(t, cs)
		})
	}
}

// TestGanttLegendNamesStepColours checks that the steps' colours are in
// the Gantt legend with their stage: CommitSnapshots was drawn in the
// teal the legend gave to Thaw, FlushAndHold in Freeze's red.
func TestGanttLegendNamesStepColours(t *testing.T) {
	html := reportOf(t, chartResults()...)
	gantt := svgRe.FindString(html)
	require.Contains(t, gantt, `id="gantt-0"`)
	for _, st := range []string{PhaseCommit, PhaseHold, PhaseThaw, PhaseFreeze, PhasePrepare, PhasePostSnapshot, stageAbort, stageOutside} {
		require.Contains(t, gantt, fmt.Sprintf(`fill="%s" class="swatch"/><text x=`, stageColour[st]), st)
		require.Contains(t, gantt, ">"+esc(stageName[st])+"</text>", st)
	}
	// CommitSnapshots' step and provider call are drawn in commit's colour.
	require.Regexp(t, `fill="`+stageColour[PhaseCommit]+`" class="bar"><title>phase CommitSnapshots`, gantt)
	require.Regexp(t, `fill="`+stageColour[PhaseCommit]+`" class="bar"><title>array provider CommitSnapshots`, gantt)
	require.Regexp(t, `fill="`+stageColour[PhaseHold]+`" class="bar"><title>phase FlushAndHold`, gantt)
	require.Contains(t, gantt, "outlined: failed, vetoed or timed out", "quick's Freeze answered false")
	// Colours differ between stages.
	seen := map[string]string{}
	for st, c := range stageColour {
		require.NotContains(t, seen, c, "%s and %s", st, seen[c])
		seen[c] = st
	}
	require.NotContains(t, seen, setColour)
}

// TestHoldWindowZoomed checks that the hold window is drawn again on a time
// axis of its own, in microseconds, with the lanes that have something in
// it and none that do not.
func TestHoldWindowZoomed(t *testing.T) {
	html := reportOf(t, chartResults()...)
	var hold chart
	for _, c := range charts(t, html) {
		if c.id == "hold-0" {
			hold = c
		}
	}
	require.Equal(t, "hold-0", hold.id, "the report has the zoomed hold window")
	var lanes, ticks []string
	for _, tx := range hold.texts {
		switch tx.class {
		case "lane":
			lanes = append(lanes, tx.body)
		case "tick":
			ticks = append(ticks, tx.body)
		}
	}
	for _, want := range []string{"DoSnapshotSet", "FlushAndHold", "CommitSnapshots", "ReleaseWrites", "hold window", "array CommitSnapshots"} {
		require.Contains(t, lanes, want)
	}
	for _, not := range []string{"PrepareForSnapshot", "Thaw", "writer quick", "writer app", "GetTargetLuns"} {
		require.NotContains(t, lanes, not)
	}
	require.Contains(t, ticks, "0ns")
	for _, tk := range ticks {
		require.True(t, strings.HasSuffix(tk, "µs") || tk == "0ns", "tick %q: the axis spans the 130 µs window", tk)
	}
	require.Contains(t, html, "The hold window of the set above, zoomed: FlushAndHold to ReleaseWrites, 130µs")
}

// TestPercentileAxes checks the percentile chart's y-axis title and that
// its last tick, p99.999, is whole.
func TestPercentileAxes(t *testing.T) {
	html := reportOf(t, chartResults()...)
	for _, c := range charts(t, html) {
		if !strings.HasPrefix(c.id, "percentiles-") && !strings.HasPrefix(c.id, "histogram-") {
			continue
		}
		var yTitle string
		for _, tx := range c.texts {
			if strings.HasPrefix(tx.tf, "rotate(-90") {
				yTitle = tx.body
			}
		}
		want := "latency"
		if strings.HasPrefix(c.id, "histogram-") {
			want = "share of operations"
		}
		require.Equal(t, want, yTitle, c.id)
	}
	require.Contains(t, html, ">p99.999</text>", "200 000 values reach p99.999")
}

// TestHistogramBucketsShareEdges checks that neighbouring buckets share
// their edge: each used to end a nanosecond past the next one's start, and
// the histogram line fell to zero between every two bars.
func TestHistogramBucketsShareEdges(t *testing.T) {
	l := latencyOf("x", 100000, 100*time.Nanosecond, 7)
	require.Greater(t, len(l.Buckets), 20)
	var total int64
	for i, b := range l.Buckets {
		require.Less(t, b.Low, b.High)
		total += b.Count
		if i > 0 {
			require.LessOrEqual(t, l.Buckets[i-1].High, b.Low, "buckets do not overlap")
		}
	}
	require.Equal(t, l.Count, total)
	// Values spread evenly leave no bucket empty: the buckets run on.
	contiguous := 0
	for i := 1; i < len(l.Buckets); i++ {
		if l.Buckets[i-1].High == l.Buckets[i].Low {
			contiguous++
		}
	}
	require.Equal(t, len(l.Buckets)-1, contiguous)
	for v := int64(1); v < 1e7; v = v*9/8 + 1 {
		k := bucketOf(v)
		require.True(t, bucketEdge(k) <= v && v < bucketEdge(k+1), "%d in bucket %d: [%d, %d)", v, k, bucketEdge(k), bucketEdge(k+1))
	}
}
