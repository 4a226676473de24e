package cow

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var modelSeed = flag.Uint64("cow.seed", 0, "seed for TestModel; 0 picks one and prints it")

// modelOp is one random mutation of a byte range, applied to a volume and
// to the reference model alike.
type modelOp struct {
	kind   int // 0 write, 1 trim, 2 write zeroes, 3 write zeroes with NO_HOLE
	off, n int64
	fillB  byte
}

func (op modelOp) String() string {
	return fmt.Sprintf("%s(%d,+%d)", [...]string{"write", "trim", "zero", "zero-nohole"}[op.kind], op.off, op.n)
}

func randomOp(rng *rand.Rand, base, span, maxLen int64) modelOp {
	off := rng.Int64N(span)
	n := 1 + rng.Int64N(min(span-off, maxLen))
	return modelOp{kind: rng.IntN(4), off: base + off, n: n, fillB: byte(1 + rng.IntN(255))}
}

func (op modelOp) apply(v *Volume) error {
	switch op.kind {
	case 0:
		_, err := v.WriteAt(bytes.Repeat([]byte{op.fillB}, int(op.n)), op.off)
		return err
	case 1:
		return v.Trim(op.off, op.n)
	default:
		return v.WriteZeroes(op.off, op.n, op.kind == 3)
	}
}

func (op modelOp) model(m []byte) {
	b := byte(0)
	if op.kind == 0 {
		b = op.fillB
	}
	for i := op.off; i < op.off+op.n; i++ {
		m[i] = b
	}
}

type trackedImage struct {
	img  *Image
	want []byte
}

// writeThrough is a MemStore written through WriteBlocks and allocating
// in runs, as a file store is, for BlockWriter's and RunAllocator's paths
// in cow.
type writeThrough struct {
	*MemStore
	calls atomic.Int64
}

// AllocRun takes blocks as a file store does, for RunAllocator's path.
func (s *writeThrough) AllocRun(bs []Block) {
	for i := range bs {
		bs[i] = s.Alloc()
	}
}

func (s *writeThrough) WriteBlocks(ws []BlockWrite) error {
	s.calls.Add(1)
	for _, w := range ws {
		copy(w.Block.Data[w.Off:], w.Data)
	}
	return nil
}

// trackedMap is a checkpoint image and the map it had when taken.
type trackedMap struct {
	img    *Image
	grains map[uint64]mapEntry
}

// mapEntry is a grain of a map: its kind and the block behind it, named by
// its memory and ID.
type mapEntry struct {
	kind ExtentKind
	at   *byte
	id   uint64
}

func grainMap(t *testing.T, im *Image) map[uint64]mapEntry {
	t.Helper()
	m := map[uint64]mapEntry{}
	require.NoError(t, im.Grains(func(idx uint64, g Grain) error {
		e := mapEntry{kind: g.Kind, id: g.Block.ID}
		if g.Kind == Data {
			e.at = &g.Block.Data[0]
		}
		m[idx] = e
		return nil
	}))
	return m
}

type trackedClone struct {
	vol   *Volume
	model []byte
}

// TestModel is the model-based test of cow: several goroutines write, trim
// and zero random unaligned ranges across grains while snapshots are taken;
// between rounds, clones (and clones of clones) are made and written,
// volumes are reverted and images and clones released. Every image and
// clone is compared byte for byte with a reference model; C2 and C4 are
// checked explicitly. The seed is printed; -cow.seed=N replays the same
// operations (the interleaving of goroutines is the scheduler's).
func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./cow -run TestModel -cow.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	grain := []int{512, 4096, 16384}[rng.IntN(3)]
	const workers = 4
	rounds, opsPerRound := 10, 150
	if testing.Short() {
		rounds, opsPerRound = 4, 60
	}
	region := int64(3*grain + 1234) // unaligned: neighbours share grains
	size := workers*region + int64(grain) + 777
	mem, err := NewMemStore(grain, 0)
	require.NoError(t, err)
	var store Store = mem
	if rng.IntN(2) == 0 {
		store = &writeThrough{MemStore: mem} // BlockWriter's paths
	}
	t.Logf("store %T", store)
	v, err := NewVolume(store, size)
	require.NoError(t, err)
	// spare is a second volume that group commits take along with v.
	spare, err := NewVolume(store, size)
	require.NoError(t, err)
	defer func() { require.NoError(t, spare.Release()) }()
	live := make([]byte, size)
	var images []trackedImage
	var clones []trackedClone
	var checkpoints []trackedMap
	if rng.IntN(2) == 0 {
		// Writes of a grain or more take the large-write path (see
		// writeStreamed).
		defer func(m int) { streamMin = m }(streamMin)
		streamMin = grain
	}
	t.Logf("grain %d, volume %d bytes, %d workers of %d bytes, writes from %d bytes streamed", grain, size, workers, region, streamMin)

	check := func(what string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("seed %d: %s differs from the model first at byte %d (got %d, want %d)", seed, what, i, got[i], want[i])
				}
			}
		}
	}

	for round := range rounds {
		// Concurrent phase: each worker owns one region and records the
		// region's content after each of its operations; snapshots are taken
		// meanwhile and checked against those states (C4).
		type worker struct {
			states         [][]byte
			started, acked atomic.Int64
			base           int64
			seedA, seedB   uint64
		}
		ws := make([]*worker, workers)
		for w := range ws {
			base := int64(w) * region
			ws[w] = &worker{base: base, seedA: rng.Uint64(), seedB: rng.Uint64()}
			ws[w].states = [][]byte{append([]byte(nil), live[base:base+region]...)}
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers+1)
		for _, w := range ws {
			wg.Go(func() {
				wrng := rand.New(rand.NewPCG(w.seedA, w.seedB))
				cur := append([]byte(nil), w.states[0]...)
				for k := range opsPerRound {
					op := randomOp(wrng, w.base, region, int64(3*grain))
					w.started.Store(int64(k + 1))
					if err := op.apply(v); err != nil {
						errs <- fmt.Errorf("%v: %w", op, err)
						return
					}
					local := op
					local.off -= w.base
					local.model(cur)
					w.states = append(w.states, append([]byte(nil), cur...))
					w.acked.Store(int64(k + 1))
				}
			})
		}
		// Clones are written concurrently too, by one goroutine of their own.
		cloneSeed := rng.Uint64()
		wg.Go(func() {
			crng := rand.New(rand.NewPCG(cloneSeed, 1))
			for range opsPerRound / 3 {
				if len(clones) == 0 {
					return
				}
				c := clones[crng.IntN(len(clones))]
				op := randomOp(crng, 0, size, int64(4*grain))
				if err := op.apply(c.vol); err != nil {
					errs <- fmt.Errorf("clone %v: %w", op, err)
					return
				}
				op.model(c.model)
			}
		})
		type pending struct {
			img    *Image
			lo, hi [workers]int64
		}
		var snaps []pending
		for range 4 {
			for range rng.IntN(200) {
				runtime.Gosched()
			}
			var p pending
			for i, w := range ws {
				p.lo[i] = w.acked.Load()
			}
			if rng.IntN(2) == 0 {
				// A checkpoint between the snapshots, as a durable
				// store's flush takes: the writes after it go in place,
				// and the snapshots must not see them (C8, C2).
				cp, err := v.Checkpoint()
				require.NoError(t, err)
				checkpoints = append(checkpoints, trackedMap{cp, grainMap(t, cp)})
			}
			img, err := snapshotSomehow(rng, v, spare)
			require.NoError(t, err)
			for i, w := range ws {
				p.hi[i] = w.started.Load()
			}
			p.img = img
			snaps = append(snaps, p)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("seed %d round %d: %v", seed, round, err)
		}
		for _, w := range ws {
			copy(live[w.base:], w.states[len(w.states)-1])
		}
		for si, p := range snaps {
			got := readAll(t, p.img)
			want := append([]byte(nil), live...)
			for i, w := range ws {
				region := got[w.base : w.base+region]
				found := false
				for k := p.lo[i]; k <= p.hi[i] && !found; k++ {
					if bytes.Equal(region, w.states[k]) {
						copy(want[w.base:], w.states[k])
						found = true
					}
				}
				if !found {
					t.Fatalf("seed %d round %d snapshot %d: C4 violated for worker %d: the image matches no state from op %d (acknowledged before Snapshot) to op %d (started before it returned)",
						seed, round, si, i, p.lo[i], p.hi[i])
				}
			}
			check(fmt.Sprintf("round %d snapshot %d outside the workers' regions", round, si), got, want)
			images = append(images, trackedImage{img: p.img, want: want})
		}
		check(fmt.Sprintf("round %d live volume", round), readAll(t, v), live)
		for i, c := range checkpoints {
			if !maps.Equal(c.grains, grainMap(t, c.img)) {
				t.Fatalf("seed %d round %d: checkpoint %d's map changed (C8)", seed, round, i)
			}
			if i < len(checkpoints)-1 {
				require.NoError(t, c.img.Release())
			}
		}
		if n := len(checkpoints); n > 0 {
			checkpoints = checkpoints[n-1:]
		}

		// Quiet phase: structural operations, then a full comparison.
		for range 3 {
			switch rng.IntN(5) {
			case 0, 1: // clone an image, or a clone of a clone
				src := images[rng.IntN(len(images))]
				c, err := src.img.Clone()
				require.NoError(t, err)
				tc := trackedClone{vol: c, model: append([]byte(nil), src.want...)}
				op := randomOp(rng, 0, size, int64(4*grain))
				require.NoError(t, op.apply(c))
				op.model(tc.model)
				clones = append(clones, tc)
				cimg, err := c.Snapshot()
				require.NoError(t, err)
				images = append(images, trackedImage{img: cimg, want: append([]byte(nil), tc.model...)})
			case 2: // revert the live volume, sometimes inside an open group
				src := images[rng.IntN(len(images))]
				if src.img.sameFamily(&v.geometry) {
					var g *Group
					if rng.IntN(2) == 0 {
						g = NewGroup()
						require.NoError(t, join(g, v))
					}
					require.NoError(t, v.Revert(src.img))
					copy(live, src.want)
					if g != nil { // the group commits what the revert left
						imgs, err := g.Commit()
						require.NoError(t, err)
						images = append(images, trackedImage{img: imgs[0], want: append([]byte(nil), live...)})
					}
				}
			case 3: // release an image
				if len(images) > 2 {
					i := rng.IntN(len(images))
					require.NoError(t, images[i].img.Release())
					images = append(images[:i], images[i+1:]...)
				}
			case 4: // release a clone
				if len(clones) > 0 {
					i := rng.IntN(len(clones))
					require.NoError(t, clones[i].vol.Release())
					clones = append(clones[:i], clones[i+1:]...)
				}
			}
		}
		check(fmt.Sprintf("round %d live volume after structural ops", round), readAll(t, v), live)
		for i, im := range images {
			check(fmt.Sprintf("round %d image %d (C2: images never change)", round, i), readAll(t, im.img), im.want)
		}
		for i, c := range clones {
			check(fmt.Sprintf("round %d clone %d", round, i), readAll(t, c.vol), c.model)
		}
		checkExtents(t, seed, v, live)
	}

	for _, im := range images {
		require.NoError(t, im.img.Release())
	}
	for _, c := range checkpoints {
		require.NoError(t, c.img.Release())
	}
	for _, c := range clones {
		require.NoError(t, c.vol.Release())
	}
	var liveData int64
	ext, err := v.Extents(0, size)
	require.NoError(t, err)
	for _, e := range ext {
		if e.Kind == Data {
			liveData += e.Len
		}
	}
	// Data extents are whole grains except at the volume's partial end.
	require.InDelta(t, liveData, store.Stats().DataBytes, float64(grain), "seed %d: C5 reclamation", seed)
}

// snapshotSomehow takes an image of v in one of the ways a commit can
// happen: Snapshot; a group of v alone; a group of v and spare; a group
// prepared before a Snapshot of v, which the group then follows.
func snapshotSomehow(rng *rand.Rand, v, spare *Volume) (*Image, error) {
	switch rng.IntN(4) {
	case 0:
		return v.Snapshot()
	case 3: // the group joins first; the Snapshot in between moves it on
		g := NewGroup()
		if err := join(g, v); err != nil {
			return nil, err
		}
		first, err := v.Snapshot()
		if err != nil {
			return nil, err
		}
		if err := first.Release(); err != nil {
			return nil, err
		}
		imgs, err := g.Commit()
		if err != nil {
			return nil, err
		}
		return imgs[0], nil
	}
	g := NewGroup()
	if err := join(g, v); err != nil {
		return nil, err
	}
	withSpare := rng.IntN(2) == 0
	if withSpare {
		if err := join(g, spare); err != nil {
			return nil, err
		}
	}
	imgs, err := g.Commit()
	if err != nil {
		return nil, err
	}
	if withSpare {
		if err := imgs[1].Release(); err != nil {
			return nil, err
		}
	}
	return imgs[0], nil
}

// checkExtents checks that the extents tile the volume and that holes and
// zero runs read as zeros in the model.
func checkExtents(t *testing.T, seed uint64, v *Volume, model []byte) {
	t.Helper()
	ext, err := v.Extents(0, v.Size())
	require.NoError(t, err)
	var at int64
	for _, e := range ext {
		require.Equal(t, at, e.Off, "seed %d: extents tile the volume", seed)
		if e.Kind != Data {
			require.Equal(t, make([]byte, e.Len), model[e.Off:e.Off+e.Len], "seed %d: %v extent at %d reads zeros", seed, e.Kind, e.Off)
		}
		at += e.Len
	}
	require.Equal(t, v.Size(), at)
}

// FuzzOps applies an operation sequence decoded from the input to a volume
// and its images and clones and checks them against the model.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{5, 0, 0, 5, 200, 9, 1, 7, 7, 4, 0, 0, 6, 0, 0, 0, 3, 3, 3, 3, 8, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		const size = 20*512 + 100
		store, err := NewMemStore(512, 0)
		require.NoError(t, err)
		v, err := NewVolume(store, size)
		require.NoError(t, err)
		live := make([]byte, size)
		var images []trackedImage
		var clones []trackedClone
		next := func() int64 {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int64(b)
		}
		for len(data) > 0 {
			code := next()
			off := (next()<<8 | next()) % size
			n := 1 + (next()<<4|next())%(size-off)
			op := modelOp{kind: int(code % 4), off: off, n: n, fillB: byte(code)}
			switch code % 8 {
			case 0, 1, 2, 3: // on the live volume, or on a clone
				target, model := v, live
				if len(clones) > 0 && code&0x80 != 0 {
					c := clones[int(code>>4)%len(clones)]
					target, model = c.vol, c.model
				}
				require.NoError(t, op.apply(target))
				op.model(model)
			case 4:
				img, err := v.Snapshot()
				require.NoError(t, err)
				images = append(images, trackedImage{img, append([]byte(nil), live...)})
			case 5:
				if len(images) > 0 {
					im := images[int(off)%len(images)]
					c, err := im.img.Clone()
					require.NoError(t, err)
					clones = append(clones, trackedClone{c, append([]byte(nil), im.want...)})
				}
			case 6:
				if len(images) > 0 {
					i := int(off) % len(images)
					require.NoError(t, images[i].img.Release())
					images = append(images[:i], images[i+1:]...)
				}
			case 7:
				if len(images) > 0 {
					im := images[int(off)%len(images)]
					require.NoError(t, v.Revert(im.img))
					copy(live, im.want)
				}
			}
		}
		require.Equal(t, live, readAll(t, v))
		for _, im := range images {
			require.Equal(t, im.want, readAll(t, im.img))
		}
		for _, c := range clones {
			require.Equal(t, c.model, readAll(t, c.vol))
		}
		checkExtents(t, 0, v, live)
		for _, im := range images {
			require.NoError(t, im.img.Release())
		}
		for _, c := range clones {
			require.NoError(t, c.vol.Release())
		}
		require.NoError(t, v.Release())
		require.Zero(t, store.Stats().DataBytes, "C5")
		require.Zero(t, store.Stats().MetaBytes, "C5")
	})
}
