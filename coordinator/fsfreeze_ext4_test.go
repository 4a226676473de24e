package coordinator

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd/nbdtest"
	"github.com/shadowbench/shadowbench/vss"
)

// TestFsfreezeExt4ThroughNBD runs a backup of a real file system: ext4 on a
// LUN, reached through nbdfuse and a loop mount, frozen by the fsfreeze
// writer (FIFREEZE at Freeze, FITHAW at Thaw) while the set commits; the
// snapshot LUN is then exposed over NBD, mounted read-only, and holds the
// files as they were at the freeze, while the live file system has moved on.
func TestFsfreezeExt4ThroughNBD(t *testing.T) {
	nbdtest.NeedMounts(t)
	ctx := context.Background()
	cfg := Config{HoldWindow: 5 * time.Second, FreezeWindow: 30 * time.Second, PrepareWindow: 30 * time.Second,
		EventWindow: 30 * time.Second, ProviderTimeout: 30 * time.Second}
	b := newBench(t, cfg)
	_, err := b.a.Create("lun0", lun.Options{Size: 64 << 20})
	require.NoError(t, err)
	sock := serveNBD(t, b.a)
	uri := func(export string) string { return "nbd+unix:///" + export + "?socket=" + sock }
	dir := t.TempDir()

	live := nbdtest.FuseMount(t, filepath.Join(dir, "live"), uri("lun0"), false)
	nbdtest.Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", live)
	mnt := nbdtest.LoopMount(t, filepath.Join(dir, "mnt"), live, false)
	data := bytes.Repeat([]byte("shadowbench "), 100_000)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "data.bin"), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("before the snapshot\n"), 0o644))

	fw, err := NewFsfreezeWriter(mnt, FsfreezeOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = fw.Close() })
	_, err = b.s.AddWriter(fw, WriterOptions{Name: "ext4", Level: vss.VSS_APP_SYSTEM})
	require.NoError(t, err)

	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	require.False(t, fw.Frozen(), "thawed after the set")
	require.Equal(t, vss.VSS_WS_WAITING_FOR_BACKUP_COMPLETE, statusOf(t, bc, "ext4").State)

	// The live file system moves on.
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("after the snapshot\n"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(mnt, "data.bin")))

	snaps := bc.Query()
	require.Len(t, snaps, 1)
	export, err := bc.ExposeSnapshot(ctx, snaps[0].SnapshotID)
	require.NoError(t, err)
	snap := nbdtest.FuseMount(t, filepath.Join(dir, "snap"), uri(export), true)
	smnt := nbdtest.LoopMount(t, filepath.Join(dir, "smnt"), snap, true)
	got, err := os.ReadFile(filepath.Join(smnt, "hello.txt"))
	require.NoError(t, err)
	require.Equal(t, "before the snapshot\n", string(got), "the snapshot holds the file as it was at the freeze")
	got, err = os.ReadFile(filepath.Join(smnt, "data.bin"))
	require.NoError(t, err)
	require.Equal(t, data, got)
	nbdtest.Unmount(t, smnt)

	got, err = os.ReadFile(filepath.Join(mnt, "hello.txt"))
	require.NoError(t, err)
	require.Equal(t, "after the snapshot\n", string(got))
	require.NoError(t, bc.BackupComplete(ctx))
	require.NoError(t, bc.Close(ctx))
}
