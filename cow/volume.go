package cow

import (
	"cmp"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/shadowbench/shadowbench/cow/inflight"
)

// Grain sizes. DefaultGrain is the one NewMemStore callers should reach for;
// doc.go gives the measurements behind it.
const (
	MinGrain     = 512
	MaxGrain     = 64 << 10
	DefaultGrain = 4 << 10
)

// genSeq hands out generations. Every epoch of every volume in the process
// gets its own, so "the node's generation is mine" means exactly "this
// epoch of this tree created the node and no other tree can reach it".
var genSeq atomic.Uint64

// epoch is one generation of a volume's live tree: the span between two
// commits. I/O enters the current epoch, does its work in that epoch's tree
// and exits; a commit installs the next epoch and waits for the previous one
// to drain.
type epoch struct {
	gen uint64
	// pageGen is the generation whose pages the epoch writes in place. It
	// is gen, except after a Checkpoint, whose next epoch keeps the pages
	// of the one before (C8): a checkpoint image fixes the map, not the
	// data.
	pageGen uint64
	// mu serializes replacing the root (see node.mu).
	mu   sync.Mutex
	root atomic.Pointer[node]
	// inflight counts the I/O that entered this epoch.
	inflight inflight.Counter
	// ready, when not nil, is done once the previous epoch has drained and
	// root holds its final tree. I/O admitted before that waits for it: the
	// previous epoch's writes are still landing in nodes this epoch would
	// otherwise copy too early and lose. Waiting on a done WaitGroup is one
	// atomic load. Every epoch a Group commits shares the group's.
	ready *sync.WaitGroup
	// dead marks the epoch a released volume ends on; set before publication.
	dead bool
	// link is the open Group this epoch belongs to: once the group commits,
	// the epoch has ended and link.next is the volume's current epoch,
	// whatever cur still says (see Volume.enter).
	link atomic.Pointer[member]
}

func newEpoch(root *node, ready *sync.WaitGroup) *epoch {
	e := &epoch{gen: genSeq.Add(1), ready: ready}
	e.pageGen = e.gen
	e.root.Store(root)
	return e
}

// successor returns the epoch that follows e when a group commit has ended
// e, or nil.
func (e *epoch) successor() *epoch {
	if m := e.link.Load(); m != nil && m.g.state.Load() == groupCommitted {
		return m.next
	}
	return nil
}

// Volume is a live, writable volume: the original of a LUN, or a clone.
// Every method is safe for concurrent use. ReadAt, WriteAt and the other I/O
// methods never wait on a commit (C3); Snapshot, Revert and Release are
// serialized with each other by mu.
type Volume struct {
	geometry
	// mu serializes commits (Snapshot, Revert, Release). I/O never takes it.
	mu  sync.Mutex
	cur atomic.Pointer[epoch]
}

// NewVolume returns an empty volume of size bytes whose data lives in store.
func NewVolume(store Store, size int64) (*Volume, error) {
	g, err := newGeometry(store, size)
	if err != nil {
		return nil, err
	}
	v := &Volume{geometry: g}
	v.cur.Store(newEpoch(nil, nil))
	return v, nil
}

func newVolumeAt(g geometry, root *node) *Volume {
	v := &Volume{geometry: g}
	v.cur.Store(newEpoch(root, nil))
	return v
}

// Size returns the volume's size in bytes.
func (v *Volume) Size() int64 { return v.size }

// GrainSize returns the copy-on-write unit in bytes.
func (v *Volume) GrainSize() int { return int(v.grain) }

// Store returns the store the volume's data lives in.
func (v *Volume) Store() Store { return v.store }

// enter admits one operation into the current epoch. The re-check after
// counting is what makes a commit's drain exact: an operation either counted
// itself before the commit point (and the commit waits for it) or sees the
// commit and retries in the new epoch. The commit point is the swap of cur
// for Snapshot, Revert and Release, and the group's state for a Group, whose
// commit leaves cur to be moved on by the first operation that finds it
// behind.
func (v *Volume) enter() (*epoch, inflight.Token, error) {
	for {
		e := v.cur.Load()
		if next := e.successor(); next != nil {
			v.catchUp(e, next)
			continue
		}
		t := e.inflight.Enter()
		if v.cur.Load() != e || e.successor() != nil {
			e.inflight.Exit(t)
			continue
		}
		if e.dead {
			e.inflight.Exit(t)
			return nil, 0, ErrReleased
		}
		if e.ready != nil {
			e.ready.Wait()
		}
		return e, t, nil
	}
}

// catchUp moves cur from e, ended by a group commit, to next. Whoever moves
// it drops e's link, so that an image committed from e does not keep the
// group, and through it the volume's later epochs, reachable.
func (v *Volume) catchUp(e, next *epoch) {
	if v.cur.CompareAndSwap(e, next) {
		e.link.Store(nil)
	}
}

// ReadAt reads len(p) bytes at off. It implements io.ReaderAt, except that a
// range past the end is an error (ErrOutOfRange) with nothing read.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	e, t, err := v.enter()
	if err != nil {
		return 0, err
	}
	v.read(e.root.Load(), &e.root, p, off)
	e.inflight.Exit(t)
	return len(p), nil
}

// WriteAt writes p at off. It implements io.WriterAt. A range outside the
// volume, or a store without room for the blocks the write needs, fails the
// whole write with nothing changed.
func (v *Volume) WriteAt(p []byte, off int64) (int, error) {
	if err := v.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	e, t, err := v.enter()
	if err != nil {
		return 0, err
	}
	defer e.inflight.Exit(t)
	if err := v.mutate(e, off, int64(len(p)), p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAtFUA writes p at off and returns once it is durable in the store.
func (v *Volume) WriteAtFUA(p []byte, off int64) (int, error) {
	n, err := v.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	return n, v.store.Sync()
}

// Flush makes every completed write durable.
func (v *Volume) Flush() error {
	if v.cur.Load().dead {
		return ErrReleased
	}
	return v.store.Sync()
}

// Trim discards [off, off+n): whole grains become holes and cost nothing;
// the parts of partial grains at either end are zeroed. The range reads as
// zeros afterwards.
func (v *Volume) Trim(off, n int64) error { return v.zero(off, n, false) }

// WriteZeroes makes [off, off+n) read as zeros. With noHole false whole
// grains become holes, as with Trim; with noHole true they stay allocated
// (reported as Zero, not Hole, by Extents) without costing a block.
func (v *Volume) WriteZeroes(off, n int64, noHole bool) error { return v.zero(off, n, noHole) }

func (v *Volume) zero(off, n int64, noHole bool) error {
	if err := v.checkRange(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	e, t, err := v.enter()
	if err != nil {
		return err
	}
	defer e.inflight.Exit(t)
	// Whole grains inside the range: holes or zero pages. Partial grains at
	// the ends: zero bytes written through mutate.
	lo := uint64((off + v.grain - 1) >> v.shift)
	end := off + n
	hi := uint64(end >> v.shift)
	if end == v.size {
		hi = v.grains // the last grain may be partial and still be whole here
	}
	if lo >= hi {
		return v.zeroPartial(e, off, n)
	}
	if head := int64(lo)<<v.shift - off; head > 0 {
		if err := v.zeroPartial(e, off, head); err != nil {
			return err
		}
	}
	if tail := int64(hi) << v.shift; tail < end {
		if err := v.zeroPartial(e, tail, end-tail); err != nil {
			return err
		}
	}
	if noHole {
		for idx := lo; idx < hi; idx++ {
			v.setZeroPage(e, idx)
		}
		return nil
	}
	v.punch(e, nil, &e.root, &e.mu, v.levels-1, 0, lo, hi)
	return nil
}

// zeroPartial zeroes a range inside grains that are not wholly covered,
// skipping grains that already read as zeros.
func (v *Volume) zeroPartial(e *epoch, off, n int64) error {
	for n > 0 {
		idx := uint64(off >> v.shift)
		o := off & (v.grain - 1)
		c := min(n, v.grain-o)
		if p := v.pageOf(e.root.Load(), idx); p != nil && p != zeroPage {
			if err := v.mutate(e, off, c, zeros[:c]); err != nil {
				return err
			}
		}
		off, n = off+c, n-c
	}
	return nil
}

// mutate writes src (n bytes) at off in epoch e, reserving the blocks it
// needs first so that a full store fails the write before any of it lands.
func (v *Volume) mutate(e *epoch, off, n int64, src []byte) error {
	if !v.limited {
		// No capacity to enforce: no reservation, so a write that
		// allocates nothing touches no counter shared with other writers.
		_, err := v.write(e, off, src)
		return err
	}
	first, last := uint64(off>>v.shift), uint64((off+n-1)>>v.shift)
	var need int64
	for idx := first; idx <= last; idx++ {
		if v.needsBlock(e, idx) {
			need++
		}
	}
	if err := v.store.Reserve(need); err != nil {
		return err
	}
	allocated, err := v.write(e, off, src)
	// The count can fall short when racing writers change the map between
	// the count and the write; the store then runs over by those few blocks
	// rather than fail a write half done. Unreserve with a negative count
	// takes the overrun into the reservation.
	v.store.Unreserve(need - allocated)
	return err
}

// write copies src to off, grain by grain, and returns how many blocks it
// allocated. It walks the tree once per leaf, not once per grain. A large
// write streams its full grains (see put), and publishes those that needed
// a fresh block once per leaf, after one fence. A store written through
// (BlockWriter) gets a leaf's full grains in one call. Its error is
// returned once the write has gone through every grain: what failed holds
// what the store left there, as a disk's sectors do after a failed write.
func (v *Volume) write(e *epoch, off int64, src []byte) (allocated int64, err error) {
	if len(src) >= streamMin {
		return v.writeStreamed(e, off, src)
	}
	var leaf *node
	for len(src) > 0 {
		idx := uint64(off >> v.shift)
		o := int(off & (v.grain - 1))
		c := min(len(src), int(v.grain)-o)
		if leaf == nil || idx&fanoutMask == 0 {
			leaf = v.ownLeaf(e, idx, true)
		}
		if leaf != nil {
			a, werr := v.writeGrain(e, leaf, idx, o, src[:c])
			if a {
				allocated++
			}
			err = cmp.Or(err, werr)
		}
		src, off = src[c:], off+int64(c)
	}
	return allocated, err
}

// writeStreamed is write for a large src, in batches of up to writeBatch
// full grains, in three passes: find every full grain's destination (in
// place, or a fresh block) and write the partial grains; stream the full
// grains, or hand them to the store in one call (BlockWriter); fence once
// and publish each leaf's fresh blocks. The passes keep locked
// instructions (a leaf's lock, a page's counts) away from the streamed
// stores, since each one waits for every streamed store before it to reach
// memory: taking the leaf's lock between grains costs more than a fence
// per grain. A batch spans leaves so that a megabyte written to a file
// store is one pwritev, not one per leaf of 64 grains.
func (v *Volume) writeStreamed(e *epoch, off int64, src []byte) (allocated int64, err error) {
	b := streamBatch{gen: e.pageGen}
	for len(src) > 0 {
		idx := uint64(off >> v.shift)
		leaf := v.ownLeaf(e, idx, true)
		end := min(off+int64(len(src)), int64((idx|fanoutMask)+1)<<v.shift)
		if leaf == nil { // dropped by a racing trim (see node.dead)
			err = cmp.Or(err, b.flush(v))
			src, off = src[end-off:], end
			continue
		}
		if b.full+fanout > writeBatch {
			err = cmp.Or(err, b.flush(v))
		}
		nfresh := b.nfresh
		for at, s := off, src; at < end; {
			idx := uint64(at >> v.shift)
			o := int(at & (v.grain - 1))
			c := min(int(end-at), int(v.grain)-o)
			if c < int(v.grain) {
				a, werr := v.writeGrain(e, leaf, idx, o, s[:c])
				if a {
					allocated++
				}
				err = cmp.Or(err, werr)
			} else {
				if b.full == 0 {
					b.src = s
				}
				p, isFresh := v.grainDest(e, leaf, idx)
				b.dst[b.full] = p
				if isFresh {
					b.fresh[b.nfresh] = freshPage{idx: idx, at: b.full}
					b.nfresh++
				}
				b.full++
			}
			at, s = at+int64(c), s[c:]
		}
		allocated += int64(b.nfresh - nfresh)
		b.leaves[b.nleaves] = batchLeaf{leaf, b.nfresh}
		b.nleaves++
		src, off = src[end-off:], end
	}
	err = cmp.Or(err, b.flush(v))
	storeFence() // for the grains written in place
	return allocated, err
}

// writeBatch is the most full grains writeStreamed writes at a time: four
// leaves, a megabyte at 4 KiB grains.
const writeBatch = 4 * fanout

// streamBatch is writeStreamed's batch: the destinations of full grains
// whose data lies end to end in src, and the fresh pages of each leaf they
// are in, to publish once the data is written.
type streamBatch struct {
	dst     [writeBatch]*page
	fresh   [writeBatch]freshPage
	leaves  [writeBatch/fanout + 1]batchLeaf
	gen     uint64 // the generation of the fresh pages
	src     []byte // the data, from the first full grain on
	full    int    // entries of dst
	nfresh  int    // entries of fresh
	nleaves int    // entries of leaves
}

// blockWrites holds the arrays a streamBatch hands a BlockWriter: they
// escape through the interface call, and a megabyte write should not
// allocate 10 KiB for them.
var blockWrites = sync.Pool{New: func() any { return new([writeBatch]BlockWrite) }}

// batchLeaf is a leaf of a streamBatch; its fresh pages end at fresh[end].
type batchLeaf struct {
	n   *node
	end int
}

// flush writes the batch's grains and publishes its fresh pages, and
// empties it. It returns the store's error (BlockWriter).
func (b *streamBatch) flush(v *Volume) (err error) {
	if b.nfresh > 0 {
		v.newPages(b.gen, b.fresh[:b.nfresh])
		for _, f := range b.fresh[:b.nfresh] {
			b.dst[f.at] = f.p
		}
	}
	src := b.src
	if v.bw != nil {
		ws := blockWrites.Get().(*[writeBatch]BlockWrite)
		n := 0
		for i := range b.full {
			if b.dst[i] != nil {
				ws[n] = BlockWrite{Block: b.dst[i].block(v.grain), Data: src[:v.grain]}
				n++
			}
			src = src[v.grain:]
		}
		if n > 0 {
			err = v.bw.WriteBlocks(ws[:n])
		}
		clear(ws[:n])
		blockWrites.Put(ws)
	} else {
		for i := range b.full {
			if b.dst[i] != nil { // nil in a leaf a racing trim dropped
				put(b.dst[i].bytes(v.grain), src[:v.grain], true)
			}
			src = src[v.grain:]
		}
	}
	start := 0
	for _, l := range b.leaves[:b.nleaves] {
		v.publish(l.n, b.fresh[start:l.end])
		start = l.end
	}
	clear(b.dst[:b.full])
	clear(b.fresh[:b.nfresh])
	clear(b.leaves[:b.nleaves])
	b.src, b.full, b.nfresh, b.nleaves = nil, 0, 0, 0
	return err
}

// Extents reports [off, off+n) as runs of Data, Zero and Hole, merged and
// covering the range exactly.
func (v *Volume) Extents(off, n int64) ([]Extent, error) {
	if err := v.checkRange(off, n); err != nil {
		return nil, err
	}
	e, t, err := v.enter()
	if err != nil {
		return nil, err
	}
	defer e.inflight.Exit(t)
	return v.extents(e.root.Load(), off, n), nil
}

// ChangedSince reports the ranges within [off, off+n) where the volume's
// live data may differ from base, an image of the same family (C7). It is
// exact for grains no write is racing with.
func (v *Volume) ChangedSince(base *Image, off, n int64) ([]Range, error) {
	if !v.sameFamily(&base.geometry) {
		return nil, ErrMismatch
	}
	if err := v.checkRange(off, n); err != nil {
		return nil, err
	}
	e, t, err := v.enter()
	if err != nil {
		return nil, err
	}
	defer e.inflight.Exit(t)
	bt, err := base.enter()
	if err != nil {
		return nil, err
	}
	defer base.exit(bt)
	return v.changed(base.root, e.root.Load(), off, n), nil
}

// Snapshot commits the volume's current content as a read-only image, in
// time independent of the volume's size, data and history (C1). Every write
// acknowledged before Snapshot was called is in the image; no write that
// starts after it returns is (C4); the image never changes (C2). To commit
// several volumes at one instant, use a Group.
func (v *Volume) Snapshot() (*Image, error) { return v.snapshot(false) }

// Checkpoint commits the volume's map, what a durable store writes down at
// a flush, as an image, in O(1) as Snapshot does, without the cost
// Snapshot puts on the writes after it: the volume goes on writing in
// place into the grains it already owns, the image's included, rather than
// copying each one first (C8). The image's map never changes: every grain
// stays behind the block it named when Checkpoint returned, and no block
// it names is freed while it is held. Its data may: a read through it
// returns, for a grain written since, the bytes of any moment from the
// checkpoint to now. Clone and Revert refuse it (ErrMapOnly); Snapshot or
// a Group gives an image of data.
func (v *Volume) Checkpoint() (*Image, error) { return v.snapshot(true) }

func (v *Volume) snapshot(mapOnly bool) (*Image, error) {
	ready := new(sync.WaitGroup)
	ready.Add(1)
	next := newEpoch(nil, ready)
	img := &Image{geometry: v.geometry, mapOnly: mapOnly}
	v.mu.Lock()
	defer v.mu.Unlock()
	old, m := v.settle()
	if old.dead {
		return nil, ErrReleased
	}
	if mapOnly {
		next.pageGen = old.pageGen // before publication
	}
	v.cur.Store(next) // the commit point
	old.inflight.Wait(nil)
	root := old.root.Load()
	if root != nil {
		root.refs.Add(1) // the image's reference; next inherits old's
	}
	next.root.Store(root)
	ready.Done()
	img.root, img.readers = root, old
	m.moveTo(old, next)
	return img, nil
}

// Revert makes the volume's content that of img, an image of the same
// family, in O(1). Writes admitted before Revert are drained and then
// discarded with the tree they landed in. An open Group the volume belongs
// to commits the reverted content.
func (v *Volume) Revert(img *Image) error {
	if !v.sameFamily(&img.geometry) {
		return ErrMismatch
	}
	if img.mapOnly {
		return ErrMapOnly
	}
	t, err := img.enter()
	if err != nil {
		return err
	}
	defer img.exit(t)
	v.mu.Lock()
	defer v.mu.Unlock()
	old, m := v.settle()
	if old.dead {
		return ErrReleased
	}
	if img.root != nil {
		img.root.refs.Add(1)
	}
	// The image's nodes are immutable, so the new epoch needs nothing of
	// the old one and is ready at once.
	next := newEpoch(img.root, nil)
	v.cur.Store(next)
	old.inflight.Wait(nil)
	if r := old.root.Load(); r != nil {
		v.releaseNode(r, drained)
	}
	m.moveTo(old, next)
	return nil
}

// Release deletes the volume: I/O admitted before it drains, later I/O
// fails with ErrReleased, and every block no image or clone shares returns
// to the store (C5). An open Group the volume belongs to can no longer
// commit: its Commit fails with ErrReleased.
func (v *Volume) Release() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, m := v.settle()
	if old.dead {
		return ErrReleased
	}
	end := newEpoch(nil, nil)
	end.dead = true
	v.cur.Store(end)
	old.inflight.Wait(nil)
	if r := old.root.Load(); r != nil {
		v.releaseNode(r, drained)
	}
	if m != nil {
		old.link.Store(nil)
		m.g.abortHeld(ErrReleased)
	}
	return nil
}

// settle returns the volume's current epoch for an operation that will end
// it; v.mu is held. A group commit that has ended the epoch is finished
// first (cur moves on, and the next epoch is used once the group is ready);
// an aborted group's link is dropped; an open group is returned held busy,
// so that its commit waits while the caller installs the next epoch, and the
// caller must hand it on with moveTo (or abort it). The group then commits
// the new epoch.
func (v *Volume) settle() (*epoch, *member) {
	for {
		e := v.cur.Load()
		if e.ready != nil {
			// I/O catches cur up to a group's next epoch as soon as the
			// group commits, before the commit has drained the epoch it
			// ended and handed this one its root: until then root is
			// only what the group expected, and ending the epoch would
			// commit (or release) that and lose what the commit hands on.
			e.ready.Wait()
		}
		m := e.link.Load()
		if m == nil {
			// An operation catching up drops the link after moving cur,
			// so a nil link on an epoch that is no longer current says
			// nothing: check cur again.
			if v.cur.Load() != e {
				continue
			}
			return e, nil
		}
		switch m.g.state.Load() {
		case groupCommitted:
			v.catchUp(e, m.next) // the loop then waits for it to be ready
		case groupAborted:
			e.link.CompareAndSwap(m, nil)
		case groupOpen:
			if m.g.state.CompareAndSwap(groupOpen, groupBusy) {
				return e, m
			}
		default: // busy: an operation on another of the group's volumes
			runtime.Gosched()
		}
	}
}

// Image is a read-only point-in-time image of a volume. It shares every
// unchanged block with the volume and with its other images and clones.
type Image struct {
	geometry
	root *node // immutable: no writer's generation matches its nodes'
	// mapOnly marks a Checkpoint's image: its map is fixed, its data is
	// the volume's to write in place (C8).
	mapOnly bool
	// stale is a node the image holds a reference on besides root: the
	// root its Group expected (Group.Commit). Release drops it.
	stale *node
	// group is the Group that commits the image, nil for Snapshot's. The
	// image is usable once the group has committed and is ready.
	group *Group
	// readers counts the reads in flight. It is the drained epoch the
	// image was committed from, whose counter nobody else uses any more
	// (an operation that still finds that epoch current counts itself in
	// and out again at once), so a commit allocates no counter of its own.
	readers *epoch

	mu       sync.Mutex // serializes Release
	released atomic.Bool
}

func (im *Image) enter() (inflight.Token, error) {
	if !im.Committed() {
		return 0, ErrNotCommitted
	}
	t := im.readers.inflight.Enter()
	if im.released.Load() {
		im.readers.inflight.Exit(t)
		return 0, ErrReleased
	}
	return t, nil
}

func (im *Image) exit(t inflight.Token) { im.readers.inflight.Exit(t) }

// Committed reports whether the image holds its point in time: always for
// Snapshot's, once the group committed for a Group's. It waits, briefly,
// for a group that has committed to be ready.
func (im *Image) Committed() bool {
	if g := im.group; g != nil {
		if g.state.Load() != groupCommitted {
			return false
		}
		g.ready.Wait()
	}
	return true
}

// Size returns the image's size in bytes.
func (im *Image) Size() int64 { return im.size }

// ReadAt reads len(p) bytes at off, as Volume.ReadAt. Through a
// Checkpoint's image, a grain written since reads as of any moment from
// the checkpoint on (C8).
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if err := im.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	t, err := im.enter()
	if err != nil {
		return 0, err
	}
	im.read(im.root, nil, p, off)
	im.exit(t)
	return len(p), nil
}

// WriteAt always fails with ErrReleased or ErrReadOnly: images never change
// (C2). Clone the image to write.
func (im *Image) WriteAt(p []byte, off int64) (int, error) {
	if im.released.Load() {
		return 0, ErrReleased
	}
	return 0, ErrReadOnly
}

// Extents reports [off, off+n) as Volume.Extents does.
func (im *Image) Extents(off, n int64) ([]Extent, error) {
	if err := im.checkRange(off, n); err != nil {
		return nil, err
	}
	t, err := im.enter()
	if err != nil {
		return nil, err
	}
	defer im.exit(t)
	return im.extents(im.root, off, n), nil
}

// Clone returns a writable volume whose content starts as the image's. It
// shares every block with the image until written (clones of clones too:
// snapshot the clone and clone that image).
func (im *Image) Clone() (*Volume, error) {
	if im.mapOnly {
		return nil, ErrMapOnly
	}
	t, err := im.enter()
	if err != nil {
		return nil, err
	}
	defer im.exit(t)
	if im.root != nil {
		im.root.refs.Add(1)
	}
	return newVolumeAt(im.geometry, im.root), nil
}

// Release deletes the image; every block nothing else references returns to
// the store (C5). Reads already running finish first.
func (im *Image) Release() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.released.Load() {
		return ErrReleased
	}
	im.released.Store(true)
	if !im.Committed() {
		return nil // nothing to free: its group never committed
	}
	im.readers.inflight.Wait(nil)
	if im.root != nil {
		im.releaseNode(im.root, drained)
	}
	if im.stale != nil {
		im.releaseNode(im.stale, live)
	}
	im.root, im.stale = nil, nil // no reader is left to use them
	return nil
}

// Diff reports the ranges within [off, off+n) where images a and b, of one
// family, differ, without reading data (C7). A grain both wrote with equal
// bytes still counts as changed.
func Diff(a, b *Image, off, n int64) ([]Range, error) {
	if !a.sameFamily(&b.geometry) {
		return nil, ErrMismatch
	}
	if err := a.checkRange(off, n); err != nil {
		return nil, err
	}
	ta, err := a.enter()
	if err != nil {
		return nil, err
	}
	defer a.exit(ta)
	tb, err := b.enter()
	if err != nil {
		return nil, err
	}
	defer b.exit(tb)
	return a.changed(a.root, b.root, off, n), nil
}
