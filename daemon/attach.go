package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/vss"
)

// pollWait is how long a client's poll asks to wait; the daemon shortens
// it to half its remote-writer timeout.
const pollWait = 20 * time.Second

// LocalWriter is a writer that runs in the client's process and takes part
// in the daemon's sets as a remote writer: its callbacks run here, with
// the client's user, environment and working directory.
type LocalWriter struct {
	Registration WriterRegistration
	Writer       coordinator.Writer
	// Close releases the writer's resources (an fsfreeze writer thaws);
	// nil for none.
	Close func() error
}

// ParseLocalWriter reads a --writer value of snapshot create:
// "exec:COMMAND [ARGS...]" (split at white space, no shell; the event's
// name is appended, as coordinator.ExecWriter does) or
// "fsfreeze:MOUNTPOINT". The writer is named after spec, with a random
// suffix so that two clients' writers never collide; characters a writer
// name may not hold (white space, slashes) become '_', and a long spec is
// cut, so that the name keeps the rule of LUN names (checkWriterName).
func ParseLocalWriter(spec string, log *slog.Logger) (LocalWriter, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	name := fmt.Sprintf("%s-%04x", writerNameOf(spec, maxWriterName-5), rand.Uint32N(1<<16))
	lw := LocalWriter{Registration: WriterRegistration{Name: name, Ephemeral: true}}
	switch kind {
	case "exec":
		argv := strings.Fields(arg)
		if len(argv) == 0 {
			return lw, fmt.Errorf("--writer %q: exec: names no command", spec)
		}
		w, err := coordinator.NewExecWriter(coordinator.ExecOptions{Command: argv, Logger: log})
		if err != nil {
			return lw, fmt.Errorf("--writer %q: %w", spec, err)
		}
		lw.Writer = w
	case "fsfreeze":
		if arg == "" {
			return lw, fmt.Errorf("--writer %q: fsfreeze: names no mount point", spec)
		}
		w, err := coordinator.NewFsfreezeWriter(arg, coordinator.FsfreezeOptions{Logger: log})
		if err != nil {
			return lw, fmt.Errorf("--writer %q: %w", spec, err)
		}
		lw.Writer, lw.Close = w, w.Close
	default:
		return lw, fmt.Errorf("--writer %q: want exec:COMMAND or fsfreeze:MOUNTPOINT", spec)
	}
	return lw, nil
}

// EventRecord is one event a local writer handled, for the caller to
// show.
type EventRecord struct {
	Writer string      `json:"writer"`
	Event  WireEvent   `json:"event"`
	Answer EventAnswer `json:"answer"`
	Took   Duration    `json:"took_ns"`
	// Error says why the answer did not reach the daemon (the event's
	// window passed first, say).
	Error string `json:"error,omitempty"`
}

// Attachment is a remote writer registered with the daemon, whose events
// this client runs.
type Attachment struct {
	c    *Client
	info WriterInfo
}

// Attach registers a remote writer.
func (c *Client) Attach(ctx context.Context, reg WriterRegistration) (*Attachment, error) {
	info, err := c.RegisterWriter(ctx, reg)
	if err != nil {
		return nil, err
	}
	return &Attachment{c: c, info: info}, nil
}

// Info describes the writer as the daemon registered it.
func (a *Attachment) Info() WriterInfo { return a.info }

// Serve runs w's callback for each of the daemon's events and posts the
// answer, until ctx ends; then it detaches the writer. onEvent, if not
// nil, is told of each event handled. Serve returns nil once ctx ended,
// ErrWriterDropped when the daemon forgot the writer, ErrStopping when the
// daemon shut down, and ErrUnreachable when the daemon went away: a daemon
// that comes back does not know the writer, so retrying would not help.
func (a *Attachment) Serve(ctx context.Context, w coordinator.Writer, onEvent func(EventRecord)) error {
	defer a.detach(ctx)
	lctx, stopLink := context.WithCancel(ctx)
	var linked sync.WaitGroup
	linked.Go(func() { a.holdLink(lctx) })
	defer linked.Wait()
	defer stopLink()
	for ctx.Err() == nil {
		ev, err := a.c.NextEvent(ctx, a.info.ID, pollWait)
		var ae *APIError
		switch {
		case ctx.Err() != nil:
			return nil
		case isGone(err):
			return fmt.Errorf("%w: writer %s", ErrWriterDropped, a.info.Name)
		case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
			return ErrStopping
		case err != nil:
			return err
		case ev == nil:
			continue
		}
		rec := a.run(ctx, w, ev)
		if onEvent != nil {
			onEvent(rec)
		}
	}
	return nil
}

// holdLink keeps the writer's link open until ctx ends or the daemon
// drops the writer, opening it again when a request fails: the daemon
// drops a writer whose link stays closed for a second.
func (a *Attachment) holdLink(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.c.Link(ctx, a.info.ID)
		var ae *APIError
		if isGone(err) || (errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run handles one event: w's callback within the event's window, then
// the answer.
func (a *Attachment) run(ctx context.Context, w coordinator.Writer, ev *WireEvent) EventRecord {
	rec := EventRecord{Writer: a.info.Name, Event: *ev}
	kind, err := vss.ParseWriterEvent(ev.Kind)
	if err != nil {
		rec.Error = fmt.Sprintf("unknown event %q; answered false", ev.Kind)
	}
	sc, _ := vss.ParseSnapshotContext(ev.Context)
	bt, _ := vss.ParseBackupType(ev.BackupType)
	ectx, cancel := context.WithCancel(ctx)
	if ev.Timeout > 0 {
		ectx, cancel = context.WithTimeout(ctx, time.Duration(ev.Timeout))
	}
	defer cancel()
	cev := &coordinator.Event{Ctx: ectx, Kind: kind, SnapshotSetID: ev.SnapshotSetID, Context: sc, BackupType: bt,
		Volumes: ev.Volumes, Components: ev.Components}
	if kind == vss.EventIdentify {
		cev.Metadata = &coordinator.Metadata{}
	}
	start := time.Now()
	if err == nil {
		rec.Answer.OK = safeDispatch(w, cev)
	}
	rec.Took = Duration(time.Since(start))
	if hr, app, msg, ok := cev.Failure(); ok {
		rec.Answer.Failure, rec.Answer.Message = hr.Name(), msg
		if app != 0 {
			rec.Answer.Application = app.Name()
		}
	}
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer acancel()
	if err := a.c.AnswerEvent(actx, a.info.ID, ev.ID, rec.Answer); err != nil {
		rec.Error = err.Error()
	}
	return rec
}

// safeDispatch runs the callback, turning a panic into a fatal false as
// the coordinator does.
func safeDispatch(w coordinator.Writer, ev *coordinator.Event) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			_ = ev.SetWriterFailureEx(vss.VSS_E_WRITERERROR_NONRETRYABLE, 0, fmt.Sprintf("panic: %v", p))
			ok = false
		}
	}()
	return coordinator.Call(w, ev)
}

// detach unregisters the writer; a writer the daemon dropped already is no
// error.
func (a *Attachment) detach(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = a.c.UnregisterWriter(dctx, a.info.ID)
}

// CreateSetWith runs CreateSet with local writers taking part: each is
// registered as an ephemeral remote writer, serves its events while the
// set runs, and is detached afterwards. onEvent, if not nil, is told of
// every event, one at a time.
func (c *Client) CreateSetWith(ctx context.Context, req CreateSetRequest, local []LocalWriter, onEvent func(EventRecord)) (*SetReport, error) {
	var mu sync.Mutex
	report := func(r EventRecord) {
		if onEvent != nil {
			mu.Lock()
			defer mu.Unlock()
			onEvent(r)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	req.Writers = append([]vss.ID(nil), req.Writers...)
	for _, lw := range local {
		reg := lw.Registration
		reg.Ephemeral = true
		a, err := c.Attach(ctx, reg)
		if err != nil {
			return nil, fmt.Errorf("writer %s: %w", reg.Name, err)
		}
		req.Writers = append(req.Writers, a.info.ID)
		wg.Go(func() { _ = a.Serve(sctx, lw.Writer, report) })
	}
	return c.CreateSet(ctx, req)
}

// writerNameOf makes s a writer name of at most n bytes: every character
// outside [A-Za-z0-9._:-] becomes '_'.
func writerNameOf(s string, n int) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-", c) >= 0) {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), n)])
}
