package cow

import (
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"
)

// TestMemStoreReusesInAddressOrder: blocks a batch frees come back lowest
// address first, every one of them, and the accounts follow.
func TestMemStoreReusesInAddressOrder(t *testing.T) {
	const n = 3 * freeChunk / 2 // more than one hold of the lock
	s := &MemStore{grain: 4096} // no collection watcher: nothing drops blocks
	bs := make([]Block, n)
	want := map[uintptr]bool{}
	for i := range bs {
		bs[i] = s.Alloc()
		want[bs[i].addr()] = true
	}
	require.Equal(t, int64(n*4096), s.Stats().DataBytes)
	rand.Shuffle(n, func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
	s.FreeBatch(bs)
	st := s.Stats()
	require.Zero(t, st.DataBytes)
	require.Zero(t, st.ReservedBytes)

	prev := uintptr(0)
	for i := range n {
		b := s.Alloc()
		a := b.addr()
		require.Len(t, b.Data, 4096)
		require.True(t, want[a], "block %d was not one of those freed", i)
		delete(want, a)
		require.Greater(t, a, prev, "block %d out of address order", i)
		prev = a
	}
	require.Empty(t, s.free)
	require.Equal(t, int64(n*4096), s.Stats().DataBytes)
}

// TestMemStoreLetsIdleBlocksGo: blocks that sat untouched at the bottom of
// the free stack from one collection to the next are let go; blocks taken
// and given back meanwhile stay.
func TestMemStoreLetsIdleBlocksGo(t *testing.T) {
	s := &MemStore{grain: 4096}
	bs := make([]Block, 100)
	for i := range bs {
		bs[i] = s.Alloc()
	}
	s.FreeBatch(bs)
	s.collected() // the first: nothing was counted as idle yet
	require.Len(t, s.free, 100)
	for range 10 {
		b := s.Alloc()
		s.Free(b, true)
	}
	s.collected()
	require.Len(t, s.free, 1, "only the block the loop kept taking is left")
	s.collected()
	require.Empty(t, s.free, "untouched for a whole cycle since")
	require.Zero(t, s.Stats().DataBytes)
}

// TestMemStoreWatcherLetsStoreGo: the collection watcher neither keeps the
// store alive nor outlives it, and a store left idle through collections
// empties its free stack.
func TestMemStoreWatcherLetsStoreGo(t *testing.T) {
	s, err := NewMemStore(4096, 0)
	require.NoError(t, err)
	b := s.Alloc()
	s.Free(b, true)
	require.Eventually(t, func() bool {
		runtime.GC()
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.free) == 0
	}, 10*time.Second, time.Millisecond, "idle blocks kept through collections")

	w := weak.Make(s)
	s = nil //nolint:ineffassign,wastedassign // drop the last strong reference
	require.Eventually(t, func() bool {
		runtime.GC()
		return w.Value() == nil
	}, 10*time.Second, time.Millisecond, "store kept alive")
}

// TestMemStoreGivesMemoryBack: a large release keeps at most MemFreeKeep
// for reuse and has the rest returned to the system at once, and the
// released tree no longer holds its blocks, even while its image is
// referenced.
func TestMemStoreGivesMemoryBack(t *testing.T) {
	s, err := NewMemStore(4096, 0)
	require.NoError(t, err)
	const size = 256 << 20
	v, err := NewVolume(s, size)
	require.NoError(t, err)
	p := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(p)) {
		_, err := v.WriteAt(p, off)
		require.NoError(t, err)
	}
	img, err := v.Snapshot()
	require.NoError(t, err)
	for off := int64(0); off < size; off += int64(len(p)) {
		_, err := v.WriteAt(p, off) // every grain copied away from the image
		require.NoError(t, err)
	}
	require.EqualValues(t, 2*size, s.Stats().DataBytes)
	before := returnMemory.done.Load()
	require.NoError(t, img.Release())
	require.EqualValues(t, size, s.Stats().DataBytes)
	s.mu.Lock()
	kept := len(s.free)
	s.mu.Unlock()
	require.LessOrEqual(t, kept*4096, MemFreeKeep)
	require.Eventually(t, func() bool { return returnMemory.done.Load() > before }, 10*time.Second, 10*time.Millisecond,
		"the memory of a 256 MiB release is returned to the system")
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	require.Less(t, ms.HeapInuse, uint64(size+size/2), "the released image still referenced holds none of its 256 MiB")
	runtime.KeepAlive(img)
	require.NoError(t, v.Release())
}
