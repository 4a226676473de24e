package lun

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/cow"
)

// DefaultMaxSnapshots is the per-LUN snapshot limit when Config leaves it 0.
// VSS sets no limit for hardware providers; the provider defines one and
// answers VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED past it (vss-spec.md
// F.9). 512 matches the system provider's cap.
const DefaultMaxSnapshots = 512

// Config configures an Array.
type Config struct {
	// Capacity is the most data, in bytes, the array's LUNs, snapshots and
	// clones hold together; 0 for no limit. LUNs are thin: their sizes
	// may add up to more.
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
	// Identity overrides the generated one; its NAA must be unique.
	Identity *Identity
}

// Array is a storage array of software LUNs sharing one cow store. Its
// methods are safe for concurrent use.
type Array struct {
	cfg   Config
	store *cow.MemStore

	mu struct {
		sync.RWMutex
		luns map[string]*LUN // prepared snapshots included, marked pending
	}
}

// NewArray returns an empty array.
func NewArray(cfg Config) (*Array, error) {
	if cfg.Grain == 0 {
		cfg.Grain = cow.DefaultGrain
	}
	if cfg.MaxSnapshots <= 0 {
		cfg.MaxSnapshots = DefaultMaxSnapshots
	}
	if cfg.HoldDeadline <= 0 {
		cfg.HoldDeadline = DefaultHoldDeadline
	}
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
	if name == "" || len(name) > 255 {
		return ErrBadName
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

// insert adds l under its name unless the name is taken.
func (a *Array) insert(l *LUN) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.mu.luns[l.name]; ok {
		return fmt.Errorf("%w: %s", ErrExists, l.name)
	}
	a.mu.luns[l.name] = l
	return nil
}

// Create adds an empty LUN.
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
	vol, err := cow.NewVolume(a.store, opts.Size)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadGeometry, err)
	}
	id := NewIdentity(ProductLUN)
	if opts.Identity != nil {
		id = *opts.Identity
	}
	l := a.newLUN(name, Original, id, opts.Size, bs)
	l.data.Store(&data{vol: vol})
	l.readOnly.Store(opts.ReadOnly)
	l.masked.Store(opts.Masked)
	if err := a.insert(l); err != nil {
		_ = vol.Release()
		return nil, err
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

// PendingSnapshot is a snapshot LUN prepared and not yet committed: its name
// is reserved, its identity fixed and the source's snapshot count taken, so
// that Commit is a pointer swap that cannot fail for want of resources.
//
// A PendingSnapshot is not safe for concurrent use: one caller prepares,
// commits or aborts it.
type PendingSnapshot struct {
	a      *Array
	lun    *LUN
	source *LUN
	prep   *cow.PreparedSnapshot
	data   *data // allocated here, published by Commit
	done   bool
}

// PrepareSnapshot prepares a snapshot LUN of source under name (source
// plus a timestamp when empty). It fails with ErrMaxSnapshots when the
// source has its limit of snapshots.
func (a *Array) PrepareSnapshot(source, name string) (*PendingSnapshot, error) {
	src, err := a.Get(source)
	if err != nil {
		return nil, err
	}
	if src.kind == Snapshot {
		return nil, fmt.Errorf("%w: %s is a snapshot; clone it first", ErrReadOnly, source)
	}
	if name == "" {
		name = fmt.Sprintf("%s.snap-%d", source, time.Now().UnixNano())
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if int(src.snapshots.Add(1)) > a.cfg.MaxSnapshots {
		src.snapshots.Add(-1)
		return nil, ErrMaxSnapshots
	}
	l := a.newLUN(name, Snapshot, NewIdentity(ProductSnapshot), src.size, src.blockSize)
	l.parent = src
	l.readOnly.Store(true)
	l.masked.Store(true)
	d := src.data.Load()
	if d.vol == nil {
		src.snapshots.Add(-1)
		return nil, fmt.Errorf("%w: %s", ErrReadOnly, source)
	}
	if err := a.insert(l); err != nil {
		src.snapshots.Add(-1)
		return nil, err
	}
	return &PendingSnapshot{a: a, lun: l, source: src, prep: d.vol.PrepareSnapshot(), data: &data{}}, nil
}

// LUN returns the snapshot LUN being prepared: its name and identity are
// final, its data is not there until Commit.
func (p *PendingSnapshot) LUN() *LUN { return p.lun }

// Source returns the LUN being snapshotted.
func (p *PendingSnapshot) Source() *LUN { return p.source }

// Commit takes the point-in-time image, stamped now. See CommitAt.
func (p *PendingSnapshot) Commit() error { return p.CommitAt(time.Now()) }

// CommitAt takes the point-in-time image: one cow pointer swap (C1), then
// the LUN becomes visible (still masked), stamped with created so that a
// set of LUNs can share one reading of the clock. It allocates nothing. It
// fails only if the source was deleted or reverted to another volume since
// the prepare, and then the pending snapshot is aborted.
func (p *PendingSnapshot) CommitAt(created time.Time) error {
	if p.done {
		return ErrDeleted
	}
	if p.source.deleted.Load() || p.source.data.Load().vol == nil {
		p.Abort()
		return ErrDeleted
	}
	img, err := p.prep.Commit()
	if err != nil {
		p.Abort()
		return p.source.mapErr(err)
	}
	p.done = true
	l := p.lun
	l.created = created
	p.data.img = img
	l.data.Store(p.data)
	l.prev = p.source.lastSnap.Swap(l)
	return nil
}

// Abort discards the prepared snapshot: its name, its identity and its
// place in the source's count. After a Commit, Abort deletes the committed
// snapshot, so a set that fails part way leaves nothing (vss-spec.md B.9).
func (p *PendingSnapshot) Abort() {
	l := p.lun
	p.a.mu.Lock()
	if cur, ok := p.a.mu.luns[l.name]; ok && cur == l {
		delete(p.a.mu.luns, l.name)
	}
	p.a.mu.Unlock()
	if l.deleted.Swap(true) {
		return
	}
	l.gate.shut()
	p.source.snapshots.Add(-1)
	p.source.lastSnap.CompareAndSwap(l, l.prev)
	p.done = true
	l.release()
}

// Snapshot prepares and commits a snapshot LUN of source in one step.
func (a *Array) Snapshot(source, name string) (*LUN, error) {
	p, err := a.PrepareSnapshot(source, name)
	if err != nil {
		return nil, err
	}
	if err := p.Commit(); err != nil {
		return nil, err
	}
	return p.lun, nil
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
	vol, err := d.img.Clone()
	if err != nil {
		return nil, snap.mapErr(err)
	}
	l := a.newLUN(name, Clone, NewIdentity(ProductLUN), snap.size, snap.blockSize)
	l.parent = snap
	l.data.Store(&data{vol: vol})
	if err := a.insert(l); err != nil {
		_ = vol.Release()
		return nil, err
	}
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
	if err := dd.vol.Revert(sd.img); err != nil {
		return src.mapErr(err)
	}
	return nil
}
