package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// TestWithArrayProvider runs whole sequences against the emulated array
// provider rather than the test fake: a spanned volume plus a LUN shared by
// two volumes, auto-import (LocateLuns, rescan, FillInLunInfo matching
// GetTargetLuns), expose, a transportable set imported from its document,
// delete through OnLunEmpty, and a slow-commit profile past the hold window.
func TestWithArrayProvider(t *testing.T) {
	ctx := context.Background()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	for _, n := range []string{"lun0", "lun1", "lun2"} {
		_, err := a.Create(n, lun.Options{Size: 4 << 20})
		require.NoError(t, err)
	}
	p, err := provider.NewArray(a, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	s := New(a, fast)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, s.Close(cctx))
	})
	require.NoError(t, s.RegisterProvider(ctx, Registration{Name: "array", Provider: p}))
	require.NoError(t, s.AddVolume("D:", "lun0", "lun1"))
	require.NoError(t, s.AddVolume("E:", "lun1", "lun2"))
	w := newTestWriter("w")
	_, err = s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	l0, _ := a.Get("lun0")
	require.NoError(t, l0.WriteAt(ctx, []byte("point in time"), 0, false))

	bc := s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	set, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	snapD, err := bc.AddToSnapshotSet(ctx, "D:", vss.GUID_NULL)
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "E:", vss.GUID_NULL)
	require.NoError(t, err)
	require.NoError(t, bc.PrepareForBackup(ctx))
	as, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, as.Wait(ctx))
	info, _ := s.Set(set)
	require.Equal(t, "created", info.State, "%v", trace(info.Timeline))
	require.NoError(t, l0.WriteAt(ctx, []byte("after the set"), 0, false))

	props, err := bc.GetSnapshotProperties(snapD)
	require.NoError(t, err)
	require.True(t, props.Imported, "auto-import matched FillInLunInfo to GetTargetLuns")
	require.Len(t, props.TargetLUNs, 2)
	export, err := bc.ExposeSnapshot(ctx, snapD)
	require.NoError(t, err)
	snapLUN, err := a.Get(export)
	require.NoError(t, err)
	buf := make([]byte, 13)
	require.NoError(t, snapLUN.ReadAt(ctx, buf, 0))
	require.Equal(t, "point in time", string(buf))
	require.NoError(t, bc.BackupComplete(ctx))
	require.NoError(t, bc.Close(ctx))
	require.Len(t, a.List(), 3, "auto-release: every target LUN reclaimed through OnLunEmpty")

	// A transportable set: not surfaced until imported, once.
	bc = s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_NAS_ROLLBACK|vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE)))
	_, err = bc.StartSnapshotSet()
	require.NoError(t, err)
	snap, err := bc.AddToSnapshotSet(ctx, "lun2", vss.GUID_NULL)
	require.NoError(t, err, "the default profile honours TRANSPORTABLE")
	as, err = bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, as.Wait(ctx))
	props, err = bc.GetSnapshotProperties(snap)
	require.NoError(t, err)
	require.False(t, props.Imported, "a transportable set is not auto-imported")
	doc, err := bc.SaveDocument()
	require.NoError(t, err)
	require.NoError(t, bc.Close(ctx))
	// Import as another host would: it knows the set only from the document.
	s.mu.Lock()
	delete(s.mu.snapshots, snap)
	s.mu.Unlock()
	imp := s.NewBackupComponents()
	require.NoError(t, imp.InitializeForBackup(doc))
	hr, err := imp.ImportSnapshots(ctx)
	require.NoError(t, err)
	require.Equal(t, vss.S_OK, hr)
	props, err = imp.GetSnapshotProperties(snap)
	require.NoError(t, err)
	require.True(t, props.Imported)
	n, _, err := imp.DeleteSnapshots(ctx, snap, vss.VSS_OBJECT_SNAPSHOT, false)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, imp.Close(ctx))
	require.Len(t, a.List(), 3)
}

// TestWithArrayProviderSlowCommit: a profile that blocks inside
// CommitSnapshots past the hold window fails the set with
// VSS_E_HOLD_WRITES_TIMEOUT and leaves no snapshot LUN behind.
func TestWithArrayProviderSlowCommit(t *testing.T) {
	ctx := context.Background()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	_, err = a.Create("lun0", lun.Options{Size: 1 << 20})
	require.NoError(t, err)
	prof, err := provider.ParseProfile("slow", []byte("name: slow\ncommit: {block: 2s}\n"))
	require.NoError(t, err)
	p, err := provider.NewArray(a, prof)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	s := New(a, fast)
	t.Cleanup(func() { require.NoError(t, s.Close(ctx)) })
	require.NoError(t, s.RegisterProvider(ctx, Registration{Name: "array", Provider: p}))
	bc := s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP))
	_, err = bc.StartSnapshotSet()
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	as, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	start := time.Now()
	require.ErrorIs(t, as.Wait(ctx), vss.VSS_E_HOLD_WRITES_TIMEOUT)
	require.Less(t, time.Since(start), time.Second, "the hold window ends the blocked commit")
	require.NoError(t, bc.Close(ctx))
	require.Len(t, a.List(), 1)
}
