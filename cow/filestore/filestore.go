// Package filestore is a cow.Store whose blocks live in one sparse file,
// mapped into memory: the data of a durable array.
//
// # Design
//
// Block n is the grain at offset n×grain of the file. The file is mapped
// shared and read-only over the whole of the store's capacity, so a block's
// Data is a slice of the mapping that cow's tree reads as it reads
// MemStore's heap blocks, without a system call: the page cache is the
// cache. Writes go through the store (cow.BlockWriter): pwrite, or one
// pwritev for the grains of a large write that lie end to end in the file.
// Writing through the mapping was the first design and was measured
// against this one: after each writeback the kernel write-protects the
// pages again, so the first write of every page after a flush takes a
// fault that starts a journal handle (ext4_page_mkwrite), and fdatasync
// has every page's mapping to clean. 128 random 4 KiB overwrites and an
// fdatasync, 1 GiB file on ext4: writes 5.0 ms and fdatasync 29 ms through
// the mapping, 1.0 ms and 3.0 ms with pwrite. A read-only mapping also
// turns a stray write into a fault at once rather than silent damage.
//
// Writes are not durable until Sync (fdatasync), as on a disk with a
// volatile write cache: the durable layer above (lun/durable) calls Sync at
// every NBD FLUSH, FUA write and snapshot commit, then writes down the maps
// that name the blocks. A block a map written down names is written again
// in place only by the live volume that owns it alone (cow's C8): a crash
// finds such a block as of that write or any later one, as a disk's cache
// may have written any of them back. A block an image shares is never
// written again: cow copies a grain shared with an image before writing it.

// # Space
//
// The file grows in chunks of GrowBytes, allocated with fallocate before
// any block in them is handed out, so that a write through the mapping
// never needs the file system to find space: a page fault that did would
// answer a full disk with SIGBUS, which kills the process. Reserve, which
// cow calls before every write that allocates, grows the file when the
// blocks on hand would not cover what is reserved, and answers
// cow.ErrNoSpace when the file system is full or the capacity is reached:
// the write fails whole, and nothing is changed.
//
// Freed blocks are handed out again lowest first, as MemStore does, so a
// volume's blocks stay close together. A large release (FreeBatch of at
// least PunchMin blocks, as deleting a snapshot or a LUN does) punches the
// freed ranges out of the file (fallocate PUNCH_HOLE), so that `du` follows
// the live data; punched blocks are allocated again with fallocate before
// they are handed out, after every block still backed. Blocks cow frees
// while their tree is live (a trim) wait in quarantine until Promote: a
// write racing the trim may still be copying into them (see cow.Store), and
// the durable layer promotes them once every volume has drained since.
//
// # Failure
//
// A failed fdatasync leaves the page cache in a state nobody can know (the
// kernel may have dropped the dirty pages and will not report it again), so
// the store fails: Sync, Reserve and so every later write answer the error,
// wrapped in ErrFailed, until the store is opened again, when the maps
// written down at the last good Sync are the truth. A failed write fails it
// too, and so does the durable layer (Fail) when meta.db fails.
package filestore

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/cow"
)

// GrowBytes is how much the data file grows by at a time. It bounds how
// often a write waits for fallocate (about once per 64 MiB written) and how
// much the file holds beyond the data.
const GrowBytes = 64 << 20

// PunchMin is the smallest FreeBatch whose blocks are punched out of the
// file rather than kept backed for reuse.
const PunchMin = 256

// ErrFailed wraps the error of a failed fdatasync: the store refuses
// writes and flushes until it is opened again.
var ErrFailed = errors.New("filestore: data file failed")

// Store is a cow.Store on a file. Its methods are safe for concurrent use.
type Store struct {
	path  string
	f     *os.File
	grain int64
	mem   []byte // the mapping, capacity bytes
	cap   int64  // in blocks

	// reserved is allocated blocks plus reservations not drawn on; the
	// capacity limits it. slack is the blocks on hand (backed, free or
	// never handed out) less the reservations not drawn on: Reserve takes
	// from it and grows the file when it would go negative.
	reserved atomic.Int64
	slack    atomic.Int64
	blocks   atomic.Int64 // allocated and not freed
	meta     atomic.Int64
	failed   atomic.Pointer[error]
	closed   atomic.Bool

	mu struct {
		sync.Mutex
		warm  minHeap  // free and backed: handed out first, lowest first
		cold  minHeap  // free and punched: backed again before reuse
		quar  []uint64 // freed live: reusable after Promote
		next  uint64   // blocks at and above next were never handed out
		size  uint64   // the file's size, in blocks: [next, size) is backed
		grows int64    // times the file grew, for Stats
	}
}

var (
	_ cow.Store        = (*Store)(nil)
	_ cow.BlockWriter  = (*Store)(nil)
	_ cow.RunAllocator = (*Store)(nil)
)

// Options configure Open.
type Options struct {
	// Grain is the block size; it must match the file's when it exists.
	Grain int
	// Capacity is the most data the store holds, in bytes (rounded down to
	// whole grains); it is also the size of the mapping.
	Capacity int64
	// Used lists the blocks the durable maps name, for a file that exists:
	// they are allocated, everything else in the file is free (and punched
	// out of it). Nil for a new, empty store. Open sorts it in place.
	Used []uint64
}

// Open opens or creates the data file at path.
func Open(path string, opts Options) (*Store, error) {
	s, err := Map(path, opts)
	if err != nil {
		return nil, err
	}
	if err := s.Adopt(opts.Used); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Map opens or creates the data file at path and maps it, without
// opts.Used: Block serves the blocks at once, so that the durable layer
// can rebuild its maps while it reads them, and Adopt, which must come
// before anything else, then says which blocks they name.
func Map(path string, opts Options) (*Store, error) {
	grain := int64(opts.Grain)
	if grain < cow.MinGrain || grain > cow.MaxGrain || grain&(grain-1) != 0 {
		return nil, fmt.Errorf("filestore: %s: grain %d: %w", path, grain, cow.ErrGrainSize)
	}
	capBlocks := opts.Capacity / grain
	if capBlocks <= 0 {
		return nil, fmt.Errorf("filestore: %s: capacity %d bytes is less than one grain", path, opts.Capacity)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if st.Size()%grain != 0 {
		f.Close()
		return nil, fmt.Errorf("filestore: %s: size %d is not a whole number of %d-byte grains", path, st.Size(), grain)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(capBlocks*grain), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: %s: mmap %d bytes: %w", path, capBlocks*grain, err)
	}
	s := &Store{path: path, f: f, grain: grain, mem: mem, cap: capBlocks}
	s.mu.size = uint64(st.Size() / grain)
	return s, nil
}

// Adopt sets a mapped store up with used, the blocks the durable maps
// name (nil for a new, empty store); see Options.Used. It sorts used in
// place: a copy of a start's list was 130 MB for 64 GiB of data.
func (s *Store) Adopt(used []uint64) error {
	s.mu.Lock()
	size := s.mu.size
	s.mu.Unlock()
	return s.adopt(size, used)
}

// adopt sets the store up over a file of size blocks, of which used are
// allocated: the file is cut after the last used block, and the free
// blocks below it are punched out and kept cold.
func (s *Store) adopt(size uint64, used []uint64) error {
	slices.Sort(used)
	for i, b := range used {
		if b >= size {
			return fmt.Errorf("filestore: %s: block %d is named by the maps but the file holds %d blocks", s.path, b, size)
		}
		if i > 0 && used[i-1] == b {
			return fmt.Errorf("filestore: %s: block %d is named twice by the maps", s.path, b)
		}
	}
	if int64(len(used)) > s.cap {
		return fmt.Errorf("filestore: %s: %d blocks in use exceed the capacity of %d", s.path, len(used), s.cap)
	}
	next := uint64(0)
	if len(used) > 0 {
		next = used[len(used)-1] + 1
	}
	if next < size {
		if err := s.f.Truncate(int64(next) * s.grain); err != nil {
			return fmt.Errorf("filestore: %s: %w", s.path, err)
		}
	}
	// Punch every free run below next and keep its blocks cold.
	var cold []uint64
	at := uint64(0)
	for _, b := range append(used, next) {
		if b > at {
			if err := s.punch(at, b-at); err != nil {
				return err
			}
			for x := at; x < b; x++ {
				cold = append(cold, x)
			}
		}
		at = b + 1
	}
	s.mu.cold = minHeap(cold) // ascending: already a heap
	s.mu.next, s.mu.size = next, next
	s.blocks.Store(int64(len(used)))
	s.reserved.Store(int64(len(used)))
	return nil
}

// FileBlocks returns how many blocks the data file held when it was
// mapped, before Adopt.
func (s *Store) FileBlocks() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.size
}

// Path returns the data file's path.
func (s *Store) Path() string { return s.path }

// Block returns block id, for rebuilding maps at start.
func (s *Store) Block(id uint64) cow.Block {
	off := int64(id) * s.grain
	return cow.Block{Data: s.mem[off : off+s.grain : off+s.grain], ID: id}
}

// GrainSize implements cow.Store.
func (s *Store) GrainSize() int { return int(s.grain) }

// Reserve implements cow.Store.
func (s *Store) Reserve(n int64) error {
	if err := s.err(); err != nil {
		return err
	}
	for {
		cur := s.reserved.Load()
		if cur+n > s.cap {
			return cow.ErrNoSpace
		}
		if s.reserved.CompareAndSwap(cur, cur+n) {
			break
		}
	}
	if s.slack.Add(-n) >= 0 {
		return nil
	}
	if err := s.replenish(); err != nil {
		s.reserved.Add(-n)
		s.slack.Add(n)
		return err
	}
	return nil
}

// replenish makes slack non-negative: cold blocks are backed again first,
// then the file grows.
func (s *Store) replenish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.slack.Load() < 0 {
		if len(s.mu.cold) > 0 {
			// Back the lowest cold blocks, a run at a time.
			want := min(int(-s.slack.Load())+int(GrowBytes/s.grain), len(s.mu.cold))
			got := 0
			for got < want {
				b := s.mu.cold.pop()
				if err := s.allocate(b, 1); err != nil {
					s.mu.cold.push(b)
					break
				}
				s.mu.warm.push(b)
				got++
			}
			if got > 0 {
				s.slack.Add(int64(got))
				continue
			}
		}
		grow := min(uint64(GrowBytes/s.grain), uint64(s.cap)-s.mu.size)
		if grow == 0 {
			return cow.ErrNoSpace
		}
		if err := s.allocate(s.mu.size, grow); err != nil {
			return err
		}
		s.mu.size += grow
		s.mu.grows++
		s.slack.Add(int64(grow))
	}
	return nil
}

// allocate backs n blocks from b with fallocate, growing the file if they
// lie past its end. A full file system is cow.ErrNoSpace.
func (s *Store) allocate(b, n uint64) error {
	err := unix.Fallocate(int(s.f.Fd()), 0, int64(b)*s.grain, int64(n)*s.grain)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%w: %s: %w", cow.ErrNoSpace, s.path, err)
	}
	return fmt.Errorf("filestore: %s: fallocate: %w", s.path, err)
}

// punch deallocates n blocks from b.
func (s *Store) punch(b, n uint64) error {
	err := unix.Fallocate(int(s.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(b)*s.grain, int64(n)*s.grain)
	if err != nil {
		return fmt.Errorf("filestore: %s: punch hole: %w", s.path, err)
	}
	return nil
}

// Unreserve implements cow.Store.
func (s *Store) Unreserve(n int64) {
	s.reserved.Add(-n)
	s.slack.Add(n)
}

// Alloc implements cow.Store: the lowest backed free block, or the next
// never handed out.
func (s *Store) Alloc() cow.Block {
	s.blocks.Add(1)
	s.mu.Lock()
	b := s.allocLocked()
	s.mu.Unlock()
	return s.Block(b)
}

// AllocRun implements cow.RunAllocator: the blocks of one call are taken
// under one hold of the lock, so that a large write's blocks follow one
// another in the file (lowest free first, then the end of the file) and
// its data goes out in one pwritev, though other writes allocate at the
// same time.
func (s *Store) AllocRun(bs []cow.Block) {
	s.blocks.Add(int64(len(bs)))
	var ids [256]uint64
	for len(bs) > 0 {
		n := min(len(bs), len(ids))
		s.mu.Lock()
		for i := range n {
			ids[i] = s.allocLocked()
		}
		s.mu.Unlock()
		for i := range n {
			bs[i] = s.Block(ids[i])
		}
		bs = bs[n:]
	}
}

// allocLocked takes a block: the lowest free and backed one, or the next
// never handed out. s.mu is held.
func (s *Store) allocLocked() uint64 {
	if len(s.mu.warm) > 0 {
		return s.mu.warm.pop()
	}
	b := s.mu.next
	s.mu.next++
	if s.mu.next > s.mu.size {
		// A write ran over its reservation (cow.Volume.mutate's races):
		// extend the file sparsely rather than fault past its end. The
		// block is backed on the next Reserve's grow.
		s.mu.size = s.mu.next
		_ = s.f.Truncate(int64(s.mu.size) * s.grain)
	}
	return b
}

// WriteBlocks implements cow.BlockWriter: one pwrite for each run of
// writes that lie end to end in the file (pwritev for several). A failed
// write fails the store, as a failed fdatasync does: what the page cache
// then holds is unknown.
func (s *Store) WriteBlocks(ws []cow.BlockWrite) error {
	if err := s.err(); err != nil {
		return err
	}
	var iovs [][]byte
	for i := 0; i < len(ws); {
		at := int64(ws[i].Block.ID)*s.grain + int64(ws[i].Off)
		end := at + int64(len(ws[i].Data))
		j := i + 1
		for j < len(ws) && int64(ws[j].Block.ID)*s.grain+int64(ws[j].Off) == end {
			end += int64(len(ws[j].Data))
			j++
		}
		var err error
		if j == i+1 {
			err = s.pwrite(ws[i].Data, at)
		} else {
			iovs = iovs[:0]
			for _, w := range ws[i:j] {
				iovs = append(iovs, w.Data)
			}
			err = s.pwritev(iovs, at)
		}
		if err != nil {
			err = fmt.Errorf("%w: %s: write at %d: %w", ErrFailed, s.path, at, err)
			s.failed.CompareAndSwap(nil, &err)
			return err
		}
		i = j
	}
	return nil
}

func (s *Store) pwrite(p []byte, at int64) error {
	for len(p) > 0 {
		n, err := writeAt(s.f, p, at)
		if err != nil {
			return err
		}
		p, at = p[n:], at+int64(n)
	}
	return nil
}

func (s *Store) pwritev(iovs [][]byte, at int64) error {
	for len(iovs) > 0 {
		n, err := unix.Pwritev(int(s.f.Fd()), iovs, at)
		if err != nil {
			return err
		}
		at += int64(n)
		for n > 0 { // a short write: go on from where it stopped
			if n >= len(iovs[0]) {
				n -= len(iovs[0])
				iovs = iovs[1:]
				continue
			}
			iovs[0] = iovs[0][n:]
			n = 0
		}
	}
	return nil
}

// writeAt is pwrite; a variable so that tests can make it fail.
var writeAt = func(f *os.File, p []byte, at int64) (int, error) { return unix.Pwrite(int(f.Fd()), p, at) }

// Free implements cow.Store.
func (s *Store) Free(b cow.Block, reuse bool) {
	s.blocks.Add(-1)
	s.reserved.Add(-1)
	s.mu.Lock()
	if reuse {
		s.mu.warm.push(b.ID)
		s.slack.Add(1)
	} else {
		s.mu.quar = append(s.mu.quar, b.ID)
	}
	s.mu.Unlock()
}

// FreeBatch implements cow.Store. A batch of PunchMin blocks or more is
// punched out of the file, run by run.
func (s *Store) FreeBatch(bs []cow.Block) {
	if s.closed.Load() {
		return // nothing may touch the file once closed
	}
	n := int64(len(bs))
	s.blocks.Add(-n)
	s.reserved.Add(-n)
	if len(bs) < PunchMin {
		s.mu.Lock()
		for _, b := range bs {
			s.mu.warm.push(b.ID)
		}
		s.mu.Unlock()
		s.slack.Add(n)
		return
	}
	ids := make([]uint64, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	slices.Sort(ids)
	punched := ids[:0:0]
	var kept []uint64
	for i := 0; i < len(ids); {
		j := i + 1
		for j < len(ids) && ids[j] == ids[j-1]+1 {
			j++
		}
		if s.punch(ids[i], uint64(j-i)) == nil {
			punched = append(punched, ids[i:j]...)
		} else {
			kept = append(kept, ids[i:j]...)
		}
		i = j
	}
	s.mu.Lock()
	for _, b := range punched {
		s.mu.cold.push(b)
	}
	for _, b := range kept {
		s.mu.warm.push(b)
	}
	s.mu.Unlock()
	s.slack.Add(int64(len(kept)))
}

// Quarantine is a batch of blocks freed live, sealed by Seal and made
// reusable by Promote.
type Quarantine []uint64

// Seal takes the blocks in quarantine now. The caller promotes them once
// every volume of the store has drained the I/O it had admitted when Seal
// was called (a Snapshot of each does).
func (s *Store) Seal() Quarantine {
	s.mu.Lock()
	q := s.mu.quar
	s.mu.quar = nil
	s.mu.Unlock()
	return q
}

// Promote makes a sealed batch reusable.
func (s *Store) Promote(q Quarantine) {
	if len(q) == 0 {
		return
	}
	s.mu.Lock()
	for _, b := range q {
		s.mu.warm.push(b)
	}
	s.mu.Unlock()
	s.slack.Add(int64(len(q)))
}

// AddMeta implements cow.Store.
func (s *Store) AddMeta(delta int64) { s.meta.Add(delta) }

// Sync implements cow.Store: fdatasync of the data file. A failure fails
// the store (see the package doc).
func (s *Store) Sync() error {
	if err := s.err(); err != nil {
		return err
	}
	if err := syncFile(s.f); err != nil {
		err = fmt.Errorf("%w: %s: fdatasync: %w", ErrFailed, s.path, err)
		s.failed.CompareAndSwap(nil, &err)
		return err
	}
	return nil
}

// syncFile is fdatasync; a variable so that tests can make it fail.
var syncFile = func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

func (s *Store) err() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Fail fails the store with err, wrapped in ErrFailed, as a failed
// fdatasync does: the durable layer fails it when meta.db failed, so that
// no block the maps may name is written again or handed out until the
// store is opened again. The first error stays.
func (s *Store) Fail(err error) {
	err = fmt.Errorf("%w: %s: %w", ErrFailed, s.path, err)
	s.failed.CompareAndSwap(nil, &err)
}

// Err returns the error that failed the store, or nil.
func (s *Store) Err() error { return s.err() }

// Stats implements cow.Store.
func (s *Store) Stats() cow.StoreStats {
	return cow.StoreStats{
		DataBytes:     s.blocks.Load() * s.grain,
		MetaBytes:     s.meta.Load(),
		ReservedBytes: s.reserved.Load() * s.grain,
		CapacityBytes: s.cap * s.grain,
	}
}

// FileStats is what the file holds, for status and checks.
type FileStats struct {
	// FileBytes is the file's size; AllocatedBytes what the file system
	// holds for it (du).
	FileBytes, AllocatedBytes int64
	// Free blocks by kind.
	Warm, Cold, Quarantined int
	Grows                   int64
}

// FileStats reports the file's state.
func (s *Store) FileStats() FileStats {
	s.mu.Lock()
	fs := FileStats{FileBytes: int64(s.mu.size) * s.grain, Warm: len(s.mu.warm), Cold: len(s.mu.cold), Quarantined: len(s.mu.quar), Grows: s.mu.grows}
	s.mu.Unlock()
	var st unix.Stat_t
	if unix.Fstat(int(s.f.Fd()), &st) == nil {
		fs.AllocatedBytes = st.Blocks * 512
	}
	return fs
}

// Close unmaps and closes the file. It does not sync: a store closed
// without Sync loses what a crash would.
func (s *Store) Close() error {
	s.closed.Store(true)
	var err error
	if s.mem != nil {
		err = unix.Munmap(s.mem)
		s.mem = nil
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// minHeap is a binary min-heap of block numbers.
type minHeap []uint64

func (h *minHeap) push(b uint64) {
	*h = append(*h, b)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if a[p] <= a[i] {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *minHeap) pop() uint64 {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a[l] < a[m] {
			m = l
		}
		if r < len(a) && a[r] < a[m] {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
