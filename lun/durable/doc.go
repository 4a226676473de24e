// Package durable keeps an array on disk: the block maps of every volume,
// image and clone, and the array's catalogue, in a data directory, so that
// the array comes back when the daemon starts again, and after a crash
// holds what design.md's D1-D3 promise.
//
// # Layout
//
// A data directory holds meta.db, a bbolt database, and data, the blocks
// (cow/filestore). meta.db has:
//
//   - meta: the format version and the grain;
//   - trees: one record for every tree (a cow volume or image) whose map is
//     written down: its parent tree, the bucket holding its map, its size,
//     whether it is live (a volume) and whether the catalogue still names it;
//   - maps: one bucket per tree, grain index → the block behind it (or a
//     hole or zero mark), holding only what differs from its parent's map;
//   - the catalogue's own buckets (luns, sets...), written by the callers
//     in the same transactions as the trees they name (Edit).
//
// A tree's map is its bucket over its parent's map, over the parent's
// parent's, and so on: a snapshot commits by giving the live volume's
// bucket to the new image and the volume a new, empty bucket under it,
// which is one record whatever the data (D2), as dm-thin's snapshots share
// their parent's b-tree. bbolt was chosen over pebble for the metadata: its
// transactions are what every change here is (a few records, all or none,
// durable at commit with one fdatasync of the file plus the meta page), it
// has no background compactions competing with I/O for two cores, and its
// reads at start are a cursor walk over a B+tree. A journal written by hand
// would save one fsync per commit; not worth its recovery code yet.
//
// # When a write is durable
//
// The trees stay in memory (package cow). For every live volume the DB
// keeps a cow image of the map that is written down, its durable image; an
// image tree keeps an image of its own. A checkpoint, which every NBD
// FLUSH and FUA write asks for, takes a cow Checkpoint of every live volume
// (O(1) each: the map is fixed, and the writes after it go in place into
// the blocks the volume owns, C8, rather than copying every grain they
// touch first), fdatasyncs the data file, writes into each volume's bucket the grains in
// which the new image differs from its durable image (cow.ChangedGrains:
// in proportion to what was written since, C7), commits, and makes the new
// images the durable ones. Concurrent flushes share one checkpoint: a
// flush waits for the first checkpoint that starts after it was asked for.
//
// # Invariants
//
//   - D1 A write acknowledged before a FLUSH that completed, or written with
//     FUA, is in the maps written down and in the blocks they name.
//   - D2 A commit (CommitImages) returns once its images' maps and blocks
//     are durable, in one transaction for every image of the set.
//   - D3 Every block a map written down names is referenced in memory by a
//     durable image, so cow never frees it, and so never reuses it, while a
//     map names it: records are removed first (Delete, Revert, merges) and
//     images released after. No block is named by two maps' entries; a
//     crash leaves blocks named by none, which Open finds free.
//   - D4 Memory is the cow trees (the mapping), never the data: blocks live
//     in the page cache of the data file.
//   - D6 A write not yet flushed may survive a crash or not, by grain: an
//     overwrite lands in place in the block the map names, a write into a
//     hole or into a grain a snapshot shares lands in a new block the map
//     will name at the next checkpoint. A crash never gives a grain bytes
//     it did not hold since the last checkpoint, and never changes an
//     image tree.
//   - D5 A failed write or fdatasync of the data file fails the store
//     (filestore's doc). A failed transaction leaves the records as they
//     were, and the durable images with them, so a later checkpoint
//     writes the same changes again. Every change is one transaction
//     (Delete, Revert and MakeWritable with the drops and merges they lead
//     to), so one that failed is undone whole and can be made again. The
//     exception is a transaction that failed after bbolt had written its
//     commit record (the fdatasync after the meta page failed, or the
//     page's write was cut short past the record): bbolt then reads it as
//     committed, so the DB fails with ErrFailed, and the data file with
//     it, until the directory is opened again, when meta.db holds the
//     transaction whole or not at all. A new directory's meta.db is
//     created under another name and renamed into place, so that it is
//     there whole or not at all. Every error names the file. The fault
//     test (faultfs_test.go) fails each system call of a workload in turn,
//     through the fault file system (package faultfs).
//
// # Opening a directory
//
// Open writes nothing to a directory that exists: its checks run in
// read-only transactions, so that one it refuses is left exactly as it
// was, and one on a full file system opens. It refuses with ErrCorrupt,
// naming the file, a meta.db that is missing or empty beside a data file
// that holds data (bbolt would start an empty database, and the data file
// would be cut to the nothing its maps name), one cut short or with a
// page overwritten (bbolt trusts its pages, and answers with a panic or a
// memory fault, which Open recovers from), and a missing data file its
// maps name blocks in.
//
// Trees the catalogue no longer names (a deleted snapshot others were
// cloned from, the image under a snapshot made writable) stay as long as
// they have two children or more; with one they are merged into it, the
// smaller bucket into the larger, and with none deleted.
package durable
