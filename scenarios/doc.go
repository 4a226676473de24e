// Package scenarios runs VSS scenarios written as data: a YAML file
// describes an array, providers with their firmware profiles, writers, a
// background load through NBD, the requesters' steps, and what must come
// out. The expected output is the behaviour itself, as in
// cockroachdb/datadriven: a result per step, writer states, the ordered
// trace of provider calls and writer events, data and timing. A reviewer
// reads what happens, not code. The library of scenarios is in library/,
// each file saying what it shows and which section of vss-spec.md it
// covers; TestLibrary runs them all.
//
// Load (or Parse) checks a file and returns a *Scenario; Run runs one and
// returns a *Result: pass or fail, every mismatch (the first explained
// against the trace around it), the trace, the measurements and the checks.
// "shadowbench scenario run FILE..." is the command line.
//
// # The file
//
// One scenario per file. Every key below is optional unless marked; an
// unknown key, an alias or a second document is an error naming the file
// and the line, never ignored. Sizes are go-humanize sizes (64MiB),
// durations Go durations (9.9s), HRESULTs names or 0x values
// (vss.ParseHRESULT), contexts vss.ParseSnapshotContext strings
// ("VSS_CTX_APP_ROLLBACK|TRANSPORTABLE"). Volume names with a colon are
// quoted in block style ("D:") and may stay bare inside [...] and {...}.
//
//	name: NAME                    # default: the file's base name
//	description: ONE LINE
//	known-failure: "WHY"          # expected to fail: reported, does not fail a run
//	min-time-scale: 0.2           # the smallest scale whose margins hold
//	timeout: 10m                  # bounds the steps (scenario time)
//	needs: [nbdcopy]              # programs the file's commands run; see Real writers
//	service:                      # the coordinator's windows; defaults 10s, 60s, 120s, 60s, 60s
//	  {hold-window, freeze-window, prepare-window, event-window, provider-timeout}: DURATION
//	array:                        # required
//	  max-snapshots: N            # per LUN, the array's own limit
//	  capacity: SIZE              # thick LUNs' sizes add up within it
//	  luns:                       # required
//	    - {name: lun0, size: 64MiB, block-size: 512, read-only: false, thin: false,
//	       identity: {vendor, product, revision, serial, naa: 32 hex digits}}
//	    - {name: "v{i}", size: 1MiB, count: 65}    # v1 ... v65
//	    - {name: slow, size: 1MiB, faults: [{op: flush, delay: 11s, error: EIO, nth: 3, probability: 0.1, seed: 1}]}
//	    - {name: fs0, size: 64MiB, filesystem: ext4}   # made and mounted by the runner; see File systems
//	    - {name: wb, size: 1MiB, cache: write-back}  # an emulated write cache, for powercut steps
//	    - {name: own, size: 1MiB, cache: none}       # none: not the profile's cache
//	  volumes:                    # a LUN is also a volume of itself
//	    - {name: "D:", luns: [lun0, lun1]}
//	providers:                    # at least one
//	  - name: array               # required
//	    type: hardware            # or software
//	    priority: 0               # higher first, within a type
//	    luns: [lun0]              # LUN masking: the only LUNs it supports
//	    profile: {...}            # an inline firmware profile (provider.DecodeProfile), or
//	    profile: {cache: write-back}   # its write cache: the LUNs it presents that set none get it
//	    profile-file: PATH        # relative to the scenario file
//	writers:
//	  - name: sql                 # required
//	    level: BACK_END           # FRONT_END (default), BACK_END, SYSTEM
//	    freeze-timeout: 20s       # dwTimeoutFreeze; default the freeze window
//	    components: [{name: db, logical-path: P, volumes: ["D:"]}]   # default one, "data"
//	    on:                       # per event: coordinator.Action
//	      Freeze: {delay: 1s, result: ok|fail|veto|panic|hang,
//	               failure: HRESULT, application: HRESULT, message: TEXT, illegal: false}
//	  - name: hook                # a real writer, as the daemon's configuration has it:
//	    exec: {command: [ARGV...], commands: {Freeze: [ARGV...]}, timeout: 30s, dir: D, env: [K=V]}   # dir relative to the file
//	  - name: ext4                # or one that freezes a file system (FIFREEZE, FITHAW):
//	    fsfreeze: {mount-point: /mnt/data, max-frozen: 30s}   # or {lun: fs0}
//	load:                         # writes through NBD while the steps run
//	  - {lun: lun0, rate: 500, pattern: sequential|random, block-size: 4KiB,
//	     region: 4MiB, connections: 1, seed: 1, verify: true, quiesce-with: sql,
//	     point-in-time: commit|hold}   # how each snapshot is checked (S5)
//	steps: [...]                  # required; below
//	expect: {...}                 # below
//
// # Steps
//
// A step is a mapping with one action key. requester (default r1) names
// the requester a step speaks for; it is created on first use.
// expect is what the step ends with, S_OK unless given: one HRESULT, a
// list of them ([VSS_E_BAD_STATE, VSS_E_OBJECT_NOT_FOUND]), failed (any
// failure code), succeeded (any success code) or any. A step that ends
// otherwise is a mismatch, and the steps stop there. Every step takes
// repeat: N (up to 256), which runs it N times; {i} in any of its values
// is the iteration from 1, so a repeated step saves under a name with {i}
// (save: "s{i}" keeps s1 ... sN).
//
//	steps:
//	  - backup: {volumes: ["D:"], context: VSS_CTX_BACKUP, backup-type: FULL, provider: NAME,
//	             keep-open: false, retry-in-progress: false, crash-after: CALL}
//	    writers: {sql: STABLE, exch: {state: FAILED_AT_FREEZE, failure: HRESULT, application: HRESULT, message: TEXT}}
//	    save: NAME                  # the set's ID, from StartSnapshotSet on
//	    expect: failed              # or an HRESULT, a list of them, succeeded, any
//	    repeat: 50                  # on every step
//	  - call: AddToSnapshotSet      # any IVssBackupComponents call, by its Windows name
//	    args: {volume: "D:", provider: NAME}
//	    save: NAME                  # StartSnapshotSet, AddToSnapshotSet, ExposeSnapshot, SaveDocument
//	    repeat: 64                  # {i} in the arguments counts from 1
//	  - call: DoSnapshotSet
//	    async: ds                   # do not wait; wait, cancel and query-status take the name
//	  - wait: ds                    # Async.Wait; expect is the set's result
//	  - cancel: ds                  # Async.Cancel
//	  - query-status: ds            # Async.QueryStatus; expect the status, result the set's result
//	  - parallel: [STEP, STEP]      # run at once, each with its own expectations
//	  - wait-for: provider:CommitSnapshots    # until such a call begins
//	  - release-commit: array       # the "snapshot taken" signal of an until-released profile
//	  - sleep: 2s
//	  - check: {snapshots: N, snapshot-luns: N, unique-naa: true}
//	  - check: {store-bytes: {mark: NAME}}          # the array's data memory, kept under NAME
//	  - check: {store-bytes: {max: NAME, min: 4MiB}} # bounded by a mark or a size (C5)
//	  - check: {goroutines: stable}  # the run's goroutines no more than when the step before began
//	  - check: {lun-info: "D:"}      # or all, or {snapshot: "D:", vendor, product, revision, serial, bus-type, version}; requester: NAME
//	  - write: {lun: lun0, offset: 0, data: TEXT}    # or snapshot: "D:", or export: NAME; fails: true; fua: false
//	  - powercut: {lun: wb, keep: none, seed: 1, tear: false}  # keep: random, none, all or worst
//	  - powercut: {lun: wb, keep: none, after-writes: 3}  # armed: right after the 3rd write from here lands
//	  - powercut: {lun: wb, within: 2s, seed: 7}          # armed: at a random instant of the window
//	  - read: {snapshot: "D:", offset: 0, data: TEXT}
//	  - filesystem: {lun: fs0, path: dir/file, write: TEXT}      # written and fsynced
//	  - filesystem: {snapshot: "D:", path: dir/file, read: TEXT} # or absent: true; source-lun: NAME
//
// The calls and their args: InitializeForBackup {document}, SetContext
// {context}, SetBackupState {select-components, bootable-state,
// backup-type, partial-file-support}, GatherWriterMetadata,
// GatherWriterStatus (writers:), AddComponent {writer, component},
// StartSnapshotSet, AddToSnapshotSet {volume, provider}, PrepareForBackup,
// DoSnapshotSet, GetSnapshotProperties {snapshot} (properties: {imported,
// target-luns, attributes}), Query (count:), SetBackupSucceeded {writer,
// component, succeeded}, BackupComplete, AbortBackup, DeleteSnapshots
// {snapshot or set, force} (count:), BreakSnapshotSet {set},
// BreakSnapshotSetEx {set, flags}, ImportSnapshots, ExposeSnapshot
// {snapshot}, RevertToSnapshot {snapshot, force}, SaveDocument, Close and
// CreateVssBackupComponents. A snapshot argument is a volume (the
// requester's snapshot of it in its last set) or a saved name; a set
// argument a saved name or "last" (the default).
//
// backup is the standard backup in one step, in qemu's and vshadow's
// order: InitializeForBackup, SetContext, GatherWriterMetadata,
// SetBackupState, AddComponent for every component, StartSnapshotSet,
// AddToSnapshotSet per volume, PrepareForBackup, GatherWriterStatus,
// DoSnapshotSet and its Wait, GatherWriterStatus, then SetBackupSucceeded,
// BackupComplete and GatherWriterStatus; after a failure past
// PrepareForBackup (before BackupComplete), AbortBackup (A.12); Close
// unless keep-open. Writerless contexts skip the writer calls (A.13). Its
// result is the first failure; writers: checks the last GatherWriterStatus.
// crash-after stops right after the named call and closes without
// AbortBackup, as the system releases a requester that died.
//
// The checks: store-bytes reads the array's data memory (cow.StoreStats
// DataBytes) and keeps it under a mark or bounds it, so that a file shows
// that deleting a snapshot gave every block back (C5). goroutines: stable
// counts the goroutines of the run (those carrying its pprof label: the
// service's, the providers', the NBD server's, the load's, whatever else
// runs in the process) and wants no more, within 2 s, than when the step
// before began: an abort left nothing running. NBD connections a step
// opens (read, write) count too. lun-info asks each target LUN's provider
// for FillInLunInfo and compares its VDS_LUN_INFORMATION with the one
// GetTargetLuns gave, field by field (vendor, product, revision, serial,
// bus type, version, disk signature, page-83 identifiers), and with the
// fields given.
//
// # Real writers and file systems
//
// exec and fsfreeze writers are coordinator.ExecWriter and
// coordinator.FsfreezeWriter, as "shadowbench serve" configures them: an
// exec command answers with its exit status or a last line "ok", "veto
// HRESULT" or "fail HRESULT"; its timeout is real time, since a command's
// run does not scale. Its environment has SHADOWBENCH_NBD_SOCKET, the
// unix socket the runner serves the LUNs on, so that the command writes
// to them as an application does (nbdcopy - "nbd+unix:///db?socket=
// $SHADOWBENCH_NBD_SOCKET"). A program the file lists under needs that is
// not in PATH skips the scenario, and under CI=true fails it.
//
// A LUN with cache: MODE (write-through, write-back, write-back-battery,
// or the defects ignore-flush, ignore-fua, reorder) emulates an array's
// write cache, and a powercut step cuts its power: it comes back at its
// last FLUSH the mode honours, plus the FUA writes and those of the
// others keep chooses (lun.LUN.PowerCut). Writes are sent with FUA unless
// fua: false. A LUN with no cache key takes the cache of the first
// provider presenting it whose profile sets one (provider.CacheBehavior);
// cache: none opts out. A powercut step with after-writes: N or within:
// DURATION arms the cut instead (powercut.go): right after the Nth write
// to the LUN from the step on lands (nothing admitted after it lands
// before the cut), or at a random instant of the window drawn from seed
// (lun.PowerCutInstant; scenario time). Every step ends by waiting for a
// cut under way, so the step after it sees what the cut left; a cut that
// never fired is disarmed at the end. The runner's NBD connections are
// kept across a cut. Power cuts are emulated on in-memory arrays: on a
// durable run (Options.DataDir) such a scenario is skipped, even under
// CI=true.
//
// A LUN with filesystem: ext4 is made ext4 through
// nbdfuse (the LUN's export as a file), and mounted through a loop device,
// before the steps, as a Linux client of the array would; fsfreeze: {lun:
// NAME} freezes that mount. A filesystem step writes a file there, or
// reads one on a snapshot's file system, exposed read-only through
// nbdfuse and mounted without replaying its journal for the step. File
// systems need nbdfuse, fuse3, e2fsprogs, /dev/fuse and root: elsewhere the
// scenario is skipped (StatusSkipped, saying what is missing), and under
// CI=true it fails instead, as CI has them.
//
// # The trace
//
// Each line is "kind:name[:actor] -> result [detail]", in the order the
// steps began, an outer span before what it contains:
//
//	requester:StartSnapshotSet:r1 -> S_OK
//	provider:BeginPrepareSnapshot:array -> S_OK [set={2F0C...}; snapshot={9A1B...}]
//	provider:CommitSnapshots:array -> VSS_E_UNEXPECTED_PROVIDER_ERROR [provider returned E_FAIL; set={2F0C...}]
//	writer:Freeze:sql -> true [SetWriterFailure VSS_E_WRITERERROR_RETRYABLE]
//	writer:BackupShutdown:sql -> true [set={2F0C...}]
//	phase:CommitSnapshots -> S_OK
//	window:hold -> VSS_E_HOLD_WRITES_TIMEOUT [writes held past 10s]
//
// Writer events come to true, false, timeout or panic. AreLunsSupported
// and FillInLunInfo carry their BOOL ([supported=false]), once. The lines
// where VSS passes a set or snapshot ID carry it (set=, snapshot=): the
// provider calls that take a SnapshotSetId and BeginPrepareSnapshot's
// snapshot ID, and OnBackupShutdown(setId). Durations in
// details read in scenario time. One event delivered to several writers
// at once is sorted by writer name, so a trace is the same from run to run.
//
// The lines come from the coordinator's timelines (every span of every
// set), merged with what the runner sees itself: its requester calls, and
// the provider calls and writer events that pass through its wrappers. A
// wrapped call is matched to the timeline span of the same method and
// actor that contains its start; calls that no timeline holds (Identify,
// the provider calls of DeleteSnapshots and ImportSnapshots) come from the
// wrappers alone, their codes translated as the coordinator translates
// them. Building the trace from the wrappers alone was rejected: the
// timelines hold the phases, the windows and the coordinator's own view
// of each result (a timeout, a translation), which is what is specified.
//
// # Expectations
//
//	expect:
//	  trace: {kinds: [provider, writer], lines: [LINE...]}   # the whole trace of those kinds
//	  subsequence: [LINE...]      # these lines in this order, others between
//	  absent: [LINE...]           # no such line
//	  count: {LINE: N}            # exactly N such lines
//	  event-log: [12298, "provider call failed"]              # event IDs or message texts
//	  event-log: [{id: 12293, returned: E_FAIL, method: PreCommitSnapshots, level: error, set: "${s}"}]
//	  no-event-log: [12293, {id: 12293, method: AbortSnapshots}]
//	  timing:
//	    - "CommitSnapshots < 1s"  # a bare name is a phase; soft: reported only
//	    - {span: "provider:CommitSnapshots", max: 50ms, min: 0, hard: true, unscaled: true}
//
// An expected line leaves out what it does not care about: no actor
// matches any, no result any result, and a [detail] must be contained in
// the line's; a detail may come without a result
// ("provider:AbortSnapshots [set=${first}]"). ${name} in a detail stands
// for what save kept under name: a set's or a snapshot's ID as the lines
// print it, or an export's name. Lines after the last step (the runner
// closing what the steps left open) are shown but not matched. A
// subsequence line found only before the line the previous one matched is
// reported as such, both lines named with the time they began.
//
// An event-log selector is an event ID, a text the message contains, or a
// mapping of id, message (contained), level and the record's fields
// (returned, method, provider, set, ...; an HRESULT matches by name, and
// ${name} works as in lines), all of which must hold. The report prints
// each record with its fields; a selector that matches nothing names what
// it compared and the record that came closest.
//
// # Time
//
// Files keep real numbers. Options.TimeScale (--time-scale) multiplies
// every duration the runner hands on: the coordinator's five windows, LUN fault delays
// (defaults filled in first, since the coordinator would read 0 as its
// unscaled default), the profiles' preparation latency, commit block and
// method latencies, the writers' delays and freeze timeouts, sleeps,
// wait-for timeouts, the retry interval of retry-in-progress and timing
// bounds (except unscaled ones, for real work like pointer swaps). Load
// rates are real: the load measures the real data path. At 0.01 a 10 s
// hold window lasts 100 ms; a 9.9 s commit then leaves 1 ms of margin,
// which is why such a file sets min-time-scale. Reports show measured
// times and, in parentheses, scenario time (measured ÷ scale); real
// overheads do not scale, so small scenario times are inflated.
//
// # Checks
//
// Every run checks, besides the file's expectations:
//
//   - S1 (B.1) No two snapshot-set creations overlap.
//   - S2 (D) Thaw or Abort follows every Freeze a writer got; (B.10) no
//     writer gets Abort after PostSnapshot.
//   - S3 (B.2, C) Nothing is logged while writes are held.
//   - S4 (B.2) With a load, no write failed, and once the load stopped
//     every block holds its last acknowledged write: none was lost.
//   - S5 (cow C4) Each snapshot of a loaded LUN, read as soon as its set is
//     created, holds every write acknowledged before CommitSnapshots began
//     and none issued after it returned; when the load quiesces with a
//     writer, it equals what the LUN held when that writer froze. With
//     point-in-time: hold, stricter: every write acknowledged before the
//     release and none issued after the hold began (every gate closed),
//     and no write acknowledged between the two, which a closed gate let
//     through.
//   - S6 (F.6) GetTargetLuns and FillInLunInfo read no LUN: the reads of the
//     LUNs they describe do not grow while they run.
//
// # The runner's own rules
//
//   - R1 Run never panics on a scenario's account: a coordinator panic in a
//     requester call is contained and reported. (A panic on one of the
//     coordinator's own goroutines could not be contained; none is known.)
//   - R2 Run stops everything it started (array, service, providers, NBD
//     server, load, clients) before it returns; the tests check for leaked
//     goroutines.
//   - R3 A Scenario is not modified by Run: profiles and scripts are
//     scaled into copies, saved names resolved into copies of the patterns.
//   - R4 Run leaves no mount and no nbdfuse process behind: the file
//     systems it mounted are unmounted before the NBD server stops.
package scenarios
