package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestSnapshotDelete(t *testing.T) {
	api := serveForTest(t)
	rep := createSet(t, api, "lun0", "lun1")
	require.True(t, rep.Held)
	out, _, err := cli(context.Background(), "snapshot", "delete", rep.Snapshots[0].ID.String(), "--api", api)
	require.NoError(t, err)
	require.Equal(t, "deleted "+rep.Snapshots[0].ID.String()+"\n", out)
	var res daemon.DeleteResult
	cliJSON(t, &res, "snapshot", "delete", "--set", rep.ID.String(), "--api", api)
	require.Equal(t, []string{rep.Snapshots[1].ID.String()}, res.Deleted)
	require.Equal(t, rep.ID, *res.Set)
	var sets []daemon.SetSummary
	cliJSON(t, &sets, "snapshot", "list", "--sets", "--api", api)
	require.Empty(t, sets, "the deleted set left the listing")
	var ls []daemon.LUNInfo
	cliJSON(t, &ls, "lun", "list", "--api", api)
	require.Len(t, ls, 2, "the snapshot LUNs are gone")

	_, _, err = cli(context.Background(), "snapshot", "delete", rep.Snapshots[0].ID.String(), "--api", api)
	require.ErrorContains(t, err, "no such snapshot or snapshot set: snapshot")
	_, _, err = cli(context.Background(), "snapshot", "delete", "--set", rep.ID.String(), "--api", api)
	require.ErrorContains(t, err, "no such snapshot or snapshot set: snapshot set")
	_, _, err = cli(context.Background(), "snapshot", "delete", "x", "--api", api)
	require.ErrorContains(t, err, `"x" is neither an ID nor the name of a snapshot set`)
}
