package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/vss"
)

// remoteWriter is a coordinator.Writer whose callbacks run in an attached
// client. A callback puts its event in the writer's slot and waits: the
// client takes the event with a poll, runs it, and posts the answer, which
// the callback returns. The callback returns false when the event's
// window ends first (the coordinator has timed the writer out by then) and
// answers as a detached writer does once the writer is dropped (D2).
//
// The coordinator runs one callback per writer at a time, so the slot
// holds one event. A poll hands over the event in the slot whether or not
// an earlier poll took it, so a poll whose response was lost loses
// nothing; answers name the event, so a late or repeated answer is refused
// (ErrEventOver) and changes nothing.
type remoteWriter struct {
	d    *Daemon
	id   vss.ID
	name string

	gone      chan struct{} // closed by close
	closeOnce sync.Once

	// mu guards the slot and the liveness record.
	mu struct {
		sync.Mutex
		cur      *pendingEvent
		seq      uint64
		polls    int       // polls in progress
		lastSeen time.Time // the last poll's start or end, or answer
		changed  chan struct{}
		// links are the client's link requests open (GET .../link): a
		// client holds one for as long as it lives, so that its death
		// closes it at once, even while it runs an event.
		links int
	}
}

// linkGrace is how long a writer whose last link closed may take to open
// another (a client whose request failed retries) before it is taken
// for dead and dropped.
const linkGrace = time.Second

var _ coordinator.Writer = (*remoteWriter)(nil)

// pendingEvent is the event in a remote writer's slot.
type pendingEvent struct {
	wire      WireEvent
	deadline  time.Time // zero when the event has no window
	delivered bool
	answer    chan EventAnswer // buffered: the answer never blocks
}

func newRemoteWriter(d *Daemon, id vss.ID, name string) *remoteWriter {
	rw := &remoteWriter{d: d, id: id, name: name, gone: make(chan struct{})}
	rw.mu.lastSeen = time.Now()
	rw.mu.changed = make(chan struct{})
	return rw
}

// changedLocked wakes the polls waiting for the slot.
func (rw *remoteWriter) changedLocked() {
	close(rw.mu.changed)
	rw.mu.changed = make(chan struct{})
}

// close detaches the writer: its waiting callback and polls return.
func (rw *remoteWriter) close() { rw.closeOnce.Do(func() { close(rw.gone) }) }

// idle returns how long the client has been silent, 0 while it polls or
// holds an event, and when it was last seen.
func (rw *remoteWriter) idle() (time.Duration, time.Time) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.mu.polls > 0 || (rw.mu.cur != nil && rw.mu.cur.delivered) {
		return 0, time.Now()
	}
	return time.Since(rw.mu.lastSeen), rw.mu.lastSeen
}

// handle is every callback: it hands ev to the client and returns its
// answer.
func (rw *remoteWriter) handle(ev *coordinator.Event) bool {
	select {
	case <-rw.gone:
		return detachedAnswer(ev)
	default:
	}
	pe := &pendingEvent{answer: make(chan EventAnswer, 1)}
	pe.deadline, _ = ev.Ctx.Deadline()
	rw.mu.Lock()
	rw.mu.seq++
	pe.wire = WireEvent{ID: strconv.FormatUint(rw.mu.seq, 10), Kind: ev.Kind.String(), SnapshotSetID: ev.SnapshotSetID,
		Context: ev.Context.String(), BackupType: ev.BackupType.String(), Volumes: ev.Volumes, Components: ev.Components}
	rw.mu.cur = pe
	rw.changedLocked()
	rw.mu.Unlock()
	defer func() {
		rw.mu.Lock()
		if rw.mu.cur == pe {
			rw.mu.cur = nil
			rw.mu.lastSeen = time.Now()
		}
		rw.mu.Unlock()
	}()
	select {
	case a := <-pe.answer:
		if a.Failure != "" {
			hr, _ := vss.ParseHRESULT(a.Failure) // checked when the answer arrived
			app, _ := vss.ParseHRESULT(a.Application)
			if err := ev.SetWriterFailureEx(hr, app, a.Message); err != nil {
				rw.d.log.Warn("remote writer's failure refused", "writer", rw.name, "event", ev.Kind.String(), "err", err)
			}
		}
		return a.OK
	case <-ev.Ctx.Done():
		return false
	case <-rw.gone:
		return detachedAnswer(ev)
	}
}

// detachedAnswer is what a writer whose client is gone answers: true to
// Abort and BackupShutdown, which need nothing of it, and a fatal
// VSS_E_WRITERERROR_NONRETRYABLE to the rest.
func detachedAnswer(ev *coordinator.Event) bool {
	switch ev.Kind {
	case vss.EventAbort, vss.EventBackupShutdown:
		return true
	case vss.EventIdentify:
		return false // SetWriterFailure is forbidden there
	}
	_ = ev.SetWriterFailureEx(vss.VSS_E_WRITERERROR_NONRETRYABLE, 0, "writer detached")
	return false
}

// next is a poll: it returns the event in the slot, waiting for one until
// wait passes (nil, nil), ctx ends, the writer is dropped
// (ErrWriterDropped) or the daemon stops (ErrStopping).
func (rw *remoteWriter) next(ctx context.Context, wait time.Duration) (*WireEvent, error) {
	rw.mu.Lock()
	rw.mu.polls++
	rw.mu.lastSeen = time.Now()
	rw.mu.Unlock()
	defer func() {
		rw.mu.Lock()
		rw.mu.polls--
		rw.mu.lastSeen = time.Now()
		rw.mu.Unlock()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		rw.mu.Lock()
		if pe := rw.mu.cur; pe != nil {
			pe.delivered = true
			w := pe.wire
			if !pe.deadline.IsZero() {
				w.Timeout = Duration(max(time.Until(pe.deadline), 0))
			}
			rw.mu.Unlock()
			return &w, nil
		}
		changed := rw.mu.changed
		rw.mu.Unlock()
		select {
		case <-changed:
		case <-rw.gone:
			return nil, ErrWriterDropped
		case <-rw.d.stop:
			return nil, ErrStopping
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, nil
		}
	}
}

// link holds the client's link request until its connection closes (ctx
// ends), the writer is dropped, or the daemon stops. The last link to
// close, with none opened within linkGrace, drops the writer: its client
// died or lost the daemon, and an event waiting on it ends now, not at
// the end of its window.
func (rw *remoteWriter) link(ctx context.Context) error {
	rw.mu.Lock()
	rw.mu.links++
	rw.mu.lastSeen = time.Now()
	rw.mu.Unlock()
	var err error
	select {
	case <-rw.gone:
		err = ErrWriterDropped
	case <-rw.d.stop:
		err = ErrStopping
	case <-ctx.Done():
		err = ctx.Err()
	}
	rw.mu.Lock()
	rw.mu.links--
	last := rw.mu.links == 0
	rw.mu.Unlock()
	if last && ctx.Err() != nil {
		closed := time.Now()
		time.AfterFunc(linkGrace, func() {
			rw.mu.Lock()
			dead := rw.mu.links == 0
			rw.mu.Unlock()
			if dead {
				_, _ = rw.d.dropWriter(rw.id, fmt.Sprintf("its client's connection closed %v ago and it did not reconnect", time.Since(closed).Round(time.Millisecond)))
			}
		})
	}
	return err
}

// answer delivers the client's answer to event id.
func (rw *remoteWriter) answer(id string, a EventAnswer) error {
	if a.Failure != "" {
		if _, err := vss.ParseHRESULT(a.Failure); err != nil {
			return badRequest("failure %q: want an HRESULT name or 0x value", a.Failure)
		}
	}
	if a.Application != "" {
		if _, err := vss.ParseHRESULT(a.Application); err != nil {
			return badRequest("application %q: want an HRESULT name or 0x value", a.Application)
		}
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.mu.lastSeen = time.Now()
	pe := rw.mu.cur
	if pe == nil || pe.wire.ID != id {
		return ErrEventOver
	}
	rw.mu.cur = nil
	pe.answer <- a
	return nil
}

// OnIdentify implements coordinator.Writer.
func (rw *remoteWriter) OnIdentify(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnPrepareBackup implements coordinator.Writer.
func (rw *remoteWriter) OnPrepareBackup(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnPrepareSnapshot implements coordinator.Writer.
func (rw *remoteWriter) OnPrepareSnapshot(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnFreeze implements coordinator.Writer.
func (rw *remoteWriter) OnFreeze(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnThaw implements coordinator.Writer.
func (rw *remoteWriter) OnThaw(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnPostSnapshot implements coordinator.Writer.
func (rw *remoteWriter) OnPostSnapshot(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnAbort implements coordinator.Writer.
func (rw *remoteWriter) OnAbort(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnBackupComplete implements coordinator.Writer.
func (rw *remoteWriter) OnBackupComplete(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnBackupShutdown implements coordinator.Writer.
func (rw *remoteWriter) OnBackupShutdown(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnPreRestore implements coordinator.Writer.
func (rw *remoteWriter) OnPreRestore(ev *coordinator.Event) bool { return rw.handle(ev) }

// OnPostRestore implements coordinator.Writer.
func (rw *remoteWriter) OnPostRestore(ev *coordinator.Event) bool { return rw.handle(ev) }

// parseContextName reads a snapshot context in any of the spellings the
// API accepts: "VSS_CTX_APP_ROLLBACK", "APP_ROLLBACK", "app-rollback",
// optionally with "|"-joined attributes.
func parseContextName(s string) (vss.SnapshotContext, error) {
	if s == "" {
		return vss.VSS_CTX_BACKUP, nil
	}
	return vss.ParseSnapshotContext(strings.ToUpper(strings.ReplaceAll(s, "-", "_")))
}
