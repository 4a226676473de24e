package daemon

import (
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// The API's JSON types. Enumerations travel by their Windows names
// ("VSS_CTX_BACKUP", "VSS_WS_FAILED_AT_FREEZE"), durations as Go duration
// strings ("1.5ms"), sizes as numbers of bytes.

// Status is GET /v1/status.
type Status struct {
	Version   string              `json:"version"`
	Started   time.Time           `json:"started"`
	Uptime    Duration            `json:"uptime_ns"`
	API       []string            `json:"api"`
	NBD       []string            `json:"nbd"`
	LUNs      LUNCounts           `json:"luns"`
	Store     StoreInfo           `json:"store"`
	Volumes   map[string][]string `json:"volumes"`
	Providers []ProviderInfo      `json:"providers"`
	Writers   []WriterInfo        `json:"writers"`
	// Sets counts the snapshot sets by outcome: created, failed,
	// cancelled, abandoned, creating.
	Sets map[string]int `json:"sets"`
	// Held counts the auto-release sets whose requester the daemon holds
	// open, so that their snapshots live.
	Held int `json:"held"`
	// Caches are the LUNs with an emulated write cache, by name, and the
	// use of its bounds.
	Caches map[string]CacheUseInfo `json:"caches,omitempty"`
}

// LUNCounts counts the array's LUNs by kind.
type LUNCounts struct {
	Total     int `json:"total"`
	Originals int `json:"originals"`
	Snapshots int `json:"snapshots"`
	Clones    int `json:"clones"`
}

// StoreInfo is the array's accounting: the data it holds, and what its
// LUNs provision (the sum of their sizes; snapshot LUNs not counted)
// against its capacity.
type StoreInfo struct {
	DataBytes     int64 `json:"data_bytes"`
	MetaBytes     int64 `json:"meta_bytes"`
	CapacityBytes int64 `json:"capacity_bytes"`
	// ThickBytes is the sum of the thick LUNs' sizes, which a LUN's
	// creation keeps within the capacity; ThinBytes that of thin LUNs and
	// clones.
	ThickBytes int64 `json:"thick_bytes"`
	ThinBytes  int64 `json:"thin_bytes"`
	// Overcommit is the provisioned bytes (thick and thin) per byte of
	// capacity: past 1 the LUNs may write more than the array holds. 0
	// without a capacity.
	Overcommit float64 `json:"overcommit"`
}

// ProviderInfo describes a registered provider.
type ProviderInfo struct {
	ID       vss.ID `json:"id"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	Priority int    `json:"priority"`
	Profile  string `json:"profile"`
	// Remote is the address of a provider reached over the provider
	// protocol; it has no profile and no commit figures here.
	Remote string `json:"remote,omitempty"`
	// Listen is where an array provider is served over the protocol.
	Listen string `json:"listen,omitempty"`
	// Commits, CommitP50 and CommitP99 summarise the provider's commits:
	// the pointer swaps of CommitSnapshots, without the profile's block.
	Commits   int64    `json:"commits"`
	CommitP50 Duration `json:"commit_p50_ns"`
	CommitP99 Duration `json:"commit_p99_ns"`
}

// LUNInfo describes a LUN of the array.
type LUNInfo struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // original, snapshot, clone
	Size      Size   `json:"size"`
	BlockSize int    `json:"block_size"`
	ReadOnly  bool   `json:"read_only"`
	Masked    bool   `json:"masked"`
	// Thin is set for a LUN that may overcommit the array's capacity: one
	// created thin, and every snapshot LUN and clone.
	Thin    bool      `json:"thin"`
	Cache   string    `json:"cache,omitempty"` // the emulated write cache's mode
	Parent  string    `json:"parent,omitempty"`
	Created time.Time `json:"created"`
	Serial  string    `json:"serial"`
	NAA     string    `json:"naa"`
	// Exports are the NBD URLs of the LUN; none while it is masked.
	Exports []string      `json:"exports,omitempty"`
	Faults  []FaultRule   `json:"faults,omitempty"`
	Stats   []OpStatsInfo `json:"stats,omitempty"`
	// CacheUse is the use of the emulated cache's bounds, for a LUN that
	// has one.
	CacheUse *CacheUseInfo `json:"cache_use,omitempty"`
	// LastPowerCut is the LUN's last power cut, by lun powercut or a
	// power-cut fault rule, since the daemon started.
	LastPowerCut *PowerCutResult `json:"last_powercut,omitempty"`
}

// CacheUseInfo is how much of its bounds a LUN's emulated cache holds:
// the writes (trims and zeroes included) logged since its last durable
// point and their bytes against the cache size, past which it destages
// them all, and the crash points kept against their bound, past which the
// oldest is dropped.
type CacheUseInfo struct {
	Mode        string `json:"mode"`
	Pending     int    `json:"pending_writes"`
	Bytes       int64  `json:"bytes"`
	MaxBytes    int64  `json:"max_bytes"`
	CrashPoints int    `json:"crash_points"`
	MaxPoints   int    `json:"max_crash_points"`
}

// PowerCutRequest is POST /v1/luns/{name}/powercut: what the cut keeps of
// the writes it may lose (random, none, all, worst; random when empty),
// whether it tears writes at sector boundaries, and the seed of its
// choices (drawn when 0, and reported).
type PowerCutRequest struct {
	Keep string `json:"keep,omitempty"`
	Tear bool   `json:"tear,omitempty"`
	Seed Seed   `json:"seed,omitempty"`
}

// PowerCutResult is what a power cut left.
type PowerCutResult struct {
	LUN   string `json:"lun"`
	Cache string `json:"cache"`
	Keep  string `json:"keep"`
	// Pending are the writes since the LUN's durable point; Kept of them
	// survived (Forced had to: FUA), Torn in part.
	Pending   int    `json:"pending"`
	Kept      int    `json:"kept"`
	Forced    int    `json:"forced"`
	Torn      int    `json:"torn"`
	LostBytes int64  `json:"lost_bytes"`
	Seed      Seed   `json:"seed"`
	Dropped   int    `json:"connections_dropped"`
	Summary   string `json:"summary"`
	// At is when the cut happened; Trigger the fault rule that fired it,
	// "" for lun powercut.
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger,omitempty"`
}

// CrashPointInfo is a crash point of a LUN (lun crashpoints): a FLUSH or
// a mark, and the writes since the point before.
type CrashPointInfo struct {
	ID     int       `json:"id"`
	Kind   string    `json:"kind"` // flush or mark
	Label  string    `json:"label,omitempty"`
	At     time.Time `json:"at"`
	Writes int       `json:"writes"`
}

// MarkRequest is POST /v1/luns/{name}/marks.
type MarkRequest struct {
	Label string `json:"label"`
}

// ExposePointRequest is POST /v1/luns/{name}/crashpoints/{id}/expose: the
// name of the LUN to make (NAME.at-ID when empty), and whether it is
// writable (a clone a file system can replay its journal on).
type ExposePointRequest struct {
	Name     string `json:"name,omitempty"`
	Writable bool   `json:"writable,omitempty"`
}

// OpStatsInfo summarises one kind of operation on a LUN.
type OpStatsInfo struct {
	Op     string   `json:"op"`
	Ops    int64    `json:"ops"`
	Bytes  int64    `json:"bytes"`
	Errors int64    `json:"errors"`
	P50    Duration `json:"p50_ns"`
	P99    Duration `json:"p99_ns"`
}

// CreateLUNRequest is POST /v1/luns.
type CreateLUNRequest = LUNConfig

// FaultRule is one fault injected into a LUN's operations: a latency, an
// error, or both (a slow failure), applied to the listed operations (all
// when none), to the Nth of them only, and with a probability.
type FaultRule struct {
	// Ops are read, write, flush, trim, zero and extents.
	Ops []string `json:"ops,omitempty"`
	// Latency is a distribution in ParseLatency's notation.
	Latency string `json:"latency,omitempty"`
	// Error is an errno name: EIO, ENOSPC, EPERM, EINVAL, ENOMEM.
	Error string `json:"error,omitempty"`
	// Probability applies the rule to each operation with this
	// probability, in (0, 1]; 0 means always.
	Probability float64 `json:"probability,omitempty"`
	// Nth applies the rule to the Nth matching operation only (from 1).
	Nth int64 `json:"nth,omitempty"`
	// Seed seeds the probability's draws; the daemon picks one when 0 and
	// reports it, so a run can be replayed. A power cut's instant (Within)
	// and choices (PowerCut.Keep random, Tear) draw from it too.
	Seed Seed `json:"seed,omitempty"`
	// PowerCut makes the rule a power cut, as lun powercut cuts, rather
	// than a latency or an error: once, at the Nth matching operation
	// (which lands; nothing admitted after it lands before the cut) or
	// at a random instant within Within; then the rule is cleared. Its
	// seed is the rule's.
	PowerCut *PowerCutRequest `json:"powercut,omitempty"`
	// Within arms a power cut at a random instant in [0, Within) from
	// the rule's arming, drawn from Seed; At is that instant (set by
	// the daemon).
	Within Duration  `json:"within_ns,omitempty"`
	At     time.Time `json:"at,omitzero"`

	id uint64 // the daemon's, to find an armed power cut's rule
}

// FaultList is a LUN's fault rules.
type FaultList struct {
	LUN   string      `json:"lun"`
	Rules []FaultRule `json:"rules"`
}

// CreateSetRequest is POST /v1/sets: one complete backup sequence.
type CreateSetRequest struct {
	// Targets are volumes or LUNs (a LUN is a volume of itself).
	Targets []string `json:"targets"`
	// Context is a VSS_CTX name, with or without the prefix, or in the
	// command line's spelling ("app-rollback"), optionally with
	// "|"-joined attributes; empty for VSS_CTX_BACKUP.
	Context string `json:"context,omitempty"`
	// BackupType is a VSS_BT name; empty for VSS_BT_FULL.
	BackupType string `json:"backup_type,omitempty"`
	// Provider names the provider to use; empty lets the service choose.
	Provider string `json:"provider,omitempty"`
	// Writers are ephemeral remote writers (registered with Ephemeral)
	// that take part in this set only.
	Writers []vss.ID `json:"writers,omitempty"`
	// Name names the set and its snapshots (as lvcreate -s -n does): 1-64
	// characters of [A-Za-z0-9._:-], unique among the sets the daemon
	// knows, and kept across restarts of a durable array. The CLI takes
	// it wherever it takes a set or snapshot ID.
	Name string `json:"name,omitempty"`
}

// SetReport is a snapshot set: how its creation went, its snapshots,
// the writers' status and the timeline.
type SetReport struct {
	ID       vss.ID    `json:"id"`
	Name     string    `json:"name,omitempty"`
	State    string    `json:"state"` // created, failed, cancelled, abandoned, creating
	Result   string    `json:"result"`
	Code     string    `json:"code"`
	Context  string    `json:"context,omitempty"`
	Targets  []string  `json:"targets,omitempty"`
	Started  time.Time `json:"started"`
	Duration Duration  `json:"duration_ns"`
	// Held is true while the daemon holds the requester of an
	// auto-release set open; deleting the set releases it.
	Held      bool                 `json:"held"`
	Snapshots []SnapshotInfo       `json:"snapshots"`
	Writers   []WriterStatusReport `json:"writers,omitempty"`
	Timeline  []SpanInfo           `json:"timeline,omitempty"`
}

// SetSummary is one line of GET /v1/sets.
type SetSummary struct {
	ID        vss.ID    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Context   string    `json:"context,omitempty"`
	State     string    `json:"state"`
	Result    string    `json:"result"`
	Started   time.Time `json:"started"`
	Snapshots int       `json:"snapshots"`
	Held      bool      `json:"held"`
}

// WriterStatusReport is a writer's status after a set, as GatherWriterStatus
// reported it.
type WriterStatusReport struct {
	Name        string `json:"name"`
	InstanceID  vss.ID `json:"instance_id"`
	State       string `json:"state"`
	Failure     string `json:"failure,omitempty"`
	Application string `json:"application,omitempty"`
	Message     string `json:"message,omitempty"`
}

// SpanInfo is one step of a set's timeline.
type SpanInfo struct {
	Offset   Duration `json:"offset_ns"`
	Duration Duration `json:"duration_ns"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Actor    string   `json:"actor,omitempty"`
	Result   string   `json:"result"`
	Detail   string   `json:"detail,omitempty"`
}

// SetProgress is the snapshot set being created and what it waits on
// now: the phases, writer events, provider calls and windows begun and
// not yet ended (Duration is how long each has run).
type SetProgress struct {
	ID      vss.ID     `json:"id"`
	Elapsed Duration   `json:"elapsed_ns"`
	Running []SpanInfo `json:"running"`
}

// SnapshotInfo is a snapshot (one volume of a set).
type SnapshotInfo struct {
	ID    vss.ID `json:"id"`
	SetID vss.ID `json:"set_id"`
	// Name is the set's name, "" when it has none.
	Name       string    `json:"name,omitempty"`
	Volume     string    `json:"volume"`
	Context    string    `json:"context"`
	Attributes string    `json:"attributes"`
	Provider   string    `json:"provider"`
	Created    time.Time `json:"created"`
	State      string    `json:"state"`
	SourceLUNs []string  `json:"source_luns"`
	TargetLUNs []string  `json:"target_luns"`
	// Exports are the NBD URLs of the target LUNs that are exported.
	Exports  []string `json:"exports,omitempty"`
	Imported bool     `json:"imported"`
	Broken   bool     `json:"broken"`
	// Size is the volume's size, the sum of its target LUNs'.
	Size int64 `json:"size"`
	// UniqueBytes is the data the snapshot alone holds: what deleting it
	// frees (lvs's Data% of a thin snapshot, in bytes).
	UniqueBytes int64 `json:"unique_bytes"`
}

// SnapshotDiff is GET /v1/snapshots/{id}/diff: where a snapshot's LUNs
// differ from another snapshot's of the same volume, or from the volume's
// LUNs now.
type SnapshotDiff struct {
	Snapshot vss.ID    `json:"snapshot"`
	Against  *vss.ID   `json:"against,omitempty"` // nil: the volume's LUNs now
	LUNs     []LUNDiff `json:"luns"`
}

// LUNDiff is the changed extents of one LUN against another.
type LUNDiff struct {
	LUN     string       `json:"lun"`
	Against string       `json:"against"`
	Extents []DiffExtent `json:"extents"`
	Bytes   int64        `json:"bytes"`
}

// DiffExtent is a run of changed bytes.
type DiffExtent struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// DeleteResult is the answer of the DELETE routes: what was deleted, and
// for DELETE /v1/sets/{id} the set, which the listing no longer has.
type DeleteResult struct {
	Deleted []string `json:"deleted"`
	Set     *vss.ID  `json:"set,omitempty"`
}

// ExposeResult is POST /v1/snapshots/{id}/expose.
type ExposeResult struct {
	SnapshotID vss.ID   `json:"snapshot_id"`
	Export     string   `json:"export"`
	URLs       []string `json:"urls"`
}

// RevertResult is POST /v1/snapshots/{id}/revert.
type RevertResult struct {
	SnapshotID vss.ID   `json:"snapshot_id"`
	Volume     string   `json:"volume"`
	LUNs       []string `json:"luns"`
}

// BreakRequest is POST /v1/sets/{id}/break: BreakSnapshotSetEx's flags.
type BreakRequest struct {
	MakeReadWrite bool `json:"make_read_write,omitempty"`
	Mask          bool `json:"mask,omitempty"`
	// RevertIdentity is "all", "none" or empty.
	RevertIdentity string `json:"revert_identity,omitempty"`
}

// BreakResult is the answer of a break: the LUNs that are now ordinary.
type BreakResult struct {
	SetID vss.ID   `json:"set_id"`
	Flags string   `json:"flags"`
	LUNs  []string `json:"luns"`
}

// WriterRegistration is POST /v1/writers: a remote writer, whose events
// go to the client that registered it.
type WriterRegistration struct {
	Name string `json:"name"`
	// Level is front-end (the default), back-end or system.
	Level string `json:"level,omitempty"`
	// FreezeTimeout is dwTimeoutFreeze; 0 for the daemon's default.
	FreezeTimeout Duration `json:"freeze_timeout_ns,omitempty"`
	// Ephemeral writers are not subscribed until a CreateSetRequest
	// names them, and take part in that set only.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// WriterInfo describes a writer the daemon knows.
type WriterInfo struct {
	ID            vss.ID   `json:"id"`
	Name          string   `json:"name"`
	Kind          string   `json:"kind"` // scripted, exec, fsfreeze, remote
	Level         string   `json:"level"`
	FreezeTimeout Duration `json:"freeze_timeout_ns,omitempty"`
	// InstanceID is the writer's instance in the service while it is
	// subscribed (always, but for ephemeral writers between sets).
	InstanceID vss.ID `json:"instance_id"`
	Ephemeral  bool   `json:"ephemeral,omitempty"`
	// Connected says a remote writer's client polls or holds an event.
	Connected bool      `json:"connected,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
}

// WireEvent is a writer event handed to a remote writer's client.
type WireEvent struct {
	ID            string   `json:"id"`
	Kind          string   `json:"kind"` // Freeze, Thaw...
	SnapshotSetID vss.ID   `json:"snapshot_set_id"`
	Context       string   `json:"context"`
	BackupType    string   `json:"backup_type"`
	Volumes       []string `json:"volumes"`
	Components    []string `json:"components"`
	// Timeout is what is left of the event's window when it is handed
	// over; the client's answer must arrive within it.
	Timeout Duration `json:"timeout_ns"`
}

// EventAnswer is a remote writer's answer to one event: the callback's
// result and, for a failure or a veto, what SetWriterFailureEx records.
type EventAnswer struct {
	OK          bool   `json:"ok"`
	Failure     string `json:"failure,omitempty"`
	Application string `json:"application,omitempty"`
	Message     string `json:"message,omitempty"`
}
