package coordinator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// TestDWriterInFailedStateGetsOnlyAbortAndBackupShutdown: a writer that
// entered a failed state, whatever the event and however it failed (a
// veto, false, a panic, a timeout), gets no later event of the sequence: only Abort
// where B.10 sends one (a fatal Freeze or Thaw), and BackupShutdown last.
// The one Thaw it may get ends a freeze it vetoed but went through with.
func TestDWriterInFailedStateGetsOnlyAbortAndBackupShutdown(t *testing.T) {
	events := []vss.WriterEvent{vss.EventPrepareForBackup, vss.EventPrepareForSnapshot, vss.EventFreeze,
		vss.EventThaw, vss.EventPostSnapshot, vss.EventBackupComplete}
	for _, ev := range events {
		for _, how := range []string{"veto", "fatal", "panic", "timeout"} {
			t.Run(ev.String()+"/"+how, func(t *testing.T) {
				t.Parallel() // the timeouts wait out their windows
				ctx := context.Background()
				b := newBench(t, fast, "lun0")
				w := newTestWriter("w")
				w.on[ev] = func(e *Event) bool {
					switch how {
					case "panic":
						panic("writer bug")
					case "timeout":
						<-e.Ctx.Done()
						return false
					case "veto":
						require.NoError(t, e.SetWriterFailure(vss.VSS_E_WRITERERROR_RETRYABLE))
						return true
					}
					require.NoError(t, e.SetWriterFailure(vss.VSS_E_WRITERERROR_RETRYABLE))
					return false
				}
				_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
				require.NoError(t, err)
				bc, a := b.backup(ctx, "lun0")
				require.NoError(t, a.Wait(ctx), "a writer failure does not fail DoSnapshotSet")
				_ = bc.BackupComplete(ctx) // VSS_E_UNEXPECTED_WRITER_ERROR when BackupComplete was fatal
				failed, _ := ev.FailedState()
				require.Equal(t, failed, statusOf(t, bc, "w").State)
				require.NoError(t, bc.Close(ctx))

				got := w.Events()
				i := slices.Index(got, ev.String())
				require.GreaterOrEqual(t, i, 0, "%v", got)
				after := got[i+1:]
				if how == "veto" && ev == vss.EventFreeze {
					require.Equal(t, "Thaw", after[0], "a writer that froze is thawed: %v", got)
					after = after[1:]
				}
				for _, e := range after {
					require.Contains(t, []string{"Abort", "BackupShutdown"}, e, "after failing %v the writer got %v", ev, got)
				}
				require.Equal(t, "BackupShutdown", got[len(got)-1])
				wantAbort := how != "veto" && (ev == vss.EventFreeze || ev == vss.EventThaw)
				require.Equal(t, wantAbort, slices.Contains(after, "Abort"), "B.10: %v", got)
			})
		}
	}
}

// TestDFailedWriterStillGetsTheSetsAbort: a writer that failed at
// PrepareForSnapshot gets Abort when the set fails after
// PrepareForSnapshot (B.10); one that failed at PrepareForBackup never got
// PrepareForSnapshot, so the set's failure sends it nothing, and AbortBackup
// does.
func TestDFailedWriterStillGetsTheSetsAbort(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	early, prep := newTestWriter("early"), newTestWriter("prep")
	early.on[vss.EventPrepareForBackup] = func(*Event) bool { return false }
	prep.on[vss.EventPrepareForSnapshot] = func(*Event) bool { return false }
	for _, w := range []*testWriter{early, prep} {
		_, err := b.s.AddWriter(w, WriterOptions{Name: w.name})
		require.NoError(t, err)
	}
	b.prov.hook(vss.MethodPreCommitSnapshots, func(context.Context) error { return vss.VSS_E_PROVIDER_VETO })
	bc, a := b.backup(ctx, "lun0")
	require.ErrorIs(t, a.Wait(ctx), vss.VSS_E_PROVIDER_VETO)
	require.Equal(t, []string{"Identify", "PrepareForBackup"}, early.Events())
	require.Equal(t, []string{"Identify", "PrepareForBackup", "PrepareForSnapshot", "Abort"}, prep.Events())
	require.NoError(t, bc.AbortBackup(ctx))
	require.Equal(t, []string{"Identify", "PrepareForBackup", "Abort"}, early.Events())
	require.NoError(t, bc.Close(ctx))
}

// TestB7RequesterCancelIsNotAProviderError: the provider's E_ABORT from an
// EndPrepareSnapshots that the requester's Cancel stopped is the cancel
// VSS caused, not a provider error: its span says so, it is not translated
// to VSS_E_UNEXPECTED_PROVIDER_ERROR, and no event 12293 is logged.
func TestB7RequesterCancelIsNotAProviderError(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	inEnd := make(chan struct{})
	aborted := make(chan struct{})
	b.prov.hook(vss.MethodEndPrepareSnapshots, func(ctx context.Context) error {
		close(inEnd)
		select {
		case <-aborted:
			return vss.E_ABORT
		case <-time.After(5 * time.Second):
			return errors.New("AbortSnapshots never came")
		}
	})
	b.prov.hook(vss.MethodAbortSnapshots, func(context.Context) error { close(aborted); return nil })
	bc, a := b.backup(ctx, "lun0")
	<-inEnd
	require.Equal(t, vss.S_OK, a.Cancel())
	err := a.Wait(ctx)
	require.ErrorIs(t, err, vss.E_ABORT)
	require.NotErrorIs(t, err, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	require.False(t, b.logs.contains(`"event_id":12293`), "no provider error is logged for a cancel")
	var end *Span
	for _, si := range b.s.Sets() {
		for _, sp := range si.Timeline.Spans() {
			if sp.Kind == KindProvider && sp.Name == vss.MethodEndPrepareSnapshots.String() {
				end = &sp
			}
		}
	}
	require.NotNil(t, end)
	require.Equal(t, vss.E_ABORT.Name(), end.Result)
	require.Contains(t, end.Detail, "cancelled by the requester")
	require.NoError(t, bc.AbortBackup(ctx))
	require.NoError(t, bc.Close(ctx))
}

// TestDWriterPanicLoggedOnce: a writer's panic is one event-log record
// (8229, result=panic, the panic's text), and one failure in its status.
func TestDWriterPanicLoggedOnce(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	w := newTestWriter("w")
	w.on[vss.EventPrepareForSnapshot] = func(*Event) bool { panic("writer bug") }
	w.on[vss.EventPostSnapshot] = func(*Event) bool { panic("writer bug") }
	w.on[vss.EventBackupComplete] = func(*Event) bool { panic("writer bug") }
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	_ = bc.BackupComplete(ctx)
	require.Equal(t, "panic: writer bug", statusOf(t, bc, "w").Message)
	require.NoError(t, bc.Close(ctx))
	n := 0
	b.logs.mu.Lock()
	for _, r := range b.logs.recs {
		n += strings.Count(r, "writer bug")
	}
	b.logs.mu.Unlock()
	require.Equal(t, 1, n, "one panic, one record")
}

// TestA10EveryCallAfterCloseAnswersBadState: once released, the object
// answers VSS_E_BAD_STATE to every call, with one error, whatever the call
// (GetSnapshotProperties answered S_OK, DeleteSnapshots VSS_E_UNEXPECTED).
// Close itself may be called again and does nothing.
func TestA10EveryCallAfterCloseAnswersBadState(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	w := newTestWriter("w")
	_, err := b.s.AddWriter(w, WriterOptions{Name: "w"})
	require.NoError(t, err)
	bc := b.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_APP_ROLLBACK)) // persistent: the snapshot outlives Close
	require.NoError(t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	set, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	snap, err := bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL)
	require.NoError(t, err)
	require.NoError(t, bc.PrepareForBackup(ctx))
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Wait(ctx))
	_, err = bc.GetSnapshotProperties(snap)
	require.NoError(t, err)
	require.NoError(t, bc.Close(ctx))
	require.NoError(t, bc.Close(ctx), "a second Close does nothing")

	calls := map[string]func() error{
		"InitializeForBackup":   func() error { return bc.InitializeForBackup(nil) },
		"SetContext":            func() error { return bc.SetContext(vss.VSS_CTX_BACKUP) },
		"SetBackupState":        func() error { return bc.SetBackupState(true, false, vss.VSS_BT_FULL, false) },
		"GatherWriterMetadata":  func() error { return bc.GatherWriterMetadata(ctx) },
		"GatherWriterStatus":    func() error { _, err := bc.GatherWriterStatus(ctx); return err },
		"AddComponent":          func() error { return bc.AddComponent(vss.NewID(), "data") },
		"StartSnapshotSet":      func() error { _, err := bc.StartSnapshotSet(); return err },
		"AddToSnapshotSet":      func() error { _, err := bc.AddToSnapshotSet(ctx, "lun0", vss.GUID_NULL); return err },
		"PrepareForBackup":      func() error { return bc.PrepareForBackup(ctx) },
		"DoSnapshotSet":         func() error { _, err := bc.DoSnapshotSet(ctx); return err },
		"GetSnapshotProperties": func() error { _, err := bc.GetSnapshotProperties(snap); return err },
		"SetBackupSucceeded":    func() error { return bc.SetBackupSucceeded(vss.NewID(), "data", true) },
		"BackupComplete":        func() error { return bc.BackupComplete(ctx) },
		"AbortBackup":           func() error { return bc.AbortBackup(ctx) },
		"DeleteSnapshots": func() error {
			_, _, err := bc.DeleteSnapshots(ctx, set, vss.VSS_OBJECT_SNAPSHOT_SET, false)
			return err
		},
		"BreakSnapshotSet":   func() error { return bc.BreakSnapshotSet(ctx, set) },
		"BreakSnapshotSetEx": func() error { return bc.BreakSnapshotSetEx(ctx, set, vss.VSS_BREAKEX_FLAG_MASK_LUNS) },
		"ImportSnapshots":    func() error { _, err := bc.ImportSnapshots(ctx); return err },
		"ExposeSnapshot":     func() error { _, err := bc.ExposeSnapshot(ctx, snap); return err },
		"RevertToSnapshot":   func() error { return bc.RevertToSnapshot(ctx, snap, false) },
		"SaveDocument":       func() error { _, err := bc.SaveDocument(); return err },
	}
	for name, call := range calls {
		err := call()
		require.ErrorIs(t, err, vss.VSS_E_BAD_STATE, "%s after Close", name)
		require.Equal(t, errReleased.Error(), err.Error(), "%s after Close: one answer for every call", name)
	}
	require.Len(t, b.s.Query(), 1, "the persistent snapshot is still the service's")
}
