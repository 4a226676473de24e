package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// ErrInvalidExecOptions is returned, wrapped with the offending field, by
// NewExecWriter.
var ErrInvalidExecOptions = errors.New("coordinator: invalid exec writer options")

// The environment an ExecWriter command receives, besides its own.
const (
	EnvEvent         = "SHADOWBENCH_EVENT"           // The event's name, "Freeze".
	EnvSnapshotSetID = "SHADOWBENCH_SNAPSHOT_SET_ID" // "{…}", GUID_NULL before StartSnapshotSet.
	EnvContext       = "SHADOWBENCH_CONTEXT"         // "VSS_CTX_BACKUP".
	EnvBackupType    = "SHADOWBENCH_BACKUP_TYPE"     // "VSS_BT_FULL".
	EnvVolumes       = "SHADOWBENCH_VOLUMES"         // Comma-separated.
	EnvComponents    = "SHADOWBENCH_COMPONENTS"      // Comma-separated.
)

// execOutputLimit bounds what an ExecWriter keeps of a command's stdout and
// of its stderr: the last 4 KiB of each. The last line of stdout is all the
// verdict needs and the end of stderr is where the error usually is, so a
// chatty command costs bounded memory.
const execOutputLimit = 4 << 10

// defaultExecWaitDelay is ExecOptions.WaitDelay's default.
const defaultExecWaitDelay = time.Second

// ExecOptions configure an ExecWriter.
type ExecOptions struct {
	// Command runs for every event that Commands does not name, with the
	// event's name appended as its last argument: {"/usr/local/bin/hook"}
	// runs "/usr/local/bin/hook Freeze". Command[0] is looked up in PATH
	// if it has no slash.
	Command []string
	// Commands are per-event commands, run as they are. An event that
	// neither Commands nor Command covers answers true without running
	// anything.
	Commands map[vss.WriterEvent][]string
	// Timeout bounds each run, in addition to ev.Ctx; 0 means ev.Ctx alone.
	Timeout time.Duration
	// WaitDelay is how long, after the command was killed or exited, the
	// writer waits for its output pipes to close before closing them itself
	// (exec.Cmd.WaitDelay); 0 means one second. It matters only for a
	// process that left the command's process group and kept its output.
	WaitDelay time.Duration
	// Dir is the commands' working directory; empty means the current one.
	Dir string
	// Env is appended to the process's environment, before the
	// SHADOWBENCH_* variables, which therefore win.
	Env []string
	// Components are declared into ev.Metadata by OnIdentify.
	Components []ComponentInfo
	// Logger receives a record per run; nil discards them.
	Logger *slog.Logger
}

// ExecWriter is a Writer that runs a command per event, so a script (one
// calling fsfreeze, or a database's flush) takes part in a sequence.
//
// The command learns the event from its environment (EnvEvent and the rest)
// and answers with its exit status: 0 is true, anything else is a fatal
// false with VSS_E_WRITERERROR_NONRETRYABLE. A command may choose its answer
// instead by making the last line of its stdout one of:
//
//	ok                 true (only with exit status 0)
//	veto [HRESULT]     SetWriterFailure(HRESULT), then true
//	fail [HRESULT]     SetWriterFailure(HRESULT), then false
//
// The HRESULT is a name or "0x…" as vss.ParseHRESULT reads it and defaults to
// VSS_E_WRITERERROR_NONRETRYABLE. veto and fail are honoured whatever the exit
// status, since they are more precise than it; ok is not, because a command
// that printed ok and then exited non-zero failed after its verdict. A last
// line that starts with ok, veto or fail but does not parse is a fatal false.
//
// Each failure is recorded with SetWriterFailureEx, whose message carries
// the end of the command's stderr (execOutputLimit), and is logged. At
// Identify, where SetWriterFailure is forbidden, a failure is only logged.
//
// A command that outlives ev.Ctx or Timeout is killed together with its
// process group, and the event fails with VSS_E_WRITERERROR_TIMEOUT. When a
// command exits, whatever it left running in its process group is killed
// too: an event's command may not leave processes behind. A helper that
// must outlive the event (a lock holder between Freeze and Thaw) has to
// start a session of its own (setsid) and close its output. A killed
// command that is stuck in the kernel (uninterruptible sleep, as a write to
// a frozen file system is) holds the callback until it dies.
type ExecWriter struct {
	opts   ExecOptions
	logger *slog.Logger
}

var _ Writer = (*ExecWriter)(nil)

// NewExecWriter returns an ExecWriter after checking opts: some command, no
// empty command, only writer events, no negative duration. It keeps a copy
// of opts.
func NewExecWriter(opts ExecOptions) (*ExecWriter, error) {
	if len(opts.Command) == 0 && len(opts.Commands) == 0 {
		return nil, fmt.Errorf("%w: neither Command nor Commands is set", ErrInvalidExecOptions)
	}
	if opts.Command != nil && (len(opts.Command) == 0 || opts.Command[0] == "") {
		return nil, fmt.Errorf("%w: Command has no program", ErrInvalidExecOptions)
	}
	for e, argv := range opts.Commands {
		if !slices.Contains(vss.WriterEvents(), e) {
			return nil, fmt.Errorf("%w: Commands: %v is not a writer event", ErrInvalidExecOptions, e)
		}
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("%w: Commands: %v has no program", ErrInvalidExecOptions, e)
		}
	}
	if opts.Timeout < 0 || opts.WaitDelay < 0 {
		return nil, fmt.Errorf("%w: negative Timeout or WaitDelay", ErrInvalidExecOptions)
	}
	// A program that cannot be run is refused now: found at the first
	// event, it could only fail Identify, where a writer cannot say why.
	for _, argv := range append([][]string{opts.Command}, slices.Collect(maps.Values(opts.Commands))...) {
		if len(argv) > 0 {
			if err := runnable(argv[0], opts.Dir); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidExecOptions, err)
			}
		}
	}
	if err := (Script{Components: opts.Components}).Validate(); err != nil {
		return nil, fmt.Errorf("%w: Components: %w", ErrInvalidExecOptions, err)
	}
	opts.Command = slices.Clone(opts.Command)
	opts.Commands = maps.Clone(opts.Commands)
	for e, argv := range opts.Commands {
		opts.Commands[e] = slices.Clone(argv)
	}
	opts.Env = slices.Clone(opts.Env)
	opts.Components = cloneComponents(opts.Components)
	if opts.WaitDelay == 0 {
		opts.WaitDelay = defaultExecWaitDelay
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ExecWriter{opts: opts, logger: logger}, nil
}

// OnIdentify declares the configured components into ev.Metadata, then runs
// the Identify command.
func (w *ExecWriter) OnIdentify(ev *Event) bool {
	if ev.Metadata != nil {
		for _, c := range cloneComponents(w.opts.Components) {
			ev.Metadata.AddComponent(c)
		}
	}
	return w.run(vss.EventIdentify, ev)
}

// OnPrepareBackup implements Writer.
func (w *ExecWriter) OnPrepareBackup(ev *Event) bool { return w.run(vss.EventPrepareForBackup, ev) }

// OnPrepareSnapshot implements Writer.
func (w *ExecWriter) OnPrepareSnapshot(ev *Event) bool {
	return w.run(vss.EventPrepareForSnapshot, ev)
}

// OnFreeze implements Writer.
func (w *ExecWriter) OnFreeze(ev *Event) bool { return w.run(vss.EventFreeze, ev) }

// OnThaw implements Writer.
func (w *ExecWriter) OnThaw(ev *Event) bool { return w.run(vss.EventThaw, ev) }

// OnPostSnapshot implements Writer.
func (w *ExecWriter) OnPostSnapshot(ev *Event) bool { return w.run(vss.EventPostSnapshot, ev) }

// OnAbort implements Writer.
func (w *ExecWriter) OnAbort(ev *Event) bool { return w.run(vss.EventAbort, ev) }

// OnBackupComplete implements Writer.
func (w *ExecWriter) OnBackupComplete(ev *Event) bool { return w.run(vss.EventBackupComplete, ev) }

// OnBackupShutdown implements Writer.
func (w *ExecWriter) OnBackupShutdown(ev *Event) bool { return w.run(vss.EventBackupShutdown, ev) }

// OnPreRestore implements Writer.
func (w *ExecWriter) OnPreRestore(ev *Event) bool { return w.run(vss.EventPreRestore, ev) }

// OnPostRestore implements Writer.
func (w *ExecWriter) OnPostRestore(ev *Event) bool { return w.run(vss.EventPostRestore, ev) }

// argv returns the command for event e, or nil if the writer has none.
func (w *ExecWriter) argv(e vss.WriterEvent) []string {
	if argv, ok := w.opts.Commands[e]; ok {
		return slices.Clone(argv)
	}
	if len(w.opts.Command) == 0 {
		return nil
	}
	return append(slices.Clone(w.opts.Command), e.String())
}

// environ returns the command's environment for ev.
func (w *ExecWriter) environ(e vss.WriterEvent, ev *Event) []string {
	env := append(os.Environ(), w.opts.Env...)
	return append(env,
		EnvEvent+"="+e.String(),
		EnvSnapshotSetID+"="+ev.SnapshotSetID.String(),
		EnvContext+"="+ev.Context.String(),
		EnvBackupType+"="+ev.BackupType.String(),
		EnvVolumes+"="+strings.Join(ev.Volumes, ","),
		EnvComponents+"="+strings.Join(ev.Components, ","),
	)
}

// run runs the command for event e and turns its outcome into the answer.
func (w *ExecWriter) run(e vss.WriterEvent, ev *Event) bool {
	argv := w.argv(e)
	if argv == nil {
		return true
	}
	ctx := ev.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if w.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.opts.Timeout)
		defer cancel()
	}
	var stdout, stderr tailBuffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = w.opts.Dir
	cmd.Env = w.environ(e, ev)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = w.opts.WaitDelay
	start := time.Now()
	err := runInGroup(cmd)
	took := time.Since(start)
	if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil {
		// The command exited 0 but something it left outside its process
		// group kept its output open; its answer stands.
		w.logger.Warn("coordinator: exec writer command left its output open", "event", e.String(), "command", argv)
		err = nil
	}

	log := w.logger.With("event", e.String(), "command", argv, "took", took)
	if cmd.ProcessState != nil {
		log = log.With("exit", cmd.ProcessState.ExitCode())
	}
	errOut := strings.TrimSpace(stderr.String())
	verdict, code, perr := parseVerdict(lastLine(stdout.String()))

	// fatal records hr (unless at Identify) and logs, and returns false.
	fatal := func(hr vss.HRESULT, why string) bool {
		w.failure(e, ev, log, hr, vss.FromError(err), why, errOut)
		return false
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return fatal(vss.VSS_E_WRITERERROR_TIMEOUT, fmt.Sprintf("%s %v: killed: %v", argv[0], e, context.Cause(ctx)))
	case perr != nil:
		return fatal(vss.VSS_E_WRITERERROR_NONRETRYABLE, fmt.Sprintf("%s %v: %v", argv[0], e, perr))
	case verdict == "veto":
		w.failure(e, ev, log.With("verdict", "veto"), code, vss.FromError(err), fmt.Sprintf("%s %v: veto", argv[0], e), errOut)
		return true
	case verdict == "fail":
		return fatal(code, fmt.Sprintf("%s %v: fail", argv[0], e))
	case err != nil:
		return fatal(vss.VSS_E_WRITERERROR_NONRETRYABLE, fmt.Sprintf("%s %v: %v", argv[0], e, err))
	}
	log.Debug("coordinator: exec writer command succeeded", "stderr", errOut)
	return true
}

// runnable checks that prog names an executable file: in $PATH for a
// bare name, else relative to dir (the command's working directory).
func runnable(prog, dir string) error {
	p := prog
	if strings.Contains(p, "/") && !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	_, err := exec.LookPath(p)
	var pe *fs.PathError
	var ee *exec.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &ee):
		err = ee.Err
	}
	return fmt.Errorf("program %q cannot be run: %w", prog, err)
}

// failure records a failure of event e with SetWriterFailureEx, its message
// made of why and the command's stderr, and logs it. Identify only logs:
// SetWriterFailure is forbidden there.
func (w *ExecWriter) failure(e vss.WriterEvent, ev *Event, log *slog.Logger, hr, app vss.HRESULT, why, errOut string) {
	msg := why
	if errOut != "" {
		msg += ": " + errOut
	}
	log = log.With("hr", hr.Name(), "stderr", errOut)
	if e == vss.EventIdentify {
		log.Warn("coordinator: exec writer command failed at Identify", "why", why)
		return
	}
	if err := ev.SetWriterFailureEx(hr, app, msg); err != nil {
		log.Error("coordinator: exec writer failure refused", "why", why, "err", err)
		return
	}
	log.Warn("coordinator: exec writer command failed", "why", why)
}

// parseVerdict reads a command's last line of stdout. A line that is not a
// verdict gives "" and no error.
func parseVerdict(line string) (verdict string, hr vss.HRESULT, err error) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return "", 0, nil
	}
	switch fields[0] {
	case "ok":
		if len(fields) != 1 {
			return "", 0, fmt.Errorf("malformed verdict %q: ok takes no argument", line)
		}
		return "ok", 0, nil
	case "veto", "fail":
	default:
		return "", 0, nil
	}
	hr = vss.VSS_E_WRITERERROR_NONRETRYABLE
	switch len(fields) {
	case 1:
	case 2:
		var err error
		if hr, err = vss.ParseHRESULT(fields[1]); err != nil {
			return "", 0, fmt.Errorf("malformed verdict %q: %w", line, err)
		}
	default:
		return "", 0, fmt.Errorf("malformed verdict %q: %s takes one HRESULT", line, fields[0])
	}
	return fields[0], hr, nil
}

// lastLine returns the last non-blank line of s.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// tailBuffer is an io.Writer that keeps the last execOutputLimit bytes
// written to it. exec.Cmd writes to it from one goroutine and the writer
// reads it after Wait, so it needs no lock.
type tailBuffer struct {
	buf       []byte
	truncated bool
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= execOutputLimit {
		t.buf = append(t.buf[:0], p[len(p)-execOutputLimit:]...)
		t.truncated = true
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - execOutputLimit; over > 0 {
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
		t.truncated = true
	}
	return n, nil
}

// String returns what was kept, with a mark if the beginning was dropped.
func (t *tailBuffer) String() string {
	s := string(bytes.ToValidUTF8(t.buf, []byte("\uFFFD")))
	if t.truncated {
		return "…" + s
	}
	return s
}
