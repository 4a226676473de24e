package daemon

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
)

// TestDeleteLUNInUse: a LUN with a snapshot, a set's snapshot LUN and a LUN
// an NBD client has open are refused, each saying why; --force deletes
// them, the snapshot through the service, so that the set's records go too.
func TestDeleteLUNInUse(t *testing.T) {
	ctx := context.Background()
	d, c, snaps := startWithSnapshot(t)
	snapLUN := snaps[0].TargetLUNs[0]

	_, err := c.DeleteLUN(ctx, "lun0", false)
	requireConflict(t, err)
	require.ErrorContains(t, err, "it has snapshot "+snapLUN)
	require.ErrorContains(t, err, "--force")
	_, err = c.DeleteLUN(ctx, snapLUN, false)
	requireConflict(t, err)
	require.ErrorContains(t, err, "it is snapshot "+snaps[0].ID.String())

	nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun1"})
	require.NoError(t, err)
	_, err = c.DeleteLUN(ctx, "lun1", false)
	requireConflict(t, err)
	require.ErrorContains(t, err, "1 NBD connections have it open")
	res, err := c.DeleteLUN(ctx, "lun1", true)
	require.NoError(t, err)
	require.Equal(t, []string{"lun1"}, res.Deleted)
	_ = nc.Close()

	res, err = c.DeleteLUN(ctx, "lun0", true)
	require.NoError(t, err)
	require.Equal(t, []string{snapLUN, "lun0"}, res.Deleted, "the snapshot first, then its origin")
	snaps, err = c.Snapshots(ctx)
	require.NoError(t, err)
	require.Empty(t, snaps, "the set's snapshot went through the service")
	luns, err := c.LUNs(ctx)
	require.NoError(t, err)
	require.Empty(t, luns)
}

func requireConflict(t *testing.T, err error) {
	t.Helper()
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusConflict, ae.Status, "%v", err)
}

// TestRevertWithClients: a revert is refused while an NBD client has the
// volume's LUN open; --force disconnects the client, whose next request
// fails, and reverts.
func TestRevertWithClients(t *testing.T) {
	ctx := context.Background()
	d, c, snaps := startWithSnapshot(t)

	nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	defer nc.Close()
	_, err = c.RevertSnapshot(ctx, snaps[0].ID, false)
	requireConflict(t, err)
	require.ErrorContains(t, err, "lun0 (1 NBD connections)")
	require.NoError(t, nc.Flush(ctx), "the refused revert left the client alone")

	_, err = c.RevertSnapshot(ctx, snaps[0].ID, true)
	require.NoError(t, err)
	require.Error(t, nc.Flush(ctx), "the client was disconnected")
	lun0 := d.mustLUN(t, "lun0")
	require.Eventually(t, func() bool { return d.nbd.Connections(lun0) == 0 }, 5*time.Second, time.Millisecond)
}

func (d *Daemon) mustLUN(t *testing.T, name string) *lun.LUN {
	t.Helper()
	l, err := d.array.Get(name)
	require.NoError(t, err)
	return l
}

// startWithSnapshot starts a daemon holding one APP_ROLLBACK set of lun0.
func startWithSnapshot(t *testing.T) (*Daemon, *Client, []SnapshotInfo) {
	t.Helper()
	d, c := start(t, testConfig())
	_, err := c.CreateSet(context.Background(), CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
	require.NoError(t, err)
	snaps, err := c.Snapshots(context.Background())
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	return d, c, snaps
}
