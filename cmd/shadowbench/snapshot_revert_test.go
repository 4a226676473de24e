package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/nbd"
)

func TestSnapshotRevert(t *testing.T) {
	api := serveForTest(t)
	ctx := context.Background()
	c, addr := dialLUN(t, api, "lun0")
	require.NoError(t, c.Write(ctx, []byte("old"), 0, 0))
	rep := createSet(t, api, "lun0", "--context", "app-rollback")
	require.NoError(t, c.Write(ctx, []byte("new"), 0, 0))

	// Refused while the client is connected; --force disconnects it.
	_, _, err := cli(ctx, "snapshot", "revert", rep.Snapshots[0].ID.String(), "--api", api)
	require.ErrorContains(t, err, "lun0 (1 NBD connections)")
	out, _, err := cli(ctx, "snapshot", "revert", "--force", rep.Snapshots[0].ID.String(), "--api", api)
	require.NoError(t, err)
	require.Equal(t, "volume lun0 (lun0) reverted to snapshot "+rep.Snapshots[0].ID.String()+"\n", out)
	c, err = nbd.Dial(ctx, "tcp", addr, &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 3)
	require.NoError(t, c.Read(ctx, buf, 0))
	require.Equal(t, "old", string(buf))

	_, _, err = cli(ctx, "snapshot", "revert", "{00000000-0000-0000-0000-000000000001}", "--api", api)
	require.ErrorContains(t, err, "VSS_E_OBJECT_NOT_FOUND")
}
