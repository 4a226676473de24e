package bench

import (
	"fmt"
	"math"
	"time"
)

// The time series chart's colours: each means one thing on it.
const (
	colourWrite    = "#332288"
	colourRead     = "#88CCEE"
	colourP50      = "#117733"
	colourP99      = "#CC6677"
	colourMax      = "#882255"
	colourSnapshot = "#AA4499"
	// oldDash draws the series of the run compared against: same colour,
	// thinner and dashed.
	oldDash = "5 3"
)

// seriesLine is one line of the time series chart.
type seriesLine struct {
	name   string
	colour string
	old    bool
	value  func(SeriesPoint) float64
	points []SeriesPoint
}

// timeSeriesSVG draws throughput (top) and latency (bottom) over time,
// one point per interval, with every snapshot set marked across both at
// the instant its CommitSnapshots began. old, when not nil, is a run to
// compare against, drawn thin and dashed on the same axes.
func timeSeriesSVG(id, title string, ts, old *TimeSeries) string {
	const (
		w      = ganttW
		left   = 90
		right  = 24
		top1   = 36
		h1     = 180
		gap    = 60
		top2   = top1 + h1 + gap
		h2     = 200
		bottom = top2 + h2
	)
	mib := func(b int64, t *TimeSeries, start time.Duration) float64 {
		return float64(b) / (1 << 20) / t.width(start).Seconds()
	}
	var lines []seriesLine
	add := func(t *TimeSeries, isOld bool) {
		if t == nil {
			return
		}
		var reads, writes bool
		for _, p := range t.Points {
			reads, writes = reads || p.Reads > 0, writes || p.Writes > 0
		}
		prefix := ""
		if isOld {
			prefix = "old: "
		}
		if writes {
			lines = append(lines, seriesLine{name: prefix + "written, MiB/s", colour: colourWrite, old: isOld, points: t.Points,
				value: func(p SeriesPoint) float64 { return mib(p.WriteBytes, t, p.Start) }})
		}
		if reads {
			lines = append(lines, seriesLine{name: prefix + "read, MiB/s", colour: colourRead, old: isOld, points: t.Points,
				value: func(p SeriesPoint) float64 { return mib(p.ReadBytes, t, p.Start) }})
		}
	}
	add(ts, false)
	add(old, true)
	nThroughput := len(lines)
	for _, t := range []*TimeSeries{ts, old} {
		if t == nil {
			continue
		}
		isOld := t == old
		prefix := ""
		if isOld {
			prefix = "old: "
		}
		for _, l := range []struct {
			name, colour string
			f            func(SeriesPoint) time.Duration
		}{{"p50 latency", colourP50, func(p SeriesPoint) time.Duration { return p.P50 }},
			{"p99 latency", colourP99, func(p SeriesPoint) time.Duration { return p.P99 }},
			{"max latency", colourMax, func(p SeriesPoint) time.Duration { return p.Max }}} {
			f := l.f
			lines = append(lines, seriesLine{name: prefix + l.name, colour: l.colour, old: isOld, points: t.Points,
				value: func(p SeriesPoint) float64 { return float64(f(p)) }})
		}
	}

	var end time.Duration
	peak := 0.0
	var lo, hi time.Duration = math.MaxInt64, 1
	for i, l := range lines {
		for _, p := range l.points {
			end = max(end, p.Start+SeriesInterval)
			v := l.value(p)
			if i < nThroughput {
				peak = math.Max(peak, v)
			} else if p.Ops() > 0 && v > 0 {
				lo, hi = min(lo, time.Duration(v)), max(hi, time.Duration(v))
			}
		}
	}
	end = max(end, SeriesInterval)
	if lo == math.MaxInt64 {
		lo = 1
	}
	if peak == 0 {
		peak = 1
	}
	xat := func(d time.Duration) float64 { return left + float64(d)/float64(end)*(w-left-right) }
	step := niceStep(peak, 4)
	ceil := math.Ceil(peak/step) * step
	yTop := func(v float64) float64 { return top1 + h1 - v/ceil*h1 }
	ys := newLogScale(lo, hi, top2+h2, top2)

	var legend []legendItem
	for _, l := range lines {
		it := legendItem{name: l.name, colour: l.colour, line: true}
		if l.old {
			it.dash = oldDash
		}
		legend = append(legend, it)
	}
	if ts != nil && len(ts.Snapshots) > 0 {
		legend = append(legend, legendItem{name: "snapshot taken (CommitSnapshots), with its hold window", colour: colourSnapshot})
	}
	pos, rows := legendLayout(legend, left, w-4)
	h := bottom + 56 + 20*rows

	var s svgDoc
	s.f(`<svg id="%s" class="chart series-chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(id), w, h, w, h)
	s.f(`<title>%s</title>`, esc(title))
	s.label(w/2, 18, 0, w, "title", fit("title", title, w-8))
	// Axes: time across, shared; throughput and latency up.
	tstep := niceStep(float64(end), 10)
	for v := 0.0; v <= float64(end)+1; v += tstep {
		x := xat(time.Duration(v))
		s.f(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, x, x, top1, top1+h1)
		s.f(`<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" class="grid"/>`, x, x, top2, bottom)
		s.label(x, bottom+16, left-40, w, "tick", FormatDuration(time.Duration(v)))
	}
	s.text(left+(w-left-right)/2, bottom+34, "middle", "axis", fmt.Sprintf("time since the load began (one point per %s)", FormatDuration(SeriesInterval)))
	for v := 0.0; v <= ceil+1e-9; v += step {
		y := yTop(v)
		s.f(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, left, w-right, y, y)
		s.text(left-6, y+4, "end", "tick", fmt.Sprintf("%g", math.Round(v*100)/100))
	}
	s.yTitle(16, top1+h1/2, "MiB/s")
	for i, t := range ys.ticks {
		y := ys.at(t)
		s.f(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, left, w-right, y, y)
		s.text(left-6, y+4, "end", "tick", ys.tickLabels[i])
	}
	s.yTitle(16, top2+h2/2, "latency")
	// The snapshots, under the lines.
	if ts != nil {
		for _, m := range ts.Snapshots {
			x0, x1 := xat(m.HoldStart), xat(m.HoldEnd)
			tip := fmt.Sprintf("snapshot at %s, hold window %s", FormatDuration(m.Commit), FormatDuration(m.HoldEnd-m.HoldStart))
			for _, band := range [][2]float64{{top1, top1 + h1}, {top2, bottom}} {
				s.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.8" class="bar mark"><title>%s</title></rect>`,
					math.Min(x0, xat(m.Commit)-0.75), band[0], math.Max(x1-x0, 1.5), band[1]-band[0], colourSnapshot, esc(tip))
			}
		}
	}
	for i, l := range lines {
		var pts []string
		for _, p := range l.points {
			x := xat(p.Start + SeriesInterval/2)
			if i < nThroughput {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, yTop(l.value(p))))
			} else if p.Ops() > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, ys.at(time.Duration(l.value(p)))))
			}
		}
		st := style{colour: l.colour}
		if l.old {
			st.dash = oldDash
		}
		s.polyline(st, pts, l.name)
	}
	drawLegend(&s, legend, pos, bottom+56)
	s.f(`</svg>`)
	return s.b.String()
}
