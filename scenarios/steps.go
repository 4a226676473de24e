package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// runSteps runs the steps in order and stops at the first that does not
// go as expected: what follows a surprise would only report its echoes.
func (r *runner) runSteps(ctx context.Context, steps []*step) {
	prev := r.start
	for i, s := range steps {
		if i+1 < len(steps) && steps[i+1].kind == stepCheck && steps[i+1].check.goroutines {
			// goroutines: stable compares with the count before this step.
			r.baseGoroutines, _ = r.runGoroutines()
		}
		began := time.Now()
		ok := r.runStep(ctx, s, prev)
		r.waitCuts() // the next step sees what an armed cut left
		if !ok {
			return
		}
		prev = began
	}
}

// describe names a step in mismatches: "step at line 12 (call
// StartSnapshotSet, requester r2)".
func describeStep(s *step) string {
	var what string
	switch s.kind {
	case stepCall:
		what = "call " + s.call + ", requester " + s.requester
	case stepBackup:
		what = "backup, requester " + s.requester
	case stepWait, stepCancel, stepQueryStatus:
		what = s.kind.String() + " " + s.async
	default:
		what = s.kind.String()
	}
	return fmt.Sprintf("step at line %d (%s)", s.line, what)
}

// runStep runs one step; since is when the step before it began, from
// which wait-for looks for a call. It reports whether the step went as
// expected.
func (r *runner) runStep(ctx context.Context, s *step, since time.Time) bool {
	if ctx.Err() != nil {
		r.mismatch(s.line, describeStep(s), "to run", "the scenario's timeout passed first", since, time.Now())
		return false
	}
	start := time.Now()
	ok := true
	fail := func(expected, got string) {
		r.mismatch(s.line, describeStep(s), expected, got, start, time.Now())
		ok = false
	}
	switch s.kind {
	case stepWait, stepCancel, stepQueryStatus:
		if r.async(s.async) == nil {
			fail("the Async "+s.async, "none: its DoSnapshotSet failed or never ran")
			return false
		}
	}
	switch s.kind {
	case stepCall:
		hr := r.call(ctx, s, fail)
		if !s.expect.accepts(hr) {
			fail(s.expect.String(), hr.Name())
		}
	case stepBackup:
		hr := r.backup(ctx, s, fail)
		if !s.expect.accepts(hr) {
			fail(s.expect.String(), hr.Name())
		}
	case stepParallel:
		var wg sync.WaitGroup
		results := make([]bool, len(s.parallel))
		for i, p := range s.parallel {
			wg.Go(func() { results[i] = r.runStep(ctx, p, start) })
		}
		wg.Wait()
		ok = !slices.Contains(results, false)
	case stepWait:
		ar := r.async(s.async)
		hr := r.reqCall(ar.req, "Async.Wait", "", func() (vss.HRESULT, error) { return 0, ar.a.Wait(ctx) })
		if !hr.Failed() {
			r.afterCreated(ctx, ar.set)
		}
		if !s.expect.accepts(hr) {
			fail(s.expect.String(), hr.Name())
		}
	case stepCancel:
		ar := r.async(s.async)
		hr := r.reqCall(ar.req, "Async.Cancel", "", func() (vss.HRESULT, error) { return ar.a.Cancel(), nil })
		if !s.expect.accepts(hr) {
			fail(s.expect.String(), hr.Name())
		}
	case stepQueryStatus:
		ar := r.async(s.async)
		var res error
		hr := r.reqCall(ar.req, "Async.QueryStatus", "", func() (vss.HRESULT, error) {
			st, err := ar.a.QueryStatus()
			res = err
			return st, nil
		})
		if !s.expect.accepts(hr) {
			fail(s.expect.String(), hr.Name())
		}
		if s.result != nil && !s.result.accepts(vss.FromError(res)) {
			fail("the set's result "+s.result.String(), vss.FromError(res).Name())
		}
	case stepSleep:
		t := time.NewTimer(r.scaled(s.duration))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	case stepWaitFor:
		timeout := s.duration
		if timeout == 0 {
			timeout = coordinator.DefaultEventWindow
		}
		wctx, cancel := context.WithTimeout(ctx, r.scaled(timeout)+time.Second)
		found := r.rec.waitEntered(wctx, *s.waitFor, since)
		cancel()
		if !found {
			fail(s.waitFor.text+" to begin", "nothing within "+timeout.String())
		}
	case stepReleaseCommit:
		p := r.provs[s.provider]
		set := r.req(s.requester).set()
		if set.IsNull() {
			set = p.traced.setOfLast()
		}
		if err := p.inner.ReleaseCommit(set); err != nil {
			fail("the commit released", err.Error())
		}
	case stepCheck:
		r.check(ctx, s, fail)
	case stepWrite, stepRead:
		r.data(ctx, s, fail)
	case stepFilesystem:
		r.filesystem(ctx, s, fail)
	case stepPowercut:
		if s.cut.afterWrites > 0 || s.cut.within > 0 {
			r.arm(s, fail)
			break
		}
		l, err := r.array.Get(s.cut.lun)
		if err == nil {
			var res lun.PowerCutResult
			res, err = l.PowerCut(ctx, lun.PowerCutOptions{Keep: s.cut.keep, Seed: s.cut.seed, Tear: s.cut.tear})
			slog.New(r.logs.with("component", "array")).Warn("power cut", "lun", s.cut.lun, "result", res.String())
		}
		if err != nil {
			fail("the power cut of "+s.cut.lun, err.Error())
		}
	}
	return ok
}

func (r *runner) async(name string) *asyncRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.asyncs[name]
}

// req returns the named requester, creating it (CreateVssBackupComponents)
// on first use.
func (r *runner) req(name string) *requester {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q, ok := r.mu.reqs[name]; ok {
		return q
	}
	return r.newRequesterLocked(name)
}

func (r *runner) newRequesterLocked(name string) *requester {
	q := &requester{name: name, bc: r.svc.NewBackupComponents(), snaps: map[string]vss.ID{}}
	r.mu.reqs[name] = q
	r.mu.all = append(r.mu.all, q)
	return q
}

func (q *requester) set() vss.ID {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastSet
}

// reqCall makes one requester call and records it. fn returns a success
// code as a value (ImportSnapshots' VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED) or a
// failure as an error. A coordinator that panics in the call is contained
// and answers E_UNEXPECTED, with the panic in the line's detail.
func (r *runner) reqCall(q *requester, call, detail string, fn func() (vss.HRESULT, error)) vss.HRESULT {
	return r.reqCallDetail(q, call, func() (vss.HRESULT, string, error) {
		hr, err := fn()
		return hr, detail, err
	})
}

// reqCallDetail is reqCall for a call whose line's detail depends on what
// it returned.
func (r *runner) reqCallDetail(q *requester, call string, fn func() (vss.HRESULT, string, error)) (hr vss.HRESULT) {
	start := time.Now()
	var detail string
	defer func() {
		if p := recover(); p != nil {
			hr = vss.E_UNEXPECTED
			detail = strings.TrimSpace(detail + " coordinator panicked: " + fmt.Sprint(p))
		}
		r.rec.add(rawEvent{kind: kindRequester, name: call, actor: q.name, result: hr.Name(), detail: detail,
			start: start, end: time.Now()})
		r.pollSets(call == "ImportSnapshots")
	}()
	v, d, err := fn()
	detail = d
	if err != nil {
		return vss.FromError(err)
	}
	return v
}

// ---- calls ----

// call makes a call step's call and returns its HRESULT; fail reports
// mismatches of what the call returned besides it.
func (r *runner) call(ctx context.Context, s *step, fail func(expected, got string)) vss.HRESULT {
	a := s.args
	if s.call == "CreateVssBackupComponents" {
		r.mu.Lock()
		q := r.newRequesterLocked(s.requester)
		r.mu.Unlock()
		return r.reqCall(q, s.call, "", func() (vss.HRESULT, error) { return 0, nil })
	}
	q := r.req(s.requester)
	bc := q.bc
	do := func(detail string, fn func() error) vss.HRESULT {
		return r.reqCall(q, s.call, detail, func() (vss.HRESULT, error) { return 0, fn() })
	}
	switch s.call {
	case "InitializeForBackup":
		var doc []byte
		if a.document != "" {
			doc = r.saved(a.document).doc
		}
		return do("", func() error { return bc.InitializeForBackup(doc) })
	case "SetContext":
		return do(a.context.String(), func() error { return bc.SetContext(a.context) })
	case "SetBackupState":
		return do(a.backupType.String(), func() error { return bc.SetBackupState(a.selectComp, a.bootable, a.backupType, a.partial) })
	case "GatherWriterMetadata":
		hr := do("", func() error { return bc.GatherWriterMetadata(ctx) })
		if !hr.Failed() {
			q.mu.Lock()
			q.gathered = true
			q.mu.Unlock()
		}
		return hr
	case "GatherWriterStatus":
		var sts []coordinator.WriterStatus
		hr := do("", func() (err error) { sts, err = bc.GatherWriterStatus(ctx); return err })
		if !hr.Failed() {
			r.checkWriters(s.writers, sts, fail)
		}
		return hr
	case "AddComponent":
		w := r.writers[a.writer]
		return do(a.writer+"/"+a.component, func() error { return bc.AddComponent(w.id, a.component) })
	case "StartSnapshotSet":
		var id vss.ID
		hr := do("", func() (err error) { id, err = bc.StartSnapshotSet(); return err })
		if !hr.Failed() {
			q.mu.Lock()
			q.started, q.lastSet, q.snaps = true, id, map[string]vss.ID{}
			q.mu.Unlock()
			r.save(s.save, savedValue{kind: savedSet, id: id})
		}
		return hr
	case "AddToSnapshotSet":
		pid := r.providerID(a.provider)
		detail := "volume " + a.volume
		if a.provider != "" {
			detail = "provider " + a.provider + ", " + detail
		}
		var id vss.ID
		hr := do(detail, func() (err error) { id, err = bc.AddToSnapshotSet(ctx, a.volume, pid); return err })
		if !hr.Failed() {
			q.mu.Lock()
			q.snaps[a.volume] = id
			q.mu.Unlock()
			r.save(s.save, savedValue{kind: savedSnapshot, id: id})
		}
		return hr
	case "PrepareForBackup":
		return do("", func() error { return bc.PrepareForBackup(ctx) })
	case "DoSnapshotSet":
		set := q.set()
		var as *coordinator.Async
		hr := do("", func() (err error) { as, err = bc.DoSnapshotSet(ctx); return err })
		if hr.Failed() {
			return hr
		}
		if s.async != "" {
			r.mu.Lock()
			r.mu.asyncs[s.async] = &asyncRun{a: as, req: q, set: set}
			r.mu.Unlock()
			return hr
		}
		hr = r.reqCall(q, "Async.Wait", "", func() (vss.HRESULT, error) { return 0, as.Wait(ctx) })
		if !hr.Failed() {
			r.afterCreated(ctx, set)
		}
		return hr
	case "GetSnapshotProperties":
		id := r.snapshotID(q, a.snapshot)
		var p coordinator.SnapshotProperties
		hr := do(a.snapshot, func() (err error) { p, err = bc.GetSnapshotProperties(id); return err })
		if !hr.Failed() && s.props != nil {
			checkProps(s.props, p, fail)
		}
		return hr
	case "Query":
		var n int
		hr := do("", func() error { n = len(bc.Query()); return nil })
		if s.count != nil && n != *s.count {
			fail(fmt.Sprintf("%d snapshots", *s.count), fmt.Sprintf("%d", n))
		}
		return hr
	case "SetBackupSucceeded":
		w := r.writers[a.writer]
		return do(a.writer+"/"+a.component, func() error { return bc.SetBackupSucceeded(w.id, a.component, a.succeeded) })
	case "BackupComplete":
		return do("", func() error { return bc.BackupComplete(ctx) })
	case "AbortBackup":
		return do("", func() error { return bc.AbortBackup(ctx) })
	case "DeleteSnapshots":
		id, what := q.set(), "set"
		switch {
		case a.snapshot != "":
			id, what = r.snapshotID(q, a.snapshot), a.snapshot
		case a.set != "" && a.set != "last":
			id, what = r.saved(a.set).id, a.set
		}
		var n int
		hr := r.reqCallDetail(q, s.call, func() (vss.HRESULT, string, error) {
			var err error
			n, _, err = bc.DeleteSnapshots(ctx, id, a.objectType, a.force)
			return 0, fmt.Sprintf("%d deleted of %s", n, what), err
		})
		if s.count != nil && n != *s.count {
			fail(fmt.Sprintf("%d deleted", *s.count), fmt.Sprintf("%d", n))
		}
		return hr
	case "BreakSnapshotSet":
		id := r.setID(q, a.set)
		return do("", func() error { return bc.BreakSnapshotSet(ctx, id) })
	case "BreakSnapshotSetEx":
		id := r.setID(q, a.set)
		return do(a.flags.String(), func() error { return bc.BreakSnapshotSetEx(ctx, id, a.flags) })
	case "ImportSnapshots":
		return r.reqCall(q, s.call, "", func() (vss.HRESULT, error) { return bc.ImportSnapshots(ctx) })
	case "ExposeSnapshot":
		id := r.snapshotID(q, a.snapshot)
		var export string
		hr := do(a.snapshot, func() (err error) { export, err = bc.ExposeSnapshot(ctx, id); return err })
		if !hr.Failed() {
			r.save(s.save, savedValue{kind: savedExport, export: export})
		}
		return hr
	case "RevertToSnapshot":
		id := r.snapshotID(q, a.snapshot)
		return do(a.snapshot, func() error { return bc.RevertToSnapshot(ctx, id, a.force) })
	case "SaveDocument":
		var doc []byte
		hr := do("", func() (err error) { doc, err = bc.SaveDocument(); return err })
		if !hr.Failed() {
			r.save(s.save, savedValue{kind: savedDocument, doc: doc})
		}
		return hr
	case "Close":
		return r.closeRequester(ctx, q)
	}
	return vss.E_UNEXPECTED // the decoder admits no other call
}

// closeRequester releases a requester (A.10: BackupShutdown to every
// writer, auto-release snapshots deleted).
func (r *runner) closeRequester(ctx context.Context, q *requester) vss.HRESULT {
	hr := r.reqCall(q, "Close", "", func() (vss.HRESULT, error) { return 0, q.bc.Close(ctx) })
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	return hr
}

func (r *runner) saved(name string) savedValue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.saved[name]
}

func (r *runner) save(name string, v savedValue) {
	if name == "" {
		return
	}
	r.mu.Lock()
	r.mu.saved[name] = v
	r.mu.Unlock()
}

// providerID resolves a provider argument: empty is GUID_NULL (let VSS
// choose), a name is that provider's ID, "{...}" is the ID itself.
func (r *runner) providerID(p string) vss.ID {
	switch {
	case p == "":
		return vss.GUID_NULL
	case strings.HasPrefix(p, "{"):
		return vss.MustParseID(p)
	}
	return r.provs[p].id
}

// snapshotID resolves a snapshot argument: a volume is the requester's
// snapshot of it in its last set, any other name a saved snapshot.
func (r *runner) snapshotID(q *requester, ref string) vss.ID {
	q.mu.Lock()
	id, ok := q.snaps[ref]
	q.mu.Unlock()
	if ok {
		return id
	}
	if v := r.saved(ref); v.kind == savedSnapshot {
		return v.id
	}
	return vss.NewID() // a snapshot nobody knows: the call answers OBJECT_NOT_FOUND
}

func (r *runner) setID(q *requester, ref string) vss.ID {
	if ref == "" || ref == "last" {
		return q.set()
	}
	return r.saved(ref).id
}

func (r *runner) checkWriters(want []writerExpect, sts []coordinator.WriterStatus, fail func(expected, got string)) {
	for _, w := range want {
		i := slices.IndexFunc(sts, func(s coordinator.WriterStatus) bool { return s.Name == w.name })
		if i < 0 {
			fail("a status for writer "+w.name, "none")
			continue
		}
		st := sts[i]
		got := fmt.Sprintf("%s %v, failure %s", w.name, st.State, st.Failure.Name())
		switch {
		case w.state != nil && st.State != *w.state:
			fail(fmt.Sprintf("writer %s in %v", w.name, *w.state), got)
		case w.failure != nil && st.Failure != *w.failure:
			fail(fmt.Sprintf("writer %s failure %s", w.name, w.failure.Name()), got)
		case w.application != nil && st.ApplicationFailure != *w.application:
			fail(fmt.Sprintf("writer %s application failure %s", w.name, w.application.Name()), st.ApplicationFailure.Name())
		case w.message != "" && !strings.Contains(st.Message, w.message):
			fail(fmt.Sprintf("writer %s message with %q", w.name, w.message), fmt.Sprintf("%q", st.Message))
		}
	}
}

func checkProps(want *propsExpect, p coordinator.SnapshotProperties, fail func(expected, got string)) {
	if want.imported != nil && p.Imported != *want.imported {
		fail(fmt.Sprintf("imported %v", *want.imported), fmt.Sprintf("imported %v", p.Imported))
	}
	if want.targetLUNs != nil && len(p.TargetLUNs) != *want.targetLUNs {
		fail(fmt.Sprintf("%d target LUNs", *want.targetLUNs), fmt.Sprintf("%d (%v)", len(p.TargetLUNs), p.TargetLUNs))
	}
	if want.attrs != 0 && p.Attributes&want.attrs != want.attrs {
		fail("attributes including "+want.attrs.String(), p.Attributes.String())
	}
}

// ---- the standard backup ----

// backup runs the standard backup of vss-spec.md A in one step, as qemu's
// requester and vshadow do: InitializeForBackup, SetContext,
// GatherWriterMetadata, SetBackupState, AddComponent for every component,
// StartSnapshotSet, AddToSnapshotSet per volume, PrepareForBackup,
// GatherWriterStatus, DoSnapshotSet and its Wait, GatherWriterStatus, then
// SetBackupSucceeded, BackupComplete and GatherWriterStatus on success or
// AbortBackup after a failure past PrepareForBackup (A.12), and Close.
// Writerless contexts skip the writer calls (A.13). It returns the first
// failure, or S_OK.
func (r *runner) backup(ctx context.Context, s *step, fail func(expected, got string)) vss.HRESULT {
	b := s.backup
	r.mu.Lock()
	if old, ok := r.mu.reqs[s.requester]; ok {
		old.mu.Lock()
		open := !old.closed
		old.mu.Unlock()
		if open {
			r.mu.Unlock()
			fail("requester "+s.requester+" closed before a new backup", "it is still open")
			return vss.VSS_E_BAD_STATE
		}
	}
	q := r.newRequesterLocked(s.requester)
	r.mu.Unlock()
	bc := q.bc
	writers := !b.hasContext || b.context.HasWriters()

	var first vss.HRESULT
	var status []coordinator.WriterStatus
	crashed, prepared, completed := false, false, false
	// do makes one call; it reports whether the backup goes on.
	do := func(call, detail string, fn func() error) bool {
		if crashed {
			return false
		}
		hr := r.reqCall(q, call, detail, func() (vss.HRESULT, error) { return 0, fn() })
		if hr.Failed() && first == 0 {
			first = hr
		}
		if b.crashAfter == call {
			crashed = true
			return false
		}
		return !hr.Failed()
	}
	gather := func() {
		if writers && !crashed {
			var sts []coordinator.WriterStatus
			if do("GatherWriterStatus", "", func() (err error) { sts, err = bc.GatherWriterStatus(ctx); return err }) {
				status = sts
			}
		}
	}
	var components [][2]string // writer, component
	sequence := func() bool {
		if !do("InitializeForBackup", "", func() error { return bc.InitializeForBackup(nil) }) {
			return false
		}
		if b.hasContext && !do("SetContext", b.context.String(), func() error { return bc.SetContext(b.context) }) {
			return false
		}
		if writers {
			if !do("GatherWriterMetadata", "", func() error {
				err := bc.GatherWriterMetadata(ctx)
				if err == nil {
					q.mu.Lock()
					q.gathered = true
					q.mu.Unlock()
				}
				return err
			}) {
				return false
			}
		}
		if !do("SetBackupState", b.backupType.String(), func() error { return bc.SetBackupState(true, false, b.backupType, false) }) {
			return false
		}
		if writers {
			for _, md := range bc.WriterMetadata() {
				for _, c := range md.Components {
					if !do("AddComponent", md.Name+"/"+c.Name, func() error { return bc.AddComponent(md.WriterID, c.Name) }) {
						return false
					}
					components = append(components, [2]string{md.Name, c.Name})
				}
			}
		}
		if !r.startSet(ctx, q, b, do, &first) {
			return false
		}
		// The set's ID is kept from StartSnapshotSet on, so that patterns
		// can name a set that failed too.
		r.save(s.save, savedValue{kind: savedSet, id: q.set()})
		pid := r.providerID(b.provider)
		for _, vol := range b.volumes {
			detail := "volume " + vol
			if b.provider != "" {
				detail = "provider " + b.provider + ", " + detail
			}
			var id vss.ID
			if !do("AddToSnapshotSet", detail, func() (err error) { id, err = bc.AddToSnapshotSet(ctx, vol, pid); return err }) {
				return false
			}
			q.mu.Lock()
			q.snaps[vol] = id
			q.mu.Unlock()
		}
		if writers {
			if !do("PrepareForBackup", "", func() error { return bc.PrepareForBackup(ctx) }) {
				return false
			}
			prepared = true
			gather()
		}
		set := q.set()
		var as *coordinator.Async
		if !do("DoSnapshotSet", "", func() (err error) { as, err = bc.DoSnapshotSet(ctx); return err }) {
			return false
		}
		if !do("Async.Wait", "", func() error { return as.Wait(ctx) }) {
			return false
		}
		r.afterCreated(ctx, set)
		gather()
		if !writers {
			return true
		}
		for _, c := range components {
			w := r.writers[c[0]]
			if !do("SetBackupSucceeded", c[0]+"/"+c[1], func() error { return bc.SetBackupSucceeded(w.id, c[1], true) }) {
				return false
			}
		}
		completed = true
		if !do("BackupComplete", "", func() error { return bc.BackupComplete(ctx) }) {
			gather()
			return false
		}
		gather()
		return true
	}
	// A.12: a failure after PrepareForBackup is followed by AbortBackup;
	// once BackupComplete was sent the backup is over, whatever it said.
	if !sequence() && !crashed && prepared && !completed {
		do("AbortBackup", "", func() error { return bc.AbortBackup(ctx) })
		gather()
	}
	if len(s.writers) > 0 {
		if status == nil {
			fail("writer states (GatherWriterStatus)", "the backup stopped before it could gather them")
		} else {
			r.checkWriters(s.writers, status, fail)
		}
	}
	if !b.keepOpen {
		r.closeRequester(ctx, q)
	}
	return first
}

// startSet is StartSnapshotSet, retried while another set is being
// created when the backup says so. Retries are not traced one by one: the
// first VSS_E_SNAPSHOT_SET_IN_PROGRESS is, and the call that succeeds
// says how many times it was retried.
func (r *runner) startSet(ctx context.Context, q *requester, b *backupSpec, do func(string, string, func() error) bool, first *vss.HRESULT) bool {
	retries := 0
	interval := max(r.scaled(100*time.Millisecond), time.Millisecond)
	for {
		var id vss.ID
		var err error
		start := time.Now()
		id, err = q.bc.StartSnapshotSet()
		hr := vss.FromError(err)
		if hr == vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS && b.retry && ctx.Err() == nil {
			if retries == 0 {
				r.rec.add(rawEvent{kind: kindRequester, name: "StartSnapshotSet", actor: q.name, result: hr.Name(),
					detail: "will retry", start: start, end: time.Now()})
			}
			retries++
			t := time.NewTimer(interval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		detail := ""
		if retries > 0 {
			detail = fmt.Sprintf("after %d retries", retries)
		}
		ok := do("StartSnapshotSet", detail, func() error { return err })
		if ok {
			q.mu.Lock()
			q.started, q.lastSet, q.snaps = true, id, map[string]vss.ID{}
			q.mu.Unlock()
		}
		return ok
	}
}

// ---- after a set is created: the load's snapshot data ----

// afterCreated checks the snapshots of set against the load on their LUNs,
// as soon as the set is created (auto-release snapshots are gone once the
// requester closes): the pre-freeze content exactly when the load quiesces
// with a writer that froze for the set, else a point-in-time image of the
// commit.
func (r *runner) afterCreated(ctx context.Context, set vss.ID) {
	if len(r.loads) == 0 {
		return
	}
	r.pollSets(false)
	var commitStart, commitEnd, held, release time.Time
	r.mu.Lock()
	for _, st := range r.mu.sets {
		if st.id == set && !st.imported {
			if sp, ok := st.tl.Find(coordinator.KindPhase, "CommitSnapshots"); ok {
				commitStart, commitEnd = st.tl.Origin().Add(sp.Start), st.tl.Origin().Add(sp.End)
			}
			if sp, ok := st.tl.Find(coordinator.KindPhase, "FlushAndHold"); ok {
				held = st.tl.Origin().Add(sp.End) // every gate closed
			}
			if sp, ok := st.tl.Find(coordinator.KindPhase, "ReleaseWrites"); ok {
				release = st.tl.Origin().Add(sp.Start)
			}
		}
	}
	r.mu.Unlock()
	name := r.setName(set)
	for _, props := range r.svc.Query() {
		if props.SnapshotSetID != set {
			continue
		}
		for i, src := range props.SourceLUNs {
			target := provider.TargetName(src, set)
			if i < len(props.TargetLUNs) && props.TargetLUNs[i] != "" {
				target = props.TargetLUNs[i]
			}
			for _, l := range r.loads {
				if l.spec.lun != src || !l.spec.verify {
					continue
				}
				check := Check{Name: fmt.Sprintf("snapshot of %s in %s (%s, volume %s)", src, name, target, props.OriginalVolume)}
				got, err := l.readSeqs(ctx, r.reader(ctx, target))
				switch {
				case err != nil:
					check.Detail = err.Error()
				default:
					if d, ok, exact := l.verifyFrozen(set, got); exact {
						check.Detail, check.OK = d, ok
					} else if l.spec.atHold && (held.IsZero() || release.IsZero()) {
						check.Detail = "no FlushAndHold or ReleaseWrites phase in the set's timeline"
					} else if l.spec.atHold {
						check.Detail, check.OK = l.verifyHeld(got, held, release)
					} else if commitStart.IsZero() {
						check.Detail = "no CommitSnapshots phase in the set's timeline"
					} else {
						check.Detail, check.OK = l.verifyPointInTime(got, commitStart, commitEnd)
					}
				}
				r.addCheck(check)
			}
		}
	}
}

// reader reads a LUN through NBD when it is exported, and from the array
// when it is masked (a transportable snapshot not imported yet).
func (r *runner) reader(ctx context.Context, name string) func(context.Context, []byte, int64) error {
	l, err := r.array.Get(name)
	if err != nil {
		return func(context.Context, []byte, int64) error { return err }
	}
	if l.Masked() {
		return l.ReadAt
	}
	c, err := r.client(ctx, name)
	if err != nil {
		return func(context.Context, []byte, int64) error { return err }
	}
	return c.Read
}

// client returns an NBD client of the export, dialled once per run.
func (r *runner) client(ctx context.Context, export string) (*nbd.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.mu.clients[export]; ok {
		return c, nil
	}
	c, err := nbd.Dial(ctx, "unix", r.sock, &nbd.DialOptions{Export: export})
	if err != nil {
		return nil, err
	}
	r.mu.clients[export] = c
	return c, nil
}

// verifyLoad checks, after the load stopped, that no write failed and none
// was lost.
func (r *runner) verifyLoad(ctx context.Context, i int, l *loadGen) {
	sum := l.summary()
	writes, failures, firstErr, maxLat := sum.writes, sum.failures, sum.firstErr, sum.maxLatency
	name := fmt.Sprintf("load on %s (line %d)", l.spec.lun, l.spec.line)
	if !l.spec.verify {
		r.addCheck(Check{Name: name, OK: true, Detail: fmt.Sprintf("%d writes, not verified", writes)})
		return
	}
	c := Check{Name: name + ": no write failed", OK: failures == 0,
		Detail: fmt.Sprintf("%d writes, the slowest acknowledged after %s", writes, fmtDur(maxLat))}
	if failures > 0 {
		c.Detail = fmt.Sprintf("%d of %d writes failed, the first: %v", failures, writes, firstErr)
	}
	r.addCheck(c)
	got, err := l.readSeqs(ctx, r.reader(ctx, l.spec.lun))
	c = Check{Name: name + ": no write lost"}
	if err != nil {
		c.Detail = err.Error()
	} else {
		c.Detail, c.OK = l.verifyLive(got)
	}
	r.addCheck(c)
}

// ---- check, read and write steps ----

func (r *runner) check(ctx context.Context, s *step, fail func(expected, got string)) {
	c := s.check
	if c.storeBytes != nil {
		r.checkStoreBytes(c.storeBytes, fail)
	}
	if c.goroutines {
		r.checkGoroutines(fail)
	}
	if c.lunInfo != nil {
		r.checkLunInfo(ctx, s, c.lunInfo, fail)
	}
	if c.snapshots != nil {
		if n := len(r.svc.Query()); n != *c.snapshots {
			fail(fmt.Sprintf("%d snapshots held by the service", *c.snapshots), fmt.Sprintf("%d", n))
		}
	}
	var snapLUNs []string
	naa := map[[16]byte]string{}
	for _, l := range r.array.List() {
		if l.Kind() == lun.Snapshot {
			snapLUNs = append(snapLUNs, l.Name())
		}
		if c.uniqueNAA {
			id := l.Identity().NAA
			if o, dup := naa[id]; dup {
				fail("a page-83 identifier of its own for every LUN (F.6)", fmt.Sprintf("%s and %s share %s", o, l.Name(), l.Identity().NAAString()))
			}
			naa[id] = l.Name()
		}
	}
	if c.snapshotLUNs != nil && len(snapLUNs) != *c.snapshotLUNs {
		fail(fmt.Sprintf("%d snapshot LUNs in the array", *c.snapshotLUNs), fmt.Sprintf("%d %v", len(snapLUNs), snapLUNs))
	}
}

// snapshotExport is the export of a snapshot's target LUN: the one of
// sourceLUN, or the first.
func (r *runner) snapshotExport(requester, ref, sourceLUN string) (string, error) {
	q := r.req(requester)
	props, err := q.bc.GetSnapshotProperties(r.snapshotID(q, ref))
	if err != nil {
		return "", err
	}
	i := 0
	if sourceLUN != "" {
		i = slices.Index(props.SourceLUNs, sourceLUN)
	}
	if i < 0 || i >= len(props.TargetLUNs) || props.TargetLUNs[i] == "" {
		return "", fmt.Errorf("target LUNs %v", props.TargetLUNs)
	}
	return props.TargetLUNs[i], nil
}

// data runs a read or write step through NBD.
func (r *runner) data(ctx context.Context, s *step, fail func(expected, got string)) {
	d := s.data
	export := d.lun
	if d.export != "" {
		export = r.saved(d.export).export
	}
	if d.snapshot != "" {
		var err error
		if export, err = r.snapshotExport(s.requester, d.snapshot, d.sourceLUN); err != nil {
			fail("a surfaced target LUN of the snapshot of "+d.snapshot, err.Error())
			return
		}
	}
	var err error
	var got []byte
	c, err := r.client(ctx, export)
	if err == nil {
		if s.kind == stepWrite {
			flags := nbd.CmdFlagFUA
			if d.noFUA {
				flags = 0
			}
			err = c.Write(ctx, d.data, d.offset, flags)
		} else {
			got = make([]byte, len(d.data))
			err = c.Read(ctx, got, d.offset)
		}
	}
	switch {
	case d.fails && err == nil:
		fail(fmt.Sprintf("the %s of %s to fail", s.kind, export), "it succeeded")
	case !d.fails && err != nil:
		fail(fmt.Sprintf("the %s of %s to succeed", s.kind, export), err.Error())
	case err == nil && s.kind == stepRead && !bytes.Equal(got, d.data):
		fail(fmt.Sprintf("%q at %d of %s", d.data, d.offset, export), fmt.Sprintf("%q", got))
	}
}
