package coordinator

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// Writer is a VSS writer (CVssWriter, Ex and Ex2): one callback per event of
// vss-spec.md D. Each callback returns true normally. For a fatal error it
// calls ev.SetWriterFailure and returns false; for a non-fatal one (a veto) it
// calls SetWriterFailure and returns true. Callbacks run one at a time per
// writer, on a goroutine the coordinator owns, and must return when ev.Ctx
// ends (the event's window). A panicking callback is contained: the writer
// is put in the event's failed state.
//
// Embed BaseWriter to get the defaults (true) for the callbacks that Windows
// makes virtual.
type Writer interface {
	OnIdentify(ev *Event) bool
	OnPrepareBackup(ev *Event) bool
	OnPrepareSnapshot(ev *Event) bool
	OnFreeze(ev *Event) bool
	OnThaw(ev *Event) bool
	OnPostSnapshot(ev *Event) bool
	OnAbort(ev *Event) bool
	OnBackupComplete(ev *Event) bool
	OnBackupShutdown(ev *Event) bool
	OnPreRestore(ev *Event) bool
	OnPostRestore(ev *Event) bool
}

// BaseWriter answers true to every event. Embed it and override what the
// writer cares about.
type BaseWriter struct{}

// OnIdentify implements Writer.
func (BaseWriter) OnIdentify(*Event) bool { return true }

// OnPrepareBackup implements Writer.
func (BaseWriter) OnPrepareBackup(*Event) bool { return true }

// OnPrepareSnapshot implements Writer.
func (BaseWriter) OnPrepareSnapshot(*Event) bool { return true }

// OnFreeze implements Writer.
func (BaseWriter) OnFreeze(*Event) bool { return true }

// OnThaw implements Writer.
func (BaseWriter) OnThaw(*Event) bool { return true }

// OnPostSnapshot implements Writer.
func (BaseWriter) OnPostSnapshot(*Event) bool { return true }

// OnAbort implements Writer.
func (BaseWriter) OnAbort(*Event) bool { return true }

// OnBackupComplete implements Writer.
func (BaseWriter) OnBackupComplete(*Event) bool { return true }

// OnBackupShutdown implements Writer.
func (BaseWriter) OnBackupShutdown(*Event) bool { return true }

// OnPreRestore implements Writer.
func (BaseWriter) OnPreRestore(*Event) bool { return true }

// OnPostRestore implements Writer.
func (BaseWriter) OnPostRestore(*Event) bool { return true }

var _ Writer = BaseWriter{}

// Errors of SetWriterFailure.
var (
	// ErrFailureNotAllowed is returned (wrapping E_INVALIDARG) for a code
	// SetWriterFailure does not accept (vss-spec.md D).
	ErrFailureNotAllowed = errors.New("coordinator: SetWriterFailure accepts only INCONSISTENTSNAPSHOT, NONRETRYABLE, OUTOFRESOURCES, RETRYABLE and TIMEOUT")
	// ErrFailureInIdentify is returned for SetWriterFailure called from
	// OnIdentify, where Windows forbids it.
	ErrFailureInIdentify = errors.New("coordinator: SetWriterFailure may not be called from OnIdentify")
	// ErrEventOver is returned for SetWriterFailure called after the
	// callback returned: it must be called on the handler's own thread.
	ErrEventOver = errors.New("coordinator: SetWriterFailure called after the event's callback returned")
)

// Event is what a writer callback is told, and its one way to report a
// failure. It is valid only until the callback returns.
type Event struct {
	// Ctx ends when the event's window expires (the freeze window for
	// OnFreeze) or the sequence is cancelled.
	Ctx context.Context
	// Kind is the event.
	Kind vss.WriterEvent
	// SnapshotSetID is the set in creation (GUID_NULL for Identify and
	// PrepareBackup before StartSnapshotSet).
	SnapshotSetID vss.ID
	// Context and BackupType are the requester's settings.
	Context    vss.SnapshotContext
	BackupType vss.BackupType
	// Volumes are the volumes in the set, and Components the writer's
	// components the requester added.
	Volumes    []string
	Components []string
	// Metadata is where OnIdentify declares the writer's components; nil
	// for other events.
	Metadata *Metadata

	mu      sync.Mutex
	over    bool
	failure *failure
}

// failure is what SetWriterFailure(Ex) recorded.
type failure struct {
	hr, app vss.HRESULT
	msg     string
}

// SetWriterFailure records a failure code for the event. Only the codes of
// vss-spec.md D are accepted; it may not be called from OnIdentify, nor
// after the callback returned.
func (ev *Event) SetWriterFailure(hr vss.HRESULT) error {
	if !vss.WriterFailureAllowed(hr) {
		return errors.Join(vss.E_INVALIDARG, ErrFailureNotAllowed)
	}
	return ev.setFailure(failure{hr: hr})
}

// SetWriterFailureEx records a writer code, an application code and a
// message; it also accepts S_OK and PARTIAL_FAILURE as the writer code.
func (ev *Event) SetWriterFailureEx(hrWriter, hrApplication vss.HRESULT, msg string) error {
	if !vss.WriterFailureExAllowed(hrWriter) {
		return errors.Join(vss.E_INVALIDARG, ErrFailureNotAllowed)
	}
	return ev.setFailure(failure{hr: hrWriter, app: hrApplication, msg: msg})
}

func (ev *Event) setFailure(f failure) error {
	if ev.Kind == vss.EventIdentify {
		return errors.Join(vss.VSS_E_BAD_STATE, ErrFailureInIdentify)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.over {
		return errors.Join(vss.VSS_E_BAD_STATE, ErrEventOver)
	}
	ev.failure = &f
	return nil
}

// end closes the event to SetWriterFailure and returns what was recorded.
func (ev *Event) end() *failure {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.over = true
	return ev.failure
}

// Metadata is a writer's metadata document: what OnIdentify declares.
type Metadata struct {
	Components []ComponentInfo
}

// AddComponent declares a component.
func (m *Metadata) AddComponent(c ComponentInfo) { m.Components = append(m.Components, c) }

// ComponentInfo describes one component of a writer.
type ComponentInfo struct {
	Name        string
	LogicalPath string
	// Volumes are the volumes the component's files live on.
	Volumes []string
}

// WriterOptions register a writer with the service.
type WriterOptions struct {
	// Name is the writer's name, unique in the service.
	Name string
	// ID is the writer class ID; a new one when zero.
	ID vss.ID
	// Level orders freezing: front-end, then back-end, then system.
	Level vss.ApplicationLevel
	// FreezeTimeout is dwTimeoutFreeze: the window from OnFreeze to the
	// return of PostCommitSnapshots; 0 for the service's default (60 s).
	FreezeTimeout time.Duration
}
