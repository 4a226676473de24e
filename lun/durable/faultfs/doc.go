// Package faultfs is a file system that fails on demand: a FUSE
// passthrough of a backing directory whose writes, fsyncs, fdatasyncs,
// fallocates, opens and truncations fail at the call a rule names, so that every
// durable write path of a data directory (design.md D5) is tested with
// real faults at the system-call level.
//
// # Why a file system
//
// bbolt writes meta.db through an *os.File it opens itself, with pwrite and
// fdatasync, and reads it through a mapping: it takes no file system
// interface (as pebble's vfs is), and a package variable cannot reach its
// calls. The data file (cow/filestore) has such variables, but they skip
// the kernel: a write that fails there never touched the page cache the
// mapping reads. A file system sits under both, and fails the same system
// calls a full or failing disk fails. Rejected: a patched bbolt (a fork to
// keep), gofail failpoints (bbolt's own, compiled in only by its own
// tests), a device-mapper flakey target (root, a block device, and no
// per-file or per-call control), LD_PRELOAD (Go makes system calls
// itself).
//
// # Design
//
// The file system is go-fuse's loopback (fs.LoopbackNode) with its nodes
// and file handles wrapped: before a call reaches the backing file it is
// counted by (file, operation), the file being the base name ("meta.db",
// "data"), and the rules say whether it fails. A test runs its workload
// once to count the call sites, then once per call, failing that one.
//
// Every file is opened with FOPEN_DIRECT_IO, and the mount asks for
// FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6), so that shared mappings still
// work. Without direct I/O the kernel copies a write into the page cache
// before the server sees it, and a write the server fails stays visible
// through every mapping of the file (bbolt would read a meta page the file
// does not hold). With it a write invalidates the cached pages of its range
// first and goes to the server; the next fault through a mapping reads
// what the backing file holds, whether the write succeeded or not.
// Passthrough (FUSE_PASSTHROUGH) is refused, or the kernel would send I/O
// to the backing file without the server seeing it.
//
// # Serving from another process
//
// A process must not touch a mapping of a file its own FUSE server serves:
// a page fault blocks its thread without the Go runtime knowing, and a
// stop-the-world (every garbage collection has two) then waits for that
// thread while the server's goroutines wait for the world to start again.
// New serves in the calling process, for a program that serves files
// another process uses; Mount, for tests, serves in a child process (the
// test binary run again, which this package's init turns into the server
// when it finds its environment variable) and speaks to it over a pipe.
//
// # Invariants
//
//   - F1 A call a rule does not hit reaches the backing file unchanged; a
//     call it hits does not reach it at all, except a short write, which
//     writes the first half of its bytes and answers their count.
//   - F2 Calls are counted per (base name, operation) from the mount or
//     the last Reset, hit or not, in the order the server receives them.
//     A workload that makes its calls one at a time counts the same on
//     every run.
//   - F3 What a mapping of a file shows is what the backing file holds:
//     after a write that succeeded, failed or was cut short, a hole
//     punched, a truncation.
//   - F4 Rules can be changed, and counts read, while the file system is
//     in use; a change applies from the next call.
package faultfs
