package bench

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The charts are SVG written directly: no script, no external font or
// style sheet, so a report opens anywhere, offline, and prints as drawn.
// A charting library was not used: these few kinds of chart need a few
// hundred lines, and the report must not depend on the network.
//
// Every chart keeps two rules, which the tests check on the SVG: every
// colour a mark is drawn in is in the chart's legend, with one meaning;
// and no text leaves the view box, by a conservative estimate of its
// width (textWidth), since the SVG is laid out without a font to measure.

// palette is Paul Tol's "muted" scheme: nine colours that stay apart for
// every common colour-vision deficiency and in greyscale print. Tableau 10,
// used before, has pairs that protanopes and deuteranopes cannot tell
// apart (its red and green, its orange and brown), and ten colours did not
// cover sixteen series. Past nine series, dash patterns tell series of one
// colour apart (seriesStyles).
var palette = []string{"#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE",
	"#882255", "#44AA99", "#999933", "#AA4499"}

// dashes are the stroke patterns of a series after its colour: solid, then
// dashed, dotted and dash-dotted.
var dashes = []string{"", "7 3", "2 3", "9 3 2 3", "4 2 1 2"}

// The stages of a set a Gantt chart colours its bars by, the phases of a
// sequence and two more: stageOutside for what happens outside
// DoSnapshotSet's steps (AddToSnapshotSet's provider calls, PrepareForBackup,
// BackupComplete), and stageAbort for a writer's Abort.
const (
	stageOutside = "outside the steps"
	stageAbort   = "abort"
)

// stageColour gives each stage its colour, shared by the Gantt chart's bars
// and the phase and step series of the percentile charts, so that a colour
// means one stage across a report.
var stageColour = map[string]string{
	PhasePrepare:      "#88CCEE",
	PhaseFreeze:       "#332288",
	PhaseHold:         "#CC6677",
	PhaseCommit:       "#882255",
	PhaseThaw:         "#44AA99",
	PhasePostSnapshot: "#117733",
	PhaseOther:        "#DDCC77",
	stageOutside:      "#999933",
	stageAbort:        "#AA4499",
}

// stages lists the stages in the order legends show them.
var stages = append(slices.Clone(Phases), stageOutside, stageAbort)

// setColour is DoSnapshotSet's bar; failColour outlines a failed span.
const (
	setColour  = "#555555"
	failColour = "#000000"
)

// style is how one series is drawn.
type style struct{ colour, dash string }

// seriesStyles gives each series of a chart its colour and dash. Phases
// take their stage's colour; steps take their phase's colour and a dash
// each within it, so the sixteen steps read as seven groups; any other
// series takes the palette in order, then the palette again dashed.
func seriesStyles(names []string) []style {
	out := make([]style, len(names))
	allIn := func(m map[string]string) bool {
		for _, n := range names {
			if _, ok := m[n]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case allIn(stageColour):
		for i, n := range names {
			out[i] = style{colour: stageColour[n]}
		}
	case allIn(phaseOf):
		seen := map[string]int{}
		for i, n := range names {
			p := phaseOf[n]
			out[i] = style{colour: stageColour[p], dash: dashes[seen[p]%len(dashes)]}
			seen[p]++
		}
	default:
		for i := range names {
			out[i] = style{colour: palette[i%len(palette)], dash: dashes[i/len(palette)%len(dashes)]}
		}
	}
	return out
}

// svgDoc accumulates one SVG element.
type svgDoc struct{ b strings.Builder }

func (s *svgDoc) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

func esc(s string) string { return html.EscapeString(s) }

func (s *svgDoc) text(x, y float64, anchor, class, t string) {
	s.f(`<text x="%.1f" y="%.1f" text-anchor="%s" class="%s">%s</text>`, x, y, anchor, class, esc(t))
}

// fontSize is the size of each text class, as the report's style sheet
// sets it.
var fontSize = map[string]float64{"title": 14, "tick": 11, "axis": 12, "legend": 12, "lane": 11, "barlabel": 10}

// textWidth estimates the width of t in class: 0.62 em a character, wider
// than the average of a sans-serif font (about 0.5 em), so that layout
// errs towards room. Bold titles get 0.68 em.
func textWidth(class, t string) float64 {
	em := 0.62
	if class == "title" {
		em = 0.68
	}
	return float64(utf8.RuneCountInString(t)) * fontSize[class] * em
}

// fit shortens t with an ellipsis until it is at most w wide in class.
func fit(class, t string, w float64) string {
	if textWidth(class, t) <= w {
		return t
	}
	r := []rune(t)
	for len(r) > 1 && textWidth(class, string(r)+"…") > w {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// label writes a text centred on x, moved in as far as it must to stay
// within [lo, hi]: the last tick of an axis ("p99.999", "100ms") was cut
// in half at the edge of the chart.
func (s *svgDoc) label(x, y, lo, hi float64, class, t string) {
	w := textWidth(class, t)
	x = math.Min(math.Max(x, lo+w/2), hi-w/2)
	s.text(x, y, "middle", class, t)
}

// yTitle writes an axis title turned a quarter, reading upwards, centred
// on y at x.
func (s *svgDoc) yTitle(x, y float64, t string) {
	s.f(`<text x="%.1f" y="%.1f" text-anchor="middle" class="axis" transform="rotate(-90 %.1f %.1f)">%s</text>`,
		x, y, x, y, esc(t))
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

// series is one line of a chart. old marks a series of the run compared
// against.
type series struct {
	name string
	lat  Latency
	old  bool
}

const (
	chartW = 760
	chartH = 300
	padL   = 76
	padR   = 24
	padT   = 30
	padB   = 50
)

// legendItem is one entry of a legend: a name and how its marks are
// drawn. A line entry is drawn as a stroke (a series); any other as a
// filled box (bars), outlined when outline is set.
type legendItem struct {
	name, colour, dash string
	line, outline      bool
}

// legendLayout places items left to right from x0, wrapping before maxX,
// one row every 20 px, shortening a name longer than a row. It returns
// each item's position and the number of rows.
func legendLayout(items []legendItem, x0, maxX float64) (pos [][2]float64, rows int) {
	x, row := x0, 0
	for i := range items {
		it := &items[i]
		it.name = fit("legend", it.name, maxX-x0-22)
		w := 22 + textWidth("legend", it.name)
		if x > x0 && x+w > maxX {
			x, row = x0, row+1
		}
		pos = append(pos, [2]float64{x, float64(row * 20)})
		x += w + 18
	}
	if len(items) == 0 {
		return nil, 0
	}
	return pos, row + 1
}

// drawLegend writes the items laid out by legendLayout, with the first
// row's baseline at y. Swatches carry class "swatch" for the tests.
func drawLegend(s *svgDoc, items []legendItem, pos [][2]float64, y float64) {
	for i, it := range items {
		x, yy := pos[i][0], y+pos[i][1]
		switch {
		case it.line:
			dash := ""
			if it.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, it.dash)
			}
			s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"%s class="swatch"/>`,
				x, x+16, yy-4, yy-4, it.colour, dash)
		case it.outline:
			s.f(`<rect x="%.1f" y="%.1f" width="14" height="9" fill="none" stroke="%s" stroke-width="1.5" class="swatch"/>`,
				x+1, yy-9, it.colour)
		default:
			s.f(`<rect x="%.1f" y="%.1f" width="16" height="10" fill="%s" class="swatch"/>`, x, yy-10, it.colour)
		}
		s.text(x+22, yy, "start", "legend", it.name)
	}
}

// seriesLegend is the legend of a line chart's series.
func seriesLegend(ss []series, st []style) []legendItem {
	items := make([]legendItem, len(ss))
	for i, se := range ss {
		name := se.name
		if se.old {
			name = "old: " + name
		}
		items[i] = legendItem{name: name, colour: st[i].colour, dash: st[i].dash, line: true}
	}
	return items
}

// stylesOf styles a chart's series: the current run's by seriesStyles, and
// each old one as the current series of its name, with a dash of its own
// (oldDashOf), so that no two entries of the legend are drawn alike.
func stylesOf(ss []series) []style {
	var cur []string
	for _, s := range ss {
		if !s.old {
			cur = append(cur, s.name)
		}
	}
	st := seriesStyles(cur)
	byName := map[string]style{}
	for i, n := range cur {
		byName[n] = st[i]
	}
	out := make([]style, len(ss))
	for i, s := range ss {
		out[i] = byName[s.name]
		if s.old {
			out[i].dash = oldDashOf(out[i].dash)
		}
	}
	return out
}

// oldDashOf is the dash of the old run's counterpart of a series dashed d:
// distinct from every dash of the current run's series.
func oldDashOf(d string) string {
	if d == "" {
		return oldDash
	}
	return "1 1.5 " + d
}

// polyline writes one series.
func (s *svgDoc) polyline(st style, pts []string, tip string) {
	dash := ""
	if st.dash != "" {
		dash = fmt.Sprintf(` stroke-dasharray="%s"`, st.dash)
	}
	s.f(`<polyline class="series" stroke="%s"%s points="%s"><title>%s</title></polyline>`,
		st.colour, dash, strings.Join(pts, " "), esc(tip))
}

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
	st := stylesOf(ss)
	items := seriesLegend(ss, st)
	pos, rows := legendLayout(items, padL, chartW-4)
	h := chartH + 20*rows
	var s svgDoc
	s.f(`<svg id="%s" class="chart percentiles" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), chartW, h, chartW, h)
	s.f(`<title>%s</title>`, esc(title))
	s.label(chartW/2, 18, 0, chartW, "title", fit("title", title, chartW-8))
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
		s.label(x, chartH-padB+16, 0, chartW, "tick", fmt.Sprintf("p%g", p))
	}
	s.text(padL+(chartW-padL-padR)/2, chartH-padB+34, "middle", "axis", "percentile")
	s.yTitle(16, (padT+chartH-padB)/2, "latency")
	for i, se := range ss {
		var pts []string
		for _, c := range se.lat.Curve {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xat(c.Percentile), ys.at(c.Value)))
		}
		s.polyline(st[i], pts, se.name)
	}
	drawLegend(&s, items, pos, chartH-2)
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
	st := stylesOf(ss)
	items := seriesLegend(ss, st)
	pos, rows := legendLayout(items, padL, chartW-4)
	h := chartH + 20*rows
	var s svgDoc
	s.f(`<svg id="%s" class="chart histogram" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), chartW, h, chartW, h)
	s.f(`<title>%s</title>`, esc(title))
	s.label(chartW/2, 18, 0, chartW, "title", fit("title", title, chartW-8))
	for v := 0.0; v <= top+1e-9; v += step {
		y := yat(v / 100)
		s.f(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, padL, chartW-padR, y, y)
		s.text(padL-6, y+4, "end", "tick", fmt.Sprintf("%g%%", math.Round(v*100)/100))
	}
	for i, t := range xs.ticks {
		x := xs.at(t)
		s.f(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, x, x, padT, chartH-padB)
		s.label(x, chartH-padB+16, 0, chartW, "tick", xs.tickLabels[i])
	}
	s.text(padL+(chartW-padL-padR)/2, chartH-padB+34, "middle", "axis", "latency (buckets 19% wide)")
	s.yTitle(16, (padT+chartH-padB)/2, "share of operations")
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
		s.polyline(st[i], pts, se.name)
	}
	drawLegend(&s, items, pos, chartH-2)
	s.f(`</svg>`)
	return s.b.String()
}
