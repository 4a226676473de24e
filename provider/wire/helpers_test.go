package wire_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// W7: no goroutine of a server or a client outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = int64(1) << 20

// serve serves p on a loopback port until the end of the test.
func serve(t testing.TB, p provider.Provider, opts ...wire.ServerOption) string {
	t.Helper()
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr, _ := serveOn(t, ls, p, opts...)
	return addr
}

// serveOn serves p on ls until the end of the test, or until the stop it
// returns is called (stop may be called more than once).
func serveOn(t testing.TB, ls net.Listener, p provider.Provider, opts ...wire.ServerOption) (string, func()) {
	t.Helper()
	s := wire.NewServer(p, append([]wire.ServerOption{wire.WithServerLogger(quiet())}, opts...)...)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ls) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Stop()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return ls.Addr().String(), stop
}

func dial(t testing.TB, addr string) *wire.Client {
	t.Helper()
	c, err := wire.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer is a slog destination the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// array returns an array with n LUNs of 1 MiB named lun0, lun1...
func array(t testing.TB, n int) *lun.Array {
	t.Helper()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	for i := range n {
		_, err := a.Create(fmt.Sprintf("lun%d", i), lun.Options{Size: mib})
		require.NoError(t, err)
	}
	return a
}

// arrayProvider returns the emulated array provider over a with prof (nil
// for the default), closed at the end of the test.
func arrayProvider(t testing.TB, a *lun.Array, prof *provider.Profile) *provider.ArrayProvider {
	t.Helper()
	p, err := provider.NewArray(a, prof, provider.WithLogger(quiet()))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// failing returns a default profile whose method m always fails with code.
func failing(m vss.ProviderMethod, code vss.HRESULT) *provider.Profile {
	p := provider.DefaultProfile()
	p.Methods = map[vss.ProviderMethod]provider.MethodBehavior{m: {Failures: []provider.Failure{provider.Always(code)}}}
	return p
}

// service is a coordinator over a with p registered as its only provider
// and one volume per LUN (vol0 on lun0...).
type service struct {
	t    testing.TB
	s    *coordinator.Service
	logs *logBuffer
}

func newService(t testing.TB, a *lun.Array, p provider.Provider, cfg coordinator.Config) *service {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	s := coordinator.New(a, cfg)
	require.NoError(t, s.RegisterProvider(context.Background(), coordinator.Registration{Name: "p", Type: vss.VSS_PROV_HARDWARE, Provider: p}))
	for _, l := range a.List() {
		require.NoError(t, s.AddVolume("vol"+l.Name()[3:], l.Name()))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	return &service{t: t, s: s, logs: logs}
}

// backup runs a full backup of the volumes (A.1-A.10) and returns the set's
// result, the set's timeline and the snapshots' properties as they
// were before the requester released them.
func (sv *service) backup(ctx context.Context, volumes ...string) (error, *coordinator.Timeline, []coordinator.SnapshotProperties) {
	t := sv.t
	t.Helper()
	bc := sv.s.NewBackupComponents()
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	setID, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	var ids []vss.ID
	for _, v := range volumes {
		id, err := bc.AddToSnapshotSet(ctx, v, vss.GUID_NULL)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, bc.PrepareForBackup(ctx))
	async, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	err = async.Wait(ctx)
	var snaps []coordinator.SnapshotProperties
	if err == nil {
		for _, id := range ids {
			p, err := bc.GetSnapshotProperties(id)
			require.NoError(t, err)
			snaps = append(snaps, p)
		}
		require.NoError(t, bc.BackupComplete(ctx))
	} else {
		require.NoError(t, bc.AbortBackup(ctx))
	}
	info, ok := sv.s.Set(setID)
	require.True(t, ok)
	tl := info.Timeline
	require.NoError(t, bc.Close(ctx))
	return err, tl, snaps
}

// providerTrace lists the provider calls of a timeline as "Method=RESULT".
func providerTrace(tl *coordinator.Timeline) []string {
	var out []string
	for _, s := range tl.Spans() {
		if s.Kind == coordinator.KindProvider {
			out = append(out, s.Name+"="+s.Result)
		}
	}
	return out
}

// stub is a provider whose every method succeeds unless hook says
// otherwise; it records the calls and the deadline each one carried.
type stub struct {
	hook func(ctx context.Context, m vss.ProviderMethod) error

	mu        sync.Mutex
	calls     []vss.ProviderMethod
	deadlines map[vss.ProviderMethod]time.Time
	cancelled map[vss.ProviderMethod]bool
}

var _ provider.Provider = (*stub)(nil)

func (s *stub) do(ctx context.Context, m vss.ProviderMethod) error {
	s.mu.Lock()
	s.calls = append(s.calls, m)
	if s.deadlines == nil {
		s.deadlines, s.cancelled = map[vss.ProviderMethod]time.Time{}, map[vss.ProviderMethod]bool{}
	}
	if d, ok := ctx.Deadline(); ok {
		s.deadlines[m] = d
	}
	s.mu.Unlock()
	var err error
	if s.hook != nil {
		err = s.hook(ctx, m)
	}
	if ctx.Err() != nil {
		s.mu.Lock()
		s.cancelled[m] = true
		s.mu.Unlock()
	}
	return err
}

func (s *stub) AreLunsSupported(ctx context.Context, _ vss.SnapshotContext, _ []string, _ []provider.LunInfo) (bool, error) {
	return true, s.do(ctx, vss.MethodAreLunsSupported)
}

func (s *stub) BeginPrepareSnapshot(ctx context.Context, _, _ vss.ID, _ vss.SnapshotContext, _ []string, _ []provider.LunInfo) error {
	return s.do(ctx, vss.MethodBeginPrepareSnapshot)
}

func (s *stub) GetTargetLuns(ctx context.Context, _ []string, sources []provider.LunInfo) ([]provider.LunInfo, error) {
	out := make([]provider.LunInfo, len(sources))
	for i, src := range sources {
		out[i] = src.Clone()
		out[i].SerialNumber += "-snap"
	}
	return out, s.do(ctx, vss.MethodGetTargetLuns)
}

func (s *stub) LocateLuns(ctx context.Context, _ []provider.LunInfo) error {
	return s.do(ctx, vss.MethodLocateLuns)
}

func (s *stub) FillInLunInfo(ctx context.Context, _ string, _ *provider.LunInfo) (bool, error) {
	return false, s.do(ctx, vss.MethodFillInLunInfo)
}

func (s *stub) OnLunEmpty(ctx context.Context, _ string, _ provider.LunInfo) error {
	return s.do(ctx, vss.MethodOnLunEmpty)
}

func (s *stub) EndPrepareSnapshots(ctx context.Context, _ vss.ID) error {
	return s.do(ctx, vss.MethodEndPrepareSnapshots)
}

func (s *stub) PreCommitSnapshots(ctx context.Context, _ vss.ID) error {
	return s.do(ctx, vss.MethodPreCommitSnapshots)
}

func (s *stub) CommitSnapshots(ctx context.Context, _ vss.ID) error {
	return s.do(ctx, vss.MethodCommitSnapshots)
}

func (s *stub) PostCommitSnapshots(ctx context.Context, _ vss.ID, _ int) error {
	return s.do(ctx, vss.MethodPostCommitSnapshots)
}

func (s *stub) PreFinalCommitSnapshots(ctx context.Context, _ vss.ID) error {
	return s.do(ctx, vss.MethodPreFinalCommitSnapshots)
}

func (s *stub) PostFinalCommitSnapshots(ctx context.Context, _ vss.ID) error {
	return s.do(ctx, vss.MethodPostFinalCommitSnapshots)
}

func (s *stub) AbortSnapshots(ctx context.Context, _ vss.ID) error {
	return s.do(ctx, vss.MethodAbortSnapshots)
}

func mustGet(t testing.TB, a *lun.Array, name string) *lun.LUN {
	t.Helper()
	l, err := a.Get(name)
	require.NoError(t, err)
	return l
}

// write starts a 4 KiB write to the LUN and returns a channel closed when
// it completed.
func write(t testing.TB, a *lun.Array, name string) <-chan struct{} {
	t.Helper()
	l := mustGet(t, a, name)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.WriteAt(context.Background(), make([]byte, 4096), 0, false)
	}()
	return done
}
