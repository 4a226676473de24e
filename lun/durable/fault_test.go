package durable

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// TestFailedCheckpointIsRetried checks D5: a checkpoint whose transaction
// fails reports the error and changes nothing written down; the next one
// writes the same changes, and they survive a reopen.
func TestFailedCheckpointIsRetried(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	tr, err := db.NewVolume(1<<20, Set(Edit{Bucket: "names", Key: "v", Value: []byte("1")}))
	require.NoError(t, err)
	p := bytes.Repeat([]byte{0x5a}, 8192)
	_, err = tr.Volume().WriteAt(p, 4096)
	require.NoError(t, err)

	fail := errors.New("injected: ENOSPC")
	defer func() { beforeUpdate = func() error { return nil } }()
	beforeUpdate = func() error { return fail }
	require.ErrorIs(t, db.Flush(), fail)
	beforeUpdate = func() error { return nil }
	require.NoError(t, db.Close())

	// Nothing of the failed checkpoint was written down.
	db, err = Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	got := make([]byte, len(p))
	_, err = db.Tree(tr.ID()).Volume().ReadAt(got, 4096)
	require.NoError(t, err)
	require.Equal(t, make([]byte, len(p)), got)

	// A failure, then a retry in the same process: the retry writes it.
	tr = db.Tree(tr.ID())
	_, err = tr.Volume().WriteAt(p, 4096)
	require.NoError(t, err)
	beforeUpdate = func() error { return syscall.EIO }
	require.ErrorIs(t, db.Flush(), syscall.EIO)
	beforeUpdate = func() error { return nil }
	require.NoError(t, db.Flush())
	require.NoError(t, db.Close())
	db, err = Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Tree(tr.ID()).Volume().ReadAt(got, 4096)
	require.NoError(t, err)
	require.Equal(t, p, got)
}

// TestBadDirectory checks that a damaged or foreign data directory is
// refused with a clear error and not changed.
func TestBadDirectory(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	// An unknown format version.
	require.NoError(t, putFormat(dir, "9"))
	_, err = Open(dir, Options{Capacity: 64 << 20})
	require.ErrorIs(t, err, ErrFormat)
	require.Contains(t, err.Error(), dir)

	// A meta.db that is not a database.
	junk := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(junk, MetaFile), bytes.Repeat([]byte("not a database "), 1000), 0o600))
	_, err = Open(junk, Options{Capacity: 64 << 20})
	require.Error(t, err)
	require.Contains(t, err.Error(), filepath.Join(junk, MetaFile))
}

// putFormat rewrites the format record of the closed DB in dir.
func putFormat(dir, format string) error {
	bdb, err := bolt.Open(dir+"/"+MetaFile, 0o600, nil)
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte(format)) })
}

// TestDamagedDirectory checks that a data directory whose files were cut
// short or overwritten is refused at Open with ErrCorrupt and an error
// naming the file, never a panic or a fault, and that Open changes neither
// file: not a byte, not the modification time.
func TestDamagedDirectory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		file    string // the file the error names
		want    string
		corrupt bool // whether the error is ErrCorrupt
	}{
		{"meta.db empty", func(t *testing.T, dir string) { require.NoError(t, os.Truncate(filepath.Join(dir, MetaFile), 0)) },
			MetaFile, "is empty but", true},
		{"meta.db missing", func(t *testing.T, dir string) { require.NoError(t, os.Remove(filepath.Join(dir, MetaFile))) },
			MetaFile, "is missing but", true},
		{"meta.db cut in half", func(t *testing.T, dir string) { truncateBy(t, filepath.Join(dir, MetaFile), 2) },
			MetaFile, "is damaged", true},
		{"meta.db cut to 3 pages", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, MetaFile), 3*int64(os.Getpagesize())))
		}, MetaFile, "is damaged", true},
		{"meta.db page overwritten", func(t *testing.T, dir string) { overwritePage(t, filepath.Join(dir, MetaFile)) },
			MetaFile, "is damaged", true},
		{"data shorter than its maps", func(t *testing.T, dir string) { truncateBy(t, filepath.Join(dir, DataFile), 2) },
			DataFile, "is cut short", true},
		{"data missing", func(t *testing.T, dir string) { require.NoError(t, os.Remove(filepath.Join(dir, DataFile))) },
			DataFile, "is missing, and", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filledDir(t)
			tc.damage(t, dir)
			before := snapshotFiles(t, dir)
			_, err := Open(dir, Options{Capacity: 64 << 20})
			require.Error(t, err)
			if tc.corrupt {
				require.ErrorIs(t, err, ErrCorrupt)
			}
			require.ErrorContains(t, err, filepath.Join(dir, tc.file))
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, before, snapshotFiles(t, dir), "Open changed the directory")
		})
	}
}

// filledDir returns a closed data directory with a volume whose map fills
// some thirty meta.db pages, and whose data file holds 8 MiB.
func filledDir(t *testing.T) string {
	dir := t.TempDir()
	db, err := Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	tr, err := db.NewVolume(32<<20, Set(Edit{Bucket: "names", Key: "v", Value: []byte("1")}))
	require.NoError(t, err)
	p := bytes.Repeat([]byte{0x5a}, 4096)
	for i := int64(0); i < 2048; i++ {
		_, err = tr.Volume().WriteAt(p, i*8192)
		require.NoError(t, err)
	}
	require.NoError(t, db.Flush())
	require.NoError(t, db.Close())
	// Opened again, the data file is cut after its last block.
	db, err = Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	return dir
}

func truncateBy(t *testing.T, path string, div int64) {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, fi.Size()/div))
}

// overwritePage writes random bytes over the page in use (a branch or a
// leaf) in the middle of the pages in use of the bbolt file at path.
func overwritePage(t *testing.T, path string) {
	bdb, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	var inUse []int
	var pageSize int
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		pageSize = tx.DB().Info().PageSize
		for id := 2; int64(id)*int64(pageSize) < tx.Size(); id++ {
			pi, err := tx.Page(id)
			if err != nil {
				return err
			}
			if pi != nil && (pi.Type == "leaf" || pi.Type == "branch") {
				inUse = append(inUse, id)
			}
		}
		return nil
	}))
	require.NoError(t, bdb.Close())
	require.Greater(t, len(inUse), 16)
	junk := make([]byte, pageSize)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(junk)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(junk, int64(inUse[len(inUse)/2])*int64(pageSize))
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// fileState is what Open must not change in a file it refuses.
type fileState struct {
	Sum     [32]byte
	ModTime time.Time
}

// snapshotFiles returns the state of every file in dir.
func snapshotFiles(t *testing.T, dir string) map[string]fileState {
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := make(map[string]fileState)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		fi, err := e.Info()
		require.NoError(t, err)
		out[e.Name()] = fileState{sha256.Sum256(b), fi.ModTime()}
	}
	return out
}
