package lun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/lun/durable"
)

// DefaultMaxSnapshots is the per-LUN snapshot limit when Config leaves it 0.
// VSS sets no limit for hardware providers; the provider defines one and
// answers VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED past it (vss-spec.md
// F.9). 512 matches the system provider's cap.
const DefaultMaxSnapshots = 512

// Config configures an Array.
type Config struct {
	// Capacity is the most data, in bytes, the array's LUNs, snapshots and
	// clones hold together; 0 for no limit. It also bounds what thick LUNs
	// provision: Create refuses a thick LUN whose size would bring the sum
	// of the thick LUNs' sizes past it (*CapacityError). Thin LUNs,
	// snapshot LUNs and clones may overcommit it.
	Capacity int64
	// Grain is the copy-on-write grain; 0 for cow.DefaultGrain.
	Grain int
	// MaxSnapshots is the per-LUN snapshot limit; 0 for DefaultMaxSnapshots.
	MaxSnapshots int
	// HoldDeadline is the default flush & hold deadline; 0 for
	// DefaultHoldDeadline.
	HoldDeadline time.Duration
}

// Options describe a new LUN.
type Options struct {
	Size      int64
	BlockSize int // 512 or 4096; 0 for 512
	ReadOnly  bool
	Masked    bool
	// Thin lets the LUN overcommit the array: its size is not set against
	// the capacity, and a write fails with cow.ErrNoSpace when the store
	// is full. A thick LUN (the default) is created only when its size
	// fits beside the other thick LUNs' (Config.Capacity). That is
	// admission, not a reservation: the store sets no blocks aside, so
	// once thin LUNs or the copies kept for snapshots fill it, a thick
	// LUN's write fails with cow.ErrNoSpace too. Reserving a thick LUN's
	// blocks in the store at creation was rejected for now: a write would
	// then have to tell its own reserve from the shared one.
	Thin bool
	// Identity overrides the generated one; its NAA must be unique.
	Identity *Identity
	// Cache is the write cache the LUN emulates (SetCache), CacheSize
	// the writes it holds (DefaultCacheSize when 0). In memory only.
	Cache     CacheMode
	CacheSize int64
	// CrashPoints is how many crash points (FLUSHes and marks) the LUN
	// keeps, newest first; 0 for none. They need a cache mode.
	CrashPoints int
}

// Array is a storage array of software LUNs sharing one cow store. Its
// methods are safe for concurrent use.
type Array struct {
	cfg   Config
	store cow.Store
	// db keeps a durable array (Open); nil in memory (NewArray).
	db *durable.DB

	mu struct {
		sync.RWMutex
		luns map[string]*LUN // prepared snapshots included, marked pending
	}
}

func (cfg Config) withDefaults() Config {
	if cfg.Grain == 0 {
		cfg.Grain = cow.DefaultGrain
	}
	if cfg.MaxSnapshots <= 0 {
		cfg.MaxSnapshots = DefaultMaxSnapshots
	}
	if cfg.HoldDeadline <= 0 {
		cfg.HoldDeadline = DefaultHoldDeadline
	}
	return cfg
}

// NewArray returns an empty array in memory: nothing survives the
// process (see Open for one that does).
func NewArray(cfg Config) (*Array, error) {
	cfg = cfg.withDefaults()
	store, err := cow.NewMemStore(cfg.Grain, cfg.Capacity)
	if err != nil {
		return nil, err
	}
	a := &Array{cfg: cfg, store: store}
	a.mu.luns = make(map[string]*LUN)
	return a, nil
}

// Config returns the array's configuration with defaults filled in.
func (a *Array) Config() Config { return a.cfg }

// StoreStats returns the store's accounting: data and metadata in use.
func (a *Array) StoreStats() cow.StoreStats { return a.store.Stats() }

func checkName(name string) error {
	if name == "" || len(name) > 255 || name == "." || name == ".." {
		return ErrBadName // "." and ".." are path segments to every URL and NBD client
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			return ErrBadName
		}
	}
	return nil
}

func (a *Array) newLUN(name string, kind Kind, id Identity, size int64, bs int) *LUN {
	return &LUN{name: name, kind: kind, id: id, size: size, blockSize: bs, array: a, gate: newGate(), created: time.Now()}
}

// insert adds l under its name unless the name is taken or, for a thick
// LUN, its size does not fit beside the thick LUNs' (Config.Capacity).
// Both are checked under one lock, so two creations cannot both take the
// last of the capacity.
func (a *Array) insert(l *LUN) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.mu.luns[l.name]; ok {
		return fmt.Errorf("%w: %s", ErrExists, l.name)
	}
	if c := a.cfg.Capacity; c > 0 && !l.Thin() {
		if thick := a.provisionedLocked().ThickBytes; l.size > c-thick {
			return &CapacityError{LUN: l.name, Size: l.size, Capacity: c, Provisioned: thick}
		}
	}
	a.mu.luns[l.name] = l
	return nil
}

// Provisioning is what the array's LUNs provision against its capacity:
// the sum of their sizes, thick and thin. Snapshot LUNs are not counted:
// they write nothing, and hold only the blocks their source has
// overwritten since, which the store's data accounts for.
type Provisioning struct {
	// ThickBytes is the sum of the thick LUNs' sizes; Create keeps it
	// within the capacity.
	ThickBytes int64
	// ThinBytes is the sum of the sizes of thin LUNs and clones.
	ThinBytes int64
}

// Provisioned returns what the array's LUNs provision, LUNs being created
// included.
func (a *Array) Provisioned() Provisioning {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.provisionedLocked()
}

// provisionedLocked sums the sizes with a.mu held. It walks every LUN
// rather than keeping running sums, which every insert, removal and
// rebuild would have to keep right: creations are rare and the walk is
// a few microseconds for thousands of LUNs.
func (a *Array) provisionedLocked() Provisioning {
	var p Provisioning
	for _, l := range a.mu.luns {
		switch {
		case l.kind == Snapshot:
		case l.Thin():
			p.ThinBytes += l.size
		default:
			p.ThickBytes += l.size
		}
	}
	return p
}

// Create adds an empty LUN. A thick one (opts.Thin false) whose size does
// not fit beside the other thick LUNs' in the capacity is refused with a
// *CapacityError (ErrCapacity).
func (a *Array) Create(name string, opts Options) (*LUN, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = 512
	}
	if bs != 512 && bs != 4096 || opts.Size <= 0 || opts.Size%int64(bs) != 0 {
		return nil, ErrBadGeometry
	}
	if opts.Cache > CacheReorder {
		return nil, ErrCacheMode
	}
	if opts.Cache != CacheNone && a.db != nil {
		return nil, ErrCacheDurable
	}
	id := NewIdentity(ProductLUN)
	if opts.Identity != nil {
		id = *opts.Identity
	}
	l := a.newLUN(name, Original, id, opts.Size, bs)
	l.thin = opts.Thin
	l.readOnly.Store(opts.ReadOnly)
	l.masked.Store(opts.Masked)
	// Reserve the name first, pending (no data), so that the record is
	// written for a LUN no one else can create meanwhile.
	if err := a.insert(l); err != nil {
		return nil, err
	}
	var vol *cow.Volume
	var err error
	if a.db != nil {
		var t *durable.Tree
		if t, err = a.db.NewVolume(opts.Size, l.edits()); err == nil {
			l.tree, vol = t, t.Volume()
		}
	} else {
		vol, err = cow.NewVolume(a.store, opts.Size)
	}
	if err != nil {
		a.remove(l)
		if errors.Is(err, cow.ErrOutOfRange) || errors.Is(err, cow.ErrGrainSize) {
			return nil, fmt.Errorf("%w: %w", ErrBadGeometry, err)
		}
		return nil, fmt.Errorf("lun: create %s: %w", name, err)
	}
	l.data.Store(&data{vol: vol})
	if opts.Cache != CacheNone {
		if err := l.SetCache(context.Background(), opts.Cache, opts.CacheSize, opts.CrashPoints); err != nil {
			_ = a.Delete(name)
			return nil, err
		}
	}
	return l, nil
}

// Get returns the LUN called name; prepared snapshots not yet committed
// are not found.
func (a *Array) Get(name string) (*LUN, error) {
	a.mu.RLock()
	l, ok := a.mu.luns[name]
	a.mu.RUnlock()
	if !ok || l.isPending() {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return l, nil
}

// List returns every LUN, masked ones included, sorted by name.
func (a *Array) List() []*LUN {
	a.mu.RLock()
	out := make([]*LUN, 0, len(a.mu.luns))
	for _, l := range a.mu.luns {
		if !l.isPending() {
			out = append(out, l)
		}
	}
	a.mu.RUnlock()
	slices.SortFunc(out, func(x, y *LUN) int { return strings.Compare(x.name, y.name) })
	return out
}

// Delete removes a LUN: holds of it are released, I/O queued or in flight
// fails with ErrDeleted, and its blocks go back to the store unless
// snapshots or clones share them.
func (a *Array) Delete(name string) error {
	a.mu.Lock()
	l, ok := a.mu.luns[name]
	if ok && !l.isPending() {
		if err := a.forget(l); err != nil {
			a.mu.Unlock()
			return fmt.Errorf("lun: delete %s: %w", name, err)
		}
		delete(a.mu.luns, name)
	}
	a.mu.Unlock()
	if !ok || l.isPending() {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	a.destroy(l)
	return nil
}

func (a *Array) destroy(l *LUN) {
	l.deleted.Store(true)
	l.gate.shut()
	if l.kind == Snapshot && l.parent != nil {
		l.parent.snapshots.Add(-1)
		l.parent.lastSnap.CompareAndSwap(l, nil)
	}
	l.release()
}

// SnapshotGroup prepares snapshot LUNs of several sources and commits them
// at one instant: a consistency group, as a VSS snapshot set commits its
// LUNs. Preparing reserves everything (name, identity, the source's snapshot
// count, the cow group's epochs and images), so that the commit is one
// atomic swap for the whole group plus a few stores per LUN (cow.Group).
//
// A source belongs to at most one group being prepared (ErrInSet). A
// SnapshotGroup is not safe for concurrent use: one caller prepares,
// commits or aborts it. Every group must end with CommitAt or Abort.
type SnapshotGroup struct {
	a       *Array
	g       *cow.Group
	members []*PendingSnapshot
	state   groupState
}

type groupState uint8

const (
	groupOpen groupState = iota
	groupCommitted
	groupAborted
)

// NewSnapshotGroup returns an empty group.
func (a *Array) NewSnapshotGroup() *SnapshotGroup {
	return &SnapshotGroup{a: a, g: cow.NewGroup()}
}

// PendingSnapshot is a snapshot LUN prepared and not yet committed: its name
// is reserved, its identity fixed and the source's snapshot count taken.
// Its group's commit gives it its data.
type PendingSnapshot struct {
	group   *SnapshotGroup
	lun     *LUN
	source  *LUN
	aborted bool
}

// Prepare prepares a snapshot LUN of source under name (source plus a
// timestamp when empty) for the group's commit. It fails with
// ErrMaxSnapshots when the source has its limit of snapshots and with
// ErrInSet when the source is in another group being prepared.
func (sg *SnapshotGroup) Prepare(source, name string) (*PendingSnapshot, error) {
	if sg.state != groupOpen {
		return nil, ErrGroupDone
	}
	a := sg.a
	src, l, vol, err := a.reserve(source, name)
	if err != nil {
		return nil, err
	}
	img, err := sg.g.Add(vol)
	if err != nil {
		a.unreserve(src, l)
		if errors.Is(err, cow.ErrBusy) {
			return nil, fmt.Errorf("%w: %s", ErrInSet, source)
		}
		return nil, mapErr(err)
	}
	// Published now, so that the commit need not: the LUN stays pending
	// (invisible, no I/O) until the image is committed. Likewise it becomes
	// the source's newest snapshot now; readers skip it while it is
	// pending, and the commit checks that no other snapshot of the source
	// took its place meanwhile.
	l.data.Store(&data{img: img})
	src.pushSnapshot(l)
	p := &PendingSnapshot{group: sg, lun: l, source: src}
	sg.members = append(sg.members, p)
	return p, nil
}

// CommitAt takes the point-in-time images of every source in the group at
// one instant, stamped created (one reading of the clock for the group):
// one cow group commit (C1), then each snapshot LUN becomes visible, still
// masked. It allocates nothing. All or none: if a source was deleted since
// its prepare, nothing is committed, the whole group is aborted and
// CommitAt fails with ErrDeleted.
func (sg *SnapshotGroup) CommitAt(created time.Time) error {
	if sg.state != groupOpen {
		return ErrGroupDone
	}
	// What readers of a committed LUN see is written before the commit
	// point, which publishes it: the cow commit is the instant the LUNs
	// stop being pending.
	for _, p := range sg.members {
		if !p.aborted {
			p.lun.created = created
			if p.source.lastSnap.Load() != p.lun {
				// Another snapshot of the source was prepared since:
				// this one, committed now, is the newest again.
				p.source.pushSnapshot(p.lun)
			}
		}
	}
	imgs, err := sg.g.Commit()
	if err != nil {
		sg.Abort()
		return mapErr(err)
	}
	sg.state = groupCommitted
	var snaps []*LUN
	var kept []*cow.Image
	for i, p := range sg.members {
		if p.aborted {
			_ = imgs[i].Release()
		} else {
			snaps, kept = append(snaps, p.lun), append(kept, imgs[i])
		}
	}
	if err := sg.a.persistCommit(snaps, kept); err != nil {
		// Not written down: the set did not happen, here as after a
		// restart.
		sg.Abort()
		return fmt.Errorf("lun: commit: %w", err)
	}
	return nil
}

// Abort discards the group: before the commit, its prepared snapshots and
// the cow group; after it, every snapshot LUN the commit made, so that a
// set that fails after its commit leaves nothing (vss-spec.md B.9).
func (sg *SnapshotGroup) Abort() {
	sg.abortOpen()
	for _, p := range sg.members {
		p.discard()
	}
}

// abortOpen aborts the cow group if the group is still open.
func (sg *SnapshotGroup) abortOpen() {
	if sg.state == groupOpen {
		sg.state = groupAborted
		sg.g.Abort()
	}
}

// LUN returns the snapshot LUN being prepared: its name and identity are
// final, its data is not there until the commit.
func (p *PendingSnapshot) LUN() *LUN { return p.lun }

// Source returns the LUN being snapshotted.
func (p *PendingSnapshot) Source() *LUN { return p.source }

// Commit commits the snapshot's group, stamped now. See CommitAt.
func (p *PendingSnapshot) Commit() error { return p.CommitAt(time.Now()) }

// CommitAt commits the snapshot's group (SnapshotGroup.CommitAt): for a
// snapshot prepared with Array.PrepareSnapshot, that is this snapshot
// alone. It fails with ErrDeleted if this snapshot was aborted.
func (p *PendingSnapshot) CommitAt(created time.Time) error {
	if p.aborted {
		return ErrDeleted
	}
	if p.group.state == groupAborted {
		return ErrDeleted
	}
	return p.group.CommitAt(created)
}

// Abort discards this snapshot: its name, its identity and its place in the
// source's count. After the commit it deletes the committed snapshot LUN;
// before it, the group commits without this snapshot (and a group with no
// snapshot left is aborted).
func (p *PendingSnapshot) Abort() {
	if p.aborted {
		return
	}
	p.discard()
	if !p.group.anyLive() {
		p.group.abortOpen()
	}
}

// discard removes the snapshot LUN from the array, once.
func (p *PendingSnapshot) discard() {
	if p.aborted {
		return
	}
	p.aborted = true
	l := p.lun
	p.group.a.remove(l)
	if l.deleted.Swap(true) {
		return
	}
	l.gate.shut()
	p.source.snapshots.Add(-1)
	p.source.lastSnap.CompareAndSwap(l, l.prev.Value())
	l.release()
}

// PrepareSnapshot prepares a snapshot LUN of source under name, in a group
// of its own. See SnapshotGroup.Prepare.
func (a *Array) PrepareSnapshot(source, name string) (*PendingSnapshot, error) {
	return a.NewSnapshotGroup().Prepare(source, name)
}

// pushSnapshot makes snap the source's newest snapshot, and the newest
// committed one before it snap's base for changed-block tracking (prepared
// snapshots in between are skipped: they are later than snap once they
// commit, and move themselves above it then). snap.prev is written before
// snap is published, for readers of lastSnap.
func (l *LUN) pushSnapshot(snap *LUN) {
	for {
		head := l.lastSnap.Load()
		prev := head
		for prev != nil && prev.isPending() {
			prev = prev.prev.Value()
		}
		snap.prev = weak.Make(prev)
		if l.lastSnap.CompareAndSwap(head, snap) {
			return
		}
	}
}

// anyLive reports whether a snapshot of the group is not aborted.
func (sg *SnapshotGroup) anyLive() bool {
	for _, p := range sg.members {
		if !p.aborted {
			return true
		}
	}
	return false
}

// unreserve undoes reserve for a snapshot LUN that got no data.
func (a *Array) unreserve(src, l *LUN) {
	a.remove(l)
	src.snapshots.Add(-1)
}

// remove takes l out of the array's namespace if it is still there.
func (a *Array) remove(l *LUN) {
	a.mu.Lock()
	if cur, ok := a.mu.luns[l.name]; ok && cur == l {
		delete(a.mu.luns, l.name)
	}
	a.mu.Unlock()
}

// Snapshot prepares and commits a snapshot LUN of source in one step.
//
// Unlike a group's commit it works on a source that is in a group being
// prepared (a periodic snapshot during a VSS set): the group then commits
// the source's content at its own, later instant.
func (a *Array) Snapshot(source, name string) (*LUN, error) {
	src, l, vol, err := a.reserve(source, name)
	if err != nil {
		return nil, err
	}
	created := time.Now()
	img, err := vol.Snapshot()
	if err != nil {
		a.unreserve(src, l)
		return nil, mapErr(err)
	}
	l.created = created
	if err := a.persistCommit([]*LUN{l}, []*cow.Image{img}); err != nil {
		a.unreserve(src, l)
		_ = img.Release()
		return nil, fmt.Errorf("lun: snapshot %s: %w", source, err)
	}
	src.pushSnapshot(l) // before the LUN stops being pending, below
	l.data.Store(&data{img: img})
	return l, nil
}

// reserve checks that a snapshot of source can be taken under name (source
// plus a timestamp when empty) and reserves it: the source's snapshot
// count, the name, and the snapshot LUN, inserted pending (no data yet).
func (a *Array) reserve(source, name string) (src, l *LUN, vol *cow.Volume, err error) {
	src, err = a.Get(source)
	if err != nil {
		return nil, nil, nil, err
	}
	if src.kind == Snapshot {
		return nil, nil, nil, fmt.Errorf("%w: %s is a snapshot; clone it first", ErrReadOnly, source)
	}
	vol = src.data.Load().vol
	if vol == nil {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrReadOnly, source)
	}
	if name == "" {
		name = fmt.Sprintf("%s.snap-%d", source, time.Now().UnixNano())
	}
	if err := checkName(name); err != nil {
		return nil, nil, nil, err
	}
	if int(src.snapshots.Add(1)) > a.cfg.MaxSnapshots {
		src.snapshots.Add(-1)
		return nil, nil, nil, ErrMaxSnapshots
	}
	l = a.newLUN(name, Snapshot, NewIdentity(ProductSnapshot), src.size, src.blockSize)
	l.parent = src
	l.readOnly.Store(true)
	l.masked.Store(true)
	if err := a.insert(l); err != nil {
		src.snapshots.Add(-1)
		return nil, nil, nil, err
	}
	return src, l, vol, nil
}

// Clone adds a writable LUN whose content starts as the snapshot LUN's.
func (a *Array) Clone(snapshot, name string) (*LUN, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	snap, err := a.Get(snapshot)
	if err != nil {
		return nil, err
	}
	d := snap.data.Load()
	if d.img == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotSnapshot, snapshot)
	}
	l := a.newLUN(name, Clone, NewIdentity(ProductLUN), snap.size, snap.blockSize)
	l.parent = snap
	if err := a.insert(l); err != nil {
		return nil, err
	}
	var vol *cow.Volume
	if a.db != nil {
		var t *durable.Tree
		if st := snap.durableTree(); st == nil || st.Live() {
			err = fmt.Errorf("%w: %s", ErrNotSnapshot, snapshot)
		} else if t, err = a.db.Clone(st, l.edits()); err == nil {
			l.tree, vol = t, t.Volume()
		}
	} else {
		vol, err = d.img.Clone()
	}
	if err != nil {
		a.remove(l)
		return nil, fmt.Errorf("lun: clone %s: %w", snapshot, mapErr(err))
	}
	l.data.Store(&data{vol: vol})
	return l, nil
}

// Revert makes the source LUN's content that of one of its snapshot LUNs,
// inside the array and in O(1) (a provider's ResyncLuns). I/O admitted
// before it drains first.
func (a *Array) Revert(source, snapshot string) error {
	src, err := a.Get(source)
	if err != nil {
		return err
	}
	snap, err := a.Get(snapshot)
	if err != nil {
		return err
	}
	sd, dd := snap.data.Load(), src.data.Load()
	if sd.img == nil {
		return fmt.Errorf("%w: %s", ErrNotSnapshot, snapshot)
	}
	if dd.vol == nil {
		return fmt.Errorf("%w: %s", ErrReadOnly, source)
	}
	if a.db != nil {
		st, dt := snap.durableTree(), src.durableTree()
		if dt == nil || st == nil || st.Live() {
			return fmt.Errorf("%w: %s", ErrNotSnapshot, snapshot)
		}
		if err := a.db.Revert(dt, st, nil); err != nil {
			return fmt.Errorf("lun: revert %s to %s: %w", source, snapshot, mapErr(err))
		}
		return nil
	}
	if err := dd.vol.Revert(sd.img); err != nil {
		return mapErr(err)
	}
	if c := src.cache.Load(); c != nil && c.logs() {
		// A revert is the array's own work, not a cached write: it
		// survives a power cut.
		return src.advance(c)
	}
	return nil
}
