package lun

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/cow/inflight"
	"github.com/shadowbench/shadowbench/lun/durable"
)

// Kind says what a LUN's data is.
type Kind uint8

// The kinds of LUN.
const (
	// Original is a LUN created empty, backed by a live cow volume.
	Original Kind = iota
	// Snapshot is a point-in-time image of an Original: read-only until
	// made writable (a VSS break).
	Snapshot
	// Clone is a writable clone of a Snapshot.
	Clone
)

func (k Kind) String() string {
	switch k {
	case Original:
		return "original"
	case Snapshot:
		return "snapshot"
	case Clone:
		return "clone"
	}
	return "unknown"
}

// data is what a LUN's I/O goes to: a live volume, or an image while a
// snapshot LUN is read-only. It is swapped whole (MakeWritable).
type data struct {
	vol *cow.Volume
	img *cow.Image
}

// LUN is a software LUN. Its I/O methods are safe for concurrent use and
// pass, in order, the I/O gate, fault injection and statistics on their way
// to the cow data.
type LUN struct {
	name      string
	kind      Kind
	id        Identity
	size      int64
	blockSize int
	// thin is set for an Original created thin (Options.Thin).
	thin    bool
	created time.Time
	array   *Array
	// parent is the source of a snapshot LUN, or the snapshot LUN a clone
	// was made from; nil for an Original.
	parent *LUN
	// prev is, for a snapshot LUN, the snapshot of the same source taken
	// just before it: the base of its changed-block tracking. It is weak,
	// so that a deleted snapshot is not kept alive by the one after it:
	// with a strong pointer every snapshot ever taken of a source stayed
	// reachable from its newest one, about 3 kB each (the LUN, its gate
	// and its image's drained epoch). Clearing the pointer at deletion
	// was rejected: it writes a field readers walk without a lock, and
	// still keeps one deleted LUN per live snapshot. A base that was
	// collected reads as nil, as a deleted one reads as gone.
	prev weak.Pointer[LUN]

	gate   *Gate
	stats  Stats
	faults atomic.Pointer[injectorBox]
	// faultMu orders SetFaults calls, so that a clearing one ends the
	// injections of every injector it removes.
	faultMu sync.Mutex

	data atomic.Pointer[data]
	// tree is the LUN's tree in a durable array's DB; nil in memory. It
	// changes only under mu (MakeWritable).
	tree     *durable.Tree
	mu       sync.Mutex
	readOnly atomic.Bool
	masked   atomic.Bool
	deleted  atomic.Bool

	// For an Original: its snapshot LUNs alive or prepared, and the newest.
	snapshots atomic.Int32
	lastSnap  atomic.Pointer[LUN]

	// cache is the emulated write cache (SetCache); nil for none.
	cache atomic.Pointer[cache]
}

// injectorBox is an installed injector. cleared ends when SetFaults(nil)
// removes it; injectors installed one after another without a clearing
// share it, so that clearing ends the injections of them all.
type injectorBox struct {
	Injector
	cleared context.Context
	clear   context.CancelFunc
}

// inject runs the injector for op. An injection running when the faults
// are cleared (a delay, most often) ends at once, and the operation goes
// on as it would without faults: a cleared fault has no effect left.
func (b *injectorBox) inject(ctx context.Context, op Op) error {
	ictx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.cleared, cancel)
	err := b.Inject(ictx, op)
	stop()
	cancel()
	if err != nil && b.cleared.Err() != nil && ctx.Err() == nil {
		return nil
	}
	return err
}

// isPending reports whether the LUN is a prepared snapshot not yet
// committed, and so invisible: its image is committed by its group.
func (l *LUN) isPending() bool {
	d := l.data.Load()
	return d == nil || (d.img != nil && !d.img.Committed())
}

// Name returns the LUN's name in its array (and its NBD export name).
func (l *LUN) Name() string { return l.name }

// Kind returns what the LUN is.
func (l *LUN) Kind() Kind { return l.kind }

// Identity returns the LUN's SCSI identity.
func (l *LUN) Identity() Identity { return l.id }

// Description is the identity on one line (the NBD export description).
func (l *LUN) Description() string { return l.id.String() }

// Size returns the size in bytes.
func (l *LUN) Size() int64 { return l.size }

// Thin reports whether the LUN may overcommit the array's capacity: an
// Original created thin, and every snapshot LUN and clone, which consume
// data only as they diverge from what they share.
func (l *LUN) Thin() bool { return l.thin || l.kind != Original }

// BlockSize returns the logical block size, 512 or 4096. I/O need not be
// aligned to it; it is the preferred unit.
func (l *LUN) BlockSize() int { return l.blockSize }

// Created returns when the LUN was created (committed, for a snapshot).
func (l *LUN) Created() time.Time { return l.created }

// Parent returns the source of a snapshot LUN or the snapshot a clone was
// made from, or nil.
func (l *LUN) Parent() *LUN { return l.parent }

// ReadOnly reports whether writes are refused.
func (l *LUN) ReadOnly() bool { return l.readOnly.Load() }

// Masked reports whether the LUN is hidden from hosts (not exported).
// Snapshot LUNs are created masked; a provider's LocateLuns unmasks them.
func (l *LUN) Masked() bool { return l.masked.Load() }

// SetMasked masks or unmasks the LUN; a durable array writes it down.
func (l *LUN) SetMasked(m bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.masked.Swap(m)
	if old == m {
		return nil
	}
	if err := l.rewrite(); err != nil {
		l.masked.Store(old)
		return fmt.Errorf("lun: mask %s: %w", l.name, err)
	}
	return nil
}

// Deleted reports whether the LUN has been deleted.
func (l *LUN) Deleted() bool { return l.deleted.Load() }

// Gate returns the LUN's I/O gate.
func (l *LUN) Gate() *Gate { return l.gate }

// Hold holds the LUN's I/O gate (see Gate.Hold).
func (l *LUN) Hold(ctx context.Context, deadline time.Duration) (*Hold, error) {
	if l.deleted.Load() {
		return nil, ErrDeleted
	}
	if deadline <= 0 {
		deadline = l.array.cfg.HoldDeadline
	}
	return l.gate.Hold(ctx, deadline)
}

// BeginHold closes the LUN's I/O gate without waiting for the I/O in
// flight (see Gate.Close); Hold.Drain waits for it.
func (l *LUN) BeginHold(deadline time.Duration) (*Hold, error) {
	if l.deleted.Load() {
		return nil, ErrDeleted
	}
	if deadline <= 0 {
		deadline = l.array.cfg.HoldDeadline
	}
	return l.gate.Close(deadline)
}

// SetFaults installs an injector for the LUN's operations, in place of
// the one installed before; nil removes it, and ends the injections
// running then (a delay returns at once and its operation goes on). An
// injector replaced by another is left to finish what it started.
func (l *LUN) SetFaults(inj Injector) {
	l.faultMu.Lock()
	defer l.faultMu.Unlock()
	old := l.faults.Load()
	if inj == nil {
		l.faults.Store(nil)
		if old != nil {
			old.clear()
		}
		return
	}
	b := &injectorBox{Injector: inj}
	if old != nil {
		b.cleared, b.clear = old.cleared, old.clear
	} else {
		b.cleared, b.clear = context.WithCancel(context.Background())
	}
	l.faults.Store(b)
}

// Stats returns a copy of the LUN's statistics.
func (l *LUN) Stats() []OpStats { return l.stats.Snapshot() }

// begin admits an operation: it refuses a deleted LUN, waits at the gate and
// runs the fault injector. The caller runs the operation and calls end.
// gateToken is an admitted operation: its gate token and start time.
type gateToken struct {
	t     inflight.Token
	start time.Time
}

func (l *LUN) begin(ctx context.Context, op Op) (tok gateToken, err error) {
	if l.deleted.Load() {
		return tok, ErrDeleted
	}
	if l.isPending() {
		return tok, fmt.Errorf("%w: %s is not committed", ErrNotFound, l.name)
	}
	tok.t, err = l.gate.enter(ctx)
	if err != nil {
		return tok, err
	}
	if l.deleted.Load() {
		// Queued at a held gate that Delete forced open: the volume is
		// being released, and the I/O must not land in it first.
		l.gate.exit(tok.t)
		return tok, ErrDeleted
	}
	tok.start = time.Now()
	if f := l.faults.Load(); f != nil {
		if err := f.inject(ctx, op); err != nil {
			l.end(tok, op, 0, err)
			return tok, err
		}
	}
	return tok, nil
}

// end records the operation and lets it out of the gate, in that order, so
// that once Hold returns the held LUN's statistics are final.
func (l *LUN) end(tok gateToken, op Op, n int, err error) {
	l.stats.record(op, n, time.Since(tok.start), err)
	l.gate.exit(tok.t)
}

// mapErr turns cow's view of a released volume into the LUN's.
func mapErr(err error) error {
	if errors.Is(err, cow.ErrReleased) {
		return ErrDeleted
	}
	return err
}

// ReadAt reads len(p) bytes at off.
func (l *LUN) ReadAt(ctx context.Context, p []byte, off int64) error {
	tok, err := l.begin(ctx, OpRead)
	if err != nil {
		return err
	}
	d := l.data.Load()
	if d.vol != nil {
		_, err = d.vol.ReadAt(p, off)
	} else {
		_, err = d.img.ReadAt(p, off)
	}
	err = mapErr(err)
	l.end(tok, OpRead, len(p), err)
	return err
}

// ReadVec reads length bytes at off as ReadAt does, without copying them:
// vec holds slices of the LUN's blocks, pinned until vec.Release (see
// cow.Vec). It passes the gate, the read faults and the statistics as
// ReadAt does; the send that follows is the caller's, outside the gate.
func (l *LUN) ReadVec(ctx context.Context, vec *cow.Vec, off, length int64) error {
	tok, err := l.begin(ctx, OpRead)
	if err != nil {
		return err
	}
	d := l.data.Load()
	if d.vol != nil {
		err = d.vol.ReadVec(vec, off, length)
	} else {
		err = d.img.ReadVec(vec, off, length)
	}
	err = mapErr(err)
	l.end(tok, OpRead, int(length), err)
	return err
}

// ReadHoles is a read of [off, off+length) that its caller answers as
// zeros from Extents, as an NBD server's hole chunks are: it passes the
// gate and the read faults as ReadAt does and is counted as a read of
// length bytes, but copies nothing. Without it a read of a never-written
// range would escape every read fault, since nothing else reads it.
func (l *LUN) ReadHoles(ctx context.Context, off, length int64) error {
	if off < 0 || length < 0 || off > l.size || length > l.size-off {
		return cow.ErrOutOfRange
	}
	tok, err := l.begin(ctx, OpRead)
	if err != nil {
		return err
	}
	l.end(tok, OpRead, int(min(length, 1<<62)), nil)
	return nil
}

// WriteAt writes p at off; with fua it returns once the data is durable.
func (l *LUN) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if l.readOnly.Load() {
		return ErrReadOnly
	}
	tok, err := l.begin(ctx, OpWrite)
	if err != nil {
		return err
	}
	err = l.logged(cacheRec{op: OpWrite, off: off, n: int64(len(p)), data: p, fua: fua}, func() error {
		return l.writable(func(v *cow.Volume) error {
			if fua && l.array.db == nil {
				_, err := v.WriteAtFUA(p, off)
				return err
			}
			_, err := v.WriteAt(p, off)
			return err
		})
	})
	if err == nil && fua && l.array.db != nil {
		err = l.array.db.Flush()
	}
	l.end(tok, OpWrite, len(p), err)
	return err
}

func (l *LUN) writable(fn func(v *cow.Volume) error) error {
	d := l.data.Load()
	if d.vol == nil {
		return ErrReadOnly
	}
	return mapErr(fn(d.vol))
}

// Flush makes every completed write durable.
func (l *LUN) Flush(ctx context.Context) error {
	tok, err := l.begin(ctx, OpFlush)
	if err != nil {
		return err
	}
	if l.array.db != nil {
		// One checkpoint writes down every LUN of the array: a flush is
		// the array's, as a disk's cache flush is the disk's.
		err = l.array.db.Flush()
	} else if d := l.data.Load(); d.vol != nil {
		err = mapErr(d.vol.Flush())
	}
	if err == nil {
		err = l.flushed()
	}
	l.end(tok, OpFlush, 0, err)
	return err
}

// FlushAll flushes luns as one: each LUN's flush (its faults, its gate,
// its statistics) with a single checkpoint for the LUNs of a durable
// array, rather than one per LUN, as a consistency group flushes its
// members together. It stops at the first LUN whose flush cannot begin.
func FlushAll(ctx context.Context, luns []*LUN) error {
	toks := make([]gateToken, 0, len(luns))
	var err error
	defer func() {
		for i, tok := range toks {
			luns[i].end(tok, OpFlush, 0, err)
		}
	}()
	arrays := make(map[*Array]bool)
	for _, l := range luns {
		tok, berr := l.begin(ctx, OpFlush)
		if berr != nil {
			err = berr
			return err
		}
		toks = append(toks, tok)
		arrays[l.array] = true
	}
	var errs []error
	for a := range arrays {
		if a.db != nil {
			errs = append(errs, a.db.Flush())
		}
	}
	for _, l := range luns {
		if d := l.data.Load(); l.array.db == nil && d.vol != nil {
			errs = append(errs, mapErr(d.vol.Flush()), l.flushed())
		}
	}
	err = errors.Join(errs...)
	return err
}

// Trim discards [off, off+length); the range reads as zeros afterwards.
func (l *LUN) Trim(ctx context.Context, off, length int64) error {
	return l.zero(ctx, OpTrim, off, length, false)
}

// WriteZeroes makes [off, off+length) read as zeros; with noHole the range
// stays allocated.
func (l *LUN) WriteZeroes(ctx context.Context, off, length int64, noHole bool) error {
	return l.zero(ctx, OpZero, off, length, noHole)
}

func (l *LUN) zero(ctx context.Context, op Op, off, length int64, noHole bool) error {
	if l.readOnly.Load() {
		return ErrReadOnly
	}
	tok, err := l.begin(ctx, op)
	if err != nil {
		return err
	}
	err = l.logged(cacheRec{op: op, off: off, n: length, noHole: noHole}, func() error {
		return l.writable(func(v *cow.Volume) error {
			if op == OpTrim {
				return v.Trim(off, length)
			}
			return v.WriteZeroes(off, length, noHole)
		})
	})
	l.end(tok, op, int(min(length, 1<<62)), err)
	return err
}

// Extents reports [off, off+length) as merged runs of data, zeros and holes.
func (l *LUN) Extents(ctx context.Context, off, length int64) ([]cow.Extent, error) {
	tok, err := l.begin(ctx, OpExtents)
	if err != nil {
		return nil, err
	}
	var ext []cow.Extent
	if d := l.data.Load(); d.vol != nil {
		ext, err = d.vol.Extents(off, length)
	} else {
		ext, err = d.img.Extents(off, length)
	}
	err = mapErr(err)
	l.end(tok, OpExtents, 0, err)
	return ext, err
}

// Changed reports the ranges within [off, off+length) that changed since the
// LUN's base image: for a snapshot LUN the source's previous snapshot, for an
// original its newest snapshot. It reads no data (cow C7). ErrNoBase when
// there is no such image.
func (l *LUN) Changed(ctx context.Context, off, length int64) ([]cow.Range, error) {
	tok, err := l.begin(ctx, OpExtents)
	if err != nil {
		return nil, err
	}
	ranges, err := l.changed(off, length)
	l.end(tok, OpExtents, 0, err)
	return ranges, err
}

func (l *LUN) changed(off, length int64) ([]cow.Range, error) {
	var base *LUN
	switch l.kind {
	case Snapshot:
		base = l.prev.Value()
	case Original:
		base = l.lastSnap.Load()
	}
	for base != nil && base.isPending() {
		base = base.prev.Value() // a snapshot being committed: the one before it
	}
	if base == nil || base.deleted.Load() {
		return nil, ErrNoBase
	}
	bd, d := base.data.Load(), l.data.Load()
	if bd.img == nil {
		return nil, ErrNoBase // the base was made writable: no longer a point in time
	}
	var ranges []cow.Range
	var err error
	if d.img != nil {
		ranges, err = cow.Diff(bd.img, d.img, off, length)
	} else {
		ranges, err = d.vol.ChangedSince(bd.img, off, length)
	}
	if errors.Is(err, cow.ErrReleased) {
		return nil, ErrNoBase
	}
	return ranges, err
}

// MakeWritable turns a read-only snapshot LUN into a writable one in O(1),
// by cloning its image (a VSS break with MAKE_READ_WRITE). Writes then go to
// the LUN alone.
func (l *LUN) MakeWritable() error {
	if l.deleted.Load() {
		return ErrDeleted
	}
	if l.array.db != nil {
		return l.makeWritableDurable()
	}
	d := l.data.Load()
	if d.img == nil {
		l.readOnly.Store(false)
		return nil
	}
	vol, err := d.img.Clone()
	if err != nil {
		return mapErr(err)
	}
	if !l.data.CompareAndSwap(d, &data{vol: vol}) {
		_ = vol.Release()
		return nil // made writable concurrently
	}
	l.readOnly.Store(false)
	return mapErr(d.img.Release())
}

// makeWritableDurable is MakeWritable in a durable array: the LUN's record
// names a new live tree under its image's, in one transaction.
func (l *LUN) makeWritableDurable() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.data.Load()
	if d.img == nil {
		if !l.readOnly.Swap(false) {
			return nil
		}
		if err := l.rewrite(); err != nil {
			l.readOnly.Store(true)
			return fmt.Errorf("lun: make %s writable: %w", l.name, err)
		}
		return nil
	}
	l.readOnly.Store(false)
	t, err := l.array.db.MakeWritable(l.tree, l.edits())
	if err != nil {
		l.readOnly.Store(true)
		return fmt.Errorf("lun: make %s writable: %w", l.name, mapErr(err))
	}
	l.tree = t
	l.data.Store(&data{vol: t.Volume()})
	return mapErr(d.img.Release())
}

func (l *LUN) release() {
	if c := l.cache.Swap(nil); c != nil {
		c.drop()
	}
	d := l.data.Load()
	if d == nil {
		return
	}
	if d.vol != nil {
		_ = d.vol.Release()
	}
	if d.img != nil {
		_ = d.img.Release()
	}
}
