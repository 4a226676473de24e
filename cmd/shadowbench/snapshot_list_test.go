package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

// createSet runs snapshot create with --json and returns the report.
func createSet(t *testing.T, api string, args ...string) daemon.SetReport {
	t.Helper()
	var rep daemon.SetReport
	cliJSON(t, &rep, append(append([]string{"snapshot", "create"}, args...), "--api", api)...)
	return rep
}

func TestSnapshotList(t *testing.T) {
	api := serveForTest(t)
	out, _, err := cli(context.Background(), "snapshot", "list", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `^SNAPSHOT\s+NAME\s+ORIGIN\s+CREATED\s+SIZE\s+UNIQUE\s+TARGET LUNS\s+EXPORTS\s*$`, out, "no snapshot yet")
	rep := createSet(t, api, "lun0", "--context", "app-rollback")

	out, _, err = cli(context.Background(), "snapshot", "list", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, rep.Snapshots[0].ID.String())
	require.Contains(t, out, rep.Snapshots[0].Exports[0])
	var snaps []daemon.SnapshotInfo
	cliJSON(t, &snaps, "snapshot", "list", "--api", api)
	require.Len(t, snaps, 1)
	require.Equal(t, rep.ID, snaps[0].SetID)

	out, _, err = cli(context.Background(), "snapshot", "list", "--sets", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `SET\s+NAME\s+CONTEXT\s+STATE\s+RESULT\s+SNAPSHOTS\s+HELD\s+STARTED`, out)
	require.Regexp(t, `\Q`+rep.ID.String()+`\E\s+-\s+APP_ROLLBACK\s+created\s+S_OK\s+1\s+false\s`, out)
	_, _, err = cli(context.Background(), "snapshot", "list", "extra", "--api", api)
	require.ErrorContains(t, err, `unknown command "extra"`)
}
