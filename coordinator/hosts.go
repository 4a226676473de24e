package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// LunHost is the array behind a provider whose LUNs are not in the
// service's own array: another process or host, reached over the provider
// protocol's KernelSupport (provider/wire's Client implements it). It is
// what Windows' VSS finds on the host's disks (their SCSI inquiry, the
// rescan) and what its kernel support does to them (flush & hold), for the
// LUNs that array serves: the I/O gate of a LUN lives with its array.
type LunHost interface {
	// DescribeLuns returns the VDS_LUN_INFORMATION of the array's LUNs,
	// 1:1 with devices.
	DescribeLuns(ctx context.Context, devices []string) ([]provider.LunInfo, error)
	// FlushAndHold flushes the LUNs, holds their gates and waits for the
	// drain; the gates release themselves after window.
	FlushAndHold(ctx context.Context, set vss.ID, devices []string, window time.Duration) error
	// ReleaseWrites releases the hold of set; VSS_E_HOLD_WRITES_TIMEOUT
	// when the window had passed first.
	ReleaseWrites(ctx context.Context, set vss.ID) error
	// Rescan returns the unmasked LUNs with the NAA designators, 1:1, ""
	// where none has one: one round trip for every target LUN a set has
	// on the array.
	Rescan(ctx context.Context, naas [][]byte) ([]string, error)
}

// AddVolumeOn defines a volume whose LUNs live on the array behind the
// registered provider named host (its Registration.Host), not in the
// service's array. Provider selection is unchanged: every provider is
// asked AreLunsSupported; the host's own provider is the one that knows
// the LUNs.
func (s *Service) AddVolumeOn(name, host string, luns ...string) error {
	if name == "" || len(luns) == 0 {
		return ErrBadVolume
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var reg *Registration
	for _, p := range s.mu.providers {
		if p.Name == host {
			reg = p
		}
	}
	if reg == nil || reg.Host == nil {
		return fmt.Errorf("%w: volume %s: no provider %q with an array of its own", ErrNoSuchLUN, name, host)
	}
	if _, ok := s.mu.volumes[name]; ok {
		return fmt.Errorf("%w: volume %s", ErrDuplicate, name)
	}
	s.mu.volumes[name] = slices.Clone(luns)
	if s.mu.volumeHosts == nil {
		s.mu.volumeHosts = map[string]*Registration{}
	}
	s.mu.volumeHosts[name] = reg
	return nil
}

// volumeHost returns the registration whose array holds the volume's LUNs,
// nil for the service's own array.
func (s *Service) volumeHost(name string) *Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.volumeHosts[name]
}

// describe returns the LUN information of a volume on a host's array, as
// AddToSnapshotSet hands it to AreLunsSupported.
func (s *Service) describe(ctx context.Context, host *Registration, volume string, names []string) ([]provider.LunInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProviderTimeout)
	defer cancel()
	infos, err := host.Host.DescribeLuns(ctx, names)
	if err == nil && len(infos) != len(names) {
		err = fmt.Errorf("%d LUN descriptions for %d LUNs", len(infos), len(names))
	}
	switch {
	case err == nil:
		return infos, nil
	case errors.Is(err, vss.VSS_E_OBJECT_NOT_FOUND):
		return nil, fmt.Errorf("%w: LUNs of volume %s on %s: %v", vss.VSS_E_OBJECT_NOT_FOUND, volume, host.Name, err)
	}
	return nil, fmt.Errorf("%w: LUNs of volume %s on %s: %v", vss.VSS_E_UNEXPECTED, volume, host.Name, err)
}

// releaseGrace is how long past the hold window ReleaseWrites may take to
// answer.
const releaseGrace = 100 * time.Millisecond

// hostHold is the part of a set's flush & hold on one host's array.
type hostHold struct {
	reg     *Registration
	devices []string
	held    bool
}

// hostHolds groups the set's LUNs on hosts' arrays by host, each LUN once.
func (r *setRun) hostHolds() []*hostHold {
	var out []*hostHold
	for _, v := range r.vols {
		if v.host == nil {
			continue
		}
		i := slices.IndexFunc(out, func(h *hostHold) bool { return h.reg == v.host })
		if i < 0 {
			out = append(out, &hostHold{reg: v.host})
			i = len(out) - 1
		}
		for _, n := range v.luns {
			if !slices.Contains(out[i].devices, n) {
				out[i].devices = append(out[i].devices, n)
			}
		}
	}
	return out
}

// holdHosts flushes and holds every host's LUNs at once, each hold for
// what remains of the window, so every gate releases by itself by the
// window's end. It fails with the first failure, and leaves held the
// holds that succeeded (releaseHosts releases them).
func (r *setRun) holdHosts(ctx context.Context, hs []*hostHold) error {
	deadline, _ := ctx.Deadline()
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			errs[i] = h.reg.Host.FlushAndHold(ctx, r.id, h.devices, time.Until(deadline))
			if errs[i] == nil {
				h.held = true
			} else {
				errs[i] = fmt.Errorf("hold %v on %s: %w", h.devices, h.reg.Name, errs[i])
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// releaseHosts releases every host's hold at once, and reports whether any
// could not be shown to have held until now: a hold that timed out, or a
// host that did not answer (its gates release themselves at the window's
// end, but the commit cannot be trusted to have been quiescent). It waits
// for no host past the end of holdCtx's window (and a moment's grace for
// the answer in flight): by then every remote gate has released itself.
func (r *setRun) releaseHosts(holdCtx context.Context, hs []*hostHold) (timedOut bool, err error) {
	deadline, _ := holdCtx.Deadline()
	ctx, cancel := context.WithDeadline(context.WithoutCancel(holdCtx), deadline.Add(releaseGrace))
	defer cancel()
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		if !h.held {
			continue
		}
		wg.Go(func() {
			if err := h.reg.Host.ReleaseWrites(ctx, r.id); err != nil {
				errs[i] = fmt.Errorf("release on %s: %w", h.reg.Name, err)
			}
			h.held = false
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	return err != nil, err
}

// rescanOn finds arriving snapshot LUNs on the volumes' array (host, nil
// for the service's), 1:1 with naas, "" for one that did not arrive.
func (r *setRun) rescanOn(ctx context.Context, host *Registration, naas [][]byte) []string {
	if host == nil {
		out := make([]string, len(naas))
		for i, naa := range naas {
			out[i] = r.s.rescan(naa)
		}
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, r.s.cfg.ProviderTimeout)
	defer cancel()
	devs, err := host.Host.Rescan(ctx, naas)
	if err == nil && len(devs) != len(naas) {
		err = fmt.Errorf("%d devices for %d designators", len(devs), len(naas))
	}
	if err != nil {
		r.logEvent(func() {
			r.s.log.Warn("rescan failed", "provider", host.Name, "err", err)
		})
		return make([]string, len(naas))
	}
	return devs
}

// concurrent reports whether the calls of one step of the set go to its
// providers at once: when there are several and each has an array of its
// own (Registration.Host), so that a round trip to one array does not wait
// for another's. vss-spec.md A.7 orders the steps, not the providers
// within a step ("each provider", "all providers"), and each provider
// still sees its own calls in A.7's order. A set with a provider of the
// service's own array calls them in order, as an in-process set always
// did, so its trace is the same from run to run; calling the in-process
// providers at once too was rejected for that reason, and for no gain (a
// call to them costs microseconds).
func (r *setRun) concurrent() bool {
	if len(r.provs) < 2 {
		return false
	}
	for _, p := range r.provs {
		if p.Host == nil {
			return false
		}
	}
	return true
}

// forProviders runs fn for every provider of the set: at once when
// concurrent (each call on a goroutine fn's caller waits for), else in
// order, stopping at the first failure. It returns the first failure in
// the providers' order.
func (r *setRun) forProviders(fn func(p *Registration) vss.HRESULT) vss.HRESULT {
	if !r.concurrent() {
		for _, p := range r.provs {
			if hr := fn(p); hr.Failed() {
				return hr
			}
		}
		return vss.S_OK
	}
	hrs := make([]vss.HRESULT, len(r.provs))
	var wg sync.WaitGroup
	for i, p := range r.provs {
		wg.Go(func() { hrs[i] = fn(p) })
	}
	wg.Wait()
	for _, hr := range hrs {
		if hr.Failed() {
			return hr
		}
	}
	return vss.S_OK
}
