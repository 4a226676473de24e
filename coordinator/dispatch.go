package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// outcome is how one writer event went.
type outcome struct {
	ok       bool
	failure  *failure
	timedOut bool
	panicked bool
	detail   string
}

func (o outcome) result() string {
	switch {
	case o.timedOut:
		return "timeout"
	case o.panicked:
		return "panic"
	case o.ok:
		return "true"
	}
	return "false"
}

// Call runs w's callback for ev.Kind and returns its answer (false for an
// event that names no callback). The coordinator delivers events through it;
// so does the client side of a remote writer, running a local writer.
func Call(w Writer, ev *Event) bool {
	switch ev.Kind {
	case vss.EventIdentify:
		return w.OnIdentify(ev)
	case vss.EventPrepareForBackup:
		return w.OnPrepareBackup(ev)
	case vss.EventPrepareForSnapshot:
		return w.OnPrepareSnapshot(ev)
	case vss.EventFreeze:
		return w.OnFreeze(ev)
	case vss.EventThaw:
		return w.OnThaw(ev)
	case vss.EventPostSnapshot:
		return w.OnPostSnapshot(ev)
	case vss.EventAbort:
		return w.OnAbort(ev)
	case vss.EventBackupComplete:
		return w.OnBackupComplete(ev)
	case vss.EventBackupShutdown:
		return w.OnBackupShutdown(ev)
	case vss.EventPreRestore:
		return w.OnPreRestore(ev)
	case vss.EventPostRestore:
		return w.OnPostRestore(ev)
	}
	return false
}

// deliver calls one event on one writer within window, on a goroutine the
// service owns, and records it on tl. A callback that panics is contained;
// one that outlives its window is left to finish on its own (its Ctx has
// ended) and reported as timed out.
func (s *Service) deliver(parent context.Context, tl *Timeline, w *writerReg, ev *Event, window time.Duration) outcome {
	ctx, cancel := context.WithTimeout(parent, window)
	defer cancel()
	ev.Ctx = ctx
	sp := tl.begin(KindWriter, ev.Kind.String(), w.opts.Name)
	done := make(chan outcome, 1)
	s.wg.Go(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{panicked: true, detail: fmt.Sprint(r)}
			}
		}()
		done <- outcome{ok: Call(w.w, ev)}
	})
	var o outcome
	start := time.Now()
	select {
	case o = <-done:
	case <-ctx.Done():
		// The wait that really elapsed: the set may have been cancelled
		// long before the window's end.
		detail := fmt.Sprintf("no answer within %v", window)
		if parent.Err() != nil {
			detail = fmt.Sprintf("no answer after %v: %v", time.Since(start).Round(time.Millisecond), context.Cause(parent))
		}
		o = outcome{timedOut: true, detail: detail}
	}
	o.failure = ev.end()
	detail := o.detail
	if o.failure != nil {
		detail = "SetWriterFailure " + o.failure.hr.Name()
	}
	sp.end(o.result(), detail)
	if o.panicked || o.timedOut || !o.ok {
		s.log.Warn("writer event failed", "event_id", EventWriterError, "writer", w.opts.Name,
			"event", ev.Kind.String(), "result", o.result(), "detail", detail)
	}
	return o
}

// writerStatus is one writer's state within one BackupComponents.
type writerStatus struct {
	reg      *writerReg
	state    vss.WriterState
	failure  vss.HRESULT
	app      vss.HRESULT
	msg      string
	excluded bool // failed Identify: left out of the metadata (D)
	// prepared is set once the writer got PrepareForSnapshot; frozen
	// while it awaits Thaw or Abort; postSnapshot once it got PostSnapshot,
	// after which it never gets Abort (B.10).
	prepared, frozen, postSnapshot, aborted bool
	freezeTimer                             *time.Timer
	freezeSpan                              *span // the open freeze window
	metadata                                Metadata
}

// WriterStatus is what GatherWriterStatus reports for one writer.
type WriterStatus struct {
	InstanceID         vss.ID          `json:"instance_id"`
	WriterID           vss.ID          `json:"writer_id"`
	Name               string          `json:"name"`
	State              vss.WriterState `json:"state"`
	Failure            vss.HRESULT     `json:"failure"`
	ApplicationFailure vss.HRESULT     `json:"application_failure"`
	Message            string          `json:"message,omitempty"`
}

func (st *writerStatus) status() WriterStatus {
	return WriterStatus{InstanceID: st.reg.instance, WriterID: st.reg.id, Name: st.reg.opts.Name,
		State: st.state, Failure: st.failure, ApplicationFailure: st.app, Message: st.msg}
}

// successState is where a writer goes when it handles kind.
func successState(kind vss.WriterEvent, cur vss.WriterState) vss.WriterState {
	switch kind {
	case vss.EventPrepareForSnapshot:
		return vss.VSS_WS_WAITING_FOR_FREEZE
	case vss.EventFreeze:
		return vss.VSS_WS_WAITING_FOR_THAW
	case vss.EventThaw:
		return vss.VSS_WS_WAITING_FOR_POST_SNAPSHOT
	case vss.EventPostSnapshot:
		return vss.VSS_WS_WAITING_FOR_BACKUP_COMPLETE
	case vss.EventIdentify, vss.EventPrepareForBackup, vss.EventBackupComplete, vss.EventAbort, vss.EventBackupShutdown:
		return vss.VSS_WS_STABLE
	}
	return cur
}

// fail puts the writer in a failed state; the first failure sticks.
func (st *writerStatus) fail(state vss.WriterState, hr, app vss.HRESULT, msg string) {
	if st.state.IsFailed() {
		return
	}
	st.state, st.failure, st.app, st.msg = state, hr, app, msg
}

// apply records an event's outcome in the writer's status (vss-spec.md D)
// and reports whether it was fatal: false returned, a panic or a timeout.
// A veto (SetWriterFailure, then true) fails the writer's state but is not
// fatal.
func (st *writerStatus) apply(kind vss.WriterEvent, o outcome) (fatal bool) {
	failed, hasFailed := kind.FailedState()
	var f failure
	if o.failure != nil {
		f = *o.failure
	}
	switch {
	case o.timedOut:
		hr := vss.VSS_E_WRITER_NOT_RESPONDING
		if kind == vss.EventFreeze {
			hr = vss.VSS_E_WRITERERROR_TIMEOUT // B.3
		}
		st.fail(failed, hr, 0, o.detail)
		return true
	case o.panicked:
		st.fail(failed, vss.VSS_E_WRITERERROR_NONRETRYABLE, 0, "panic: "+o.detail)
		return true
	case !o.ok:
		if f.hr == 0 {
			f.hr = vss.VSS_E_WRITERERROR_NONRETRYABLE
		}
		if hasFailed {
			st.fail(failed, f.hr, f.app, f.msg)
		}
		return true
	case o.failure != nil && f.hr.Failed():
		if hasFailed {
			st.fail(failed, f.hr, f.app, f.msg) // a veto: recorded, not fatal
		}
		return false
	}
	if !st.state.IsFailed() {
		st.state = successState(kind, st.state)
	}
	return false
}
