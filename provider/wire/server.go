package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// Server serves one in-process provider over the protocol. The services it
// registers follow the interfaces the provider implements, as
// QueryInterface would find them: HardwareSnapshotProvider and
// ProviderCreateSnapshotSet always, HardwareSnapshotProviderEx and
// ProviderNotifications when the provider has them, and KernelSupport when
// the server was given the array that holds the provider's LUNs
// (WithArray).
type Server struct {
	prov  provider.Provider
	array *lun.Array
	log   *slog.Logger
	grpc  *grpc.Server

	// mu guards the holds KernelSupport made and the ResyncLuns
	// operations, by name.
	mu struct {
		sync.Mutex
		holds map[vss.ID][]*lun.Hold
		ops   map[string]provider.Async
	}
}

// ServerOption configures a Server.
type ServerOption func(*Server)

// WithArray serves KernelSupport over the array that holds the provider's
// LUNs: their descriptions, their I/O gates and the rescan.
func WithArray(a *lun.Array) ServerOption { return func(s *Server) { s.array = a } }

// WithServerLogger sets the logger of contained panics and released holds.
func WithServerLogger(l *slog.Logger) ServerOption { return func(s *Server) { s.log = l } }

// NewServer returns a server of p. Nothing is served until Serve.
func NewServer(p provider.Provider, opts ...ServerOption) *Server {
	s := &Server{prov: p, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	s.mu.holds = map[vss.ID][]*lun.Hold{}
	s.mu.ops = map[string]provider.Async{}
	s.grpc = grpc.NewServer(
		grpc.UnaryInterceptor(s.contain),
		// Clients ping an idle connection every few seconds to find a
		// dead peer (dialOptions); the default policy would close them
		// for pinging too often.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}),
	)
	wirepb.RegisterHardwareSnapshotProviderServer(s.grpc, hwServer{s: s})
	wirepb.RegisterProviderCreateSnapshotSetServer(s.grpc, setServer{s: s})
	if ex, ok := p.(provider.HardwareProviderEx); ok {
		wirepb.RegisterHardwareSnapshotProviderExServer(s.grpc, exServer{s: s, ex: ex})
	}
	if n, ok := p.(provider.Notifications); ok {
		wirepb.RegisterProviderNotificationsServer(s.grpc, notifyServer{n: n})
	}
	if s.array != nil {
		wirepb.RegisterKernelSupportServer(s.grpc, kernelServer{s: s})
	}
	return s
}

// Serve answers calls on ls until Stop; it returns nil after Stop.
func (s *Server) Serve(ls net.Listener) error {
	err := s.grpc.Serve(ls)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop closes the listeners and every connection, cancels the calls in
// flight and waits for their handlers to return; then it releases every
// hold still closed.
func (s *Server) Stop() {
	s.grpc.Stop()
	s.mu.Lock()
	holds := s.mu.holds
	s.mu.holds = map[vss.ID][]*lun.Hold{}
	s.mu.Unlock()
	for _, hs := range holds {
		for _, h := range hs {
			_ = h.Release()
		}
	}
}

// contain turns a panic in a handler into an INTERNAL status for that call
// alone, which the client reports as a provider failure: no panic reaches a
// client or stops the server.
func (s *Server) contain(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("provider call panicked", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "provider panicked in %s: %v", info.FullMethod, r)
		}
	}()
	return h(ctx, req)
}

// invalid is the Result of a request that cannot be decoded: E_INVALIDARG,
// as the COM method would answer an argument it cannot read.
func invalid(err error) *wirepb.Result {
	return &wirepb.Result{Hresult: uint32(vss.E_INVALIDARG), Message: err.Error()}
}

type hwServer struct {
	wirepb.UnimplementedHardwareSnapshotProviderServer
	s *Server
}

func (h hwServer) AreLunsSupported(ctx context.Context, r *wirepb.AreLunsSupportedRequest) (*wirepb.AreLunsSupportedResponse, error) {
	luns, err := fromPBs(r.Luns)
	if err != nil {
		return &wirepb.AreLunsSupportedResponse{Result: invalid(err)}, nil
	}
	ok, err := h.s.prov.AreLunsSupported(ctx, vss.SnapshotContext(r.Context), r.Devices, luns)
	return &wirepb.AreLunsSupportedResponse{Result: result(err), Supported: ok}, nil
}

func (h hwServer) BeginPrepareSnapshot(ctx context.Context, r *wirepb.BeginPrepareSnapshotRequest) (*wirepb.ResultResponse, error) {
	set, err1 := parseID(r.SnapshotSetId)
	snap, err2 := parseID(r.SnapshotId)
	luns, err3 := fromPBs(r.Luns)
	if err := errors.Join(err1, err2, err3); err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	err := h.s.prov.BeginPrepareSnapshot(ctx, set, snap, vss.SnapshotContext(r.Context), r.Devices, luns)
	return &wirepb.ResultResponse{Result: result(err)}, nil
}

func (h hwServer) GetTargetLuns(ctx context.Context, r *wirepb.GetTargetLunsRequest) (*wirepb.GetTargetLunsResponse, error) {
	src, err := fromPBs(r.SourceLuns)
	if err != nil {
		return &wirepb.GetTargetLunsResponse{Result: invalid(err)}, nil
	}
	dst, err := h.s.prov.GetTargetLuns(ctx, r.Devices, src)
	if err != nil {
		return &wirepb.GetTargetLunsResponse{Result: result(err)}, nil
	}
	return &wirepb.GetTargetLunsResponse{Result: result(nil), DestinationLuns: toPBs(dst)}, nil
}

func (h hwServer) LocateLuns(ctx context.Context, r *wirepb.LocateLunsRequest) (*wirepb.ResultResponse, error) {
	luns, err := fromPBs(r.SourceLuns)
	if err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	return &wirepb.ResultResponse{Result: result(h.s.prov.LocateLuns(ctx, luns))}, nil
}

func (h hwServer) FillInLunInfo(ctx context.Context, r *wirepb.FillInLunInfoRequest) (*wirepb.FillInLunInfoResponse, error) {
	var info provider.LunInfo
	if r.Lun != nil {
		var err error
		if info, err = fromPB(r.Lun); err != nil {
			return &wirepb.FillInLunInfoResponse{Result: invalid(err)}, nil
		}
	}
	ok, err := h.s.prov.FillInLunInfo(ctx, r.Device, &info)
	return &wirepb.FillInLunInfoResponse{Result: result(err), Lun: toPB(info), Supported: ok}, nil
}

func (h hwServer) OnLunEmpty(ctx context.Context, r *wirepb.OnLunEmptyRequest) (*wirepb.ResultResponse, error) {
	info, err := fromPB(r.Lun)
	if err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	return &wirepb.ResultResponse{Result: result(h.s.prov.OnLunEmpty(ctx, r.Device, info))}, nil
}

type setServer struct {
	wirepb.UnimplementedProviderCreateSnapshotSetServer
	s *Server
}

// call runs one set-bound method after decoding the set ID.
func (h setServer) call(ctx context.Context, id string, fn func(context.Context, vss.ID) error) (*wirepb.ResultResponse, error) {
	set, err := parseID(id)
	if err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	return &wirepb.ResultResponse{Result: result(fn(ctx, set))}, nil
}

func (h setServer) EndPrepareSnapshots(ctx context.Context, r *wirepb.SnapshotSetRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, h.s.prov.EndPrepareSnapshots)
}

func (h setServer) PreCommitSnapshots(ctx context.Context, r *wirepb.SnapshotSetRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, h.s.prov.PreCommitSnapshots)
}

func (h setServer) CommitSnapshots(ctx context.Context, r *wirepb.SnapshotSetRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, h.s.prov.CommitSnapshots)
}

func (h setServer) PostCommitSnapshots(ctx context.Context, r *wirepb.PostCommitSnapshotsRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, func(ctx context.Context, set vss.ID) error {
		return h.s.prov.PostCommitSnapshots(ctx, set, int(r.SnapshotsCount))
	})
}

func (h setServer) PreFinalCommitSnapshots(ctx context.Context, r *wirepb.SnapshotSetRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, h.s.prov.PreFinalCommitSnapshots)
}

func (h setServer) PostFinalCommitSnapshots(ctx context.Context, r *wirepb.SnapshotSetRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, h.s.prov.PostFinalCommitSnapshots)
}

func (h setServer) AbortSnapshots(ctx context.Context, r *wirepb.SnapshotSetRequest) (*wirepb.ResultResponse, error) {
	return h.call(ctx, r.SnapshotSetId, h.s.prov.AbortSnapshots)
}

type exServer struct {
	wirepb.UnimplementedHardwareSnapshotProviderExServer
	s  *Server
	ex provider.HardwareProviderEx
}

func (h exServer) GetProviderCapabilities(ctx context.Context, _ *wirepb.GetProviderCapabilitiesRequest) (*wirepb.GetProviderCapabilitiesResponse, error) {
	c, err := h.ex.GetProviderCapabilities(ctx)
	return &wirepb.GetProviderCapabilitiesResponse{Result: result(err), Capabilities: uint64(c)}, nil
}

func (h exServer) OnLunStateChange(ctx context.Context, r *wirepb.OnLunStateChangeRequest) (*wirepb.ResultResponse, error) {
	snaps, err1 := fromPBs(r.SnapshotLuns)
	origs, err2 := fromPBs(r.OriginalLuns)
	if err := errors.Join(err1, err2); err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	return &wirepb.ResultResponse{Result: result(h.ex.OnLunStateChange(ctx, snaps, origs, vss.HardwareOptions(r.Flags)))}, nil
}

func (h exServer) ResyncLuns(ctx context.Context, r *wirepb.ResyncLunsRequest) (*wirepb.ResyncLunsResponse, error) {
	src, err1 := fromPBs(r.SourceLuns)
	dst, err2 := fromPBs(r.TargetLuns)
	if err := errors.Join(err1, err2); err != nil {
		return &wirepb.ResyncLunsResponse{Result: invalid(err)}, nil
	}
	a, err := h.ex.ResyncLuns(ctx, src, dst)
	if err != nil || a == nil {
		return &wirepb.ResyncLunsResponse{Result: result(err)}, nil
	}
	op := vss.NewID().String()
	h.s.mu.Lock()
	h.s.mu.ops[op] = a
	h.s.mu.Unlock()
	return &wirepb.ResyncLunsResponse{Result: result(nil), Operation: op}, nil
}

func (h exServer) WaitOperation(ctx context.Context, r *wirepb.WaitOperationRequest) (*wirepb.ResultResponse, error) {
	h.s.mu.Lock()
	a, ok := h.s.mu.ops[r.Operation]
	h.s.mu.Unlock()
	if !ok {
		return &wirepb.ResultResponse{Result: result(fmt.Errorf("%w: operation %q", vss.VSS_E_OBJECT_NOT_FOUND, r.Operation))}, nil
	}
	err := a.Wait(ctx)
	if ctx.Err() != nil {
		// The wait ended, not the operation: it stays for the next wait.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	h.s.mu.Lock()
	delete(h.s.mu.ops, r.Operation)
	h.s.mu.Unlock()
	return &wirepb.ResultResponse{Result: result(err)}, nil
}

func (h exServer) OnReuseLuns(ctx context.Context, r *wirepb.OnReuseLunsRequest) (*wirepb.ResultResponse, error) {
	snaps, err1 := fromPBs(r.SnapshotLuns)
	origs, err2 := fromPBs(r.OriginalLuns)
	if err := errors.Join(err1, err2); err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	return &wirepb.ResultResponse{Result: result(h.ex.OnReuseLuns(ctx, snaps, origs))}, nil
}

type notifyServer struct {
	wirepb.UnimplementedProviderNotificationsServer
	n provider.Notifications
}

func (h notifyServer) OnLoad(ctx context.Context, _ *wirepb.OnLoadRequest) (*wirepb.ResultResponse, error) {
	return &wirepb.ResultResponse{Result: result(h.n.OnLoad(ctx))}, nil
}

func (h notifyServer) OnUnload(ctx context.Context, r *wirepb.OnUnloadRequest) (*wirepb.ResultResponse, error) {
	return &wirepb.ResultResponse{Result: result(h.n.OnUnload(ctx, r.Force))}, nil
}
