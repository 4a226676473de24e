package cow

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reportPercentiles adds p50 and p99 of per-operation latencies (ns) to the
// benchmark's output; the targets speak of medians, and ns/op is a mean.
func reportPercentiles(b *testing.B, lat []int64) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
}

func releaseAll(b *testing.B, imgs []*Image) {
	for _, im := range imgs {
		if err := im.Release(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit measures Snapshot (C1) over volume size, data written,
// prior snapshots and concurrent writers. Names are benchstat-friendly:
// size=1GiB/data=256MiB/prior=100/writers=2.
func BenchmarkCommit(b *testing.B) {
	for _, size := range []int64{gib, tib} {
		for _, data := range []int64{0, 256 * mib} {
			for _, prior := range []int{0, 100} {
				for _, writers := range []int{0, 2} {
					name := fmt.Sprintf("size=%s/data=%s/prior=%d/writers=%d", human(size), human(data), prior, writers)
					b.Run(name, func(b *testing.B) { benchCommit(b, size, data, prior, writers) })
				}
			}
		}
	}
}

func human(n int64) string {
	switch {
	case n == 0:
		return "0"
	case n%tib == 0:
		return fmt.Sprintf("%dTiB", n/tib)
	case n%gib == 0:
		return fmt.Sprintf("%dGiB", n/gib)
	}
	return fmt.Sprintf("%dMiB", n/mib)
}

func benchCommit(b *testing.B, size, data int64, prior, writers int) {
	v := newVol(b, DefaultGrain, size)
	buf := make([]byte, mib)
	for off := int64(0); off < data; off += mib {
		if _, err := v.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	var imgs []*Image
	for range prior {
		imgs = append(imgs, mustSnap(b, v))
		_, _ = v.WriteAt(buf[:4096], rand.Int64N(size/4096)*4096)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			p := make([]byte, 4096)
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for !stop.Load() {
				_, _ = v.WriteAt(p, r.Int64N(64*mib/4096)*4096)
			}
		})
	}
	runtime.GC() // setup garbage is not the commit's to collect
	lat := make([]int64, 0, 1<<16)
	pending := make([]*Image, 0, 1024)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		img, err := v.Snapshot()
		lat = append(lat, int64(time.Since(start)))
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, img)
		if len(pending) == cap(pending) {
			// Release in batches outside the timer: deleting images is not
			// the commit, and toggling the timer every iteration costs a
			// stop-the-world of its own.
			b.StopTimer()
			releaseAll(b, pending)
			pending = pending[:0]
			b.StartTimer()
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
	releaseAll(b, pending)
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	for _, im := range imgs {
		_ = im.Release()
	}
	_ = v.Release()
}

// BenchmarkWrite4K compares a steady 4 KiB write (in place) with the first
// write to a block after a snapshot (copy-on-write), over a 256 MiB working
// set. The first-write case takes a snapshot every 4096 writes (outside the
// timer) so nearly every write is a first write.
func BenchmarkWrite4K(b *testing.B) {
	const set = 256 * mib
	for _, grain := range []int{4096} {
		b.Run(fmt.Sprintf("grain=%d/steady", grain), func(b *testing.B) {
			v := newVol(b, grain, gib)
			p := make([]byte, 4096)
			for off := int64(0); off < set; off += 4096 {
				_, _ = v.WriteAt(p, off)
			}
			b.SetBytes(4096)
			i := int64(0)
			for b.Loop() {
				_, _ = v.WriteAt(p, (i*4096*7919)%set)
				i++
			}
		})
		b.Run(fmt.Sprintf("grain=%d/first-after-snapshot", grain), func(b *testing.B) {
			v := newVol(b, grain, gib)
			p := make([]byte, 4096)
			for off := int64(0); off < set; off += 4096 {
				_, _ = v.WriteAt(p, off)
			}
			var imgs []*Image
			b.SetBytes(4096)
			i := int64(0)
			for b.Loop() {
				if i%(set/4096) == 0 {
					// One image alive at a time, as in a backup cycle
					// (snapshot, read, delete): the blocks the previous
					// image held are reused rather than fresh memory.
					b.StopTimer()
					releaseAll(b, imgs)
					imgs = append(imgs[:0], mustSnap(b, v))
					b.StartTimer()
				}
				_, _ = v.WriteAt(p, (i*4096*7919)%set)
				i++
			}
			b.StopTimer()
			for _, im := range imgs {
				_ = im.Release()
			}
		})
	}
}

// BenchmarkRead4K reads 4 KiB from a live volume, images 1 and 100
// snapshots deep, and a clone.
func BenchmarkRead4K(b *testing.B) {
	const set = 64 * mib
	setup := func(b *testing.B, depth int) (*Volume, []*Image) {
		v := newVol(b, DefaultGrain, gib)
		p := make([]byte, mib)
		for off := int64(0); off < set; off += mib {
			_, _ = v.WriteAt(p, off)
		}
		var imgs []*Image
		for range depth {
			imgs = append(imgs, mustSnap(b, v))
			for range 64 {
				_, _ = v.WriteAt(p[:4096], rand.Int64N(set/4096)*4096)
			}
		}
		return v, imgs
	}
	run := func(b *testing.B, r interface {
		ReadAt([]byte, int64) (int, error)
	}) {
		p := make([]byte, 4096)
		b.SetBytes(4096)
		i := int64(0)
		for b.Loop() {
			_, _ = r.ReadAt(p, (i*4096*7919)%set)
			i++
		}
	}
	b.Run("live", func(b *testing.B) { v, _ := setup(b, 0); run(b, v) })
	b.Run("image-depth=1", func(b *testing.B) { _, imgs := setup(b, 1); run(b, imgs[0]) })
	b.Run("image-depth=100", func(b *testing.B) { _, imgs := setup(b, 100); run(b, imgs[0]) })
	b.Run("clone", func(b *testing.B) {
		_, imgs := setup(b, 1)
		c, _ := imgs[0].Clone()
		run(b, c)
	})
}

// BenchmarkGrain measures the two sides of the grain-size choice: a steady
// 4 KiB write and the first 4 KiB write into a grain after a snapshot
// (which copies the rest of the grain).
func BenchmarkGrain(b *testing.B) {
	const set = 64 * mib
	for _, grain := range []int{512, 4096, 16384, 65536} {
		for _, first := range []bool{false, true} {
			b.Run(fmt.Sprintf("grain=%d/first=%v", grain, first), func(b *testing.B) {
				v := newVol(b, grain, gib)
				p := make([]byte, mib)
				for off := int64(0); off < set; off += mib {
					_, _ = v.WriteAt(p, off)
				}
				var imgs []*Image
				b.SetBytes(4096)
				i := int64(0)
				stride := int64(max(grain, 4096))
				for b.Loop() {
					if first && i%(set/stride) == 0 {
						b.StopTimer()
						imgs = append(imgs, mustSnap(b, v))
						b.StartTimer()
					}
					_, _ = v.WriteAt(p[:4096], (i*stride)%set)
					i++
				}
				b.StopTimer()
				for _, im := range imgs {
					_ = im.Release()
				}
			})
		}
	}
}

// BenchmarkFirstWriteInLeaf times the write that first touches a full leaf
// (256 grains) after a snapshot: the path copy, whose cost is one reference
// per grain the leaf points at. The grains are written in a shuffled order
// first, so their pages lie scattered in memory as they do in a volume with
// a history. With image=held the snapshot is alive and the leaf must be
// copied; with image=released it was deleted before the write, and the leaf
// is no longer shared with anything.
func BenchmarkFirstWriteInLeaf(b *testing.B) {
	const set = 256 * mib
	for _, held := range []bool{true, false} {
		b.Run(fmt.Sprintf("image=%s", map[bool]string{true: "held", false: "released"}[held]), func(b *testing.B) {
			v := newVol(b, 4096, gib)
			p := make([]byte, 4096)
			r := rand.New(rand.NewPCG(1, 2))
			for _, i := range r.Perm(int(set / 4096)) {
				_, _ = v.WriteAt(p, int64(i)*4096)
			}
			const leaves = int(set / 4096 / fanout)
			var img *Image
			i := 0
			for b.Loop() {
				if i%leaves == 0 {
					b.StopTimer()
					if img != nil {
						_ = img.Release()
					}
					img = mustSnap(b, v)
					if !held {
						_ = img.Release()
						img = nil
					}
					b.StartTimer()
				}
				_, _ = v.WriteAt(p, int64(i%leaves)*fanout*4096)
				i++
			}
			b.StopTimer()
			if img != nil {
				_ = img.Release()
			}
		})
	}
}

// BenchmarkWriteLarge writes 1 MiB at a time into a full 1 GiB volume.
// in-place writes at random MiB offsets: the cost is the copy into 256
// grains that are rarely in the cache. after-snapshot writes the volume in
// order and takes a snapshot (releasing the one before, outside the timer)
// each time round, so every write needs 256 fresh blocks, as in a server
// snapshotting every second under a write load. scattered starts from a
// volume whose blocks are spread over the heap in no order (see
// benchWriteLarge), which costs even in-place writes: the store hands blocks
// out again in address order to keep that from lasting (see MemStore).
// stream=false turns the non-temporal copy off (see put).
func BenchmarkWriteLarge(b *testing.B) {
	for _, stream := range []bool{true, false} {
		for _, mode := range []string{"in-place", "after-snapshot"} {
			for _, layout := range []string{"sequential", "scattered"} {
				b.Run(fmt.Sprintf("stream=%v/%s/%s", stream, mode, layout), func(b *testing.B) {
					benchWriteLarge(b, stream, mode == "after-snapshot", layout == "scattered")
				})
			}
		}
	}
}

// benchWriteLarge writes 1 MiB at a time into a full 1 GiB volume: at
// random offsets in place, or in laps after a snapshot each. scattered
// first runs small random writes between snapshots, as a 4 KiB random-write
// load leaves a volume whose blocks came back from released images in no
// particular order.
func benchWriteLarge(b *testing.B, stream, afterSnapshot, scattered bool) {
	if !stream {
		defer func(m int) { streamMin = m }(streamMin)
		streamMin = 1 << 62
	}
	v := newVol(b, 4096, gib)
	p := make([]byte, mib)
	writeAll := func() {
		for off := int64(0); off < gib; off += mib {
			_, _ = v.WriteAt(p, off)
		}
	}
	writeAll()
	r := rand.New(rand.NewPCG(1, 2))
	var img *Image
	lap := func(write func()) {
		if img != nil {
			_ = img.Release()
		}
		img = mustSnap(b, v)
		write()
	}
	if afterSnapshot || scattered {
		// Two laps first, so that blocks come from released images as
		// they do in a long run.
		lap(writeAll)
		lap(writeAll)
	}
	if scattered {
		g := make([]byte, 4096)
		for range 2 {
			lap(func() {
				for _, i := range r.Perm(int(gib / 4096)) {
					_, _ = v.WriteAt(g, int64(i)*4096)
				}
			})
		}
	}
	if !afterSnapshot && img != nil {
		_ = img.Release()
		img = nil
	}
	next := int64(0)
	b.SetBytes(mib)
	for b.Loop() {
		if !afterSnapshot {
			_, _ = v.WriteAt(p, r.Int64N(gib/mib)*mib)
			continue
		}
		if next == 0 {
			b.StopTimer()
			_ = img.Release()
			img = mustSnap(b, v)
			b.StartTimer()
		}
		_, _ = v.WriteAt(p, next)
		next = (next + mib) % gib
	}
	b.StopTimer()
	if img != nil {
		_ = img.Release()
	}
}

// ra is readAhead; 0 turns the touching off.
func BenchmarkReadLarge(b *testing.B) {
	for _, scattered := range []bool{false, true} {
		b.Run(fmt.Sprintf("layout=%s", map[bool]string{false: "sequential", true: "scattered"}[scattered]), func(b *testing.B) {
			v := newVol(b, 4096, gib)
			p := make([]byte, mib)
			for off := int64(0); off < gib; off += mib {
				_, _ = v.WriteAt(p, off)
			}
			if scattered {
				img := mustSnap(b, v)
				r := rand.New(rand.NewPCG(7, 8))
				g := make([]byte, 4096)
				for _, i := range r.Perm(int(gib / 4096)) {
					_, _ = v.WriteAt(g, int64(i)*4096)
				}
				_ = img.Release()
			}
			for _, ra := range []uint64{0, 3} {
				b.Run(fmt.Sprintf("ra=%d", ra), func(b *testing.B) {
					defer func(o uint64) { readAhead = o }(readAhead)
					readAhead = ra
					r := rand.New(rand.NewPCG(1, 2))
					b.SetBytes(mib)
					for b.Loop() {
						_, _ = v.ReadAt(p, r.Int64N(gib/mib)*mib)
					}
				})
			}
		})
	}
}
