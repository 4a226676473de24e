package scenarios

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/shadowbench/shadowbench/vss"
)

// The kinds of trace line. The coordinator's span kinds (phase, provider,
// writer, window) keep their names; requester lines are the runner's own.
const (
	kindRequester = "requester"
	kindProvider  = "provider"
	kindWriter    = "writer"
	kindPhase     = "phase"
	kindWindow    = "window"
)

var traceKinds = []string{kindRequester, kindProvider, kindWriter, kindPhase, kindWindow}

// phaseNames are the steps of A.7 the coordinator records as phases, and
// windowNames its windows.
var (
	phaseNames = []string{"EndPrepareSnapshots", "SetSourceFlags", "PrepareForSnapshot", "Freeze", "PreCommitSnapshots",
		"FlushAndHold", "CommitSnapshots", "ReleaseWrites", "ClearSourceFlags", "PostCommitSnapshots", "Thaw",
		"GetTargetLuns", "AutoImport", "PreFinalCommitSnapshots", "PostSnapshot", "PostFinalCommitSnapshots"}
	windowNames = []string{"hold", "freeze-window"}
	// writerResults are what a writer event can come to.
	writerResults = []string{"true", "false", "timeout", "panic"}
)

// pattern is one expected trace line, "kind:name[:actor] [-> result]
// [[detail]]". Parts left out match anything: "provider:CommitSnapshots"
// matches the call on every provider, whatever it returned. A detail, when
// given, must be contained in the line's detail; ${name} in it stands for
// what save kept under name (a set's or snapshot's ID, an export's name),
// filled in when the pattern is matched.
type pattern struct {
	line      int
	text      string
	kind      string
	name      string
	actor     string
	result    string
	hasResult bool
	detail    string
	refs      []string // the saved names ${...} in detail
}

// savedRef is a reference to a saved name in a pattern's detail.
var savedRef = regexp.MustCompile(`\$\{([^{}]*)\}`)

// resolve returns the pattern with every ${name} of its detail replaced by
// value(name).
func (p pattern) resolve(value func(name string) string) pattern {
	if len(p.refs) == 0 {
		return p
	}
	p.detail = savedRef.ReplaceAllStringFunc(p.detail, func(m string) string { return value(m[2 : len(m)-1]) })
	p.refs = nil
	return p
}

// errPattern is wrapped by every problem of a trace line.
var errPattern = errors.New("bad trace line")

// parsePattern parses a trace line as expectations write it. requesterCalls
// names the calls a requester line may carry.
func parsePattern(s string) (pattern, error) {
	p := pattern{text: s}
	sel, rest, hasArrow := strings.Cut(s, "->")
	sel = strings.TrimSpace(sel)
	if !hasArrow {
		// A detail without a result: "provider:BeginPrepareSnapshot [set=...]".
		if i := strings.Index(sel, "["); i >= 0 {
			if !strings.HasSuffix(sel, "]") {
				return p, fmt.Errorf("%w %q: a detail is written [like this] at the end", errPattern, s)
			}
			p.detail = strings.TrimSpace(sel[i+1 : len(sel)-1])
			sel = strings.TrimSpace(sel[:i])
		}
	}
	parts := strings.Split(sel, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return p, fmt.Errorf("%w %q: want kind:name[:actor] [-> result]", errPattern, s)
	}
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
		if parts[i] == "" {
			return p, fmt.Errorf("%w %q: empty part", errPattern, s)
		}
	}
	p.kind, p.name = parts[0], parts[1]
	if len(parts) == 3 {
		p.actor = parts[2]
	}
	if !slices.Contains(traceKinds, p.kind) {
		return p, fmt.Errorf("%w %q: kind %q is not one of %s", errPattern, s, p.kind, strings.Join(traceKinds, ", "))
	}
	switch p.kind {
	case kindProvider:
		m, err := vss.ParseProviderMethod(p.name)
		if err != nil {
			return p, fmt.Errorf("%w %q: %q is not a provider method", errPattern, s, p.name)
		}
		p.name = m.String()
	case kindWriter:
		e, err := vss.ParseWriterEvent(p.name)
		if err != nil {
			return p, fmt.Errorf("%w %q: %q is not a writer event", errPattern, s, p.name)
		}
		p.name = e.String()
	case kindRequester:
		if _, ok := calls[p.name]; !ok && !slices.Contains(asyncCalls, p.name) {
			return p, fmt.Errorf("%w %q: %q is not a requester call", errPattern, s, p.name)
		}
	case kindPhase:
		if !slices.Contains(phaseNames, p.name) {
			return p, fmt.Errorf("%w %q: %q is not a phase (%s)", errPattern, s, p.name, strings.Join(phaseNames, ", "))
		}
	case kindWindow:
		if !slices.Contains(windowNames, p.name) {
			return p, fmt.Errorf("%w %q: %q is not a window (%s)", errPattern, s, p.name, strings.Join(windowNames, ", "))
		}
	}
	if !hasArrow {
		return p, p.findRefs(s)
	}
	rest = strings.TrimSpace(rest)
	if i := strings.Index(rest, "["); i >= 0 {
		if !strings.HasSuffix(rest, "]") {
			return p, fmt.Errorf("%w %q: a detail is written [like this] at the end", errPattern, s)
		}
		p.detail = strings.TrimSpace(rest[i+1 : len(rest)-1])
		rest = strings.TrimSpace(rest[:i])
	}
	if rest == "" {
		return p, fmt.Errorf("%w %q: no result after ->", errPattern, s)
	}
	p.hasResult = true
	if err := p.findRefs(s); err != nil {
		return p, err
	}
	switch p.kind {
	case kindWriter:
		if !slices.Contains(writerResults, rest) {
			return p, fmt.Errorf("%w %q: a writer event comes to %s, not %q", errPattern, s, strings.Join(writerResults, ", "), rest)
		}
		p.result = rest
	case kindWindow:
		p.result = rest
		if hr, err := vss.ParseHRESULT(rest); err == nil {
			p.result = hr.Name()
		}
	default:
		hr, err := vss.ParseHRESULT(rest)
		if err != nil {
			return p, fmt.Errorf("%w %q: %q is not an HRESULT", errPattern, s, rest)
		}
		p.result = hr.Name()
	}
	return p, nil
}

// findRefs collects the saved names the detail refers to.
func (p *pattern) findRefs(s string) error {
	for _, m := range savedRef.FindAllStringSubmatch(p.detail, -1) {
		if !validName(m[1]) {
			return fmt.Errorf("%w %q: ${%s} is not a saved name", errPattern, s, m[1])
		}
		p.refs = append(p.refs, m[1])
	}
	return nil
}

// matches reports whether the trace entry e fits the pattern.
func (p pattern) matches(e entry) bool {
	if p.kind != e.Kind || p.name != e.Name {
		return false
	}
	if p.actor != "" && p.actor != e.Actor {
		return false
	}
	if p.hasResult && p.result != e.Result {
		return false
	}
	return p.detail == "" || strings.Contains(e.Detail, p.detail)
}

// String returns the pattern as written.
func (p pattern) String() string { return p.text }
