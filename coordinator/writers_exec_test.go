//go:build linux

package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// execScript writes a /bin/sh script with body to dir and returns its path.
func execScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return p
}

// execRun calls w's callback for e with an Event whose context ends after
// window, and returns the answer and what was recorded.
func execRun(t *testing.T, w Writer, e vss.WriterEvent, window time.Duration) (bool, *failure, time.Duration) {
	t.Helper()
	start := time.Now() // before the context, whose deadline is measured against it
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	ev := &Event{Ctx: ctx, Kind: e, SnapshotSetID: vss.NewID()}
	ok := callWriterEvent(w, e, ev)
	return ok, ev.end(), time.Since(start)
}

// newExecTest returns an ExecWriter running one script for every event.
func newExecTest(t *testing.T, body string) *ExecWriter {
	t.Helper()
	w, err := NewExecWriter(ExecOptions{Command: []string{execScript(t, t.TempDir(), "writer.sh", body)}})
	require.NoError(t, err)
	return w
}

// requireProcessGone waits up to a second for pid to be gone: no such
// process, or a zombie that only waits for its reaper.
func requireProcessGone(t *testing.T, pid int) {
	t.Helper()
	require.Eventually(t, func() bool {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// The state follows the command name in parentheses.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		return len(bytes.Fields(rest)) > 0 && string(bytes.Fields(rest)[0]) == "Z"
	}, time.Second, 10*time.Millisecond, "process %d is still running", pid)
}

// readPID waits for a script to have written its child's PID to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 2*time.Second, 5*time.Millisecond)
	return pid
}

func TestExecExitStatusAndVerdicts(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		ok      bool
		hr      vss.HRESULT // 0: nothing recorded.
		app     vss.HRESULT
		msgHave string
	}{
		{name: "exit 0", body: "exit 0", ok: true},
		{name: "exit 0 with ok", body: "echo working; echo ok", ok: true},
		{name: "exit 1", body: "echo 'cannot flush' >&2; exit 1", ok: false,
			hr: vss.VSS_E_WRITERERROR_NONRETRYABLE, app: vss.E_FAIL, msgHave: "cannot flush"},
		{name: "veto by name", body: "echo 'busy' >&2; echo veto VSS_E_WRITERERROR_RETRYABLE", ok: true,
			hr: vss.VSS_E_WRITERERROR_RETRYABLE, app: vss.S_OK, msgHave: "busy"},
		{name: "veto with non-zero exit", body: "echo veto 0x800423F0; exit 2", ok: true,
			hr: vss.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT, app: vss.E_FAIL, msgHave: "veto"},
		{name: "fail by hex", body: "echo fail 0x800423F1", ok: false,
			hr: vss.VSS_E_WRITERERROR_OUTOFRESOURCES, app: vss.S_OK, msgHave: "fail"},
		{name: "fail without code", body: "echo fail; echo; echo '  '", ok: false,
			hr: vss.VSS_E_WRITERERROR_NONRETRYABLE, app: vss.S_OK},
		{name: "ok does not override exit", body: "echo ok; exit 3", ok: false,
			hr: vss.VSS_E_WRITERERROR_NONRETRYABLE, app: vss.E_FAIL, msgHave: "exit status 3"},
		{name: "malformed verdict", body: "echo veto NO_SUCH_CODE", ok: false,
			hr: vss.VSS_E_WRITERERROR_NONRETRYABLE, app: vss.S_OK, msgHave: "malformed verdict"},
		{name: "not a verdict", body: "echo okay then", ok: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newExecTest(t, c.body)
			ok, f, _ := execRun(t, w, vss.EventFreeze, 10*time.Second)
			require.Equal(t, c.ok, ok)
			if c.hr == 0 {
				require.Nil(t, f)
				return
			}
			require.NotNil(t, f)
			require.Equal(t, c.hr, f.hr)
			require.Equal(t, c.app, f.app)
			require.Contains(t, f.msg, c.msgHave)
		})
	}
}

func TestExecEnvironmentAndArgument(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	script := execScript(t, dir, "writer.sh", `{ echo "arg=$1"; env | grep '^SHADOWBENCH_' | sort; echo "extra=$EXTRA"; } > "`+out+`"`)
	w, err := NewExecWriter(ExecOptions{Command: []string{script}, Env: []string{"EXTRA=yes"}})
	require.NoError(t, err)

	set := vss.NewID()
	ev := &Event{
		Ctx: t.Context(), Kind: vss.EventFreeze, SnapshotSetID: set,
		Context: vss.VSS_CTX_BACKUP, BackupType: vss.VSS_BT_FULL,
		Volumes: []string{"lun0", "lun1"}, Components: []string{"db", "log"},
	}
	require.True(t, w.OnFreeze(ev))
	require.Nil(t, ev.end())

	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, strings.Join([]string{
		"arg=Freeze",
		"SHADOWBENCH_BACKUP_TYPE=VSS_BT_FULL",
		"SHADOWBENCH_COMPONENTS=db,log",
		"SHADOWBENCH_CONTEXT=VSS_CTX_BACKUP",
		"SHADOWBENCH_EVENT=Freeze",
		"SHADOWBENCH_SNAPSHOT_SET_ID=" + set.String(),
		"SHADOWBENCH_VOLUMES=lun0,lun1",
		"extra=yes",
	}, "\n")+"\n", string(b))
}

func TestExecPerEventCommands(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	freeze := execScript(t, dir, "freeze.sh", `echo "$SHADOWBENCH_EVENT $#" >> "`+marker+`"`)
	w, err := NewExecWriter(ExecOptions{
		Commands:   map[vss.WriterEvent][]string{vss.EventFreeze: {freeze}},
		Components: []ComponentInfo{{Name: "db", Volumes: []string{"lun0"}}},
	})
	require.NoError(t, err)

	md := &Metadata{}
	ev := &Event{Ctx: t.Context(), Kind: vss.EventIdentify, Metadata: md}
	require.True(t, w.OnIdentify(ev))
	require.Equal(t, []ComponentInfo{{Name: "db", Volumes: []string{"lun0"}}}, md.Components)

	for _, e := range vss.WriterEvents() {
		ok, f, _ := execRun(t, w, e, 10*time.Second)
		require.True(t, ok, "%v", e)
		require.Nil(t, f, "%v", e)
	}
	b, err := os.ReadFile(marker)
	require.NoError(t, err)
	require.Equal(t, "Freeze 0\n", string(b), "only Freeze runs, without the event argument")
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	for _, c := range []struct {
		name          string
		window, limit time.Duration
	}{
		{"event window", 300 * time.Millisecond, 0},
		{"command limit", 10 * time.Second, 300 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "pid")
			script := execScript(t, dir, "writer.sh", `sleep 100 & echo $! > "`+pidFile+`"; wait`)
			w, err := NewExecWriter(ExecOptions{Command: []string{script}, Timeout: c.limit})
			require.NoError(t, err)

			ok, f, took := execRun(t, w, vss.EventFreeze, c.window)
			require.False(t, ok)
			require.NotNil(t, f)
			require.Equal(t, vss.VSS_E_WRITERERROR_TIMEOUT, f.hr)
			require.Contains(t, f.msg, "killed")
			require.Less(t, took, 300*time.Millisecond+time.Second, "must return within a second of the deadline")
			requireProcessGone(t, readPID(t, pidFile))
		})
	}
}

func TestExecLeftoverChildKilled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The child keeps no output open, so only the group kill ends it.
	script := execScript(t, dir, "writer.sh", `sleep 100 </dev/null >/dev/null 2>&1 & echo $! > "`+pidFile+`"; exit 0`)
	w, err := NewExecWriter(ExecOptions{Command: []string{script}})
	require.NoError(t, err)
	ok, f, took := execRun(t, w, vss.EventThaw, 10*time.Second)
	require.True(t, ok)
	require.Nil(t, f)
	require.Less(t, took, 5*time.Second)
	requireProcessGone(t, readPID(t, pidFile))
}

// execLogSink is a slog handler's output, safe to read while it is written.
type execLogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *execLogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *execLogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestExecStderrCapturedAndBounded(t *testing.T) {
	dir := t.TempDir()
	// 20000 bytes of noise, then the line that matters.
	script := execScript(t, dir, "writer.sh", `i=0; while [ $i -lt 400 ]; do printf '%049d\n' $i >&2; i=$((i+1)); done
echo "the real error" >&2; exit 7`)
	var sink execLogSink
	w, err := NewExecWriter(ExecOptions{
		Command: []string{script},
		Logger:  slog.New(slog.NewTextHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	ok, f, _ := execRun(t, w, vss.EventPrepareForSnapshot, 10*time.Second)
	require.False(t, ok)
	require.NotNil(t, f)
	require.Equal(t, vss.VSS_E_WRITERERROR_NONRETRYABLE, f.hr)
	require.True(t, strings.HasSuffix(f.msg, "the real error"), "message ends with the end of stderr: %q", f.msg[len(f.msg)-100:])
	require.Contains(t, f.msg, "exit status 7")
	require.Contains(t, f.msg, "…", "the dropped beginning is marked")
	require.Less(t, len(f.msg), execOutputLimit+200, "stderr is bounded")
	logged := sink.String()
	require.Contains(t, logged, "the real error")
	require.Contains(t, logged, "event=PrepareForSnapshot")
	require.Contains(t, logged, "hr=VSS_E_WRITERERROR_NONRETRYABLE")
}

func TestExecIdentifyFailureNotRecorded(t *testing.T) {
	w := newExecTest(t, "echo veto VSS_E_WRITERERROR_RETRYABLE")
	ok, f, _ := execRun(t, w, vss.EventIdentify, 10*time.Second)
	require.True(t, ok, "a veto answers true")
	require.Nil(t, f, "SetWriterFailure is forbidden at Identify")

	w = newExecTest(t, "exit 1")
	ok, f, _ = execRun(t, w, vss.EventIdentify, 10*time.Second)
	require.False(t, ok)
	require.Nil(t, f)
}

// TestExecCommandNotFound: a program that cannot be run is refused when
// the writer is made, saying which and why; one removed afterwards fails
// its event, naming it.
func TestExecCommandNotFound(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	_, err := NewExecWriter(ExecOptions{Command: []string{missing}})
	require.ErrorIs(t, err, ErrInvalidExecOptions)
	require.ErrorContains(t, err, fmt.Sprintf("program %q cannot be run: no such file or directory", missing))
	_, err = NewExecWriter(ExecOptions{Command: []string{"no-such-program-anywhere"}})
	require.ErrorContains(t, err, `program "no-such-program-anywhere" cannot be run: executable file not found in $PATH`)
	_, err = NewExecWriter(ExecOptions{Commands: map[vss.WriterEvent][]string{vss.EventThaw: {"./hook"}}, Dir: dir})
	require.ErrorContains(t, err, `program "./hook" cannot be run`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hook"), []byte("#!/bin/sh\n"), 0o755))
	_, err = NewExecWriter(ExecOptions{Commands: map[vss.WriterEvent][]string{vss.EventThaw: {"./hook"}}, Dir: dir})
	require.NoError(t, err, "relative to Dir")

	gone := filepath.Join(dir, "gone")
	require.NoError(t, os.WriteFile(gone, []byte("#!/bin/sh\n"), 0o755))
	w, err := NewExecWriter(ExecOptions{Command: []string{gone}})
	require.NoError(t, err)
	require.NoError(t, os.Remove(gone))
	ok, f, _ := execRun(t, w, vss.EventFreeze, 10*time.Second)
	require.False(t, ok)
	require.NotNil(t, f)
	require.Equal(t, vss.VSS_E_WRITERERROR_NONRETRYABLE, f.hr)
	require.Contains(t, f.msg, "gone")
}

func TestExecOptionsValidated(t *testing.T) {
	for name, o := range map[string]ExecOptions{
		"no command":        {},
		"empty program":     {Command: []string{""}},
		"empty per-event":   {Commands: map[vss.WriterEvent][]string{vss.EventFreeze: {}}},
		"not an event":      {Commands: map[vss.WriterEvent][]string{42: {"/bin/true"}}},
		"negative timeout":  {Command: []string{"/bin/true"}, Timeout: -1},
		"unnamed component": {Command: []string{"/bin/true"}, Components: []ComponentInfo{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewExecWriter(o)
			require.ErrorIs(t, err, ErrInvalidExecOptions)
		})
	}
}

func TestExecTailBuffer(t *testing.T) {
	var b tailBuffer
	_, _ = b.Write([]byte("hello "))
	_, _ = b.Write([]byte("world"))
	require.Equal(t, "hello world", b.String())

	b = tailBuffer{}
	big := bytes.Repeat([]byte("a"), execOutputLimit)
	_, _ = b.Write(big)
	_, _ = b.Write([]byte("END"))
	require.Len(t, b.buf, execOutputLimit)
	require.True(t, strings.HasSuffix(b.String(), "aEND"))
	require.True(t, strings.HasPrefix(b.String(), "…"))

	b = tailBuffer{}
	_, _ = b.Write(append(big, "XYZ"...))
	require.Len(t, b.buf, execOutputLimit)
	require.True(t, strings.HasSuffix(b.String(), "XYZ"))
}
