package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeProvider is a minimal hardware provider over a lun.Array whose every
// method can be hooked, and which logs its calls.
type fakeProvider struct {
	a     *lun.Array
	mu    sync.Mutex
	calls []string
	hooks map[vss.ProviderMethod]func(ctx context.Context) error
	// sets: set -> prepared snapshots
	sets    map[vss.ID][]*lun.PendingSnapshot
	targets map[string]*lun.LUN // NAA -> snapshot LUN
	refuse  bool                // AreLunsSupported answers false
	counts  []int               // what PostCommitSnapshots was told
}

var _ provider.HardwareProviderEx = (*fakeProvider)(nil)

func newFakeProvider(a *lun.Array) *fakeProvider {
	return &fakeProvider{a: a, hooks: map[vss.ProviderMethod]func(context.Context) error{},
		sets: map[vss.ID][]*lun.PendingSnapshot{}, targets: map[string]*lun.LUN{}}
}

func (f *fakeProvider) hook(m vss.ProviderMethod, fn func(ctx context.Context) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks[m] = fn
}

func (f *fakeProvider) enter(ctx context.Context, m vss.ProviderMethod, set vss.ID) error {
	f.mu.Lock()
	f.calls = append(f.calls, m.String())
	h := f.hooks[m]
	f.mu.Unlock()
	if h != nil {
		return h(ctx)
	}
	return nil
}

func (f *fakeProvider) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeProvider) AreLunsSupported(ctx context.Context, c vss.SnapshotContext, devices []string, luns []provider.LunInfo) (bool, error) {
	if err := f.enter(ctx, vss.MethodAreLunsSupported, vss.ID{}); err != nil {
		return false, err
	}
	return !f.refuse && !c.Has(vss.VSS_VOLSNAP_ATTR_PLEX), nil
}

func (f *fakeProvider) BeginPrepareSnapshot(ctx context.Context, set, snap vss.ID, c vss.SnapshotContext, devices []string, luns []provider.LunInfo) error {
	if err := f.enter(ctx, vss.MethodBeginPrepareSnapshot, set); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ps := range f.sets { // an out-of-sequence set discards stale ones
		if id != set {
			for _, p := range ps {
				p.Abort()
			}
			delete(f.sets, id)
		}
	}
	for _, d := range devices {
		if slices.ContainsFunc(f.sets[set], func(p *lun.PendingSnapshot) bool { return p.Source().Name() == d }) {
			continue // a LUN shared by two volumes is snapshotted once per set
		}
		p, err := f.a.PrepareSnapshot(d, "")
		if err != nil {
			return err
		}
		f.sets[set] = append(f.sets[set], p)
	}
	return nil
}

func (f *fakeProvider) GetTargetLuns(ctx context.Context, devices []string, sources []provider.LunInfo) ([]provider.LunInfo, error) {
	if err := f.enter(ctx, vss.MethodGetTargetLuns, vss.ID{}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []provider.LunInfo
	for _, d := range devices {
		for _, ps := range f.sets {
			for _, p := range ps {
				if p.Source().Name() == d {
					info := provider.LunInfoOf(p.LUN())
					f.targets[string(info.NAA())] = p.LUN()
					out = append(out, info)
				}
			}
		}
	}
	return out, nil
}

func (f *fakeProvider) LocateLuns(ctx context.Context, luns []provider.LunInfo) error {
	if err := f.enter(ctx, vss.MethodLocateLuns, vss.ID{}); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, info := range luns {
		if l := f.targets[string(info.NAA())]; l != nil {
			l.SetMasked(false)
		}
	}
	return nil
}

func (f *fakeProvider) FillInLunInfo(ctx context.Context, device string, info *provider.LunInfo) (bool, error) {
	if err := f.enter(ctx, vss.MethodFillInLunInfo, vss.ID{}); err != nil {
		return false, err
	}
	l, err := f.a.Get(device)
	if err != nil {
		return false, nil
	}
	*info = provider.LunInfoOf(l)
	return true, nil
}

func (f *fakeProvider) OnLunEmpty(ctx context.Context, device string, info provider.LunInfo) error {
	if err := f.enter(ctx, vss.MethodOnLunEmpty, vss.ID{}); err != nil {
		return err
	}
	return f.a.Delete(device)
}

func (f *fakeProvider) EndPrepareSnapshots(ctx context.Context, set vss.ID) error {
	return f.enter(ctx, vss.MethodEndPrepareSnapshots, set)
}

func (f *fakeProvider) PreCommitSnapshots(ctx context.Context, set vss.ID) error {
	return f.enter(ctx, vss.MethodPreCommitSnapshots, set)
}

func (f *fakeProvider) CommitSnapshots(ctx context.Context, set vss.ID) error {
	if err := f.enter(ctx, vss.MethodCommitSnapshots, set); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.sets[set] {
		if err := p.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeProvider) PostCommitSnapshots(ctx context.Context, set vss.ID, n int) error {
	f.mu.Lock()
	f.counts = append(f.counts, n)
	f.mu.Unlock()
	return f.enter(ctx, vss.MethodPostCommitSnapshots, set)
}

func (f *fakeProvider) PreFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return f.enter(ctx, vss.MethodPreFinalCommitSnapshots, set)
}

func (f *fakeProvider) PostFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	err := f.enter(ctx, vss.MethodPostFinalCommitSnapshots, set)
	f.mu.Lock()
	delete(f.sets, set)
	f.mu.Unlock()
	return err
}

func (f *fakeProvider) AbortSnapshots(ctx context.Context, set vss.ID) error {
	err := f.enter(ctx, vss.MethodAbortSnapshots, set)
	f.mu.Lock()
	for _, p := range f.sets[set] {
		p.Abort()
	}
	delete(f.sets, set)
	f.mu.Unlock()
	return err
}

func (f *fakeProvider) GetProviderCapabilities(ctx context.Context) (vss.ProviderCapability, error) {
	return 0, nil
}

func (f *fakeProvider) OnLunStateChange(ctx context.Context, snaps, origs []provider.LunInfo, flags vss.HardwareOptions) error {
	if err := f.enter(ctx, vss.MethodOnLunStateChange, vss.ID{}); err != nil {
		return err
	}
	for _, info := range snaps {
		f.mu.Lock()
		l := f.targets[string(info.NAA())]
		f.mu.Unlock()
		if l == nil {
			continue
		}
		if flags&vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE != 0 {
			if err := l.MakeWritable(); err != nil {
				return err
			}
		}
		if flags&vss.VSS_ONLUNSTATECHANGE_DO_MASK_LUNS != 0 {
			l.SetMasked(true)
		}
	}
	return nil
}

type doneAsync struct{}

func (doneAsync) Wait(context.Context) error { return nil }

func (f *fakeProvider) ResyncLuns(ctx context.Context, sources, targets []provider.LunInfo) (provider.Async, error) {
	if err := f.enter(ctx, vss.MethodResyncLuns, vss.ID{}); err != nil {
		return nil, err
	}
	for i := range sources {
		f.mu.Lock()
		t := f.targets[string(targets[i].NAA())]
		f.mu.Unlock()
		var src string
		for _, l := range f.a.List() {
			id := l.Identity().NAA
			if string(id[:]) == string(sources[i].NAA()) {
				src = l.Name()
			}
		}
		if t == nil || src == "" {
			return nil, vss.E_INVALIDARG
		}
		if err := f.a.Revert(src, t.Name()); err != nil {
			return nil, err
		}
	}
	return doneAsync{}, nil
}

func (f *fakeProvider) OnReuseLuns(ctx context.Context, snaps, origs []provider.LunInfo) error {
	return nil
}

// testWriter records the events it gets and answers through per-event
// functions (true by default).
type testWriter struct {
	BaseWriter
	name string
	mu   sync.Mutex
	got  []string
	on   map[vss.WriterEvent]func(ev *Event) bool
}

func newTestWriter(name string) *testWriter {
	return &testWriter{name: name, on: map[vss.WriterEvent]func(*Event) bool{}}
}

func (w *testWriter) handle(ev *Event) bool {
	w.mu.Lock()
	w.got = append(w.got, ev.Kind.String())
	fn := w.on[ev.Kind]
	w.mu.Unlock()
	if ev.Kind == vss.EventIdentify {
		ev.Metadata.AddComponent(ComponentInfo{Name: "db", LogicalPath: w.name})
	}
	if fn != nil {
		return fn(ev)
	}
	return true
}

func (w *testWriter) Events() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

func (w *testWriter) OnIdentify(ev *Event) bool        { return w.handle(ev) }
func (w *testWriter) OnPrepareBackup(ev *Event) bool   { return w.handle(ev) }
func (w *testWriter) OnPrepareSnapshot(ev *Event) bool { return w.handle(ev) }
func (w *testWriter) OnFreeze(ev *Event) bool          { return w.handle(ev) }
func (w *testWriter) OnThaw(ev *Event) bool            { return w.handle(ev) }
func (w *testWriter) OnPostSnapshot(ev *Event) bool    { return w.handle(ev) }
func (w *testWriter) OnAbort(ev *Event) bool           { return w.handle(ev) }
func (w *testWriter) OnBackupComplete(ev *Event) bool  { return w.handle(ev) }
func (w *testWriter) OnBackupShutdown(ev *Event) bool  { return w.handle(ev) }

// bench is a service over a small array with one fake provider.
type bench struct {
	t    *testing.T
	a    *lun.Array
	s    *Service
	prov *fakeProvider
	reg  Registration
	logs *logSink
}

// logSink collects log records.
type logSink struct {
	mu   sync.Mutex
	recs []string
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, string(p))
	return len(p), nil
}

func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// fast windows: the 10 s and 60 s windows in milliseconds.
var fast = Config{HoldWindow: 200 * time.Millisecond, FreezeWindow: 400 * time.Millisecond,
	PrepareWindow: time.Second, EventWindow: time.Second, ProviderTimeout: 2 * time.Second}

func newBench(t *testing.T, cfg Config, luns ...string) *bench {
	t.Helper()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	for _, n := range luns {
		_, err := a.Create(n, lun.Options{Size: 1 << 20})
		require.NoError(t, err)
	}
	logs := &logSink{}
	cfg.Logger = slog.New(slog.NewJSONHandler(io.MultiWriter(logs), nil))
	s := New(a, cfg)
	p := newFakeProvider(a)
	reg := Registration{Name: "fake", Type: vss.VSS_PROV_HARDWARE, Provider: p}
	require.NoError(t, s.RegisterProvider(context.Background(), reg))
	b := &bench{t: t, a: a, s: s, prov: p, reg: s.Providers()[0], logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return b
}

// backup runs a standard backup up to DoSnapshotSet and returns the
// requester and the Async.
func (b *bench) backup(ctx context.Context, volumes ...string) (*BackupComponents, *Async) {
	b.t.Helper()
	bc := b.s.NewBackupComponents()
	require.NoError(b.t, bc.InitializeForBackup(nil))
	require.NoError(b.t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(b.t, bc.GatherWriterMetadata(ctx))
	_, err := bc.StartSnapshotSet()
	require.NoError(b.t, err)
	for _, v := range volumes {
		_, err := bc.AddToSnapshotSet(ctx, v, vss.GUID_NULL)
		require.NoError(b.t, err)
	}
	require.NoError(b.t, bc.PrepareForBackup(ctx))
	a, err := bc.DoSnapshotSet(ctx)
	require.NoError(b.t, err)
	return bc, a
}

// trace flattens a timeline into "kind:name[:actor]" entries.
func trace(tl *Timeline, kinds ...SpanKind) []string {
	var out []string
	for _, s := range tl.Spans() {
		if len(kinds) > 0 && !slices.Contains(kinds, s.Kind) {
			continue
		}
		e := fmt.Sprintf("%s:%s", s.Kind, s.Name)
		if s.Actor != "" && s.Kind == KindWriter {
			e += ":" + s.Actor
		}
		out = append(out, e)
	}
	return out
}

// subsequence reports whether want appears in got in order.
func subsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
