package durable

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
