package cow

import "sync/atomic"

// Reads without a copy. ReadVec hands a read's bytes out as slices of the
// blocks themselves, for a server that sends them with one writev (the
// kernel's copy into the socket is then the only copy), instead of copying
// every grain into a buffer that is then copied again.
//
// A block handed out so must not be reused while the caller still sends
// from it, which can be long after the read has left the volume: a
// client that stops reading keeps the send blocked. ReadAt's defence,
// checking after its copy that the block is still the grain's (see
// geometry.read), has nothing to check when there is no copy. So ReadVec
// pins every page it hands out: it takes a reference on the page, as a
// leaf slot does, and Vec.Release drops it. A pinned page is not freed, so
// its block is neither reused nor punched out of a file, until the last
// reference goes, pin or slot. Pinning is one compare-and-swap per grain;
// a page whose count is already zero has been freed and is not pinned, and
// the grain is read again from the volume's current tree, as ReadAt does
// after a failed check.
//
// A pin also makes the page look shared to a writer (adopt sees two
// references), so a write that would have adopted it copies it instead,
// and a pinned grain of an image keeps its bytes. A page the writer's
// generation owns is still written in place: such a read races the write,
// and returns old, new or mixed bytes, as ReadAt does (see the package's
// caveats). Holes and zeroed grains come out as slices of a shared zero
// page.
//
// Designs rejected: delaying every free of the store behind an epoch that
// senders enter and leave (RCU-like) would hold back all reuse while any
// send is blocked, by a client that stopped reading, say; a reference per
// grain holds back only what that send names, and the server's payload
// budget bounds it.

// Vec is the result of a ReadVec: the read's bytes in order, as slices of
// blocks and of a shared zero page, and the pages they pin. A Vec is
// reused across reads; Release must come before the next ReadVec.
type Vec struct {
	// Segs covers the range read, in order; their lengths add up to the
	// length read. Each block is a segment of its own (a store's Block
	// slices end at the block, so blocks end to end in a file's mapping are
	// not merged: an iovec costs the kernel little), and a run of holes
	// shares segments of up to MaxGrain.
	Segs [][]byte
	// Holes is parallel to Segs: whether the segment is zeros from the
	// shared zero page rather than a block.
	Holes []bool
	pins  []*page
	store Store
	grain int64 // the store's grain size
}

// Len is the number of bytes the Vec holds.
func (v *Vec) Len() int64 {
	var n int64
	for _, s := range v.Segs {
		n += int64(len(s))
	}
	return n
}

// Pinned is the number of pages the Vec pins.
func (v *Vec) Pinned() int { return len(v.pins) }

// maxKeptSegs bounds the segment and pin capacity a Vec keeps after
// Release, so that one huge read does not keep its arrays for good.
const maxKeptSegs = 4096

// Release unpins every page the Vec holds and empties it. A page whose
// last reference this was is freed to the store as a live release frees
// (not reused at once): its tree let go of it while it was pinned, and a
// write racing that (a trim) may still be copying into it.
func (v *Vec) Release() {
	for i, p := range v.pins {
		if p.refs.Add(-1) == 0 {
			v.store.Free(p.block(v.grain), false)
		}
		v.pins[i] = nil
	}
	clear(v.Segs)
	if cap(v.Segs) > maxKeptSegs {
		v.Segs, v.Holes, v.pins = nil, nil, nil
	}
	v.Segs, v.Holes, v.pins = v.Segs[:0], v.Holes[:0], v.pins[:0]
	v.store = nil
}

// pin takes a reference on p unless it has been freed (no reference left).
func pin(p *page) bool {
	for {
		r := p.refs.Load()
		if r <= 0 {
			return false
		}
		if p.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// add appends b to the Vec; a hole extends a hole segment before it.
func (v *Vec) add(b []byte, hole bool) {
	if k := len(v.Segs) - 1; hole && k >= 0 && v.Holes[k] {
		if n := len(v.Segs[k]) + len(b); n <= len(zeros) {
			v.Segs[k] = zeros[:n]
			return
		}
	}
	v.Segs = append(v.Segs, b)
	v.Holes = append(v.Holes, hole)
}

// ReadVec reads n bytes at off into vec without copying them (see Vec). A
// range past the end is an error (ErrOutOfRange) with nothing read. vec
// must be empty (new or released).
func (v *Volume) ReadVec(vec *Vec, off, n int64) error {
	if err := v.checkRange(off, n); err != nil {
		return err
	}
	e, t, err := v.enter()
	if err != nil {
		return err
	}
	v.readVec(e.root.Load(), &e.root, vec, off, n)
	e.inflight.Exit(t)
	return nil
}

// ReadVec reads n bytes at off into vec without copying them, as
// Volume.ReadVec does.
func (im *Image) ReadVec(vec *Vec, off, n int64) error {
	if err := im.checkRange(off, n); err != nil {
		return err
	}
	t, err := im.enter()
	if err != nil {
		return err
	}
	im.readVec(im.root, nil, vec, off, n)
	im.exit(t)
	return nil
}

// readVec is read without the copy: it pins each grain's page and adds a
// slice of its block to vec. live is as for read: a page found freed (its
// pin fails) left the volume's tree while the read ran, and the grain is
// read again from the epoch's current root. An image's pages are not
// freed while it has readers, so for an image (live nil) a pin never
// fails.
func (g *geometry) readVec(root *node, live *atomic.Pointer[node], vec *Vec, off, n int64) {
	vec.store, vec.grain = g.store, g.grain
	for n > 0 {
		idx := uint64(off >> g.shift)
		o := int(off & (g.grain - 1))
		leaf := g.leafOf(root, idx)
		for {
			k := min(n, g.grain-int64(o))
			var pg *page
			if leaf != nil {
				pg = leaf.pages[idx&fanoutMask].Load()
			}
			if pg == nil || pg == zeroPage {
				vec.add(zeros[:k], true)
			} else {
				if pageLoaded != nil {
					pageLoaded()
				}
				if !pin(pg) {
					if live == nil {
						panic("cow: an image's page was freed under its reader")
					}
					root = live.Load()
					leaf = g.leafOf(root, idx)
					continue
				}
				vec.pins = append(vec.pins, pg)
				vec.add(pg.bytes(g.grain)[o:int64(o)+k], false)
			}
			n, off, o = n-k, off+k, 0
			idx++
			if n == 0 || idx&fanoutMask == 0 {
				break
			}
		}
	}
}
