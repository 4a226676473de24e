// Package coordinator plays the Windows VSS service: it runs complete
// shadow-copy sequences against a lun.Array through registered providers,
// with writers, windows, aborts and a timeline of every step.
//
// # Design
//
// Service holds what Windows' VSS service holds: registered providers,
// subscribed writers, volumes (a name and the LUNs it spans), the snapshots
// it created, and the one snapshot set being created at a time.
// BackupComponents is IVssBackupComponents, one requester's conversation;
// its calls are checked against one transition table (allowed), so an
// out-of-order call answers VSS_E_BAD_STATE. DoSnapshotSet runs the sequence
// of vss-spec.md A.7 on a goroutine the service owns and returns an Async
// whose Wait, QueryStatus and Cancel stand for IVssAsync.
//
// Every writer event runs on a goroutine the service owns, within a window,
// with panics contained; every provider call carries a deadline and its
// result is translated (vss.ProviderMethod.Translate). Every step lands in
// the set's Timeline on the monotonic clock, and the event log is
// structured (log/slog) with Windows' event IDs where Windows has them.
//
// # Rules
//
// Tests are named after these.
//
//   - A.7 The sequence runs in exactly the order of A.7; EndPrepareSnapshots,
//     CommitSnapshots and the other set-wide calls reach each provider once
//     per set, however many of its volumes are in it.
//   - A.9 BackupComplete is refused after a failed DoSnapshotSet.
//   - A.10 Close always sends BackupShutdown, and deletes the snapshots of
//     auto-release contexts. Once closed, the object is released: every
//     call answers VSS_E_BAD_STATE, one answer whatever codes E lists for
//     the call on a live object (GetSnapshotProperties included). Close
//     itself may come again and does nothing, as Go's Close contract asks.
//   - A.13 Writerless contexts send no writer events and refuse
//     AddComponent, PrepareForBackup and BackupComplete.
//   - B.1 One set is created at a time, from StartSnapshotSet until
//     DoSnapshotSet completes or its requester closes; a second
//     StartSnapshotSet answers VSS_E_SNAPSHOT_SET_IN_PROGRESS.
//   - B.2 Flush & hold covers every LUN of the set at once, from the flush to
//     the release right after the last CommitSnapshots; past the window the
//     writes are released, the set fails with VSS_E_HOLD_WRITES_TIMEOUT,
//     providers get AbortSnapshots and event 12298 is logged. Held writes
//     are delayed, never failed. Nothing is logged while writes are held.
//   - B.3 A writer's freeze window runs from its OnFreeze to the return of
//     PostCommitSnapshots; at expiry the writer is FAILED_AT_FREEZE with
//     VSS_E_WRITERERROR_TIMEOUT and gets OnAbort, not OnThaw.
//   - B.7 AbortSnapshots goes only to providers that got EndPrepareSnapshots,
//     and at once when the set is cancelled while EndPrepareSnapshots runs.
//     The EndPrepareSnapshots call ends with the cancel: its E_ABORT is the
//     cancel VSS caused ("cancelled by the requester"), not a provider
//     error, so it is neither translated nor logged as event 12293.
//   - B.8 A set abandoned before DoSnapshotSet gets no AbortSnapshots.
//   - B.10 Writers get Abort when OnFreeze or OnThaw fails or times out, or
//     when the set fails after PrepareForSnapshot; never after PostSnapshot,
//     never for failures in PrepareForSnapshot or PostSnapshot.
//   - C A provider code the method may not return reaches the requester as
//     VSS_E_UNEXPECTED_PROVIDER_ERROR, with event 12293.
//   - D A veto (SetWriterFailure, then true) fails the writer's state but not
//     the set; a fatal failure (false) fails it too; a panicking writer is
//     contained as a failure, logged once (event 8229).
//   - D, failed states. A writer in a failed state (FAILED_AT_*, however it
//     got there: a veto, false, a panic, a timeout) gets no later event of
//     the sequence: no PrepareForSnapshot, Freeze, PostSnapshot or
//     BackupComplete. It gets Abort where B.10 sends one (its Freeze or
//     Thaw failed fatally, the set failed after it got PrepareForSnapshot,
//     the requester called AbortBackup) and BackupShutdown. The one
//     exception is Thaw to a writer that vetoed Freeze yet froze: D wants
//     every freeze ended by Thaw or Abort, and B.10 sends no Abort for a
//     veto. The alternative, an Abort for every failed state, was rejected:
//     B.10 says which failures raise Abort, and a veto is not one of them.
package coordinator
