package cow

import (
	"sync"
	"sync/atomic"
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
// nothing can still touch it. It may not when it was freed while its tree was
// live (a trim or zeroing dropping a grain): a write racing that trim may
// still be copying into it, and reusing it would let those bytes land in
// some other grain.
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
	// AddMeta accounts for delta bytes of block-map metadata.
	AddMeta(delta int64)
	// Sync makes every completed write durable (a flush, or the end of a
	// FUA write). MemStore has nothing to do.
	Sync() error
	// Stats reports the store's own accounting.
	Stats() StoreStats
}

// Block is one grain of data owned by a Store.
type Block struct {
	// Data is GrainSize bytes.
	Data []byte
	// ID is the store's name for the block (a file offset for a file store;
	// unused by MemStore).
	ID uint64
}

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

// MemStore is a Store on the Go heap. Reusable freed blocks go to a
// sync.Pool, so a first write after a snapshot usually takes a block that a
// deleted image gave back instead of fresh memory to fault in and zero, and
// the pool still gives memory back to the garbage collector when idle.
type MemStore struct {
	grain    int
	capacity int64 // in blocks, 0 for none; set once
	pool     sync.Pool

	blocks   atomic.Int64 // allocated and not freed
	reserved atomic.Int64 // allocated plus reserved, what capacity limits
	meta     atomic.Int64
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
	return &MemStore{grain: grain, capacity: capacity / int64(grain)}, nil
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
	if s.capacity == 0 {
		s.reserved.Add(1)
	}
	if b, ok := s.pool.Get().(*Block); ok {
		return *b
	}
	return Block{Data: make([]byte, s.grain)}
}

// Free implements Store.
func (s *MemStore) Free(b Block, reuse bool) {
	s.blocks.Add(-1)
	s.reserved.Add(-1)
	if reuse {
		s.pool.Put(&b)
	}
}

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
		ReservedBytes: s.reserved.Load() * g,
		CapacityBytes: s.capacity * g,
	}
}
