package coordinator

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// TestForgetSet: a set's record goes only once nothing of the set is left;
// one that is being created or still holds snapshots stays.
func TestForgetSet(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	require.ErrorIs(t, b.s.ForgetSet(vss.NewID()), vss.VSS_E_OBJECT_NOT_FOUND)

	// Abandoned: started, then released before DoSnapshotSet.
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_APP_ROLLBACK))
	abandoned, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	require.ErrorIs(t, b.s.ForgetSet(abandoned), vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS, "being created")
	require.NoError(t, bc.Close(ctx))
	info, ok := b.s.Set(abandoned)
	require.True(t, ok)
	require.Equal(t, "abandoned", info.State)
	require.NoError(t, b.s.ForgetSet(abandoned))
	_, ok = b.s.Set(abandoned)
	require.False(t, ok, "forgotten")
	require.Empty(t, b.s.Sets())

	// Created: forgotten once its snapshots are deleted.
	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	require.NoError(t, bc.BackupComplete(ctx))
	created := b.s.Query()[0].SnapshotSetID
	require.ErrorIs(t, b.s.ForgetSet(created), vss.VSS_E_BAD_STATE, "it holds a snapshot")
	_, _, err = bc.DeleteSnapshots(ctx, created, vss.VSS_OBJECT_SNAPSHOT_SET, false /* force */)
	require.NoError(t, err)
	require.NoError(t, b.s.ForgetSet(created))
	require.Empty(t, b.s.Sets())
	require.NoError(t, bc.Close(ctx))
}

// TestSetHistoryBounded: past Config.SetHistory the oldest sets are
// forgotten, except one that still holds snapshots.
func TestSetHistoryBounded(t *testing.T) {
	ctx := context.Background()
	cfg := fast
	cfg.SetHistory = 3
	b := newBench(t, cfg, "lun0")

	keep := b.s.NewBackupComponents()
	require.NoError(t, keep.InitializeForBackup(nil))
	require.NoError(t, keep.SetContext(vss.VSS_CTX_NAS_ROLLBACK))
	kept, err := keep.StartSnapshotSet()
	require.NoError(t, err)
	_, err = keep.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	a, err := keep.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	require.NoError(t, keep.Close(ctx)) // persistent: the snapshot stays

	var ids []vss.ID
	for range 5 {
		bc, a := b.backup(ctx, "lun0")
		require.NoError(t, a.Wait(ctx))
		require.NoError(t, bc.BackupComplete(ctx))
		ids = append(ids, b.s.Sets()[len(b.s.Sets())-1].ID)
		require.NoError(t, bc.Close(ctx)) // auto-release: its snapshot goes
	}
	var got []vss.ID
	for _, s := range b.s.Sets() {
		got = append(got, s.ID)
	}
	require.Equal(t, []vss.ID{kept, ids[3], ids[4]}, got, "the set holding a snapshot, then the newest")
	_, ok := b.s.Set(ids[0])
	require.False(t, ok)
}
