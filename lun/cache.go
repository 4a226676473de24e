package lun

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/cow"
)

// CacheMode is the write cache a LUN emulates, which decides what a power
// cut (PowerCut) leaves of the writes acknowledged before it.
type CacheMode uint8

// The cache modes. The zero value emulates none: the LUN behaves as a
// disk with a volatile cache (SEND_FLUSH is advertised and honoured), and
// PowerCut is refused, since nothing records what a cut would lose.
const (
	CacheNone CacheMode = iota
	// CacheWriteThrough: every acknowledged write survives.
	CacheWriteThrough
	// CacheWriteBack: a write survives once a FLUSH sent after its
	// completion completes, or at once with FUA; of the others a power
	// cut keeps a subset.
	CacheWriteBack
	// CacheWriteBackBattery: the cache survives the cut; every
	// acknowledged write does.
	CacheWriteBackBattery
	// CacheIgnoreFlush is a firmware defect: FLUSH answers success and
	// persists nothing (FUA still does).
	CacheIgnoreFlush
	// CacheIgnoreFUA is a firmware defect: FUA is acknowledged but not
	// honoured; FLUSH is.
	CacheIgnoreFUA
	// CacheReorder is a firmware defect: the cache destages writes in
	// any order, so a cut keeps any subset of the writes since the last
	// FLUSH even when asked to keep them in order.
	CacheReorder
)

var cacheModeNames = [...]string{"", "write-through", "write-back", "write-back-battery", "ignore-flush", "ignore-fua", "reorder"}

// String returns the mode as the command line spells it.
func (m CacheMode) String() string {
	if int(m) < len(cacheModeNames) {
		if m == CacheNone {
			return "none"
		}
		return cacheModeNames[m]
	}
	return fmt.Sprintf("CacheMode(%d)", m)
}

// CacheModeChoices lists the names ParseCacheMode takes, for errors and
// help texts: "none, write-through, ... or reorder".
var CacheModeChoices = func() string {
	names := append([]string{"none"}, cacheModeNames[1:]...)
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}()

// ErrCacheMode is a cache mode name that is not one.
var ErrCacheMode = errors.New("lun: cache mode: want " + CacheModeChoices)

// ParseCacheMode reads a mode as String spells it; "" and "none" are
// CacheNone.
func ParseCacheMode(s string) (CacheMode, error) {
	if s == "" || s == "none" {
		return CacheNone, nil
	}
	for i, n := range cacheModeNames {
		if i > 0 && n == s {
			return CacheMode(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrCacheMode, s)
}

// DefaultCacheSize bounds the writes a LUN's emulated cache holds since
// its last durable point; past it the cache destages everything, as a full
// cache must (the durable point moves to the present).
const DefaultCacheSize = 64 << 20

// Errors of power cuts.
var (
	// ErrNoCache is a power cut of a LUN that emulates no cache.
	ErrNoCache = errors.New("lun: the LUN emulates no write cache (create it with a cache mode: lun create --cache write-back)")
	// ErrCacheDurable is a cache mode on a durable array's LUN: there,
	// the daemon's own crash (kill -9) is the power cut, and D1 says
	// what survives it.
	ErrCacheDurable = errors.New("lun: cache modes and power cuts are emulated on in-memory arrays; on a durable array kill the daemon instead, which keeps what a completed FLUSH covered")
)

// Keep says which of the writes a power cut may lose it keeps.
type Keep uint8

// What a power cut keeps of the writes it may lose.
const (
	// KeepRandom keeps each with probability one half, drawn from the seed.
	KeepRandom Keep = iota
	// KeepNone keeps none of them: the most a correct cache may lose.
	KeepNone
	// KeepAll keeps them all, in order.
	KeepAll
	// KeepWorst keeps none of them, and tears the writes the cache must
	// keep only where the mode lets it (ignore-fua): the harshest cut.
	KeepWorst
)

var keepNames = [...]string{"random", "none", "all", "worst"}

func (k Keep) String() string {
	if int(k) < len(keepNames) {
		return keepNames[k]
	}
	return fmt.Sprintf("Keep(%d)", k)
}

// ParseKeep reads a Keep as String spells it.
func ParseKeep(s string) (Keep, error) {
	for i, n := range keepNames {
		if n == s {
			return Keep(i), nil
		}
	}
	return 0, fmt.Errorf("lun: keep %q: want random, none, all or worst", s)
}

// PowerCutOptions say how a power cut chooses what survives.
type PowerCutOptions struct {
	Keep Keep
	// Seed draws KeepRandom's choice and the torn sectors; the same seed
	// over the same writes makes the same cut.
	Seed uint64
	// Tear cuts writes longer than one sector: of a write it keeps, each
	// sector survives with probability one half.
	Tear bool
}

// PowerCutResult is what a power cut did.
type PowerCutResult struct {
	Mode CacheMode
	// Pending are the writes (trims and zeroes included) acknowledged
	// since the durable point, that the cut could lose; Kept of them
	// survived, Torn of those in part.
	Pending, Kept, Torn int
	// Forced are the writes that had to survive (FUA, where honoured).
	Forced int
	// LostBytes are the bytes of the pending writes that did not survive.
	LostBytes int64
	Seed      uint64
}

// cacheRec is one write, trim or zero acknowledged since the durable
// point, in completion order.
type cacheRec struct {
	op     Op
	off, n int64
	data   []byte // a write's bytes; nil for a trim or zero
	noHole bool
	fua    bool
}

// cache is a LUN's emulated write cache: the durable point (a cow image
// of the volume at the last FLUSH the mode honours, taken in O(1)) and
// the writes acknowledged since, with their data, so that a power cut can
// rebuild the LUN from the image and a subset of them. Writes hold mu for
// reading across landing and being logged, so the log's order is the
// order they landed in; moving the durable point holds it for writing.
type cache struct {
	mode  CacheMode
	limit int64
	// keepPoints bounds the crash points kept; 0 keeps none.
	keepPoints int

	mu      sync.RWMutex
	durable *sharedImage // under mu
	points  []crashPoint // under mu, oldest first
	nextID  int          // under mu

	logMu sync.Mutex
	recs  []cacheRec // under logMu
	bytes int64      // under logMu
	// since counts the writes logged since the last crash point.
	since int // under logMu
}

// sharedImage is an image the durable point and crash points share: it
// is released when the last of them lets it go. Under cache.mu.
type sharedImage struct {
	img  *cow.Image
	refs int
}

func share(img *cow.Image) *sharedImage { return &sharedImage{img: img, refs: 1} }

func (s *sharedImage) ref() *sharedImage { s.refs++; return s }

func (s *sharedImage) unref() {
	if s.refs--; s.refs == 0 {
		_ = s.img.Release()
	}
}

// CrashPoint is a moment a power cut could have happened at, kept so that
// the LUN can be seen as such a cut would have left it (ExposeCrashPoint):
// each completed FLUSH (what a cut keeping none of the writes it may lose
// leaves then, under the LUN's cache mode) and each mark (every write
// completed before it, as dm-log-writes' marks are).
type CrashPoint struct {
	ID     int // from 1, in order; never reused
	Kind   string
	Label  string // a mark's
	At     time.Time
	Writes int // writes, trims and zeroes between the point before and this one
}

type crashPoint struct {
	CrashPoint
	img *sharedImage
}

// logs reports whether the mode's power cut can lose writes, and so
// whether they are logged.
func (c *cache) logs() bool {
	return c.mode != CacheWriteThrough && c.mode != CacheWriteBackBattery
}

// CacheMode returns the LUN's cache mode.
func (l *LUN) CacheMode() CacheMode {
	if c := l.cache.Load(); c != nil {
		return c.mode
	}
	return CacheNone
}

// SetCache makes the LUN emulate a write cache of mode, holding at most
// size bytes of writes (DefaultCacheSize when 0) since its durable point,
// which starts now: what the LUN holds when SetCache returns survives any
// later power cut. It keeps the newest points crash points (FLUSHes and
// marks; 0 for none), each holding the blocks written after it until it
// is dropped. CacheNone stops the emulation. Only an original or a clone
// of an in-memory array has a cache.
func (l *LUN) SetCache(ctx context.Context, mode CacheMode, size int64, points int) error {
	if mode > CacheReorder {
		return ErrCacheMode
	}
	if l.array.db != nil && mode != CacheNone {
		return ErrCacheDurable
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	h, err := l.Hold(ctx, 0)
	if err != nil {
		return err
	}
	defer func() { _ = h.Release() }()
	old := l.cache.Load()
	var c *cache
	if mode != CacheNone {
		d := l.data.Load()
		if d.vol == nil {
			return fmt.Errorf("%w: %s has no volume of its own to cache", ErrReadOnly, l.name)
		}
		img, err := d.vol.Snapshot()
		if err != nil {
			return mapErr(err)
		}
		c = &cache{mode: mode, limit: size, durable: share(img), keepPoints: max(points, 0)}
	}
	l.cache.Store(c)
	if old != nil {
		old.drop()
	}
	return nil
}

// drop gives back every image the cache holds.
func (c *cache) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.durable != nil {
		c.durable.unref()
		c.durable = nil
	}
	for _, p := range c.points {
		p.img.unref()
	}
	c.points = nil
}

// pointLocked adds a crash point on img (a reference the point takes
// over), dropping the oldest past keepPoints. Under c.mu.
func (c *cache) pointLocked(kind, label string, img *sharedImage) {
	c.logMu.Lock()
	since := c.since
	c.since = 0
	c.logMu.Unlock()
	c.nextID++
	c.points = append(c.points, crashPoint{CrashPoint{ID: c.nextID, Kind: kind, Label: label, At: time.Now(), Writes: since}, img})
	for len(c.points) > c.keepPoints {
		c.points[0].img.unref()
		c.points = c.points[1:]
	}
}

// logged runs a write (fn) under the cache's read lock, then logs it if
// it succeeded, so that the log's order is the landing order. A full log
// destages: the durable point moves to the present.
func (l *LUN) logged(rec cacheRec, fn func() error) error {
	c := l.cache.Load()
	if c == nil || (!c.logs() && c.keepPoints == 0) {
		return fn()
	}
	if !c.logs() {
		// Nothing to lose, but the crash points count what they span.
		err := fn()
		if err == nil {
			c.logMu.Lock()
			c.since++
			c.logMu.Unlock()
		}
		return err
	}
	c.mu.RLock()
	err := fn()
	full := false
	if err == nil {
		if rec.data != nil {
			rec.data = append([]byte(nil), rec.data...)
		}
		c.logMu.Lock()
		c.recs = append(c.recs, rec)
		c.since++
		c.bytes += int64(len(rec.data)) + 64
		full = c.bytes > c.limit
		c.logMu.Unlock()
	}
	c.mu.RUnlock()
	if full {
		err = errors.Join(err, l.advance(c))
	}
	return err
}

// flushed moves the durable point to the present after a FLUSH, where the
// mode honours FLUSH.
func (l *LUN) flushed() error {
	c := l.cache.Load()
	if c == nil {
		return nil
	}
	if c.logs() && c.mode != CacheIgnoreFlush {
		if err := l.advance(c); err != nil {
			return err
		}
	}
	if c.keepPoints == 0 {
		return nil
	}
	if !c.logs() {
		// Nothing is lost at a cut: the point is the LUN as it is.
		return l.markPoint(c, "flush", "")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.durable != nil {
		c.pointLocked("flush", "", c.durable.ref())
	}
	return nil
}

// markPoint adds a crash point holding every write completed so far.
func (l *LUN) markPoint(c *cache, kind, label string) error {
	return l.snapshotLocked(c, func(img *cow.Image) { c.pointLocked(kind, label, share(img)) })
}

// advance makes everything the LUN holds durable: a new image, the old
// one released and the log emptied.
func (l *LUN) advance(c *cache) error {
	return l.snapshotLocked(c, func(img *cow.Image) {
		c.durable.unref()
		c.durable = share(img)
		c.logMu.Lock()
		c.recs, c.bytes = nil, 0
		c.logMu.Unlock()
	})
}

// snapshotLocked takes an image of the LUN with c.mu held for writing,
// so that no logged write is half done, and gives it to keep. A cache
// SetCache replaced takes nothing.
func (l *LUN) snapshotLocked(c *cache, keep func(*cow.Image)) error {
	d := l.data.Load()
	if d.vol == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.durable == nil {
		return nil // replaced by SetCache
	}
	img, err := d.vol.Snapshot()
	if err != nil {
		return mapErr(err)
	}
	keep(img)
	return nil
}

// PowerCut cuts the LUN's power: it comes back holding what its cache
// mode keeps, its state at the durable point plus the writes the mode
// must keep (FUA, where honoured) and those of the others o chooses, in
// the order they landed; a write-through or battery-backed cache keeps
// everything. The gate is held meanwhile, so no I/O sees the LUN half
// rebuilt; the caller drops the LUN's connections first, as power loss
// does (writes queued at the gate then fail with their context). The cut
// is durable: what survived is the new durable point. It costs the
// pending writes it replays, not the LUN's size.
//
// A LUN held by flush & hold is cut at once: holds are counted, and a
// held gate has nothing in flight to wait for. The hold stays in place
// and ends as it would have (released, or at its deadline); the I/O
// queued at it is admitted then, after the cut, unless its context ended
// with its dropped connection. A snapshot committed under the hold
// holds what the cut left.
func (l *LUN) PowerCut(ctx context.Context, o PowerCutOptions) (PowerCutResult, error) {
	res := PowerCutResult{Seed: o.Seed}
	if l.deleted.Load() {
		return res, ErrDeleted
	}
	c := l.cache.Load()
	if c == nil {
		if l.array.db != nil {
			return res, ErrCacheDurable
		}
		return res, fmt.Errorf("%w: %s", ErrNoCache, l.name)
	}
	res.Mode = c.mode
	h, err := l.Hold(ctx, 0)
	if err != nil {
		return res, err
	}
	defer func() { _ = h.Release() }()
	if !c.logs() {
		return res, nil
	}
	d := l.data.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.durable == nil {
		return res, fmt.Errorf("%w: %s", ErrNoCache, l.name)
	}
	c.logMu.Lock()
	recs := c.recs
	c.recs, c.bytes = nil, 0
	c.logMu.Unlock()

	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	keep := o.Keep
	if c.mode == CacheReorder && keep == KeepAll {
		keep = KeepRandom // the defect: destaged in any order
	}
	res.Pending = len(recs)
	type replay struct {
		rec     cacheRec
		sectors []bool // nil: whole
	}
	var chosen []replay
	for _, r := range recs {
		forced := r.fua && c.mode != CacheIgnoreFUA
		kept := forced
		switch {
		case forced:
			res.Forced++
		case keep == KeepAll:
			kept = true
		case keep == KeepRandom:
			kept = rng.IntN(2) == 1
		}
		if !kept {
			res.LostBytes += r.n
			continue
		}
		res.Kept++
		rp := replay{rec: r}
		if o.Tear && !forced && r.data != nil && len(r.data) > l.blockSize {
			n := (len(r.data) + l.blockSize - 1) / l.blockSize
			rp.sectors = make([]bool, n)
			torn := false
			for i := range rp.sectors {
				rp.sectors[i] = rng.IntN(2) == 1
				if !rp.sectors[i] {
					torn = true
					res.LostBytes += int64(min(l.blockSize, len(r.data)-i*l.blockSize))
				}
			}
			if torn {
				res.Torn++
			} else {
				rp.sectors = nil
			}
		}
		chosen = append(chosen, rp)
	}

	if err := d.vol.Revert(c.durable.img); err != nil {
		return res, fmt.Errorf("lun: power cut of %s: %w", l.name, mapErr(err))
	}
	var errs []error
	for _, rp := range chosen {
		r := rp.rec
		switch {
		case r.op == OpTrim:
			errs = append(errs, d.vol.Trim(r.off, r.n))
		case r.op == OpZero:
			errs = append(errs, d.vol.WriteZeroes(r.off, r.n, r.noHole))
		case rp.sectors == nil:
			_, err := d.vol.WriteAt(r.data, r.off)
			errs = append(errs, err)
		default:
			for i, ok := range rp.sectors {
				if ok {
					lo, hi := i*l.blockSize, min((i+1)*l.blockSize, len(r.data))
					_, err := d.vol.WriteAt(r.data[lo:hi], r.off+int64(lo))
					errs = append(errs, err)
				}
			}
		}
	}
	img, err := d.vol.Snapshot()
	if err == nil {
		c.durable.unref()
		c.durable = share(img)
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("lun: power cut of %s: rebuilding it: %w", l.name, mapErr(err))
	}
	return res, nil
}

// String describes the result as the command line prints it.
func (r PowerCutResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cache %s: ", r.Mode)
	switch {
	case r.Mode == CacheWriteThrough || r.Mode == CacheWriteBackBattery:
		b.WriteString("every acknowledged write survived")
	case r.Pending == 0:
		b.WriteString("nothing was written since the last durable point; nothing lost")
	default:
		fmt.Fprintf(&b, "%d of %d writes since the last durable point survived", r.Kept, r.Pending)
		if r.Forced > 0 {
			fmt.Fprintf(&b, " (%d with FUA, which had to)", r.Forced)
		}
		if r.Torn > 0 {
			fmt.Fprintf(&b, ", %d of them torn", r.Torn)
		}
		fmt.Fprintf(&b, "; %d bytes lost (seed %d)", r.LostBytes, r.Seed)
	}
	return b.String()
}

// ErrNoCrashPoint is a crash point the LUN does not keep (never made, or
// dropped past its bound).
var ErrNoCrashPoint = errors.New("lun: no such crash point")

// ErrBadLabel is a mark's label that is empty, over 255 bytes, or has
// characters outside [A-Za-z0-9._:-].
var ErrBadLabel = errors.New("lun: mark labels are 1-255 characters of [A-Za-z0-9._:-]")

// Mark adds a crash point labelled label: the LUN with every write
// completed before it, as dm-log-writes' marks are. The LUN must keep
// crash points.
func (l *LUN) Mark(label string) (CrashPoint, error) {
	if err := checkName(label); err != nil {
		return CrashPoint{}, fmt.Errorf("%w: LUN %s: mark %.64q", ErrBadLabel, l.name, label)
	}
	c := l.cache.Load()
	if c == nil || c.keepPoints == 0 {
		return CrashPoint{}, fmt.Errorf("%w: %s keeps no crash points (lun create --cache MODE --crash-points N)", ErrNoCache, l.name)
	}
	if err := l.markPoint(c, "mark", label); err != nil {
		return CrashPoint{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.points[len(c.points)-1].CrashPoint, nil
}

// CrashPoints lists the crash points the LUN keeps, oldest first.
func (l *LUN) CrashPoints() []CrashPoint {
	c := l.cache.Load()
	if c == nil {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]CrashPoint, len(c.points))
	for i, p := range c.points {
		out[i] = p.CrashPoint
	}
	return out
}

// ExposeCrashPoint adds LUN name holding what source would hold after a
// power cut at crash point id: a clone of the point's image, in O(1),
// read-only unless writable (so that a file system can replay its
// journal on it). Deleting it changes nothing of source.
func (a *Array) ExposeCrashPoint(source string, id int, name string, writable bool) (*LUN, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	src, err := a.Get(source)
	if err != nil {
		return nil, err
	}
	c := src.cache.Load()
	if c == nil {
		return nil, fmt.Errorf("%w: %s keeps none", ErrNoCrashPoint, source)
	}
	c.mu.RLock()
	var vol *cow.Volume
	found := false
	for _, p := range c.points {
		if p.ID == id {
			found = true
			vol, err = p.img.img.Clone()
			break
		}
	}
	why := c.missingLocked(id)
	c.mu.RUnlock()
	switch {
	case !found:
		return nil, fmt.Errorf("%w: LUN %s has no point %d: %s (lun crashpoints %s lists them)", ErrNoCrashPoint, source, id, why, source)
	case err != nil:
		return nil, mapErr(err)
	}
	l := a.newLUN(name, Clone, NewIdentity(ProductLUN), src.size, src.blockSize)
	l.parent = src
	l.readOnly.Store(!writable)
	if err := a.insert(l); err != nil {
		_ = vol.Release()
		return nil, err
	}
	l.data.Store(&data{vol: vol})
	return l, nil
}

// missingLocked says why crash point id is not among those kept. Under
// c.mu.
func (c *cache) missingLocked(id int) string {
	switch {
	case c.keepPoints == 0:
		return "it keeps no crash points (lun create --crash-points N)"
	case id > c.nextID && c.nextID == 0:
		return "it has made none yet; each FLUSH and mark makes one"
	case id > c.nextID:
		return fmt.Sprintf("the newest is %d", c.nextID)
	case len(c.points) == 0:
		return "it was dropped"
	default:
		return fmt.Sprintf("it was dropped past the bound of %d; points %d to %d are kept", c.keepPoints, c.points[0].ID, c.points[len(c.points)-1].ID)
	}
}

// CacheUse is how much of its bounds a LUN's emulated cache holds: the
// writes logged since the durable point and their bytes (a write's data
// and 64 bytes of record) against the cache size, at which the cache
// destages; and the crash points kept against their bound, past which
// the oldest is dropped.
type CacheUse struct {
	Mode              CacheMode
	Pending           int
	Bytes, MaxBytes   int64
	Points, MaxPoints int
}

// CacheUse returns the use of the LUN's emulated cache, and false for a
// LUN that emulates none.
func (l *LUN) CacheUse() (CacheUse, bool) {
	c := l.cache.Load()
	if c == nil {
		return CacheUse{}, false
	}
	u := CacheUse{Mode: c.mode, MaxBytes: c.limit, MaxPoints: c.keepPoints}
	c.mu.RLock()
	u.Points = len(c.points)
	c.mu.RUnlock()
	c.logMu.Lock()
	u.Pending, u.Bytes = len(c.recs), c.bytes
	c.logMu.Unlock()
	return u, true
}
