package scenarios

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is how a scenario came out.
type Status string

// The statuses of a result.
const (
	// StatusPass: every expectation held.
	StatusPass Status = "pass"
	// StatusFail: an expectation did not hold.
	StatusFail Status = "fail"
	// StatusKnownFailure: the scenario failed and says it is expected to
	// (known-failure). It is reported in full, and does not fail a run.
	StatusKnownFailure Status = "known-failure"
	// StatusFixed: a scenario marked known-failure passed; remove the
	// mark. It fails a run, so that the mark does not outlive the defect.
	StatusFixed Status = "fixed"
	// StatusSkipped: the machine cannot run the scenario (a file system
	// needs nbdfuse, fuse3, e2fsprogs and root); Skipped says why. It does
	// not fail a run, except under CI=true, where the run fails instead.
	StatusSkipped Status = "skipped"
)

// Result is the outcome of one Run: the verdict with the first mismatch
// explained, the trace, the measurements and the checks.
type Result struct {
	Name         string  `json:"name"`
	File         string  `json:"file"`
	Status       Status  `json:"status"`
	KnownFailure string  `json:"known_failure,omitempty"`
	Skipped      string  `json:"skipped,omitempty"`
	TimeScale    float64 `json:"time_scale"`
	// Elapsed is the real time the run took.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Mismatches are the expectations that did not hold, the first found
	// first.
	Mismatches []Mismatch `json:"mismatches,omitempty"`
	// Trace is every line of the run, in order.
	Trace []Entry `json:"trace"`
	// Measurements are the timing bounds of the scenario and the duration
	// of every phase.
	Measurements []Measurement `json:"measurements"`
	// Checks are the data checks and the invariants every run must keep.
	Checks []Check `json:"checks"`
	// EventLog is what the coordinator and the providers logged at
	// warning level or above, and every record with a Windows event ID.
	EventLog []LogRecord `json:"event_log"`
}

// Passed reports whether the result does not fail a run: it passed, or it
// failed as its known-failure mark says it would.
func (r *Result) Passed() bool {
	return r.Status == StatusPass || r.Status == StatusKnownFailure || r.Status == StatusSkipped
}

// Entry is one line of the trace: a requester call, a provider call, a
// writer event, a phase of the sequence or a window, with its outcome.
// Times are measured, from the start of the run.
type Entry struct {
	Kind   string        `json:"kind"`
	Name   string        `json:"name"`
	Actor  string        `json:"actor,omitempty"`
	Result string        `json:"result"`
	Detail string        `json:"detail,omitempty"`
	Start  time.Duration `json:"start_ns"`
	End    time.Duration `json:"end_ns"`
	// Cleanup marks what the runner did after the last step (closing the
	// requesters left open); expectations do not see it.
	Cleanup bool `json:"cleanup,omitempty"`
}

// Line returns the entry as scenario files write it:
// "provider:CommitSnapshots:array -> S_OK [detail]".
func (e Entry) Line() string {
	var b strings.Builder
	b.WriteString(e.Kind + ":" + e.Name)
	if e.Actor != "" {
		b.WriteString(":" + e.Actor)
	}
	b.WriteString(" -> " + e.Result)
	if e.Detail != "" {
		b.WriteString(" [" + e.Detail + "]")
	}
	return b.String()
}

// entry is the internal name used by the matching code.
type entry = Entry

// Mismatch is an expectation that did not hold: where it is written, what
// was expected and what came, and the trace around it.
type Mismatch struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	What     string   `json:"what"`
	Expected string   `json:"expected"`
	Got      string   `json:"got"`
	Context  []string `json:"context,omitempty"`
}

// String is "file:line: what: expected X, got Y".
func (m Mismatch) String() string {
	loc := m.File
	if m.Line > 0 {
		loc = fmt.Sprintf("%s:%d", m.File, m.Line)
	}
	return fmt.Sprintf("%s: %s: expected %s, got %s", loc, m.What, m.Expected, m.Got)
}

// Measurement is a timed span: a bound of the scenario, or a phase.
type Measurement struct {
	// Span is the bound as written ("phase:CommitSnapshots < 10s"), or the
	// phase and the set it belongs to.
	Span string `json:"span"`
	// Measured is the real duration; Scenario is the same in scenario
	// time (divided by the time scale).
	Measured time.Duration `json:"measured_ns"`
	Scenario time.Duration `json:"scenario_ns"`
	// Limit is the bound in real time, after scaling; 0 for a phase.
	Limit time.Duration `json:"limit_ns,omitempty"`
	Hard  bool          `json:"hard,omitempty"`
	OK    bool          `json:"ok"`
	Note  string        `json:"note,omitempty"`
}

// Check is a data check or an invariant, and how it went.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// LogRecord is one record of the event log.
type LogRecord struct {
	At      time.Duration     `json:"at_ns"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	EventID int               `json:"event_id,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// text is "LEVEL message [event N] key=value ...", the fields in name
// order, as the report prints a record and expect.event-log compares it.
func (l LogRecord) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-5s %s", l.Level, l.Message)
	if l.EventID != 0 {
		fmt.Fprintf(&b, " [event %d]", l.EventID)
	}
	keys := make([]string, 0, len(l.Attrs))
	for k := range l.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := l.Attrs[k]
		if strings.ContainsAny(v, " \t\"") || v == "" {
			v = strconv.Quote(v)
		}
		b.WriteString(" " + k + "=" + v)
	}
	return b.String()
}

// Verdict is the result's one-line summary: "PASS name (1.2s)", or the
// status and the first mismatch.
func (r *Result) Verdict() string {
	el := r.Elapsed.Round(time.Millisecond)
	switch r.Status {
	case StatusPass:
		return fmt.Sprintf("PASS %s (%v)", r.Name, el)
	case StatusFixed:
		return fmt.Sprintf("FIXED %s (%v): marked known-failure (%s) but passed; remove the mark", r.Name, el, r.KnownFailure)
	case StatusSkipped:
		return fmt.Sprintf("SKIP %s: %s", r.Name, r.Skipped)
	}
	word := "FAIL"
	if r.Status == StatusKnownFailure {
		word = "KNOWN FAILURE"
	}
	first := "no mismatch recorded"
	if len(r.Mismatches) > 0 {
		first = r.Mismatches[0].String()
	}
	s := fmt.Sprintf("%s %s (%v): %s", word, r.Name, el, first)
	if r.Status == StatusKnownFailure {
		s += " — known failure: " + r.KnownFailure
	}
	return s
}

// scenarioTime converts a measured duration to scenario time.
func (r *Result) scenarioTime(d time.Duration) time.Duration {
	if r.TimeScale <= 0 || r.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) / r.TimeScale)
}

// WriteText writes the report: the timeline in scenario time, the
// measurements, the checks, the event log, and the verdict with the first
// mismatch and the trace around it.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	scaled := r.TimeScale != 1 && r.TimeScale > 0
	fmt.Fprintf(&b, "=== %s (%s)", r.Name, r.File)
	if scaled {
		fmt.Fprintf(&b, ", time scale %g: (scenario time) is measured ÷ %g", r.TimeScale, r.TimeScale)
	}
	b.WriteString("\n")
	if scaled {
		fmt.Fprintf(&b, "    %9s %9s %11s  %s\n", "at", "took", "(scenario)", "trace")
	} else {
		fmt.Fprintf(&b, "    %9s %9s  %s\n", "at", "took", "trace")
	}
	cleanup := false
	for _, e := range r.Trace {
		if e.Cleanup && !cleanup {
			b.WriteString("    -- after the last step: the runner closes what the scenario left open --\n")
			cleanup = true
		}
		d := e.End - e.Start
		if scaled {
			fmt.Fprintf(&b, "    %9s %9s %11s  %s\n", fmtDur(e.Start), fmtDur(d), "("+fmtDur(r.scenarioTime(d))+")", e.Line())
		} else {
			fmt.Fprintf(&b, "    %9s %9s  %s\n", fmtDur(e.Start), fmtDur(d), e.Line())
		}
	}
	var bounds []Measurement
	for _, m := range r.Measurements {
		if m.Limit != 0 || m.Note != "" {
			bounds = append(bounds, m)
		}
	}
	if len(bounds) > 0 {
		b.WriteString("  timing bounds:\n")
		for _, m := range bounds {
			mark := "ok  "
			switch {
			case m.Note != "" && !m.OK:
				mark = "??  "
			case !m.OK && m.Hard:
				mark = "FAIL"
			case !m.OK:
				mark = "over"
			}
			kind := "soft"
			if m.Hard {
				kind = "hard"
			}
			fmt.Fprintf(&b, "    %s %s (%s): %s", mark, m.Span, kind, fmtDur(m.Scenario))
			if r.TimeScale != 1 {
				fmt.Fprintf(&b, " (measured %s against %s)", fmtDur(m.Measured), fmtDur(m.Limit))
			}
			if m.Note != "" {
				b.WriteString(" — " + m.Note)
			}
			b.WriteString("\n")
		}
	}
	if len(r.Checks) > 0 {
		b.WriteString("  checks:\n")
		for _, c := range r.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(&b, "    %s %s: %s\n", mark, c.Name, c.Detail)
		}
	}
	if len(r.EventLog) > 0 {
		b.WriteString("  event log:\n")
		for _, l := range r.EventLog {
			fmt.Fprintf(&b, "    %9s %s\n", fmtDur(l.At), l.text())
		}
	}
	b.WriteString("--- " + r.Verdict() + "\n")
	if len(r.Mismatches) > 0 && r.Status != StatusPass {
		for _, l := range r.Mismatches[0].Context {
			b.WriteString("      " + l + "\n")
		}
		if n := len(r.Mismatches) - 1; n > 0 {
			fmt.Fprintf(&b, "    and %d more mismatch(es):\n", n)
			for _, m := range r.Mismatches[1:] {
				b.WriteString("      " + m.String() + "\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtDur prints a duration with three significant digits: 9.9s, 120ms,
// 15µs.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d >= 100*time.Second:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
}
