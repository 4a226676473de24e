package scenarios

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// timedEntry is a trace entry with its absolute times, on the monotonic
// clock.
type timedEntry struct {
	Entry
	start, end time.Time
	set        vss.ID
}

// kindRank orders entries that begin at the same instant: the outer span
// first.
var kindRank = map[string]int{kindRequester: 0, kindWindow: 1, kindPhase: 2, kindProvider: 3, kindWriter: 4}

// buildTrace merges what the coordinator's timelines recorded with what
// the runner saw itself. Every span of every set's timeline is a line. A
// provider call or writer event that passed through the runner's wrappers
// is the same call as the timeline span of the same method (or event) and
// actor that began before it and ended after it began; it adds the BOOL a
// span does not record (AreLunsSupported). Calls no timeline holds
// (Identify, the provider calls of DeleteSnapshots, ImportSnapshots,
// BreakSnapshotSet and RevertToSnapshot) come from the wrappers alone; a
// provider code there is translated as the coordinator translates it.
// Requester calls are the runner's own.
func (r *runner) buildTrace() []Entry {
	var es []*timedEntry
	r.mu.Lock()
	sets := slices.Clone(r.mu.sets)
	r.mu.Unlock()
	for _, st := range sets {
		origin := st.tl.Origin()
		for _, sp := range st.tl.Spans() {
			es = append(es, &timedEntry{
				Entry: Entry{Kind: string(sp.Kind), Name: sp.Name, Actor: sp.Actor, Result: sp.Result, Detail: r.unscaleDetail(sp.Detail)},
				start: origin.Add(sp.Start), end: origin.Add(sp.End), set: st.id,
			})
		}
	}
	matched := make([]bool, len(es))
	for _, ev := range r.rec.snapshot() {
		if ev.kind == kindRequester {
			es = append(es, &timedEntry{Entry: Entry{Kind: ev.kind, Name: ev.name, Actor: ev.actor, Result: ev.result, Detail: ev.detail},
				start: ev.start, end: ev.end})
			continue
		}
		found := -1
		for i, e := range es[:len(matched)] {
			if !matched[i] && e.Kind == ev.kind && e.Name == ev.name && e.Actor == ev.actor &&
				!e.start.After(ev.start) && !ev.start.After(e.end) {
				found = i
				break
			}
		}
		if found >= 0 {
			matched[found] = true
			// The coordinator's span may say the BOOL already
			// ("supported=false"): once is enough.
			if a := answerDetail(ev); ev.answer != nil && !strings.Contains(es[found].Detail, a) {
				es[found].Detail = joinDetail(es[found].Detail, a)
			}
			if ev.detail != "" && !strings.Contains(es[found].Detail, ev.detail) {
				es[found].Detail = joinDetail(es[found].Detail, ev.detail)
			}
			continue
		}
		e := &timedEntry{Entry: Entry{Kind: ev.kind, Name: ev.name, Actor: ev.actor, Result: ev.result, Detail: ev.detail},
			start: ev.start, end: ev.end, set: ev.set}
		if ev.kind == kindProvider {
			if m, err := vss.ParseProviderMethod(ev.name); err == nil {
				if raw, err := vss.ParseHRESULT(ev.result); err == nil {
					if out := m.Translate(raw); out != raw {
						e.Result = out.Name()
						e.Detail = joinDetail("provider returned "+raw.Name(), e.Detail)
					}
				}
			}
		}
		if ev.answer != nil {
			e.Detail = joinDetail(e.Detail, answerDetail(ev))
		}
		es = append(es, e)
	}
	slices.SortStableFunc(es, func(a, b *timedEntry) int {
		return cmp.Or(a.start.Compare(b.start), cmp.Compare(kindRank[a.Kind], kindRank[b.Kind]), b.end.Compare(a.end))
	})
	level := map[string]int{}
	order := vss.FreezeOrder()
	for _, w := range r.sc.writers {
		level[w.name] = slices.Index(order[:], w.level)
	}
	canonicalize(es, level)
	out := make([]Entry, len(es))
	for i, e := range es {
		e.Start, e.End = e.start.Sub(r.start), e.end.Sub(r.start)
		e.Cleanup = e.start.After(r.stepsEnd)
		out[i] = e.Entry
	}
	return out
}

func answerDetail(ev rawEvent) string {
	switch ev.name {
	case vss.MethodAreLunsSupported.String():
		return fmt.Sprintf("supported=%v", *ev.answer)
	case vss.MethodFillInLunInfo.String():
		return fmt.Sprintf("known=%v", *ev.answer)
	}
	return ""
}

func joinDetail(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// canonicalize orders each run of consecutive lines that are one event
// broadcast to several writers, in an order the scheduler chose (their
// spans need not even overlap: a fast callback can end before a slow
// goroutine starts): by freeze level (front-end, back-end, system, as A.7d
// delivers Freeze), then each writer's freeze window before its event,
// then by writer; the other events by writer alone. The run of a Freeze takes in the freeze-window lines,
// which the coordinator opens in the same loop that delivers the event.
// level ranks a writer by its level. Lines of another kind or event end a
// run, so two broadcasts of one event (two requesters' Close) stay apart.
func canonicalize(es []*timedEntry, level map[string]int) {
	inRun := func(e *timedEntry, event string) bool {
		return (e.Kind == kindWriter && e.Name == event) ||
			(event == vss.EventFreeze.String() && e.Kind == kindWindow && e.Name == "freeze-window")
	}
	for i := 0; i < len(es); {
		event := ""
		switch {
		case es[i].Kind == kindWriter:
			event = es[i].Name
		case inRun(es[i], vss.EventFreeze.String()):
			event = vss.EventFreeze.String()
		}
		j := i + 1
		for event != "" && j < len(es) && inRun(es[j], event) {
			j++
		}
		if j-i > 1 {
			freeze := event == vss.EventFreeze.String()
			slices.SortStableFunc(es[i:j], func(a, b *timedEntry) int {
				byLevel := 0
				if freeze {
					byLevel = cmp.Compare(level[a.Actor], level[b.Actor])
				}
				return cmp.Or(byLevel, cmp.Compare(kindRank[a.Kind], kindRank[b.Kind]), cmp.Compare(a.Actor, b.Actor))
			})
		}
		i = j
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

var durationText = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h)(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))*\b`)

// unscaleDetail rewrites the durations in a span's detail (the windows the
// coordinator names, "no answer within 600ms") in scenario time, so a trace
// line reads the same at every time scale.
func (r *runner) unscaleDetail(s string) string {
	if r.scale == 1 || s == "" {
		return s
	}
	return durationText.ReplaceAllStringFunc(s, func(m string) string {
		d, err := time.ParseDuration(m)
		if err != nil {
			return m
		}
		u := time.Duration(float64(d) / r.scale)
		switch {
		case u >= time.Second:
			u = u.Round(time.Millisecond)
		case u >= time.Millisecond:
			u = u.Round(time.Microsecond)
		}
		return u.String()
	})
}

// fillContexts gives each mismatch the trace around it: the lines of the
// part of the run it is about, with a few before and after.
func (r *runner) fillContexts(trace []Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.mu.mismatches {
		pm := &r.mu.mismatches[i]
		if pm.m.Context != nil || pm.from.IsZero() {
			continue
		}
		from, to := pm.from.Sub(r.start), pm.to.Sub(r.start)
		lo, hi := len(trace), -1
		for j, e := range trace {
			if e.End >= from && e.Start <= to {
				lo, hi = min(lo, j), max(hi, j)
			}
		}
		if hi < 0 {
			continue
		}
		// The line to point at: the step's call that answered what came.
		mark := -1
		for j := lo; j <= hi; j++ {
			if trace[j].Kind == kindRequester && trace[j].Result == pm.m.Got {
				mark = j
			}
		}
		pm.m.Context = contextLines(trace, lo, hi, mark)
	}
}

// contextLines renders trace[lo..hi] with up to three lines either side
// and at most 40 in all; mark, when in range, is flagged with ">".
func contextLines(trace []Entry, lo, hi, mark int) []string {
	lo, hi = max(lo-3, 0), min(hi+3, len(trace)-1)
	if hi-lo >= 40 {
		if mark >= 0 {
			lo, hi = max(mark-20, 0), min(mark+19, len(trace)-1)
		} else {
			hi = lo + 39
		}
	}
	var out []string
	for j := lo; j <= hi; j++ {
		prefix := "  "
		if j == mark {
			prefix = "> "
		}
		out = append(out, prefix+trace[j].Line())
	}
	return out
}
