package scenarios

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/vss"
)

// checkExpectations checks the scenario's expect section against the
// trace of its steps (cleanup left out) and the event log.
func (r *runner) checkExpectations(all []Entry) {
	var trace []Entry
	for _, e := range all {
		if !e.Cleanup {
			trace = append(trace, e)
		}
	}
	ex := r.resolveExpect(r.sc.expect)
	if t := ex.trace; t != nil {
		var got []Entry
		for _, e := range trace {
			if len(t.kinds) == 0 || slices.Contains(t.kinds, e.Kind) {
				got = append(got, e)
			}
		}
		for i := 0; i < max(len(got), len(t.lines)); i++ {
			switch {
			case i >= len(t.lines):
				r.traceMismatch(t.line, "expect.trace", "the end of the trace", got[i].Line(), got, i)
			case i >= len(got):
				r.traceMismatch(t.lines[i].line, "expect.trace", t.lines[i].text, "the end of the trace", got, len(got)-1)
			case !t.lines[i].matches(got[i]):
				r.traceMismatch(t.lines[i].line, "expect.trace", t.lines[i].text, got[i].Line(), got, i)
			default:
				continue
			}
			break
		}
	}
	pos := 0
	for _, p := range ex.subsequence {
		i := slices.IndexFunc(trace[pos:], p.matches)
		if i < 0 {
			got := "no such line after " + lineAt(trace, pos-1)
			if pos == 0 {
				got = "no such line in the trace"
			}
			if j := slices.IndexFunc(trace, p.matches); j >= 0 {
				got = fmt.Sprintf("the line came too early: %s is before %s, which the expected line before it matched",
					lineAt(trace, j), lineAt(trace, pos-1))
			} else if k := slices.IndexFunc(trace, func(e Entry) bool {
				return e.Kind == p.kind && e.Name == p.name && (p.actor == "" || p.actor == e.Actor)
			}); k >= 0 {
				got = "no such line; the same call is " + lineAt(trace, k)
			}
			r.traceMismatch(p.line, "expect.subsequence", p.text, got, trace, max(pos-1, 0))
			break
		}
		pos += i + 1
	}
	for _, p := range ex.absent {
		if i := slices.IndexFunc(trace, p.matches); i >= 0 {
			r.traceMismatch(p.line, "expect.absent", "no "+p.text, trace[i].Line(), trace, i)
		}
	}
	for _, c := range ex.counts {
		n, last := 0, -1
		for i, e := range trace {
			if c.matches(e) {
				n, last = n+1, i
			}
		}
		if n != c.n {
			r.traceMismatch(c.line, "expect.count", fmt.Sprintf("%d of %s", c.n, c.text), fmt.Sprintf("%d", n), trace, max(last, 0))
		}
	}
	recs := r.logs.all()
	for _, l := range ex.eventLog {
		l = r.resolveLog(l)
		if _, ok := l.find(recs); !ok {
			got := "none"
			if len(l.compared()) > 1 {
				got = "no record matched on " + strings.Join(l.compared(), ", ")
				if c, n := l.closest(recs); n > 0 {
					got += fmt.Sprintf("; the closest (%d of %d): %s", n, len(l.compared()), c.text())
				}
			}
			r.mismatch(l.line, "expect.event-log", l.String()+" in the event log", got, time.Time{}, time.Time{})
		}
	}
	for _, l := range ex.noEventLog {
		l = r.resolveLog(l)
		if c, ok := l.find(recs); ok {
			r.mismatch(l.line, "expect.no-event-log", "no "+l.String(), c.text(), time.Time{}, time.Time{})
		}
	}
	for _, b := range ex.timing {
		r.res.Measurements = append(r.res.Measurements, r.bound(b, trace))
	}
}

// resolveExpect returns a copy of e whose patterns have their saved names
// filled in (R3: the Scenario is not modified).
func (r *runner) resolveExpect(e expectSpec) expectSpec {
	all := func(ps []pattern) []pattern {
		out := make([]pattern, len(ps))
		for i, p := range ps {
			out[i] = p.resolve(r.savedText)
		}
		return out
	}
	if e.trace != nil {
		t := *e.trace
		t.lines = all(t.lines)
		e.trace = &t
	}
	e.subsequence, e.absent = all(e.subsequence), all(e.absent)
	e.counts = slices.Clone(e.counts)
	for i := range e.counts {
		e.counts[i].pattern = e.counts[i].pattern.resolve(r.savedText)
	}
	e.timing = slices.Clone(e.timing)
	for i := range e.timing {
		e.timing[i].sel = e.timing[i].sel.resolve(r.savedText)
	}
	return e
}

// savedText is what ${name} stands for: a saved set's or snapshot's ID as
// trace lines print it, or an export's name. A name whose step never ran
// stands for a text no line holds.
func (r *runner) savedText(name string) string {
	r.mu.Lock()
	v, ok := r.mu.saved[name]
	r.mu.Unlock()
	switch {
	case !ok:
		return "${" + name + "}: not saved (its step did not run)"
	case v.kind == savedExport:
		return v.export
	}
	return v.id.String()
}

// resolveLog fills in the saved names of a selector's field values.
func (r *runner) resolveLog(l logExpect) logExpect {
	if !l.refs {
		return l
	}
	fields := make(map[string]string, len(l.fields))
	for k, v := range l.fields {
		fields[k] = savedRef.ReplaceAllStringFunc(v, func(m string) string { return r.savedText(m[2 : len(m)-1]) })
	}
	l.fields, l.refs = fields, false
	return l
}

// score counts how many of the selector's comparisons the record passes.
func (l logExpect) score(c capturedRecord) int {
	n := 0
	if l.id != 0 && c.id == l.id {
		n++
	}
	if l.text != "" && strings.Contains(c.msg, l.text) {
		n++
	}
	if l.level != "" && c.level.String() == l.level {
		n++
	}
	for k, want := range l.fields {
		if got, ok := c.attrs[k]; ok && (got == want || hresultName(got) == hresultName(want)) {
			n++
		}
	}
	return n
}

func hresultName(s string) string {
	if hr, err := vss.ParseHRESULT(s); err == nil {
		return hr.Name()
	}
	return s
}

// find returns the first record that passes every comparison.
func (l logExpect) find(recs []capturedRecord) (capturedRecord, bool) {
	all := len(l.compared())
	for _, c := range recs {
		if l.score(c) == all {
			return c, true
		}
	}
	return capturedRecord{}, false
}

// closest returns the record that passes the most comparisons, and how
// many; the first such record on a tie.
func (l logExpect) closest(recs []capturedRecord) (capturedRecord, int) {
	var best capturedRecord
	n := 0
	for _, c := range recs {
		if s := l.score(c); s > n {
			best, n = c, s
		}
	}
	return best, n
}

// lineAt names a line of the trace with the time it began, as the
// report's "at" column shows it: "\"writer:Freeze:sql -> true\" (at 2.1ms)".
func lineAt(trace []Entry, i int) string {
	if i < 0 || i >= len(trace) {
		return "the start"
	}
	return fmt.Sprintf("%q (at %s)", trace[i].Line(), fmtDur(trace[i].Start))
}

func (r *runner) traceMismatch(line int, what, expected, got string, trace []Entry, at int) {
	r.mismatch(line, what, expected, got, time.Time{}, time.Time{})
	r.mu.Lock()
	defer r.mu.Unlock()
	m := &r.mu.mismatches[len(r.mu.mismatches)-1].m
	if len(trace) > 0 {
		m.Context = contextLines(trace, at, at, at)
	}
}

// bound measures the spans a timing bound selects, against the bound
// scaled (unless it is unscaled). The worst span is reported.
func (r *runner) bound(b timingSpec, trace []Entry) Measurement {
	m := Measurement{Span: b.text, Hard: b.hard, OK: true}
	limit := func(d time.Duration) time.Duration {
		if b.unscaled {
			return d
		}
		return r.scaled(d)
	}
	found := false
	for _, e := range trace {
		if !b.sel.matches(e) {
			continue
		}
		d := e.End - e.Start
		worse := !found || (b.max != 0 && d > m.Measured) || (b.max == 0 && d < m.Measured)
		if worse {
			m.Measured = d
		}
		found = true
	}
	if !found {
		m.OK, m.Note = false, "no such span in the trace"
	} else {
		if b.max != 0 && m.Measured >= limit(b.max) {
			m.OK, m.Limit = false, limit(b.max)
		}
		if b.min != 0 && m.Measured <= limit(b.min) {
			m.OK, m.Limit = false, limit(b.min)
		}
		if m.Limit == 0 {
			m.Limit = limit(cmpOr(b.max, b.min))
		}
	}
	m.Scenario = m.Measured
	if !b.unscaled {
		m.Scenario = r.res.scenarioTime(m.Measured)
	}
	if !m.OK && b.hard {
		got := fmt.Sprintf("%s (%s measured)", fmtDur(m.Scenario), fmtDur(m.Measured))
		if !found {
			got = m.Note
		}
		r.mismatch(b.line, "expect.timing (hard)", b.text, got, time.Time{}, time.Time{})
	}
	return m
}

func cmpOr(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// measurePhases adds the duration of every phase of every set to the
// measurements (vss-spec.md F.3: measure each phase).
func (r *runner) measurePhases(trace []Entry) {
	set := 0
	for _, e := range trace {
		if e.Kind != kindPhase {
			continue
		}
		if e.Name == phaseNames[0] {
			set++
		}
		d := e.End - e.Start
		r.res.Measurements = append(r.res.Measurements, Measurement{
			Span: fmt.Sprintf("phase:%s (sequence %d)", e.Name, set), Measured: d, Scenario: r.res.scenarioTime(d), OK: true,
		})
	}
}

// ---- invariants ----

// checkInvariants checks what every run must keep, whatever the scenario:
//
//   - B.1 one snapshot set is created at a time: no two sets' creations
//     (from StartSnapshotSet to the last provider call or phase of
//     DoSnapshotSet) overlap;
//   - D/B.10 every Freeze a writer got is followed by its Thaw or Abort,
//     and no writer gets Abort after PostSnapshot;
//   - B.2/C nothing is logged while writes are held.
func (r *runner) checkInvariants(trace []Entry) {
	r.mu.Lock()
	sets := slices.Clone(r.mu.sets)
	r.mu.Unlock()

	// B.1.
	type span struct {
		name       string
		start, end time.Time
	}
	var creations []span
	for _, st := range sets {
		if st.imported {
			continue
		}
		origin := st.tl.Origin()
		end := origin
		for _, sp := range st.tl.Spans() {
			if sp.Kind == coordinator.KindPhase || sp.Kind == coordinator.KindProvider {
				end = maxTime(end, origin.Add(sp.End))
			}
		}
		creations = append(creations, span{r.setName(st.id), origin, end})
	}
	slices.SortFunc(creations, func(a, b span) int { return a.start.Compare(b.start) })
	b1 := Check{Name: "invariant B.1: one snapshot set created at a time", OK: true,
		Detail: fmt.Sprintf("%d creations, none overlapping", len(creations))}
	for i := 1; i < len(creations); i++ {
		if creations[i].start.Before(creations[i-1].end) {
			b1.OK = false
			b1.Detail = fmt.Sprintf("%s began %s before %s finished", creations[i].name,
				fmtDur(creations[i-1].end.Sub(creations[i].start)), creations[i-1].name)
			break
		}
	}
	r.addCheck(b1)

	// D, B.10: per writer and set, in the order the writer got them.
	type key struct {
		writer string
		set    vss.ID
	}
	events := map[key][]string{}
	var order []key
	for _, ev := range r.rec.snapshot() {
		if ev.kind != kindWriter || ev.set.IsNull() {
			continue
		}
		k := key{ev.actor, ev.set}
		if _, ok := events[k]; !ok {
			order = append(order, k)
		}
		events[k] = append(events[k], ev.name)
	}
	thaw := Check{Name: "invariant D: Thaw or Abort follows every Freeze", OK: true}
	post := Check{Name: "invariant B.10: no Abort after PostSnapshot", OK: true}
	freezes := 0
	for _, k := range order {
		evs := events[k]
		if i := slices.Index(evs, vss.EventFreeze.String()); i >= 0 {
			freezes++
			if !slices.Contains(evs[i:], vss.EventThaw.String()) && !slices.Contains(evs[i:], vss.EventAbort.String()) && thaw.OK {
				thaw.OK = false
				thaw.Detail = fmt.Sprintf("writer %s got Freeze for %s, then only %s", k.writer, r.setName(k.set), strings.Join(evs[i+1:], ", "))
			}
		}
		if i := slices.Index(evs, vss.EventPostSnapshot.String()); i >= 0 && slices.Contains(evs[i:], vss.EventAbort.String()) && post.OK {
			post.OK = false
			post.Detail = fmt.Sprintf("writer %s got %s", k.writer, strings.Join(evs, ", "))
		}
	}
	if thaw.OK {
		thaw.Detail = fmt.Sprintf("%d freezes, each thawed or aborted", freezes)
	}
	if post.OK {
		post.Detail = "none"
	}
	r.addCheck(thaw)
	r.addCheck(post)

	// F.6: GetTargetLuns and FillInLunInfo read no LUN.
	f6 := Check{Name: "invariant F.6: GetTargetLuns and FillInLunInfo read no LUN", OK: true}
	calls := 0
	for _, ev := range r.rec.snapshot() {
		if ev.kind != kindProvider || (ev.name != vss.MethodGetTargetLuns.String() && ev.name != vss.MethodFillInLunInfo.String()) {
			continue
		}
		calls++
		if strings.HasPrefix(ev.detail, "LUN ") && f6.OK {
			f6.OK, f6.Detail = false, fmt.Sprintf("%s of %s: %s", ev.name, ev.actor, ev.detail)
		}
	}
	if f6.OK {
		f6.Detail = fmt.Sprintf("%d calls, no read", calls)
	}
	r.addCheck(f6)

	// B.2: writes are held from the end of FlushAndHold (every gate is
	// closed then) to the beginning of ReleaseWrites.
	logged := Check{Name: "invariant B.2: nothing logged while writes are held", OK: true, Detail: "nothing"}
	recs := r.logs.all()
	var held []span
	var flushEnd time.Time
	for _, e := range trace {
		switch {
		case e.Kind == kindPhase && e.Name == "FlushAndHold":
			flushEnd = r.start.Add(e.End)
		case e.Kind == kindPhase && e.Name == "ReleaseWrites" && !flushEnd.IsZero():
			held = append(held, span{"", flushEnd, r.start.Add(e.Start)})
			flushEnd = time.Time{}
		}
	}
	for _, h := range held {
		for _, c := range recs {
			// The rule is the event log's: the coordinator's and the
			// providers' records. The NBD server's connection log is the
			// data path's (a client may connect at any moment), not VSS's.
			if c.attrs["component"] == "nbd" {
				continue
			}
			if c.at.After(h.start) && c.at.Before(h.end) && logged.OK {
				logged.OK = false
				logged.Detail = fmt.Sprintf("%q logged %s into the hold", c.msg, fmtDur(c.at.Sub(h.start)))
			}
		}
	}
	if logged.OK {
		logged.Detail = fmt.Sprintf("%d holds, no record inside one", len(held))
	}
	r.addCheck(logged)
}
