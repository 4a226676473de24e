package cow

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// A group's state. Open groups take members; a conflicting operation on a
// member volume (Snapshot, Revert, Release) holds the group busy while it
// replaces the epoch the group will end; Commit and Abort move an open group
// to its final state with one compare-and-swap.
const (
	groupOpen uint32 = iota
	groupBusy
	groupCommitted
	groupAborted
)

// Group commits snapshots of several volumes at one instant: a consistency
// group, what a VSS snapshot set asks of an array. Add prepares a volume's
// snapshot (the next epoch, the image, a reference on the tree); Commit
// then ends every member's epoch with a single atomic store of the group's
// state, which each volume's I/O checks on entry, so that the commit's cost
// is one swap for the whole group plus, per volume, a drain check and the
// hand-over of its root, with no lock and no per-volume swap (C1, C3).
//
// A volume's cur pointer moves to its new epoch lazily: the first operation
// that finds it behind moves it. A volume belongs to at most one open group
// at a time. Snapshot and Revert on a member before the commit are allowed
// (the group then commits what they leave); Release makes the group's
// Commit fail.
//
// Every Group must end with Commit or Abort, which return what Add took;
// until then its volumes cannot join another group. Its methods are safe
// for concurrent use.
type Group struct {
	mu      sync.Mutex // serializes Add, Commit and Abort
	state   atomic.Uint32
	err     error          // why the group aborted; written while busy
	ready   sync.WaitGroup // done when every member's next epoch is ready
	members []*member
	images  []*Image
}

// member is one volume of a group.
type member struct {
	g    *Group
	v    *Volume
	old  *epoch // the epoch the commit ends: moved on while the group is busy
	next *epoch // the epoch the commit starts: ready with the group
	img  *Image
	// ref is old's root when the member joined, with a reference taken for
	// the image, so that the commit, in the usual case where the root has
	// not changed since, hands it over without touching a count that every
	// I/O on the volume reads.
	ref *node
}

// NewGroup returns an empty, open group.
func NewGroup() *Group {
	g := &Group{}
	g.ready.Add(1)
	return g
}

// Add makes v a member: the group's commit will take an image of it. It
// allocates everything the commit needs, the image included, which it
// returns: until the group commits, the image's methods fail with
// ErrNotCommitted. Add fails with ErrBusy if v is in another open group or
// already in this one, with ErrReleased if v was released, and with
// ErrGroupDone once the group committed or aborted.
func (g *Group) Add(v *Volume) (*Image, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s := g.state.Load(); s != groupOpen && s != groupBusy {
		return nil, ErrGroupDone
	}
	m := &member{g: g, v: v, next: newEpoch(nil, &g.ready), img: &Image{geometry: v.geometry, group: g}}
	v.mu.Lock()
	defer v.mu.Unlock()
	e, held := v.settle()
	if held != nil {
		held.g.state.Store(groupOpen)
		return nil, ErrBusy
	}
	if e.dead {
		return nil, ErrReleased
	}
	// e.mu keeps the root in place while it gains the reference.
	e.mu.Lock()
	m.ref = e.root.Load()
	if m.ref != nil {
		m.ref.refs.Add(1)
	}
	e.mu.Unlock()
	m.old = e
	// The image and the next epoch are set up for the usual case, a root
	// that does not change before the commit, which then writes nothing.
	m.next.root.Store(m.ref)
	m.img.root, m.img.readers = m.ref, e
	e.link.Store(m)
	g.members = append(g.members, m)
	g.images = append(g.images, m.img)
	return m.img, nil
}

// Len returns the number of volumes in the group.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.members)
}

// Commit takes an image of every member at one instant and returns them in
// the order they were added. Every write acknowledged before Commit was
// called is in its volume's image, no write started after it returned is,
// and no volume's image is later than another's (C4). After the commit
// point, the single state swap, it waits for the I/O admitted before it to
// drain (none under flush & hold) and hands each volume's tree to its
// image; it allocates nothing and takes no lock a writer takes. If a member
// was released it commits nothing and fails with ErrReleased.
func (g *Group) Commit() ([]*Image, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.state.CompareAndSwap(groupOpen, groupCommitted) {
		switch g.state.Load() {
		case groupBusy:
			runtime.Gosched() // a member's epoch is being replaced
		case groupAborted:
			g.dropRefs()
			return nil, g.err
		case groupCommitted:
			return nil, ErrGroupDone
		}
	}
	// The commit point: every member's epoch has ended. Operations now
	// entering a member volume move on to its next epoch and wait there for
	// ready, below.
	for _, m := range g.members {
		if !m.old.inflight.Zero() {
			m.old.inflight.Wait(nil)
		}
	}
	for _, m := range g.members {
		if root := m.old.root.Load(); root != m.ref {
			// A write replaced the root since Add (the first write after
			// an earlier commit does), or a Revert did. The image takes a
			// reference on the new root and keeps the stale one until it
			// is released: dropping it here could free a node, 256 atomic
			// decrements.
			if root != nil {
				root.refs.Add(1)
			}
			m.next.root.Store(root) // next inherits old's reference
			m.img.root, m.img.stale = root, m.ref
		}
	}
	g.ready.Done()
	imgs := g.images
	g.members, g.images = nil, nil // each image points at g: keep them apart
	return imgs, nil
}

// Abort discards the group before it commits: its members' volumes carry on
// as if it had never been, and the references Add took are returned. After
// Commit it does nothing.
func (g *Group) Abort() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		switch g.state.Load() {
		case groupOpen:
			if g.state.CompareAndSwap(groupOpen, groupBusy) {
				g.abortHeld(ErrGroupDone)
			}
			continue
		case groupBusy:
			runtime.Gosched()
			continue
		case groupAborted:
			g.dropRefs()
		}
		return
	}
}

// abortHeld aborts a group the caller holds busy. The links members left on
// their volumes are ignored from now on and dropped by the next operation
// that settles the volume.
func (g *Group) abortHeld(err error) {
	g.err = err
	g.state.Store(groupAborted)
}

// dropRefs returns the references Add took; g.mu is held.
func (g *Group) dropRefs() {
	for _, m := range g.members {
		if m.ref != nil {
			m.v.releaseNode(m.ref, live)
			m.ref = nil
		}
	}
	g.members = nil
}

// moveTo hands the group, held busy by settle, from the epoch old to next,
// the epoch that replaced it, and reopens it. m may be nil (no group).
func (m *member) moveTo(old, next *epoch) {
	if m == nil {
		return
	}
	old.link.Store(nil)
	m.old = next
	m.img.readers = next
	next.link.Store(m)
	m.g.state.Store(groupOpen)
}
