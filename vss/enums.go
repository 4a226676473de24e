package vss

// SnapshotState is VSS_SNAPSHOT_STATE. Requesters only ever see VSS_SS_CREATED; the other
// states follow the provider calls whose names they carry (vss-spec.md E).
type SnapshotState uint32

// The VSS_SNAPSHOT_STATE values.
const (
	VSS_SS_UNKNOWN SnapshotState = iota
	VSS_SS_PREPARING
	VSS_SS_PROCESSING_PREPARE
	VSS_SS_PREPARED
	VSS_SS_PROCESSING_PRECOMMIT
	VSS_SS_PRECOMMITTED
	VSS_SS_PROCESSING_COMMIT
	VSS_SS_COMMITTED
	VSS_SS_PROCESSING_POSTCOMMIT
	VSS_SS_PROCESSING_PREFINALCOMMIT
	VSS_SS_PREFINALCOMMITTED
	VSS_SS_PROCESSING_POSTFINALCOMMIT
	VSS_SS_CREATED
	VSS_SS_ABORTED
	VSS_SS_DELETED
	VSS_SS_POSTCOMMITTED
	VSS_SS_COUNT
)

var snapshotStates = dense[SnapshotState]("VSS_SNAPSHOT_STATE", "VSS_SS_", 0,
	"UNKNOWN", "PREPARING", "PROCESSING_PREPARE", "PREPARED",
	"PROCESSING_PRECOMMIT", "PRECOMMITTED", "PROCESSING_COMMIT", "COMMITTED",
	"PROCESSING_POSTCOMMIT", "PROCESSING_PREFINALCOMMIT", "PREFINALCOMMITTED", "PROCESSING_POSTFINALCOMMIT",
	"CREATED", "ABORTED", "DELETED", "POSTCOMMITTED", "COUNT")

// String returns the Windows name, "VSS_SS_CREATED".
func (s SnapshotState) String() string { return snapshotStates.format(s) }

// ParseSnapshotState accepts "VSS_SS_CREATED" or "CREATED".
func ParseSnapshotState(s string) (SnapshotState, error) { return snapshotStates.parse(s) }

// WriterState is VSS_WRITER_STATE, what GetWriterStatus reports for a writer
// (vss-spec.md D). Success runs STABLE → WAITING_FOR_FREEZE → WAITING_FOR_THAW →
// WAITING_FOR_POST_SNAPSHOT → WAITING_FOR_BACKUP_COMPLETE → STABLE.
type WriterState uint32

// The VSS_WRITER_STATE values.
const (
	VSS_WS_UNKNOWN WriterState = iota
	VSS_WS_STABLE
	VSS_WS_WAITING_FOR_FREEZE
	VSS_WS_WAITING_FOR_THAW
	VSS_WS_WAITING_FOR_POST_SNAPSHOT
	VSS_WS_WAITING_FOR_BACKUP_COMPLETE
	VSS_WS_FAILED_AT_IDENTIFY
	VSS_WS_FAILED_AT_PREPARE_BACKUP
	VSS_WS_FAILED_AT_PREPARE_SNAPSHOT
	VSS_WS_FAILED_AT_FREEZE
	VSS_WS_FAILED_AT_THAW
	VSS_WS_FAILED_AT_POST_SNAPSHOT
	VSS_WS_FAILED_AT_BACKUP_COMPLETE
	VSS_WS_FAILED_AT_PRE_RESTORE
	VSS_WS_FAILED_AT_POST_RESTORE
	VSS_WS_FAILED_AT_BACKUPSHUTDOWN
	VSS_WS_COUNT
)

var writerStates = dense[WriterState]("VSS_WRITER_STATE", "VSS_WS_", 0,
	"UNKNOWN", "STABLE", "WAITING_FOR_FREEZE", "WAITING_FOR_THAW",
	"WAITING_FOR_POST_SNAPSHOT", "WAITING_FOR_BACKUP_COMPLETE",
	"FAILED_AT_IDENTIFY", "FAILED_AT_PREPARE_BACKUP", "FAILED_AT_PREPARE_SNAPSHOT",
	"FAILED_AT_FREEZE", "FAILED_AT_THAW", "FAILED_AT_POST_SNAPSHOT",
	"FAILED_AT_BACKUP_COMPLETE", "FAILED_AT_PRE_RESTORE", "FAILED_AT_POST_RESTORE",
	"FAILED_AT_BACKUPSHUTDOWN", "COUNT")

// String returns the Windows name, "VSS_WS_FAILED_AT_FREEZE".
func (s WriterState) String() string { return writerStates.format(s) }

// ParseWriterState accepts "VSS_WS_STABLE" or "STABLE".
func ParseWriterState(s string) (WriterState, error) { return writerStates.parse(s) }

// IsFailed reports whether s is one of the FAILED_AT_* states.
func (s WriterState) IsFailed() bool {
	return s >= VSS_WS_FAILED_AT_IDENTIFY && s <= VSS_WS_FAILED_AT_BACKUPSHUTDOWN
}

// WriterEvent is a VSS event delivered to writers, named as vss-spec.md A and D name it.
// Windows has no enumeration of these, so the names are the events' own. The zero value
// names no event.
type WriterEvent uint32

// The writer events, in the order of a backup and then a restore.
const (
	EventIdentify           WriterEvent = iota + 1 // OnIdentify
	EventPrepareForBackup                          // OnPrepareBackup
	EventPrepareForSnapshot                        // OnPrepareSnapshot
	EventFreeze                                    // OnFreeze
	EventThaw                                      // OnThaw
	EventPostSnapshot                              // OnPostSnapshot
	EventAbort                                     // OnAbort
	EventBackupComplete                            // OnBackupComplete
	EventBackupShutdown                            // OnBackupShutdown
	EventPreRestore                                // OnPreRestore
	EventPostRestore                               // OnPostRestore
)

var writerEvents = dense[WriterEvent]("WriterEvent", "", EventIdentify,
	"Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot",
	"Abort", "BackupComplete", "BackupShutdown", "PreRestore", "PostRestore")

// String returns the event's name, "Freeze".
func (e WriterEvent) String() string { return writerEvents.format(e) }

// ParseWriterEvent accepts an event name, "PrepareForSnapshot".
func ParseWriterEvent(s string) (WriterEvent, error) { return writerEvents.parse(s) }

// WriterEvents lists every writer event in order.
func WriterEvents() []WriterEvent { return writerEvents.values() }

// FailedState returns the FAILED_AT_* state a writer enters when its handler for e fails.
// Abort has none (vss-spec.md D), nor has a value that names no event; ok is false then.
func (e WriterEvent) FailedState() (s WriterState, ok bool) {
	switch e {
	case EventIdentify:
		return VSS_WS_FAILED_AT_IDENTIFY, true
	case EventPrepareForBackup:
		return VSS_WS_FAILED_AT_PREPARE_BACKUP, true
	case EventPrepareForSnapshot:
		return VSS_WS_FAILED_AT_PREPARE_SNAPSHOT, true
	case EventFreeze:
		return VSS_WS_FAILED_AT_FREEZE, true
	case EventThaw:
		return VSS_WS_FAILED_AT_THAW, true
	case EventPostSnapshot:
		return VSS_WS_FAILED_AT_POST_SNAPSHOT, true
	case EventBackupComplete:
		return VSS_WS_FAILED_AT_BACKUP_COMPLETE, true
	case EventBackupShutdown:
		return VSS_WS_FAILED_AT_BACKUPSHUTDOWN, true
	case EventPreRestore:
		return VSS_WS_FAILED_AT_PRE_RESTORE, true
	case EventPostRestore:
		return VSS_WS_FAILED_AT_POST_RESTORE, true
	}
	return VSS_WS_UNKNOWN, false
}

// BackupType is VSS_BACKUP_TYPE, the type SetBackupState announces.
type BackupType uint32

// The VSS_BACKUP_TYPE values.
const (
	VSS_BT_UNDEFINED BackupType = iota
	VSS_BT_FULL
	VSS_BT_INCREMENTAL
	VSS_BT_DIFFERENTIAL
	VSS_BT_LOG
	VSS_BT_COPY
	VSS_BT_OTHER
)

var backupTypes = dense[BackupType]("VSS_BACKUP_TYPE", "VSS_BT_", 0,
	"UNDEFINED", "FULL", "INCREMENTAL", "DIFFERENTIAL", "LOG", "COPY", "OTHER")

// String returns the Windows name, "VSS_BT_FULL".
func (t BackupType) String() string { return backupTypes.format(t) }

// ParseBackupType accepts "VSS_BT_FULL" or "FULL".
func ParseBackupType(s string) (BackupType, error) { return backupTypes.parse(s) }

// ObjectType is VSS_OBJECT_TYPE; DeleteSnapshots takes SNAPSHOT or SNAPSHOT_SET.
type ObjectType uint32

// The VSS_OBJECT_TYPE values.
const (
	VSS_OBJECT_UNKNOWN ObjectType = iota
	VSS_OBJECT_NONE
	VSS_OBJECT_SNAPSHOT_SET
	VSS_OBJECT_SNAPSHOT
	VSS_OBJECT_PROVIDER
	VSS_OBJECT_TYPE_COUNT
)

var objectTypes = dense[ObjectType]("VSS_OBJECT_TYPE", "VSS_OBJECT_", 0,
	"UNKNOWN", "NONE", "SNAPSHOT_SET", "SNAPSHOT", "PROVIDER", "TYPE_COUNT")

// String returns the Windows name, "VSS_OBJECT_SNAPSHOT_SET".
func (t ObjectType) String() string { return objectTypes.format(t) }

// ParseObjectType accepts "VSS_OBJECT_SNAPSHOT" or "SNAPSHOT".
func ParseObjectType(s string) (ObjectType, error) { return objectTypes.parse(s) }

// ApplicationLevel is VSS_APPLICATION_LEVEL, which decides when a writer freezes.
type ApplicationLevel uint32

// The VSS_APPLICATION_LEVEL values used here. Windows also defines VSS_APP_SYSTEM_RM and
// VSS_APP_AUTO, which the spec does not use.
const (
	VSS_APP_UNKNOWN ApplicationLevel = iota
	VSS_APP_SYSTEM
	VSS_APP_BACK_END
	VSS_APP_FRONT_END
)

var applicationLevels = dense[ApplicationLevel]("VSS_APPLICATION_LEVEL", "VSS_APP_", 0,
	"UNKNOWN", "SYSTEM", "BACK_END", "FRONT_END")

// String returns the Windows name, "VSS_APP_FRONT_END".
func (l ApplicationLevel) String() string { return applicationLevels.format(l) }

// ParseApplicationLevel accepts "VSS_APP_BACK_END" or "BACK_END".
func ParseApplicationLevel(s string) (ApplicationLevel, error) { return applicationLevels.parse(s) }

// FreezeOrder returns the levels in the order the Freeze event reaches them: front-end, then
// back-end, then system (vss-spec.md A7d).
func FreezeOrder() [3]ApplicationLevel {
	return [3]ApplicationLevel{VSS_APP_FRONT_END, VSS_APP_BACK_END, VSS_APP_SYSTEM}
}
