package durable

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/cow/filestore"
)

// FormatVersion is the version of the data directory's layout this code
// reads and writes.
const FormatVersion = 1

// File names inside a data directory.
const (
	MetaFile = "meta.db"
	DataFile = "data"
)

// Errors.
var (
	// ErrLocked: another process has the data directory open.
	ErrLocked = errors.New("durable: data directory in use by another process")
	// ErrFormat: the data directory is of a format this code does not know.
	ErrFormat = errors.New("durable: unknown data directory format")
	// ErrCorrupt: the records contradict each other or the data file.
	ErrCorrupt = errors.New("durable: data directory is inconsistent")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("durable: closed")
	// ErrFailed: a transaction failed after bbolt had written its commit
	// record (the fdatasync of the meta page failed), so that bbolt reads
	// it as committed while the trees in memory are as before, and what
	// the file holds is unknown. Every later change, and every write to
	// the data file, answers it until the directory is opened again, when
	// meta.db holds the transaction or not, whole.
	ErrFailed = errors.New("durable: meta.db failed")
)

var (
	bucketMeta  = []byte("meta")
	bucketTrees = []byte("trees")
	bucketMaps  = []byte("maps")
	keyFormat   = []byte("format")
	keyGrain    = []byte("grain")
)

// Marks in a map for grains without a block.
const (
	holeMark = ^uint64(0)
	zeroMark = ^uint64(0) - 1
)

// Options configure Open.
type Options struct {
	// Grain is the block size of a new directory; an existing one keeps
	// its own. 0 for cow.DefaultGrain.
	Grain int
	// Capacity is the most data the store holds.
	Capacity int64
	// LockTimeout is how long Open waits for another process's lock; 0
	// for 100 ms.
	LockTimeout time.Duration
}

// Edit is a change to a catalogue record made in the same transaction as a
// change to the trees: Value nil deletes the record.
type Edit struct {
	Bucket, Key string
	Value       []byte
}

// Edits returns the catalogue edits of an operation, given the numbers of
// the trees it creates (none for some), so that the records naming a new
// tree are written in the transaction that creates it (D3). Nil for none.
type Edits func(ids ...uint64) []Edit

func (e Edits) of(ids ...uint64) []Edit {
	if e == nil {
		return nil
	}
	return e(ids...)
}

// Set returns Edits that make these edits whatever the trees.
func Set(edits ...Edit) Edits { return func(...uint64) []Edit { return edits } }

// treeRec is a tree's record.
type treeRec struct {
	Parent uint64 `json:"parent,omitempty"`
	Bucket uint64 `json:"bucket"`
	Size   int64  `json:"size"`
	Live   bool   `json:"live,omitempty"`
	// Named is true while a catalogue record names the tree.
	Named bool `json:"named,omitempty"`
}

// Tree is a volume or image whose map is written down.
type Tree struct {
	id  uint64
	rec treeRec
	// vol is a live tree's volume; img is its durable image, or an image
	// tree's image. Both under DB.mu.
	vol      *cow.Volume
	img      *cow.Image
	children []*Tree
	parent   *Tree
}

// ID returns the tree's number, which catalogue records name.
func (t *Tree) ID() uint64 { return t.id }

// Volume returns a live tree's volume.
func (t *Tree) Volume() *cow.Volume { return t.vol }

// Live reports whether the tree is a volume.
func (t *Tree) Live() bool { return t.rec.Live }

// DB is a durable array's data directory, open.
type DB struct {
	dir   string
	db    *bolt.DB
	store *filestore.Store
	grain int

	// mu serializes every change to the trees: checkpoints, commits,
	// creations, deletions. I/O never takes it.
	mu     sync.Mutex
	trees  map[uint64]*Tree
	closed bool
	// failed is the error that failed the DB (ErrFailed), or nil.
	failed error

	flush flusher
}

// Open opens the data directory dir, creating it and its files when they
// do not exist, and rebuilds every tree written down. Catalogue records
// are read with Records.
func Open(dir string, opts Options) (*DB, error) {
	if opts.Grain == 0 {
		opts.Grain = cow.DefaultGrain
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 100 * time.Millisecond
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	metaPath := filepath.Join(dir, MetaFile)
	if err := checkFiles(dir); err != nil {
		return nil, err
	}
	if err := createMeta(dir, opts); err != nil {
		return nil, err
	}
	// bbolt reads meta.db through a mapping and trusts what it reads: a
	// page cut off or overwritten makes it panic or fault, there or in
	// load, rather than answer an error. guard turns either into ErrCorrupt;
	// the file bbolt opened is closed by hand if its Open never returned,
	// so that its lock goes with it.
	var metaFile *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		metaFile = f
		return f, err
	}
	var bdb *bolt.DB
	err := guard(metaPath, func() error {
		var err error
		bdb, err = bolt.Open(metaPath, 0o600, &bolt.Options{Timeout: opts.LockTimeout,
			FreelistType: bolt.FreelistMapType, OpenFile: openFile})
		return err
	})
	if err != nil {
		if bdb == nil && metaFile != nil && errors.Is(err, ErrCorrupt) {
			_ = metaFile.Close()
		}
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked (is another shadowbench serving it?)", ErrLocked, metaPath)
		}
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("durable: %s: %w", metaPath, err)
	}
	d := &DB{dir: dir, db: bdb, trees: make(map[uint64]*Tree)}
	d.flush.cond.L = &d.flush.mu
	relax, stop := relaxGC(), prefetch(metaPath)
	err = guard(metaPath, func() error { return d.load(opts) })
	stop()
	relax()
	if err != nil {
		if d.store != nil {
			d.store.Close()
		}
		bdb.Close()
		return nil, err
	}
	return d, nil
}

// checkFiles refuses a directory whose meta.db is missing or empty while
// its data file holds data: bbolt would start a new, empty database there,
// and the data file would then be cut to the nothing its maps name.
func checkFiles(dir string) error {
	metaPath, dataPath := filepath.Join(dir, MetaFile), filepath.Join(dir, DataFile)
	mi, err := os.Stat(metaPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("durable: %w", err)
	}
	if err == nil && mi.Size() > 0 {
		return nil
	}
	di, err := os.Stat(dataPath)
	if err != nil || di.Size() == 0 {
		return nil // a new directory, or one whose creation stopped early
	}
	what := "is missing"
	if mi != nil {
		what = "is empty"
	}
	return fmt.Errorf("%w: %s %s but %s holds %d bytes: not starting a new array over their data (restore %s from a backup, or move %s away)",
		ErrCorrupt, metaPath, what, dataPath, di.Size(), MetaFile, DataFile)
}

// createMeta writes meta.db when the directory has none, or an empty one
// (checkFiles has made sure no data is beside it): under a temporary
// name, renamed into place once bbolt has written its first pages and the
// format record, and synced, with the directory's lock held. Rejected:
// letting bbolt create meta.db in place, as it did; a creation cut short (a
// short write of its first pages, ENOSPC, a crash) then left a meta.db
// whose pages stop early, which every later Open refused as damaged. Now
// such a directory has no meta.db, and the next Open creates it again.
func createMeta(dir string, opts Options) error {
	metaPath := filepath.Join(dir, MetaFile)
	exists := func() (bool, error) {
		fi, err := os.Stat(metaPath)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("durable: %w", err)
		}
		return fi.Size() > 0, nil
	}
	if ok, err := exists(); ok || err != nil {
		return err
	}
	// Two processes creating one directory take turns; the second finds
	// meta.db made.
	unlock, err := lockDir(dir, opts.LockTimeout)
	if err != nil {
		return err
	}
	defer unlock()
	if ok, err := exists(); ok || err != nil {
		return err
	}
	tmp := metaPath + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("durable: remove what a creation left: %w", err)
	}
	err = func() error {
		bdb, err := bolt.Open(tmp, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
		if err != nil {
			return err
		}
		err = bdb.Update(func(tx *bolt.Tx) error { return initMeta(tx, opts.Grain) })
		if cerr := bdb.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, metaPath); err != nil {
			return err
		}
		return syncDir(dir)
	}()
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("durable: create %s: %w", metaPath, err)
	}
	return nil
}

// initMeta writes the buckets and records of a new meta.db.
func initMeta(tx *bolt.Tx, grain int) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(keyFormat, []byte(strconv.Itoa(FormatVersion))); err != nil {
		return err
	}
	if err := meta.Put(keyGrain, []byte(strconv.Itoa(grain))); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketTrees); err != nil {
		return err
	}
	_, err = tx.CreateBucket(bucketMaps)
	return err
}

// lockDir takes an exclusive lock on the directory dir, waiting up to
// timeout for another process's, and returns the function that releases
// it.
func lockDir(dir string, timeout time.Duration) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("durable: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s is locked (is another shadowbench creating it?)", ErrLocked, dir)
			}
			return nil, fmt.Errorf("durable: lock %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncDir makes the entries of directory dir durable: a file created or
// renamed in it.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// guard runs fn, which reads meta.db at path, and turns a panic or a
// memory fault in it (bbolt's answer to a damaged page) into ErrCorrupt.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s is damaged: %v", ErrCorrupt, path, p)
		}
	}()
	return fn()
}

// load checks the format, reads the trees, opens the data file with the
// blocks they name, and rebuilds the trees in memory.
func (d *DB) load(opts Options) error {
	metaPath := filepath.Join(d.dir, MetaFile)
	var recs map[uint64]treeRec
	var used []uint64
	// An existing directory is read in a read-only transaction: opening
	// it writes nothing to meta.db, so that a directory refused below is
	// left as it was, and one on a full file system still opens.
	var fresh bool
	err := d.db.View(func(tx *bolt.Tx) error {
		if fi, err := os.Stat(metaPath); err == nil && fi.Size() < tx.Size() {
			return fmt.Errorf("%w: %s is truncated: %d bytes, its pages reach %d", ErrCorrupt, metaPath, fi.Size(), tx.Size())
		}
		if tx.Bucket(bucketMeta) == nil {
			if tx.Bucket(bucketTrees) != nil {
				return fmt.Errorf("%w: %s has trees but no format record", ErrCorrupt, metaPath)
			}
			fresh = true
		}
		return nil
	})
	if err == nil && fresh {
		// A meta.db that bbolt created in place before createMeta, whose
		// first transaction did not happen.
		err = d.db.Update(func(tx *bolt.Tx) error { return initMeta(tx, opts.Grain) })
		if err != nil {
			return fmt.Errorf("durable: %s: %w", metaPath, err)
		}
	}
	if err != nil {
		return err
	}
	err = d.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := string(meta.Get(keyFormat)); v != strconv.Itoa(FormatVersion) {
			return fmt.Errorf("%w: %s is format %q, this shadowbench reads format %d", ErrFormat, metaPath, v, FormatVersion)
		}
		g, err := strconv.Atoi(string(meta.Get(keyGrain)))
		if err != nil {
			return fmt.Errorf("%w: %s: grain %q", ErrCorrupt, metaPath, meta.Get(keyGrain))
		}
		d.grain = g
		recs, _, err = readTrees(tx, metaPath, false)
		return err
	})
	if err != nil {
		return err
	}
	// The maps are read once: the trees are rebuilt from them and the
	// blocks they name gathered on the way, then given to the store. A
	// missing data file is looked at first, so that it is not created
	// under maps that name blocks in it.
	dataPath := filepath.Join(d.dir, DataFile)
	if _, err := os.Stat(dataPath); errors.Is(err, os.ErrNotExist) {
		var used []uint64
		if err := d.db.View(func(tx *bolt.Tx) error {
			_, used, err = readTrees(tx, metaPath, true)
			return err
		}); err != nil {
			return err
		}
		if len(used) > 0 {
			return fmt.Errorf("%w: %s is missing, and %s names %d blocks in it", ErrCorrupt, dataPath, metaPath, len(used))
		}
	}
	d.store, err = filestore.Map(dataPath, filestore.Options{Grain: d.grain, Capacity: opts.Capacity})
	if err != nil {
		return err
	}
	for id, rec := range recs {
		d.trees[id] = &Tree{id: id, rec: rec}
	}
	var roots []*Tree
	for _, t := range d.trees {
		if t.rec.Parent == 0 {
			roots = append(roots, t)
			continue
		}
		p := d.trees[t.rec.Parent]
		if p == nil || p.rec.Live {
			return fmt.Errorf("%w: %s: tree %d's parent %d is missing or not an image", ErrCorrupt, metaPath, t.id, t.rec.Parent)
		}
		if p.rec.Size != t.rec.Size {
			return fmt.Errorf("%w: %s: tree %d is %d bytes, its parent %d %d", ErrCorrupt, metaPath, t.id, t.rec.Size, p.id, p.rec.Size)
		}
		t.parent = p
		p.children = append(p.children, t)
	}
	fileBlocks := d.store.FileBlocks()
	// The maps name at most every block of the file once (Adopt refuses
	// more): sized so, the list never grows, which for 64 GiB of 4 KiB
	// grains was 600 MB of garbage from the slice's growth, at the peak of
	// the RSS of a start.
	used = make([]uint64, 0, fileBlocks)
	entries := 0
	built := 0
	var build func(t *Tree, base *cow.Image) error
	build = func(t *Tree, base *cow.Image) error {
		built++
		var v *cow.Volume
		var err error
		if base == nil {
			v, err = cow.NewVolume(d.store, t.rec.Size)
		} else {
			v, err = base.Clone()
		}
		if err != nil {
			return fmt.Errorf("durable: tree %d: %w", t.id, err)
		}
		err = d.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketMaps).Bucket(key(t.rec.Bucket))
			return b.ForEach(func(k, val []byte) error {
				if len(k) != 8 || len(val) != 8 {
					return fmt.Errorf("map entry %x=%x", k, val)
				}
				if entries++; entries%dropEvery == 0 {
					d.dropMapped()
				}
				idx, blk := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(val)
				if blk < zeroMark {
					if blk >= fileBlocks {
						return fmt.Errorf("%w: %s is cut short: %d bytes, and %s names block %d, which ends at %d",
							ErrCorrupt, dataPath, fileBlocks*uint64(d.grain), metaPath, blk, (blk+1)*uint64(d.grain))
					}
					used = append(used, blk)
				}
				return v.Load(idx, d.grainOf(blk))
			})
		})
		if err != nil {
			return fmt.Errorf("%w: %s: tree %d: %w", ErrCorrupt, metaPath, t.id, err)
		}
		// A live tree's durable image is a checkpoint (C8), so that its
		// writes go in place; an image tree's is an image of data, which
		// its children are cloned from.
		if t.rec.Live {
			t.img, err = v.Checkpoint()
		} else {
			t.img, err = v.Snapshot()
		}
		if err != nil {
			return err
		}
		if t.rec.Live {
			t.vol = v
		} else if err := v.Release(); err != nil {
			return err
		}
		for _, c := range t.children {
			if err := build(c, t.img); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := build(r, nil); err != nil {
			return err
		}
	}
	if built != len(d.trees) {
		return fmt.Errorf("%w: %s: %d trees lie on a cycle of parents", ErrCorrupt, metaPath, len(d.trees)-built)
	}
	if err := d.store.Adopt(used); err != nil {
		return err
	}
	d.dropMapped()
	return nil
}

// dropMapped tells the kernel that the pages of meta.db that load read
// through bbolt's mapping are not needed: they stay in the page cache, but
// stop counting in the process's RSS, where a 64 GiB array with 100
// snapshots left 1 GiB of them. The mapping is shared and read-only, so
// the pages come back from the file at the next access, with the same
// bytes: load calls it every dropEvery entries too, while a cursor points
// into the mapping, so that those pages never sit in the RSS beside the
// trees being built (a start of 64 GiB peaked at 2.4 GiB, 1 GiB of it
// meta.db's pages).
func (d *DB) dropMapped() {
	st, err := os.Stat(d.db.Path())
	if err != nil || st.Size() == 0 {
		return
	}
	info := d.db.Info()
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, info.Data, uintptr(st.Size()), unix.MADV_DONTNEED)
}

// prefetch reads path into the page cache from start to end, in the
// background, until stop is called, and stop waits for it. load walks
// meta.db's B+tree through bbolt's mapping, in key order, which after many
// transactions is no order on disk: a start after a reboot read it by page
// faults at about 50 MB/s, where a sequential read goes at 500 MB/s (8 GiB
// with 100 snapshots, 169 MiB of meta.db: Open 4.2 s cold, 1.4 s warm).
// readahead(2) fills the cache without copying anything, so a start with
// meta.db cached already pays little for it.
func prefetch(path string) (stop func()) {
	f, err := os.Open(path)
	if err != nil {
		return func() {}
	}
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return
		}
		const chunk = 4 << 20
		for off := int64(0); off < st.Size() && !stopped.Load(); off += chunk {
			if _, _, e := unix.Syscall(unix.SYS_READAHEAD, f.Fd(), uintptr(off), chunk); e != 0 {
				return
			}
		}
	}()
	return func() {
		stopped.Store(true)
		<-done
	}
}

// dropEvery is how many map entries load reads between dropMapped calls:
// about 16 MiB of meta.db's leaf pages.
const dropEvery = 1 << 20

// loadGCPercent is the collector's target while trees are loaded: what
// Open allocates stays in use, so collecting while it builds is wasted,
// and it took 30% of the CPU of opening 8 GiB with 100 snapshots.
const loadGCPercent = 800

// loads counts the Opens loading, so that the first sets the target and
// the last puts it back, whatever their order.
var loads struct {
	sync.Mutex
	n   int
	old int
}

// relaxGC raises the collector's target for a load and returns the
// function that ends it.
func relaxGC() func() {
	loads.Lock()
	if loads.n == 0 {
		loads.old = debug.SetGCPercent(loadGCPercent)
		if loads.old < 0 || loads.old > loadGCPercent {
			debug.SetGCPercent(loads.old) // off or higher already: leave it
		}
	}
	loads.n++
	loads.Unlock()
	return func() {
		loads.Lock()
		if loads.n--; loads.n == 0 {
			debug.SetGCPercent(loads.old)
		}
		loads.Unlock()
	}
}

// readTrees reads every tree record and, with entries, the blocks their
// maps name.
func readTrees(tx *bolt.Tx, metaPath string, entries bool) (map[uint64]treeRec, []uint64, error) {
	recs := make(map[uint64]treeRec)
	trees, maps := tx.Bucket(bucketTrees), tx.Bucket(bucketMaps)
	if trees == nil || maps == nil {
		return nil, nil, fmt.Errorf("%w: %s: no trees or maps bucket", ErrCorrupt, metaPath)
	}
	var used []uint64
	err := trees.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("%w: %s: tree key %x", ErrCorrupt, metaPath, k)
		}
		id := binary.BigEndian.Uint64(k)
		var rec treeRec
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: %s: tree %d: %w", ErrCorrupt, metaPath, id, err)
		}
		if rec.Size <= 0 {
			return fmt.Errorf("%w: %s: tree %d: size %d", ErrCorrupt, metaPath, id, rec.Size)
		}
		b := maps.Bucket(key(rec.Bucket))
		if b == nil {
			return fmt.Errorf("%w: %s: tree %d: map bucket %d is missing", ErrCorrupt, metaPath, id, rec.Bucket)
		}
		if !entries {
			recs[id] = rec
			return nil
		}
		err := b.ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != 8 {
				return fmt.Errorf("%w: %s: tree %d: map entry %x=%x", ErrCorrupt, metaPath, id, k, v)
			}
			if blk := binary.BigEndian.Uint64(v); blk < zeroMark {
				used = append(used, blk)
			}
			return nil
		})
		if err != nil {
			return err
		}
		recs[id] = rec
		return nil
	})
	return recs, used, err
}

func key(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func (d *DB) grainOf(v uint64) cow.Grain {
	switch v {
	case holeMark:
		return cow.Grain{Kind: cow.Hole}
	case zeroMark:
		return cow.Grain{Kind: cow.Zero}
	}
	return cow.Grain{Kind: cow.Data, Block: d.store.Block(v)}
}

func markOf(g cow.Grain) uint64 {
	switch g.Kind {
	case cow.Hole:
		return holeMark
	case cow.Zero:
		return zeroMark
	}
	return g.Block.ID
}

// Dir returns the data directory.
func (d *DB) Dir() string { return d.dir }

// Store returns the store every tree's data lives in.
func (d *DB) Store() cow.Store { return d.store }

// FileStore returns the store as what it is, for statistics.
func (d *DB) FileStore() *filestore.Store { return d.store }

// Tree returns tree id, or nil.
func (d *DB) Tree(id uint64) *Tree {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.trees[id]
}

// Image returns a new handle on a tree's durable image (cow.Image.Dup),
// which the caller releases.
func (d *DB) Image(t *Tree) (*cow.Image, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return t.img.Dup()
}

// Records returns every record of a catalogue bucket, by key.
func (d *DB) Records(bucket string) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = slices.Clone(v)
			return nil
		})
	})
	return out, err
}

// Put applies catalogue edits in one transaction.
func (d *DB) Put(edits ...Edit) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.update(func(tx *bolt.Tx) error { return applyEdits(tx, edits) })
}

func applyEdits(tx *bolt.Tx, edits []Edit) error {
	for _, e := range edits {
		b, err := tx.CreateBucketIfNotExists([]byte(e.Bucket))
		if err != nil {
			return err
		}
		if e.Value == nil {
			err = b.Delete([]byte(e.Key))
		} else {
			err = b.Put([]byte(e.Key), e.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// newTreeLocked writes a new tree record with a new, empty bucket.
func newTreeLocked(tx *bolt.Tx, rec treeRec) (uint64, treeRec, error) {
	id, err := tx.Bucket(bucketTrees).NextSequence()
	if err != nil {
		return 0, rec, err
	}
	if rec.Bucket, err = newBucket(tx); err != nil {
		return 0, rec, err
	}
	return id, rec, putTree(tx, id, rec)
}

// newBucket creates an empty map bucket and returns its number.
func newBucket(tx *bolt.Tx) (uint64, error) {
	maps := tx.Bucket(bucketMaps)
	n, err := maps.NextSequence()
	if err != nil {
		return 0, err
	}
	_, err = maps.CreateBucket(key(n))
	return n, err
}

func putTree(tx *bolt.Tx, id uint64, rec treeRec) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketTrees).Put(key(id), v)
}

// NewVolume creates an empty live tree of size bytes, named by the
// catalogue, with the edits.
func (d *DB) NewVolume(size int64, edits Edits) (*Tree, error) {
	v, err := cow.NewVolume(d.store, size)
	if err != nil {
		return nil, err
	}
	img, err := v.Checkpoint()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addLiveLocked(&Tree{vol: v, img: img}, treeRec{Size: size, Live: true, Named: true}, edits)
}

// addLiveLocked writes down live tree t, whose volume and durable image
// are made, with record rec and the edits, and adds it under its parent.
// On error it releases both.
func (d *DB) addLiveLocked(t *Tree, rec treeRec, edits Edits) (*Tree, error) {
	err := d.update(func(tx *bolt.Tx) error {
		var err error
		t.id, t.rec, err = newTreeLocked(tx, rec)
		if err != nil {
			return err
		}
		return applyEdits(tx, edits.of(t.id))
	})
	if err != nil {
		_ = t.img.Release()
		_ = t.vol.Release()
		return nil, err
	}
	if t.parent != nil {
		t.parent.children = append(t.parent.children, t)
	}
	d.trees[t.id] = t
	return t, nil
}

// update runs fn in a write transaction unless the DB is closed or
// failed. Its errors name meta.db: bbolt's fdatasync answers a bare errno.
// A transaction that failed after bbolt wrote its commit record fails the
// DB and the data file (ErrFailed): bbolt then reads it as committed, and
// a later transaction, written over it from trees that never saw it, could
// name blocks the trees have freed and handed out again.
func (d *DB) update(fn func(tx *bolt.Tx) error) error {
	if d.closed {
		return ErrClosed
	}
	if d.failed != nil {
		return d.failed
	}
	if err := beforeUpdate(); err != nil {
		return err
	}
	before := d.txid()
	err := d.db.Update(fn)
	if err == nil {
		return nil
	}
	metaPath := filepath.Join(d.dir, MetaFile)
	if _, ok := errors.AsType[*os.PathError](err); !ok {
		err = fmt.Errorf("%s: %w", metaPath, err)
	}
	if d.txid() != before {
		d.failed = fmt.Errorf("%w: %s: a transaction failed after its commit record was written; open the directory again: %w", ErrFailed, metaPath, err)
		d.store.Fail(d.failed)
		return d.failed
	}
	return err
}

// txid returns the number of the last transaction bbolt sees committed.
func (d *DB) txid() int {
	var id int
	_ = d.db.View(func(tx *bolt.Tx) error {
		id = tx.ID()
		return nil
	})
	return id
}

// beforeUpdate runs before every write transaction; tests make it fail.
var beforeUpdate = func() error { return nil }

// Flush makes every write completed before it was called durable (D1). It
// waits for the first checkpoint that starts after the call.
func (d *DB) Flush() error { return d.flush.do(d.checkpoint) }

// flusher batches flushes into checkpoints: any number of Flush calls made
// while a checkpoint runs are served by the next one.
type flusher struct {
	mu      sync.Mutex
	cond    sync.Cond
	running bool
	started uint64 // checkpoints started
	done    uint64 // checkpoints finished
	// errs holds the errors of recent failed checkpoints, by number.
	errs map[uint64]error
}

func (f *flusher) do(checkpoint func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := f.started + 1
	for f.done < want {
		if f.running {
			f.cond.Wait()
			continue
		}
		f.running = true
		f.started++
		n := f.started
		f.mu.Unlock()
		err := checkpoint()
		f.mu.Lock()
		f.running = false
		f.done = n
		if err != nil {
			if f.errs == nil {
				f.errs = make(map[uint64]error)
			}
			f.errs[n] = err
		}
		for k := range f.errs {
			if k+64 < n {
				delete(f.errs, k)
			}
		}
		f.cond.Broadcast()
	}
	return f.errs[want]
}

// checkpoint writes down every live tree's map as it is now.
func (d *DB) checkpoint() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	q := d.store.Seal()
	type pending struct {
		t   *Tree
		img *cow.Image
	}
	var ps []pending
	release := func() {
		for _, p := range ps {
			_ = p.img.Release()
		}
	}
	for _, t := range d.trees {
		if !t.rec.Live {
			continue
		}
		img, err := t.vol.Checkpoint()
		if errors.Is(err, cow.ErrReleased) {
			continue // deleted in memory; its records go with Delete
		}
		if err != nil {
			release()
			d.store.Promote(q)
			return err
		}
		ps = append(ps, pending{t, img})
	}
	// Every volume has drained what it had admitted at Seal: no write
	// racing a trim is still copying into a block the trim freed.
	d.store.Promote(q)
	if err := d.store.Sync(); err != nil {
		release()
		return err
	}
	// Overwrites go in place (C8) and change no map: a flush after only
	// those is the fdatasync of the data, as a raw file's is, without a
	// transaction and its two fdatasyncs of meta.db.
	if !slices.ContainsFunc(ps, func(p pending) bool { return mapChanged(p.t.img, p.img) }) {
		for _, p := range ps {
			_ = p.t.img.Release()
			p.t.img = p.img
		}
		return nil
	}
	err := d.update(func(tx *bolt.Tx) error {
		for _, p := range ps {
			if err := d.writeChanges(tx, p.t, p.img); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		release()
		return fmt.Errorf("durable: checkpoint: %w", err)
	}
	for _, p := range ps {
		_ = p.t.img.Release()
		p.t.img = p.img
	}
	return nil
}

// mapChanged reports whether img's map differs from dur's in any grain.
func mapChanged(dur, img *cow.Image) bool {
	err := cow.ChangedGrains(dur, img, func(uint64, cow.Grain) error { return errChanged })
	return err != nil // a released image too: let the transaction say what
}

var errChanged = errors.New("changed")

// writeChanges writes into t's bucket the grains in which img differs from
// t's durable image.
func (d *DB) writeChanges(tx *bolt.Tx, t *Tree, img *cow.Image) error {
	b := tx.Bucket(bucketMaps).Bucket(key(t.rec.Bucket))
	if b == nil {
		return fmt.Errorf("%w: tree %d has no map bucket", ErrCorrupt, t.id)
	}
	// bbolt keeps what Put is given until the commit: one buffer for all
	// the entries, each its own 16 bytes of it.
	var buf []byte
	return cow.ChangedGrains(t.img, img, func(idx uint64, g cow.Grain) error {
		if g.Kind == cow.Hole && t.rec.Parent == 0 {
			return b.Delete(key(idx))
		}
		if len(buf) < 16 {
			buf = make([]byte, 16*1024)
		}
		k, v := buf[:8:8], buf[8:16:16]
		buf = buf[16:]
		binary.BigEndian.PutUint64(k, idx)
		binary.BigEndian.PutUint64(v, markOf(g))
		return b.Put(k, v)
	})
}

// Commit is one image of a set: the live tree it was taken of, and the
// image, committed by cow (a Group or Snapshot).
type Commit struct {
	Tree  *Tree
	Image *cow.Image
}

// CommitImages writes down the images of a set in one transaction (D2),
// with the edits, and returns their trees, in order. Each image takes its
// volume's bucket, with what changed since the last checkpoint written
// into it, and the volume goes on in a new, empty bucket under it: a few
// records per image, whatever the data. The images stay the caller's; the
// trees hold images of their own.
func (d *DB) CommitImages(cs []Commit, edits Edits) ([]*Tree, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.store.Sync(); err != nil {
		return nil, err
	}
	out := make([]*Tree, len(cs))
	lives := make([]treeRec, len(cs))
	err := d.update(func(tx *bolt.Tx) error {
		trees := tx.Bucket(bucketTrees)
		for i, c := range cs {
			t := c.Tree
			if err := d.writeChanges(tx, t, c.Image); err != nil {
				return err
			}
			id, err := trees.NextSequence()
			if err != nil {
				return err
			}
			imgRec := treeRec{Parent: t.rec.Parent, Bucket: t.rec.Bucket, Size: t.rec.Size, Named: true}
			if err := putTree(tx, id, imgRec); err != nil {
				return err
			}
			b, err := newBucket(tx)
			if err != nil {
				return err
			}
			lives[i] = treeRec{Parent: id, Bucket: b, Size: t.rec.Size, Live: true, Named: t.rec.Named}
			if err := putTree(tx, t.id, lives[i]); err != nil {
				return err
			}
			out[i] = &Tree{id: id, rec: imgRec}
		}
		ids := make([]uint64, len(out))
		for i, t := range out {
			ids[i] = t.id
		}
		return applyEdits(tx, edits.of(ids...))
	})
	if err != nil {
		return nil, fmt.Errorf("durable: commit: %w", err)
	}
	for i, c := range cs {
		t, n := c.Tree, out[i]
		n.img, _ = c.Image.Dup()
		dur, _ := c.Image.Dup()
		_ = t.img.Release()
		t.img = dur
		n.parent = t.parent
		if p := t.parent; p != nil {
			p.children[slices.Index(p.children, t)] = n
		}
		n.children = []*Tree{t}
		t.parent = n
		t.rec = lives[i]
		d.trees[n.id] = n
	}
	return out, nil
}

// Clone creates a live tree whose content starts as image tree src's,
// named by the catalogue, with the edits.
func (d *DB) Clone(src *Tree, edits Edits) (*Tree, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.branchLocked(src, true, edits)
}

// branchLocked adds a live tree under image tree src.
func (d *DB) branchLocked(src *Tree, named bool, edits Edits) (*Tree, error) {
	if src.rec.Live {
		return nil, fmt.Errorf("durable: tree %d is not an image", src.id)
	}
	v, err := src.img.Clone()
	if err != nil {
		return nil, err
	}
	img, err := src.img.Dup()
	if err != nil {
		_ = v.Release()
		return nil, err
	}
	return d.addLiveLocked(&Tree{vol: v, img: img, parent: src},
		treeRec{Parent: src.id, Size: src.rec.Size, Live: true, Named: named}, edits)
}

// MakeWritable turns image tree src, which a catalogue record names, into
// a live one as far as the catalogue can see: a new live tree under it,
// which the record (edited here) names instead, while src stays, unnamed,
// under it.
func (d *DB) MakeWritable(src *Tree, edits Edits) (*Tree, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, err := d.branchLocked(src, true, edits)
	if err != nil {
		return nil, err
	}
	src.rec.Named = false
	plan := d.planCollapseLocked(src, nil)
	err = d.update(func(tx *bolt.Tx) error {
		if err := putTree(tx, src.id, src.rec); err != nil {
			return err
		}
		return plan.tx(tx)
	})
	if err != nil {
		// The record still says named: the tree stays until the next
		// start, which finds the catalogue naming the new tree only and
		// this one with one child, and keeps it. Nothing is lost.
		return t, nil
	}
	d.applyLocked(plan)
	return t, nil
}

// Revert makes live tree t's content image tree src's: t's bucket is
// dropped and t goes on, empty, under src, and its old parent is collapsed
// (see Delete), in one transaction; then t's volume is reverted in memory
// (cow.Volume.Revert). Writes admitted meanwhile are discarded with the
// tree they landed in.
func (d *DB) Revert(t, src *Tree, edits Edits) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !t.rec.Live || src.rec.Live {
		return fmt.Errorf("durable: revert tree %d to %d: not a volume and an image", t.id, src.id)
	}
	dur, err := src.img.Dup()
	if err != nil {
		return err
	}
	// The old parent loses t, and src gains it: the collapse is planned
	// over the children as they will be.
	old := t.parent
	kids := map[*Tree][]*Tree{src: append(slices.Clone(src.children), t)}
	if old != nil {
		kids[old] = slices.DeleteFunc(slices.Clone(kidsOf(kids, old)), func(c *Tree) bool { return c == t })
	}
	var plan collapsePlan
	if old != nil && old != src {
		plan = d.planCollapseLocked(old, kids)
	}
	var rec treeRec
	err = d.update(func(tx *bolt.Tx) error {
		maps := tx.Bucket(bucketMaps)
		if err := maps.DeleteBucket(key(t.rec.Bucket)); err != nil {
			return err
		}
		b, err := maps.NextSequence()
		if err != nil {
			return err
		}
		if _, err := maps.CreateBucket(key(b)); err != nil {
			return err
		}
		rec = treeRec{Parent: src.id, Bucket: b, Size: t.rec.Size, Live: true, Named: t.rec.Named}
		if err := putTree(tx, t.id, rec); err != nil {
			return err
		}
		if err := applyEdits(tx, edits.of()); err != nil {
			return err
		}
		return plan.tx(tx)
	})
	if err != nil {
		_ = dur.Release()
		return fmt.Errorf("durable: revert: %w", err)
	}
	// The records say reverted, and so does memory from here, even if the
	// volume cannot be: its next checkpoint then writes down what it
	// holds over src's map.
	rerr := t.vol.Revert(src.img)
	_ = t.img.Release()
	t.img = dur
	if old != nil {
		old.children = slices.DeleteFunc(old.children, func(c *Tree) bool { return c == t })
	}
	t.rec, t.parent = rec, src
	src.children = append(src.children, t)
	d.applyLocked(plan)
	return rerr
}

// Delete drops the catalogue's name for tree t, with the edits, in one
// transaction with what that leads to: a live tree goes at once (its
// volume is the caller's to release), an image tree stays as long as it
// has two children or more; an unnamed image left with one child is
// merged into it, and one left with none goes (see collapsePlan). A
// failure leaves everything as it was.
func (d *DB) Delete(t *Tree, edits Edits) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t.rec.Named = false
	plan := d.planCollapseLocked(t, nil)
	if err := d.update(func(tx *bolt.Tx) error {
		if err := putTree(tx, t.id, t.rec); err != nil {
			return err
		}
		if err := applyEdits(tx, edits.of()); err != nil {
			return err
		}
		return plan.tx(tx)
	}); err != nil {
		t.rec.Named = true
		return fmt.Errorf("durable: delete: %w", err)
	}
	d.applyLocked(plan)
	return nil
}

// collapsePlan is what collapsing an unnamed tree does: the trees dropped,
// in order, and at most one merge, which ends it. It is written in the
// transaction of the change that unnamed the tree, and applied in memory
// once that committed, so that a failure leaves the records and the trees
// as they were. Rejected: a transaction per step, as before; a failure
// after the first left the name gone but the operation reported failed.
type collapsePlan struct {
	drops []*Tree
	// merge, when set, is an unnamed image and its only child.
	mergeP, mergeC *Tree
	mergeRec       treeRec // c's record after the merge, set by tx
}

// planCollapseLocked plans the collapse of t, reading the children of the
// trees in kids from there rather than from memory.
func (d *DB) planCollapseLocked(t *Tree, kids map[*Tree][]*Tree) collapsePlan {
	var p collapsePlan
	dropped := map[*Tree]bool{}
	for t != nil && !t.rec.Named {
		var left []*Tree
		for _, c := range kidsOf(kids, t) {
			if !dropped[c] {
				left = append(left, c)
			}
		}
		switch {
		case t.rec.Live || len(left) == 0:
			p.drops = append(p.drops, t)
			dropped[t] = true
		case len(left) == 1:
			p.mergeP, p.mergeC = t, left[0]
			return p // the parent's children are as many as before
		default:
			return p
		}
		t = t.parent
	}
	return p
}

func kidsOf(kids map[*Tree][]*Tree, t *Tree) []*Tree {
	if k, ok := kids[t]; ok {
		return k
	}
	return t.children
}

// tx writes the plan's records.
func (p *collapsePlan) tx(tx *bolt.Tx) error {
	for _, t := range p.drops {
		if err := tx.Bucket(bucketMaps).DeleteBucket(key(t.rec.Bucket)); err != nil {
			return fmt.Errorf("drop tree %d: %w", t.id, err)
		}
		if err := tx.Bucket(bucketTrees).Delete(key(t.id)); err != nil {
			return fmt.Errorf("drop tree %d: %w", t.id, err)
		}
	}
	if p.mergeP == nil {
		return nil
	}
	rec, err := mergeTx(tx, p.mergeP, p.mergeC)
	if err != nil {
		return fmt.Errorf("merge tree %d into %d: %w", p.mergeP.id, p.mergeC.id, err)
	}
	p.mergeRec = rec
	return nil
}

// applyLocked applies a plan whose records are written in memory.
func (d *DB) applyLocked(p collapsePlan) {
	for _, t := range p.drops {
		d.forgetLocked(t)
	}
	if p.mergeP != nil {
		d.mergedLocked(p.mergeP, p.mergeC, p.mergeRec)
	}
}

// forgetLocked takes t out of memory after its records are gone, and
// releases its durable image: only now may the blocks only it named be
// freed (D3).
func (d *DB) forgetLocked(t *Tree) {
	delete(d.trees, t.id)
	if p := t.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c *Tree) bool { return c == t })
	}
	if t.img != nil {
		_ = t.img.Release()
		t.img = nil
	}
}

// mergeTx merges unnamed image tree p into its only child c in the
// records: c's map becomes p's under c's, the smaller bucket written into
// the larger, and p goes. It returns c's new record.
func mergeTx(tx *bolt.Tx, p, c *Tree) (treeRec, error) {
	maps := tx.Bucket(bucketMaps)
	pb, cb := maps.Bucket(key(p.rec.Bucket)), maps.Bucket(key(c.rec.Bucket))
	rec := c.rec
	rec.Parent = p.rec.Parent
	if cb.Stats().KeyN <= pb.Stats().KeyN {
		// c's entries override p's: write them into p's bucket.
		if err := cb.ForEach(func(k, v []byte) error { return pb.Put(k, v) }); err != nil {
			return rec, err
		}
		if err := maps.DeleteBucket(key(c.rec.Bucket)); err != nil {
			return rec, err
		}
		rec.Bucket = p.rec.Bucket
	} else {
		// p's entries show through where c has none.
		if err := pb.ForEach(func(k, v []byte) error {
			if cb.Get(k) == nil {
				return cb.Put(k, v)
			}
			return nil
		}); err != nil {
			return rec, err
		}
		if err := maps.DeleteBucket(key(p.rec.Bucket)); err != nil {
			return rec, err
		}
	}
	if err := putTree(tx, c.id, rec); err != nil {
		return rec, err
	}
	return rec, tx.Bucket(bucketTrees).Delete(key(p.id))
}

// mergedLocked takes merged tree p out of memory, c having record rec.
func (d *DB) mergedLocked(p, c *Tree, rec treeRec) {
	gp := p.parent
	c.rec, c.parent = rec, gp
	if gp != nil {
		gp.children[slices.Index(gp.children, p)] = c
	}
	p.children, p.parent = nil, nil
	delete(d.trees, p.id)
	if p.img != nil {
		_ = p.img.Release()
		p.img = nil
	}
}

// Close checkpoints nothing and frees nothing: it closes the files, and
// what was not flushed is lost, as in a crash. Releasing the durable images
// would free blocks the maps name, and the store would punch them out of
// the file. The caller stops all I/O first: the volumes' blocks are
// unmapped.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.db.Close()
	if serr := d.store.Close(); err == nil {
		err = serr
	}
	return err
}
