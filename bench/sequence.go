package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// SequenceConfig configures the sequence workload: complete snapshot sets
// (DoSnapshotSet, vss-spec.md A.7) one after another, with Writers writers
// and LUNs LUNs, timed per phase from the set's timeline.
type SequenceConfig struct {
	// Writers is the number of VSS writers; each answers every event at
	// once unless WriterDelay is set.
	Writers int `json:"writers"`
	// LUNs is the number of LUNs in every set, one volume each (several
	// per volume past 64, the most volumes a set holds).
	LUNs int `json:"luns"`
	// LUNSize is each LUN's size. LUNs are thin: size costs nothing.
	LUNSize Size `json:"lun_size"`
	// WriterDelay is how long each writer takes in PrepareForSnapshot,
	// Freeze, Thaw and PostSnapshot; 0 injects nothing.
	WriterDelay time.Duration `json:"writer_delay_ns"`
	// Duration bounds the run; Sets, when not 0, stops it earlier.
	Duration time.Duration `json:"duration_ns"`
	Sets     int           `json:"sets"`
	// Warmup sets run first and are not counted.
	Warmup int `json:"warmup"`
	// DataDir, when set, runs on a durable array in a new directory
	// under it, removed at the end, rather than in memory.
	DataDir string `json:"data_dir,omitempty"`
	// Remote, when not 0, also runs the sets across that many arrays
	// reached over the provider protocol (provider/wire) on 127.0.0.1,
	// the LUNs spread over them, interleaved set by set with the
	// in-process sets, whose figures stay the reference: remote/...
	// reports the remote ones, and the calls to the arrays per set.
	Remote int `json:"remote,omitempty"`
}

// DefaultSequenceConfig is the sequence workload's default: 4 writers,
// 16 LUNs, no injected delay, 10 s.
func DefaultSequenceConfig() SequenceConfig {
	return SequenceConfig{Writers: 4, LUNs: 16, LUNSize: 64 << 20, Duration: 10 * time.Second, Warmup: 3}
}

func (c SequenceConfig) params() []Param {
	return []Param{
		{"writers", fmt.Sprint(c.Writers)}, {"luns", fmt.Sprint(c.LUNs)}, {"lun size", c.LUNSize.String()},
		{"writer delay", FormatDuration(c.WriterDelay)}, {"duration", c.Duration.String()},
		{"sets", fmt.Sprint(c.Sets)}, {"warm-up sets", fmt.Sprint(c.Warmup)}, {"remote arrays", fmt.Sprint(c.Remote)},
	}
}

func (c SequenceConfig) validate() error {
	switch {
	case c.Writers < 0:
		return fmt.Errorf("bench: sequence: writers must be 0 or more, not %d", c.Writers)
	case c.LUNs < 1:
		return fmt.Errorf("bench: sequence: luns must be at least 1, not %d", c.LUNs)
	case c.LUNSize < 4096 || c.LUNSize%4096 != 0:
		return fmt.Errorf("bench: sequence: lun size must be a positive multiple of 4 KiB, not %d", c.LUNSize)
	case c.WriterDelay < 0:
		return fmt.Errorf("bench: sequence: writer delay must not be negative")
	case c.Duration <= 0 && c.Sets <= 0:
		return fmt.Errorf("bench: sequence: give a positive duration or a number of sets")
	case c.Sets < 0 || c.Warmup < 0:
		return fmt.Errorf("bench: sequence: sets and warm-up must not be negative")
	case c.Remote < 0:
		return fmt.Errorf("bench: sequence: remote arrays must be 0 or more, not %d", c.Remote)
	case c.Remote > 0 && c.DataDir != "":
		return fmt.Errorf("bench: sequence: --remote runs in memory; drop --data-dir")
	}
	return nil
}

// The phases the sequence reports: groups of the coordinator's A.7 steps.
// PhaseOther is the part of DoSnapshotSet inside no step (scheduling, the
// Async's completion), reported rather than dropped.
const (
	PhasePrepare      = "prepare"
	PhaseFreeze       = "freeze"
	PhaseHold         = "hold"
	PhaseCommit       = "commit"
	PhaseThaw         = "thaw"
	PhasePostSnapshot = "post-snapshot"
	PhaseOther        = "other"
)

// Phases lists the phases in sequence order.
var Phases = []string{PhasePrepare, PhaseFreeze, PhaseHold, PhaseCommit, PhaseThaw, PhasePostSnapshot, PhaseOther}

// phaseOf maps each step of vss-spec.md A.7, by the name of the
// coordinator's phase span, to the phase it is reported under. A step not
// listed here (one a later coordinator adds) is reported under its own
// name, never silently folded into another.
var phaseOf = map[string]string{
	"EndPrepareSnapshots":      PhasePrepare, // a
	"SetSourceFlags":           PhasePrepare, // b
	"PrepareForSnapshot":       PhasePrepare, // c
	"Freeze":                   PhaseFreeze,  // d
	"PreCommitSnapshots":       PhaseFreeze,  // e
	"FlushAndHold":             PhaseHold,    // f
	"CommitSnapshots":          PhaseCommit,  // g
	"ReleaseWrites":            PhaseHold,    // h
	"ClearSourceFlags":         PhaseThaw,    // i
	"PostCommitSnapshots":      PhaseThaw,    // j
	"Thaw":                     PhaseThaw,    // k
	"GetTargetLuns":            PhasePostSnapshot,
	"AutoImport":               PhasePostSnapshot,
	"PreFinalCommitSnapshots":  PhasePostSnapshot,
	"PostSnapshot":             PhasePostSnapshot,
	"PostFinalCommitSnapshots": PhasePostSnapshot,
}

// breakdown splits one set's DoSnapshotSet into phases and steps. The
// phases add up to the total exactly: other is what no step covers.
func breakdown(s setSample) (phases, steps map[string]time.Duration) {
	phases, steps = map[string]time.Duration{}, map[string]time.Duration{}
	type iv struct{ a, b time.Duration }
	var covered []iv
	for _, sp := range s.tl.Spans() {
		if sp.Kind != coordinator.KindPhase {
			continue
		}
		a, b := max(sp.Start, s.start), min(sp.End, s.end)
		if b <= a {
			continue
		}
		steps[sp.Name] += b - a
		p, ok := phaseOf[sp.Name]
		if !ok {
			p = sp.Name
		}
		phases[p] += b - a
		covered = append(covered, iv{a, b})
	}
	// The union of the steps, so that other is right even if steps overlap.
	slices.SortFunc(covered, func(x, y iv) int { return int(x.a - y.a) })
	var union, end time.Duration
	end = s.start
	for _, c := range covered {
		if c.b <= end {
			continue
		}
		union += c.b - max(c.a, end)
		end = c.b
	}
	phases[PhaseOther] = s.total() - union
	return phases, steps
}

// windows returns the durations of the hold window and of each writer's
// freeze window.
func windows(s setSample) (hold []time.Duration, freeze []time.Duration) {
	for _, sp := range spans(s.tl) {
		if sp.Kind != coordinator.KindWindow {
			continue
		}
		switch sp.Name {
		case "hold":
			hold = append(hold, sp.Duration())
		case freezeWindow:
			freeze = append(freeze, sp.Duration())
		}
	}
	return hold, freeze
}

// freezeWindow is the name of a writer's freeze window span.
const freezeWindow = "freeze-window"

// spans returns a timeline's spans, completed with the freeze window of
// every writer whose window closed normally. The coordinator records a
// freeze-window span only when the window fails or expires; a writer that
// froze and reached PostCommitSnapshots gets one here, from its Freeze
// event to the end of PostCommitSnapshots, the window of vss-spec.md B.3,
// marked as derived in its Detail.
func spans(tl *coordinator.Timeline) []coordinator.Span {
	all := tl.Spans()
	var postCommitEnd time.Duration
	have := map[string]bool{}
	for _, sp := range all {
		switch {
		case sp.Kind == coordinator.KindPhase && sp.Name == "PostCommitSnapshots":
			postCommitEnd = sp.End
		case sp.Kind == coordinator.KindWindow && sp.Name == freezeWindow:
			have[sp.Actor] = true
		}
	}
	if postCommitEnd == 0 {
		return all
	}
	var extra []coordinator.Span
	for _, sp := range all {
		if sp.Kind == coordinator.KindWriter && sp.Name == "Freeze" && sp.Result == "true" && !have[sp.Actor] && sp.Start < postCommitEnd {
			extra = append(extra, coordinator.Span{Kind: coordinator.KindWindow, Name: freezeWindow, Actor: sp.Actor,
				Start: sp.Start, End: postCommitEnd, Result: "closed",
				Detail: "derived from the Freeze event and PostCommitSnapshots"})
			have[sp.Actor] = true
		}
	}
	if len(extra) == 0 {
		return all
	}
	all = append(all, extra...)
	slices.SortStableFunc(all, func(a, b coordinator.Span) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return int(a.End - b.End)
	})
	return all
}

// setStats accumulates the histograms of many sets.
type setStats struct {
	total, setup, teardown, hold, freeze *Histogram
	phases, steps                        map[string]*Histogram
	stepOrder                            []string
	samples                              []setSample
}

func newSetStats() *setStats {
	return &setStats{total: NewHistogram(), setup: NewHistogram(), teardown: NewHistogram(),
		hold: NewHistogram(), freeze: NewHistogram(),
		phases: map[string]*Histogram{}, steps: map[string]*Histogram{}}
}

func (st *setStats) add(s setSample) {
	st.samples = append(st.samples, s)
	st.total.Record(s.total())
	st.setup.Record(s.setup)
	st.teardown.Record(s.teardown)
	phases, steps := breakdown(s)
	for p, d := range phases {
		if st.phases[p] == nil {
			st.phases[p] = NewHistogram()
		}
		st.phases[p].Record(d)
	}
	for _, sp := range s.tl.Spans() { // steps in the order they ran
		if d, ok := steps[sp.Name]; ok && sp.Kind == coordinator.KindPhase {
			if st.steps[sp.Name] == nil {
				st.steps[sp.Name] = NewHistogram()
				st.stepOrder = append(st.stepOrder, sp.Name)
			}
			st.steps[sp.Name].Record(d)
			delete(steps, sp.Name)
		}
	}
	hold, freeze := windows(s)
	for _, d := range hold {
		st.hold.Record(d)
	}
	for _, d := range freeze {
		st.freeze.Record(d)
	}
}

// median returns the set whose DoSnapshotSet took the median time.
func (st *setStats) median() (setSample, bool) {
	if len(st.samples) == 0 {
		return setSample{}, false
	}
	s := slices.Clone(st.samples)
	slices.SortFunc(s, func(a, b setSample) int { return int(a.total() - b.total()) })
	return s[len(s)/2], true
}

// timeline returns the Gantt chart's data for the median set.
func (st *setStats) timeline() *Timeline {
	s, ok := st.median()
	if !ok {
		return nil
	}
	return &Timeline{
		Caption: fmt.Sprintf("snapshot set %v: the median of %d (DoSnapshotSet %s)", s.id, len(st.samples), FormatDuration(s.total())),
		Start:   s.start, End: s.end, Spans: spans(s.tl),
	}
}

// report adds the histograms to r, each name after prefix: the total,
// the phases in order, the windows, the steps and the requester's own
// calls. timeline sets r's Timeline from the median set.
func (st *setStats) report(r *Result, prefix string, timeline bool) {
	r.addLatency(prefix+"sequence/DoSnapshotSet", st.total)
	for _, p := range Phases {
		if h := st.phases[p]; h != nil {
			r.addLatency(prefix+"phase/"+p, h)
		} else if p == PhaseOther {
			r.addLatency(prefix+"phase/"+p, NewHistogram())
		}
	}
	var extra []string
	for p := range st.phases {
		if !slices.Contains(Phases, p) {
			extra = append(extra, p)
		}
	}
	slices.Sort(extra)
	for _, p := range extra {
		r.addLatency(prefix+"phase/"+p, st.phases[p])
		r.Notes = append(r.Notes, fmt.Sprintf("step %q belongs to no known phase; it is reported on its own", p))
	}
	r.addLatency(prefix+"window/hold", st.hold)
	if st.freeze.Count() > 0 {
		r.addLatency(prefix+"window/freeze", st.freeze)
	}
	for _, s := range st.stepOrder {
		r.addLatency(prefix+"step/"+s, st.steps[s])
	}
	r.addLatency(prefix+"requester/setup", st.setup)
	r.addLatency(prefix+"requester/teardown", st.teardown)
	if timeline {
		r.Timeline = st.timeline()
	}
}

// RunSequence runs the sequence workload. With Remote, the in-process and
// the remote sets alternate, one of each in turn, so that both meet the
// same machine: the reference and the remote figures come from the same
// minutes.
func RunSequence(ctx context.Context, cfg SequenceConfig, p Progress) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc := rigConfig{LUNs: cfg.LUNs, LUNSize: int64(cfg.LUNSize), Writers: cfg.Writers, WriterDelay: cfg.WriterDelay, DataDir: cfg.DataDir}
	rg, err := newRig(ctx, rc)
	if err != nil {
		return nil, err
	}
	defer rg.Close()
	rigs := []*rig{rg}
	stats := []*setStats{newSetStats()}
	calls, cs := &callLog{}, newCallStats()
	if cfg.Remote > 0 {
		rr, err := newRemoteRig(ctx, rc, cfg.Remote, calls)
		if err != nil {
			return nil, err
		}
		defer rr.Close()
		rigs, stats = append(rigs, rr), append(stats, newSetStats())
	}
	res := &Result{Workload: "sequence", Config: cfg, Params: cfg.params(), Machine: Describe(), Started: time.Now()}
	for range cfg.Warmup {
		for _, r := range rigs {
			if _, err := r.snapshotSet(ctx); err != nil {
				return nil, err
			}
		}
	}
	calls.take()
	st := stats[0]
	start := time.Now()
	stop := ticker(p, cfg.Duration, func() string { return fmt.Sprintf("%d sets", st.total.Count()) })
	for (cfg.Duration <= 0 || time.Since(start) < cfg.Duration) && (cfg.Sets <= 0 || len(st.samples) < cfg.Sets) {
		if ctx.Err() != nil {
			break
		}
		for i, r := range rigs {
			s, err := r.snapshotSet(ctx)
			if err != nil {
				if ctx.Err() != nil {
					break // interrupted: report what ran
				}
				stop()
				return nil, err
			}
			stats[i].add(s)
			if i == 1 {
				cs.add(s, calls.take())
			}
		}
	}
	stop()
	res.Elapsed = time.Since(start)
	st.report(res, "", cfg.Remote == 0)
	res.addMetric("sets", float64(len(st.samples)), "")
	res.addMetric("sets per second", float64(len(st.samples))/res.Elapsed.Seconds(), "set/s")
	res.Summary = fmt.Sprintf("%d snapshot sets of %d LUNs with %d writers in %s; DoSnapshotSet median %s",
		len(st.samples), cfg.LUNs, cfg.Writers, FormatDuration(res.Elapsed), FormatDuration(st.total.Quantile(50)))
	if cfg.Remote > 0 {
		rs := stats[1]
		rs.report(res, "remote/", true)
		cs.report(res, "remote/")
		res.Summary = fmt.Sprintf("%d snapshot sets of %d LUNs with %d writers in %s, in turn in-process and across %d arrays over the provider protocol on 127.0.0.1; "+
			"DoSnapshotSet median %s in-process, %s remote (p99 %s); hold window p99 %s in-process, %s remote",
			len(st.samples)+len(rs.samples), cfg.LUNs, cfg.Writers, FormatDuration(res.Elapsed), cfg.Remote,
			FormatDuration(st.total.Quantile(50)), FormatDuration(rs.total.Quantile(50)), FormatDuration(rs.total.Quantile(99)),
			FormatDuration(st.hold.Quantile(99)), FormatDuration(rs.hold.Quantile(99)))
		res.Notes = append(res.Notes, fmt.Sprintf("the remote arrays are in this process, each served by the provider protocol's server on a loopback port "+
			"(serve --provider-listen's); the timeline is the median remote set's; sets per second counts the in-process ones"))
	}
	if cfg.Warmup > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the first %d sets warmed up and are not counted", cfg.Warmup))
	}
	return res, errors.Join(rg.Close(), closeRigs(rigs[1:]))
}

func closeRigs(rigs []*rig) error {
	var errs []error
	for _, r := range rigs {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}
