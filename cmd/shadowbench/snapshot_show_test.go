package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestSnapshotShow(t *testing.T) {
	api := serveForTest(t)
	rep := createSet(t, api, "lun0", "lun1")
	snap := rep.Snapshots[1]
	out, _, err := cli(context.Background(), "snapshot", "show", snap.ID.String(), "--api", api)
	require.NoError(t, err)
	for _, want := range []string{"snapshot", snap.ID.String(), "set", rep.ID.String(), "volume", "lun1", "VSS_CTX_BACKUP",
		"HARDWARE_ASSISTED", "array", "VSS_SS_CREATED", "export", snap.Exports[0]} {
		require.Contains(t, out, want)
	}
	// A set ID shows the set, with its timeline; braces are optional.
	bare := strings.Trim(strings.ToLower(rep.ID.String()), "{}")
	out, _, err = cli(context.Background(), "snapshot", "show", bare, "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "Snapshot set "+rep.ID.String()+": created (S_OK)")
	require.Contains(t, out, "Timeline:")
	var got daemon.SetReport
	cliJSON(t, &got, "snapshot", "show", rep.ID.String(), "--api", api)
	require.Equal(t, rep.ID, got.ID)
	require.Equal(t, len(rep.Timeline), len(got.Timeline))

	_, _, err = cli(context.Background(), "snapshot", "show", "{00000000-0000-0000-0000-000000000001}", "--api", api)
	require.EqualError(t, err, "no snapshot or snapshot set {00000000-0000-0000-0000-000000000001} [VSS_E_OBJECT_NOT_FOUND 0x80042308]")
	_, _, err = cli(context.Background(), "snapshot", "show", "--api", api)
	require.ErrorContains(t, err, "accepts 1 arg(s), received 0")
}
