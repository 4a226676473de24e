// Package cow implements copy-on-write block maps: live volumes, read-only
// point-in-time images, and writable clones of images, with commits in O(1).
//
// # Design
//
// A volume's content is a radix tree (fanout 64) of pointers to grains of
// data (pages), as dm-thin keeps its mappings, but in memory. Every node and
// page carries the generation that owns it, at first the one that created
// it. A volume's live tree belongs to an epoch with a generation of its own;
// a write in that epoch writes in place into pages of its generation and
// copies anything older first (path copying: the leaf's page, then every
// node above it that is shared), publishing each copy with a pointer store
// under the parent node's lock. An older node or page that only the live
// tree still points at, because the images that shared it were released, is
// not copied but adopted: the writer gives it its own generation under the
// same lock. Readers take no lock at all.
//
// Snapshot installs a new epoch with one atomic pointer swap, waits for the
// I/O admitted to the previous epoch to drain, and hands the previous
// epoch's root to a new Image. From then on the image's nodes are older than
// any writer's generation, so nobody writes into them again.
//
// A Group commits many volumes at one instant, what a VSS snapshot set asks
// of an array: Add links each volume's current epoch to the group and
// prepares its next epoch and image; Commit is one compare-and-swap of the
// group's state, which every operation entering a member volume checks, then
// one drain check and one root comparison per volume. Each volume's current
// pointer moves to the new epoch lazily, on its next operation. Measured on
// 2 cores (BenchmarkCommitGroup64), 64 quiet volumes commit in about 1 µs,
// against 3.5 µs for 64 Snapshot calls in a row: a per-volume swap costs a
// mutex, an exchange and two atomic adds, each a full fence on x86. In-flight I/O is
// counted with sharded counters (package inflight) rather than a
// sync.RWMutex, whose read lock is one shared word that every core fights
// over and whose write lock would make writers wait on commits.
//
// Nodes and pages are reference counted by the slots pointing at them, so
// releasing an image, a clone or a volume frees exactly the blocks nothing
// else reaches. Data blocks come from a Store; MemStore keeps them on the
// heap, and a file-backed store can fill the same interface.
//
// ReadVec reads without a copy: it hands out slices of the blocks
// themselves, for a server to send with one writev, and pins each page it
// names (a reference, as a leaf slot holds) until the Vec is released, so
// a block that every tree lets go of meanwhile is neither reused nor
// punched out of a file while it is being sent (vec.go).
//
// Designs measured and rejected: a RWMutex around the volume (commits and
// writers wait for each other); copying the block table at snapshot (O(n),
// milliseconds per 256 MiB); qcow2-style refcount bumps of every block at
// snapshot (O(metadata)).
//
// # Invariants
//
// Tests and comments name these.
//
//   - C1 A commit (Snapshot) is O(1): its cost does not grow with volume
//     size, data written or the number of existing images. It allocates
//     nothing proportional to data and does no I/O.
//   - C2 Once Snapshot returns, the image is immutable: no later write is
//     visible through it.
//   - C3 Writers never wait on a lock that a commit takes. The only thing a
//     commit waits for is the drain of writes admitted before its pointer
//     swap (none under flush & hold). Writes admitted after the swap wait,
//     for that same drain only (a group's: the drain of every member),
//     before their first access.
//   - C4 Point in time: every write acknowledged before Snapshot was called
//     is in the image; no write started after Snapshot returned is. A
//     group's images are of one instant: no volume's is later than
//     another's.
//   - C5 Releasing an image, clone or volume returns every block that
//     nothing else references to the store.
//   - C6 Sparse: unwritten or trimmed ranges cost no data memory, read as
//     zeros, and are reported as holes by Extents.
//   - C7 Changed-block tracking falls out of the map: Diff lists the ranges
//     that differ between two images of one family without reading data,
//     skipping every subtree they share.
//   - C8 A Checkpoint's image fixes the map, not the data: it is C1, C5 and
//     C7 as any image, and every grain stays behind the block it named, but
//     the volume writes in place into the grains it owned at the checkpoint
//     instead of copying them. It is what a durable store needs of the map
//     it has written down (a flush must not make the next write of every
//     grain a copy, as a disk's cache does not), and nothing else may
//     clone it or revert to it. Nodes are still copied on the first write
//     after it, a leaf's 512 bytes, not the grain.
//
// # Fanout
//
// The fanout is what a snapshot costs in memory: the first write into a
// leaf after a snapshot copies the leaf, and the image keeps the old one,
// so a LUN written at random between periodic snapshots holds a leaf per
// write and per snapshot. With fanout 256 (2 KiB leaves) that was most of
// the memory of a durable array: 8 GiB written with 100 snapshots and 4096
// random 4 KiB overwrites before each, reopened, held 527 MB of nodes and
// 110 MB of pages; with fanout 64, 221 MB of nodes, and the first write
// into a leaf held by an image costs 1.3-1.6 µs rather than 3.4-4.1 µs
// (BenchmarkFirstWriteInLeaf). A tree of 64 GiB at 4 KiB grains is one
// level taller (four), which reads and steady writes did not show
// (BenchmarkRead4K, BenchmarkWriteLarge, interleaved runs).
//
// # Grain size
//
// The grain (512 B to 64 KiB, a power of two) is the unit of copy-on-write
// and of allocation. DefaultGrain is 4 KiB, chosen from BenchmarkGrain (4 KiB
// writes over 64 MiB, 2 cores):
//
//	grain    steady write   first write after a snapshot
//	512 B    569 ns         3852 ns  (a 4 KiB write touches 8 grains)
//	4 KiB    675 ns         1449 ns
//	16 KiB   228 ns         18 µs    (copies the other 12 KiB)
//	64 KiB   225 ns         69 µs    (copies the other 60 KiB)
//
// Larger grains make steady writes cheaper but the first write after a
// snapshot, the write VSS cares about, dearer by the size of the grain;
// 4 KiB matches what file systems and NBD clients write, so the first write
// copies no more than it writes.
//
// # Caveats
//
// Concurrent writes to overlapping byte ranges land in an unspecified order,
// as on a disk. A write that races a Trim or WriteZeroes of the same grain may
// be lost. A read that races a write of the same bytes returns old, new or
// mixed bytes, as a disk's would, and never bytes of another grain: a
// block freed and reused while a read copied from it is read again (see
// geometry.read); ReadVec's slices may change under a write racing the
// read until the Vec is released, but never to another grain's bytes. It
// is a data race by Go's rules, so the race detector
// reports it, and tests give concurrent readers and writers bytes of their
// own, or run without the detector.
package cow
