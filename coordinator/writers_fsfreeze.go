package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// Errors of FsfreezeWriter.
var (
	// ErrFsfreezeUnsupported is returned by NewFsfreezeWriter outside
	// Linux, which alone has FIFREEZE.
	ErrFsfreezeUnsupported = errors.New("coordinator: fsfreeze writer needs Linux")
	// ErrNotMountPoint is returned by NewFsfreezeWriter for a path that is
	// not the root of a mount: FIFREEZE would freeze the whole file system
	// the path lives on, which is rarely what was meant.
	ErrNotMountPoint = errors.New("coordinator: fsfreeze writer: not a mount point")
	// ErrFsfreezeClosed is recorded for an OnFreeze after Close.
	ErrFsfreezeClosed = errors.New("coordinator: fsfreeze writer closed")
)

// DefaultMaxFrozen is FsfreezeOptions.MaxFrozen's default: twice the
// default writer freeze window (60 s, vss-spec.md B.3), so the watchdog only
// acts when Thaw and Abort both failed to arrive.
const DefaultMaxFrozen = 2 * time.Minute

// FsfreezeOptions configure a FsfreezeWriter.
type FsfreezeOptions struct {
	// MaxFrozen bounds how long the file system stays frozen: when it
	// passes without a Thaw, Abort, BackupShutdown or Close, a watchdog
	// thaws the file system and the next OnThaw fails with
	// VSS_E_WRITERERROR_TIMEOUT, since the snapshot may then postdate the
	// thaw. 0 means DefaultMaxFrozen; a negative value disables the
	// watchdog, which leaves thawing to the callbacks and Close alone.
	MaxFrozen time.Duration
	// Logger receives freezes, thaws and failures; nil discards them.
	Logger *slog.Logger
}

// FsfreezeWriter is a Writer that freezes a mounted Linux file system for the
// freeze window, as fsfreeze(8) does: FIFREEZE on OnFreeze, which flushes the
// file system and blocks new writes, and FITHAW on OnThaw.
//
// It never leaves the file system frozen on purpose: OnAbort,
// OnBackupShutdown and Close thaw it too, and a watchdog (MaxFrozen) thaws it
// if none of them comes. Only the death of the process can leave it frozen;
// "fsfreeze -u" then thaws it.
//
// A file system that cannot be frozen (no support, EOPNOTSUPP; no
// CAP_SYS_ADMIN, EPERM) fails OnFreeze with VSS_E_WRITERERROR_NONRETRYABLE;
// one frozen by someone else (EBUSY) fails it with
// VSS_E_WRITERERROR_RETRYABLE.
type FsfreezeWriter struct {
	BaseWriter
	path      string
	maxFrozen time.Duration
	logger    *slog.Logger

	// mu is held across the ioctls, so Close and the watchdog wait for a
	// freeze in progress rather than racing with it.
	mu struct {
		sync.Mutex
		frozen   bool
		fd       int         // The mount point, open while frozen.
		gen      uint64      // Counts freezes; the watchdog acts on its own one only.
		watchdog *time.Timer // Non-nil while frozen with MaxFrozen > 0.
		expired  bool        // The watchdog thawed since the last OnFreeze.
		closed   bool
	}
}

var _ Writer = (*FsfreezeWriter)(nil)

// NewFsfreezeWriter returns a writer that freezes the file system mounted at
// mountPoint. It checks that mountPoint is the root of a mount; it opens
// nothing until OnFreeze, so it does not keep the file system busy. Outside
// Linux it returns ErrFsfreezeUnsupported.
func NewFsfreezeWriter(mountPoint string, opts FsfreezeOptions) (*FsfreezeWriter, error) {
	path := filepath.Clean(mountPoint)
	if err := checkMountPoint(path); err != nil {
		return nil, err
	}
	w := &FsfreezeWriter{path: path, maxFrozen: opts.MaxFrozen, logger: opts.Logger}
	if w.maxFrozen == 0 {
		w.maxFrozen = DefaultMaxFrozen
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	w.logger = w.logger.With("mount", path)
	return w, nil
}

// Path returns the mount point.
func (w *FsfreezeWriter) Path() string { return w.path }

// Frozen reports whether the writer holds the file system frozen.
func (w *FsfreezeWriter) Frozen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.frozen
}

// OnFreeze freezes the file system. A Freeze while the writer already holds
// it frozen answers true and keeps that freeze. If ev.Ctx ended while the
// file system was flushing, it thaws at once and fails with
// VSS_E_WRITERERROR_TIMEOUT: the window is over, and a freeze nobody will
// use only stalls the machine. FIFREEZE itself cannot be interrupted, so a
// file system with much to flush can hold OnFreeze past ev.Ctx.
func (w *FsfreezeWriter) OnFreeze(ev *Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		w.fail(ev, vss.VSS_E_WRITERERROR_NONRETRYABLE, ErrFsfreezeClosed)
		return false
	}
	if w.mu.frozen {
		return true
	}
	w.mu.expired = false
	fd, err := fsFreeze(w.path)
	if err != nil {
		w.fail(ev, freezeFailure(err), fmt.Errorf("freeze %s: %w", w.path, err))
		return false
	}
	w.mu.frozen, w.mu.fd = true, fd
	w.mu.gen++
	if ctx := ev.Ctx; ctx != nil && ctx.Err() != nil {
		err := fmt.Errorf("freeze %s: window ended while flushing: %w", w.path, context.Cause(ctx))
		if terr := w.thawLocked(); terr != nil {
			err = errors.Join(err, terr)
		}
		w.fail(ev, vss.VSS_E_WRITERERROR_TIMEOUT, err)
		return false
	}
	if w.maxFrozen > 0 {
		gen := w.mu.gen
		w.mu.watchdog = time.AfterFunc(w.maxFrozen, func() { w.expire(gen) })
	}
	w.logger.Info("coordinator: file system frozen")
	return true
}

// OnThaw thaws the file system. It fails with VSS_E_WRITERERROR_TIMEOUT if
// the watchdog thawed it first, and with VSS_E_WRITERERROR_NONRETRYABLE if
// FITHAW fails; the writer then still counts the file system as frozen, and
// Abort, BackupShutdown, Close and the watchdog try again.
func (w *FsfreezeWriter) OnThaw(ev *Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.expired {
		w.mu.expired = false
		w.fail(ev, vss.VSS_E_WRITERERROR_TIMEOUT, fmt.Errorf("thaw %s: the watchdog thawed it after %v", w.path, w.maxFrozen))
		return false
	}
	if err := w.thawLocked(); err != nil {
		w.fail(ev, vss.VSS_E_WRITERERROR_NONRETRYABLE, err)
		return false
	}
	return true
}

// OnAbort thaws the file system if the writer holds it frozen. It answers
// true even if FITHAW fails, since Abort has no failed state (vss-spec.md
// D); the failure is logged.
func (w *FsfreezeWriter) OnAbort(*Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.expired = false
	if err := w.thawLocked(); err != nil {
		w.logger.Error("coordinator: thaw at Abort failed", "err", err)
	}
	return true
}

// OnBackupShutdown thaws the file system if the writer still holds it
// frozen, which only a sequence that skipped both Thaw and Abort leaves.
func (w *FsfreezeWriter) OnBackupShutdown(ev *Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.expired = false
	if err := w.thawLocked(); err != nil {
		w.fail(ev, vss.VSS_E_WRITERERROR_NONRETRYABLE, err)
		return false
	}
	return true
}

// Close thaws the file system if the writer holds it frozen, and makes later
// OnFreeze calls fail. It may be called more than once, and concurrently
// with the callbacks.
func (w *FsfreezeWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.closed = true
	return w.thawLocked()
}

// thawLocked thaws the file system if it is frozen. On failure the file
// system stays counted as frozen, with its descriptor and watchdog, so a
// later call can try again.
func (w *FsfreezeWriter) thawLocked() error {
	if !w.mu.frozen {
		return nil
	}
	if err := fsThaw(w.mu.fd); err != nil {
		return fmt.Errorf("thaw %s: %w", w.path, err)
	}
	closeFD(w.mu.fd)
	w.mu.frozen, w.mu.fd = false, -1
	if w.mu.watchdog != nil {
		w.mu.watchdog.Stop()
		w.mu.watchdog = nil
	}
	w.logger.Info("coordinator: file system thawed")
	return nil
}

// expire is the watchdog of freeze number gen.
func (w *FsfreezeWriter) expire(gen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.mu.frozen || w.mu.gen != gen {
		return
	}
	if err := w.thawLocked(); err != nil {
		w.logger.Error("coordinator: watchdog thaw failed", "err", err)
		return
	}
	w.mu.expired = true
	w.logger.Error("coordinator: file system thawed by the watchdog", "max_frozen", w.maxFrozen)
}

// fail records hr with err as the message, and logs it.
func (w *FsfreezeWriter) fail(ev *Event, hr vss.HRESULT, err error) {
	app := vss.E_FAIL
	if errors.Is(err, fs.ErrPermission) {
		app = vss.E_ACCESSDENIED
	}
	w.logger.Error("coordinator: fsfreeze writer failed", "event", ev.Kind.String(), "hr", hr.Name(), "err", err)
	if serr := ev.SetWriterFailureEx(hr, app, err.Error()); serr != nil {
		w.logger.Error("coordinator: fsfreeze writer failure refused", "err", serr)
	}
}
