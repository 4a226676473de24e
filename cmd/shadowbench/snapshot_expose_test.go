package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSnapshotExpose(t *testing.T) {
	api := serveForTest(t)
	rep := createSet(t, api, "lun0", "--context", "nas-rollback")
	snap := rep.Snapshots[0]
	out, _, err := cli(context.Background(), "snapshot", "expose", snap.ID.String(), "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "snapshot "+snap.ID.String()+" exposed as "+snap.TargetLUNs[0])
	require.Contains(t, out, snap.Exports[0])

	// A transportable set is not imported, so it cannot be exposed.
	rep = createSet(t, api, "lun1", "--context", "nas-rollback|transportable")
	_, _, err = cli(context.Background(), "snapshot", "expose", rep.Snapshots[0].ID.String(), "--api", api)
	require.ErrorContains(t, err, "is not surfaced; import it first")
	require.ErrorContains(t, err, "VSS_E_BAD_STATE")
}
