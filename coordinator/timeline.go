package coordinator

import (
	"slices"
	"sync"
	"time"
)

// SpanKind says what a timeline span records.
type SpanKind string

// The kinds of span.
const (
	// KindPhase is a step of the sequence (A.7 a-q) as a whole.
	KindPhase SpanKind = "phase"
	// KindProvider is one provider call.
	KindProvider SpanKind = "provider"
	// KindWriter is one writer event delivered to one writer.
	KindWriter SpanKind = "writer"
	// KindWindow is a window: a writer's freeze window, the hold window.
	KindWindow SpanKind = "window"
)

// Span is one timed step of a set's creation: start and end on the
// monotonic clock, relative to the timeline's origin, and the outcome.
type Span struct {
	Kind  SpanKind      `json:"kind"`
	Name  string        `json:"name"`            // EndPrepareSnapshots, Freeze, hold...
	Actor string        `json:"actor,omitempty"` // the provider, writer or LUN
	Start time.Duration `json:"start_ns"`
	End   time.Duration `json:"end_ns"`
	// Result is the HRESULT name, or "true"/"false" for writer events.
	Result string `json:"result"`
	// Detail says more where the result alone does not (a timeout, a
	// panic, a translated provider code).
	Detail string `json:"detail,omitempty"`
}

// Duration returns End - Start.
func (s Span) Duration() time.Duration { return s.End - s.Start }

// Timeline records the spans of one snapshot set. It is safe for
// concurrent use.
type Timeline struct {
	origin time.Time // carries the monotonic clock reading
	mu     sync.Mutex
	spans  []Span
	open   map[*span]struct{} // begun, not yet ended
}

func newTimeline() *Timeline { return &Timeline{origin: time.Now()} }

// Origin returns the wall-clock time the timeline starts at.
func (t *Timeline) Origin() time.Time { return t.origin }

// span is an open span; end closes it.
type span struct {
	t *Timeline
	s Span
}

func (t *Timeline) begin(kind SpanKind, name, actor string) *span {
	sp := &span{t: t, s: Span{Kind: kind, Name: name, Actor: actor, Start: time.Since(t.origin)}}
	t.mu.Lock()
	if t.open == nil {
		t.open = map[*span]struct{}{}
	}
	t.open[sp] = struct{}{}
	t.mu.Unlock()
	return sp
}

func (sp *span) end(result, detail string) {
	end := time.Since(sp.t.origin)
	sp.t.mu.Lock() // Running reads sp.s
	sp.s.End = end
	sp.s.Result, sp.s.Detail = result, detail
	sp.t.spans = append(sp.t.spans, sp.s)
	delete(sp.t.open, sp)
	sp.t.mu.Unlock()
}

// Running returns the spans begun and not yet ended, ordered by start,
// with End the present and no result: what the set waits on now (a
// phase, a writer's event, a provider call, a window).
func (t *Timeline) Running() []Span {
	now := time.Since(t.origin)
	t.mu.Lock()
	out := make([]Span, 0, len(t.open))
	for sp := range t.open {
		s := sp.s
		s.End = now
		out = append(out, s)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Span) int { return int(a.Start - b.Start) })
	return out
}

// Spans returns a copy of the spans, ordered by start (then end).
func (t *Timeline) Spans() []Span {
	t.mu.Lock()
	out := slices.Clone(t.spans)
	t.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Span) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return int(a.End - b.End)
	})
	return out
}

// Find returns the first span with the given kind and name.
func (t *Timeline) Find(kind SpanKind, name string) (Span, bool) {
	for _, s := range t.Spans() {
		if s.Kind == kind && s.Name == name {
			return s, true
		}
	}
	return Span{}, false
}
