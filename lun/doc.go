// Package lun implements software LUNs and the Array that holds them.
//
// A LUN has a SCSI identity (inquiry strings and a unique page-83 NAA
// designator), a size, a logical block size, a read-only flag, and its
// data: a cow volume (an original or a clone) or a cow image (a snapshot
// LUN). Every operation passes, in order:
//
//	I/O gate (flush & hold) → fault injection → statistics → cow
//
// # The I/O gate
//
// Gate is VSS kernel support's flush & hold (vss-spec.md B.2). Hold stops
// admitting I/O, which queues and is never failed; waits for in-flight I/O
// to drain; and returns. Release admits the queue. A hold has a deadline
// (DefaultHoldDeadline, 10 s): at expiry the gate releases itself and the
// hold reports ErrHoldTimeout, so the coordinator can fail the set with
// VSS_E_HOLD_WRITES_TIMEOUT. Admission is two atomic adds on sharded
// counters (cow/inflight) while the gate is open.
//
// # Fault injection
//
// SetFaults installs an Injector (Fail, Delay and their combinators) that
// every operation runs before it reaches cow; ReadHoles gives a reader
// that answers zeros from Extents (an NBD server's hole chunks) the same
// read path. Clearing the faults ends the injections running then: a
// delay returns at once, and its operation goes on as if never faulted.
//
// # Snapshots
//
// A SnapshotGroup is a consistency group: SnapshotGroup.Prepare does, per
// source, everything that can fail or allocate (name, identity, the per-LUN
// snapshot limit, cow's epochs and image), and SnapshotGroup.CommitAt then
// commits every LUN of the group at one instant with a single cow.Group
// commit, all or none (vss-spec.md B.9). A provider makes one group per
// snapshot set. Array.Snapshot takes one LUN's snapshot at once, even while
// the LUN is in a group being prepared. Snapshot LUNs are read-only and
// masked until a provider unmasks them (LocateLuns).
//
// # Write caches and power cuts
//
// SetCache (or Options.Cache) makes a LUN emulate an array's write cache
// (cache.go): its durable point is a cow image taken in O(1) at each
// FLUSH the mode honours, and the writes acknowledged since are logged
// with their data, bounded by the cache size (past it the cache
// destages: the durable point moves to the present). PowerCut rebuilds
// the LUN from the durable point and the writes the mode keeps;
// PowerFault triggers one at the nth operation. A LUN may keep its
// newest N crash points (FLUSHes and Mark's marks), which
// ExposeCrashPoint clones; CacheUse reports the log's use against its
// bounds.
//
// # Invariants
//
//   - L1 Held I/O is delayed, never failed (it fails only if its own context
//     ends or the LUN is deleted).
//   - L2 When Hold returns, no I/O is in flight and none is admitted until
//     the hold is released or expires.
//   - L3 A hold never outlives its deadline.
//   - L4 Every LUN, snapshot LUNs included, has its own NAA designator.
//   - L5 A deleted LUN costs the array nothing: nothing the array keeps
//     holds it, so a schedule that takes and deletes snapshots runs in
//     constant memory.
package lun
