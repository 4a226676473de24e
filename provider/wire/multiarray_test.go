package wire_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// remoteArray is one array with its provider, served over the protocol
// (through a proxy that can cut the link).
type remoteArray struct {
	name  string
	a     *lun.Array
	p     *provider.ArrayProvider
	proxy *proxy
}

// topology says where the arrays listen and how the coordinator reaches
// them: loopback through a proxy each by default; network namespaces in
// netns_linux_test.go.
type topology struct {
	listen func(t testing.TB, i int) net.Listener
	dial   func(t testing.TB, addr string) *wire.Client
	proxy  bool
}

var loopback = topology{listen: func(t testing.TB, _ int) net.Listener { return listen(t) }, dial: dial, proxy: true}

// arrays starts remote arrays of 2 LUNs each on loopback, one per profile
// (nil for the default); see arraysOn.
func arrays(t *testing.T, cfg coordinator.Config, wrap func(i int, p provider.Provider) provider.Provider, profiles ...*provider.Profile) (*service, []*remoteArray) {
	t.Helper()
	sizes := make([]int, len(profiles))
	for i := range sizes {
		sizes[i] = 2
	}
	return arraysOn(t, loopback, sizes, cfg, wrap, profiles...)
}

// arraysOn starts one remote array per profile, array i with sizes[i]
// LUNs, and a
// coordinator over an empty local array that registers each as a provider
// with its array (Host) and one volume per array, vol-<name> on all its
// LUNs. wrap, when not nil, wraps the provider array i serves.
func arraysOn(t *testing.T, topo topology, sizes []int, cfg coordinator.Config, wrap func(i int, p provider.Provider) provider.Provider, profiles ...*provider.Profile) (*service, []*remoteArray) {
	t.Helper()
	local, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	s := coordinator.New(local, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Close(ctx))
	})
	var out []*remoteArray
	for i, prof := range profiles {
		ra := &remoteArray{name: fmt.Sprintf("array%d", i), a: array(t, sizes[i])}
		ra.p = arrayProvider(t, ra.a, prof)
		var served provider.Provider = ra.p
		if wrap != nil {
			served = wrap(i, ra.p)
		}
		addr, _ := serveOn(t, topo.listen(t, i), served, wire.WithArray(ra.a))
		if topo.proxy {
			ra.proxy = newProxy(t, addr)
			addr = ra.proxy.addr()
		}
		c := topo.dial(t, addr)
		// A link just made in a namespace may drop the first packets
		// for a moment on a loaded machine: OnLoad is retried while the
		// provider is unreachable, as a service retries a provider
		// whose host is still coming up.
		reg := coordinator.Registration{Name: ra.name, Provider: c, Host: c}
		err := s.RegisterProvider(context.Background(), reg)
		for deadline := time.Now().Add(10 * time.Second); err != nil && strings.Contains(err.Error(), "provider unreachable") && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			err = s.RegisterProvider(context.Background(), reg)
		}
		require.NoError(t, err)
		var luns []string
		for _, l := range ra.a.List() {
			luns = append(luns, l.Name())
		}
		require.NoError(t, s.AddVolumeOn("vol-"+ra.name, ra.name, luns...))
		out = append(out, ra)
	}
	return &service{t: t, s: s, logs: logs}, out
}

// rollbackSet takes one APP_ROLLBACK set of every array's volume and
// returns the requester (closed when the test ends), the set and its
// snapshots, one per array.
func rollbackSet(t *testing.T, sv *service, ras []*remoteArray) (*coordinator.BackupComponents, vss.ID, []vss.ID) {
	t.Helper()
	ctx := context.Background()
	bc := sv.s.NewBackupComponents()
	t.Cleanup(func() { _ = bc.Close(ctx) })
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetContext(vss.VSS_CTX_APP_ROLLBACK))
	require.NoError(t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	set, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	var snaps []vss.ID
	for _, v := range volumes(ras) {
		id, err := bc.AddToSnapshotSet(ctx, v, vss.GUID_NULL)
		require.NoError(t, err)
		snaps = append(snaps, id)
	}
	require.NoError(t, bc.PrepareForBackup(ctx))
	async, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	require.NoError(t, async.Wait(ctx))
	return bc, set, snaps
}

func volumes(ras []*remoteArray) []string {
	var v []string
	for _, ra := range ras {
		v = append(v, "vol-"+ra.name)
	}
	return v
}

// snapshotLUNs lists the snapshot LUNs left in an array.
func snapshotLUNs(a *lun.Array) []string {
	var out []string
	for _, l := range a.List() {
		if strings.Contains(l.Name(), ".snap-") {
			out = append(out, l.Name())
		}
	}
	return out
}

// B.2 across arrays: a set across three arrays holds every gate before the
// first CommitSnapshots and releases all after the last, so the snapshots
// share one point in time under load. One writer walks the arrays in turn,
// writing an increasing sequence number to lun0 of each; with every gate
// held at once the three images hold three consecutive numbers, the last
// acknowledged before the writer stopped at a held gate. Holds that did not
// overlap would let the writer on between them.
func TestSetAcrossArraysHasOnePointInTime(t *testing.T) {
	sv, ras := arrays(t, coordinator.Config{}, nil, nil, nil, nil)
	onePointInTime(t, sv, ras)
}

// onePointInTime runs a set across the three arrays under the writer and
// checks the images.
func onePointInTime(t *testing.T, sv *service, ras []*remoteArray) {
	t.Helper()
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Go(func() {
		buf := make([]byte, 512)
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			l := mustGet(t, ras[seq%3].a, "lun0")
			binary.LittleEndian.PutUint64(buf, seq)
			if err := l.WriteAt(ctx, buf, 0, false); err != nil {
				return
			}
			writes.Add(1)
		}
	})
	require.Eventually(t, func() bool { return writes.Load() > 300 }, 5*time.Second, time.Millisecond)

	bc, set, snaps := rollbackSet(t, sv, ras)
	before := writes.Load()
	require.Eventually(t, func() bool { return writes.Load() > before+30 }, 5*time.Second, time.Millisecond, "every gate was released")
	close(stop)
	wg.Wait()

	var seqs []uint64
	for i, id := range snaps {
		p, err := bc.GetSnapshotProperties(id)
		require.NoError(t, err)
		require.True(t, p.Imported, "the snapshot LUNs arrived on their own array (remote rescan): %s", sv.logs.String())
		require.Len(t, p.TargetLUNs, 2)
		img := mustGet(t, ras[i].a, p.TargetLUNs[0])
		buf := make([]byte, 512)
		require.NoError(t, img.ReadAt(ctx, buf, 0))
		seqs = append(seqs, binary.LittleEndian.Uint64(buf))
	}
	lo, hi := min(seqs[0], seqs[1], seqs[2]), max(seqs[0], seqs[1], seqs[2])
	require.Equal(t, uint64(2), hi-lo, "one point in time across the arrays: %v", seqs)

	info, _ := sv.s.Set(set)
	var order []string
	for _, sp := range info.Timeline.Spans() {
		if sp.Name == "FlushAndHold" || sp.Name == "CommitSnapshots" && sp.Kind == coordinator.KindProvider || sp.Name == "ReleaseWrites" {
			order = append(order, sp.Name)
		}
	}
	require.Equal(t, []string{"FlushAndHold", "CommitSnapshots", "CommitSnapshots", "CommitSnapshots", "ReleaseWrites"}, order)
}

// B.9 across arrays: when the last array fails CommitSnapshots, every array
// gets AbortSnapshots, none keeps a snapshot of the failed set, and every
// gate is released.
func TestSetAcrossArraysNoPartialCommit(t *testing.T) {
	sv, ras := arrays(t, coordinator.Config{}, nil, nil, nil, failing(vss.MethodCommitSnapshots, vss.VSS_E_PROVIDER_VETO))
	noPartialCommit(t, sv, ras)
}

// The set across three arrays under NBD load on each, on loopback: see
// onePointInTimeOverNBD.
func TestSetAcrossArraysUnderNBDLoad(t *testing.T) {
	sv, ras := arrays(t, coordinator.Config{}, nil, nil, nil, nil)
	dial := serveNBD(t, ras, func(t testing.TB, _ int) net.Listener { return listen(t) }, func(fn func() error) error { return fn() })
	onePointInTimeOverNBD(t, sv, ras, dial)
}

// A partition during CommitSnapshots: the set fails with
// VSS_E_HOLD_WRITES_TIMEOUT at about the end of the hold window, and every
// gate is released, the cut-off array's by its own window.
func TestSetAcrossArraysPartitionInCommit(t *testing.T) {
	const window = 400 * time.Millisecond
	var cut atomic.Pointer[proxy]
	wrap := func(i int, p provider.Provider) provider.Provider {
		if i != 1 {
			return p
		}
		return &onCommit{Provider: p, do: func() { cut.Load().partition() }}
	}
	sv, ras := arrays(t, coordinator.Config{HoldWindow: window, ProviderTimeout: time.Second}, wrap, nil, nil, nil)
	cut.Store(ras[1].proxy)
	start := time.Now()
	err, tl, _ := sv.backup(context.Background(), volumes(ras)...)
	took := time.Since(start)
	require.ErrorIs(t, err, vss.VSS_E_HOLD_WRITES_TIMEOUT)
	require.Less(t, took, 5*time.Second)
	var hold coordinator.Span
	for _, sp := range tl.Spans() {
		if sp.Kind == coordinator.KindWindow && sp.Name == "hold" {
			hold = sp
		}
	}
	require.Equal(t, "VSS_E_HOLD_WRITES_TIMEOUT", hold.Result)
	require.Less(t, hold.Duration(), window+time.Second, "the set failed at about the window's end")
	require.Contains(t, sv.logs.String(), "event_id=12298")
	for _, ra := range ras {
		requireDone(t, write(t, ra.a, "lun1"))
	}
	ras[1].proxy.heal()
}

// onCommit runs do when CommitSnapshots arrives, then commits.
type onCommit struct {
	provider.Provider
	do func()
}

func (o *onCommit) CommitSnapshots(ctx context.Context, set vss.ID) error {
	o.do()
	return o.Provider.CommitSnapshots(ctx, set)
}

// diesOnCommit is a provider whose process dies as CommitSnapshots
// arrives: kill cuts its link, and it commits nothing.
type diesOnCommit struct {
	provider.Provider
	kill func()
}

func (d *diesOnCommit) CommitSnapshots(context.Context, vss.ID) error {
	d.kill()
	return vss.VSS_E_UNEXPECTED_PROVIDER_ERROR // never answered: the link is gone
}

// proxy forwards TCP connections to a target; partition makes it drop
// every byte in both directions without closing anything, as a cut link
// does, and heal forwards again.
type proxy struct {
	t      testing.TB
	ls     net.Listener
	target string
	cut    atomic.Bool
	delay  atomic.Int64 // nanoseconds added to each chunk forwarded
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, ls: listen(t), target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ls.Addr().String() }
func (p *proxy) partition()   { p.cut.Store(true) }
func (p *proxy) heal()        { p.cut.Store(false) }

// kill closes every connection and the listener, as the death of the
// provider's process does: new connections are refused.
func (p *proxy) kill() {
	_ = p.ls.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) accept() {
	for {
		c, err := p.ls.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(u, c) })
		p.wg.Go(func() { p.pipe(c, u) })
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if d := p.delay.Load(); n > 0 && d > 0 {
			time.Sleep(time.Duration(d))
		}
		if n > 0 && !p.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = dst.Close()
			}
			_ = dst.Close()
			return
		}
	}
}

func (p *proxy) close() {
	_ = p.ls.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A provider process killed between PreCommitSnapshots and
// CommitSnapshots (while the other arrays commit, at the same time): its
// CommitSnapshots fails at once as a provider failure
// (VSS_E_UNEXPECTED_PROVIDER_ERROR, event 12293), well inside the hold
// window; the other arrays get AbortSnapshots and keep no snapshot of the
// set (B.9), and every gate is released, the dead one's by its own window
// at the latest.
func TestSetAcrossArraysProviderKilledBeforeCommit(t *testing.T) {
	const window = time.Second
	var victim atomic.Pointer[proxy]
	wrap := func(i int, p provider.Provider) provider.Provider {
		if i != 2 {
			return p
		}
		return &diesOnCommit{Provider: p, kill: func() { victim.Load().kill() }}
	}
	sv, ras := arrays(t, coordinator.Config{HoldWindow: window}, wrap, nil, nil, nil)
	victim.Store(ras[2].proxy)
	err, tl, _ := sv.backup(context.Background(), volumes(ras)...)
	require.ErrorIs(t, err, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	// The set ended on the provider's failure, not on the window: no
	// wait for it (a bound in time would fail on a loaded machine).
	hold, ok := tl.Find(coordinator.KindWindow, "hold")
	require.True(t, ok)
	require.NotEqual(t, vss.VSS_E_HOLD_WRITES_TIMEOUT.Name(), hold.Result, "no wait for the hold window")
	require.Contains(t, sv.logs.String(), "event_id=12293")
	var commits []string
	for _, sp := range tl.Spans() {
		if sp.Kind == coordinator.KindProvider && sp.Name == "CommitSnapshots" {
			commits = append(commits, sp.Actor+"="+sp.Result)
		}
		if sp.Kind == coordinator.KindProvider && sp.Name == "AbortSnapshots" && sp.Actor != "array2" {
			require.Equal(t, "S_OK", sp.Result, sp.Actor)
		}
	}
	slices.Sort(commits) // the arrays commit at once (each has its own)
	require.Equal(t, []string{"array0=S_OK", "array1=S_OK", "array2=VSS_E_UNEXPECTED_PROVIDER_ERROR"}, commits)
	for _, ra := range ras[:2] {
		require.Empty(t, snapshotLUNs(ra.a), "%s keeps no snapshot of the failed set", ra.name)
	}
	for _, ra := range ras {
		requireDone(t, write(t, ra.a, "lun0"))
	}
}

// Latency on one link: the set still commits, and its hold window grows by
// the round trips through that link (FlushAndHold, CommitSnapshots,
// ReleaseWrites), which the window must cover (B.2).
func TestSetAcrossArraysLinkLatency(t *testing.T) {
	sv, ras := arrays(t, coordinator.Config{}, nil, nil, nil, nil)
	ras[1].proxy.delay.Store(int64(10 * time.Millisecond))
	err, tl, _ := sv.backup(context.Background(), volumes(ras)...)
	require.NoError(t, err)
	for _, sp := range tl.Spans() {
		if sp.Kind == coordinator.KindWindow && sp.Name == "hold" {
			require.Equal(t, "S_OK", sp.Result)
			require.Greater(t, sp.Duration(), 30*time.Millisecond, "three round trips through the slow link")
		}
	}
}

// A.10 across arrays: an auto-release set across three arrays is deleted
// when its requester closes, through each array's own provider
// (FillInLunInfo, then OnLunEmpty, for every target LUN), so no array
// keeps its snapshot LUNs.
func TestSetAcrossArraysAutoReleaseDeletes(t *testing.T) {
	sv, ras := arrays(t, coordinator.Config{}, nil, nil, nil, nil)
	for range 2 {
		err, _, snaps := sv.backup(context.Background(), volumes(ras)...)
		require.NoError(t, err)
		require.Len(t, snaps, 3)
		for _, ra := range ras {
			require.Empty(t, snapshotLUNs(ra.a), "%s keeps no snapshot LUN of the released set", ra.name)
		}
	}
}
