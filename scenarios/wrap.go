package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// rawEvent is one call the runner saw with its own eyes: a requester call
// it made, or a provider call or writer event that passed through its
// wrappers. The trace is built from the coordinator's timelines; raw events
// fill in what no timeline holds (Identify, the provider calls of
// DeleteSnapshots and ImportSnapshots...) and the answers a timeline does
// not record (AreLunsSupported's BOOL).
type rawEvent struct {
	kind, name, actor string
	result            string // requester: the HRESULT name; provider: the code returned, untranslated; writer: true, false, timeout or panic
	detail            string
	start, end        time.Time
	set               vss.ID
	answer            *bool // AreLunsSupported's pbIsSupported, FillInLunInfo's known
}

// entered is the beginning of a provider call or writer event, for
// wait-for.
type entered struct {
	kind, name, actor string
	at                time.Time
}

// recorder collects raw events. It is safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	events  []rawEvent
	entries []entered
	changed chan struct{} // closed and replaced whenever a call begins
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) enter(kind, name, actor string) time.Time {
	now := time.Now()
	r.mu.Lock()
	r.entries = append(r.entries, entered{kind, name, actor, now})
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return now
}

func (r *recorder) add(e rawEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []rawEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitEntered blocks until a call matching p begins at or after since, or
// ctx ends.
func (r *recorder) waitEntered(ctx context.Context, p pattern, since time.Time) bool {
	for {
		r.mu.Lock()
		for _, e := range r.entries {
			if !e.at.Before(since) && e.kind == p.kind && e.name == p.name && (p.actor == "" || p.actor == e.actor) {
				r.mu.Unlock()
				return true
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// tracedProvider wraps the array provider: it records every call and,
// when the scenario masks LUNs from the provider, answers AreLunsSupported
// false for a LUN it does not present, as an array whose LUNs are not
// mapped to the host would. The firmware profile has no such setting.
type tracedProvider struct {
	name  string
	inner fullProvider
	rec   *recorder
	luns  []string // nil: every LUN of the array
	array *lun.Array

	mu      sync.Mutex
	lastSet vss.ID // the set of the last set-bound call, for release-commit
}

// fullProvider is a provider with every interface of vss-spec.md C: the
// emulated array's, or the provider protocol's client.
type fullProvider interface {
	provider.Provider
	provider.HardwareProviderEx
	provider.Notifications
}

var (
	_ fullProvider = (*provider.ArrayProvider)(nil)
	_ fullProvider = (*wire.Client)(nil)

	_ provider.Provider           = (*tracedProvider)(nil)
	_ provider.HardwareProviderEx = (*tracedProvider)(nil)
	_ provider.Notifications      = (*tracedProvider)(nil)
)

// call records one provider call. A set-bound call's line carries the set
// ID VSS passes (set={...}), so that patterns can name a saved set.
func (p *tracedProvider) call(m vss.ProviderMethod, set vss.ID, fn func() error) error {
	return p.callDetail(m, set, setDetail(set), fn)
}

func (p *tracedProvider) callDetail(m vss.ProviderMethod, set vss.ID, detail string, fn func() error) error {
	if !set.IsNull() {
		p.mu.Lock()
		p.lastSet = set
		p.mu.Unlock()
	}
	start := p.rec.enter(kindProvider, m.String(), p.name)
	err := fn()
	p.rec.add(rawEvent{kind: kindProvider, name: m.String(), actor: p.name, result: vss.FromError(err).Name(),
		detail: detail, start: start, end: time.Now(), set: set})
	return err
}

// setDetail is the detail of a line about set: "set={...}", or nothing
// for GUID_NULL.
func setDetail(set vss.ID) string {
	if set.IsNull() {
		return ""
	}
	return "set=" + set.String()
}

// answer is call for the methods that also answer a BOOL.
func (p *tracedProvider) answer(m vss.ProviderMethod, fn func() (bool, error)) (bool, error) {
	start := p.rec.enter(kindProvider, m.String(), p.name)
	ok, err := fn()
	p.rec.add(rawEvent{kind: kindProvider, name: m.String(), actor: p.name, result: vss.FromError(err).Name(),
		start: start, end: time.Now(), answer: &ok})
	return ok, err
}

func (p *tracedProvider) setOfLast() vss.ID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSet
}

func (p *tracedProvider) AreLunsSupported(ctx context.Context, c vss.SnapshotContext, devices []string, luns []provider.LunInfo) (bool, error) {
	return p.answer(vss.MethodAreLunsSupported, func() (bool, error) {
		if p.luns != nil {
			for _, d := range devices {
				if !slices.Contains(p.luns, d) {
					return false, nil
				}
			}
		}
		return p.inner.AreLunsSupported(ctx, c, devices, luns)
	})
}

func (p *tracedProvider) BeginPrepareSnapshot(ctx context.Context, set, snap vss.ID, c vss.SnapshotContext, devices []string, luns []provider.LunInfo) error {
	return p.callDetail(vss.MethodBeginPrepareSnapshot, set, setDetail(set)+"; snapshot="+snap.String(), func() error {
		return p.inner.BeginPrepareSnapshot(ctx, set, snap, c, devices, luns)
	})
}

// GetTargetLuns must describe the snapshot LUNs without reading them (F.6):
// the wrapper counts the reads of the sources and the targets around the
// call, and notes any in the line's detail.
func (p *tracedProvider) GetTargetLuns(ctx context.Context, devices []string, sources []provider.LunInfo) (out []provider.LunInfo, err error) {
	before := readCounts(p.array)
	start := p.rec.enter(kindProvider, vss.MethodGetTargetLuns.String(), p.name)
	out, err = p.inner.GetTargetLuns(ctx, devices, sources)
	names := slices.Clone(devices)
	for _, info := range out {
		if l := lunByNAA(p.array, info.NAA()); l != nil {
			names = append(names, l.Name())
		}
	}
	p.rec.add(rawEvent{kind: kindProvider, name: vss.MethodGetTargetLuns.String(), actor: p.name, result: vss.FromError(err).Name(),
		detail: readDetail(before, readCounts(p.array), names), start: start, end: time.Now()})
	return out, err
}

// readCounts returns the read operations of every LUN of a so far.
func readCounts(a *lun.Array) map[string]int64 {
	out := map[string]int64{}
	for _, l := range a.List() {
		for _, s := range l.Stats() {
			if s.Op == lun.OpRead {
				out[l.Name()] = s.Ops
			}
		}
	}
	return out
}

// readDetail names the LUNs among names read between before and after.
func readDetail(before, after map[string]int64, names []string) string {
	var read []string
	for _, n := range names {
		if d := after[n] - before[n]; d > 0 {
			read = append(read, fmt.Sprintf("%s read %d times", n, d))
		}
	}
	if len(read) == 0 {
		return ""
	}
	return "LUN " + strings.Join(read, ", ")
}

func lunByNAA(a *lun.Array, naa []byte) *lun.LUN {
	for _, l := range a.List() {
		id := l.Identity().NAA
		if naa != nil && string(id[:]) == string(naa) {
			return l
		}
	}
	return nil
}

func (p *tracedProvider) LocateLuns(ctx context.Context, luns []provider.LunInfo) error {
	return p.call(vss.MethodLocateLuns, vss.GUID_NULL, func() error { return p.inner.LocateLuns(ctx, luns) })
}

// FillInLunInfo, like GetTargetLuns, must not read the LUN (F.6).
func (p *tracedProvider) FillInLunInfo(ctx context.Context, device string, info *provider.LunInfo) (bool, error) {
	before := readCounts(p.array)
	start := p.rec.enter(kindProvider, vss.MethodFillInLunInfo.String(), p.name)
	ok, err := p.inner.FillInLunInfo(ctx, device, info)
	p.rec.add(rawEvent{kind: kindProvider, name: vss.MethodFillInLunInfo.String(), actor: p.name, result: vss.FromError(err).Name(),
		detail: readDetail(before, readCounts(p.array), []string{device}), start: start, end: time.Now(), answer: &ok})
	return ok, err
}

func (p *tracedProvider) OnLunEmpty(ctx context.Context, device string, info provider.LunInfo) error {
	return p.call(vss.MethodOnLunEmpty, vss.GUID_NULL, func() error { return p.inner.OnLunEmpty(ctx, device, info) })
}

func (p *tracedProvider) GetProviderCapabilities(ctx context.Context) (c vss.ProviderCapability, err error) {
	err = p.call(vss.MethodGetProviderCapabilities, vss.GUID_NULL, func() (err error) {
		c, err = p.inner.GetProviderCapabilities(ctx)
		return err
	})
	return c, err
}

func (p *tracedProvider) OnLunStateChange(ctx context.Context, snaps, origs []provider.LunInfo, flags vss.HardwareOptions) error {
	start := p.rec.enter(kindProvider, vss.MethodOnLunStateChange.String(), p.name)
	err := p.inner.OnLunStateChange(ctx, snaps, origs, flags)
	p.rec.add(rawEvent{kind: kindProvider, name: vss.MethodOnLunStateChange.String(), actor: p.name,
		result: vss.FromError(err).Name(), detail: "flags " + flags.String(), start: start, end: time.Now()})
	return err
}

func (p *tracedProvider) ResyncLuns(ctx context.Context, sources, targets []provider.LunInfo) (a provider.Async, err error) {
	err = p.call(vss.MethodResyncLuns, vss.GUID_NULL, func() (err error) {
		a, err = p.inner.ResyncLuns(ctx, sources, targets)
		return err
	})
	return a, err
}

func (p *tracedProvider) OnReuseLuns(ctx context.Context, snaps, origs []provider.LunInfo) error {
	return p.call(vss.MethodOnReuseLuns, vss.GUID_NULL, func() error { return p.inner.OnReuseLuns(ctx, snaps, origs) })
}

func (p *tracedProvider) EndPrepareSnapshots(ctx context.Context, set vss.ID) error {
	return p.call(vss.MethodEndPrepareSnapshots, set, func() error { return p.inner.EndPrepareSnapshots(ctx, set) })
}

func (p *tracedProvider) PreCommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.call(vss.MethodPreCommitSnapshots, set, func() error { return p.inner.PreCommitSnapshots(ctx, set) })
}

func (p *tracedProvider) CommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.call(vss.MethodCommitSnapshots, set, func() error { return p.inner.CommitSnapshots(ctx, set) })
}

func (p *tracedProvider) PostCommitSnapshots(ctx context.Context, set vss.ID, n int) error {
	return p.call(vss.MethodPostCommitSnapshots, set, func() error { return p.inner.PostCommitSnapshots(ctx, set, n) })
}

func (p *tracedProvider) PreFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.call(vss.MethodPreFinalCommitSnapshots, set, func() error { return p.inner.PreFinalCommitSnapshots(ctx, set) })
}

func (p *tracedProvider) PostFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.call(vss.MethodPostFinalCommitSnapshots, set, func() error { return p.inner.PostFinalCommitSnapshots(ctx, set) })
}

func (p *tracedProvider) AbortSnapshots(ctx context.Context, set vss.ID) error {
	return p.call(vss.MethodAbortSnapshots, set, func() error { return p.inner.AbortSnapshots(ctx, set) })
}

func (p *tracedProvider) OnLoad(ctx context.Context) error {
	return p.call(vss.MethodOnLoad, vss.GUID_NULL, func() error { return p.inner.OnLoad(ctx) })
}

func (p *tracedProvider) OnUnload(ctx context.Context, force bool) error {
	return p.call(vss.MethodOnUnload, vss.GUID_NULL, func() error { return p.inner.OnUnload(ctx, force) })
}

// tracedWriter wraps a scripted writer: it records every event with its
// answer, and pauses the loads that quiesce with the writer from its Freeze
// to its Thaw or Abort, as an application stops writing while frozen.
type tracedWriter struct {
	name  string
	inner coordinator.Writer
	rec   *recorder
	loads []*loadGen // loads that quiesce with this writer

	mu     sync.Mutex
	paused bool
}

var _ coordinator.Writer = (*tracedWriter)(nil)

func (w *tracedWriter) handle(ev *coordinator.Event, fn func(*coordinator.Event) bool) (ok bool) {
	start := w.rec.enter(kindWriter, ev.Kind.String(), w.name)
	e := rawEvent{kind: kindWriter, name: ev.Kind.String(), actor: w.name, start: start, set: ev.SnapshotSetID}
	if ev.Kind == vss.EventBackupShutdown {
		e.detail = setDetail(ev.SnapshotSetID) // OnBackupShutdown(setId), A.10
	}
	defer func() {
		if r := recover(); r != nil {
			e.result, e.end = "panic", time.Now()
			w.rec.add(e)
			panic(r) // the coordinator contains it; the runner only watches
		}
	}()
	ok = fn(ev)
	e.result, e.end = "false", time.Now()
	switch {
	case ok:
		e.result = "true"
	case ev.Ctx != nil && ev.Ctx.Err() != nil:
		e.result = "timeout"
	}
	w.rec.add(e)
	return ok
}

// quiesce pauses the writer's loads and keeps what they had written when
// it froze for set.
func (w *tracedWriter) quiesce(set vss.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.paused || len(w.loads) == 0 {
		return
	}
	w.paused = true
	for _, l := range w.loads {
		l.pause(set)
	}
}

func (w *tracedWriter) resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.paused {
		return
	}
	w.paused = false
	for _, l := range w.loads {
		l.resume()
	}
}

func (w *tracedWriter) OnIdentify(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnIdentify)
}
func (w *tracedWriter) OnPrepareBackup(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnPrepareBackup)
}
func (w *tracedWriter) OnPrepareSnapshot(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnPrepareSnapshot)
}

func (w *tracedWriter) OnFreeze(ev *coordinator.Event) bool {
	w.quiesce(ev.SnapshotSetID)
	return w.handle(ev, w.inner.OnFreeze)
}

func (w *tracedWriter) OnThaw(ev *coordinator.Event) bool {
	defer w.resume()
	return w.handle(ev, w.inner.OnThaw)
}

func (w *tracedWriter) OnPostSnapshot(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnPostSnapshot)
}

func (w *tracedWriter) OnAbort(ev *coordinator.Event) bool {
	for _, l := range w.loads {
		l.forget(ev.SnapshotSetID)
	}
	defer w.resume()
	return w.handle(ev, w.inner.OnAbort)
}

func (w *tracedWriter) OnBackupComplete(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnBackupComplete)
}

func (w *tracedWriter) OnBackupShutdown(ev *coordinator.Event) bool {
	defer w.resume()
	return w.handle(ev, w.inner.OnBackupShutdown)
}

func (w *tracedWriter) OnPreRestore(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnPreRestore)
}

func (w *tracedWriter) OnPostRestore(ev *coordinator.Event) bool {
	return w.handle(ev, w.inner.OnPostRestore)
}
