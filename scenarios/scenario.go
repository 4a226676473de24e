package scenarios

import (
	"fmt"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// Scenario is one scenario file, decoded and checked: an array, providers,
// writers, a background load, the requesters' steps and what must come out.
// Load and Parse build it; Run runs it. It is plain data and is not modified
// by Run, so one Scenario may be run many times, also concurrently.
type Scenario struct {
	// File is the path the scenario was loaded from, as given.
	File string
	// Name is the scenario's name: its name key, or the file's base name
	// without extension.
	Name string
	// Description is the description key, one line.
	Description string
	// Summary is the comment the file starts with: what the scenario shows
	// and which section of vss-spec.md it covers.
	Summary string
	// KnownFailure, when not empty, says why the scenario is expected to
	// fail: Run still runs and reports it, and marks the result
	// known-failure instead of fail (or fixed, when it passes).
	KnownFailure string
	// MinTimeScale is the smallest time scale at which the scenario's
	// margins hold (a 9.9 s commit inside a 10 s window leaves 1 %); Run
	// raises a smaller scale to it.
	MinTimeScale float64

	timeout time.Duration // scenario time; 0 for defaultTimeout
	// needs are the programs the file's commands run (an exec writer's):
	// without one in PATH the scenario is skipped, as one needing file
	// systems is.
	needs     []string
	service   serviceSpec
	array     arraySpec
	providers []providerSpec
	writers   []writerSpec
	loads     []loadSpec
	steps     []*step
	expect    expectSpec
}

// defaultTimeout bounds a scenario's steps, in scenario time.
const defaultTimeout = 10 * time.Minute

// serviceSpec holds the coordinator's windows in scenario time; zero takes
// the coordinator's default.
type serviceSpec struct {
	hold, freeze, prepare, event, providerTimeout time.Duration
}

type arraySpec struct {
	maxSnapshots int
	capacity     int64
	luns         []lunSpec
	volumes      []volumeSpec
}

type lunSpec struct {
	line int
	name string
	opts lun.Options
	// cacheSet is a cache: key given (none included): the LUN does not
	// take its provider's firmware cache (provider.CacheBehavior).
	cacheSet   bool
	identity   *lun.Identity
	faults     []faultSpec
	filesystem *fsSpec
}

// faultSpec is a fault injected into one kind of LUN operation: a delay
// (scenario time), then an error, on every operation, the nth only, or
// with a probability.
type faultSpec struct {
	op          lun.Op
	delay       time.Duration
	err         error
	nth         int
	probability float64
	seed        uint64
}

type volumeSpec struct {
	line int
	name string
	luns []string
}

type providerSpec struct {
	line     int
	name     string
	typ      vss.ProviderType
	priority int
	// luns, when not nil, are the only LUNs the provider's array presents
	// (LUN masking): AreLunsSupported answers false for any other.
	luns    []string
	profile *provider.Profile
}

type writerSpec struct {
	line          int
	name          string
	level         vss.ApplicationLevel
	freezeTimeout time.Duration // scenario time; 0 for the service's
	script        coordinator.Script
	// exec, when set, makes the writer a real one that runs commands
	// (coordinator.ExecWriter); fsfreeze one that freezes a mounted file
	// system (coordinator.FsfreezeWriter). Neither takes on.
	exec     *coordinator.ExecOptions
	fsfreeze *fsfreezeSpec
}

// fsfreezeSpec is an fsfreeze writer: a mount point of the machine, or the
// file system the runner made on one of the array's LUNs.
type fsfreezeSpec struct {
	mountPoint string
	lun        string
	maxFrozen  time.Duration // real time: the watchdog guards the machine, not the scenario
}

// fsSpec is a file system the runner makes on a LUN before the steps, and
// mounts through nbdfuse and a loop device.
type fsSpec struct {
	typ string // ext4
}

type loadSpec struct {
	line        int
	lun         string
	rate        float64 // writes per second, real time
	random      bool
	blockSize   int // 0 for the LUN's
	region      int64
	connections int
	seed        uint64
	verify      bool
	quiesceWith string // a writer: the load pauses from its Freeze to its Thaw or Abort
	// atHold is point-in-time: hold, the stricter check of each snapshot:
	// exactly the writes acknowledged before the hold began.
	atHold bool
}

// stepKind is what a step does.
type stepKind uint8

const (
	stepCall stepKind = iota + 1
	stepBackup
	stepParallel
	stepWait
	stepCancel
	stepQueryStatus
	stepSleep
	stepWaitFor
	stepReleaseCommit
	stepCheck
	stepWrite
	stepRead
	stepFilesystem
	stepPowercut
)

var stepKindNames = map[stepKind]string{
	stepCall: "call", stepBackup: "backup", stepParallel: "parallel", stepWait: "wait", stepCancel: "cancel",
	stepQueryStatus: "query-status", stepSleep: "sleep", stepWaitFor: "wait-for", stepReleaseCommit: "release-commit",
	stepCheck: "check", stepWrite: "write", stepRead: "read", stepFilesystem: "filesystem", stepPowercut: "powercut",
}

func (k stepKind) String() string { return stepKindNames[k] }

// step is one step of the requesters' sequence.
type step struct {
	line      int
	kind      stepKind
	requester string
	// expect is the HRESULT the step must end with (S_OK unless given).
	expect outcome

	call     string   // stepCall
	args     callArgs // stepCall
	save     string   // stepCall, stepBackup: the name the returned ID or document is kept under
	async    string   // DoSnapshotSet: the Async's name; wait, cancel, query-status: the Async waited on
	writers  []writerExpect
	count    *int         // Query, DeleteSnapshots
	props    *propsExpect // GetSnapshotProperties
	result   *outcome     // query-status: the set's result
	backup   *backupSpec
	parallel []*step
	duration time.Duration // sleep; wait-for's timeout (scenario time)
	waitFor  *pattern
	provider string // release-commit
	check    *checkSpec
	data     *dataSpec
	fs       *fsStep
	cut      *cutSpec
}

// cutSpec is a powercut step: the LUN whose power is cut, and what the cut
// keeps of the writes it may lose.
type cutSpec struct {
	lun  string
	keep lun.Keep
	seed uint64
	tear bool
	// afterWrites arms the cut, from the step on, right after the Nth
	// write to the LUN lands; within at a random instant in [0, within)
	// of scenario time, drawn from seed (lun.PowerCutInstant). Both 0:
	// the step cuts at once.
	afterWrites int
	within      time.Duration
}

// fsStep is a file-system step: a file written, read or missing on the
// file system of a LUN, or of a snapshot (mounted read-only for the step).
type fsStep struct {
	lun       string
	snapshot  string
	sourceLUN string
	path      string
	write     []byte
	read      []byte
	absent    bool
}

// callArgs are the arguments of one requester call; which ones a call takes
// is in the calls table.
type callArgs struct {
	document   string
	context    vss.SnapshotContext
	selectComp bool
	bootable   bool
	partial    bool
	backupType vss.BackupType
	writer     string
	component  string
	volume     string
	provider   string
	set        string
	snapshot   string
	objectType vss.ObjectType
	force      bool
	succeeded  bool
	flags      vss.HardwareOptions
}

// backupSpec is the standard backup in one step.
type backupSpec struct {
	volumes    []string
	context    vss.SnapshotContext
	hasContext bool
	backupType vss.BackupType
	provider   string
	keepOpen   bool
	retry      bool
	crashAfter string
}

type writerExpect struct {
	line        int
	name        string
	state       *vss.WriterState
	failure     *vss.HRESULT
	application *vss.HRESULT
	message     string
}

type propsExpect struct {
	imported   *bool
	targetLUNs *int
	attrs      vss.VolSnapAttr
}

type checkSpec struct {
	snapshots    *int
	snapshotLUNs *int
	uniqueNAA    bool
	storeBytes   *storeBytesCheck
	goroutines   bool // stable: the run's goroutines back to their number when the step before began
	lunInfo      *lunInfoCheck
}

// storeBytesCheck is a check of the array's data memory (cow.StoreStats
// DataBytes): mark keeps the number under a name; max and min bound it by
// a size or a mark (C5: deleting returns every block).
type storeBytesCheck struct {
	mark             string
	max, min         int64
	maxMark, minMark string
	hasMax, hasMin   bool
}

// lunInfoCheck compares the VDS_LUN_INFORMATION of a snapshot's target
// LUNs as GetTargetLuns gave it with what FillInLunInfo answers for the
// same disk (C, F.6), and with the fields the file expects.
type lunInfoCheck struct {
	snapshot string // a volume, a saved snapshot, or "" for every snapshot the service holds
	want     map[string]string
}

type dataSpec struct {
	lun       string // a LUN of the array, or
	snapshot  string // the snapshot of a volume (or a saved snapshot ID), or
	export    string // an export saved from ExposeSnapshot
	sourceLUN string // which LUN of a spanned volume's snapshot
	offset    int64
	data      []byte
	fails     bool
	noFUA     bool // write: sent without FUA, so a power cut may lose it
}

// expectSpec is what the whole run must show.
type expectSpec struct {
	trace       *traceExpect
	subsequence []pattern
	absent      []pattern
	counts      []countExpect
	eventLog    []logExpect
	noEventLog  []logExpect
	timing      []timingSpec
}

// countExpect is how many trace lines a pattern must match.
type countExpect struct {
	pattern
	n int
}

// logExpect selects event-log records: by Windows event ID, by a text the
// message contains, by level, and by the record's fields (returned:
// E_FAIL, method: CommitSnapshots, set: ${first}), all of which must hold.
type logExpect struct {
	line   int
	id     int
	text   string
	level  string
	fields map[string]string // attribute -> value; an HRESULT matches by name
	refs   bool              // a field value holds ${name}
}

func (l logExpect) String() string {
	if len(l.fields) == 0 && l.level == "" {
		if l.id != 0 && l.text == "" {
			return fmt.Sprintf("event %d", l.id)
		}
		if l.id == 0 {
			return fmt.Sprintf("a record %q", l.text)
		}
	}
	return "a record with " + strings.Join(l.compared(), ", ")
}

// compared lists what the selector compares, "id=12293", "returned=E_FAIL",
// in a stable order: id, message, level, then the fields by name.
func (l logExpect) compared() []string {
	var out []string
	if l.id != 0 {
		out = append(out, fmt.Sprintf("id=%d", l.id))
	}
	if l.text != "" {
		out = append(out, fmt.Sprintf("message~%q", l.text))
	}
	if l.level != "" {
		out = append(out, "level="+l.level)
	}
	for _, k := range sortedKeys(l.fields) {
		out = append(out, k+"="+l.fields[k])
	}
	return out
}

type traceExpect struct {
	line  int
	kinds []string
	lines []pattern
}

type timingSpec struct {
	line     int
	text     string
	sel      pattern
	max, min time.Duration // scenario time unless unscaled
	hard     bool
	unscaled bool
}
