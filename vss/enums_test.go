package vss_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// named is one row of a hand-typed enumeration table: the constant, its value from
// vss-spec.md, and its Windows name.
type named[T any] struct {
	v     T
	value uint64
	name  string
}

// checkEnum checks every row's value, String, and Parse of both the full name and the name
// without prefix, and that unknown names are refused.
func checkEnum[T interface {
	~uint32 | ~uint64
	fmt.Stringer
}](t *testing.T, prefix string, parse func(string) (T, error), rows []named[T]) {
	t.Helper()
	for _, r := range rows {
		require.Equal(t, r.value, uint64(r.v), r.name)
		require.Equal(t, r.name, r.v.String())
		got, err := parse(r.name)
		require.NoError(t, err, r.name)
		require.Equal(t, r.v, got, r.name)
		short, ok := strings.CutPrefix(r.name, prefix)
		require.True(t, ok, "%s lacks prefix %s", r.name, prefix)
		got, err = parse(short)
		require.NoError(t, err, short)
		require.Equal(t, r.v, got, short)
	}
	for _, bad := range []string{"", "NOPE", prefix, strings.ToLower(rows[1].name), rows[1].name + "X"} {
		_, err := parse(bad)
		require.ErrorIs(t, err, vss.ErrUnknownName, "%q", bad)
	}
}

func TestSnapshotState(t *testing.T) {
	checkEnum(t, "VSS_SS_", vss.ParseSnapshotState, []named[vss.SnapshotState]{
		{vss.VSS_SS_UNKNOWN, 0, "VSS_SS_UNKNOWN"},
		{vss.VSS_SS_PREPARING, 1, "VSS_SS_PREPARING"},
		{vss.VSS_SS_PROCESSING_PREPARE, 2, "VSS_SS_PROCESSING_PREPARE"},
		{vss.VSS_SS_PREPARED, 3, "VSS_SS_PREPARED"},
		{vss.VSS_SS_PROCESSING_PRECOMMIT, 4, "VSS_SS_PROCESSING_PRECOMMIT"},
		{vss.VSS_SS_PRECOMMITTED, 5, "VSS_SS_PRECOMMITTED"},
		{vss.VSS_SS_PROCESSING_COMMIT, 6, "VSS_SS_PROCESSING_COMMIT"},
		{vss.VSS_SS_COMMITTED, 7, "VSS_SS_COMMITTED"},
		{vss.VSS_SS_PROCESSING_POSTCOMMIT, 8, "VSS_SS_PROCESSING_POSTCOMMIT"},
		{vss.VSS_SS_PROCESSING_PREFINALCOMMIT, 9, "VSS_SS_PROCESSING_PREFINALCOMMIT"},
		{vss.VSS_SS_PREFINALCOMMITTED, 10, "VSS_SS_PREFINALCOMMITTED"},
		{vss.VSS_SS_PROCESSING_POSTFINALCOMMIT, 11, "VSS_SS_PROCESSING_POSTFINALCOMMIT"},
		{vss.VSS_SS_CREATED, 12, "VSS_SS_CREATED"},
		{vss.VSS_SS_ABORTED, 13, "VSS_SS_ABORTED"},
		{vss.VSS_SS_DELETED, 14, "VSS_SS_DELETED"},
		{vss.VSS_SS_POSTCOMMITTED, 15, "VSS_SS_POSTCOMMITTED"},
		{vss.VSS_SS_COUNT, 16, "VSS_SS_COUNT"},
	})
	require.Equal(t, "VSS_SNAPSHOT_STATE(17)", vss.SnapshotState(17).String())
}

func TestWriterState(t *testing.T) {
	checkEnum(t, "VSS_WS_", vss.ParseWriterState, []named[vss.WriterState]{
		{vss.VSS_WS_UNKNOWN, 0, "VSS_WS_UNKNOWN"},
		{vss.VSS_WS_STABLE, 1, "VSS_WS_STABLE"},
		{vss.VSS_WS_WAITING_FOR_FREEZE, 2, "VSS_WS_WAITING_FOR_FREEZE"},
		{vss.VSS_WS_WAITING_FOR_THAW, 3, "VSS_WS_WAITING_FOR_THAW"},
		{vss.VSS_WS_WAITING_FOR_POST_SNAPSHOT, 4, "VSS_WS_WAITING_FOR_POST_SNAPSHOT"},
		{vss.VSS_WS_WAITING_FOR_BACKUP_COMPLETE, 5, "VSS_WS_WAITING_FOR_BACKUP_COMPLETE"},
		{vss.VSS_WS_FAILED_AT_IDENTIFY, 6, "VSS_WS_FAILED_AT_IDENTIFY"},
		{vss.VSS_WS_FAILED_AT_PREPARE_BACKUP, 7, "VSS_WS_FAILED_AT_PREPARE_BACKUP"},
		{vss.VSS_WS_FAILED_AT_PREPARE_SNAPSHOT, 8, "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT"},
		{vss.VSS_WS_FAILED_AT_FREEZE, 9, "VSS_WS_FAILED_AT_FREEZE"},
		{vss.VSS_WS_FAILED_AT_THAW, 10, "VSS_WS_FAILED_AT_THAW"},
		{vss.VSS_WS_FAILED_AT_POST_SNAPSHOT, 11, "VSS_WS_FAILED_AT_POST_SNAPSHOT"},
		{vss.VSS_WS_FAILED_AT_BACKUP_COMPLETE, 12, "VSS_WS_FAILED_AT_BACKUP_COMPLETE"},
		{vss.VSS_WS_FAILED_AT_PRE_RESTORE, 13, "VSS_WS_FAILED_AT_PRE_RESTORE"},
		{vss.VSS_WS_FAILED_AT_POST_RESTORE, 14, "VSS_WS_FAILED_AT_POST_RESTORE"},
		{vss.VSS_WS_FAILED_AT_BACKUPSHUTDOWN, 15, "VSS_WS_FAILED_AT_BACKUPSHUTDOWN"},
		{vss.VSS_WS_COUNT, 16, "VSS_WS_COUNT"},
	})
	require.Equal(t, "VSS_WRITER_STATE(17)", vss.WriterState(17).String())

	for s := vss.WriterState(0); s <= 17; s++ {
		require.Equal(t, s >= 6 && s <= 15, s.IsFailed(), s.String())
	}
}

func TestWriterEvent(t *testing.T) {
	rows := []struct {
		e      vss.WriterEvent
		name   string
		failed vss.WriterState // VSS_WS_UNKNOWN: no failure state
	}{
		{vss.EventIdentify, "Identify", vss.VSS_WS_FAILED_AT_IDENTIFY},
		{vss.EventPrepareForBackup, "PrepareForBackup", vss.VSS_WS_FAILED_AT_PREPARE_BACKUP},
		{vss.EventPrepareForSnapshot, "PrepareForSnapshot", vss.VSS_WS_FAILED_AT_PREPARE_SNAPSHOT},
		{vss.EventFreeze, "Freeze", vss.VSS_WS_FAILED_AT_FREEZE},
		{vss.EventThaw, "Thaw", vss.VSS_WS_FAILED_AT_THAW},
		{vss.EventPostSnapshot, "PostSnapshot", vss.VSS_WS_FAILED_AT_POST_SNAPSHOT},
		{vss.EventAbort, "Abort", vss.VSS_WS_UNKNOWN},
		{vss.EventBackupComplete, "BackupComplete", vss.VSS_WS_FAILED_AT_BACKUP_COMPLETE},
		{vss.EventBackupShutdown, "BackupShutdown", vss.VSS_WS_FAILED_AT_BACKUPSHUTDOWN},
		{vss.EventPreRestore, "PreRestore", vss.VSS_WS_FAILED_AT_PRE_RESTORE},
		{vss.EventPostRestore, "PostRestore", vss.VSS_WS_FAILED_AT_POST_RESTORE},
	}
	var all []vss.WriterEvent
	for _, r := range rows {
		all = append(all, r.e)
		require.Equal(t, r.name, r.e.String())
		got, err := vss.ParseWriterEvent(r.name)
		require.NoError(t, err)
		require.Equal(t, r.e, got)
		s, ok := r.e.FailedState()
		require.Equal(t, r.failed, s, r.name)
		require.Equal(t, r.failed != vss.VSS_WS_UNKNOWN, ok, r.name)
		if ok {
			require.True(t, s.IsFailed(), r.name)
		}
	}
	require.Equal(t, all, vss.WriterEvents())
	for _, e := range []vss.WriterEvent{0, 12} {
		_, ok := e.FailedState()
		require.False(t, ok)
		require.Equal(t, fmt.Sprintf("WriterEvent(%d)", e), e.String())
	}
	_, err := vss.ParseWriterEvent("OnFreeze")
	require.ErrorIs(t, err, vss.ErrUnknownName)
}

func TestBackupType(t *testing.T) {
	checkEnum(t, "VSS_BT_", vss.ParseBackupType, []named[vss.BackupType]{
		{vss.VSS_BT_UNDEFINED, 0, "VSS_BT_UNDEFINED"},
		{vss.VSS_BT_FULL, 1, "VSS_BT_FULL"},
		{vss.VSS_BT_INCREMENTAL, 2, "VSS_BT_INCREMENTAL"},
		{vss.VSS_BT_DIFFERENTIAL, 3, "VSS_BT_DIFFERENTIAL"},
		{vss.VSS_BT_LOG, 4, "VSS_BT_LOG"},
		{vss.VSS_BT_COPY, 5, "VSS_BT_COPY"},
		{vss.VSS_BT_OTHER, 6, "VSS_BT_OTHER"},
	})
	require.Equal(t, "VSS_BACKUP_TYPE(7)", vss.BackupType(7).String())
}

func TestObjectType(t *testing.T) {
	checkEnum(t, "VSS_OBJECT_", vss.ParseObjectType, []named[vss.ObjectType]{
		{vss.VSS_OBJECT_UNKNOWN, 0, "VSS_OBJECT_UNKNOWN"},
		{vss.VSS_OBJECT_NONE, 1, "VSS_OBJECT_NONE"},
		{vss.VSS_OBJECT_SNAPSHOT_SET, 2, "VSS_OBJECT_SNAPSHOT_SET"},
		{vss.VSS_OBJECT_SNAPSHOT, 3, "VSS_OBJECT_SNAPSHOT"},
		{vss.VSS_OBJECT_PROVIDER, 4, "VSS_OBJECT_PROVIDER"},
		{vss.VSS_OBJECT_TYPE_COUNT, 5, "VSS_OBJECT_TYPE_COUNT"},
	})
	require.Equal(t, "VSS_OBJECT_TYPE(6)", vss.ObjectType(6).String())
}

func TestProviderType(t *testing.T) {
	checkEnum(t, "VSS_PROV_", vss.ParseProviderType, []named[vss.ProviderType]{
		{vss.VSS_PROV_UNKNOWN, 0, "VSS_PROV_UNKNOWN"},
		{vss.VSS_PROV_SYSTEM, 1, "VSS_PROV_SYSTEM"},
		{vss.VSS_PROV_SOFTWARE, 2, "VSS_PROV_SOFTWARE"},
		{vss.VSS_PROV_HARDWARE, 3, "VSS_PROV_HARDWARE"},
		{vss.VSS_PROV_FILESHARE, 4, "VSS_PROV_FILESHARE"},
	})
	require.Equal(t, "VSS_PROVIDER_TYPE(5)", vss.ProviderType(5).String())
}

func TestApplicationLevel(t *testing.T) {
	checkEnum(t, "VSS_APP_", vss.ParseApplicationLevel, []named[vss.ApplicationLevel]{
		{vss.VSS_APP_UNKNOWN, 0, "VSS_APP_UNKNOWN"},
		{vss.VSS_APP_SYSTEM, 1, "VSS_APP_SYSTEM"},
		{vss.VSS_APP_BACK_END, 2, "VSS_APP_BACK_END"},
		{vss.VSS_APP_FRONT_END, 3, "VSS_APP_FRONT_END"},
	})
	require.Equal(t, [3]vss.ApplicationLevel{vss.VSS_APP_FRONT_END, vss.VSS_APP_BACK_END, vss.VSS_APP_SYSTEM},
		vss.FreezeOrder())
}

// checkFlags checks each single bit like checkEnum, then combinations, unnamed bits and zero.
func checkFlags[T interface {
	~uint32 | ~uint64
	fmt.Stringer
}](t *testing.T, prefix string, parse func(string) (T, error), rows []named[T]) {
	t.Helper()
	checkEnum(t, prefix, parse, rows)
	var all T
	var names []string
	for _, r := range rows {
		all |= r.v
		names = append(names, r.name)
	}
	require.Equal(t, strings.Join(names, "|"), all.String())
	require.Equal(t, "0", T(0).String())

	for _, v := range []T{0, all, rows[0].v | rows[len(rows)-1].v, rows[1].v | 0x80000000, 0x80000000} {
		got, err := parse(v.String())
		require.NoError(t, err, v.String())
		require.Equal(t, v, got, v.String())
	}
	require.Equal(t, rows[1].name+"|0x80000000", (rows[1].v | 0x80000000).String())

	// Short names, numbers and spaces around "|" are accepted in any order.
	got, err := parse(fmt.Sprintf("%s | %d|%s", strings.TrimPrefix(rows[2].name, prefix), uint64(rows[0].v), rows[1].name))
	require.NoError(t, err)
	require.Equal(t, rows[0].v|rows[1].v|rows[2].v, got)
	for _, bad := range []string{rows[0].name + "|", "|" + rows[0].name, rows[0].name + "||" + rows[1].name, "0x1FFFFFFFFFFFFFFFF"} {
		_, err := parse(bad)
		require.ErrorIs(t, err, vss.ErrUnknownName, "%q", bad)
	}
}

func TestVolSnapAttr(t *testing.T) {
	checkFlags(t, "VSS_VOLSNAP_ATTR_", vss.ParseVolSnapAttr, []named[vss.VolSnapAttr]{
		{vss.VSS_VOLSNAP_ATTR_PERSISTENT, 0x1, "VSS_VOLSNAP_ATTR_PERSISTENT"},
		{vss.VSS_VOLSNAP_ATTR_NO_AUTORECOVERY, 0x2, "VSS_VOLSNAP_ATTR_NO_AUTORECOVERY"},
		{vss.VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE, 0x4, "VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE"},
		{vss.VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE, 0x8, "VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE"},
		{vss.VSS_VOLSNAP_ATTR_NO_WRITERS, 0x10, "VSS_VOLSNAP_ATTR_NO_WRITERS"},
		{vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE, 0x20, "VSS_VOLSNAP_ATTR_TRANSPORTABLE"},
		{vss.VSS_VOLSNAP_ATTR_NOT_SURFACED, 0x40, "VSS_VOLSNAP_ATTR_NOT_SURFACED"},
		{vss.VSS_VOLSNAP_ATTR_NOT_TRANSACTED, 0x80, "VSS_VOLSNAP_ATTR_NOT_TRANSACTED"},
		{vss.VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED, 0x10000, "VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED"},
		{vss.VSS_VOLSNAP_ATTR_DIFFERENTIAL, 0x20000, "VSS_VOLSNAP_ATTR_DIFFERENTIAL"},
		{vss.VSS_VOLSNAP_ATTR_PLEX, 0x40000, "VSS_VOLSNAP_ATTR_PLEX"},
		{vss.VSS_VOLSNAP_ATTR_IMPORTED, 0x80000, "VSS_VOLSNAP_ATTR_IMPORTED"},
		{vss.VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY, 0x100000, "VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY"},
		{vss.VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY, 0x200000, "VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY"},
		{vss.VSS_VOLSNAP_ATTR_AUTORECOVER, 0x400000, "VSS_VOLSNAP_ATTR_AUTORECOVER"},
		{vss.VSS_VOLSNAP_ATTR_ROLLBACK_RECOVERY, 0x800000, "VSS_VOLSNAP_ATTR_ROLLBACK_RECOVERY"},
		{vss.VSS_VOLSNAP_ATTR_DELAYED_POSTSNAPSHOT, 0x1000000, "VSS_VOLSNAP_ATTR_DELAYED_POSTSNAPSHOT"},
		{vss.VSS_VOLSNAP_ATTR_TXF_RECOVERY, 0x2000000, "VSS_VOLSNAP_ATTR_TXF_RECOVERY"},
		{vss.VSS_VOLSNAP_ATTR_FILE_SHARE, 0x4000000, "VSS_VOLSNAP_ATTR_FILE_SHARE"},
	})
}

func TestProviderCapability(t *testing.T) {
	checkFlags(t, "VSS_PRV_CAPABILITY_", vss.ParseProviderCapability, []named[vss.ProviderCapability]{
		{vss.VSS_PRV_CAPABILITY_LEGACY, 0x1, "VSS_PRV_CAPABILITY_LEGACY"},
		{vss.VSS_PRV_CAPABILITY_COMPLIANT, 0x2, "VSS_PRV_CAPABILITY_COMPLIANT"},
		{vss.VSS_PRV_CAPABILITY_LUN_REPOINT, 0x4, "VSS_PRV_CAPABILITY_LUN_REPOINT"},
		{vss.VSS_PRV_CAPABILITY_LUN_RESYNC, 0x8, "VSS_PRV_CAPABILITY_LUN_RESYNC"},
		{vss.VSS_PRV_CAPABILITY_OFFLINE_CREATION, 0x10, "VSS_PRV_CAPABILITY_OFFLINE_CREATION"},
		{vss.VSS_PRV_CAPABILITY_MULTIPLE_IMPORT, 0x20, "VSS_PRV_CAPABILITY_MULTIPLE_IMPORT"},
		{vss.VSS_PRV_CAPABILITY_RECYCLING, 0x40, "VSS_PRV_CAPABILITY_RECYCLING"},
		{vss.VSS_PRV_CAPABILITY_PLEX, 0x80, "VSS_PRV_CAPABILITY_PLEX"},
		{vss.VSS_PRV_CAPABILITY_DIFFERENTIAL, 0x100, "VSS_PRV_CAPABILITY_DIFFERENTIAL"},
		{vss.VSS_PRV_CAPABILITY_CLUSTERED, 0x200, "VSS_PRV_CAPABILITY_CLUSTERED"},
	})
	got, err := vss.ParseProviderCapability("0x100000000")
	require.NoError(t, err, "the mask is a ULONGLONG")
	require.Equal(t, vss.ProviderCapability(1<<32), got)
}

func TestHardwareOptions(t *testing.T) {
	// Neither family's prefix applies to the other, so only full names are accepted.
	rows := []named[vss.HardwareOptions]{
		{vss.VSS_BREAKEX_FLAG_MASK_LUNS, 0x1, "VSS_BREAKEX_FLAG_MASK_LUNS"},
		{vss.VSS_BREAKEX_FLAG_MAKE_READ_WRITE, 0x2, "VSS_BREAKEX_FLAG_MAKE_READ_WRITE"},
		{vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL, 0x4, "VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL"},
		{vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE, 0x8, "VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE"},
		{vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE, 0x100, "VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE"},
		{vss.VSS_ONLUNSTATECHANGE_NOTIFY_LUN_PRE_RECOVERY, 0x200, "VSS_ONLUNSTATECHANGE_NOTIFY_LUN_PRE_RECOVERY"},
		{vss.VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY, 0x400, "VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY"},
		{vss.VSS_ONLUNSTATECHANGE_DO_MASK_LUNS, 0x800, "VSS_ONLUNSTATECHANGE_DO_MASK_LUNS"},
	}
	checkFlags(t, "", vss.ParseHardwareOptions, rows)
	_, err := vss.ParseHardwareOptions("MASK_LUNS")
	require.ErrorIs(t, err, vss.ErrUnknownName)
}

func TestSnapshotContextValues(t *testing.T) {
	checkEnum(t, "VSS_CTX_", vss.ParseSnapshotContext, []named[vss.SnapshotContext]{
		{vss.VSS_CTX_BACKUP, 0x0, "VSS_CTX_BACKUP"},
		{vss.VSS_CTX_FILE_SHARE_BACKUP, 0x10, "VSS_CTX_FILE_SHARE_BACKUP"},
		{vss.VSS_CTX_NAS_ROLLBACK, 0x19, "VSS_CTX_NAS_ROLLBACK"},
		{vss.VSS_CTX_APP_ROLLBACK, 0x9, "VSS_CTX_APP_ROLLBACK"},
		{vss.VSS_CTX_CLIENT_ACCESSIBLE, 0x1D, "VSS_CTX_CLIENT_ACCESSIBLE"},
		{vss.VSS_CTX_CLIENT_ACCESSIBLE_WRITERS, 0xD, "VSS_CTX_CLIENT_ACCESSIBLE_WRITERS"},
		{vss.VSS_CTX_ALL, 0xFFFFFFFF, "VSS_CTX_ALL"},
	})
	require.Len(t, vss.SnapshotContexts(), 7)
}

// TestSnapshotContextHelpers checks each context against its row of vss-spec.md E
// (value; writers; lifetime).
func TestSnapshotContextHelpers(t *testing.T) {
	for _, c := range []struct {
		ctx                              vss.SnapshotContext
		writers, autoRelease, persistent bool
		clientAccessible                 bool
	}{
		{vss.VSS_CTX_BACKUP, true, true, false, false},
		{vss.VSS_CTX_FILE_SHARE_BACKUP, false, true, false, false},
		{vss.VSS_CTX_APP_ROLLBACK, true, false, true, false},
		{vss.VSS_CTX_NAS_ROLLBACK, false, false, true, false},
		{vss.VSS_CTX_CLIENT_ACCESSIBLE, false, false, true, true},
		{vss.VSS_CTX_CLIENT_ACCESSIBLE_WRITERS, true, false, true, true},
	} {
		for _, extra := range []vss.VolSnapAttr{0, vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE | vss.VSS_VOLSNAP_ATTR_PLEX} {
			ctx := c.ctx | vss.SnapshotContext(extra)
			name := ctx.String()
			require.Equal(t, c.writers, ctx.HasWriters(), name)
			require.Equal(t, c.autoRelease, ctx.AutoRelease(), name)
			require.Equal(t, c.persistent, ctx.Persistent(), name)
			require.Equal(t, c.clientAccessible, ctx.Has(vss.VSS_VOLSNAP_ATTR_CLIENT_ACCESSIBLE), name)
			require.Equal(t, extra != 0, ctx.Has(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE), name)
			require.Equal(t, c.ctx, ctx.Base(), name)
			require.Equal(t, extra, ctx.Attrs(), name)
			require.True(t, ctx.Valid(), name)
		}
	}
	require.Equal(t, vss.VSS_CTX_ALL, vss.VSS_CTX_ALL.Base())
	require.Equal(t, vss.VolSnapAttr(0), vss.VSS_CTX_ALL.Attrs())
	require.True(t, vss.VSS_CTX_ALL.Valid())
	require.True(t, vss.VSS_CTX_BACKUP.Has(0), "the empty set is in every context")
}

func TestSnapshotContextString(t *testing.T) {
	// qemu's context (vss-spec.md C), written in the spec's notation.
	qemu := vss.VSS_CTX_APP_ROLLBACK | vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE|
		vss.VSS_VOLSNAP_ATTR_NO_AUTORECOVERY|vss.VSS_VOLSNAP_ATTR_TXF_RECOVERY)
	for _, c := range []struct {
		ctx  vss.SnapshotContext
		want string
	}{
		{vss.VSS_CTX_APP_ROLLBACK | vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE), "VSS_CTX_APP_ROLLBACK|TRANSPORTABLE"},
		{qemu, "VSS_CTX_APP_ROLLBACK|NO_AUTORECOVERY|TRANSPORTABLE|TXF_RECOVERY"},
		{vss.VSS_CTX_BACKUP | 0x8000, "VSS_CTX_BACKUP|0x8000"},
		{vss.VSS_CTX_CLIENT_ACCESSIBLE | vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_DIFFERENTIAL), "VSS_CTX_CLIENT_ACCESSIBLE|DIFFERENTIAL"},
	} {
		require.Equal(t, c.want, c.ctx.String())
		got, err := vss.ParseSnapshotContext(c.want)
		require.NoError(t, err, c.want)
		require.Equal(t, c.ctx, got, c.want)
	}

	for in, want := range map[string]vss.SnapshotContext{
		"VSS_CTX_APP_ROLLBACK|TRANSPORTABLE|NO_AUTORECOVERY|TXF_RECOVERY":                     qemu,
		"VSS_CTX_APP_ROLLBACK | VSS_VOLSNAP_ATTR_TRANSPORTABLE | NO_AUTORECOVERY | 0x2000000": qemu,
		"CLIENT_ACCESSIBLE":         vss.VSS_CTX_CLIENT_ACCESSIBLE,
		"APP_ROLLBACK|PERSISTENT":   vss.VSS_CTX_APP_ROLLBACK,
		"VSS_CTX_ALL|TRANSPORTABLE": vss.VSS_CTX_ALL,
		"BACKUP|0x20":               vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE),
	} {
		got, err := vss.ParseSnapshotContext(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}

	for _, bad := range []string{"TRANSPORTABLE", "BACKUP|NO_WRITERS", "BACKUP|0x1", "APP_ROLLBACK|NOPE", "0x9", "BACKUP|"} {
		_, err := vss.ParseSnapshotContext(bad)
		require.Error(t, err, bad)
	}

	unnamed := vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_PERSISTENT | vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE)
	require.False(t, unnamed.Valid())
	require.Equal(t, "VSS_CTX(0x21)", unnamed.String())
}

func TestProviderMethod(t *testing.T) {
	names := []string{
		"AreLunsSupported", "BeginPrepareSnapshot", "GetTargetLuns", "LocateLuns", "FillInLunInfo",
		"OnLunEmpty", "GetProviderCapabilities", "OnLunStateChange", "ResyncLuns", "OnReuseLuns",
		"EndPrepareSnapshots", "PreCommitSnapshots", "CommitSnapshots", "PostCommitSnapshots",
		"PreFinalCommitSnapshots", "PostFinalCommitSnapshots", "AbortSnapshots", "OnLoad", "OnUnload",
	}
	methods := vss.ProviderMethods()
	require.Len(t, methods, len(names))
	for i, m := range methods {
		require.Equal(t, names[i], m.String())
		got, err := vss.ParseProviderMethod(names[i])
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	require.Equal(t, "ProviderMethod(0)", vss.ProviderMethod(0).String())
	_, err := vss.ParseProviderMethod("IVssHardwareSnapshotProvider::CommitSnapshots")
	require.ErrorIs(t, err, vss.ErrUnknownName)

	const upe = vss.VSS_E_UNEXPECTED_PROVIDER_ERROR
	for _, c := range []struct {
		m        vss.ProviderMethod
		hr, want vss.HRESULT
	}{
		{vss.MethodCommitSnapshots, vss.S_OK, vss.S_OK},
		{vss.MethodCommitSnapshots, vss.VSS_E_PROVIDER_VETO, vss.VSS_E_PROVIDER_VETO},
		{vss.MethodCommitSnapshots, vss.VSS_E_OBJECT_NOT_FOUND, vss.VSS_E_OBJECT_NOT_FOUND},
		{vss.MethodCommitSnapshots, vss.S_FALSE, upe},
		{vss.MethodCommitSnapshots, vss.E_FAIL, upe},
		{vss.MethodCommitSnapshots, vss.E_UNEXPECTED, upe},
		{vss.MethodCommitSnapshots, vss.E_ABORT, upe},
		{vss.MethodCommitSnapshots, vss.VSS_E_HOLD_WRITES_TIMEOUT, upe},
		{vss.MethodAreLunsSupported, vss.E_ACCESSDENIED, vss.E_ACCESSDENIED}, // full legal set [EH]
		{vss.MethodAreLunsSupported, vss.VSS_E_NESTED_VOLUME_LIMIT, upe},
		{vss.MethodBeginPrepareSnapshot, vss.VSS_E_NESTED_VOLUME_LIMIT, vss.VSS_E_NESTED_VOLUME_LIMIT},
		{vss.MethodBeginPrepareSnapshot, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED},
		{vss.MethodBeginPrepareSnapshot, vss.VSS_E_UNSUPPORTED_CONTEXT, vss.VSS_E_UNSUPPORTED_CONTEXT},
		{vss.MethodEndPrepareSnapshots, vss.VSS_E_INSUFFICIENT_STORAGE, vss.VSS_E_INSUFFICIENT_STORAGE},
		{vss.MethodAbortSnapshots, vss.E_FAIL, vss.E_FAIL},
		{vss.MethodOnUnload, vss.E_UNEXPECTED, vss.E_UNEXPECTED},
		{vss.MethodFillInLunInfo, vss.E_FAIL, vss.E_FAIL},
		{vss.ProviderMethod(0), vss.VSS_E_PROVIDER_VETO, vss.VSS_E_PROVIDER_VETO},
		{vss.ProviderMethod(0), vss.E_FAIL, upe},
		{vss.ProviderMethod(999), vss.E_FAIL, upe},
	} {
		require.Equal(t, c.want, c.m.Translate(c.hr), "%v returns %v", c.m, c.hr)
	}

	for _, c := range []struct {
		m          vss.ProviderMethod
		hr         vss.HRESULT
		documented bool
	}{
		{vss.MethodCommitSnapshots, vss.E_INVALIDARG, true},
		{vss.MethodCommitSnapshots, vss.E_ACCESSDENIED, false},
		{vss.MethodResyncLuns, vss.VSS_E_INSUFFICIENT_STORAGE, true},
		{vss.MethodResyncLuns, vss.E_INVALIDARG, false},
		{vss.MethodGetTargetLuns, vss.VSS_E_OBJECT_NOT_FOUND, false},
		{vss.MethodAbortSnapshots, vss.VSS_E_OBJECT_NOT_FOUND, true},
		{vss.MethodFillInLunInfo, vss.S_OK, false},
		{vss.ProviderMethod(999), vss.S_OK, false},
	} {
		require.Equal(t, c.documented, c.m.Documents(c.hr), "%v documents %v", c.m, c.hr)
	}

	for _, m := range methods {
		exempt := m == vss.MethodAbortSnapshots || m == vss.MethodOnUnload || m == vss.MethodFillInLunInfo
		require.Equal(t, !exempt, m.Translated(), m.String())
	}
}
