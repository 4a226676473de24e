package cow

import (
	"cmp"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"
)

// Store owns the data blocks of a family of volumes, images and clones. It
// is the boundary between the block map (this package's tree, always in
// memory) and where the data lives. MemStore keeps blocks on the Go heap; a
// file-backed store fills the same interface by mapping a file and handing
// out slices of the mapping as block data, keeping a free list of block
// numbers.
//
// Free says whether a block may be handed out again at once. It may when it
// was freed by releasing a volume, image or clone, whose I/O has drained, so
// nothing writes to it any more; a read of another tree that shared the
// block may still be copying from it, and checks afterwards that it did not
// lose the block meanwhile (see geometry.read). It may not when it was freed
// while its tree was live (a trim or zeroing dropping a grain): a write
// racing that trim may still be copying into it, and reusing it would let
// those bytes land in some other grain.
type Store interface {
	// GrainSize is the size of every block, a power of two from MinGrain to
	// MaxGrain.
	GrainSize() int
	// Reserve sets aside n blocks for allocations that follow, so a write
	// can learn that it does not fit before it changes anything. It fails
	// with ErrNoSpace.
	Reserve(n int64) error
	// Unreserve gives back n reserved blocks that were not allocated.
	Unreserve(n int64)
	// Alloc returns a block with unspecified content; the caller fills all
	// of it. A store with a capacity draws on an earlier Reserve; a store
	// without one (Stats().CapacityBytes == 0) is not asked to reserve and
	// accounts for the block itself, so writes pay no shared counter.
	Alloc() Block
	// Free returns a block that nothing references any more; reuse says
	// whether it may be handed out again at once (see above). Its reserve
	// is given back.
	Free(b Block, reuse bool)
	// FreeBatch frees many blocks as Free with reuse does, as a drained
	// release does with a whole tree's. The store may reorder bs, and
	// keeps none of it. Given many blocks at once, a store can hand them
	// out again so that blocks allocated one after another lie close
	// together.
	FreeBatch(bs []Block)
	// AddMeta accounts for delta bytes of block-map metadata.
	AddMeta(delta int64)
	// Sync makes every completed write durable (a flush, or the end of a
	// FUA write). MemStore has nothing to do.
	Sync() error
	// Stats reports the store's own accounting.
	Stats() StoreStats
}

// BlockWriter is implemented by a Store whose blocks are written through
// it rather than through their memory, which is then read-only: a file
// store whose mapping serves reads, while writes go through pwrite, since
// a write through a shared mapping of a file costs a write fault per page
// after every writeback, which made a flush ten times dearer (filestore's
// doc). cow then never writes into Block.Data.
type BlockWriter interface {
	// WriteBlocks writes each w.Data at offset w.Off of block w.Block.
	// Several writes into consecutive blocks may go out as one. An error
	// leaves what was written unspecified.
	WriteBlocks(ws []BlockWrite) error
}

// RunAllocator is implemented by a Store that can hand out many blocks in
// one call, as Alloc would one at a time, but close together: a file
// store, where a large write whose blocks lie end to end goes out as one
// system call. Without it, two large writes allocating at once take
// alternate blocks, and each is written, and read, in pieces ever after.
type RunAllocator interface {
	// AllocRun fills bs with blocks, as len(bs) calls of Alloc would.
	AllocRun(bs []Block)
}

// BlockWrite is one write of a BlockWriter: Data at offset Off of Block.
type BlockWrite struct {
	Block Block
	Off   int
	Data  []byte
}

// Block is one grain of data owned by a Store.
type Block struct {
	// Data is GrainSize bytes.
	Data []byte
	// ID is the store's name for the block (a file offset for a file store;
	// unused by MemStore).
	ID uint64
}

// addr is where the block's data lies in memory.
func (b Block) addr() uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b.Data))) }

// StoreStats is a store's accounting.
type StoreStats struct {
	// DataBytes is the size of the blocks allocated and not freed.
	DataBytes int64
	// MetaBytes is the size of the block-map nodes alive.
	MetaBytes int64
	// ReservedBytes counts allocated blocks plus reservations not yet
	// drawn on; it is what the capacity limits.
	ReservedBytes int64
	// CapacityBytes is the limit, 0 for none.
	CapacityBytes int64
}

// MemStore is a Store on the Go heap. Freed blocks that may be reused wait
// on a free stack, so a first write after a snapshot takes a block a
// released image gave back instead of fresh memory to fault in and zero.
//
// Where blocks lie matters as much as reusing them. A 4 KiB random-write
// load with snapshots returns blocks in no order, and a volume built from
// them costs even in-place 1 MiB writes half as much again as one whose
// blocks lie in order (BenchmarkWriteLarge, scattered against sequential):
// every grain is on a page of its own, far from the last. FreeBatch
// therefore sorts what a release frees by address and stacks it so that the
// lowest comes out first, and the next writes take their blocks in address
// order.
//
// Like a sync.Pool, the stack gives memory back to the garbage collector
// when idle: after each collection it lets go of the blocks that stayed at
// its bottom, untouched, since the one before. It also holds no more than
// MemFreeKeep bytes: an idle daemon allocates nothing, so no collection
// would ever come to trim it, and a deleted 2 GiB snapshot stayed in the
// process for as long as it ran. A large release (deleting a snapshot or
// a LUN) drops what the stack will not hold and has the runtime return it
// to the system at once (debug.FreeOSMemory, at most one at a time, in
// the background), rather than leaving it to the background scavenger,
// which took six minutes for 2 GiB.
type MemStore struct {
	grain    int
	capacity int64 // in blocks, 0 for none; set once

	mu   sync.Mutex
	free []*byte // reusable blocks, each by its first byte; the top goes first
	low  int     // the fewest blocks free since the last collection

	blocks atomic.Int64 // allocated and not freed
	// reserved is what capacity limits: allocated blocks plus reservations
	// not yet drawn on. Without a capacity it counts reservations only, and
	// Stats adds blocks, so an allocation pays one shared counter, not two.
	reserved atomic.Int64
	meta     atomic.Int64
	// dropped counts the bytes releases dropped since memory was last
	// returned to the system: a release frees in many batches.
	dropped atomic.Int64
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns a store of grain-sized blocks holding at most capacity
// bytes of data (rounded down to whole grains), or any amount when capacity
// is 0.
func NewMemStore(grain int, capacity int64) (*MemStore, error) {
	if err := checkGrain(grain); err != nil {
		return nil, err
	}
	if capacity < 0 {
		return nil, ErrSize
	}
	s := &MemStore{grain: grain, capacity: capacity / int64(grain)}
	watchCollections(weak.Make(s))
	return s, nil
}

// GrainSize implements Store.
func (s *MemStore) GrainSize() int { return s.grain }

// Reserve implements Store.
func (s *MemStore) Reserve(n int64) error {
	if s.capacity == 0 {
		s.reserved.Add(n)
		return nil
	}
	for {
		cur := s.reserved.Load()
		if cur+n > s.capacity {
			return ErrNoSpace
		}
		if s.reserved.CompareAndSwap(cur, cur+n) {
			return nil
		}
	}
}

// Unreserve implements Store.
func (s *MemStore) Unreserve(n int64) { s.reserved.Add(-n) }

// Alloc implements Store.
func (s *MemStore) Alloc() Block {
	s.blocks.Add(1)
	s.mu.Lock()
	if n := len(s.free) - 1; n >= 0 {
		b := s.free[n]
		s.free[n] = nil
		s.free = s.free[:n]
		s.low = min(s.low, n)
		s.mu.Unlock()
		return Block{Data: unsafe.Slice(b, s.grain)}
	}
	s.mu.Unlock()
	return Block{Data: make([]byte, s.grain)}
}

// MemFreeKeep is the most free memory a MemStore keeps for reuse.
const MemFreeKeep = 64 << 20

// memReturnMin is how much releases drop before the memory is returned to
// the system at once.
const memReturnMin = 16 << 20

// keepBlocks is how many free blocks the stack holds at most.
func (s *MemStore) keepBlocks() int { return max(MemFreeKeep/s.grain, 1) }

// Free implements Store.
func (s *MemStore) Free(b Block, reuse bool) {
	s.forget(1)
	if reuse {
		s.mu.Lock()
		if len(s.free) < s.keepBlocks() {
			s.free = append(s.free, unsafe.SliceData(b.Data))
		}
		s.mu.Unlock()
	}
}

// freeChunk bounds how many blocks FreeBatch stacks under one hold of the
// lock, so that writers allocating meanwhile wait microseconds, not the
// whole of a large release.
const freeChunk = 4096

// FreeBatch implements Store. It sorts bs by address, highest first, and
// stacks them in that order, so the lowest is handed out first.
func (s *MemStore) FreeBatch(bs []Block) {
	s.forget(int64(len(bs)))
	slices.SortFunc(bs, func(a, b Block) int {
		return cmp.Compare(b.addr(), a.addr())
	})
	// Keep the lowest blocks, which come out first; drop the rest.
	s.mu.Lock()
	room := max(s.keepBlocks()-len(s.free), 0)
	s.mu.Unlock()
	// Dropped blocks go to the garbage collector.
	dropped := max(len(bs)-room, 0)
	bs = bs[dropped:]
	keep := s.keepBlocks()
	for len(bs) > 0 {
		chunk := bs[:min(len(bs), freeChunk)]
		bs = bs[len(chunk):]
		s.mu.Lock()
		for _, b := range chunk {
			if len(s.free) >= keep {
				break // Frees meanwhile took the room
			}
			s.free = append(s.free, unsafe.SliceData(b.Data))
		}
		s.mu.Unlock()
	}
	if dropped > 0 && s.dropped.Add(int64(dropped*s.grain)) >= memReturnMin {
		s.dropped.Store(0)
		returnMemory.request()
	}
}

// returnMemory has the runtime collect and give the free heap back to the
// system, once per request but never twice at once: a request made while
// one runs runs once more after it.
var returnMemory = memReturner{run: debug.FreeOSMemory}

type memReturner struct {
	mu      sync.Mutex
	running bool
	again   bool
	run     func()
	// done counts the returns made, for tests.
	done atomic.Int64
}

func (r *memReturner) request() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		r.again = true
		return
	}
	r.running = true
	go func() {
		for {
			r.run()
			r.done.Add(1)
			r.mu.Lock()
			if !r.again {
				r.running = false
				r.mu.Unlock()
				return
			}
			r.again = false
			r.mu.Unlock()
		}
	}()
}

// forget accounts for n blocks freed.
func (s *MemStore) forget(n int64) {
	s.blocks.Add(-n)
	if s.capacity != 0 {
		s.reserved.Add(-n)
	}
}

// collected lets go of the blocks that stayed at the bottom of the free
// stack since the last collection; the collector takes them in the next.
func (s *MemStore) collected() {
	s.mu.Lock()
	n := copy(s.free, s.free[s.low:])
	clear(s.free[n:])
	s.free = s.free[:n]
	s.low = n
	s.mu.Unlock()
}

// watchCollections calls the store's collected after every garbage
// collection for as long as the store lives: a cleanup on a throwaway
// object runs once the collection that found it unreachable is over, and
// arms the next.
func watchCollections(w weak.Pointer[MemStore]) {
	runtime.AddCleanup(&collectionTick{}, func(w weak.Pointer[MemStore]) {
		if s := w.Value(); s != nil {
			s.collected()
			watchCollections(w)
		}
	}, w)
}

// collectionTick holds a pointer so that it is not a tiny allocation, which
// could share its memory with other objects and outlive a collection.
type collectionTick struct{ _ *byte }

// AddMeta implements Store.
func (s *MemStore) AddMeta(delta int64) { s.meta.Add(delta) }

// Sync implements Store.
func (s *MemStore) Sync() error { return nil }

// Stats implements Store.
func (s *MemStore) Stats() StoreStats {
	g := int64(s.grain)
	return StoreStats{
		DataBytes:     s.blocks.Load() * g,
		MetaBytes:     s.meta.Load(),
		ReservedBytes: s.reservedBlocks() * g,
		CapacityBytes: s.capacity * g,
	}
}

// reservedBlocks is what Stats reports as reserved, in blocks.
func (s *MemStore) reservedBlocks() int64 {
	if s.capacity == 0 {
		return s.reserved.Load() + s.blocks.Load()
	}
	return s.reserved.Load()
}
