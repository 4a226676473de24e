package bench

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// ganttRow is one lane of the Gantt chart.
type ganttRow struct {
	label string
	spans []ganttBar
}

type ganttBar struct {
	start, end time.Duration
	colour     string
	failed     bool   // outlined: the span's result is a failure
	label      string // drawn inside the bar when it fits
	tip        string
}

// stageOf is the stage a span belongs to, which colours its bar. A step,
// and a provider call or writer event named as a step is (Freeze,
// CommitSnapshots, PostSnapshot...), is in the phase of that step; a
// window in the phase it holds; a writer's Abort in stageAbort. Anything
// else is in the phase of the step it starts in, or outside the steps.
func stageOf(sp coordinator.Span, steps []coordinator.Span) string {
	switch {
	case sp.Kind == coordinator.KindWindow && sp.Name == "hold":
		return PhaseHold
	case sp.Kind == coordinator.KindWindow:
		return PhaseFreeze
	case sp.Kind == coordinator.KindWriter && sp.Name == "Abort":
		return stageAbort
	}
	if p, ok := phaseOf[sp.Name]; ok {
		return p
	}
	if sp.Kind == coordinator.KindPhase {
		return PhaseOther
	}
	for _, st := range steps {
		if sp.Start >= st.Start && sp.Start < st.End {
			if p, ok := phaseOf[st.Name]; ok {
				return p
			}
		}
	}
	return stageOutside
}

// failed reports whether a span's result is a failure: a writer event
// that answered false, timed out or panicked, or a failed HRESULT.
func failed(sp coordinator.Span) bool {
	switch sp.Result {
	case "", "true", "S_OK":
		return false
	case "false", "timeout", "panic":
		return true
	}
	return len(sp.Result) > 6 && sp.Result[:6] == "VSS_E_" || len(sp.Result) > 2 && sp.Result[:2] == "E_"
}

// ganttRows arranges a set's spans into lanes: DoSnapshotSet, each step
// of A.7, the hold window, each writer's freeze window, each provider
// method, and each writer's events. legend has one entry per colour the
// bars use, in stage order, and the outline when a span failed.
func ganttRows(tl *Timeline) (rows []ganttRow, legend []legendItem) {
	tip := func(sp coordinator.Span) string {
		t := fmt.Sprintf("%s %s: %s at %s", sp.Kind, sp.Name, FormatDuration(sp.End-sp.Start), FormatDuration(sp.Start))
		if sp.Actor != "" {
			t = sp.Actor + " " + t
		}
		if sp.Result != "" {
			t += " → " + sp.Result
		}
		return t
	}
	rows = []ganttRow{{label: "DoSnapshotSet", spans: []ganttBar{{start: tl.Start, end: tl.End, colour: setColour,
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
	var steps []coordinator.Span
	for _, sp := range tl.Spans {
		if sp.Kind == coordinator.KindPhase {
			steps = append(steps, sp)
		}
	}
	used := map[string]bool{}
	anyFailed := false
	// Writers get their lanes in name order, whatever order they ran in.
	var writers []string
	for _, sp := range tl.Spans {
		if sp.Kind == coordinator.KindWriter && !slices.Contains(writers, sp.Actor) {
			writers = append(writers, sp.Actor)
		}
	}
	slices.Sort(writers)
	// Lanes appear in the order of their kind, then of first start.
	for _, kind := range []coordinator.SpanKind{coordinator.KindPhase, coordinator.KindWindow, coordinator.KindProvider, coordinator.KindWriter} {
		for _, sp := range tl.Spans {
			if sp.Kind != kind {
				continue
			}
			var r *ganttRow
			var label string
			switch kind {
			case coordinator.KindPhase:
				// Steps and windows carry their duration where it fits, so
				// that a long set reads without hovering over each bar.
				r, label = lane("phase:"+sp.Name, sp.Name), FormatDuration(sp.Duration())
			case coordinator.KindWindow:
				name := sp.Name + " window"
				if sp.Name == "freeze-window" {
					name = "freeze window"
				}
				if sp.Actor != "" {
					name += ": " + sp.Actor
				}
				r, label = lane("window:"+sp.Name+":"+sp.Actor, name), FormatDuration(sp.Duration())
			case coordinator.KindProvider:
				r = lane("provider:"+sp.Name, sp.Actor+" "+sp.Name)
			case coordinator.KindWriter:
				if _, ok := index["writer:"+sp.Actor]; !ok {
					for _, w := range writers {
						lane("writer:"+w, "writer "+w)
					}
				}
				r, label = lane("writer:"+sp.Actor, "writer "+sp.Actor), sp.Name
			}
			stage := stageOf(sp, steps)
			used[stage] = true
			f := failed(sp)
			anyFailed = anyFailed || f
			r.spans = append(r.spans, ganttBar{start: sp.Start, end: sp.End, colour: stageColour[stage], failed: f,
				label: label, tip: tip(sp)})
		}
	}
	legend = []legendItem{{name: "DoSnapshotSet", colour: setColour}}
	for _, st := range stages {
		if used[st] {
			legend = append(legend, legendItem{name: stageName[st], colour: stageColour[st]})
		}
	}
	if anyFailed {
		legend = append(legend, legendItem{name: "outlined: failed, vetoed or timed out", colour: failColour, outline: true})
	}
	return rows, legend
}

// stageName is a stage as the Gantt legend names it.
var stageName = map[string]string{
	PhasePrepare:      "prepare",
	PhaseFreeze:       "freeze",
	PhaseHold:         "hold (flush & hold to release)",
	PhaseCommit:       "commit",
	PhaseThaw:         "thaw",
	PhasePostSnapshot: "post-snapshot",
	PhaseOther:        "other step",
	stageOutside:      "outside DoSnapshotSet's steps",
	stageAbort:        "abort",
}

// ganttGeometry is the frame shared by the Gantt chart and its inset.
const (
	ganttW      = 1100
	ganttRowH   = 18
	ganttLabelW = 230
)

// ganttPlot draws rows on a linear time axis from t0 to t1 (relative to
// origin for the tick labels), with its top at y0, bars cut to the axis.
// It returns the y below the axis title.
func ganttPlot(s *svgDoc, rows []ganttRow, t0, t1, origin time.Duration, y0 float64, axis string) float64 {
	span := max(t1-t0, 1)
	plotW := float64(ganttW - ganttLabelW - padR)
	xat := func(d time.Duration) float64 {
		d = min(max(d, t0), t1)
		return ganttLabelW + float64(d-t0)/float64(span)*plotW
	}
	bottom := y0 + float64(len(rows)*ganttRowH)
	step := niceStep(float64(span), 8)
	for v := math.Ceil(float64(t0-origin)/step) * step; v <= float64(t1-origin)+1; v += step {
		x := xat(origin + time.Duration(v))
		s.f(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, x, x, y0, bottom)
		s.label(x, bottom+16, ganttLabelW-30, ganttW, "tick", FormatDuration(time.Duration(math.Round(v))))
	}
	s.text(ganttLabelW+plotW/2, bottom+34, "middle", "axis", axis)
	for i, r := range rows {
		y := y0 + float64(i*ganttRowH)
		s.text(ganttLabelW-6, y+ganttRowH-5, "end", "lane", fit("lane", r.label, ganttLabelW-8))
		for _, b := range r.spans {
			if b.end < t0 || b.start > t1 {
				continue
			}
			x0 := xat(b.start)
			w := math.Max(xat(b.end)-x0, 2) // a 134 µs step of a 600 ms set is still seen
			x0 = math.Min(x0, ganttLabelW+plotW-w)
			stroke := ""
			if b.failed {
				stroke = fmt.Sprintf(` stroke="%s" stroke-width="1.5"`, failColour)
			}
			s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"%s class="bar"><title>%s</title></rect>`,
				x0, y+2, w, ganttRowH-4, b.colour, stroke, esc(b.tip))
			if b.label != "" && w > textWidth("barlabel", b.label)+6 {
				s.f(`<text x="%.1f" y="%.1f" text-anchor="start" class="barlabel" style="fill:%s">%s</text>`,
					x0+3, y+ganttRowH-6, labelInk(b.colour), esc(b.label))
			}
		}
	}
	return bottom + 34
}

// labelInk is the colour of a label inside a bar of colour c: black on
// light colours, white on dark ones.
func labelInk(c string) string {
	var r, g, b int
	if _, err := fmt.Sscanf(c, "#%02x%02x%02x", &r, &g, &b); err != nil {
		return "#ffffff"
	}
	if 0.299*float64(r)+0.587*float64(g)+0.114*float64(b) > 150 {
		return "#000000"
	}
	return "#ffffff"
}

// ganttSVG draws a set's timeline as a Gantt chart: one lane per step,
// window, provider method and writer, the time since StartSnapshotSet
// across, DoSnapshotSet's interval shaded, and the hold window marked by
// a frame: holdInsetSVG draws it again, zoomed.
func ganttSVG(id string, tl *Timeline) string {
	rows, legend := ganttRows(tl)
	var end time.Duration
	for _, r := range rows {
		for _, b := range r.spans {
			end = max(end, b.end)
		}
	}
	end = max(end, 1)
	pos, lrows := legendLayout(legend, ganttLabelW, ganttW-4)
	h := padT + len(rows)*ganttRowH + padB + 20*lrows
	var s svgDoc
	s.f(`<svg id="%s" class="chart gantt" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), ganttW, h, ganttW, h)
	s.f(`<title>%s</title>`, esc(tl.Caption))
	s.label(ganttW/2, 18, 0, ganttW, "title", fit("title", tl.Caption, ganttW-8))
	plotW := float64(ganttW - ganttLabelW - padR)
	xat := func(d time.Duration) float64 { return ganttLabelW + float64(d)/float64(end)*plotW }
	s.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" class="band"/>`, xat(tl.Start), padT,
		math.Max(xat(tl.End)-xat(tl.Start), 1), len(rows)*ganttRowH)
	ganttPlot(&s, rows, 0, end, 0, padT, "time since StartSnapshotSet")
	if h0, h1, ok := holdWindow(tl); ok {
		x := math.Min(xat(h0), ganttLabelW+plotW-4)
		s.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="none" stroke="%s" stroke-dasharray="3 2" class="bar zoom"><title>hold window, %s: zoomed below</title></rect>`,
			x-2, padT-4, math.Max(xat(h1)-xat(h0), 0)+4, len(rows)*ganttRowH+8, stageColour[PhaseHold], FormatDuration(h1-h0))
	}
	drawLegend(&s, legend, pos, float64(padT+len(rows)*ganttRowH+padB))
	s.f(`</svg>`)
	return s.b.String()
}

// holdWindow returns the set's hold window: from FlushAndHold's start to
// ReleaseWrites' end, or the hold window span where the steps are not
// both there.
func holdWindow(tl *Timeline) (start, end time.Duration, ok bool) {
	var f, r *coordinator.Span
	for i, sp := range tl.Spans {
		switch {
		case sp.Kind == coordinator.KindPhase && sp.Name == "FlushAndHold" && f == nil:
			f = &tl.Spans[i]
		case sp.Kind == coordinator.KindPhase && sp.Name == "ReleaseWrites":
			r = &tl.Spans[i]
		}
	}
	if f != nil && r != nil && r.End >= f.Start {
		return f.Start, r.End, true
	}
	for _, sp := range tl.Spans {
		if sp.Kind == coordinator.KindWindow && sp.Name == "hold" {
			return sp.Start, sp.End, true
		}
	}
	return 0, 0, false
}

// holdInsetSVG draws the hold window again, zoomed to its own time axis
// (from FlushAndHold's start), with the lanes that have something in it:
// in a 600 ms set, a 134 µs hold and commit is a sliver on the main
// chart. It returns "" when the set has no hold window.
func holdInsetSVG(id string, tl *Timeline) string {
	h0, h1, ok := holdWindow(tl)
	if !ok {
		return ""
	}
	margin := max((h1-h0)/20, time.Microsecond)
	t0, t1 := max(h0-margin, 0), h1+margin
	all, _ := ganttRows(tl)
	var rows []ganttRow
	usedColours := map[string]bool{}
	anyFailed := false
	for _, r := range all {
		var in []ganttBar
		for _, b := range r.spans {
			if b.end >= t0 && b.start <= t1 {
				in = append(in, b)
				usedColours[b.colour] = true
				anyFailed = anyFailed || b.failed
			}
		}
		if len(in) > 0 {
			rows = append(rows, ganttRow{label: r.label, spans: in})
		}
	}
	var legend []legendItem
	if usedColours[setColour] {
		legend = append(legend, legendItem{name: "DoSnapshotSet", colour: setColour})
	}
	for _, st := range stages {
		if usedColours[stageColour[st]] {
			legend = append(legend, legendItem{name: stageName[st], colour: stageColour[st]})
		}
	}
	if anyFailed {
		legend = append(legend, legendItem{name: "outlined: failed, vetoed or timed out", colour: failColour, outline: true})
	}
	pos, lrows := legendLayout(legend, ganttLabelW, ganttW-4)
	h := padT + len(rows)*ganttRowH + padB + 20*lrows
	title := "The hold window of the set above, zoomed: FlushAndHold to ReleaseWrites, " + FormatDuration(h1-h0)
	var s svgDoc
	s.f(`<svg id="%s" class="chart gantt hold" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), ganttW, h, ganttW, h)
	s.f(`<title>%s</title>`, esc(title))
	s.label(ganttW/2, 18, 0, ganttW, "title", title)
	ganttPlot(&s, rows, t0, t1, h0, padT, "time since FlushAndHold began")
	drawLegend(&s, legend, pos, float64(padT+len(rows)*ganttRowH+padB))
	s.f(`</svg>`)
	return s.b.String()
}
