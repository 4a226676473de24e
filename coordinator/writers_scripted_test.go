package coordinator

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// callWriterEvent calls w's callback for event e.
func callWriterEvent(w Writer, e vss.WriterEvent, ev *Event) bool {
	if _, ok := e.FailedState(); !ok && e != vss.EventAbort {
		panic(fmt.Sprintf("no callback for %v", e))
	}
	ev.Kind = e
	return Call(w, ev)
}

// scriptedOutcome is what one scripted callback did.
type scriptedOutcome struct {
	ok       bool
	panicked any
	failure  *failure
	took     time.Duration
}

// runScripted calls w's callback for e with an Event whose context ends
// after window, and closes the event as the coordinator would.
func runScripted(t *testing.T, w Writer, e vss.WriterEvent, window time.Duration) scriptedOutcome {
	t.Helper()
	start := time.Now() // before the context, whose deadline is measured against it
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	ev := &Event{Ctx: ctx, Kind: e, SnapshotSetID: vss.NewID()}
	if e == vss.EventIdentify {
		ev.Metadata = &Metadata{}
	}
	var out scriptedOutcome
	func() {
		defer func() { out.panicked = recover() }()
		out.ok = callWriterEvent(w, e, ev)
	}()
	out.took = time.Since(start)
	out.failure = ev.end()
	return out
}

func TestScriptedEveryActionAtEveryEvent(t *testing.T) {
	const window = 40 * time.Millisecond
	type want struct {
		ok      bool
		panic   any
		failure *failure
		refused error // Is-matched against ReceivedEvent.Refused.
		minTook time.Duration
	}
	cases := []struct {
		name   string
		action func(e vss.WriterEvent) Action
		want   func(e vss.WriterEvent) want
	}{
		{
			name:   "none",
			action: nil,
			want:   func(vss.WriterEvent) want { return want{ok: true} },
		},
		{
			name:   "ok",
			action: func(vss.WriterEvent) Action { return Action{Result: ResultOK} },
			want:   func(vss.WriterEvent) want { return want{ok: true} },
		},
		{
			name:   "delay then ok",
			action: func(vss.WriterEvent) Action { return Action{Delay: 10 * time.Millisecond} },
			want:   func(vss.WriterEvent) want { return want{ok: true, minTook: 10 * time.Millisecond} },
		},
		{
			name:   "fail without code",
			action: func(vss.WriterEvent) Action { return Action{Result: ResultFail} },
			want:   func(vss.WriterEvent) want { return want{ok: false} },
		},
		{
			name: "fail with code",
			action: func(e vss.WriterEvent) Action {
				return Action{Result: ResultFail, Failure: vss.VSS_E_WRITERERROR_NONRETRYABLE, Illegal: e == vss.EventIdentify}
			},
			want: func(e vss.WriterEvent) want {
				if e == vss.EventIdentify {
					return want{ok: false, refused: ErrFailureInIdentify}
				}
				return want{ok: false, failure: &failure{hr: vss.VSS_E_WRITERERROR_NONRETRYABLE}}
			},
		},
		{
			name: "fail Ex",
			action: func(e vss.WriterEvent) Action {
				return Action{Result: ResultFail, Failure: vss.VSS_E_WRITERERROR_PARTIAL_FAILURE,
					Application: vss.E_OUTOFMEMORY, Message: "disk full", Illegal: e == vss.EventIdentify}
			},
			want: func(e vss.WriterEvent) want {
				if e == vss.EventIdentify {
					return want{ok: false, refused: ErrFailureInIdentify}
				}
				return want{ok: false, failure: &failure{hr: vss.VSS_E_WRITERERROR_PARTIAL_FAILURE, app: vss.E_OUTOFMEMORY, msg: "disk full"}}
			},
		},
		{
			name: "veto",
			action: func(e vss.WriterEvent) Action {
				return Action{Result: ResultVeto, Failure: vss.VSS_E_WRITERERROR_RETRYABLE, Illegal: e == vss.EventIdentify}
			},
			want: func(e vss.WriterEvent) want {
				if e == vss.EventIdentify {
					return want{ok: true, refused: ErrFailureInIdentify}
				}
				return want{ok: true, failure: &failure{hr: vss.VSS_E_WRITERERROR_RETRYABLE}}
			},
		},
		{
			name: "illegal code refused",
			action: func(vss.WriterEvent) Action {
				return Action{Result: ResultFail, Failure: vss.E_FAIL, Illegal: true}
			},
			want: func(vss.WriterEvent) want { return want{ok: false, refused: ErrFailureNotAllowed} },
		},
		{
			name:   "panic",
			action: func(vss.WriterEvent) Action { return Action{Result: ResultPanic, Message: "boom"} },
			want:   func(vss.WriterEvent) want { return want{panic: "boom"} },
		},
		{
			name:   "panic default message",
			action: func(vss.WriterEvent) Action { return Action{Result: ResultPanic} },
			want: func(e vss.WriterEvent) want {
				return want{panic: fmt.Sprintf("scripted writer: panic at %v", e)}
			},
		},
		{
			name:   "hang",
			action: func(vss.WriterEvent) Action { return Action{Result: ResultHang} },
			want:   func(vss.WriterEvent) want { return want{ok: false, minTook: window} },
		},
		{
			name: "delay cut short by ctx",
			action: func(e vss.WriterEvent) Action {
				return Action{Delay: time.Hour, Result: ResultVeto, Failure: vss.VSS_E_WRITERERROR_RETRYABLE, Illegal: e == vss.EventIdentify}
			},
			want: func(vss.WriterEvent) want { return want{ok: false, minTook: window} },
		},
	}
	for _, c := range cases {
		for _, e := range vss.WriterEvents() {
			t.Run(c.name+"/"+e.String(), func(t *testing.T) {
				s := Script{}
				if c.action != nil {
					s.On = map[vss.WriterEvent]Action{e: c.action(e)}
				}
				w, err := NewScriptedWriter(s)
				require.NoError(t, err)
				got := runScripted(t, w, e, window)
				want := c.want(e)

				require.Equal(t, want.panic, got.panicked)
				if want.panic == nil {
					require.Equal(t, want.ok, got.ok)
				}
				require.Equal(t, want.failure, got.failure)
				require.GreaterOrEqual(t, got.took, want.minTook)
				require.Less(t, got.took, time.Second, "a callback must return soon after its window")

				evs := w.Events()
				require.Len(t, evs, 1)
				require.Equal(t, e, evs[0].Kind)
				if want.refused != nil {
					require.ErrorIs(t, evs[0].Refused, want.refused)
				} else {
					require.NoError(t, evs[0].Refused)
				}
			})
		}
	}
}

func TestScriptedIdentifyDeclaresComponents(t *testing.T) {
	comps := []ComponentInfo{
		{Name: "db", LogicalPath: "sql", Volumes: []string{"lun0"}},
		{Name: "log", LogicalPath: "sql", Volumes: []string{"lun1"}},
	}
	s := Script{Components: comps}
	w, err := NewScriptedWriter(s)
	require.NoError(t, err)
	comps[0].Volumes[0] = "changed after construction"

	md := &Metadata{}
	ev := &Event{Ctx: t.Context(), Kind: vss.EventIdentify, Metadata: md}
	require.True(t, w.OnIdentify(ev))
	require.Equal(t, []ComponentInfo{
		{Name: "db", LogicalPath: "sql", Volumes: []string{"lun0"}},
		{Name: "log", LogicalPath: "sql", Volumes: []string{"lun1"}},
	}, md.Components)

	// Identify can arrive at any time, and each declares the same set.
	md2 := &Metadata{}
	require.True(t, w.OnIdentify(&Event{Ctx: t.Context(), Kind: vss.EventIdentify, Metadata: md2}))
	require.Equal(t, md.Components, md2.Components)
	md.Components[0].Volumes[0] = "x"
	require.Equal(t, "lun0", md2.Components[0].Volumes[0], "declarations share no slices")
}

func TestScriptedHook(t *testing.T) {
	called := 0
	w, err := NewScriptedWriter(Script{On: map[vss.WriterEvent]Action{
		vss.EventFreeze: {Delay: 5 * time.Millisecond, Result: ResultPanic},
	}}, WithHook(vss.EventFreeze, func(ev *Event) bool {
		called++
		require.NoError(t, ev.SetWriterFailure(vss.VSS_E_WRITERERROR_TIMEOUT))
		return false
	}))
	require.NoError(t, err)
	got := runScripted(t, w, vss.EventFreeze, time.Second)
	require.Nil(t, got.panicked, "the hook replaces the result")
	require.False(t, got.ok)
	require.Equal(t, &failure{hr: vss.VSS_E_WRITERERROR_TIMEOUT}, got.failure)
	require.GreaterOrEqual(t, got.took, 5*time.Millisecond, "the hook runs after the delay")
	require.Equal(t, 1, called)

	require.True(t, runScripted(t, w, vss.EventThaw, time.Second).ok, "other events keep their action")
}

func TestScriptedValidate(t *testing.T) {
	bad := []struct {
		name string
		s    Script
	}{
		{"unnamed component", Script{Components: []ComponentInfo{{LogicalPath: "a"}}}},
		{"component twice", Script{Components: []ComponentInfo{{Name: "a"}, {Name: "a"}}}},
		{"no event", Script{On: map[vss.WriterEvent]Action{0: {}}}},
		{"unknown event", Script{On: map[vss.WriterEvent]Action{99: {}}}},
		{"unknown result", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: "explode"}}}},
		{"negative delay", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Delay: -1}}}},
		{"veto without code", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultVeto}}}},
		{"ok with code", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Failure: vss.VSS_E_WRITERERROR_RETRYABLE}}}},
		{"hang with delay", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultHang, Delay: 1}}}},
		{"panic with code", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultPanic, Failure: vss.VSS_E_WRITERERROR_RETRYABLE}}}},
		{"fail message without code", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultFail, Message: "m"}}}},
		{"illegal code unmarked", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultFail, Failure: vss.E_FAIL}}}},
		{"Ex-only code through SetWriterFailure", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultFail, Failure: vss.VSS_E_WRITERERROR_PARTIAL_FAILURE}}}},
		{"failure at Identify unmarked", Script{On: map[vss.WriterEvent]Action{vss.EventIdentify: {Result: ResultVeto, Failure: vss.VSS_E_WRITERERROR_RETRYABLE}}}},
		{"Illegal on a legal code", Script{On: map[vss.WriterEvent]Action{vss.EventFreeze: {Result: ResultFail, Failure: vss.VSS_E_WRITERERROR_RETRYABLE, Illegal: true}}}},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			require.ErrorIs(t, b.s.Validate(), ErrInvalidScript)
			_, err := NewScriptedWriter(b.s)
			require.ErrorIs(t, err, ErrInvalidScript)
		})
	}

	good := Script{
		Components: []ComponentInfo{{Name: "a"}, {Name: "a", LogicalPath: "other"}},
		On: map[vss.WriterEvent]Action{
			vss.EventIdentify:         {Result: ResultFail},
			vss.EventFreeze:           {Delay: time.Second, Result: ResultVeto, Failure: vss.VSS_E_WRITERERROR_OUTOFRESOURCES},
			vss.EventThaw:             {Result: ResultFail, Failure: vss.VSS_E_WRITERERROR_PARTIAL_FAILURE, Message: "Ex accepts PARTIAL_FAILURE"},
			vss.EventPostSnapshot:     {Result: ResultPanic, Message: "m"},
			vss.EventAbort:            {Result: ResultHang},
			vss.EventPrepareForBackup: {Result: ResultFail, Failure: vss.VSS_E_WRITERERROR_RECOVERY_FAILED, Illegal: true},
		},
	}
	require.NoError(t, good.Validate())
}

// TestScriptedEventsConcurrent checks that Events keeps the order in which
// callbacks were entered when many run at once: each caller's own events
// appear in its order, and times never decrease.
func TestScriptedEventsConcurrent(t *testing.T) {
	const callers, perCaller = 8, 60
	w, err := NewScriptedWriter(Script{On: map[vss.WriterEvent]Action{
		vss.EventFreeze: {Result: ResultVeto, Failure: vss.VSS_E_WRITERERROR_RETRYABLE},
	}})
	require.NoError(t, err)
	events := vss.WriterEvents()
	sets := make([]vss.ID, callers)
	var wg sync.WaitGroup
	for c := range callers {
		sets[c] = vss.NewID()
		wg.Go(func() {
			for i := range perCaller {
				e := events[i%len(events)]
				ev := &Event{Ctx: t.Context(), Kind: e, SnapshotSetID: sets[c]}
				callWriterEvent(w, e, ev)
				ev.end()
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			_ = w.Events() // Readers race with the callbacks.
		}
	})
	wg.Wait()

	got := w.Events()
	require.Len(t, got, callers*perCaller)
	next := make(map[vss.ID]int)
	for i, r := range got {
		if i > 0 {
			require.False(t, r.At.Before(got[i-1].At), "event %d is older than event %d", i, i-1)
		}
		n := next[r.SnapshotSetID]
		require.Equal(t, events[n%len(events)], r.Kind, "caller %v, its event %d", r.SnapshotSetID, n)
		next[r.SnapshotSetID] = n + 1
		require.NoError(t, r.Refused)
	}
	for _, id := range sets {
		require.Equal(t, perCaller, next[id])
	}
}
