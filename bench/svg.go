package bench

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
)

// The charts are SVG written directly: no script, no external font or
// style sheet, so a report opens anywhere, offline, and prints as drawn.
// A charting library was not used: these three kinds of chart need a few
// hundred lines, and the report must not depend on the network.

// palette is Tableau 10, distinguishable and print-safe.
var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
	"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

func colour(i int) string { return palette[i%len(palette)] }

// svgDoc accumulates one SVG element.
type svgDoc struct{ b strings.Builder }

func (s *svgDoc) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

func esc(s string) string { return html.EscapeString(s) }

func (s *svgDoc) text(x, y float64, anchor, class, t string) {
	s.f(`<text x="%.1f" y="%.1f" text-anchor="%s" class="%s">%s</text>`, x, y, anchor, class, esc(t))
}

// logScale maps durations to pixels on a logarithmic axis.
type logScale struct {
	lo, hi     float64 // log10 of the bounds
	px0, px1   float64
	ticks      []time.Duration
	tickLabels []string
}

func newLogScale(min, max time.Duration, px0, px1 float64) logScale {
	min, max = time.Duration(math.Max(float64(min), 1)), time.Duration(math.Max(float64(max), 1))
	lo := math.Floor(math.Log10(float64(min)))
	hi := math.Ceil(math.Log10(float64(max)))
	if hi <= lo {
		hi = lo + 1
	}
	s := logScale{lo: lo, hi: hi, px0: px0, px1: px1}
	steps := []float64{1}
	if hi-lo <= 2 {
		steps = []float64{1, 2, 5}
	}
	for e := lo; e <= hi; e++ {
		for _, m := range steps {
			v := m * math.Pow(10, e)
			if math.Log10(v) > hi+1e-9 {
				break
			}
			s.ticks = append(s.ticks, time.Duration(v))
			s.tickLabels = append(s.tickLabels, FormatDuration(time.Duration(v)))
		}
	}
	return s
}

func (s logScale) at(d time.Duration) float64 {
	v := math.Log10(math.Max(float64(d), 1))
	return s.px0 + (v-s.lo)/(s.hi-s.lo)*(s.px1-s.px0)
}

// nines maps a percentile to "number of nines": 90 → 1, 99 → 2, 99.9 → 3,
// so a percentile curve shows its tail as much as its body.
func nines(p float64) float64 {
	if p >= 100 {
		return 6
	}
	return math.Min(-math.Log10(1-p/100), 6)
}

// niceStep returns a round step (1, 2 or 5 times a power of ten) that cuts
// span into about n parts.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// series is one line of a chart.
type series struct {
	name string
	lat  Latency
}

const (
	chartW = 760
	chartH = 300
	padL   = 70
	padR   = 20
	padT   = 30
	padB   = 50
)

// percentileSVG draws the percentile curves of a group: latency (log) up,
// percentile (in nines) across.
func percentileSVG(id, title string, ss []series) string {
	// The axis reaches as many nines as the largest series can resolve:
	// with n values, about log10(n); the maximum is drawn at the edge.
	var lo, hi time.Duration = math.MaxInt64, 1
	maxN := 2.0
	for _, s := range ss {
		maxN = math.Max(maxN, math.Ceil(math.Log10(float64(max(s.lat.Count, 1)))))
		for _, c := range s.lat.Curve {
			lo, hi = min(lo, max(c.Value, 1)), max(hi, c.Value)
		}
	}
	if lo == math.MaxInt64 {
		lo = 1
	}
	maxN = math.Min(maxN, 5)
	ys := newLogScale(lo, hi, chartH-padB, padT)
	xat := func(p float64) float64 { return padL + math.Min(nines(p), maxN)/maxN*(chartW-padL-padR) }
	var s svgDoc
	s.f(`<svg id="%s" class="chart percentiles" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), chartW, chartH+20*((len(ss)+2)/3), chartW, chartH+20*((len(ss)+2)/3))
	s.f(`<title>%s</title>`, esc(title))
	s.text(chartW/2, 18, "middle", "title", title)
	for i, t := range ys.ticks {
		y := ys.at(t)
		s.f(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, padL, chartW-padR, y, y)
		s.text(padL-6, y+4, "end", "tick", ys.tickLabels[i])
	}
	for _, p := range []float64{0, 50, 90, 99, 99.9, 99.99, 99.999} {
		if nines(p) > maxN+1e-9 {
			break
		}
		x := xat(p)
		s.f(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, x, x, padT, chartH-padB)
		s.text(x, chartH-padB+16, "middle", "tick", fmt.Sprintf("p%g", p))
	}
	s.text(chartW/2, chartH-padB+34, "middle", "axis", "percentile")
	for i, se := range ss {
		var pts []string
		for _, c := range se.lat.Curve {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xat(c.Percentile), ys.at(c.Value)))
		}
		s.f(`<polyline class="series" stroke="%s" points="%s"><title>%s</title></polyline>`, colour(i), strings.Join(pts, " "), esc(se.name))
	}
	legend(&s, ss)
	s.f(`</svg>`)
	return s.b.String()
}

// histogramSVG draws the distributions of a group: the share of values per
// bucket up, latency (log) across, one step line per series.
func histogramSVG(id, title string, ss []series) string {
	var lo, hi time.Duration = math.MaxInt64, 1
	peak := 0.0
	for _, s := range ss {
		for _, b := range s.lat.Buckets {
			lo, hi = min(lo, b.Low), max(hi, b.High)
			peak = math.Max(peak, float64(b.Count)/float64(max(s.lat.Count, 1)))
		}
	}
	if lo == math.MaxInt64 {
		lo = 1
	}
	if peak == 0 {
		peak = 1
	}
	xs := newLogScale(lo, hi, padL, chartW-padR)
	step := niceStep(peak*100, 4)
	top := math.Ceil(peak*100/step) * step
	yat := func(frac float64) float64 { return chartH - padB - frac*100/top*(chartH-padB-padT) }
	var s svgDoc
	s.f(`<svg id="%s" class="chart histogram" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), chartW, chartH+20*((len(ss)+2)/3), chartW, chartH+20*((len(ss)+2)/3))
	s.f(`<title>%s</title>`, esc(title))
	s.text(chartW/2, 18, "middle", "title", title)
	for v := 0.0; v <= top+1e-9; v += step {
		y := yat(v / 100)
		s.f(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, padL, chartW-padR, y, y)
		s.text(padL-6, y+4, "end", "tick", fmt.Sprintf("%g%%", math.Round(v*100)/100))
	}
	for i, t := range xs.ticks {
		x := xs.at(t)
		s.f(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, x, x, padT, chartH-padB)
		s.text(x, chartH-padB+16, "middle", "tick", xs.tickLabels[i])
	}
	s.text(chartW/2, chartH-padB+34, "middle", "axis", "latency")
	for i, se := range ss {
		var pts []string
		n := float64(max(se.lat.Count, 1))
		for j, b := range se.lat.Buckets {
			x0, x1 := xs.at(b.Low), xs.at(b.High)
			y := yat(float64(b.Count) / n)
			if j == 0 || se.lat.Buckets[j-1].High != b.Low {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x0, yat(0)))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x0, y, x1, y))
			if j == len(se.lat.Buckets)-1 || se.lat.Buckets[j+1].Low != b.High {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x1, yat(0)))
			}
		}
		s.f(`<polyline class="series" stroke="%s" points="%s"><title>%s</title></polyline>`, colour(i), strings.Join(pts, " "), esc(se.name))
	}
	legend(&s, ss)
	s.f(`</svg>`)
	return s.b.String()
}

// legend writes the series names below a chart, three to a row.
func legend(s *svgDoc, ss []series) {
	for i, se := range ss {
		x := float64(padL + (i%3)*((chartW-padL)/3))
		y := float64(chartH + 20*(i/3) - 2)
		s.f(`<rect x="%.1f" y="%.1f" width="14" height="4" fill="%s"/>`, x, y-5, colour(i))
		s.text(x+20, y, "start", "legend", se.name)
	}
}

// ganttRow is one lane of the Gantt chart.
type ganttRow struct {
	label string
	spans []ganttBar
}

type ganttBar struct {
	start, end time.Duration
	colour     string
	label      string // drawn inside the bar when it fits
	tip        string
}

// ganttRows arranges a set's spans into lanes: DoSnapshotSet, each step
// of A.7, the hold window, each writer's freeze window, each provider
// method, and each writer's events.
func ganttRows(tl *Timeline) (rows []ganttRow, events []legendItem) {
	tip := func(sp spanLike) string {
		t := fmt.Sprintf("%s %s: %s at %s", sp.kind, sp.name, FormatDuration(sp.end-sp.start), FormatDuration(sp.start))
		if sp.actor != "" {
			t = sp.actor + " " + t
		}
		if sp.result != "" {
			t += " → " + sp.result
		}
		return t
	}
	rows = []ganttRow{{label: "DoSnapshotSet", spans: []ganttBar{{start: tl.Start, end: tl.End, colour: "#555",
		label: FormatDuration(tl.End - tl.Start), tip: "DoSnapshotSet: " + FormatDuration(tl.End-tl.Start)}}}}
	index := map[string]int{}
	lane := func(key, label string) *ganttRow {
		i, ok := index[key]
		if !ok {
			i = len(rows)
			index[key] = i
			rows = append(rows, ganttRow{label: label})
		}
		return &rows[i]
	}
	// Lanes appear in the order of their kind, then of first start.
	colours := map[string]string{}
	colourOf := func(name string) string {
		c, ok := colours[name]
		if !ok {
			c = colour(len(colours))
			colours[name] = c
			events = append(events, legendItem{name, c})
		}
		return c
	}
	// Writers get their lanes in name order, whatever order they ran in.
	var writers []string
	for _, sp := range tl.Spans {
		if sp.Kind == "writer" && !slices.Contains(writers, sp.Actor) {
			writers = append(writers, sp.Actor)
		}
	}
	slices.Sort(writers)
	for _, kind := range []string{"phase", "window", "provider", "writer"} {
		for _, sp := range tl.Spans {
			s := spanLike{kind: string(sp.Kind), name: sp.Name, actor: sp.Actor, start: sp.Start, end: sp.End, result: sp.Result}
			if s.kind != kind {
				continue
			}
			var r *ganttRow
			var c, label string
			switch kind {
			case "phase":
				r, c = lane("phase:"+sp.Name, sp.Name), "#4e79a7"
				if p, ok := phaseOf[sp.Name]; ok {
					c = colour(indexOf(Phases, p))
				}
			case "window":
				name := sp.Name + " window"
				if sp.Name == "freeze-window" {
					name = "freeze window"
				}
				if sp.Actor != "" {
					name += ": " + sp.Actor
				}
				r, c = lane("window:"+sp.Name+":"+sp.Actor, name), "#e15759"
				if sp.Name == "hold" {
					c = "#b07aa1"
				}
			case "provider":
				r, c = lane("provider:"+sp.Name, sp.Actor+" "+sp.Name), "#59a14f"
			case "writer":
				if _, ok := index["writer:"+sp.Actor]; !ok {
					for _, w := range writers {
						lane("writer:"+w, "writer "+w)
					}
				}
				r, c, label = lane("writer:"+sp.Actor, "writer "+sp.Actor), colourOf(sp.Name), sp.Name
			}
			r.spans = append(r.spans, ganttBar{start: sp.Start, end: sp.End, colour: c, label: label, tip: tip(s)})
		}
	}
	return rows, events
}

// legendItem is a name and its colour.
type legendItem struct{ name, colour string }

type spanLike struct {
	kind, name, actor string
	start, end        time.Duration
	result            string
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return 0
}

// ganttSVG draws a set's timeline as a Gantt chart: one lane per step,
// window, provider method and writer, the time since StartSnapshotSet
// across, DoSnapshotSet's interval shaded.
func ganttSVG(id string, tl *Timeline) string {
	rows, events := ganttRows(tl)
	const rowH, labelW, width = 18, 230, 1100
	var end time.Duration
	for _, r := range rows {
		for _, b := range r.spans {
			end = max(end, b.end)
		}
	}
	end = max(end, 1)
	plotW := float64(width - labelW - padR)
	xat := func(d time.Duration) float64 { return labelW + float64(d)/float64(end)*plotW }
	h := padT + len(rows)*rowH + padB + 20*((len(events)+5)/6)
	var s svgDoc
	s.f(`<svg id="%s" class="chart gantt" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), width, h, width, h)
	s.f(`<title>%s</title>`, esc(tl.Caption))
	s.text(width/2, 18, "middle", "title", tl.Caption)
	s.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" class="band"/>`, xat(tl.Start), padT, math.Max(xat(tl.End)-xat(tl.Start), 1), len(rows)*rowH)
	step := niceStep(float64(end), 8)
	for v := 0.0; v <= float64(end)+1; v += step {
		x := xat(time.Duration(v))
		s.f(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, x, x, padT, padT+len(rows)*rowH)
		s.text(x, float64(padT+len(rows)*rowH+16), "middle", "tick", FormatDuration(time.Duration(v)))
	}
	s.text(labelW+plotW/2, float64(padT+len(rows)*rowH+34), "middle", "axis", "time since StartSnapshotSet")
	for i, r := range rows {
		y := float64(padT + i*rowH)
		s.text(labelW-6, y+rowH-5, "end", "lane", r.label)
		for _, b := range r.spans {
			x0 := xat(b.start)
			w := math.Max(xat(b.end)-x0, 1)
			s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" class="bar"><title>%s</title></rect>`,
				x0, y+2, w, rowH-4, b.colour, esc(b.tip))
			if b.label != "" && w > float64(7*len(b.label)) {
				s.text(x0+3, y+rowH-6, "start", "barlabel", b.label)
			}
		}
	}
	// The writer events' colours.
	for i, e := range events {
		x := float64(labelW + (i%6)*int(plotW/6))
		y := float64(padT + len(rows)*rowH + padB + 20*(i/6))
		s.f(`<rect x="%.1f" y="%.1f" width="14" height="8" fill="%s"/>`, x, y-8, e.colour)
		s.text(x+20, y, "start", "legend", e.name)
	}
	s.f(`</svg>`)
	return s.b.String()
}
