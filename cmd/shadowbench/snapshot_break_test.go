package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestSnapshotBreak(t *testing.T) {
	api := serveForTest(t)
	rep := createSet(t, api, "lun0", "--context", "app-rollback")
	target := rep.Snapshots[0].TargetLUNs[0]
	_, _, err := cli(context.Background(), "snapshot", "break", rep.ID.String(), "--revert-identity", "all", "--api", api)
	require.ErrorContains(t, err, "VSS_E_BREAK_REVERT_ID_FAILED", "the original LUN still holds the identity")
	_, _, err = cli(context.Background(), "snapshot", "break", rep.ID.String(), "--revert-identity", "some", "--api", api)
	require.ErrorContains(t, err, `revert_identity "some": want all, none or nothing`)

	out, _, err := cli(context.Background(), "snapshot", "break", rep.ID.String(), "--make-read-write", "--api", api)
	require.NoError(t, err)
	require.Equal(t, "snapshot set "+rep.ID.String()+" broken (flags VSS_BREAKEX_FLAG_MAKE_READ_WRITE); these LUNs are now ordinary LUNs: "+target+"\n", out)
	var l daemon.LUNInfo
	cliJSON(t, &l, "lun", "list", target, "--api", api)
	require.False(t, l.ReadOnly)
	var snaps []daemon.SnapshotInfo
	cliJSON(t, &snaps, "snapshot", "list", "--api", api)
	require.Empty(t, snaps)

	rep = createSet(t, api, "lun1", "--context", "app-rollback")
	var br daemon.BreakResult
	cliJSON(t, &br, "snapshot", "break", rep.ID.String(), "--mask", "--api", api)
	require.Equal(t, "VSS_BREAKEX_FLAG_MASK_LUNS", br.Flags)
	cliJSON(t, &l, "lun", "list", br.LUNs[0], "--api", api)
	require.True(t, l.Masked)
	_, _, err = cli(context.Background(), "snapshot", "break", rep.ID.String(), "--api", api)
	require.ErrorContains(t, err, "VSS_E_OBJECT_NOT_FOUND", "a set is broken once")
}
