// Package bench measures shadowbench: workloads that drive the array, the
// provider, the coordinator and the NBD server as their users do, and
// report latency histograms as text, JSON and a self-contained HTML page.
//
// # Design
//
// As in pebble's bench/, each workload is a Config struct with a Default
// function and a Run function, RunX(ctx, cfg, progress) (*Result, error);
// the command line only binds flags to the Config. The workloads:
//
//   - commit: the array provider's CommitSnapshots over sets of N LUNs,
//     called directly, and cow.Volume.Snapshot alone.
//   - sequence: whole DoSnapshotSets (vss-spec.md A.7) with K writers and
//     N LUNs, broken down into phases from the set's timeline.
//   - hold: the flush & hold window (B.2) of whole sets taken under NBD
//     write load.
//   - io-impact: NBD write latency before, during and after sets taken at
//     a given rate.
//   - first-write: the copy-on-write a first write after a snapshot pays,
//     by grain and write size.
//   - nbd: throughput and latency of the NBD server through the Go client.
//
// RunDemo (shadowbench demo) is the guided tour built from the same parts:
// writers, NBD load, whole sets, checks of the snapshots' content, and a
// report.
//
// Every workload runs a system of its own (an array, the emulated array
// provider, the coordinator and, for NBD load, the server on 127.0.0.1 or a
// unix socket) and stops all of it before Run returns. Latencies go into
// HdrHistograms, one per goroutine, merged at the end, rather than one
// shared under a lock that would serialise the I/O being measured.
// go test -bench stays the direct way to commit figures: cow's and
// provider's BenchmarkCommit measure the commit; BenchmarkSequence here
// measures what they cannot, a whole set.
//
// # Invariants
//
// Tests name these.
//
//   - B1 Nothing is excluded silently: a sequence's phases add up to its
//     DoSnapshotSet exactly, with "other" for the time inside no step, and
//     a step the coordinator adds later is reported under its own name.
//     Warm-up sets are counted in a note.
//   - B2 A run leaves nothing behind: every goroutine, connection, socket
//     and snapshot it made is gone when Run returns.
//   - B3 A run whose I/O fails reports an error, not figures.
//   - B4 A report loads nothing: no script, font, style sheet or image from
//     outside the file. Charts are SVG written here.
//   - B5 Speed targets are never asserted by tests: machines are shared.
//
// # Phases of a sequence
//
// The coordinator records each step of A.7 as a phase span; the sequence
// workload groups them: prepare (EndPrepareSnapshots, source flags,
// PrepareForSnapshot), freeze (Freeze, PreCommitSnapshots), hold
// (FlushAndHold, ReleaseWrites), commit (CommitSnapshots), thaw (clearing
// the flags, PostCommitSnapshots, Thaw), post-snapshot (GetTargetLuns,
// auto-import, PreFinalCommitSnapshots, PostSnapshot,
// PostFinalCommitSnapshots), and other. The windows are reported apart,
// since they overlap the phases: the hold window (flush to release) and
// each writer's freeze window (Freeze to the end of PostCommitSnapshots,
// B.3).
//
// # Caveats
//
// Client and server share the machine's cores, so NBD figures are those of
// both. The coordinator records a writer's freeze window in the timeline
// only when it fails or expires; for a window that closed normally the
// bench derives it from the writer's Freeze event and PostCommitSnapshots
// (marked in the span's Detail).
package bench
