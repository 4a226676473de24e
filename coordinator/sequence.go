package coordinator

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// setRun is one snapshot set in creation.
type setRun struct {
	s        *Service
	id       vss.ID
	snapCtx  vss.SnapshotContext
	rec      *setRecord
	tl       *Timeline
	vols     []*volEntry
	provs    []*Registration // distinct, in order of first use
	prepared map[*Registration]bool

	// deferred holds event-log records written while I/O was held: no
	// logging while the volumes are frozen (vss-spec.md C, F.5).
	logMu    sync.Mutex
	holding  bool
	deferred []func()
}

// volEntry is one volume of a set.
type volEntry struct {
	name    string
	snapID  vss.ID
	reg     *Registration
	host    *Registration // the array holding the LUNs; nil for the service's
	luns    []string
	sources []provider.LunInfo
	targets []provider.LunInfo
	devices []string // surfaced target LUNs, 1:1 with luns
	matched bool
}

func newSetRun(s *Service, snapCtx vss.SnapshotContext) *setRun {
	id := vss.NewID()
	tl := newTimeline()
	return &setRun{
		s: s, id: id, snapCtx: snapCtx, tl: tl, prepared: map[*Registration]bool{},
		rec: &setRecord{id: id, started: tl.Origin(), timeline: tl, state: "creating"},
	}
}

func (r *setRun) addVolume(v *volEntry) {
	r.vols = append(r.vols, v)
	if !slices.Contains(r.provs, v.reg) {
		r.provs = append(r.provs, v.reg)
	}
}

func (r *setRun) logEvent(f func()) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if r.holding {
		r.deferred = append(r.deferred, f)
		return
	}
	f()
}

func (r *setRun) setHolding(h bool) {
	r.logMu.Lock()
	r.holding = h
	d := r.deferred
	r.deferred = nil
	r.logMu.Unlock()
	for _, f := range d {
		f()
	}
}

// callProvider runs one provider call, records it, and translates its
// result (vss-spec.md C): a code the method may not return becomes
// VSS_E_UNEXPECTED_PROVIDER_ERROR and an event-log record.
func (r *setRun) callProvider(ctx context.Context, p *Registration, m vss.ProviderMethod, fn func(context.Context) error, notes ...func() string) vss.HRESULT {
	sp := r.tl.begin(KindProvider, m.String(), p.Name)
	cctx, cancel := context.WithTimeout(ctx, r.s.cfg.ProviderTimeout)
	err := fn(cctx)
	cancel()
	hr := vss.FromError(err)
	if err != nil && ctx.Err() != nil {
		// The coordinator cancelled the call itself (the hold window
		// passed, the set was cancelled): whatever the provider answered,
		// it is not the provider's error to report or log.
		why := "cancelled by the coordinator: " + context.Cause(ctx).Error()
		if errors.Is(context.Cause(ctx), errCancelled) {
			why = "cancelled by the requester (Async.Cancel)"
		}
		sp.end(hr.Name(), why)
		return vss.E_ABORT
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		hr = vss.VSS_E_UNEXPECTED_PROVIDER_ERROR // the provider outlived its call timeout
	}
	out := m.Translate(hr)
	detail := ""
	if out != hr {
		detail = "provider returned " + hr.Name()
		r.logEvent(func() {
			r.s.log.Error("unexpected provider error", "event_id", EventProviderError, "provider", p.Name,
				"method", m.String(), "returned", hr.Name(), "reported", out.Name(), "set", r.id.String())
		})
	}
	// notes say what the call answered besides its code (a BOOL, the
	// device), computed once it returned.
	var parts []string
	for _, n := range notes {
		parts = append(parts, n())
	}
	if detail != "" {
		parts = append(parts, detail)
	}
	sp.end(out.Name(), strings.Join(parts, "; "))
	return out
}

// phase records one step of A.7 around fn.
func (r *setRun) phase(name string, fn func() vss.HRESULT) vss.HRESULT {
	sp := r.tl.begin(KindPhase, name, "")
	hr := fn()
	sp.end(hr.Name(), "")
	return hr
}

// eachProvider calls m on every provider of the set (forProviders: in
// order, stopping at the first failure, or at once when each provider has
// an array of its own).
func (r *setRun) eachProvider(ctx context.Context, m vss.ProviderMethod, fn func(context.Context, provider.Provider) error) vss.HRESULT {
	return r.forProviders(func(p *Registration) vss.HRESULT {
		return r.callProvider(ctx, p, m, func(ctx context.Context) error { return fn(ctx, p.Provider) })
	})
}

// errCancelled marks a set cancelled through its Async.
var errCancelled = errors.New("coordinator: snapshot set cancelled")

// run is DoSnapshotSet: the sequence of vss-spec.md A.7, exactly in order.
// writers are the writers taking part (none in writerless contexts).
func (b *BackupComponents) run(ctx context.Context, r *setRun, writers []*writerStatus, a *Async) (err error) {
	s := b.s
	committed := false
	defer func() {
		if err == nil {
			return
		}
		// A failure (or a cancel) after EndPrepareSnapshots: providers
		// get AbortSnapshots (B.7); writers past PrepareForSnapshot get
		// Abort (B.10).
		actx := context.WithoutCancel(ctx)
		for _, p := range r.provs {
			if r.prepared[p] {
				r.callProvider(actx, p, vss.MethodAbortSnapshots, func(ctx context.Context) error {
					return p.Provider.AbortSnapshots(ctx, r.id)
				})
			}
		}
		b.abortWriters(actx, r, false)
		state := "failed"
		if errors.Is(err, errCancelled) {
			state = "cancelled"
		}
		s.mu.Lock()
		r.rec.state, r.rec.result = state, vss.FromError(err)
		s.mu.Unlock()
		s.log.Warn("snapshot set failed", "set", r.id.String(), "result", vss.FromError(err).Name(), "committed", committed)
	}()
	check := func(hr vss.HRESULT) error {
		if hr.Failed() {
			return hr
		}
		if !committed && a.cancelled() {
			return errors.Join(vss.E_ABORT, errCancelled)
		}
		return nil
	}

	// a. EndPrepareSnapshots, once per provider: the rendezvous. A cancel
	// while a provider is still inside it sends AbortSnapshots at once,
	// concurrently, and preparation must stop (B.7).
	if err := check(r.phase("EndPrepareSnapshots", func() vss.HRESULT {
		for _, p := range r.provs {
			r.prepared[p] = true
			done := make(chan vss.HRESULT, 1)
			// The call's context ends with the requester's cancel, before
			// AbortSnapshots goes out: what the provider then answers
			// (E_ABORT, as preparation stops) is the cancel VSS caused,
			// traced as such, neither translated nor logged as a provider
			// error (rule B.7).
			pctx, stop := context.WithCancelCause(ctx)
			s.wg.Go(func() {
				done <- r.callProvider(pctx, p, vss.MethodEndPrepareSnapshots, func(ctx context.Context) error {
					return p.Provider.EndPrepareSnapshots(ctx, r.id)
				})
			})
			var hr vss.HRESULT
			select {
			case hr = <-done:
				stop(nil)
			case <-a.cancelCh:
				stop(errCancelled)
				r.callProvider(context.WithoutCancel(ctx), p, vss.MethodAbortSnapshots, func(ctx context.Context) error {
					return p.Provider.AbortSnapshots(ctx, r.id)
				})
				delete(r.prepared, p) // aborted already
				<-done
				return vss.E_ABORT
			}
			if hr.Failed() {
				return hr
			}
		}
		return vss.S_OK
	})); err != nil {
		if a.cancelled() {
			return errors.Join(vss.E_ABORT, errCancelled)
		}
		return err
	}
	// b. Source LUN flags (read-only, hidden, no drive letter, shadow):
	// the array has no such flags; recorded so the trace keeps A.7's shape.
	r.phase("SetSourceFlags", func() vss.HRESULT { return vss.S_OK })

	// c. PrepareForSnapshot. Failures here raise no Abort (B.10). A writer
	// that failed PrepareForBackup gets no later event of the sequence
	// (rule D, failed states).
	b.mu.Lock()
	var prep []*writerStatus
	for _, st := range writers {
		if !st.state.IsFailed() {
			st.prepared = true
			prep = append(prep, st)
		}
	}
	b.mu.Unlock()
	r.phase("PrepareForSnapshot", func() vss.HRESULT {
		b.broadcast(ctx, r, prep, vss.EventPrepareForSnapshot, s.cfg.PrepareWindow)
		return vss.S_OK
	})
	if err := check(vss.S_OK); err != nil {
		return err
	}

	// d. Freeze, level by level: front-end, back-end, system. Each writer's
	// freeze window runs from its OnFreeze to the return of
	// PostCommitSnapshots (B.3).
	r.phase("Freeze", func() vss.HRESULT {
		for _, level := range vss.FreezeOrder() {
			var group []*writerStatus
			b.mu.Lock()
			for _, st := range prep {
				if st.reg.opts.Level == level && !st.state.IsFailed() {
					group = append(group, st)
				}
			}
			b.mu.Unlock()
			b.freeze(ctx, r, group)
		}
		return vss.S_OK
	})
	if err := check(vss.S_OK); err != nil {
		return err
	}

	// e. PreCommitSnapshots.
	if err := check(r.phase("PreCommitSnapshots", func() vss.HRESULT {
		return r.eachProvider(ctx, vss.MethodPreCommitSnapshots, func(ctx context.Context, p provider.Provider) error {
			return p.PreCommitSnapshots(ctx, r.id)
		})
	})); err != nil {
		return err
	}

	// f-h. Flush & hold every LUN of the set at once, CommitSnapshots on
	// every provider, release right after the last commit returns.
	hr := b.holdAndCommit(ctx, r)
	if hr.Failed() {
		return hr
	}
	committed = true
	ctx = context.WithoutCancel(ctx) // past the commit a set can no longer be cancelled

	// i. Clear the source flags.
	r.phase("ClearSourceFlags", func() vss.HRESULT { return vss.S_OK })

	// j. PostCommitSnapshots.
	// Each provider is told how many of the set's snapshots are its own.
	hr = r.phase("PostCommitSnapshots", func() vss.HRESULT {
		return r.forProviders(func(p *Registration) vss.HRESULT {
			count := 0
			for _, v := range r.vols {
				if v.reg == p {
					count++
				}
			}
			return r.callProvider(ctx, p, vss.MethodPostCommitSnapshots, func(ctx context.Context) error {
				return p.Provider.PostCommitSnapshots(ctx, r.id, count)
			})
		})
	})
	// The freeze windows end here; a writer whose window passed was
	// already failed and aborted by its timer.
	// The window closes for every writer still frozen; a timer firing
	// meanwhile finds it no longer frozen and does nothing.
	b.mu.Lock()
	var thaw []*writerStatus
	for _, st := range writers {
		if st.freezeTimer != nil {
			st.freezeTimer.Stop()
		}
		if st.frozen {
			st.frozen = false
			st.freezeSpan.end("closed", "")
			thaw = append(thaw, st)
		}
	}
	b.mu.Unlock()
	if hr.Failed() {
		return hr
	}

	// k. Thaw. A false or a timeout raises Abort for that writer (B.10).
	r.phase("Thaw", func() vss.HRESULT {
		fatal := b.broadcast(ctx, r, thaw, vss.EventThaw, s.cfg.EventWindow)
		b.abortSome(ctx, r, fatal)
		return vss.S_OK
	})

	// l. GetTargetLuns, per provider, 1:1 with its LUNs.
	if hr := r.phase("GetTargetLuns", func() vss.HRESULT { return r.getTargets(ctx) }); hr.Failed() {
		return hr
	}

	// m. Auto-import (non-transportable hardware snapshots): LocateLuns,
	// rescan, FillInLunInfo for each disk that arrives.
	if !r.snapCtx.Has(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE) {
		if hr := r.phase("AutoImport", func() vss.HRESULT { return r.locate(ctx, r.vols) }); hr.Failed() {
			return hr
		}
	}

	// n. PreFinalCommitSnapshots.
	if hr := r.phase("PreFinalCommitSnapshots", func() vss.HRESULT {
		return r.eachProvider(ctx, vss.MethodPreFinalCommitSnapshots, func(ctx context.Context, p provider.Provider) error {
			return p.PreFinalCommitSnapshots(ctx, r.id)
		})
	}); hr.Failed() {
		return hr
	}

	// o. PostSnapshot. Failures here raise no Abort (B.10), and no Abort
	// follows it. A writer in a failed state (a veto at Thaw, say) gets no
	// PostSnapshot (rule D, failed states).
	r.phase("PostSnapshot", func() vss.HRESULT {
		var post []*writerStatus
		b.mu.Lock()
		for _, st := range writers {
			if !st.aborted && !st.state.IsFailed() {
				st.postSnapshot = true
				post = append(post, st)
			}
		}
		b.mu.Unlock()
		b.broadcast(ctx, r, post, vss.EventPostSnapshot, s.cfg.EventWindow)
		return vss.S_OK
	})

	// p. PostFinalCommitSnapshots.
	if hr := r.phase("PostFinalCommitSnapshots", func() vss.HRESULT {
		return r.eachProvider(ctx, vss.MethodPostFinalCommitSnapshots, func(ctx context.Context, p provider.Provider) error {
			return p.PostFinalCommitSnapshots(ctx, r.id)
		})
	}); hr.Failed() {
		return hr
	}

	// q. The set is created.
	s.record(r)
	return nil
}

// freeze sends Freeze to one level's writers and starts each one's freeze
// window.
func (b *BackupComponents) freeze(ctx context.Context, r *setRun, group []*writerStatus) {
	if len(group) == 0 {
		return
	}
	outcomes := make([]outcome, len(group))
	var wg sync.WaitGroup
	for i, st := range group {
		ev := b.event(r, st, vss.EventFreeze)
		start := time.Now()
		window := st.reg.opts.FreezeTimeout
		wsp := r.tl.begin(KindWindow, "freeze-window", st.reg.opts.Name)
		wg.Go(func() {
			outcomes[i] = b.s.deliver(ctx, r.tl, st.reg, ev, window)
			if outcomes[i].timedOut || !outcomes[i].ok || outcomes[i].panicked {
				wsp.end("closed", "freeze failed")
				return
			}
			b.mu.Lock()
			st.frozen = true
			st.freezeSpan = wsp
			st.freezeTimer = time.AfterFunc(window-time.Since(start), func() { b.freezeExpired(ctx, r, st, wsp) })
			b.mu.Unlock()
		})
	}
	wg.Wait()
	var fatal []*writerStatus
	b.mu.Lock()
	for i, st := range group {
		if st.apply(vss.EventFreeze, outcomes[i]) {
			fatal = append(fatal, st)
		}
	}
	b.mu.Unlock()
	b.abortSome(ctx, r, fatal)
}

// freezeExpired fires when a writer's freeze window passes before
// PostCommitSnapshots returned: the writer is FAILED_AT_FREEZE with
// VSS_E_WRITERERROR_TIMEOUT and gets Abort (B.3).
func (b *BackupComponents) freezeExpired(ctx context.Context, r *setRun, st *writerStatus, wsp *span) {
	b.mu.Lock()
	if !st.frozen {
		b.mu.Unlock()
		return
	}
	st.frozen = false
	st.fail(vss.VSS_WS_FAILED_AT_FREEZE, vss.VSS_E_WRITERERROR_TIMEOUT, 0, "freeze window expired")
	b.mu.Unlock()
	wsp.end("expired", fmt.Sprintf("freeze window %v passed before PostCommitSnapshots returned", st.reg.opts.FreezeTimeout))
	r.logEvent(func() {
		b.s.log.Warn("writer freeze window expired", "event_id", EventWriterError, "writer", st.reg.opts.Name, "set", r.id.String())
	})
	b.abortSome(context.WithoutCancel(ctx), r, []*writerStatus{st})
}

// abortSome sends Abort to the given writers, once each.
func (b *BackupComponents) abortSome(ctx context.Context, r *setRun, sts []*writerStatus) {
	b.mu.Lock()
	var todo []*writerStatus
	for _, st := range sts {
		if !st.aborted && !st.postSnapshot {
			st.aborted, st.frozen = true, false
			todo = append(todo, st)
		}
	}
	b.mu.Unlock()
	b.broadcast(ctx, r, todo, vss.EventAbort, b.s.cfg.EventWindow)
}

// holdAndCommit is steps f-h: flush, hold every LUN at once, commit on
// every provider, release. The hold window covers all of it (B.2): when it
// passes, the gates release themselves, the set fails with
// VSS_E_HOLD_WRITES_TIMEOUT and event 12298 is logged.
func (b *BackupComponents) holdAndCommit(ctx context.Context, r *setRun) vss.HRESULT {
	s := b.s
	var names []string
	for _, v := range r.vols {
		if v.host != nil {
			continue // held through its host (hostHolds)
		}
		for _, n := range v.luns {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	luns := make([]*lun.LUN, len(names))
	for i, n := range names {
		l, err := s.lunOf(n)
		if err != nil {
			return vss.VSS_E_UNEXPECTED
		}
		luns[i] = l
	}

	window := r.tl.begin(KindWindow, "hold", "")
	holdCtx, cancel := context.WithTimeout(ctx, s.cfg.HoldWindow)
	defer cancel()

	// f. Flush and hold, all LUNs at once: flush them together (one
	// checkpoint for a durable array's), close every gate
	// (a few atomic operations each, no waiting), then wait for each to
	// drain. Closing all before draining any makes the drains overlap, with
	// no goroutine per LUN to schedule on a busy machine.
	holds := make([]*lun.Hold, len(luns))
	hosts := r.hostHolds()
	hostsFailed := false
	// failed is what went wrong, for the window's detail and the log: a
	// flush that fails on the array's storage (a full disk under a durable
	// array) is the cause the operator needs, not just its HRESULT.
	var failed error
	hr := r.phase("FlushAndHold", func() vss.HRESULT {
		fail := func(what string, err error) vss.HRESULT {
			failed = fmt.Errorf("%s: %w", what, err)
			if holdCtx.Err() != nil || errors.Is(err, vss.VSS_E_FLUSH_WRITES_TIMEOUT) {
				return vss.VSS_E_FLUSH_WRITES_TIMEOUT
			}
			return vss.VSS_E_UNEXPECTED
		}
		if err := lun.FlushAll(holdCtx, luns); err != nil {
			what := fmt.Sprintf("flush of %d LUNs", len(luns))
			if len(luns) <= 4 {
				what = "flush " + strings.Join(names, ", ")
			}
			return fail(what, err)
		}
		for i, l := range luns {
			h, err := l.BeginHold(s.cfg.HoldWindow)
			if err != nil {
				return fail("hold "+l.Name(), err)
			}
			holds[i] = h
		}
		for i, h := range holds {
			if err := h.Drain(holdCtx); err != nil {
				return fail("drain "+luns[i].Name(), err)
			}
		}
		// The LUNs of other arrays, each through its own gate.
		if err := r.holdHosts(holdCtx, hosts); err != nil {
			return fail("remote", err)
		}
		return vss.S_OK
	})
	r.setHolding(true)
	release := func() (timedOut bool) {
		for _, h := range holds {
			if h != nil && errors.Is(h.Release(), lun.ErrHoldTimeout) {
				timedOut = true
			}
		}
		// A host that cannot confirm its release leaves the commit's
		// quiescence unproven; hostsFailed fails the set for it unless
		// the commit failed first, whose code then stands.
		if t, err := r.releaseHosts(holdCtx, hosts); t {
			hostsFailed = true
			failed = errors.Join(failed, err)
		}
		r.setHolding(false)
		return timedOut
	}
	if hr.Failed() {
		release()
		window.end(hr.Name(), failed.Error())
		if hr == vss.VSS_E_FLUSH_WRITES_TIMEOUT {
			s.log.Error("writes could not be flushed and held in time", "event_id", EventHoldTimeout,
				"set", r.id.String(), "window", s.cfg.HoldWindow, "err", failed)
		} else {
			s.log.Warn("writes could not be flushed and held", "set", r.id.String(), "err", failed)
		}
		return hr
	}

	// g. CommitSnapshots on each provider: I/O is quiescent only now.
	hr = r.phase("CommitSnapshots", func() vss.HRESULT {
		return r.eachProvider(holdCtx, vss.MethodCommitSnapshots, func(ctx context.Context, p provider.Provider) error {
			return p.CommitSnapshots(ctx, r.id)
		})
	})
	// h. ReleaseWrites right after the last commit returns.
	expired := holdCtx.Err() != nil
	relSpan := r.tl.begin(KindPhase, "ReleaseWrites", "")
	if release() || hostsFailed && !hr.Failed() {
		expired = true
	}
	relSpan.end(vss.S_OK.Name(), "")
	if expired {
		detail := fmt.Sprintf("writes held past %v", s.cfg.HoldWindow)
		if failed != nil {
			detail = "holds not released in time: " + failed.Error()
		}
		window.end(vss.VSS_E_HOLD_WRITES_TIMEOUT.Name(), detail)
		s.log.Error("writes could not be held for the whole commit", "event_id", EventHoldTimeout,
			"set", r.id.String(), "window", s.cfg.HoldWindow)
		return vss.VSS_E_HOLD_WRITES_TIMEOUT
	}
	window.end(hr.Name(), "")
	return hr
}

// getTargets is step l: GetTargetLuns per provider, for all its LUNs.
func (r *setRun) getTargets(ctx context.Context) vss.HRESULT {
	return r.forProviders(func(p *Registration) vss.HRESULT {
		var devices []string
		var sources []provider.LunInfo
		var vols []*volEntry
		for _, v := range r.vols {
			if v.reg == p {
				devices = append(devices, v.luns...)
				sources = append(sources, v.sources...)
				vols = append(vols, v)
			}
		}
		var targets []provider.LunInfo
		hr := r.callProvider(ctx, p, vss.MethodGetTargetLuns, func(ctx context.Context) (err error) {
			targets, err = p.Provider.GetTargetLuns(ctx, devices, slices.Clone(sources))
			return err
		})
		if hr.Failed() {
			return hr
		}
		if len(targets) != len(sources) {
			r.logEvent(func() {
				r.s.log.Error("GetTargetLuns answered the wrong number of LUNs", "event_id", EventProviderError,
					"provider", p.Name, "sources", len(sources), "targets", len(targets))
			})
			return vss.VSS_E_UNEXPECTED_PROVIDER_ERROR
		}
		for _, v := range vols {
			v.targets, targets = targets[:len(v.luns)], targets[len(v.luns):]
		}
		return vss.S_OK
	})
}

// locate is step m and the core of ImportSnapshots: LocateLuns per
// provider, a rescan of the array for the targets by their page-83
// identifiers, and FillInLunInfo for each LUN that arrived, which must
// match what GetTargetLuns said (F.6).
func (r *setRun) locate(ctx context.Context, vols []*volEntry) vss.HRESULT {
	if hr := r.forProviders(func(p *Registration) vss.HRESULT {
		var targets []provider.LunInfo
		for _, v := range vols {
			if v.reg == p {
				targets = append(targets, v.targets...)
			}
		}
		if len(targets) == 0 {
			return vss.S_OK
		}
		return r.callProvider(ctx, p, vss.MethodLocateLuns, func(ctx context.Context) error {
			return p.Provider.LocateLuns(ctx, slices.Clone(targets))
		})
	}); hr.Failed() {
		return hr
	}
	// FillInLunInfo is called once for each disk that arrives, however many
	// volumes share it. Disks of different arrays may share a name, so the
	// array is part of the key.
	type answer struct {
		info provider.LunInfo
		ok   bool
	}
	type disk struct {
		host *Registration
		dev  string
	}
	// One rescan per array finds every target of the set on it; then
	// FillInLunInfo for each disk that arrived, in the targets' order. The
	// arrays are rescanned and their disks described at once when each of
	// the set's providers has an array of its own (concurrent).
	var hosts []*Registration
	naas := map[*Registration][][]byte{}
	for _, v := range vols {
		if _, ok := naas[v.host]; !ok {
			hosts, naas[v.host] = append(hosts, v.host), [][]byte{}
		}
		for _, t := range v.targets {
			naas[v.host] = append(naas[v.host], t.NAA())
		}
	}
	var mu sync.Mutex // found and answers, when the hosts go at once
	found := map[*Registration][]string{}
	answers := map[disk]answer{}
	onHost := func(h *Registration) {
		if len(naas[h]) == 0 {
			return
		}
		devs := r.rescanOn(ctx, h, naas[h])
		mu.Lock()
		found[h] = devs
		mu.Unlock()
		next := 0
		for _, v := range vols {
			if v.host != h {
				continue
			}
			for range v.targets {
				dev := devs[next]
				next++
				mu.Lock()
				_, asked := answers[disk{h, dev}]
				mu.Unlock()
				if dev == "" || asked {
					continue
				}
				var a answer
				r.callProvider(ctx, v.reg, vss.MethodFillInLunInfo, func(ctx context.Context) (err error) {
					a.ok, err = v.reg.Provider.FillInLunInfo(ctx, dev, &a.info)
					return err
				}, func() string { return fmt.Sprintf("device %s: supported=%v", dev, a.ok) })
				mu.Lock()
				answers[disk{h, dev}] = a
				mu.Unlock()
			}
		}
	}
	if r.concurrent() {
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Go(func() { onHost(h) })
		}
		wg.Wait()
	} else {
		for _, h := range hosts {
			onHost(h)
		}
	}
	for _, v := range vols {
		v.devices = make([]string, len(v.targets))
		v.matched = true
		for i, t := range v.targets {
			dev := found[v.host][0]
			found[v.host] = found[v.host][1:]
			if dev == "" {
				v.matched = false
				continue
			}
			a := answers[disk{v.host, dev}]
			if !a.ok || !reflect.DeepEqual(a.info, t) {
				v.matched = false
				r.logEvent(func() {
					r.s.log.Warn("FillInLunInfo does not match GetTargetLuns", "provider", v.reg.Name, "device", dev, "volume", v.name)
				})
				continue
			}
			v.devices[i] = dev
		}
	}
	return vss.S_OK
}

// rescan finds the unmasked LUN with the given NAA designator, as Windows
// finds arriving disks; "" if none.
func (s *Service) rescan(naa []byte) string {
	if naa == nil {
		return ""
	}
	for _, l := range s.array.List() {
		id := l.Identity().NAA
		if !l.Masked() && string(id[:]) == string(naa) {
			return l.Name()
		}
	}
	return ""
}

// record stores a created set's snapshots.
func (s *Service) record(r *setRun) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r.rec.state, r.rec.result = "created", vss.S_OK
	for _, v := range r.vols {
		// A context is made of attribute bits (APP_ROLLBACK is PERSISTENT|
		// NO_AUTO_RELEASE); the snapshot carries all of them.
		attrs := vss.VolSnapAttr(r.snapCtx)
		if v.reg.Type == vss.VSS_PROV_HARDWARE {
			attrs |= vss.VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED
		}
		if v.matched {
			attrs |= vss.VSS_VOLSNAP_ATTR_IMPORTED
		}
		p := SnapshotProperties{
			SnapshotID: v.snapID, SnapshotSetID: r.id, SnapshotsCount: len(r.vols),
			OriginalVolume: v.name, OriginatingMachine: s.host, ServiceMachine: s.host,
			ProviderID: v.reg.ID, Context: r.snapCtx, Attributes: attrs, CreationTime: now,
			State: vss.VSS_SS_CREATED, SourceLUNs: slices.Clone(v.luns), TargetLUNs: slices.Clone(v.devices),
			Imported: v.matched,
		}
		if v.matched && len(v.devices) > 0 {
			p.DeviceObject = v.devices[0]
		}
		s.mu.snapshots[v.snapID] = &snapshotRecord{SnapshotProperties: p, reg: v.reg, host: v.host, sources: v.sources, targets: v.targets}
		if !slices.Contains(r.rec.snaps, v.snapID) {
			r.rec.snaps = append(r.rec.snaps, v.snapID)
		}
	}
}

// Async is IVssAsync for DoSnapshotSet: Wait blocks for the result,
// QueryStatus polls it, Cancel stops the set if it has not committed.
type Async struct {
	done     chan struct{}
	cancelCh chan struct{} // closed by the first Cancel
	once     sync.Once

	mu struct {
		sync.Mutex
		err       error
		cancelled bool
	}
}

func newAsync() *Async { return &Async{done: make(chan struct{}), cancelCh: make(chan struct{})} }

func (a *Async) finish(err error) {
	a.mu.Lock()
	a.mu.err = err
	a.mu.Unlock()
	close(a.done)
}

func (a *Async) cancelled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.cancelled
}

// Wait blocks until the set is created or failed, or ctx ends, and
// returns the set's result (an HRESULT error, or nil).
func (a *Async) Wait(ctx context.Context) error {
	select {
	case <-a.done:
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.mu.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// QueryStatus returns VSS_S_ASYNC_PENDING, VSS_S_ASYNC_FINISHED or
// VSS_S_ASYNC_CANCELLED, and the result once finished.
func (a *Async) QueryStatus() (vss.HRESULT, error) {
	select {
	case <-a.done:
	default:
		return vss.VSS_S_ASYNC_PENDING, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if errors.Is(a.mu.err, errCancelled) {
		return vss.VSS_S_ASYNC_CANCELLED, nil
	}
	return vss.VSS_S_ASYNC_FINISHED, a.mu.err
}

// Cancel asks the set to stop. It takes effect at the next step before the
// commit; after it the set completes. It returns VSS_S_ASYNC_FINISHED when
// the set had already finished.
func (a *Async) Cancel() vss.HRESULT {
	select {
	case <-a.done:
		return vss.VSS_S_ASYNC_FINISHED
	default:
	}
	a.mu.Lock()
	a.mu.cancelled = true
	a.mu.Unlock()
	a.once.Do(func() { close(a.cancelCh) })
	return vss.S_OK
}
