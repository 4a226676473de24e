package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/dustin/go-humanize"
	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/daemon"
)

// TestSnapshotNamesAndDiff: a set made with --name is named wherever a
// snapshot or set ID is taken; snapshot list shows the name, size and
// the data a snapshot alone holds; snapshot diff gives the extents that
// changed between two snapshots, or since one.
func TestSnapshotNamesAndDiff(t *testing.T) {
	api := serveForTest(t)
	ctx := context.Background()
	c, _ := dialLUN(t, api, "lun0")
	g := int64(cow.DefaultGrain)
	write := func(b byte, grain int64) {
		require.NoError(t, c.Write(ctx, bytes.Repeat([]byte{b}, int(g)), grain*g, 0))
		require.NoError(t, c.Flush(ctx))
	}

	write(1, 0)
	first := createSet(t, api, "lun0", "--context", "app-rollback", "--name", "first")
	require.Equal(t, "first", first.Name)
	write(2, 0) // first alone holds grain 0's first bytes
	write(2, 3)
	createSet(t, api, "lun0", "--context", "app-rollback", "-n", "second")
	write(3, 7)
	write(4, 3) // second alone holds grain 3's write now

	var d daemon.SnapshotDiff
	cliJSON(t, &d, "snapshot", "diff", "first", "second", "--api", api)
	require.Len(t, d.LUNs, 1)
	require.Equal(t, []daemon.DiffExtent{{Offset: 0, Length: g}, {Offset: 3 * g, Length: g}}, d.LUNs[0].Extents)
	require.Equal(t, 2*g, d.LUNs[0].Bytes)
	cliJSON(t, &d, "snapshot", "diff", "second", "--api", api)
	require.Equal(t, "lun0", d.LUNs[0].Against, "against the volume now")
	require.Equal(t, []daemon.DiffExtent{{Offset: 3 * g, Length: g}, {Offset: 7 * g, Length: g}}, d.LUNs[0].Extents)
	out, _, err := cli(ctx, "snapshot", "diff", "first", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "against lun0: 3 extents, "+humanize.IBytes(uint64(3*g))+" changed")

	var snaps []daemon.SnapshotInfo
	cliJSON(t, &snaps, "snapshot", "list", "--api", api)
	require.Len(t, snaps, 2)
	require.Equal(t, "first", snaps[0].Name)
	require.Equal(t, int64(64<<20), snaps[0].Size)
	require.Equal(t, g, snaps[0].UniqueBytes, "first alone holds grain 0's first write")
	require.Equal(t, g, snaps[1].UniqueBytes, "second alone holds grain 3's write")
	out, _, err = cli(ctx, "snapshot", "list", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `SNAPSHOT\s+NAME\s+ORIGIN\s+CREATED\s+SIZE\s+UNIQUE\s+TARGET LUNS\s+EXPORTS`, out)
	require.Regexp(t, `first\s+lun0\s+\S+ \S+\s+64 MiB\s+`+humanize.IBytes(uint64(g)), out)

	// Names stand for IDs; a name is unique; a bad one is refused.
	var info daemon.SnapshotInfo
	cliJSON(t, &info, "snapshot", "show", "first", "--api", api)
	require.Equal(t, snaps[0].ID, info.ID)
	cliJSON(t, &info, "snapshot", "show", "first/lun0", "--api", api)
	require.Equal(t, snaps[0].ID, info.ID)
	_, _, err = cli(ctx, "snapshot", "create", "lun0", "--context", "app-rollback", "--name", "first", "--api", api)
	require.ErrorContains(t, err, "snapshot set name first is taken by set "+first.ID.String())
	_, _, err = cli(ctx, "snapshot", "create", "lun0", "--name", "no spaces", "--api", api)
	require.ErrorContains(t, err, `snapshot set name "no spaces": want 1-64 characters`)
	_, _, err = cli(ctx, "snapshot", "show", "nope", "--api", api)
	require.ErrorContains(t, err, `"nope" is neither an ID nor the name of a snapshot set`)
	_, _, err = cli(ctx, "snapshot", "show", "first/lun1", "--api", api)
	require.ErrorContains(t, err, "snapshot set first has no snapshot of volume lun1")
	_, _, err = cli(ctx, "snapshot", "diff", "first", "{00000000-0000-0000-0000-000000000001}", "--api", api)
	require.ErrorContains(t, err, "VSS_E_OBJECT_NOT_FOUND")

	out, _, err = cli(ctx, "snapshot", "delete", "--set", "first", "--api", api)
	require.NoError(t, err, out)
	var sets []daemon.SetSummary
	cliJSON(t, &sets, "snapshot", "list", "--sets", "--api", api)
	require.Len(t, sets, 1)
	require.Equal(t, "second", sets[0].Name)
	require.Equal(t, "VSS_CTX_APP_ROLLBACK", sets[0].Context)
}
