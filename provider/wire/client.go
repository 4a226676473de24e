package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// The HRESULTs a client reports for a call that failed in transport: the
// codes a Windows COM call gets from RPC when an out-of-process provider
// dies or hangs (HRESULT_FROM_WIN32 of the RPC error). None is legal for a
// provider, so the coordinator hands each on as
// VSS_E_UNEXPECTED_PROVIDER_ERROR and logs event 12293 (vss-spec.md C).
const (
	// RPC_S_SERVER_UNAVAILABLE: the connection is down or was refused.
	RPC_S_SERVER_UNAVAILABLE vss.HRESULT = 0x800706BA
	// RPC_S_CALL_FAILED: the server failed the call (a panic, an
	// exception) or broke the protocol.
	RPC_S_CALL_FAILED vss.HRESULT = 0x800706BE
	// RPC_S_CALL_CANCELLED: the server cancelled the call.
	RPC_S_CALL_CANCELLED vss.HRESULT = 0x8007071A
	// ERROR_TIMEOUT: no answer within the call's deadline.
	ERROR_TIMEOUT vss.HRESULT = 0x800705B4
	// E_NOTIMPL: the server does not serve the method.
	E_NOTIMPL vss.HRESULT = 0x80004001
)

// Errors of the transport, each inside a *provider.Error with one of the
// codes above. None wraps a context error: the coordinator takes those for
// its own cancellations.
var (
	ErrUnavailable = errors.New("wire: provider unreachable")
	ErrDeadline    = errors.New("wire: provider did not answer within the call's deadline")
	ErrCallFailed  = errors.New("wire: provider call failed")
	ErrNotServed   = errors.New("wire: provider does not serve the method")
	// ErrNoInterface is an Ex method of a provider that serves no
	// HardwareSnapshotProviderEx [VSS_E_PROVIDER_VETO], the answer a
	// provider without the Ex interface gets from the coordinator.
	ErrNoInterface = errors.New("wire: provider does not implement IVssHardwareSnapshotProviderEx")
	// ErrMalformed is a message that cannot be decoded: a bad ID, a field
	// out of range, a missing LUN information.
	ErrMalformed = errors.New("wire: malformed message")
)

// keepaliveTime is how often a client pings an idle connection, and
// keepaliveTimeout how long it waits for the answer before it takes the
// connection for dead: a provider host that vanished without closing its
// connections is noticed in seconds even between calls.
const (
	keepaliveTime    = 5 * time.Second
	keepaliveTimeout = 2 * time.Second
)

// Client is a provider reached over the protocol. It implements the
// provider interfaces, so the coordinator registers it like any other; an
// Ex method of a remote that does not serve the Ex interface answers
// VSS_E_PROVIDER_VETO, and OnLoad and OnUnload of one that serves no
// notifications do nothing. Every call carries its context's deadline and
// is cancelled with it; a call that fails in transport is a provider
// failure (the codes above), never a hang.
//
// The connection is made lazily and made again after it breaks (backoff
// from 50 ms to 1 s), so a provider process that restarts at the same
// address is used again from its next call.
type Client struct {
	addr   string
	conn   *grpc.ClientConn
	hw     wirepb.HardwareSnapshotProviderClient
	ex     wirepb.HardwareSnapshotProviderExClient
	set    wirepb.ProviderCreateSnapshotSetClient
	notify wirepb.ProviderNotificationsClient
	kernel wirepb.KernelSupportClient
}

var (
	_ provider.Provider           = (*Client)(nil)
	_ provider.HardwareProviderEx = (*Client)(nil)
	_ provider.Notifications      = (*Client)(nil)
)

// Dial returns a client of the provider at addr (host:port, or any gRPC
// target such as unix:///path). It does not wait for the connection.
func Dial(addr string, opts ...grpc.DialOption) (*Client, error) {
	if addr == "" {
		return nil, fmt.Errorf("wire: dial: empty address")
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithChainUnaryInterceptor(answerCancels),
	}
	conn, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", addr, err)
	}
	return &Client{addr: addr, conn: conn,
		hw: wirepb.NewHardwareSnapshotProviderClient(conn), ex: wirepb.NewHardwareSnapshotProviderExClient(conn),
		set: wirepb.NewProviderCreateSnapshotSetClient(conn), notify: wirepb.NewProviderNotificationsClient(conn),
		kernel: wirepb.NewKernelSupportClient(conn)}, nil
}

// CancelGrace is how long a call whose context is cancelled (not timed
// out) still waits for the provider's answer before it is abandoned with
// RPC_S_CALL_CANCELLED and the cancel passed on to the server.
const CancelGrace = time.Second

// answerCancels is the client's interceptor for a cancelled call. When the
// coordinator cancels a provider call (a requester's Cancel during
// EndPrepareSnapshots), VSS sends AbortSnapshots beside it and takes what
// the provider answers (vss-spec.md B.7): in-process that is the
// provider's E_ABORT. A gRPC call abandoned at once would answer
// RPC_S_CALL_CANCELLED instead, the provider's answer lost; so the call
// runs on for CancelGrace with the caller's values and deadline, and only
// then is cancelled. The deadline is the call's own (gRPC passes it on to
// the server): a call past its deadline waits for nothing.
func answerCancels(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if ctx.Done() == nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	call, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	if d, ok := ctx.Deadline(); ok {
		var stop context.CancelFunc
		call, stop = context.WithDeadline(call, d)
		defer stop()
	}
	answered := make(chan struct{})
	defer close(answered)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return // the call's own copy of the deadline ends it, as DeadlineExceeded
		}
		t := time.NewTimer(CancelGrace)
		defer t.Stop()
		select {
		case <-answered:
		case <-t.C:
			cancel(context.Cause(ctx))
		}
	})
	defer stop()
	err := invoker(call, method, req, reply, cc, opts...)
	if d, ok := ctx.Deadline(); ok && err != nil && ctx.Err() == nil && !time.Now().Before(d) {
		// The call's copy of the deadline fired a moment before the
		// caller's own: let the caller see its context ended, as it would
		// had the call run under it, before it reads the failure.
		<-ctx.Done()
	}
	return err
}

// Addr returns the address the client dials.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// transport turns a gRPC failure into the provider failure VSS would see.
func transport(m vss.ProviderMethod, set vss.ID, err error) error {
	code, cause := transportCode(err)
	return &provider.Error{Method: m, Set: set, Code: code, Err: cause}
}

// transportCode returns the HRESULT of a gRPC failure and its cause, one of
// the transport errors with the status' code and message.
func transportCode(err error) (vss.HRESULT, error) {
	st := status.Convert(err)
	var code vss.HRESULT
	var cause error
	switch st.Code() {
	case codes.DeadlineExceeded:
		code, cause = ERROR_TIMEOUT, ErrDeadline
	case codes.Unavailable:
		code, cause = RPC_S_SERVER_UNAVAILABLE, ErrUnavailable
	case codes.Canceled:
		code, cause = RPC_S_CALL_CANCELLED, ErrCallFailed
	case codes.Unimplemented:
		code, cause = E_NOTIMPL, ErrNotServed
	default:
		code, cause = RPC_S_CALL_FAILED, ErrCallFailed
	}
	return code, fmt.Errorf("%w: %s: %s", cause, st.Code(), st.Message())
}

// answer turns a response's Result into the method's error. An absent
// Result is S_OK (every field at its zero value).
func answer(m vss.ProviderMethod, set vss.ID, r *wirepb.Result) error {
	if r == nil || r.Hresult == 0 {
		return nil
	}
	hr := vss.HRESULT(r.Hresult)
	var cause error
	if r.Message != "" {
		cause = errors.New(r.Message)
	}
	return &provider.Error{Method: m, Set: set, Code: hr, Err: cause}
}

// badAnswer is a response that breaks the protocol (a wrong number of
// LUNs, an undecodable one): a provider failure like any other.
func badAnswer(m vss.ProviderMethod, set vss.ID, err error) error {
	return &provider.Error{Method: m, Set: set, Code: RPC_S_CALL_FAILED, Err: fmt.Errorf("%w: %w", ErrCallFailed, err)}
}

// AreLunsSupported implements provider.HardwareProvider.
func (c *Client) AreLunsSupported(ctx context.Context, snapCtx vss.SnapshotContext, devices []string, luns []provider.LunInfo) (bool, error) {
	const m = vss.MethodAreLunsSupported
	r, err := c.hw.AreLunsSupported(ctx, &wirepb.AreLunsSupportedRequest{Context: uint32(snapCtx), Devices: devices, Luns: toPBs(luns)})
	if err != nil {
		return false, transport(m, vss.GUID_NULL, err)
	}
	if err := answer(m, vss.GUID_NULL, r.Result); err != nil {
		return false, err
	}
	return r.Supported, nil
}

// BeginPrepareSnapshot implements provider.HardwareProvider.
func (c *Client) BeginPrepareSnapshot(ctx context.Context, set, snap vss.ID, snapCtx vss.SnapshotContext, devices []string, luns []provider.LunInfo) error {
	const m = vss.MethodBeginPrepareSnapshot
	r, err := c.hw.BeginPrepareSnapshot(ctx, &wirepb.BeginPrepareSnapshotRequest{SnapshotSetId: set.String(), SnapshotId: snap.String(),
		Context: uint32(snapCtx), Devices: devices, Luns: toPBs(luns)})
	if err != nil {
		return transport(m, set, err)
	}
	return answer(m, set, r.Result)
}

// GetTargetLuns implements provider.HardwareProvider. An answer with a
// different number of LUNs than the sources is a provider failure.
func (c *Client) GetTargetLuns(ctx context.Context, devices []string, sources []provider.LunInfo) ([]provider.LunInfo, error) {
	const m = vss.MethodGetTargetLuns
	r, err := c.hw.GetTargetLuns(ctx, &wirepb.GetTargetLunsRequest{Devices: devices, SourceLuns: toPBs(sources)})
	if err != nil {
		return nil, transport(m, vss.GUID_NULL, err)
	}
	if err := answer(m, vss.GUID_NULL, r.Result); err != nil {
		return nil, err
	}
	if len(r.DestinationLuns) != len(sources) {
		return nil, badAnswer(m, vss.GUID_NULL, fmt.Errorf("%d destination LUNs for %d sources", len(r.DestinationLuns), len(sources)))
	}
	out, err := fromPBs(r.DestinationLuns)
	if err != nil {
		return nil, badAnswer(m, vss.GUID_NULL, err)
	}
	return out, nil
}

// LocateLuns implements provider.HardwareProvider.
func (c *Client) LocateLuns(ctx context.Context, luns []provider.LunInfo) error {
	const m = vss.MethodLocateLuns
	r, err := c.hw.LocateLuns(ctx, &wirepb.LocateLunsRequest{SourceLuns: toPBs(luns)})
	if err != nil {
		return transport(m, vss.GUID_NULL, err)
	}
	return answer(m, vss.GUID_NULL, r.Result)
}

// FillInLunInfo implements provider.HardwareProvider; info is replaced by
// the provider's answer when it knows the device.
func (c *Client) FillInLunInfo(ctx context.Context, device string, info *provider.LunInfo) (bool, error) {
	const m = vss.MethodFillInLunInfo
	req := &wirepb.FillInLunInfoRequest{Device: device}
	if info != nil {
		req.Lun = toPB(*info)
	}
	r, err := c.hw.FillInLunInfo(ctx, req)
	if err != nil {
		return false, transport(m, vss.GUID_NULL, err)
	}
	if err := answer(m, vss.GUID_NULL, r.Result); err != nil {
		return false, err
	}
	if r.Supported && info != nil && r.Lun != nil {
		got, err := fromPB(r.Lun)
		if err != nil {
			return false, badAnswer(m, vss.GUID_NULL, err)
		}
		*info = got
	}
	return r.Supported, nil
}

// OnLunEmpty implements provider.HardwareProvider.
func (c *Client) OnLunEmpty(ctx context.Context, device string, info provider.LunInfo) error {
	const m = vss.MethodOnLunEmpty
	r, err := c.hw.OnLunEmpty(ctx, &wirepb.OnLunEmptyRequest{Device: device, Lun: toPB(info)})
	if err != nil {
		return transport(m, vss.GUID_NULL, err)
	}
	return answer(m, vss.GUID_NULL, r.Result)
}

// exFailure is the error of an Ex call that failed in transport: a remote
// without the Ex interface answers as the coordinator answers for a local
// provider without it.
func exFailure(m vss.ProviderMethod, err error) error {
	if status.Code(err) == codes.Unimplemented {
		return &provider.Error{Method: m, Code: vss.VSS_E_PROVIDER_VETO, Err: ErrNoInterface}
	}
	return transport(m, vss.GUID_NULL, err)
}

// GetProviderCapabilities implements provider.HardwareProviderEx.
func (c *Client) GetProviderCapabilities(ctx context.Context) (vss.ProviderCapability, error) {
	const m = vss.MethodGetProviderCapabilities
	r, err := c.ex.GetProviderCapabilities(ctx, &wirepb.GetProviderCapabilitiesRequest{})
	if err != nil {
		return 0, exFailure(m, err)
	}
	if err := answer(m, vss.GUID_NULL, r.Result); err != nil {
		return 0, err
	}
	return vss.ProviderCapability(r.Capabilities), nil
}

// OnLunStateChange implements provider.HardwareProviderEx.
func (c *Client) OnLunStateChange(ctx context.Context, snapshotLuns, originalLuns []provider.LunInfo, flags vss.HardwareOptions) error {
	const m = vss.MethodOnLunStateChange
	r, err := c.ex.OnLunStateChange(ctx, &wirepb.OnLunStateChangeRequest{SnapshotLuns: toPBs(snapshotLuns),
		OriginalLuns: toPBs(originalLuns), Flags: uint32(flags)})
	if err != nil {
		return exFailure(m, err)
	}
	return answer(m, vss.GUID_NULL, r.Result)
}

// ResyncLuns implements provider.HardwareProviderEx; the Async waits for
// the remote operation with WaitOperation.
func (c *Client) ResyncLuns(ctx context.Context, sources, targets []provider.LunInfo) (provider.Async, error) {
	const m = vss.MethodResyncLuns
	r, err := c.ex.ResyncLuns(ctx, &wirepb.ResyncLunsRequest{SourceLuns: toPBs(sources), TargetLuns: toPBs(targets)})
	if err != nil {
		return nil, exFailure(m, err)
	}
	if err := answer(m, vss.GUID_NULL, r.Result); err != nil {
		return nil, err
	}
	if r.Operation == "" {
		return nil, nil
	}
	return remoteAsync{c: c, op: r.Operation}, nil
}

// remoteAsync is a ResyncLuns running in the remote provider.
type remoteAsync struct {
	c  *Client
	op string
}

// Wait blocks until the remote operation ends or ctx does.
func (a remoteAsync) Wait(ctx context.Context) error {
	const m = vss.MethodResyncLuns
	r, err := a.c.ex.WaitOperation(ctx, &wirepb.WaitOperationRequest{Operation: a.op})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return transport(m, vss.GUID_NULL, err)
	}
	return answer(m, vss.GUID_NULL, r.Result)
}

// OnReuseLuns implements provider.HardwareProviderEx.
func (c *Client) OnReuseLuns(ctx context.Context, snapshotLuns, originalLuns []provider.LunInfo) error {
	const m = vss.MethodOnReuseLuns
	r, err := c.ex.OnReuseLuns(ctx, &wirepb.OnReuseLunsRequest{SnapshotLuns: toPBs(snapshotLuns), OriginalLuns: toPBs(originalLuns)})
	if err != nil {
		return exFailure(m, err)
	}
	return answer(m, vss.GUID_NULL, r.Result)
}

// setCall runs one method of ProviderCreateSnapshotSet.
func (c *Client) setCall(m vss.ProviderMethod, set vss.ID, call func() (*wirepb.ResultResponse, error)) error {
	r, err := call()
	if err != nil {
		return transport(m, set, err)
	}
	return answer(m, set, r.Result)
}

func setReq(set vss.ID) *wirepb.SnapshotSetRequest {
	return &wirepb.SnapshotSetRequest{SnapshotSetId: set.String()}
}

// EndPrepareSnapshots implements provider.SnapshotSetCreator.
func (c *Client) EndPrepareSnapshots(ctx context.Context, set vss.ID) error {
	return c.setCall(vss.MethodEndPrepareSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.EndPrepareSnapshots(ctx, setReq(set))
	})
}

// PreCommitSnapshots implements provider.SnapshotSetCreator.
func (c *Client) PreCommitSnapshots(ctx context.Context, set vss.ID) error {
	return c.setCall(vss.MethodPreCommitSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.PreCommitSnapshots(ctx, setReq(set))
	})
}

// CommitSnapshots implements provider.SnapshotSetCreator.
func (c *Client) CommitSnapshots(ctx context.Context, set vss.ID) error {
	return c.setCall(vss.MethodCommitSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.CommitSnapshots(ctx, setReq(set))
	})
}

// PostCommitSnapshots implements provider.SnapshotSetCreator.
func (c *Client) PostCommitSnapshots(ctx context.Context, set vss.ID, count int) error {
	return c.setCall(vss.MethodPostCommitSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.PostCommitSnapshots(ctx, &wirepb.PostCommitSnapshotsRequest{SnapshotSetId: set.String(), SnapshotsCount: int32(count)})
	})
}

// PreFinalCommitSnapshots implements provider.SnapshotSetCreator.
func (c *Client) PreFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return c.setCall(vss.MethodPreFinalCommitSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.PreFinalCommitSnapshots(ctx, setReq(set))
	})
}

// PostFinalCommitSnapshots implements provider.SnapshotSetCreator.
func (c *Client) PostFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return c.setCall(vss.MethodPostFinalCommitSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.PostFinalCommitSnapshots(ctx, setReq(set))
	})
}

// AbortSnapshots implements provider.SnapshotSetCreator.
func (c *Client) AbortSnapshots(ctx context.Context, set vss.ID) error {
	return c.setCall(vss.MethodAbortSnapshots, set, func() (*wirepb.ResultResponse, error) {
		return c.set.AbortSnapshots(ctx, setReq(set))
	})
}

// OnLoad implements provider.Notifications; a remote that serves no
// notifications needs none.
func (c *Client) OnLoad(ctx context.Context) error {
	r, err := c.notify.OnLoad(ctx, &wirepb.OnLoadRequest{})
	if status.Code(err) == codes.Unimplemented {
		return nil
	}
	if err != nil {
		return transport(vss.MethodOnLoad, vss.GUID_NULL, err)
	}
	return answer(vss.MethodOnLoad, vss.GUID_NULL, r.Result)
}

// OnUnload implements provider.Notifications.
func (c *Client) OnUnload(ctx context.Context, force bool) error {
	r, err := c.notify.OnUnload(ctx, &wirepb.OnUnloadRequest{Force: force})
	if status.Code(err) == codes.Unimplemented {
		return nil
	}
	if err != nil {
		return transport(vss.MethodOnUnload, vss.GUID_NULL, err)
	}
	return answer(vss.MethodOnUnload, vss.GUID_NULL, r.Result)
}
