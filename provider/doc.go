// Package provider defines the VSS provider interfaces (vsprov.h, in Go
// idiom: ctx first, errors are vss.HRESULT values) and implements the
// emulated array provider that drives a lun.Array according to a firmware
// profile.
//
// vss-spec.md section C is the contract; B.7-B.9 are the abort rules. The
// interfaces mirror Windows: HardwareProvider is
// IVssHardwareSnapshotProvider, HardwareProviderEx its Ex methods (an
// optional capability found by type assertion), SnapshotSetCreator is
// IVssProviderCreateSnapshotSet, and Notifications is
// IVssProviderNotifications.
//
// # The array provider
//
// ArrayProvider (NewArray) keeps one state machine per snapshot set on
// vss.SnapshotState, with one transition table (state.go): method × state →
// the state while the call runs (VSS_SS_PROCESSING_*) and the state after
// it succeeds. A call the table has no row for answers VSS_E_BAD_STATE; a
// failed call leaves the set in its processing state, from which only
// AbortSnapshots leads on. GetTargetLuns is in the table too (legal once the
// set is post-committed); the methods that take no set are not.
//
// BeginPrepareSnapshot checks its arguments, registers the volume's LUNs
// and returns; the set's preparer goroutine then prepares each LUN
// (lun.Array.PrepareSnapshot reserves the name, the identity and the
// source's snapshot count, after the profile's per-LUN preparation latency
// and the capacity and snapshot-limit checks). A LUN shared by two volumes
// of the set is snapshotted once. EndPrepareSnapshots is the rendezvous: it
// waits for the preparer and reports its first failure. The set's LUNs form
// one lun.SnapshotGroup, a consistency group: CommitSnapshots is its
// commit, one atomic swap for the whole set (cow.Group) and a few stores
// per LUN, every image of one instant, all or none.
//
// Every method runs the profile's behaviour around its real work: first the
// latency (a sleep that honours ctx and the set's abort), then the failures
// (the first that fires is returned, and the work is skipped), then the
// work. Inside CommitSnapshots the latency is the commit block, and comes
// before the pointer swaps: the array takes the snapshot when its firmware
// is done, so a block past the 10 s flush & hold window shows what a late
// snapshot captures. Alternatives rejected: a shared lun.Injector per method
// (its distributions draw from the global generator, so runs could not be
// replayed), and blocking after the swaps (a slow array would then look
// correct in every case).
//
// Locks: ArrayProvider.mu guards the sets, their states and the registry of
// snapshot LUNs; snapshotSet.work serialises a set's LUN work (preparing,
// committing, removing), since lun.SnapshotGroup is not safe for
// concurrent use. The two are never held together. A set's context ends on
// abort or discard and wakes every sleep of the set at once.
//
// # Firmware profiles
//
// A profile is YAML; every key is optional and keys left out keep
// DefaultProfile's values. Durations are Go duration strings.
//
//	name: slow-commit
//	seed: 42                     # every random draw derives from it
//	capabilities:
//	  transportable: true        # contexts with TRANSPORTABLE; likewise
//	  differential: true         # DIFFERENTIAL and PLEX
//	  plex: false
//	  max-snapshots-per-lun: 64  # then VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED
//	  capacity: 8GiB             # then VSS_E_INSUFFICIENT_STORAGE
//	  snapshot-reserve: 64MiB    # free capacity each snapshot needs
//	  provider-capabilities: [COMPLIANT, LUN_RESYNC]
//	prepare:
//	  latency: {uniform: {min: 20ms, max: 50ms}}   # per LUN, after BeginPrepareSnapshot returns
//	commit:
//	  block: 9.9s                # or until-released (ReleaseCommit), or a distribution
//	methods:
//	  EndPrepareSnapshots:
//	    latency: 5ms             # or {fixed: 5ms}, {normal: {mean, stddev}}, {exponential: {mean}}
//	  PostCommitSnapshots:
//	    failure: {hresult: VSS_E_PROVIDER_VETO, nth: 3}
//	  PreCommitSnapshots:
//	    failure:                 # a list: the first that fires wins
//	      - {hresult: E_OUTOFMEMORY, probability: 0.05, seed: 7}
//	      - {hresult: 0x80004005, always: true}
//	cache: write-back            # the firmware's write cache: a mode, or
//	cache: {mode: ignore-flush, size: 64MiB, crash-points: 64}
//
// The cache (CacheBehavior) is the write cache of the array's firmware:
// none (the default), write-through, write-back, write-back-battery, or
// the defects ignore-flush, ignore-fua and reorder. LUNs created on the
// array without a cache mode of their own inherit it, as do the snapshot
// LUNs this provider makes read-write; size bounds what it holds (64 MiB
// when left out) and crash-points is how many FLUSHes and marks each
// LUN keeps. In-memory arrays only: NewArray refuses it on a durable one.
//
// Method names are vss.ProviderMethod's; HRESULTs are names or 0x values
// that vss.ParseHRESULT accepts, any failure code, including codes the
// method may not return (the coordinator translates them, vss-spec.md F.5).
// Unknown keys, aliases, bad values and a second document are errors that
// name the file, line, column and key path (ProfileError).
//
// # Invariants
//
// Tests name the invariant they check.
//
//   - P1 One transition table decides every set-bound call; an illegal call
//     answers VSS_E_BAD_STATE and changes nothing.
//   - P2 At most one set is live (neither created nor aborted). A
//     BeginPrepareSnapshot with another set ID discards it completely, at
//     any point: no LUN, name, snapshot count or goroutine of it remains,
//     and later calls for it answer VSS_E_OBJECT_NOT_FOUND (B.8).
//   - P3 AbortSnapshots is honoured only once EndPrepareSnapshots has been
//     called. It stops preparation and every running call of the set at
//     once, and removes every snapshot LUN the set prepared or committed
//     (B.7).
//   - P4 CommitSnapshots is all or none: pointer swaps only, with no I/O,
//     no logging and no allocation that grows with data; the snapshots are
//     complete when it returns; if one LUN fails, the LUNs already
//     committed are removed (B.9).
//   - P5 A snapshot LUN's information is fixed when it is prepared:
//     GetTargetLuns and FillInLunInfo return the same, every snapshot LUN
//     has its own NAA designator, and neither call reads a LUN (F.6).
//   - P6 Every goroutine is owned, by a set (its preparer) or by the
//     provider (ResyncLuns), and stops on abort, discard or Close.
//   - P7 Failures are logged (vetoes as warnings), but never inside the
//     freeze window (PreCommit, Commit, PostCommit): those wait for the
//     next call outside it.
//   - P8 Injected behaviour replays: every random draw comes from a
//     generator seeded by the profile.
package provider
