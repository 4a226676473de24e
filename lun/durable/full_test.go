package durable

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/cow"
)

// smallFS mounts a tmpfs of size bytes in a directory of the test's and
// returns it; it is unmounted when the test ends. Mounting needs root: the
// test is skipped without it, except under CI, which runs as root.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a full file system needs root to mount a tmpfs, and CI runs as root")
		}
		t.Skip("a full file system needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size), "mount a tmpfs on %s", mnt)
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// fillFS writes a file at path until the file system has no block left,
// and returns a function that deletes it.
func fillFS(t *testing.T, path string) (free func()) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for len(buf) >= 4096 {
		if _, err := f.Write(buf); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			buf = buf[:len(buf)/2]
		}
	}
	return func() { require.NoError(t, os.Remove(path)) }
}

// TestFullFileSystem checks D5 on a real full file system, where bbolt has
// no hook to fail: a write that needs a block the file system cannot give
// fails with cow.ErrNoSpace and changes nothing; overwrites of blocks the
// volume owns and reads go on; a checkpoint or a commit whose meta.db
// transaction cannot grow fails with an error naming meta.db and ENOSPC,
// and leaves meta.db as the last good transaction wrote it. Once space is
// freed the same DB works again, and a reopen finds everything flushed.
func TestFullFileSystem(t *testing.T) {
	mnt := smallFS(t, "96m")
	dir := filepath.Join(mnt, "array")
	opts := Options{Capacity: 80 << 20}
	db, err := Open(dir, opts)
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	tr, err := db.NewVolume(128<<20, nil)
	require.NoError(t, err)
	v := tr.Volume()
	mib := func(b byte) []byte { return bytes.Repeat([]byte{b}, 1<<20) }
	// 16 MiB flushed: the data file has grown by one chunk, 64 MiB.
	for i := int64(0); i < 16; i++ {
		_, err = v.WriteAt(mib('a'), i<<20)
		require.NoError(t, err)
	}
	require.NoError(t, db.Flush())
	// 47 MiB not flushed, so that the next checkpoint has some 12000 map
	// entries to write: more than meta.db's free pages hold.
	for i := int64(16); i < 63; i++ {
		_, err = v.WriteAt(mib('e'), i<<20)
		require.NoError(t, err)
	}
	free := fillFS(t, filepath.Join(mnt, "filler"))

	// Into the chunk the file holds already: allocated, so it works; past
	// it the file cannot grow.
	_, err = v.WriteAt(mib('b'), 63<<20)
	require.NoError(t, err)
	_, err = v.WriteAt(mib('c'), 64<<20)
	require.ErrorIs(t, err, cow.ErrNoSpace)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.ErrorContains(t, err, filepath.Join(dir, DataFile))
	_, err = v.WriteAt(mib('d'), 0) // owned: in place
	require.NoError(t, err)
	got := make([]byte, 1<<20)
	_, err = v.ReadAt(got, 64<<20)
	require.NoError(t, err)
	require.Equal(t, make([]byte, 1<<20), got, "the failed write changed nothing")
	_, err = v.ReadAt(got, 40<<20)
	require.NoError(t, err)
	require.Equal(t, mib('e'), got)

	metaPath := filepath.Join(dir, MetaFile)
	for range 2 {
		err = db.Flush()
		require.ErrorIs(t, err, syscall.ENOSPC)
		require.ErrorContains(t, err, metaPath)
	}
	img, err := v.Snapshot()
	require.NoError(t, err)
	_, err = db.CommitImages([]Commit{{Tree: tr, Image: img}}, Set(Edit{Bucket: "names", Key: "s", Value: []byte("1")}))
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.ErrorContains(t, err, metaPath)
	require.NoError(t, img.Release())

	// Space again: the same DB flushes and commits.
	free()
	_, err = v.WriteAt(mib('f'), 64<<20)
	require.NoError(t, err)
	require.NoError(t, db.Flush())
	img, err = v.Snapshot()
	require.NoError(t, err)
	imgs, err := db.CommitImages([]Commit{{Tree: tr, Image: img}}, Set(Edit{Bucket: "names", Key: "s", Value: []byte("1")}))
	require.NoError(t, err)
	require.NoError(t, img.Release())
	_, err = v.WriteAt(mib('g'), 65<<20) // not flushed: lost at the reopen
	require.NoError(t, err)
	require.NoError(t, db.Close())

	// Full again, and reopened: opening writes nothing to meta.db, so it
	// opens on a full file system, and finds what was flushed.
	free = fillFS(t, filepath.Join(mnt, "filler"))
	defer free()
	db, err = Open(dir, opts)
	require.NoError(t, err)
	want := func(tree *Tree, off int64, b byte) {
		t.Helper()
		var err error
		p := make([]byte, 1<<20)
		if tree.Live() {
			_, err = tree.Volume().ReadAt(p, off)
		} else {
			var img *cow.Image
			img, err = db.Image(tree)
			require.NoError(t, err)
			defer img.Release()
			_, err = img.ReadAt(p, off)
		}
		require.NoError(t, err)
		require.Equal(t, bytes.Repeat([]byte{b}, 1<<20), p, "tree %d at %d MiB", tree.ID(), off>>20)
	}
	live, snap := db.Tree(tr.ID()), db.Tree(imgs[0].ID())
	require.NotNil(t, snap)
	for _, tree := range []*Tree{live, snap} {
		want(tree, 0, 'd')
		want(tree, 63<<20, 'b')
		want(tree, 40<<20, 'e')
		want(tree, 64<<20, 'f')
		want(tree, 65<<20, 0)
	}
	recs, err := db.Records("names")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"s": []byte("1")}, recs)
}
