package coordinator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

func statusOf(t *testing.T, bc *BackupComponents, name string) WriterStatus {
	t.Helper()
	sts, err := bc.GatherWriterStatus(context.Background())
	require.NoError(t, err)
	for _, s := range sts {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no writer %s", name)
	return WriterStatus{}
}

// TestA7SequenceOrder checks the exact order of A.7 with writers at all
// three levels: provider calls and writer events interleave as specified.
func TestA7SequenceOrder(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0", "lun1")
	require.NoError(t, b.s.AddVolume("C:", "lun0", "lun1"))
	ws := map[vss.ApplicationLevel]*testWriter{}
	for _, lv := range []vss.ApplicationLevel{vss.VSS_APP_SYSTEM, vss.VSS_APP_BACK_END, vss.VSS_APP_FRONT_END} {
		w := newTestWriter(lv.String())
		ws[lv] = w
		_, err := b.s.AddWriter(w, WriterOptions{Name: lv.String(), Level: lv})
		require.NoError(t, err)
	}
	bc, a := b.backup(ctx, "C:")
	require.NoError(t, a.Wait(ctx))
	st, res := a.QueryStatus()
	require.Equal(t, vss.VSS_S_ASYNC_FINISHED, st)
	require.NoError(t, res)

	info, ok := b.s.Set(bc.mu.lastSet)
	require.True(t, ok)
	require.Equal(t, "created", info.State)
	got := trace(info.Timeline, KindProvider, KindWriter)
	want := []string{
		"provider:EndPrepareSnapshots",
		"writer:PrepareForSnapshot:" + vss.VSS_APP_FRONT_END.String(),
		"writer:Freeze:" + vss.VSS_APP_FRONT_END.String(),
		"writer:Freeze:" + vss.VSS_APP_BACK_END.String(),
		"writer:Freeze:" + vss.VSS_APP_SYSTEM.String(),
		"provider:PreCommitSnapshots",
		"provider:CommitSnapshots",
		"provider:PostCommitSnapshots",
		"writer:Thaw:" + vss.VSS_APP_SYSTEM.String(),
		"provider:GetTargetLuns",
		"provider:LocateLuns",
		"provider:FillInLunInfo",
		"provider:PreFinalCommitSnapshots",
		"writer:PostSnapshot:" + vss.VSS_APP_FRONT_END.String(),
		"provider:PostFinalCommitSnapshots",
	}
	require.True(t, subsequence(got, want), "got %v", got)
	phases := trace(info.Timeline, KindPhase)
	require.Equal(t, []string{"phase:EndPrepareSnapshots", "phase:SetSourceFlags", "phase:PrepareForSnapshot", "phase:Freeze",
		"phase:PreCommitSnapshots", "phase:FlushAndHold", "phase:CommitSnapshots", "phase:ReleaseWrites", "phase:ClearSourceFlags",
		"phase:PostCommitSnapshots", "phase:Thaw", "phase:GetTargetLuns", "phase:AutoImport", "phase:PreFinalCommitSnapshots",
		"phase:PostSnapshot", "phase:PostFinalCommitSnapshots"}, phases)
	// The hold window spans exactly the commit.
	hold, _ := info.Timeline.Find(KindWindow, "hold")
	commit, _ := info.Timeline.Find(KindPhase, "CommitSnapshots")
	require.LessOrEqual(t, hold.Start, commit.Start)
	require.GreaterOrEqual(t, hold.End, commit.End)

	windows := 0
	postCommit, _ := info.Timeline.Find(KindPhase, "PostCommitSnapshots")
	for _, s := range info.Timeline.Spans() {
		if s.Kind == KindWindow && s.Name == "freeze-window" {
			windows++
			require.Equal(t, "closed", s.Result, "a window that closes normally is recorded too")
			require.GreaterOrEqual(t, s.End, postCommit.End, "B.3: the window lasts until PostCommitSnapshots returns")
			require.Less(t, s.Start, commit.Start, "and opens at OnFreeze, before the commit")
		}
	}
	require.Equal(t, 3, windows, "one freeze window per writer")
	for _, w := range ws {
		require.Equal(t, []string{"Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot"}, w.Events())
		require.Equal(t, vss.VSS_WS_WAITING_FOR_BACKUP_COMPLETE, statusOf(t, bc, w.name).State)
	}
	snaps := bc.Query()
	require.Len(t, snaps, 1)
	require.Len(t, snaps[0].TargetLUNs, 2, "a spanned volume gets one target per LUN")
	require.True(t, snaps[0].Imported)
	require.Equal(t, vss.VSS_SS_CREATED, snaps[0].State)
	require.NoError(t, bc.BackupComplete(ctx))
	for _, w := range ws {
		require.Equal(t, vss.VSS_WS_STABLE, statusOf(t, bc, w.name).State)
	}
	require.NoError(t, bc.Close(ctx))
	require.Empty(t, b.s.Query(), "auto-release: BACKUP snapshots are deleted on Close")
	for _, w := range ws {
		require.Equal(t, "BackupShutdown", w.Events()[len(w.Events())-1])
	}
}

// TestB1SerializationTwoRequesters: a second StartSnapshotSet, from another
// requester or the same one, answers VSS_E_SNAPSHOT_SET_IN_PROGRESS until
// the first DoSnapshotSet completes.
func TestB1SerializationTwoRequesters(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	release := make(chan struct{})
	b.prov.hook(vss.MethodPreCommitSnapshots, func(ctx context.Context) error { <-release; return nil })

	first := b.s.NewBackupComponents()
	require.NoError(t, first.InitializeForBackup(nil))
	require.NoError(t, first.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP)) // writerless: fewer steps
	_, err := first.StartSnapshotSet()
	require.NoError(t, err)
	_, err = first.StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS, "the same requester")

	second := b.s.NewBackupComponents()
	require.NoError(t, second.InitializeForBackup(nil))
	_, err = second.StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS, "another requester, before DoSnapshotSet")

	_, err = first.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	a, err := first.DoSnapshotSet(ctx)
	require.NoError(t, err)
	_, err = second.StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS, "another requester, while DoSnapshotSet runs")
	close(release)
	require.NoError(t, a.Wait(ctx))
	_, err = second.StartSnapshotSet()
	require.NoError(t, err, "free once DoSnapshotSet completed")
	require.NoError(t, second.Close(ctx))
	require.NoError(t, first.Close(ctx))
}

// TestB1SerializationEndsOnClose: closing the requester that holds creation
// frees it.
func TestB1SerializationEndsOnClose(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	first := b.s.NewBackupComponents()
	require.NoError(t, first.InitializeForBackup(nil))
	_, err := first.StartSnapshotSet()
	require.NoError(t, err)
	second := b.s.NewBackupComponents()
	require.NoError(t, second.InitializeForBackup(nil))
	_, err = second.StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS)
	require.NoError(t, first.Close(ctx))
	_, err = second.StartSnapshotSet()
	require.NoError(t, err)
	require.NoError(t, second.Close(ctx))
}

// TestB2HoldWindowExpiry: a provider blocking in CommitSnapshots past the
// hold window fails the set with VSS_E_HOLD_WRITES_TIMEOUT, writes are
// released (delayed, never failed), providers get AbortSnapshots and the
// event log gets 12298.
func TestB2HoldWindowExpiry(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	l, _ := b.a.Get("lun0")
	w := newTestWriter("w")
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w", FreezeTimeout: 5 * time.Second})
	require.NoError(t, err)
	heldWrite := make(chan error, 1)
	b.prov.hook(vss.MethodCommitSnapshots, func(ctx context.Context) error {
		go func() { heldWrite <- l.WriteAt(context.Background(), []byte{1}, 0, false) }()
		<-ctx.Done() // blocks past the window; the call's context ends with it
		return vss.E_ABORT
	})
	bc, a := b.backup(ctx, "lun0")
	err = a.Wait(ctx)
	require.ErrorIs(t, err, vss.VSS_E_HOLD_WRITES_TIMEOUT)
	require.NoError(t, <-heldWrite, "held writes are delayed, never failed")
	require.Contains(t, b.prov.Calls(), "AbortSnapshots")
	require.True(t, b.logs.contains(`"event_id":12298`))
	require.False(t, b.logs.contains(`"event_id":12293`), "the provider's E_ABORT answers the coordinator's own cancel: not its error")
	require.Equal(t, []string{"Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Abort"}, w.Events(),
		"the frozen writer gets Abort, not Thaw (B.10)")
	require.Empty(t, b.s.Query())
	require.ErrorIs(t, bc.BackupComplete(ctx), vss.VSS_E_BAD_STATE)
	require.NoError(t, bc.AbortBackup(ctx))
	require.NoError(t, bc.Close(ctx))
	require.False(t, l.Gate().Held())
}

// TestB3FreezeWindowExpiry: when PreCommit...PostCommit outlasts a writer's
// freeze window, the writer is FAILED_AT_FREEZE with
// VSS_E_WRITERERROR_TIMEOUT and gets Abort at expiry, not Thaw. The set
// itself succeeds.
func TestB3FreezeWindowExpiry(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	short, long := newTestWriter("short"), newTestWriter("long")
	_, err := b.s.AddWriter(short, WriterOptions{Name: "short", FreezeTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	_, err = b.s.AddWriter(long, WriterOptions{Name: "long", FreezeTimeout: 5 * time.Second})
	require.NoError(t, err)
	b.prov.hook(vss.MethodPostCommitSnapshots, func(ctx context.Context) error {
		time.Sleep(150 * time.Millisecond)
		return nil
	})
	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	st := statusOf(t, bc, "short")
	require.Equal(t, vss.VSS_WS_FAILED_AT_FREEZE, st.State)
	require.Equal(t, vss.VSS_E_WRITERERROR_TIMEOUT, st.Failure)
	require.Equal(t, []string{"Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Abort"}, short.Events())
	require.Equal(t, []string{"Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot"}, long.Events())
	info, _ := b.s.Set(bc.mu.lastSet)
	win, ok := info.Timeline.Find(KindWindow, "freeze-window")
	require.True(t, ok)
	require.Equal(t, "expired", win.Result)
	require.NoError(t, bc.Close(ctx))
}

// TestDWriterVetoAndFatalAtEveryEvent: at every event, a veto
// (SetWriterFailure, then true) records the failed state without failing
// DoSnapshotSet or raising Abort; a fatal failure (false) records it too
// and raises Abort only at Freeze and Thaw (B.10).
func TestDWriterVetoAndFatalAtEveryEvent(t *testing.T) {
	events := []vss.WriterEvent{vss.EventPrepareForBackup, vss.EventPrepareForSnapshot, vss.EventFreeze, vss.EventThaw, vss.EventPostSnapshot}
	for _, ev := range events {
		for _, fatal := range []bool{false, true} {
			name := ev.String() + map[bool]string{false: "/veto", true: "/fatal"}[fatal]
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				b := newBench(t, fast, "lun0")
				w := newTestWriter("w")
				w.on[ev] = func(e *Event) bool {
					require.NoError(t, e.SetWriterFailure(vss.VSS_E_WRITERERROR_RETRYABLE))
					return !fatal
				}
				_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
				require.NoError(t, err)
				bc, a := b.backup(ctx, "lun0")
				require.NoError(t, a.Wait(ctx), "a writer failure does not fail DoSnapshotSet")
				st := statusOf(t, bc, "w")
				failed, _ := ev.FailedState()
				require.Equal(t, failed, st.State)
				require.Equal(t, vss.VSS_E_WRITERERROR_RETRYABLE, st.Failure)
				aborted := false
				for _, e := range w.Events() {
					aborted = aborted || e == "Abort"
				}
				require.Equal(t, fatal && (ev == vss.EventFreeze || ev == vss.EventThaw), aborted)
				require.NoError(t, bc.Close(ctx))
			})
		}
	}
}

// TestDSetWriterFailureCodes: SetWriterFailure accepts only the codes of D;
// SetWriterFailureEx adds S_OK and PARTIAL_FAILURE; Identify may not call it.
func TestDSetWriterFailureCodes(t *testing.T) {
	ev := &Event{Kind: vss.EventFreeze}
	require.ErrorIs(t, ev.SetWriterFailure(vss.E_FAIL), vss.E_INVALIDARG)
	require.ErrorIs(t, ev.SetWriterFailure(vss.VSS_E_WRITERERROR_PARTIAL_FAILURE), vss.E_INVALIDARG)
	require.NoError(t, ev.SetWriterFailureEx(vss.VSS_E_WRITERERROR_PARTIAL_FAILURE, vss.E_FAIL, "component x"))
	require.NoError(t, ev.SetWriterFailure(vss.VSS_E_WRITERERROR_TIMEOUT))
	ev.end()
	require.ErrorIs(t, ev.SetWriterFailure(vss.VSS_E_WRITERERROR_TIMEOUT), vss.VSS_E_BAD_STATE, "after the callback returned")
	id := &Event{Kind: vss.EventIdentify}
	require.Error(t, id.SetWriterFailure(vss.VSS_E_WRITERERROR_RETRYABLE))
}

// TestDPanickingWriterContained: a writer that panics becomes a failure
// state, and the sequence goes on.
func TestDPanickingWriterContained(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	w := newTestWriter("w")
	w.on[vss.EventFreeze] = func(*Event) bool { panic("writer bug") }
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	st := statusOf(t, bc, "w")
	require.Equal(t, vss.VSS_WS_FAILED_AT_FREEZE, st.State)
	require.Contains(t, st.Message, "writer bug")
	require.Contains(t, w.Events(), "Abort")
	require.NoError(t, bc.Close(ctx))
}

// TestB4WriterNotResponding: a writer that never answers PrepareForSnapshot
// shows VSS_E_WRITER_NOT_RESPONDING.
func TestB4WriterNotResponding(t *testing.T) {
	ctx := context.Background()
	cfg := fast
	cfg.PrepareWindow = 50 * time.Millisecond
	b := newBench(t, cfg, "lun0")
	w := newTestWriter("w")
	w.on[vss.EventPrepareForSnapshot] = func(e *Event) bool { <-e.Ctx.Done(); return true }
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	st := statusOf(t, bc, "w")
	require.Equal(t, vss.VSS_WS_FAILED_AT_PREPARE_SNAPSHOT, st.State)
	require.Equal(t, vss.VSS_E_WRITER_NOT_RESPONDING, st.Failure)
	require.NotContains(t, w.Events(), "Abort", "no Abort for PrepareForSnapshot failures (B.10)")
	require.NoError(t, bc.Close(ctx))
}

// TestB8AbandonedSetThenNewSet: a requester that releases after
// AddToSnapshotSet abandons its set; the provider gets no AbortSnapshots,
// and the next set reaches it as an out-of-sequence BeginPrepareSnapshot
// with a new ID, after which nothing of the old set is left.
func TestB8AbandonedSetThenNewSet(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	first := b.s.NewBackupComponents()
	require.NoError(t, first.InitializeForBackup(nil))
	require.NoError(t, first.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP))
	old, err := first.StartSnapshotSet()
	require.NoError(t, err)
	_, err = first.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	require.NoError(t, first.Close(ctx))
	require.NotContains(t, b.prov.Calls(), "AbortSnapshots")

	second := b.s.NewBackupComponents()
	require.NoError(t, second.InitializeForBackup(nil))
	require.NoError(t, second.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP))
	id, err := second.StartSnapshotSet()
	require.NoError(t, err)
	require.NotEqual(t, old, id)
	_, err = second.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	a, err := second.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	require.Len(t, b.a.List(), 2, "the source and the new snapshot: nothing of the abandoned set")
	require.NotContains(t, b.prov.Calls(), "AbortSnapshots")
	info, _ := b.s.Set(old)
	require.Equal(t, "abandoned", info.State)
	require.NoError(t, second.Close(ctx))
}

// TestB7AbortSnapshotsRacingEndPrepare: a cancel while EndPrepareSnapshots
// runs sends AbortSnapshots at once, concurrently.
func TestB7AbortSnapshotsRacingEndPrepare(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	inEnd := make(chan struct{})
	aborted := make(chan struct{})
	b.prov.hook(vss.MethodEndPrepareSnapshots, func(ctx context.Context) error {
		close(inEnd)
		select {
		case <-aborted: // preparation stops at once
			return vss.E_ABORT
		case <-time.After(5 * time.Second):
			return errors.New("AbortSnapshots never came")
		}
	})
	b.prov.hook(vss.MethodAbortSnapshots, func(context.Context) error { close(aborted); return nil })
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	<-inEnd
	require.Equal(t, vss.S_OK, a.Cancel())
	require.Error(t, a.Wait(ctx))
	st, _ := a.QueryStatus()
	require.Equal(t, vss.VSS_S_ASYNC_CANCELLED, st)
	calls := b.prov.Calls()
	require.Equal(t, 1, countOf(calls, "AbortSnapshots"), "once: %v", calls)
	require.Len(t, b.a.List(), 1, "prepared snapshot LUNs are gone")
	require.NoError(t, bc.Close(ctx))
}

func countOf(xs []string, x string) (n int) {
	for _, y := range xs {
		if y == x {
			n++
		}
	}
	return n
}

// TestCUnlistedHRESULTTranslated: a provider code the method may not return
// reaches the requester as VSS_E_UNEXPECTED_PROVIDER_ERROR, with an event
// log record (12293), and the set is aborted.
func TestCUnlistedHRESULTTranslated(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	b.prov.hook(vss.MethodPreCommitSnapshots, func(context.Context) error { return vss.E_FAIL })
	bc, a := b.backup(ctx, "lun0")
	require.ErrorIs(t, a.Wait(ctx), vss.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	require.True(t, b.logs.contains(`"event_id":12293`))
	require.True(t, b.logs.contains(`"returned":"E_FAIL"`))
	require.Contains(t, b.prov.Calls(), "AbortSnapshots")
	require.NoError(t, bc.AbortBackup(ctx))
	require.NoError(t, bc.Close(ctx))

	// A listed code passes through unchanged.
	b2 := newBench(t, fast, "lun0")
	b2.prov.hook(vss.MethodCommitSnapshots, func(context.Context) error { return vss.VSS_E_PROVIDER_VETO })
	bc2, a2 := b2.backup(ctx, "lun0")
	require.ErrorIs(t, a2.Wait(ctx), vss.VSS_E_PROVIDER_VETO)
	require.NoError(t, bc2.Close(ctx))
}

// TestA9BackupCompleteRefusedAfterFailedDoSnapshotSet.
func TestA9BackupCompleteRefusedAfterFailedDoSnapshotSet(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	b.prov.hook(vss.MethodCommitSnapshots, func(context.Context) error { return vss.VSS_E_PROVIDER_VETO })
	bc, a := b.backup(ctx, "lun0")
	require.Error(t, a.Wait(ctx))
	require.ErrorIs(t, bc.BackupComplete(ctx), vss.VSS_E_BAD_STATE)
	require.NoError(t, bc.AbortBackup(ctx))
	require.NoError(t, bc.Close(ctx))
}

// TestA10BackupShutdownOnCloseAfterFailure: BackupShutdown reaches every
// writer on Close, even after a failed set.
func TestA10BackupShutdownOnCloseAfterFailure(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	w := newTestWriter("w")
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	b.prov.hook(vss.MethodEndPrepareSnapshots, func(context.Context) error { return vss.VSS_E_INSUFFICIENT_STORAGE })
	bc, a := b.backup(ctx, "lun0")
	require.ErrorIs(t, a.Wait(ctx), vss.VSS_E_INSUFFICIENT_STORAGE)
	require.NoError(t, bc.Close(ctx))
	ev := w.Events()
	require.Equal(t, "BackupShutdown", ev[len(ev)-1])
	require.NotContains(t, ev, "Abort", "a failure before PrepareForSnapshot raises no Abort")
}

// TestA13WriterlessContext: AddComponent, PrepareForBackup and
// BackupComplete are refused in a writerless context; writers get nothing.
func TestA13WriterlessContext(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	w := newTestWriter("w")
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_NAS_ROLLBACK))
	require.ErrorIs(t, bc.AddComponent(vss.NewID(), "x"), vss.VSS_E_BAD_STATE)
	_, err = bc.StartSnapshotSet()
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	require.ErrorIs(t, bc.PrepareForBackup(ctx), vss.VSS_E_BAD_STATE)
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	require.ErrorIs(t, bc.BackupComplete(ctx), vss.VSS_E_BAD_STATE)
	require.Empty(t, w.Events())
	require.NoError(t, bc.Close(ctx))
	require.Len(t, b.s.Query(), 1, "NAS_ROLLBACK is persistent: kept after Close")
}

// TestA2DoSnapshotSetNeedsMetadata: in a writer context DoSnapshotSet
// without GatherWriterMetadata answers VSS_E_BAD_STATE; SetContext twice
// and GatherWriterMetadata twice too.
func TestA2DoSnapshotSetNeedsMetadata(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	bc := b.s.NewBackupComponents()
	_, err := bc.StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_BAD_STATE, "before InitializeForBackup")
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_BACKUP))
	require.ErrorIs(t, bc.SetContext(vss.VSS_CTX_BACKUP), vss.VSS_E_BAD_STATE)
	require.ErrorIs(t, bc.SetContext(vss.VSS_CTX_ALL), vss.VSS_E_BAD_STATE)
	_, err = bc.StartSnapshotSet()
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	_, err = bc.DoSnapshotSet(ctx)
	require.ErrorIs(t, err, vss.VSS_E_BAD_STATE)
	require.NoError(t, bc.Close(ctx))
}

// TestF1ProviderSelection: explicit providers that do not fit answer
// VOLUME_NOT_SUPPORTED_BY_PROVIDER; with GUID_NULL, hardware is tried
// before software, and nothing fitting answers VOLUME_NOT_SUPPORTED.
func TestF1ProviderSelection(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0", "lun1")
	sw := newFakeProvider(b.a)
	require.NoError(t, b.s.RegisterProvider(ctx, Registration{Name: "soft", Type: vss.VSS_PROV_SOFTWARE, Priority: 100, Provider: sw}))
	require.Equal(t, "fake", b.s.Providers()[0].Name, "hardware first, whatever the software priority")
	require.NoError(t, b.s.AddVolume("D:", "lun0", "lun1"))
	require.NoError(t, b.s.AddVolume("E:", "lun1"))

	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	_, err = bc.AddToSnapshotSet(ctx, "D:", vss.NewID())
	require.ErrorIs(t, err, vss.VSS_E_PROVIDER_NOT_REGISTERED)
	b.prov.refuse = true
	_, err = bc.AddToSnapshotSet(ctx, "D:", b.reg.ID)
	require.ErrorIs(t, err, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER)
	_, err = bc.AddToSnapshotSet(ctx, "D:", vss.GUID_NULL)
	require.NoError(t, err, "falls back to the software provider")
	require.Contains(t, sw.Calls(), "BeginPrepareSnapshot")
	sw.refuse = true
	_, err = bc.AddToSnapshotSet(ctx, "E:", vss.GUID_NULL)
	require.ErrorIs(t, err, vss.VSS_E_VOLUME_NOT_SUPPORTED)
	_, err = bc.AddToSnapshotSet(ctx, "nope", vss.GUID_NULL)
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	require.NoError(t, bc.Close(ctx))
}

// TestF1SharedLUNAcrossVolumes: one LUN in two volumes of one set is held
// and snapshotted once per set, and both snapshots see it.
func TestF1SharedLUNAcrossVolumes(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0", "lun1", "lun2")
	require.NoError(t, b.s.AddVolume("D:", "lun0", "lun1"))
	require.NoError(t, b.s.AddVolume("E:", "lun1", "lun2"))
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_NAS_ROLLBACK))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	for _, v := range []string{"D:", "E:"} {
		_, err = bc.AddToSnapshotSet(ctx, v, vss.GUID_NULL)
		require.NoError(t, err)
	}
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	require.Len(t, bc.Query(), 2)
	calls := b.prov.Calls()
	require.Equal(t, 1, countOf(calls, "EndPrepareSnapshots"), "A.7a: once per provider, however many volumes")
	require.Equal(t, 1, countOf(calls, "CommitSnapshots"))
	require.Equal(t, 2, countOf(calls, "BeginPrepareSnapshot"), "once per volume")
	require.Equal(t, 3, countOf(calls, "FillInLunInfo"), "A.7m: once per disk that arrives, however many volumes share it")
	require.NoError(t, bc.Close(ctx))
}

// TestF9MaxVolumes: the 65th volume answers
// VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED.
func TestF9MaxVolumes(t *testing.T) {
	ctx := context.Background()
	names := make([]string, MaxVolumes+1)
	for i := range names {
		names[i] = "l" + string(rune('A'+i/26)) + string(rune('a'+i%26))
	}
	b := newBench(t, fast, names...)
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_FILE_SHARE_BACKUP))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	for _, n := range names[:MaxVolumes] {
		_, err := bc.AddToSnapshotSet(ctx, n, vss.GUID_NULL)
		require.NoError(t, err)
	}
	_, err = bc.AddToSnapshotSet(ctx, names[MaxVolumes], vss.GUID_NULL)
	require.ErrorIs(t, err, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED)
	require.NoError(t, bc.Close(ctx))
}

// TestManageDeleteBreakExposeRevert covers the calls after creation.
func TestManageDeleteBreakExposeRevert(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0", "lun1")
	l0, _ := b.a.Get("lun0")
	require.NoError(t, l0.WriteAt(ctx, []byte("before"), 0, false))
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_APP_ROLLBACK))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	require.NoError(t, bc.SetBackupState(false, false, vss.VSS_BT_COPY, false))
	set, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	s0, err := bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	s1, err := bc.AddToSnapshotSet(ctx, "lun1", vss.GUID_NULL)
	require.NoError(t, err)
	require.NoError(t, bc.PrepareForBackup(ctx))
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	require.NoError(t, l0.WriteAt(ctx, []byte("after!"), 0, false))

	props, err := bc.GetSnapshotProperties(s0)
	require.NoError(t, err)
	want := vss.VSS_VOLSNAP_ATTR_PERSISTENT | vss.VSS_VOLSNAP_ATTR_NO_AUTO_RELEASE | vss.VSS_VOLSNAP_ATTR_HARDWARE_ASSISTED
	require.Equal(t, want, props.Attributes&want, "the context's own bits are the snapshot's attributes: %v", props.Attributes)
	exp, err := bc.ExposeSnapshot(ctx, s0)
	require.NoError(t, err)
	snapLUN, err := b.a.Get(exp)
	require.NoError(t, err)
	require.True(t, snapLUN.ReadOnly())
	buf := make([]byte, 6)
	require.NoError(t, snapLUN.ReadAt(ctx, buf, 0))
	require.Equal(t, "before", string(buf))

	require.NoError(t, bc.RevertToSnapshot(ctx, s0, false))
	require.NoError(t, l0.ReadAt(ctx, buf, 0))
	require.Equal(t, "before", string(buf), "reverted inside the array")

	n, failed, err := bc.DeleteSnapshots(ctx, s1, vss.VSS_OBJECT_SNAPSHOT, false)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.True(t, failed.IsNull())
	calls := b.prov.Calls()
	require.True(t, subsequence(calls, []string{"FillInLunInfo", "OnLunEmpty"}))
	_, _, err = bc.DeleteSnapshots(ctx, s1, vss.VSS_OBJECT_SNAPSHOT, false)
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)

	require.ErrorIs(t, bc.BreakSnapshotSetEx(ctx, set, vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL), vss.VSS_E_BREAK_REVERT_ID_FAILED,
		"the original LUN is still there")
	require.NoError(t, bc.BreakSnapshotSetEx(ctx, set, vss.VSS_BREAKEX_FLAG_MAKE_READ_WRITE))
	require.False(t, snapLUN.ReadOnly(), "read-write after a break")
	require.NoError(t, snapLUN.WriteAt(ctx, []byte("x"), 0, false))
	require.Empty(t, b.s.Query(), "VSS forgets a broken set")
	require.NoError(t, bc.Close(ctx))
}

// TestA11TransportableImport: a transportable set is not auto-imported; a
// second requester imports it once from the saved document.
func TestA11TransportableImport(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_NAS_ROLLBACK|vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE)))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	snap, err := bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	props, err := bc.GetSnapshotProperties(snap)
	require.NoError(t, err)
	require.False(t, props.Imported)
	require.NotContains(t, b.prov.Calls(), "LocateLuns")
	doc, err := bc.SaveDocument()
	require.NoError(t, err)
	require.NoError(t, bc.Close(ctx))

	// The snapshot record stays (persistent); a fresh service, as another
	// host, would have none. Here the same service imports it.
	b.s.mu.Lock()
	delete(b.s.mu.snapshots, snap)
	b.s.mu.Unlock()
	imp := b.s.NewBackupComponents()
	require.NoError(t, imp.InitializeForBackup(doc))
	hr, err := imp.ImportSnapshots(ctx)
	require.NoError(t, err)
	require.Equal(t, vss.S_OK, hr)
	props, err = imp.GetSnapshotProperties(snap)
	require.NoError(t, err)
	require.True(t, props.Imported)
	require.NotEmpty(t, props.DeviceObject)
	_, err = imp.ImportSnapshots(ctx)
	require.ErrorIs(t, err, vss.VSS_E_BAD_STATE, "a set is imported once")
	require.NoError(t, imp.Close(ctx))
}

// TestConcurrentRequestersRace runs several requesters racing for full
// backups: exactly one creates at a time, the others see IN_PROGRESS and
// retry, and all end up with a set.
func TestConcurrentRequestersRace(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	var wg sync.WaitGroup
	var mu sync.Mutex
	inProgress := 0
	for range 4 {
		wg.Go(func() {
			bc := b.s.NewBackupComponents()
			require.NoError(t, bc.InitializeForBackup(nil))
			require.NoError(t, bc.SetContext(vss.VSS_CTX_NAS_ROLLBACK))
			for {
				_, err := bc.StartSnapshotSet()
				if errors.Is(err, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS) {
					mu.Lock()
					inProgress++
					mu.Unlock()
					time.Sleep(time.Millisecond)
					continue
				}
				require.NoError(t, err)
				break
			}
			_, err := bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
			require.NoError(t, err)
			a, err := bc.DoSnapshotSet(ctx)
			require.NoError(t, err)
			require.NoError(t, a.Wait(ctx))
			require.NoError(t, bc.Close(ctx))
		})
	}
	wg.Wait()
	require.Len(t, b.s.Query(), 4)
}

// TestA10CloseBeforeStartSnapshotSet: a requester that gathered metadata
// and released before any set still sends BackupShutdown, and nothing else.
func TestA10CloseBeforeStartSnapshotSet(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	w := newTestWriter("w")
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	require.NoError(t, bc.Close(ctx))
	require.Equal(t, []string{"Identify", "BackupShutdown"}, w.Events())
	require.Equal(t, []string{"writer:Identify:w", "writer:BackupShutdown:w"}, trace(bc.Timeline()),
		"the requester's own timeline records what happened outside a set")
}

// TestA7PostCommitCountPerProvider: a set spanning two providers tells each
// how many of the set's snapshots are its own.
func TestA7PostCommitCountPerProvider(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0", "lun1", "lun2")
	other := newFakeProvider(b.a)
	require.NoError(t, b.s.RegisterProvider(ctx, Registration{Name: "other", Provider: other}))
	reg2 := b.s.Providers()[1]
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_NAS_ROLLBACK))
	_, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	for _, c := range []struct {
		vol string
		p   vss.ID
	}{{"lun0", b.reg.ID}, {"lun1", b.reg.ID}, {"lun2", reg2.ID}} {
		_, err := bc.AddToSnapshotSet(ctx, c.vol, c.p)
		require.NoError(t, err)
	}
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	require.Equal(t, []int{2}, b.prov.counts)
	require.Equal(t, []int{1}, other.counts)
	require.Len(t, bc.Query(), 3)
	require.NoError(t, bc.Close(ctx))
}

// TestEContextAll: VSS_CTX_ALL is accepted by SetContext (for queries and
// deletion) and refused by StartSnapshotSet.
func TestEContextAll(t *testing.T) {
	b := newBench(t, fast, "lun0")
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_ALL))
	_, err := bc.StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_BAD_STATE)
	require.NoError(t, bc.Close(context.Background()))
}
