package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire/wirepb"
	"github.com/shadowbench/shadowbench/vss"
)

// kernelServer is KernelSupport over the server's array: the emulation of
// volsnap's flush & hold for the LUNs this array serves, and of the host's
// view of its disks.
type kernelServer struct {
	wirepb.UnimplementedKernelSupportServer
	s *Server
}

func (k kernelServer) luns(devices []string) ([]*lun.LUN, error) {
	if len(devices) == 0 {
		return nil, fmt.Errorf("%w: no devices", vss.E_INVALIDARG)
	}
	out := make([]*lun.LUN, len(devices))
	for i, d := range devices {
		l, err := k.s.array.Get(d)
		if err != nil {
			return nil, fmt.Errorf("%w: LUN %q: %w", vss.VSS_E_OBJECT_NOT_FOUND, d, err)
		}
		out[i] = l
	}
	return out, nil
}

func (k kernelServer) DescribeLuns(_ context.Context, r *wirepb.DescribeLunsRequest) (*wirepb.DescribeLunsResponse, error) {
	luns, err := k.luns(r.Devices)
	if err != nil {
		return &wirepb.DescribeLunsResponse{Result: result(err)}, nil
	}
	out := make([]*wirepb.LunInformation, len(luns))
	for i, l := range luns {
		out[i] = toPB(provider.LunInfoOf(l))
	}
	return &wirepb.DescribeLunsResponse{Result: result(nil), Luns: out}, nil
}

// FlushAndHold is the coordinator's FlushAndHold step for this array's LUNs:
// flush them together, close every gate, then drain each. Any failure
// releases what it closed.
func (k kernelServer) FlushAndHold(ctx context.Context, r *wirepb.FlushAndHoldRequest) (*wirepb.ResultResponse, error) {
	set, err := parseID(r.SnapshotSetId)
	if err == nil && set.IsNull() {
		err = fmt.Errorf("%w: GUID_NULL names no hold", ErrMalformed)
	}
	window := time.Duration(r.WindowNs)
	if err == nil && window <= 0 {
		err = fmt.Errorf("%w: window %v", ErrMalformed, window)
	}
	if err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	luns, err := k.luns(r.Devices)
	if err != nil {
		return &wirepb.ResultResponse{Result: result(err)}, nil
	}
	k.s.mu.Lock()
	if _, busy := k.s.mu.holds[set]; busy {
		k.s.mu.Unlock()
		return &wirepb.ResultResponse{Result: result(fmt.Errorf("%w: set %v holds already", vss.VSS_E_BAD_STATE, set))}, nil
	}
	k.s.mu.holds[set] = nil // reserved while the flush runs
	k.s.mu.Unlock()

	holds, err := holdAll(ctx, luns, window)
	k.s.mu.Lock()
	if err != nil {
		delete(k.s.mu.holds, set)
	} else {
		k.s.mu.holds[set] = holds
	}
	k.s.mu.Unlock()
	return &wirepb.ResultResponse{Result: result(err)}, nil
}

// holdAll flushes, closes and drains the LUNs' gates, each with its own
// deadline of window (the gates release themselves when it passes).
func holdAll(ctx context.Context, luns []*lun.LUN, window time.Duration) ([]*lun.Hold, error) {
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	fail := func(what string, err error, holds []*lun.Hold) ([]*lun.Hold, error) {
		for _, h := range holds {
			if h != nil {
				_ = h.Release()
			}
		}
		code := vss.VSS_E_UNEXPECTED
		if ctx.Err() != nil {
			code = vss.VSS_E_FLUSH_WRITES_TIMEOUT
		}
		return nil, fmt.Errorf("%w: %s: %w", code, what, err)
	}
	if err := lun.FlushAll(ctx, luns); err != nil {
		return fail("flush", err, nil)
	}
	holds := make([]*lun.Hold, len(luns))
	for i, l := range luns {
		h, err := l.BeginHold(window)
		if err != nil {
			return fail("hold "+l.Name(), err, holds)
		}
		holds[i] = h
	}
	for i, h := range holds {
		if err := h.Drain(ctx); err != nil {
			return fail("drain "+luns[i].Name(), err, holds)
		}
	}
	return holds, nil
}

func (k kernelServer) ReleaseWrites(_ context.Context, r *wirepb.ReleaseWritesRequest) (*wirepb.ResultResponse, error) {
	set, err := parseID(r.SnapshotSetId)
	if err != nil {
		return &wirepb.ResultResponse{Result: invalid(err)}, nil
	}
	k.s.mu.Lock()
	holds, ok := k.s.mu.holds[set]
	if ok && holds != nil {
		delete(k.s.mu.holds, set)
	}
	k.s.mu.Unlock()
	if !ok || holds == nil {
		return &wirepb.ResultResponse{Result: result(fmt.Errorf("%w: no hold of set %v", vss.VSS_E_OBJECT_NOT_FOUND, set))}, nil
	}
	var timedOut bool
	for _, h := range holds {
		if errors.Is(h.Release(), lun.ErrHoldTimeout) {
			timedOut = true
		}
	}
	if timedOut {
		return &wirepb.ResultResponse{Result: result(fmt.Errorf("%w: writes were released before ReleaseWrites", vss.VSS_E_HOLD_WRITES_TIMEOUT))}, nil
	}
	return &wirepb.ResultResponse{Result: result(nil)}, nil
}

func (k kernelServer) Rescan(_ context.Context, r *wirepb.RescanRequest) (*wirepb.RescanResponse, error) {
	find := func(naa []byte) string {
		if len(naa) == 0 {
			return ""
		}
		for _, l := range k.s.array.List() {
			id := l.Identity().NAA
			if !l.Masked() && string(id[:]) == string(naa) {
				return l.Name()
			}
		}
		return ""
	}
	out := &wirepb.RescanResponse{Result: result(nil), Device: find(r.Naa)}
	if len(r.Naas) > 0 {
		out.Devices = make([]string, len(r.Naas))
		for i, naa := range r.Naas {
			out.Devices[i] = find(naa)
		}
	}
	return out, nil
}
