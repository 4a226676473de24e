package wire_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// W1: the array provider served remotely runs a full backup exactly as it
// does in-process: the same calls with the same results, and the snapshot
// LUNs in the array.
func TestW1RemoteArrayProviderMatchesInProcess(t *testing.T) {
	ctx := context.Background()
	local := array(t, 2)
	lsvc := newService(t, local, arrayProvider(t, local, nil), coordinator.Config{})
	lerr, ltl, _ := lsvc.backup(ctx, "vol0", "vol1")
	require.NoError(t, lerr)

	remote := array(t, 2)
	addr := serve(t, arrayProvider(t, remote, nil), wire.WithArray(remote))
	rsvc := newService(t, remote, dial(t, addr), coordinator.Config{})
	rerr, rtl, snaps := rsvc.backup(ctx, "vol0", "vol1")
	require.NoError(t, rerr)

	require.Equal(t, providerTrace(ltl), providerTrace(rtl))
	require.Contains(t, providerTrace(rtl), "CommitSnapshots=S_OK")
	require.Len(t, snaps, 2)
	for _, props := range snaps {
		require.True(t, props.Imported, "FillInLunInfo over the wire reproduces GetTargetLuns (F.6)")
		require.Len(t, props.TargetLUNs, 1)
		_, err := remote.Get(props.TargetLUNs[0])
		require.Error(t, err, "A.10: releasing the requester deleted the auto-release snapshot")
	}
}

// W1, C: a provider's code crosses the wire unchanged and the coordinator
// translates it as for an in-process provider: a legal code reaches the
// requester, an illegal one becomes VSS_E_UNEXPECTED_PROVIDER_ERROR with
// event 12293.
func TestW1CodesCrossTheWire(t *testing.T) {
	for _, tc := range []struct {
		method vss.ProviderMethod
		code   vss.HRESULT
		want   vss.HRESULT
		event  bool
	}{
		{vss.MethodPreCommitSnapshots, vss.VSS_E_PROVIDER_VETO, vss.VSS_E_PROVIDER_VETO, false},
		{vss.MethodEndPrepareSnapshots, vss.VSS_E_INSUFFICIENT_STORAGE, vss.VSS_E_INSUFFICIENT_STORAGE, false},
		{vss.MethodCommitSnapshots, vss.E_FAIL, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR, true},
		{vss.MethodPostCommitSnapshots, vss.S_FALSE, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR, true},
	} {
		t.Run(tc.method.String()+"/"+tc.code.Name(), func(t *testing.T) {
			ctx := context.Background()
			var got [2]vss.HRESULT
			var traces [2][]string
			for i, remote := range []bool{false, true} {
				a := array(t, 1)
				var p provider.Provider
				if tc.code == vss.S_FALSE {
					// A profile cannot inject a success code; a stub can.
					p = &stub{hook: func(_ context.Context, m vss.ProviderMethod) error {
						if m == tc.method {
							return &provider.Error{Method: m, Code: vss.S_FALSE}
						}
						return nil
					}}
				} else {
					p = arrayProvider(t, a, failing(tc.method, tc.code))
				}
				if remote {
					p = dial(t, serve(t, p))
				}
				sv := newService(t, a, p, coordinator.Config{})
				err, tl, _ := sv.backup(ctx, "vol0")
				got[i], traces[i] = vss.FromError(err), providerTrace(tl)
				require.Equal(t, tc.event, strings.Contains(sv.logs.String(), "event_id=12293"), sv.logs.String())
			}
			require.Equal(t, tc.want, got[0], "in-process")
			require.Equal(t, got[0], got[1], "remote as in-process")
			require.Equal(t, traces[0], traces[1])
		})
	}
}

// W2, W3: a provider that does not answer within the coordinator's provider
// timeout fails the set with VSS_E_UNEXPECTED_PROVIDER_ERROR and event
// 12293, in about the timeout; the provider saw the deadline, and its call
// was cancelled when the deadline passed.
func TestW3SilentProviderIsAProviderFailure(t *testing.T) {
	ctx := context.Background()
	p := &stub{hook: func(ctx context.Context, m vss.ProviderMethod) error {
		if m == vss.MethodPreCommitSnapshots {
			// It never answers in time: it notices the cancellation, then
			// takes a while longer, as a busy firmware would.
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}}
	a := array(t, 1)
	sv := newService(t, a, dial(t, serve(t, p)), coordinator.Config{ProviderTimeout: 200 * time.Millisecond})
	start := time.Now()
	err, tl, _ := sv.backup(ctx, "vol0")
	took := time.Since(start)
	require.ErrorIs(t, err, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	require.Less(t, took, 5*time.Second, "no hang")
	require.Contains(t, sv.logs.String(), "event_id=12293")
	require.Contains(t, sv.logs.String(), "returned=0x800705B4")
	require.Contains(t, providerTrace(tl), "PreCommitSnapshots=VSS_E_UNEXPECTED_PROVIDER_ERROR")
	require.Contains(t, providerTrace(tl), "AbortSnapshots=S_OK", "B.7: the failed set is aborted")

	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cancelled[vss.MethodPreCommitSnapshots]
	}, 2*time.Second, 5*time.Millisecond, "W2: the provider's call was cancelled")
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.deadlines[vss.MethodPreCommitSnapshots]
	require.True(t, ok, "W2: the deadline crossed the wire")
	require.WithinDuration(t, start.Add(200*time.Millisecond), d, 3*time.Second)
}

// W2: cancelling the caller's context cancels the provider's call.
func TestW2CancellationIsPassedOn(t *testing.T) {
	entered := make(chan struct{})
	p := &stub{hook: func(ctx context.Context, m vss.ProviderMethod) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}}
	c := dial(t, serve(t, p))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	err := c.CommitSnapshots(ctx, vss.NewID())
	require.Error(t, err)
	require.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cancelled[vss.MethodCommitSnapshots]
	}, 2*time.Second, 5*time.Millisecond)
}

// W3: a provider whose process goes away is a provider failure at once,
// with the RPC code, whether the call was in flight or came after; when it
// comes back at the same address the same client reaches it again.
func TestW3BrokenConnectionAndReregistration(t *testing.T) {
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	entered := make(chan struct{}, 1)
	p := &stub{hook: func(ctx context.Context, m vss.ProviderMethod) error {
		if m == vss.MethodCommitSnapshots {
			entered <- struct{}{}
			<-ctx.Done()
		}
		return nil
	}}
	addr, stop := serveOn(t, ls, p)
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.PreCommitSnapshots(ctx, vss.NewID()))

	// In flight: the server stops under the call.
	done := make(chan error, 1)
	go func() { done <- c.CommitSnapshots(ctx, vss.NewID()) }()
	<-entered
	start := time.Now()
	stop()
	err = <-done
	require.Less(t, time.Since(start), 5*time.Second)
	var hr vss.HRESULT
	require.ErrorAs(t, err, &hr)
	require.Equal(t, wire.RPC_S_SERVER_UNAVAILABLE, hr, "%v", err)
	require.Equal(t, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR, vss.MethodCommitSnapshots.Translate(hr))
	require.NotErrorIs(t, err, context.DeadlineExceeded)

	// After: the port is closed.
	start = time.Now()
	err = c.PreCommitSnapshots(ctx, vss.NewID())
	require.ErrorIs(t, err, wire.ErrUnavailable)
	require.Less(t, time.Since(start), 5*time.Second)

	// Back at the same address: the client reconnects by itself.
	ls2, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	serveOn(t, ls2, &stub{})
	require.Eventually(t, func() bool { return c.PreCommitSnapshots(ctx, vss.NewID()) == nil }, 5*time.Second, 20*time.Millisecond)
}

// W4: a provider that panics fails that call alone.
func TestW4PanicIsContained(t *testing.T) {
	p := &stub{hook: func(_ context.Context, m vss.ProviderMethod) error {
		if m == vss.MethodPreCommitSnapshots {
			panic("firmware bug")
		}
		return nil
	}}
	c := dial(t, serve(t, p))
	ctx := context.Background()
	err := c.PreCommitSnapshots(ctx, vss.NewID())
	var hr vss.HRESULT
	require.ErrorAs(t, err, &hr)
	require.Equal(t, wire.RPC_S_CALL_FAILED, hr)
	require.ErrorContains(t, err, "firmware bug")
	require.NoError(t, c.CommitSnapshots(ctx, vss.NewID()), "the server goes on")
}

// W5: an undecodable request answers E_INVALIDARG; an answer that breaks
// the protocol is a provider failure.
func TestW5BadInput(t *testing.T) {
	ctx := context.Background()
	a := array(t, 1)
	addr := serve(t, arrayProvider(t, a, nil), wire.WithArray(a))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	set := wirepb.NewProviderCreateSnapshotSetClient(conn)
	r, err := set.CommitSnapshots(ctx, &wirepb.SnapshotSetRequest{SnapshotSetId: "not an id"})
	require.NoError(t, err)
	require.Equal(t, uint32(vss.E_INVALIDARG), r.Result.Hresult)
	require.Contains(t, r.Result.Message, "malformed")

	hw := wirepb.NewHardwareSnapshotProviderClient(conn)
	r2, err := hw.AreLunsSupported(ctx, &wirepb.AreLunsSupportedRequest{Devices: []string{"lun0"},
		Luns: []*wirepb.LunInformation{{DeviceType: 300}}})
	require.NoError(t, err)
	require.Equal(t, uint32(vss.E_INVALIDARG), r2.Result.Hresult)
	r3, err := hw.OnLunEmpty(ctx, &wirepb.OnLunEmptyRequest{Device: "lun0"})
	require.NoError(t, err)
	require.Equal(t, uint32(vss.E_INVALIDARG), r3.Result.Hresult, "a missing LUN information")

	k := wirepb.NewKernelSupportClient(conn)
	r4, err := k.FlushAndHold(ctx, &wirepb.FlushAndHoldRequest{SnapshotSetId: vss.NewID().String(), Devices: []string{"lun0"}})
	require.NoError(t, err)
	require.Equal(t, uint32(vss.E_INVALIDARG), r4.Result.Hresult, "no window")

	// An answer with the wrong number of target LUNs.
	bad := &badTargets{}
	c := dial(t, serve(t, bad))
	_, err = c.GetTargetLuns(ctx, []string{"lun0"}, []provider.LunInfo{provider.LunInfoOf(mustGet(t, a, "lun0"))})
	require.ErrorIs(t, err, wire.ErrCallFailed)
	require.Equal(t, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR, vss.MethodGetTargetLuns.Translate(vss.FromError(err)))
}

// badTargets answers GetTargetLuns with one LUN too many.
type badTargets struct{ stub }

func (b *badTargets) GetTargetLuns(ctx context.Context, d []string, src []provider.LunInfo) ([]provider.LunInfo, error) {
	out, err := b.stub.GetTargetLuns(ctx, d, src)
	return append(out, provider.LunInfo{}), err
}

// Optional interfaces are optional services: a provider without the Ex
// interface answers its methods with VSS_E_PROVIDER_VETO, as the
// coordinator answers for a local one, and needs no OnLoad; one with them
// answers as in-process.
func TestOptionalInterfaces(t *testing.T) {
	ctx := context.Background()
	plain := dial(t, serve(t, &stub{}))
	_, err := plain.GetProviderCapabilities(ctx)
	require.ErrorIs(t, err, vss.VSS_E_PROVIDER_VETO)
	require.ErrorIs(t, err, wire.ErrNoInterface)
	require.ErrorIs(t, plain.OnLunStateChange(ctx, nil, nil, vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE), vss.VSS_E_PROVIDER_VETO)
	require.NoError(t, plain.OnLoad(ctx))
	require.NoError(t, plain.OnUnload(ctx, false))

	a := array(t, 1)
	local := arrayProvider(t, a, nil)
	remote := dial(t, serve(t, local))
	want, err := local.GetProviderCapabilities(ctx)
	require.NoError(t, err)
	got, err := remote.GetProviderCapabilities(ctx)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// W6: KernelSupport holds the remote array's gates: a write waits while
// they are held and completes at ReleaseWrites; a hold past its window has
// released itself and ReleaseWrites says so; a failed FlushAndHold leaves
// no gate closed; Stop releases what is held.
func TestW6KernelSupportHolds(t *testing.T) {
	ctx := context.Background()
	a := array(t, 2)
	addr, stop := serveOn(t, listen(t), arrayProvider(t, a, nil), wire.WithArray(a))
	c := dial(t, addr)

	infos, err := c.DescribeLuns(ctx, []string{"lun0", "lun1"})
	require.NoError(t, err)
	require.Equal(t, provider.LunInfoOf(mustGet(t, a, "lun1")), infos[1])
	_, err = c.DescribeLuns(ctx, []string{"nope"})
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	devs, err := c.Rescan(ctx, [][]byte{infos[1].NAA(), make([]byte, 16), infos[0].NAA()})
	require.NoError(t, err)
	require.Equal(t, []string{"lun1", "", "lun0"}, devs, "one rescan finds every LUN, 1:1")

	set := vss.NewID()
	require.NoError(t, c.FlushAndHold(ctx, set, []string{"lun0", "lun1"}, 5*time.Second))
	require.ErrorIs(t, c.FlushAndHold(ctx, set, []string{"lun0"}, 5*time.Second), vss.VSS_E_BAD_STATE)
	wrote := write(t, a, "lun1")
	select {
	case <-wrote:
		t.Fatal("a write went through a held gate")
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, c.ReleaseWrites(ctx, set))
	requireDone(t, wrote)
	require.ErrorIs(t, c.ReleaseWrites(ctx, set), vss.VSS_E_OBJECT_NOT_FOUND)

	// Unknown LUN: nothing stays held.
	require.ErrorIs(t, c.FlushAndHold(ctx, vss.NewID(), []string{"lun0", "nope"}, time.Second), vss.VSS_E_OBJECT_NOT_FOUND)
	requireDone(t, write(t, a, "lun0"))

	// Past the window the gates release themselves.
	set = vss.NewID()
	require.NoError(t, c.FlushAndHold(ctx, set, []string{"lun0"}, 50*time.Millisecond))
	requireDone(t, write(t, a, "lun0"))
	require.ErrorIs(t, c.ReleaseWrites(ctx, set), vss.VSS_E_HOLD_WRITES_TIMEOUT)

	// Stop releases a hold still closed.
	require.NoError(t, c.FlushAndHold(ctx, vss.NewID(), []string{"lun1"}, 10*time.Second))
	wrote = write(t, a, "lun1")
	stop()
	requireDone(t, wrote)

	// A host that is gone: the transport's code, not a hang.
	err = c.FlushAndHold(ctx, vss.NewID(), []string{"lun0"}, time.Second)
	require.ErrorIs(t, err, wire.ErrUnavailable)
	require.ErrorIs(t, err, wire.RPC_S_SERVER_UNAVAILABLE)
	require.ErrorContains(t, err, "wire: FlushAndHold")
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ls
}

func requireDone(t testing.TB, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the write did not complete")
	}
}
