package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

// TestWriterAttach runs an external writer end to end: a shell script
// attached with writer attach vetoes Freeze, and the set's writer status
// shows the veto; when the attached command line stops, the writer is
// detached.
func TestWriterAttach(t *testing.T) {
	api := serveForTest(t)
	script := filepath.Join(t.TempDir(), "db-hook.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
case "$SHADOWBENCH_EVENT" in
Freeze) echo "flushing $SHADOWBENCH_VOLUMES"; echo "veto VSS_E_WRITERERROR_RETRYABLE" ;;
Thaw) [ "$1" = Thaw ] || exit 3 ;;
esac
`), 0o755))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"writer", "attach", "db", "--level", "back-end", "--freeze-timeout", "5s", "--api", api, "--", script}, &out, &errb)
	}()
	var ws []daemon.WriterInfo
	require.Eventually(t, func() bool {
		cliJSON(t, &ws, "writer", "list", "--api", api)
		return len(ws) == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, "db", ws[0].Name)
	require.Equal(t, "back-end", ws[0].Level)
	// The CLI prints after the daemon has registered the writer: wait for it.
	attached := "writer db attached as " + ws[0].ID.String() + "; waiting for events (Ctrl-C to detach)"
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), attached) }, 10*time.Second, 5*time.Millisecond, errb.String())
	list, _, err := cli(context.Background(), "writer", "list", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `db\s+remote\s+back-end\s+\{[0-9A-F-]{36}\}\s+subscribed`, list)

	rep := createSet(t, api, "lun0", "--context", "app-rollback")
	require.Equal(t, "created", rep.State)
	require.Equal(t, []daemon.WriterStatusReport{{Name: "db", InstanceID: ws[0].InstanceID, State: "VSS_WS_FAILED_AT_FREEZE",
		Failure: "VSS_E_WRITERERROR_RETRYABLE", Message: rep.Writers[0].Message}}, rep.Writers)
	require.Contains(t, rep.Writers[0].Message, "veto")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), " BackupShutdown ") }, 10*time.Second, 5*time.Millisecond,
		"the set's requester was released")
	require.Regexp(t, `db Freeze set \{[0-9A-F-]{36}\}: veto VSS_E_WRITERERROR_RETRYABLE in \S+: \S+db-hook.sh Freeze: veto\n`, out.String())
	require.Regexp(t, `db Thaw set \{[0-9A-F-]{36}\}: ok in \S+\n`, out.String())

	cancel() // what SIGINT does to the command line
	require.NoError(t, <-done)
	cliJSON(t, &ws, "writer", "list", "--api", api)
	require.Empty(t, ws, "the writer detached")

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"db"}, "requires at least 2 arg(s), only received 1"},
		{[]string{"db", script}, "writer attach: give the NAME, then -- and the command"},
		{[]string{"db", "x", "--", script}, "writer attach: give the NAME, then -- and the command"},
		{[]string{"db", "--level", "middle", "--", script}, `bad request: level "middle": want front-end, back-end or system`},
		{[]string{"db", "--freeze-timeout", "soon", "--", script}, `invalid argument "soon" for "--freeze-timeout"`},
		{[]string{"db", "--", "/nonexistent/hook"}, `writer db: coordinator: invalid exec writer options: program "/nonexistent/hook" cannot be run: no such file or directory`},
	} {
		_, _, err := cli(context.Background(), append([]string{"writer", "attach", "--api", api}, tc.args...)...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}

// TestWriterKilledIsDropped: a writer attached from a process killed with
// SIGKILL while it runs Freeze is dropped within about a second (its link
// closed), so the set ends then rather than at the freeze window's end
// (60 s here); while the set waits, snapshot create says on what.
func TestWriterKilledIsDropped(t *testing.T) {
	api := serveForTest(t)
	script := filepath.Join(t.TempDir(), "hang.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = Freeze ] && exec sleep 600\nexit 0\n"), 0o755))
	child := exec.Command(os.Args[0], "writer", "attach", "db", "--freeze-timeout", "60s", "--api", api, "--", script)
	child.Env = append(os.Environ(), envRunMain+"=1")
	require.NoError(t, child.Start())
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	require.Eventually(t, func() bool {
		var ws []daemon.WriterInfo
		cliJSON(t, &ws, "writer", "list", "--api", api)
		return len(ws) == 1
	}, 10*time.Second, 5*time.Millisecond)

	defer func(d time.Duration) { progressAfter = d }(progressAfter)
	progressAfter = 100 * time.Millisecond
	type result struct {
		out, stderr string
		err         error
		took        time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		out, stderr, err := cli(context.Background(), "snapshot", "create", "lun0", "--context", "app-rollback", "--api", api)
		done <- result{out, stderr, err, time.Since(start)}
	}()
	c, err := daemon.ClientFor(api, "")
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool {
		p, err := c.Progress(context.Background())
		if err != nil {
			return false
		}
		for _, s := range p.Running {
			if s.Kind == "writer" && s.Name == "Freeze" && s.Actor == "db" {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "the set waits on db's Freeze")
	time.Sleep(300 * time.Millisecond) // a progress line or two
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	killed := time.Now()

	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("snapshot create still waits on the killed writer after 30 s")
	}
	t.Logf("set ended %v after the kill", time.Since(killed))
	require.Less(t, r.took, 30*time.Second, r.stderr)
	require.Contains(t, r.stderr, "waiting on phase Freeze")
	require.Contains(t, r.stderr, "writer Freeze of db")
	require.Contains(t, r.out, "created")
	var ws []daemon.WriterInfo
	cliJSON(t, &ws, "writer", "list", "--api", api)
	require.Empty(t, ws, "the killed writer is dropped")
}
