package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// ErrInvalidScript is returned, wrapped with the offending event and field,
// by Script.Validate and NewScriptedWriter.
var ErrInvalidScript = errors.New("coordinator: invalid writer script")

// Result names what a scripted Action does once its delay has passed. It is a
// string so that a scenario file can write it as is.
type Result string

// The results of a scripted Action.
const (
	// ResultOK returns true. The empty Result means the same.
	ResultOK Result = "ok"
	// ResultFail records Failure (if set) and returns false: a fatal error,
	// which puts the writer in the event's FAILED_AT_* state.
	ResultFail Result = "fail"
	// ResultVeto records Failure and returns true: a non-fatal error, which
	// the requester reads from GetWriterStatus (vss-spec.md D).
	ResultVeto Result = "veto"
	// ResultPanic panics with Message, as a writer that throws would. The
	// coordinator contains the panic.
	ResultPanic Result = "panic"
	// ResultHang blocks until ev.Ctx ends and then returns false: a writer
	// that does not answer in its window.
	ResultHang Result = "hang"
)

// Action is what a ScriptedWriter does for one event. It is data only, so a
// scenario file can fill it; a test that needs code uses WithHook.
type Action struct {
	// Delay is how long the callback works before its result. If ev.Ctx
	// ends first the callback returns false at once, records nothing, and
	// skips the result, as a writer that overran its window would: the
	// coordinator has already timed it out, so what it returns is moot.
	Delay time.Duration
	// Result is what the callback does after Delay; empty means ResultOK.
	Result Result
	// Failure is the code ResultFail and ResultVeto record. It is optional
	// for ResultFail (a bare false) and required for ResultVeto. Its zero
	// value, S_OK, means no failure, so a Script cannot record S_OK through
	// SetWriterFailureEx.
	Failure vss.HRESULT
	// Application is hrApplication of SetWriterFailureEx. When it or
	// Message is set, the failure is recorded with SetWriterFailureEx, which
	// also accepts S_OK and VSS_E_WRITERERROR_PARTIAL_FAILURE.
	Application vss.HRESULT
	// Message is the failure message for ResultFail and ResultVeto, and the
	// panic value for ResultPanic.
	Message string
	// Illegal marks a failure that SetWriterFailure(Ex) is expected to
	// refuse: a code it does not accept, or any failure at Identify, where
	// Windows forbids the call. Validate rejects such a failure unless
	// Illegal is set, and rejects Illegal on a legal failure. At run time
	// the refusal is recorded in the event's ReceivedEvent.Refused and the
	// callback goes on with its result.
	Illegal bool
}

// Script is a ScriptedWriter's configuration: the components it declares
// and what it does per event. Events without an Action answer true at once.
//
// Script holds no code and no state, so a scenario loader fills it from a
// file (names through vss.ParseWriterEvent and vss.ParseHRESULT) and one
// Script may back many writers.
type Script struct {
	// Components are declared into ev.Metadata by OnIdentify.
	Components []ComponentInfo
	// On maps an event to its Action.
	On map[vss.WriterEvent]Action
}

// Validate reports the first problem of s, wrapping ErrInvalidScript: an
// event or result with no name, a component without a name or declared
// twice, a veto without a code, fields a result does not use, or a failure
// SetWriterFailure would refuse without Action.Illegal.
func (s Script) Validate() error {
	seen := make(map[string]bool, len(s.Components))
	for i, c := range s.Components {
		if c.Name == "" {
			return fmt.Errorf("%w: component %d has no name", ErrInvalidScript, i)
		}
		key := c.LogicalPath + "\\" + c.Name
		if seen[key] {
			return fmt.Errorf("%w: component %q (logical path %q) declared twice", ErrInvalidScript, c.Name, c.LogicalPath)
		}
		seen[key] = true
	}
	for _, e := range slices.Sorted(maps.Keys(s.On)) {
		if err := s.On[e].validate(e); err != nil {
			return fmt.Errorf("%w: %v: %w", ErrInvalidScript, e, err)
		}
	}
	return nil
}

// validate checks one Action for event e.
func (a Action) validate(e vss.WriterEvent) error {
	if !slices.Contains(vss.WriterEvents(), e) {
		return errors.New("not a writer event")
	}
	if a.Delay < 0 {
		return fmt.Errorf("negative delay %v", a.Delay)
	}
	failure := a.Failure != 0 || a.Application != 0 || a.Message != "" || a.Illegal
	switch a.Result {
	case "", ResultOK:
		if failure {
			return fmt.Errorf("result %q takes no failure, message or Illegal", ResultOK)
		}
		return nil
	case ResultHang:
		if failure || a.Delay != 0 {
			return fmt.Errorf("result %q takes no delay, failure, message or Illegal", ResultHang)
		}
		return nil
	case ResultPanic:
		if a.Failure != 0 || a.Application != 0 || a.Illegal {
			return fmt.Errorf("result %q takes a message only", ResultPanic)
		}
		return nil
	case ResultVeto:
		if a.Failure == 0 {
			return fmt.Errorf("result %q needs a Failure code", ResultVeto)
		}
	case ResultFail:
		if a.Failure == 0 {
			if a.Application != 0 || a.Message != "" || a.Illegal {
				return fmt.Errorf("result %q without a Failure takes no application code, message or Illegal", ResultFail)
			}
			return nil
		}
	default:
		return fmt.Errorf("unknown result %q (want ok, fail, veto, panic or hang)", a.Result)
	}
	legal := vss.WriterFailureAllowed(a.Failure)
	if a.ex() {
		legal = vss.WriterFailureExAllowed(a.Failure)
	}
	legal = legal && e != vss.EventIdentify
	switch {
	case !legal && !a.Illegal:
		return fmt.Errorf("SetWriterFailure refuses %v at %v; set Illegal to test that", a.Failure, e)
	case legal && a.Illegal:
		return fmt.Errorf("marked Illegal but SetWriterFailure accepts %v at %v", a.Failure, e)
	}
	return nil
}

// ex reports whether the failure goes through SetWriterFailureEx.
func (a Action) ex() bool { return a.Application != 0 || a.Message != "" }

// ReceivedEvent is one event a ScriptedWriter received.
type ReceivedEvent struct {
	// Kind is the event.
	Kind vss.WriterEvent
	// SnapshotSetID is ev.SnapshotSetID.
	SnapshotSetID vss.ID
	// At is when the callback was entered.
	At time.Time
	// Refused is the error SetWriterFailure(Ex) returned when it refused
	// the Action's failure, nil otherwise.
	Refused error
}

// ScriptedOption configures a ScriptedWriter beyond its Script.
type ScriptedOption func(*ScriptedWriter)

// WithHook makes the writer call fn for event e after the Action's delay, in
// place of the Action's result, and return what fn returns. It is for tests
// that need code at an event; a Script stays data.
func WithHook(e vss.WriterEvent, fn func(ev *Event) bool) ScriptedOption {
	return func(w *ScriptedWriter) { w.hooks[e] = fn }
}

// ScriptedWriter is a Writer that follows a Script and records every event it
// receives, so a test can check the order the coordinator keeps ("Thaw or
// Abort always follows Freeze"). Its callbacks may run concurrently, although
// the coordinator runs them one at a time.
type ScriptedWriter struct {
	script Script
	hooks  map[vss.WriterEvent]func(ev *Event) bool

	mu struct {
		sync.Mutex
		events []ReceivedEvent
	}
}

var _ Writer = (*ScriptedWriter)(nil)

// NewScriptedWriter returns a writer that follows s, after s.Validate. It
// keeps a copy of s, so the caller may reuse s.
func NewScriptedWriter(s Script, opts ...ScriptedOption) (*ScriptedWriter, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	w := &ScriptedWriter{
		script: Script{Components: cloneComponents(s.Components), On: maps.Clone(s.On)},
		hooks:  make(map[vss.WriterEvent]func(ev *Event) bool),
	}
	for _, o := range opts {
		o(w)
	}
	return w, nil
}

// Events returns the events received so far, in the order the callbacks were
// entered.
func (w *ScriptedWriter) Events() []ReceivedEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.mu.events)
}

// OnIdentify declares the Script's components into ev.Metadata, then follows
// the Identify action.
func (w *ScriptedWriter) OnIdentify(ev *Event) bool {
	if ev.Metadata != nil {
		for _, c := range cloneComponents(w.script.Components) {
			ev.Metadata.AddComponent(c)
		}
	}
	return w.run(vss.EventIdentify, ev)
}

// OnPrepareBackup implements Writer.
func (w *ScriptedWriter) OnPrepareBackup(ev *Event) bool {
	return w.run(vss.EventPrepareForBackup, ev)
}

// OnPrepareSnapshot implements Writer.
func (w *ScriptedWriter) OnPrepareSnapshot(ev *Event) bool {
	return w.run(vss.EventPrepareForSnapshot, ev)
}

// OnFreeze implements Writer.
func (w *ScriptedWriter) OnFreeze(ev *Event) bool { return w.run(vss.EventFreeze, ev) }

// OnThaw implements Writer.
func (w *ScriptedWriter) OnThaw(ev *Event) bool { return w.run(vss.EventThaw, ev) }

// OnPostSnapshot implements Writer.
func (w *ScriptedWriter) OnPostSnapshot(ev *Event) bool { return w.run(vss.EventPostSnapshot, ev) }

// OnAbort implements Writer.
func (w *ScriptedWriter) OnAbort(ev *Event) bool { return w.run(vss.EventAbort, ev) }

// OnBackupComplete implements Writer.
func (w *ScriptedWriter) OnBackupComplete(ev *Event) bool {
	return w.run(vss.EventBackupComplete, ev)
}

// OnBackupShutdown implements Writer.
func (w *ScriptedWriter) OnBackupShutdown(ev *Event) bool {
	return w.run(vss.EventBackupShutdown, ev)
}

// OnPreRestore implements Writer.
func (w *ScriptedWriter) OnPreRestore(ev *Event) bool { return w.run(vss.EventPreRestore, ev) }

// OnPostRestore implements Writer.
func (w *ScriptedWriter) OnPostRestore(ev *Event) bool { return w.run(vss.EventPostRestore, ev) }

// run records event e and plays its Action. The event is named by the
// callback rather than by ev.Kind, so a mislabelled Event still finds the
// callback's own Action.
func (w *ScriptedWriter) run(e vss.WriterEvent, ev *Event) bool {
	i := w.record(e, ev)
	ctx := ev.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	a := w.script.On[e]
	if a.Delay > 0 {
		t := time.NewTimer(a.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
	if hook := w.hooks[e]; hook != nil {
		return hook(ev)
	}
	switch a.Result {
	case ResultFail:
		w.fail(i, ev, a)
		return false
	case ResultVeto:
		w.fail(i, ev, a)
		return true
	case ResultPanic:
		msg := a.Message
		if msg == "" {
			msg = fmt.Sprintf("scripted writer: panic at %v", e)
		}
		panic(msg)
	case ResultHang:
		<-ctx.Done()
		return false
	}
	return true
}

// record appends e to the received events and returns its index. The time
// is taken under the lock, so the times of Events never decrease.
func (w *ScriptedWriter) record(e vss.WriterEvent, ev *Event) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.events = append(w.mu.events, ReceivedEvent{Kind: e, SnapshotSetID: ev.SnapshotSetID, At: time.Now()})
	return len(w.mu.events) - 1
}

// fail records a's failure, if it has one, and notes a refusal in event i.
func (w *ScriptedWriter) fail(i int, ev *Event, a Action) {
	if a.Failure == 0 {
		return
	}
	var err error
	if a.ex() {
		err = ev.SetWriterFailureEx(a.Failure, a.Application, a.Message)
	} else {
		err = ev.SetWriterFailure(a.Failure)
	}
	if err != nil {
		w.mu.Lock()
		w.mu.events[i].Refused = err
		w.mu.Unlock()
	}
}

// cloneComponents copies cs deeply, so no caller shares a Volumes slice with
// a writer.
func cloneComponents(cs []ComponentInfo) []ComponentInfo {
	if cs == nil {
		return nil
	}
	out := make([]ComponentInfo, len(cs))
	for i, c := range cs {
		c.Volumes = slices.Clone(c.Volumes)
		out[i] = c
	}
	return out
}
