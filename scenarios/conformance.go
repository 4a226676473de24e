package scenarios

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// Conformance: the scenarios run against a provider reached over the
// provider protocol (provider/wire), as scenario run --provider does.
//
//   - ProviderLoopback serves each provider of the file, the emulated
//     array's with its profile, on 127.0.0.1 for the run, and the
//     coordinator calls it through the protocol's client. The array and
//     its I/O gates stay in the runner's process (the registration has no
//     Host), so every scenario of the library runs, and must give the
//     verdict it gives in-process: a difference is the protocol's fault.
//   - HOST:PORT is a provider served elsewhere: a vendor's, or serve
//     --provider-listen's. It stands in for the file's one hardware
//     provider, with its array for the LUNs (Registration.Host: flush &
//     hold, rescans and LUN descriptions go to it), so the file's LUNs must
//     exist there under the file's names. A provider that serves no
//     KernelSupport (it has no array to reach, as examples/python-provider)
//     works on the runner's array, as in-process. Only the provider-facing
//     scenarios run: those whose steps go through the VSS interfaces alone.
//     A scenario that needs the emulated array's parts (a firmware profile,
//     LUN faults or caches, an NBD load, data or file-system steps, checks
//     of the store, release-commit) is not applicable to a provider served
//     elsewhere, and says why. The runner makes nothing on that array: the
//     snapshots a scenario keeps (persistent ones) stay there, so give each
//     run a fresh array, or delete them between runs.

// ProviderLoopback is the Options.Provider that serves the file's own
// providers over the provider protocol on 127.0.0.1.
const ProviderLoopback = "loopback"

// wireProvider is one provider the runner reaches over the protocol: its
// client, and the server it runs for ProviderLoopback (nil otherwise).
type wireProvider struct {
	client *wire.Client
	srv    *wire.Server
	served chan error
	// local is a provider served elsewhere that serves no KernelSupport
	// (no array of its own to reach, as the Python sample): the file's LUNs
	// are then the runner's, as in-process.
	local bool
}

// addProvider builds the file's provider ps and registers it: in-process,
// served on loopback, or the one at Options.Provider.
func (r *runner) addProvider(ctx context.Context, ps providerSpec) error {
	st := &provState{spec: ps, id: vss.NewID()}
	reg := coordinator.Registration{ID: st.id, Name: ps.name, Type: ps.typ, Priority: ps.priority}
	var inner fullProvider
	switch r.opts.Provider {
	case "", ProviderLoopback:
		ap, err := provider.NewArray(r.array, r.scaleProfile(ps.profile), provider.WithLogger(slog.New(r.logs.with("provider", ps.name))))
		if err != nil {
			return err
		}
		st.inner, inner = ap, ap
		if r.opts.Provider == ProviderLoopback {
			wp, err := r.serveLoopback(ap)
			if err != nil {
				return err
			}
			inner = wp.client
		}
	default:
		inner = r.external.client
		if !r.external.local {
			reg.Host = r.external.client
		}
	}
	st.traced = &tracedProvider{name: ps.name, inner: inner, rec: r.rec, luns: ps.luns, array: r.array}
	reg.Provider = st.traced
	r.provs[ps.name] = st
	return r.svc.RegisterProvider(ctx, reg)
}

// serveLoopback serves ap over the protocol on 127.0.0.1 until the run
// ends, and dials it.
func (r *runner) serveLoopback(ap *provider.ArrayProvider) (*wireProvider, error) {
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	wp := &wireProvider{served: make(chan error, 1),
		srv: wire.NewServer(ap, wire.WithArray(r.array), wire.WithServerLogger(slog.New(r.logs.with("provider", "wire"))))}
	go func() { wp.served <- wp.srv.Serve(ls) }()
	r.wired = append(r.wired, wp)
	if wp.client, err = wire.Dial(ls.Addr().String()); err != nil {
		return nil, err
	}
	return wp, nil
}

// dialExternal dials the provider at Options.Provider for the run, and
// finds the file's LUNs on its array, or learns that it has none to reach
// (it serves no KernelSupport).
func (r *runner) dialExternal(ctx context.Context) error {
	c, err := wire.Dial(r.opts.Provider)
	if err != nil {
		return fmt.Errorf("the provider at %s: %w", r.opts.Provider, err)
	}
	r.external = &wireProvider{client: c}
	r.wired = append(r.wired, r.external)
	_, err = c.DescribeLuns(ctx, r.lunNames())
	switch {
	case errors.Is(err, wire.ErrNotServed):
		r.external.local = true
	case err != nil:
		return fmt.Errorf("the provider at %s: the scenario's LUNs %s: %w (serve them there under these names)",
			r.opts.Provider, strings.Join(r.lunNames(), ", "), err)
	}
	return nil
}

// closeWire closes the protocol's clients and stops the loopback servers.
func (r *runner) closeWire() {
	for _, wp := range r.wired {
		if wp.client != nil {
			_ = wp.client.Close()
		}
		if wp.srv != nil {
			wp.srv.Stop()
			if err := <-wp.served; err != nil {
				r.mismatch(0, "shutdown", "the provider protocol's server to stop cleanly", err.Error(), r.stepsEnd, r.stepsEnd)
			}
		}
	}
	r.wired = nil
}

// lunNames are the names of the file's LUNs.
func (r *runner) lunNames() []string {
	var out []string
	for _, l := range r.sc.array.luns {
		out = append(out, l.name)
	}
	return out
}

// errNotProviderFacing marks a scenario that needs the emulated array's
// parts, which a provider served elsewhere does not have.
var errNotProviderFacing = errors.New("not provider-facing")

// providerFacing reports why sc cannot run against a provider served
// elsewhere, or nil when its steps go through the VSS interfaces alone.
func (sc *Scenario) providerFacing() error {
	why := func(format string, args ...any) error {
		return fmt.Errorf("%w: %w: %s", errNotHere, errNotProviderFacing, fmt.Sprintf(format, args...))
	}
	if len(sc.providers) != 1 || sc.providers[0].typ != vss.VSS_PROV_HARDWARE {
		return why("it has %d providers; a provider served elsewhere stands in for one hardware provider", len(sc.providers))
	}
	ps := sc.providers[0]
	prof, def := *ps.profile, *provider.DefaultProfile()
	prof.Name, def.Name = "", ""
	if !reflect.DeepEqual(prof, def) {
		return why("provider %s has a firmware profile of its own, which only the emulated array has", ps.name)
	}
	if ps.luns != nil {
		return why("provider %s masks LUNs (luns:), which only the emulated array does", ps.name)
	}
	if sc.array.maxSnapshots != 0 || sc.array.capacity != 0 {
		return why("it sets the array's limits (max-snapshots, capacity)")
	}
	for _, l := range sc.array.luns {
		switch {
		case len(l.faults) > 0:
			return why("LUN %s has faults", l.name)
		case l.cacheSet || l.opts.Cache != lun.CacheNone:
			return why("LUN %s has a write cache", l.name)
		case l.identity != nil:
			return why("LUN %s has an identity of the file's", l.name)
		case l.filesystem != nil:
			return why("LUN %s has a file system", l.name)
		}
	}
	if len(sc.loads) > 0 {
		return why("it runs an NBD load on the emulated array")
	}
	for _, w := range sc.writers {
		if w.exec != nil || w.fsfreeze != nil {
			return why("writer %s runs commands or freezes a file system on the emulated array", w.name)
		}
	}
	var walk func([]*step) error
	walk = func(steps []*step) error {
		for _, s := range steps {
			switch s.kind {
			case stepParallel:
				if err := walk(s.parallel); err != nil {
					return err
				}
			case stepReleaseCommit, stepCheck, stepWrite, stepRead, stepFilesystem, stepPowercut:
				return why("its %s step (line %d) reaches into the emulated array", s.kind, s.line)
			}
		}
		return nil
	}
	return walk(sc.steps)
}
