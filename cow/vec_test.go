package cow

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadVecMatchesReadAt reads random unaligned ranges of a volume with
// data, holes and zeroed grains, and of an image of it, both ways.
func TestReadVecMatchesReadAt(t *testing.T) {
	for _, grain := range []int{MinGrain, DefaultGrain, MaxGrain} {
		t.Run(fmt.Sprint(grain), func(t *testing.T) {
			v := newVol(t, grain, 4*mib)
			r := rand.New(rand.NewPCG(7, uint64(grain)))
			for i := range 60 {
				off := r.Int64N(4 * mib)
				n := 1 + r.Int64N(min(4*mib-off, 300*kib))
				switch i % 4 {
				case 0, 1:
					_, err := v.WriteAt(fill(int(n), byte(i+1)), off)
					require.NoError(t, err)
				case 2:
					require.NoError(t, v.Trim(off, n))
				case 3:
					require.NoError(t, v.WriteZeroes(off, n, true /* noHole */))
				}
			}
			img := mustSnap(t, v)
			defer func() { require.NoError(t, img.Release()) }()
			for _, src := range []interface {
				vecReader
				ReadAt([]byte, int64) (int, error)
			}{v, img} {
				var vec Vec
				for range 200 {
					off := r.Int64N(4 * mib)
					n := r.Int64N(min(4*mib-off, 2*mib) + 1)
					want := make([]byte, n)
					_, err := src.ReadAt(want, off)
					require.NoError(t, err)
					require.NoError(t, src.ReadVec(&vec, off, n))
					require.Equal(t, n, vec.Len())
					require.True(t, bytes.Equal(want, vecBytes(&vec)), "off %d n %d", off, n)
					for i, s := range vec.Segs {
						if vec.Holes[i] {
							require.Equal(t, make([]byte, len(s)), s, "a hole segment is zeros")
						}
					}
					vec.Release()
				}
			}
			require.ErrorIs(t, v.ReadVec(new(Vec), 4*mib-1, 2), ErrOutOfRange)
		})
	}
}

// TestPinnedBlockIsNotReused is the pinning rule: a block a Vec names is
// not reused until the Vec is released, even when every tree lets go of
// it meanwhile. The image holds the only reference to grain 0's old page
// (the volume wrote a new one); a ReadVec of the image pins it; releasing
// the image would put the block on the store's free stack, and the other
// volume's next write would take it and change the bytes the Vec still
// names. Without the pin the Vec reads 'z'.
func TestPinnedBlockIsNotReused(t *testing.T) {
	store, vs := newVols(t, 2) // one store
	v, other := vs[0], vs[1]
	const g = DefaultGrain
	_, err := v.WriteAt(fill(g, 'a'), 0)
	require.NoError(t, err)
	img := mustSnap(t, v)
	_, err = v.WriteAt(fill(g, 'b'), 0) // the image alone holds 'a' now
	require.NoError(t, err)

	var vec Vec
	require.NoError(t, img.ReadVec(&vec, 0, g))
	require.Equal(t, 1, vec.Pinned())
	pinned := &vec.Segs[0][0]
	before := store.Stats().DataBytes
	require.NoError(t, img.Release())
	require.Equal(t, before, store.Stats().DataBytes, "a pinned block is not freed (C5 waits for the pin)")
	for i := range 4 { // the writes that would take the freed block
		_, err = other.WriteAt(fill(g, 'z'), int64(i)*g)
		require.NoError(t, err)
		require.NotSame(t, pinned, &other.pageOf(other.cur.Load().root.Load(), uint64(i)).data)
	}
	require.Equal(t, fill(g, 'a'), vecBytes(&vec), "the bytes a pinned Vec names do not change")

	vec.Release()
	require.Equal(t, before+3*g, store.Stats().DataBytes, "the last pin's release frees the block (C5)")
}

// TestReadVecOutlivesAFreedBlock is TestReadOutlivesAFreedBlock for
// ReadVec: between loading a page and pinning it, the volume replaces the
// grain, the image that held the old page is released and the other
// volume takes its block. The pin then fails, and the grain is read again
// from the volume's current tree.
func TestReadVecOutlivesAFreedBlock(t *testing.T) {
	_, vs := newVols(t, 2)
	v, other := vs[0], vs[1]
	const g = DefaultGrain
	_, err := v.WriteAt(fill(g, 'a'), 0)
	require.NoError(t, err)
	img := mustSnap(t, v)
	fired := false
	pageLoaded = func() {
		if fired {
			return
		}
		fired = true
		_, err := v.WriteAt(fill(g, 'b'), 0)
		require.NoError(t, err)
		require.NoError(t, img.Release())
		_, err = other.WriteAt(fill(g, 'z'), 0)
		require.NoError(t, err)
	}
	defer func() { pageLoaded = nil }()
	var vec Vec
	require.NoError(t, v.ReadVec(&vec, 0, g))
	require.True(t, fired)
	require.Equal(t, fill(g, 'b'), vecBytes(&vec))
	vec.Release()
}

// TestRacingVecReadsSeeOnlyTheirVolume is TestRacingReadsSeeOnlyTheirVolume
// for pinned reads that are held a while before their bytes are looked
// at, as a blocked send holds them: snapshots released at once and
// another volume rewriting itself with the freed blocks must never put a
// byte of the other volume's under a pin.
func TestRacingVecReadsSeeOnlyTheirVolume(t *testing.T) {
	if raceEnabled {
		t.Skip("reads race writes of the same bytes by design; make test runs cow without -race too")
	}
	const grain, grains = DefaultGrain, 64
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(8, runtime.GOMAXPROCS(0))))
	_, vs := newVols(t, 2)
	v, other := vs[0], vs[1]
	const foreign = 0xff
	var wg sync.WaitGroup
	stop := make(chan struct{})
	running := func() bool {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	wg.Go(func() {
		for running() {
			img, err := v.Snapshot()
			if !assert.NoError(t, err) || !assert.NoError(t, img.Release()) {
				return
			}
		}
	})
	wg.Go(func() {
		for i := 0; running(); i++ {
			_, err := v.WriteAt(fill(grain, byte(i%foreign)), int64(i%grains)*grain)
			if !assert.NoError(t, err) {
				return
			}
		}
	})
	wg.Go(func() {
		p := fill(grain, foreign)
		for running() {
			if !assert.NoError(t, other.Trim(0, grain*grains)) {
				return
			}
			for idx := range grains {
				if _, err := other.WriteAt(p, int64(idx)*grain); !assert.NoError(t, err) {
					return
				}
			}
		}
	})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			var vec Vec
			for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
				if !assert.NoError(t, v.ReadVec(&vec, 0, grain*grains)) {
					return
				}
				time.Sleep(50 * time.Microsecond) // a send in progress
				if i := bytes.IndexByte(vecBytes(&vec), foreign); i >= 0 {
					t.Errorf("a pinned read of the volume holds the other volume's bytes at %d", i)
					return
				}
				vec.Release()
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()
}
