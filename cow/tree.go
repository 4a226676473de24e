package cow

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The block map is a radix tree: interior nodes hold fanout child pointers,
// leaves hold fanout page pointers, a page holds one grain of data. A nil
// pointer is a hole (C6): it costs nothing and reads as zeros, and a nil
// interior pointer is a hole as wide as its subtree.
const (
	fanoutShift = 6
	fanout      = 1 << fanoutShift
	fanoutMask  = fanout - 1

	// nodeBytes is what the store is told one node costs: the pointer
	// array and the header.
	nodeBytes = fanout*8 + 64
)

// page is one grain of data. gen is the generation that owns it: a writer
// whose epoch's page generation is gen may write into it in place, any
// other writer copies it first, or adopts it when nothing else points at it
// (see adopt). An epoch's page generation is its own, except after a
// Checkpoint (C8). refs counts the leaf slots, across every tree, that
// point at it.
//
// A page is the one object per grain, so its size is the mapping's cost:
// it keeps its block as the first byte of the data and the store's ID, not
// as a Block, whose slice header repeats the grain size that the geometry
// knows. That makes it 32 bytes, not 48: 256 MiB less for a 64 GiB LUN of
// 4 KiB grains.
type page struct {
	gen  atomic.Uint64
	refs atomic.Int32
	data *byte // the block's first byte
	id   uint64
}

// The size the page's doc promises.
var _ [32 - unsafe.Sizeof(page{})]struct{}

// pageOf makes a page of block b.
func pageOf(b Block) *page { return &page{data: unsafe.SliceData(b.Data), id: b.ID} }

// block is the block behind p, whose grain is grain bytes.
func (p *page) block(grain int64) Block {
	return Block{Data: unsafe.Slice(p.data, grain), ID: p.id}
}

// bytes is p's data, whose grain is grain bytes.
func (p *page) bytes(grain int64) []byte { return unsafe.Slice(p.data, grain) }

// zeroPage marks a grain that is allocated but reads as zeros (WRITE_ZEROES
// with NO_HOLE). It is shared by every tree, owns no block and is never
// counted.
var zeroPage = &page{}

// zeros is a source of zero bytes for partial-grain zeroing.
var zeros = make([]byte, MaxGrain)

// node is an interior node (kids) or a leaf (pages). gen and refs are as for
// page. mu serializes the replacement of the node's slots: path copying,
// installing a page, punching a hole. Readers never take it; in-place writes
// into a page of the writer's own generation never take it.
type node struct {
	gen  atomic.Uint64
	refs atomic.Int32
	mu   sync.Mutex
	// dead is set, under mu, when the node is reclaimed: what its slots
	// held has been released, and nothing may be put in or taken out of
	// them after. A trim that drops a subtree can reclaim a node that a
	// racing writer of the same generation is about to change; the writer
	// finds it dead and leaves it, as if its write had come before the
	// trim. Readers, which take no lock, load it to learn whether a page
	// they copied may have been freed under them (see read).
	dead  atomic.Bool
	kids  []atomic.Pointer[node]
	pages []atomic.Pointer[page]
}

// geometry is what volumes and images of one family share.
type geometry struct {
	store  Store
	size   int64
	grain  int64
	shift  uint   // log2(grain)
	grains uint64 // grains in the volume, the last one possibly partial
	levels int    // tree height; level 0 is the leaf level
	// limited is true when the store has a capacity, so writes count the
	// blocks they need before changing anything.
	limited bool
	// bw is the store when its blocks are written through it, not through
	// their memory (BlockWriter).
	bw BlockWriter
	// ra is the store when it hands out blocks in runs (RunAllocator).
	ra RunAllocator
}

func newGeometry(store Store, size int64) (geometry, error) {
	grain := store.GrainSize()
	if err := checkGrain(grain); err != nil {
		return geometry{}, err
	}
	if size <= 0 || size > 1<<60 {
		return geometry{}, ErrSize
	}
	g := geometry{store: store, size: size, grain: int64(grain)}
	for 1<<g.shift < grain {
		g.shift++
	}
	g.grains = uint64((size + g.grain - 1) >> g.shift)
	g.levels = 1
	for span := uint64(fanout); span < g.grains; span <<= fanoutShift {
		g.levels++
	}
	g.limited = store.Stats().CapacityBytes != 0
	g.bw, _ = store.(BlockWriter)
	g.ra, _ = store.(RunAllocator)
	return g, nil
}

func checkGrain(grain int) error {
	if grain < MinGrain || grain > MaxGrain || grain&(grain-1) != 0 {
		return ErrGrainSize
	}
	return nil
}

// sameFamily reports whether two geometries can share nodes.
func (g *geometry) sameFamily(o *geometry) bool {
	return g.store == o.store && g.size == o.size && g.grain == o.grain
}

// checkRange validates [off, off+n) against the volume, overflow included.
func (g *geometry) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > g.size || n > g.size-off {
		return ErrOutOfRange
	}
	return nil
}

func slotIndex(idx uint64, level int) int {
	return int(idx>>(uint(level)*fanoutShift)) & fanoutMask
}

func (g *geometry) newNode(gen uint64, leaf bool) *node {
	n := &node{}
	n.gen.Store(gen)
	if leaf {
		n.pages = make([]atomic.Pointer[page], fanout)
	} else {
		n.kids = make([]atomic.Pointer[node], fanout)
	}
	n.refs.Store(1)
	g.store.AddMeta(nodeBytes)
	return n
}

// copyOf returns a node of generation gen pointing where old points. Each
// child gains the reference the copy holds.
//
// old belongs to an earlier generation, so nothing writes its slots any
// more, and n is not yet published: both arrays are copied in bulk, not slot
// by slot with an atomic store each (which made the copy of a full leaf 1.8x
// slower, BenchmarkFirstWriteInLeaf).
func (g *geometry) copyOf(old *node, gen uint64) *node {
	n := g.newNode(gen, old.pages != nil)
	copy(n.kids, old.kids)
	copy(n.pages, old.pages)
	for i := range n.kids {
		if k := n.kids[i].Load(); k != nil {
			k.refs.Add(1)
		}
	}
	for i := range n.pages {
		if p := n.pages[i].Load(); p != nil && p != zeroPage {
			p.refs.Add(1)
		}
	}
	return n
}

func (g *geometry) newPage(gen uint64) *page {
	p := pageOf(g.store.Alloc())
	p.gen.Store(gen)
	p.refs.Store(1)
	return p
}

// Whether a release may let the store reuse what it frees at once: drained
// when the tree's I/O has drained (Release, Revert), live when the tree is in
// use (see Store).
const (
	drained = true
	live    = false
)

// releaseNode drops one reference to n, reclaiming it and, recursively,
// whatever only it referenced (C5). A drained release hands the blocks it
// frees to the store in one batch (see Store.FreeBatch).
func (g *geometry) releaseNode(n *node, reuse bool) {
	if !reuse {
		g.unref(n, nil)
		return
	}
	freed, _ := freedBufs.Get().(*[]Block)
	if freed == nil {
		freed = new([]Block)
	}
	g.unref(n, freed)
	if len(*freed) > 0 {
		g.store.FreeBatch(*freed)
	}
	clear(*freed)
	*freed = (*freed)[:0]
	freedBufs.Put(freed)
}

// freedBufs holds the slices drained releases gather blocks in.
var freedBufs sync.Pool

// unref drops one reference to n and reclaims what only it referenced, as
// releaseNode does; the blocks it frees go where releasePage sends them.
func (g *geometry) unref(n *node, freed *[]Block) {
	if n.refs.Add(-1) != 0 {
		return
	}
	n.mu.Lock()
	n.dead.Store(true)
	n.mu.Unlock()
	for i := range n.kids {
		if k := n.kids[i].Load(); k != nil {
			g.unref(k, freed)
			if freed != nil {
				n.kids[i].Store(nil)
			}
		}
	}
	for i := range n.pages {
		if p := n.pages[i].Load(); p != nil {
			g.releasePage(p, freed)
			if freed != nil {
				// A drained tree has no reader left: unlinked, what it
				// freed is garbage even while the released image or
				// volume is still referenced.
				n.pages[i].Store(nil)
			}
		}
	}
	g.store.AddMeta(-nodeBytes)
}

// releasePage drops one reference to p. When that was the last, its block
// goes to *freed (a drained release), or, when freed is nil (a live
// release), back to the store at once, not to be reused at once.
func (g *geometry) releasePage(p *page, freed *[]Block) {
	if p == zeroPage || p.refs.Add(-1) != 0 {
		return
	}
	if freed != nil {
		*freed = append(*freed, p.block(g.grain))
	} else {
		g.store.Free(p.block(g.grain), false)
	}
}

// own makes the node in slot exclusive to generation gen and returns it: a
// new node where the slot is a hole, the node itself where nothing else
// points at it (see adopt), a copy where it is shared (path copying). owner
// is the node whose slot it is, nil for the root, and mu its lock. It
// returns nil when owner is dead.
func (g *geometry) own(owner *node, slot *atomic.Pointer[node], mu *sync.Mutex, gen uint64, level int) *node {
	mu.Lock()
	if owner != nil && owner.dead.Load() {
		mu.Unlock()
		return nil
	}
	old := slot.Load()
	if old != nil && (old.gen.Load() == gen || adopt(&old.refs, &old.gen, gen)) {
		mu.Unlock()
		return old
	}
	var n *node
	if old == nil {
		n = g.newNode(gen, level == 0)
	} else {
		n = g.copyOf(old, gen)
	}
	slot.Store(n)
	mu.Unlock()
	if old != nil {
		g.releaseNode(old, live)
	}
	return n
}

// adopt gives a node or page of an earlier generation to generation gen
// when the one slot that points at it, held under its lock by a writer of
// gen, is the only reference left: the images that shared it have been
// released, so copying it and dropping the original would change nothing
// anyone can see. The count cannot rise meanwhile: only copying the slot's
// owner or committing the tree adds references, and the owner belongs to
// gen, which no one copies, while a commit drains the writers first; or,
// for a page, a reader's pin (see ReadVec), which then races the write as
// any read racing a write of its grain does. The count can fall to 1 under
// a racing image release or a pin's release, which only means a copy that
// was not needed.
func adopt(refs *atomic.Int32, own *atomic.Uint64, gen uint64) bool {
	if refs.Load() != 1 {
		return false
	}
	own.Store(gen)
	return true
}

// ownLeaf returns the leaf covering grain idx in epoch e's tree, made
// exclusive to e's generation along the whole path. With create false it
// returns nil where the path ends in a hole; it returns nil too when a
// racing trim dropped the path (see node.dead).
func (g *geometry) ownLeaf(e *epoch, idx uint64, create bool) *node {
	var owner *node
	slot, mu := &e.root, &e.mu
	for level := g.levels - 1; ; level-- {
		n := slot.Load()
		if n == nil && !create {
			return nil
		}
		if n == nil || n.gen.Load() != e.gen {
			if n = g.own(owner, slot, mu, e.gen, level); n == nil {
				return nil
			}
		}
		if level == 0 {
			return n
		}
		owner, slot, mu = n, &n.kids[slotIndex(idx, level)], &n.mu
	}
}

// leafOf returns the leaf covering grain idx in the tree at root, or nil.
func (g *geometry) leafOf(root *node, idx uint64) *node {
	n := root
	for level := g.levels - 1; level > 0 && n != nil; level-- {
		n = n.kids[slotIndex(idx, level)].Load()
	}
	return n
}

func (g *geometry) pageOf(root *node, idx uint64) *page {
	if leaf := g.leafOf(root, idx); leaf != nil {
		return leaf.pages[idx&fanoutMask].Load()
	}
	return nil
}

// ownedBy reports whether p is a grain with a block that generation gen
// writes in place.
func ownedBy(p *page, gen uint64) bool {
	return p != nil && p != zeroPage && p.gen.Load() == gen
}

// takeOver adopts p, a grain with a block, for generation gen when nothing
// else points at it (see adopt). The caller holds the lock of p's leaf.
func takeOver(p *page, gen uint64) bool {
	return p != nil && p != zeroPage && adopt(&p.refs, &p.gen, gen)
}

// writeGrain copies src into grain idx at offset o within the grain, in
// leaf, the leaf covering idx that ownLeaf returned for e. It reports
// whether it allocated a block, and the error of a store that is written
// through (BlockWriter).
func (g *geometry) writeGrain(e *epoch, leaf *node, idx uint64, o int, src []byte) (bool, error) {
	slot := &leaf.pages[idx&fanoutMask]
	if p := slot.Load(); ownedBy(p, e.pageGen) {
		return false, g.writeBlock(p.block(g.grain), o, src)
	}
	leaf.mu.Lock()
	if leaf.dead.Load() {
		leaf.mu.Unlock()
		return false, nil
	}
	old := slot.Load()
	if ownedBy(old, e.pageGen) || takeOver(old, e.pageGen) {
		leaf.mu.Unlock()
		return false, g.writeBlock(old.block(g.grain), o, src)
	}
	p := g.newPage(e.pageGen)
	var err error
	if g.bw != nil {
		err = g.fillThrough(p, old, o, src)
	} else {
		if len(src) < int(g.grain) { // a partial write keeps the grain's other bytes
			if old != nil && old != zeroPage {
				copy(p.bytes(g.grain), old.bytes(g.grain))
			} else {
				clear(p.bytes(g.grain))
			}
		}
		copy(p.bytes(g.grain)[o:], src)
	}
	slot.Store(p)
	leaf.mu.Unlock()
	if old != nil {
		g.releasePage(old, nil)
	}
	return true, err
}

// writeBlock writes src at offset o of block b: a copy into its memory, or through
// the store (BlockWriter).
func (g *geometry) writeBlock(b Block, o int, src []byte) error {
	if g.bw == nil {
		copy(b.Data[o:], src)
		return nil
	}
	w := [1]BlockWrite{{Block: b, Off: o, Data: src}}
	return g.bw.WriteBlocks(w[:])
}

// fillThrough writes the whole of fresh page p through the store: src at
// o, and around it what old holds (zeros for a hole), since a reused block
// holds another grain's bytes. The leaf's lock is held, so old is not
// freed meanwhile.
func (g *geometry) fillThrough(p, old *page, o int, src []byte) error {
	if len(src) == int(g.grain) {
		return g.writeBlock(p.block(g.grain), 0, src)
	}
	buf := grainBufs.Get().(*[MaxGrain]byte)
	defer grainBufs.Put(buf)
	b := buf[:g.grain]
	if old != nil && old != zeroPage {
		copy(b, old.bytes(g.grain))
	} else {
		clear(b)
	}
	copy(b[o:], src)
	return g.writeBlock(p.block(g.grain), 0, b)
}

// grainBufs holds the buffers fillThrough assembles grains in.
var grainBufs = sync.Pool{New: func() any { return new([MaxGrain]byte) }}

// grainDest returns the page a write of the whole of grain idx puts its
// bytes in, in leaf, the leaf covering idx that ownLeaf returned for e: the
// grain's own when it is written in place (see writeGrain), or else nil
// with fresh true: the caller makes a fresh page (newPages), fills it and
// then publishes it. The
// grain's old bytes are not kept: the write covers all of them. Until the
// fresh page is published no reader can reach it, so it can be filled
// without the leaf's lock and with streamed stores, fenced once for many
// grains. dst is nil when leaf is dead.
func (g *geometry) grainDest(e *epoch, leaf *node, idx uint64) (dst *page, fresh bool) {
	slot := &leaf.pages[idx&fanoutMask]
	if p := slot.Load(); ownedBy(p, e.pageGen) {
		return p, false
	}
	leaf.mu.Lock()
	if leaf.dead.Load() {
		leaf.mu.Unlock()
		return nil, false
	}
	old := slot.Load()
	if ownedBy(old, e.pageGen) || takeOver(old, e.pageGen) {
		leaf.mu.Unlock()
		return old, false
	}
	leaf.mu.Unlock()
	return nil, true
}

// newPages makes a fresh page of generation gen for every entry of fresh,
// taking their blocks in one call when the store can (RunAllocator).
func (g *geometry) newPages(gen uint64, fresh []freshPage) {
	if g.ra == nil {
		for i := range fresh {
			fresh[i].p = g.newPage(gen)
		}
		return
	}
	bs := blockRuns.Get().(*[writeBatch]Block)
	g.ra.AllocRun(bs[:len(fresh)])
	for i := range fresh {
		p := pageOf(bs[i])
		p.gen.Store(gen)
		p.refs.Store(1)
		fresh[i].p = p
	}
	clear(bs[:len(fresh)])
	blockRuns.Put(bs)
}

// blockRuns holds the arrays newPages hands a RunAllocator (they escape
// through the interface call).
var blockRuns = sync.Pool{New: func() any { return new([writeBatch]Block) }}

// freshPage is a page grainDest returned, for grain idx, filled and waiting
// to be published.
type freshPage struct {
	idx uint64
	p   *page
	at  int // its place in the streamBatch
}

// publish fences the streamed stores that filled the fresh pages of leaf,
// then installs them all under one hold of the leaf's lock; fresh is
// overwritten. Whatever a slot holds by then is replaced: a racing
// write that installed a page meanwhile wrote inside this write's range, and
// overlapping writes may land in either order. The fence comes first
// because a fresh block may be one another volume freed: its new bytes must
// be visible before a reader can reach it, or a racing read could see the
// old owner's.
func (g *geometry) publish(leaf *node, fresh []freshPage) {
	if len(fresh) == 0 {
		return
	}
	storeFence()
	leaf.mu.Lock()
	if leaf.dead.Load() {
		leaf.mu.Unlock()
		for _, f := range fresh {
			g.store.Free(f.p.block(g.grain), true) // never published: reusable at once
		}
		return
	}
	for i, f := range fresh {
		fresh[i].p = leaf.pages[f.idx&fanoutMask].Swap(f.p) // now what it replaced
	}
	leaf.mu.Unlock()
	for _, f := range fresh {
		if f.p != nil {
			g.releasePage(f.p, nil)
		}
	}
}

// needsBlock reports whether writing part of grain idx in e's tree would
// allocate.
func (g *geometry) needsBlock(e *epoch, idx uint64) bool {
	p := g.pageOf(e.root.Load(), idx)
	return p == nil || p == zeroPage || (p.gen.Load() != e.pageGen && p.refs.Load() != 1)
}

// setZeroPage marks grain idx allocated-and-zero.
func (g *geometry) setZeroPage(e *epoch, idx uint64) {
	if g.pageOf(e.root.Load(), idx) == zeroPage {
		return
	}
	leaf := g.ownLeaf(e, idx, true)
	if leaf == nil {
		return
	}
	leaf.mu.Lock()
	if leaf.dead.Load() {
		leaf.mu.Unlock()
		return
	}
	old := leaf.pages[idx&fanoutMask].Swap(zeroPage)
	leaf.mu.Unlock()
	if old != nil {
		g.releasePage(old, nil)
	}
}

// punch turns grains [lo, hi) into holes in the subtree in slot, which
// covers the grains from base at the given level. A subtree the range
// covers whole is dropped in one step, so trimming a large range costs in
// proportion to what was allocated there, not to its length. owner is the
// node whose slot it is (nil for the root) and mu its lock.
func (g *geometry) punch(e *epoch, owner *node, slot *atomic.Pointer[node], mu *sync.Mutex, level int, base, lo, hi uint64) {
	n := slot.Load()
	if n == nil {
		return
	}
	span := uint64(1) << (uint(level+1) * fanoutShift)
	if lo <= base && base+span <= hi {
		mu.Lock()
		if owner != nil && owner.dead.Load() {
			mu.Unlock()
			return
		}
		old := slot.Swap(nil)
		mu.Unlock()
		if old != nil {
			g.releaseNode(old, live)
		}
		return
	}
	if n.gen.Load() != e.gen {
		if n = g.own(owner, slot, mu, e.gen, level); n == nil {
			return
		}
	}
	child := span >> fanoutShift
	first, last := max(lo, base), min(hi, base+span)
	for i := int((first - base) / child); i <= int((last-1-base)/child); i++ {
		cbase := base + uint64(i)*child
		if level == 0 {
			n.mu.Lock()
			if n.dead.Load() {
				n.mu.Unlock()
				return
			}
			old := n.pages[i].Swap(nil)
			n.mu.Unlock()
			if old != nil {
				g.releasePage(old, nil)
			}
			continue
		}
		g.punch(e, n, &n.kids[i], &n.mu, level-1, cbase, lo, hi)
	}
}

// read copies the volume's bytes from off into p, using the tree at root.
// The range has been checked. It touches grains of the range readAhead
// ahead of the one it copies.
//
// live, for a volume's read, is the epoch's root: the tree at root can
// change while the read runs, and a page can leave it. A page that leaves a
// volume's tree is not freed while someone may read it, but an image that
// shared it can be released meanwhile and its block reused at once (see
// Store.FreeBatch), by any volume of the store: the bytes a read copied
// would then be another grain's. So after each copy read checks that the
// leaf is alive and still holds the page, which keeps the block from being
// freed, and otherwise reads the grain again from the epoch's current root;
// a write racing the read changed the grain, and either content is right.
// An image's tree does not change while it is read, and live is nil.
func (g *geometry) read(root *node, live *atomic.Pointer[node], p []byte, off int64) {
	var touched byte
	for len(p) > 0 {
		idx := uint64(off >> g.shift)
		o := int(off & (g.grain - 1))
		leaf := g.leafOf(root, idx)
		// Serve every grain of this leaf that the read covers.
		for {
			n := min(len(p), int(g.grain)-o)
			var slot *atomic.Pointer[page]
			var pg *page
			if leaf != nil {
				slot = &leaf.pages[idx&fanoutMask]
				pg = slot.Load()
			}
			// Touch the grain readAhead on, if this leaf and the range
			// hold it, so that its miss overlaps this copy.
			if ahead := idx + readAhead; readAhead > 0 && leaf != nil && len(p) > int(readAhead-1)*int(g.grain)+n && ahead&^fanoutMask == idx&^fanoutMask {
				if nx := leaf.pages[ahead&fanoutMask].Load(); nx != nil && nx != zeroPage {
					touched += *nx.data
				}
			}
			if pg == nil || pg == zeroPage {
				clear(p[:n])
			} else {
				if pageLoaded != nil {
					pageLoaded()
				}
				copy(p[:n], pg.bytes(g.grain)[o:])
				if live != nil && (leaf.dead.Load() || slot.Load() != pg) {
					root = live.Load()
					leaf = g.leafOf(root, idx)
					continue
				}
			}
			p, off, o = p[n:], off+int64(n), 0
			idx++
			if len(p) == 0 || idx&fanoutMask == 0 {
				break
			}
		}
	}
	runtime.KeepAlive(touched)
}

// pageLoaded, when set (by tests only), runs in read between loading a page
// and copying from it.
var pageLoaded func()

// walk calls visit for every run of grains in [lo, hi) in the tree at root
// that share a kind, without visiting holes grain by grain.
func (g *geometry) walk(n *node, level int, base, lo, hi uint64, visit func(idx, count uint64, kind ExtentKind)) {
	span := uint64(1) << (uint(level+1) * fanoutShift)
	first, last := max(lo, base), min(hi, base+span)
	if n == nil {
		visit(first, last-first, Hole)
		return
	}
	child := span >> fanoutShift
	for i := int((first - base) / child); i <= int((last-1-base)/child); i++ {
		cbase := base + uint64(i)*child
		if level == 0 {
			kind := Data
			switch p := n.pages[i].Load(); p {
			case nil:
				kind = Hole
			case zeroPage:
				kind = Zero
			}
			visit(cbase, 1, kind)
			continue
		}
		g.walk(n.kids[i].Load(), level-1, cbase, lo, hi, visit)
	}
}

// diff calls visit for every grain in [lo, hi) whose page differs between
// the trees at a and b. Subtrees the two share are skipped without being
// read (C7).
func (g *geometry) diff(a, b *node, level int, base, lo, hi uint64, visit func(idx uint64)) {
	if a == b {
		return
	}
	span := uint64(1) << (uint(level+1) * fanoutShift)
	child := span >> fanoutShift
	first, last := max(lo, base), min(hi, base+span)
	for i := int((first - base) / child); i <= int((last-1-base)/child); i++ {
		cbase := base + uint64(i)*child
		if level == 0 {
			var pa, pb *page
			if a != nil {
				pa = a.pages[i].Load()
			}
			if b != nil {
				pb = b.pages[i].Load()
			}
			if pa != pb {
				visit(cbase)
			}
			continue
		}
		var ka, kb *node
		if a != nil {
			ka = a.kids[i].Load()
		}
		if b != nil {
			kb = b.kids[i].Load()
		}
		g.diff(ka, kb, level-1, cbase, lo, hi, visit)
	}
}

// readAhead is how many grains ahead of its copy read touches the next
// grain's first line, so that the miss on it (a TLB miss and a DRAM access
// where grains lie scattered, as copy-on-write under snapshots leaves them)
// overlaps with the copy. 1 MiB reads of a scattered 1 GiB volume: medians
// 143 µs at 3 against 193 µs without; in order, 103 µs against 100 µs
// (BenchmarkReadLarge, Intel Xeon). On an AMD EPYC (family 26) it helps
// as much: scattered, medians 234 µs without, 175-204 µs at 2 to 8 (193 µs
// at 3); in order, 76 µs against 71 µs. One value serves both, so it is
// not chosen by CPU. ReadVec does not touch: it copies nothing, and the
// kernel's copy into the socket is where its misses are. A variable so
// that the benchmark can compare.
var readAhead uint64 = 3
