package filestore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/cow"
)

const grain = 4096

func open(t *testing.T, path string, used ...uint64) *Store {
	t.Helper()
	s, err := Open(path, Options{Grain: grain, Capacity: 64 << 20, Used: used})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func alloc(t *testing.T, s *Store, b byte) cow.Block {
	t.Helper()
	require.NoError(t, s.Reserve(1))
	blk := s.Alloc()
	require.NoError(t, s.WriteBlocks([]cow.BlockWrite{{Block: blk, Data: bytes.Repeat([]byte{b}, len(blk.Data))}}))
	return blk
}

// TestReuseLowestFirst checks that freed blocks are handed out again lowest
// first, as MemStore does, and that adopted blocks are never handed out.
func TestReuseLowestFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	s := open(t, path)
	var bs []cow.Block
	for i := range 8 {
		bs = append(bs, alloc(t, s, byte(i+1)))
	}
	s.Free(bs[5], true)
	s.Free(bs[2], true)
	require.Equal(t, bs[2].ID, alloc(t, s, 9).ID)
	require.Equal(t, bs[5].ID, alloc(t, s, 9).ID)
	require.NoError(t, s.Sync())
	require.NoError(t, s.Close())

	// Adopt blocks 1 and 6 only: the others are free, and the data of the
	// adopted ones is kept.
	s = open(t, path, bs[1].ID, bs[6].ID)
	require.Equal(t, byte(2), s.Block(bs[1].ID).Data[0])
	require.Equal(t, byte(7), s.Block(bs[6].ID).Data[0])
	seen := map[uint64]bool{}
	for range 6 {
		id := alloc(t, s, 0xee).ID
		require.NotEqual(t, bs[1].ID, id)
		require.NotEqual(t, bs[6].ID, id)
		require.False(t, seen[id])
		seen[id] = true
	}
	require.Equal(t, byte(2), s.Block(bs[1].ID).Data[0])
}

// TestAdoptBadInput checks that Open refuses blocks a data file cannot
// hold or names twice, with the path in the error.
func TestAdoptBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	_, err := Open(path, Options{Grain: grain, Capacity: 64 << 20, Used: []uint64{1 << 40}})
	require.Error(t, err)
	require.Contains(t, err.Error(), path)
	_, err = Open(path, Options{Grain: grain, Capacity: 64 << 20, Used: []uint64{3, 3}})
	require.Error(t, err)
}

// TestPunchFreeRuns checks that a batch of freed blocks goes back to the
// file system: the file's allocated size falls.
func TestPunchFreeRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	s := open(t, path)
	var bs []cow.Block
	for range 2048 {
		bs = append(bs, alloc(t, s, 0xab))
	}
	require.NoError(t, s.Sync())
	before := allocated(t, path)
	s.FreeBatch(bs)
	after := allocated(t, path)
	require.Less(t, after, before-int64(len(bs))*grain/2, "allocated %d bytes before the frees, %d after", before, after)
}

func allocated(t *testing.T, path string) int64 {
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	return st.Blocks * 512
}

// TestFailedSyncFailsTheStore checks D5: after a failed fdatasync the store
// refuses every later sync with ErrFailed, so no flush is acknowledged
// whose data the kernel may have dropped; a new Open starts afresh.
func TestFailedSyncFailsTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	s := open(t, path)
	alloc(t, s, 1)
	old := syncFile
	defer func() { syncFile = old }()
	syncFile = func(*os.File) error { return syscall.EIO }
	err := s.Sync()
	require.ErrorIs(t, err, ErrFailed)
	require.ErrorIs(t, err, syscall.EIO)
	require.Contains(t, err.Error(), path)
	syncFile = old
	require.ErrorIs(t, s.Sync(), ErrFailed, "a sync after a failed one must fail too")
	require.NoError(t, s.Close())
	s = open(t, path)
	require.NoError(t, s.Sync())
	require.False(t, errors.Is(s.Sync(), ErrFailed))
}

// TestPinnedBlocksAreNeitherPunchedNorReused is cow's pinning rule on a
// file: a ReadVec of an image names slices of the mapping; releasing the
// image frees its blocks in one batch large enough to be punched out of
// the file (which would make the mapping read zeros), and another
// volume's writes would take them again. The pinned blocks must keep the
// image's bytes until the Vec is released, and be freed after.
func TestPinnedBlocksAreNeitherPunchedNorReused(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "data"))
	const size = 2 * PunchMin * grain
	v, err := cow.NewVolume(s, size)
	require.NoError(t, err)
	other, err := cow.NewVolume(s, size)
	require.NoError(t, err)
	_, err = v.WriteAt(bytes.Repeat([]byte{'a'}, size), 0)
	require.NoError(t, err)
	img, err := v.Snapshot()
	require.NoError(t, err)
	_, err = v.WriteAt(bytes.Repeat([]byte{'b'}, size), 0) // the image alone holds 'a'
	require.NoError(t, err)

	var vec cow.Vec
	require.NoError(t, img.ReadVec(&vec, 0, size))
	require.NoError(t, img.Release())
	_, err = other.WriteAt(bytes.Repeat([]byte{'z'}, size), 0)
	require.NoError(t, err)
	var got []byte
	for _, seg := range vec.Segs {
		got = append(got, seg...)
	}
	require.Equal(t, bytes.Repeat([]byte{'a'}, size), got, "pinned blocks keep their bytes")
	blocks := s.Stats().DataBytes
	vec.Release()
	require.Equal(t, blocks-size, s.Stats().DataBytes, "the last pin's release frees the blocks")
}

// TestLargeWritesLieEndToEnd checks cow.RunAllocator: megabyte writes
// into fresh ranges from two goroutines at once each get blocks that
// follow one another in the file, so each is one pwritev now and one read
// run later, rather than alternate blocks of the two.
func TestLargeWritesLieEndToEnd(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "data"))
	const mib = 1 << 20
	v, err := cow.NewVolume(s, 32*mib)
	require.NoError(t, err)
	p := bytes.Repeat([]byte{0x3c}, mib)
	for round := range 8 {
		done := make(chan error, 2)
		for w := range 2 {
			go func() {
				_, err := v.WriteAt(p, int64(round*2+w)*2*mib)
				done <- err
			}()
		}
		require.NoError(t, <-done)
		require.NoError(t, <-done)
	}
	img, err := v.Snapshot()
	require.NoError(t, err)
	defer img.Release()
	first := map[int64]uint64{}
	require.NoError(t, img.Grains(func(idx uint64, g cow.Grain) error {
		at := int64(idx) * grain
		mb := at / mib
		if _, ok := first[mb]; !ok {
			first[mb] = g.Block.ID
		}
		require.Equal(t, first[mb]+uint64(at%mib/grain), g.Block.ID, "grain %d of megabyte %d", at%mib/grain, mb)
		return nil
	}))
	require.Len(t, first, 16)
}
