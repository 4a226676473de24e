package daemon

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/vss"
)

// attach registers w as a remote writer and serves its events until the
// test ends; the events it handled are in the returned log.
func attach(t *testing.T, c *Client, reg WriterRegistration, w coordinator.Writer) (*Attachment, *eventLog) {
	t.Helper()
	a, err := c.Attach(context.Background(), reg)
	require.NoError(t, err)
	log := &eventLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, w, log.add) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return a, log
}

type eventLog struct {
	mu   sync.Mutex
	recs []EventRecord
}

func (l *eventLog) add(r EventRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
}

func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		out = append(out, r.Event.Kind)
	}
	return out
}

func script(t *testing.T, on map[vss.WriterEvent]coordinator.Action) *coordinator.ScriptedWriter {
	w, err := coordinator.NewScriptedWriter(coordinator.Script{On: on})
	require.NoError(t, err)
	return w
}

// TestRemoteWriterVeto checks D2's happy path: a remote writer's veto at
// Freeze reaches the set's writer status, and the set is still created.
func TestRemoteWriterVeto(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	w := script(t, map[vss.WriterEvent]coordinator.Action{
		vss.EventFreeze: {Result: coordinator.ResultVeto, Failure: vss.VSS_E_WRITERERROR_RETRYABLE, Message: "busy"}})
	a, log := attach(t, c, WriterRegistration{Name: "db", Level: "back-end", FreezeTimeout: Duration(5 * time.Second)}, w)
	ws, err := c.Writers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	require.Equal(t, WriterInfo{ID: a.Info().ID, Name: "db", Kind: "remote", Level: "back-end", FreezeTimeout: Duration(5 * time.Second),
		InstanceID: ws[0].InstanceID, Connected: true, LastSeen: ws[0].LastSeen}, ws[0])
	require.False(t, ws[0].InstanceID.IsNull(), "a writer that is not ephemeral is subscribed at once")

	rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}})
	require.NoError(t, err)
	require.Equal(t, "created", rep.State)
	require.Equal(t, []WriterStatusReport{{Name: "db", InstanceID: ws[0].InstanceID, State: "VSS_WS_FAILED_AT_FREEZE",
		Failure: "VSS_E_WRITERERROR_RETRYABLE", Message: "busy"}}, rep.Writers)
	// A writer in a failed state gets no later event of the sequence
	// (coordinator, rule D, failed states): Thaw ends the freeze it went
	// through with, and nothing follows but BackupShutdown.
	want := []string{"Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw"}
	require.Eventually(t, func() bool { return len(log.kinds()) == len(want) }, 5*time.Second, time.Millisecond,
		"the client logs an event after its answer is posted")
	require.Equal(t, want, log.kinds())
	require.True(t, hasSpan(rep, "freeze-window"))

	_, err = c.DeleteSet(ctx, rep.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(log.kinds()) == len(want)+1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "BackupShutdown", log.kinds()[len(want)], "releasing the held requester sends BackupShutdown")
}

// TestRemoteWriterEphemeral checks that writers named by a request take
// part in that set only, and that CreateSetWith detaches them.
func TestRemoteWriterEphemeral(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	w := script(t, map[vss.WriterEvent]coordinator.Action{vss.EventThaw: {Result: coordinator.ResultFail, Failure: vss.VSS_E_WRITERERROR_NONRETRYABLE}})
	var mu sync.Mutex
	var kinds []string
	rep, err := c.CreateSetWith(ctx, CreateSetRequest{Targets: []string{"lun1"}, Context: "app-rollback"},
		[]LocalWriter{{Registration: WriterRegistration{Name: "once"}, Writer: w}},
		func(r EventRecord) { mu.Lock(); kinds = append(kinds, r.Event.Kind); mu.Unlock() })
	require.NoError(t, err)
	require.Equal(t, "VSS_WS_FAILED_AT_THAW", rep.Writers[0].State)
	require.Contains(t, kinds, "Abort", "a failed Thaw raises Abort (B.10)")
	ws, err := c.Writers(ctx)
	require.NoError(t, err)
	require.Empty(t, ws, "the ephemeral writer was detached")

	// A set without a writer context sends no event at all.
	rep, err = c.CreateSetWith(ctx, CreateSetRequest{Targets: []string{"lun1"}, Context: "nas-rollback"},
		[]LocalWriter{{Registration: WriterRegistration{Name: "none"}, Writer: w}}, func(EventRecord) { t.Error("event in a writerless context") })
	require.NoError(t, err)
	require.Empty(t, rep.Writers)
}

// TestRemoteWriterWindow checks D2: a client slower than the freeze window
// fails the writer with VSS_E_WRITERERROR_TIMEOUT without holding the set,
// and its late answer is refused.
func TestRemoteWriterWindow(t *testing.T) {
	cfg := testConfig()
	_, c := start(t, cfg)
	ctx := context.Background()
	release := make(chan struct{})
	// The hook overstays its window and answers only when the window ends
	// (a callback must return when ev.Ctx ends): its answer comes late.
	w, err := coordinator.NewScriptedWriter(coordinator.Script{}, coordinator.WithHook(vss.EventFreeze, func(ev *coordinator.Event) bool {
		select {
		case <-release:
		case <-ev.Ctx.Done():
			time.Sleep(20 * time.Millisecond)
		}
		return true
	}))
	require.NoError(t, err)
	_, log := attach(t, c, WriterRegistration{Name: "slow", FreezeTimeout: Duration(100 * time.Millisecond)}, w)
	t0 := time.Now()
	rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
	require.NoError(t, err)
	require.Less(t, time.Since(t0), 5*time.Second)
	require.Equal(t, "VSS_WS_FAILED_AT_FREEZE", rep.Writers[0].State)
	require.Equal(t, "VSS_E_WRITERERROR_TIMEOUT", rep.Writers[0].Failure)
	close(release)
	require.Eventually(t, func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, r := range log.recs {
			if r.Event.Kind == "Freeze" {
				return r.Error != ""
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "the late answer to Freeze was refused")
}

// TestRemoteWriterDropped checks D3: a writer whose client goes silent is
// dropped, and its answers are then refused.
func TestRemoteWriterDropped(t *testing.T) {
	cfg := testConfig()
	cfg.Windows.RemoteWriter = 100 * time.Millisecond
	_, c := start(t, cfg)
	ctx := context.Background()
	info, err := c.RegisterWriter(ctx, WriterRegistration{Name: "ghost"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ws, err := c.Writers(ctx)
		return err == nil && len(ws) == 0
	}, 5*time.Second, 10*time.Millisecond)
	_, err = c.NextEvent(ctx, info.ID, time.Millisecond)
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	err = c.AnswerEvent(ctx, info.ID, "1", EventAnswer{OK: true})
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)

	// A set after the drop does not wait for the ghost.
	rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
	require.NoError(t, err)
	require.Empty(t, rep.Writers)
}

// TestRemoteWriterAnswers checks the poll and answer protocol directly:
// a repeated poll hands over the same event, a bad answer changes
// nothing, and a second answer is refused.
func TestRemoteWriterAnswers(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	info, err := c.RegisterWriter(ctx, WriterRegistration{Name: "manual"})
	require.NoError(t, err)
	done := make(chan *SetReport, 1)
	go func() {
		rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	answered := map[string]int{}
	var rep *SetReport
	for rep == nil {
		select {
		case rep = <-done:
			continue
		default:
		}
		ev, err := c.NextEvent(ctx, info.ID, 20*time.Millisecond)
		require.NoError(t, err)
		if ev == nil {
			continue
		}
		again, err := c.NextEvent(ctx, info.ID, time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, ev.ID, again.ID, "a poll hands over the event until it is answered")
		require.Positive(t, time.Duration(ev.Timeout))
		err = c.AnswerEvent(ctx, info.ID, ev.ID, EventAnswer{OK: true, Failure: "VSS_E_NOPE"})
		require.ErrorIs(t, err, vss.E_INVALIDARG)
		a := EventAnswer{OK: true}
		if ev.Kind == "PostSnapshot" {
			a = EventAnswer{OK: true, Failure: "VSS_E_WRITERERROR_OUTOFRESOURCES", Application: "E_OUTOFMEMORY", Message: "tight"}
		}
		require.NoError(t, c.AnswerEvent(ctx, info.ID, ev.ID, a))
		err = c.AnswerEvent(ctx, info.ID, ev.ID, a)
		var ae *APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, http.StatusGone, ae.Status, "a second answer is refused")
		answered[ev.Kind]++
	}
	require.Equal(t, "VSS_WS_FAILED_AT_POST_SNAPSHOT", rep.Writers[0].State)
	require.Equal(t, "VSS_E_WRITERERROR_OUTOFRESOURCES", rep.Writers[0].Failure)
	require.Equal(t, "E_OUTOFMEMORY", rep.Writers[0].Application)
	// Failed at PostSnapshot, the writer gets no BackupComplete (rule D,
	// failed states).
	require.Equal(t, map[string]int{"Identify": 1, "PrepareForBackup": 1, "PrepareForSnapshot": 1, "Freeze": 1, "Thaw": 1,
		"PostSnapshot": 1, "BackupShutdown": 1}, answered)
	_, err = c.UnregisterWriter(ctx, info.ID)
	require.NoError(t, err)
}
