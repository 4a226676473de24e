package durable

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// checkDir builds a directory with a volume, a snapshot of it and a clone
// of the snapshot, each with data, named by "names" records, and closes it.
func checkDir(t *testing.T) (dir string, vol, img, clone uint64) {
	dir = t.TempDir()
	db, err := Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	v, err := db.NewVolume(4<<20, func(ids ...uint64) []Edit { return []Edit{nameEdit("v", ids[0])} })
	require.NoError(t, err)
	p := bytes.Repeat([]byte{0xa5}, 256<<10)
	_, err = v.Volume().WriteAt(p, 0)
	require.NoError(t, err)
	snap, err := v.Volume().Snapshot()
	require.NoError(t, err)
	trees, err := db.CommitImages([]Commit{{Tree: v, Image: snap}}, func(ids ...uint64) []Edit { return []Edit{nameEdit("s", ids[0])} })
	require.NoError(t, err)
	require.NoError(t, snap.Release())
	_, err = v.Volume().WriteAt(p[:128<<10], 64<<10)
	require.NoError(t, err)
	c, err := db.Clone(trees[0], func(ids ...uint64) []Edit { return []Edit{nameEdit("c", ids[0])} })
	require.NoError(t, err)
	_, err = c.Volume().WriteAt(p[:64<<10], 1<<20)
	require.NoError(t, err)
	require.NoError(t, db.Flush())
	require.NoError(t, db.Close())
	return dir, v.ID(), trees[0].ID(), c.ID()
}

// names is the Catalogue of the test's "names" bucket.
func names(recs map[string]map[string][]byte) ([]Name, []string) {
	var out []Name
	for k, v := range recs["names"] {
		out = append(out, Name{Tree: binary.BigEndian.Uint64(v), By: "name " + k})
	}
	return out, nil
}

func checkOf(t *testing.T, dir string, repair bool) *Report {
	t.Helper()
	r, err := Check(dir, CheckOptions{Repair: repair, Catalogue: names})
	require.NoError(t, err)
	return r
}

// edit changes meta.db behind the DB's back.
func edit(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(filepath.Join(dir, MetaFile), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(fn))
	require.NoError(t, bdb.Close())
}

func mapOf(tx *bolt.Tx, tree uint64) *bolt.Bucket {
	var rec treeRec
	if err := json.Unmarshal(tx.Bucket(bucketTrees).Get(key(tree)), &rec); err != nil {
		panic(err)
	}
	return tx.Bucket(bucketMaps).Bucket(key(rec.Bucket))
}

func requireProblem(t *testing.T, r *Report, want string) {
	t.Helper()
	require.False(t, r.OK())
	for _, p := range r.Problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Fatalf("no problem mentions %q: %q", want, r.Problems)
}

func TestCheckConsistent(t *testing.T) {
	dir, _, _, _ := checkDir(t)
	r := checkOf(t, dir, false)
	require.True(t, r.OK(), "%q", r.Problems)
	require.Empty(t, r.Leftovers)
	require.Equal(t, 3, r.Trees)
	require.Equal(t, 2, r.Live)
	// 256 KiB in the image, 128 KiB overwritten by the volume, 64 KiB by
	// the clone.
	require.EqualValues(t, (256+128+64)<<10/r.Grain, r.Blocks)
	require.Equal(t, r.AllocatedBytes/int64(r.Grain)-r.Blocks, r.FreeBlocks, "the blocks the file backs that no map names")

	// A check in use fails at once, naming the file.
	db, err := Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	_, err = Check(dir, CheckOptions{})
	require.ErrorIs(t, err, ErrLocked)
	require.ErrorContains(t, err, MetaFile)
	require.NoError(t, db.Close())

	_, err = Check(t.TempDir(), CheckOptions{})
	require.ErrorContains(t, err, "not a data directory")
}

func TestCheckFindsProblems(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, dir string, vol, img, clone uint64)
		want string
	}{
		{"block named twice", func(t *testing.T, dir string, vol, img, clone uint64) {
			edit(t, dir, func(tx *bolt.Tx) error {
				_, v := mapOf(tx, img).Cursor().First()
				return mapOf(tx, clone).Put(binary.BigEndian.AppendUint64(nil, 50), slices.Clone(v))
			})
		}, "is named by tree"},
		{"entry past the end", func(t *testing.T, dir string, vol, img, clone uint64) {
			edit(t, dir, func(tx *bolt.Tx) error {
				return mapOf(tx, vol).Put(key(1<<20), key(holeMark))
			})
		}, "past its end"},
		{"parent missing", func(t *testing.T, dir string, vol, img, clone uint64) {
			edit(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bucketTrees).Delete(key(img)) })
		}, "parent"},
		{"record without its tree", func(t *testing.T, dir string, vol, img, clone uint64) {
			edit(t, dir, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("names")).Put([]byte("ghost"), key(99))
			})
		}, "name ghost names tree 99"},
		{"tree without its record", func(t *testing.T, dir string, vol, img, clone uint64) {
			edit(t, dir, func(tx *bolt.Tx) error { return tx.Bucket([]byte("names")).Delete([]byte("c")) })
		}, "no record names it"},
		{"data file too short", func(t *testing.T, dir string, vol, img, clone uint64) {
			require.NoError(t, os.Truncate(filepath.Join(dir, DataFile), 64<<10))
		}, "the maps name block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, vol, img, clone := checkDir(t)
			c.edit(t, dir, vol, img, clone)
			r := checkOf(t, dir, false)
			requireProblem(t, r, c.want)

			// A repair changes nothing when the records contradict
			// each other.
			before := snapshotFiles(t, dir)
			r = checkOf(t, dir, true)
			requireProblem(t, r, c.want)
			require.Empty(t, r.Repaired)
			require.Equal(t, before, snapshotFiles(t, dir))
		})
	}
}

// TestCheckRepairsLeftovers: a tree nothing names and a bucket no tree has
// are leftovers; a repair removes them and frees the tree's blocks, and the
// directory opens with everything else as it was.
func TestCheckRepairsLeftovers(t *testing.T) {
	dir, vol, _, clone := checkDir(t)
	edit(t, dir, func(tx *bolt.Tx) error {
		// The clone is forgotten by its record and by its tree's flag.
		var rec treeRec
		if err := json.Unmarshal(tx.Bucket(bucketTrees).Get(key(clone)), &rec); err != nil {
			return err
		}
		rec.Named = false
		if err := putTree(tx, clone, rec); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("names")).Delete([]byte("c")); err != nil {
			return err
		}
		_, err := tx.Bucket(bucketMaps).CreateBucket(key(77))
		return err
	})
	r := checkOf(t, dir, false)
	require.True(t, r.OK(), "%q", r.Problems)
	require.Len(t, r.Leftovers, 2, "%q", r.Leftovers)

	r = checkOf(t, dir, true)
	require.True(t, r.OK(), "%q", r.Problems)
	require.Len(t, r.Repaired, 3, "%q", r.Repaired) // tree, bucket, punched
	r = checkOf(t, dir, false)
	require.Empty(t, r.Leftovers)
	require.Zero(t, r.FreeBlocks)
	require.EqualValues(t, (256+128)<<10/r.Grain, r.Blocks) // the clone's blocks are free

	db, err := Open(dir, Options{Capacity: 64 << 20})
	require.NoError(t, err)
	defer db.Close()
	require.Nil(t, db.Tree(clone))
	got := make([]byte, 64<<10)
	_, err = db.Tree(vol).Volume().ReadAt(got, 64<<10)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{0xa5}, 64<<10), got)
}
