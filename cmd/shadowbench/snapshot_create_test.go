package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestSnapshotCreate(t *testing.T) {
	api := serveForTest(t)
	out, _, err := cli(context.Background(), "snapshot", "create", "lun0", "lun1", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `^Snapshot set \{[0-9A-F-]{36}\}: created \(S_OK\), VSS_CTX_BACKUP, \S+; held until`, out)
	require.Regexp(t, `SNAPSHOT\s+NAME\s+ORIGIN\s+CREATED\s+SIZE\s+UNIQUE\s+TARGET LUNS\s+EXPORTS`, out)
	require.Regexp(t, `lun0\s+\S+ \S+\s+64 MiB\s+0 B\s+lun0\.snap-[0-9a-f]{32}\s+nbd://127\.0\.0\.1:\d+/lun0\.snap-[0-9a-f]{32}`, out)
	require.Regexp(t, `OFFSET\s+DURATION\s+KIND\s+NAME\s+ACTOR\s+RESULT`, out)
	require.Regexp(t, `\S+\s+\S+\s+provider\s+CommitSnapshots\s+array\s+S_OK`, out)
	require.Len(t, regexp.MustCompile(`\{[0-9A-F-]{36}\}\s+-\s+lun[01]\s`).FindAllString(out, -1), 2, "two snapshots")

	var rep daemon.SetReport
	cliJSON(t, &rep, "snapshot", "create", "lun1", "--context", "app-rollback|transportable", "--backup-type", "copy", "--api", api)
	require.Equal(t, "VSS_CTX_APP_ROLLBACK|TRANSPORTABLE", rep.Context)
	require.Empty(t, rep.Snapshots[0].Exports, "a transportable set is not imported: nothing is exported")

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{}, "requires at least 1 arg(s)"},
		{[]string{"lun0", "--context", "sometimes"}, `context "sometimes": want backup, file-share-backup, app-rollback, nas-rollback`},
		{[]string{"lun0", "--backup-type", "partial"}, `backup type "partial"`},
		{[]string{"lun0", "--provider", "emc"}, `provider "emc": VSS_E_PROVIDER_NOT_REGISTERED (0x80042304)`},
		{[]string{"nope"}, "AddToSnapshotSet(nope): VSS_E_OBJECT_NOT_FOUND (0x80042308): volume nope"},
		{[]string{"lun0", "--writer", "shell:x"}, `--writer "shell:x": want exec:COMMAND or fsfreeze:MOUNTPOINT`},
		{[]string{"lun0", "--writer", "exec:"}, `--writer "exec:": exec: names no command`},
		{[]string{"lun0", "--writer", "fsfreeze:" + t.TempDir()}, "coordinator: fsfreeze writer: not a mount point"},
	} {
		_, _, err := cli(context.Background(), append(append([]string{"snapshot", "create"}, tc.args...), "--api", api)...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}

	// A set that never ran says its error first, and records its code,
	// not S_OK.
	out, stderr, err := cli(context.Background(), "snapshot", "create", "nope", "--api", api)
	require.Error(t, err)
	require.True(t, strings.HasPrefix(stderr, "shadowbench: AddToSnapshotSet(nope): VSS_E_OBJECT_NOT_FOUND"), stderr)
	require.Contains(t, out, "abandoned (VSS_E_OBJECT_NOT_FOUND)")
	var sets []daemon.SetSummary
	cliJSON(t, &sets, "snapshot", "list", "--sets", "--api", api)
	require.Equal(t, "VSS_E_OBJECT_NOT_FOUND", sets[len(sets)-1].Result)
}

// TestSnapshotCreateWithExecWriter checks --writer exec: the command runs
// in the client for every event of this set, and its veto at Freeze shows
// in the set's writer status.
func TestSnapshotCreateWithExecWriter(t *testing.T) {
	api := serveForTest(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "hook.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
echo "$1 $SHADOWBENCH_EVENT $SHADOWBENCH_VOLUMES" >> "$(dirname "$0")/events"
[ "$SHADOWBENCH_EVENT" = Freeze ] && echo "veto VSS_E_WRITERERROR_RETRYABLE"
exit 0
`), 0o755))
	var rep daemon.SetReport
	out, stderr, err := cli(context.Background(), "snapshot", "create", "lun0", "--writer", "exec:"+script, "--json", "--api", api)
	require.NoError(t, err, stderr)
	require.NoError(t, jsonUnmarshal(out, &rep))
	require.Equal(t, "created", rep.State, "a veto does not fail the set")
	require.Len(t, rep.Writers, 1)
	require.Regexp(t, `^exec:[A-Za-z0-9._:-]*hook\.sh-[0-9a-f]{4}$`, rep.Writers[0].Name)
	require.Equal(t, "VSS_WS_FAILED_AT_FREEZE", rep.Writers[0].State)
	require.Equal(t, "VSS_E_WRITERERROR_RETRYABLE", rep.Writers[0].Failure)
	require.Regexp(t, `hook\.sh-[0-9a-f]{4} Freeze set \{[0-9A-F-]{36}\}: veto VSS_E_WRITERERROR_RETRYABLE in `, stderr,
		"each event is reported on stderr")
	events, err := os.ReadFile(filepath.Join(dir, "events"))
	require.NoError(t, err)
	// Failed at Freeze, the writer is thawed and gets nothing more of the
	// sequence (coordinator, rule D, failed states).
	require.Equal(t, "Identify Identify \nPrepareForBackup PrepareForBackup lun0\nPrepareForSnapshot PrepareForSnapshot lun0\n"+
		"Freeze Freeze lun0\nThaw Thaw lun0\n", string(events))
	var ws []daemon.WriterInfo
	cliJSON(t, &ws, "writer", "list", "--api", api)
	require.Empty(t, ws, "the ephemeral writer is gone")
}
