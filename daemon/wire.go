package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// remoteProvider is a provider reached over the provider protocol, which
// the coordinator selects like any other (vss-spec.md A.5).
type remoteProvider struct {
	reg    coordinator.Registration
	client *wire.Client
}

// A remote provider's array is reached through the protocol's
// KernelSupport.
var _ coordinator.LunHost = (*wire.Client)(nil)

// providerServer serves one of the daemon's array providers over the
// provider protocol.
type providerServer struct {
	name string
	ls   net.Listener
	srv  *wire.Server
	done chan struct{} // closed when Serve returned
}

// onLoadTimeout bounds OnLoad of a remote provider at start: an unreachable
// provider must not hold the daemon's start for the provider timeout.
const onLoadTimeout = 5 * time.Second

// addRemoteProvider dials and registers a remote provider. A provider that
// cannot be reached yet is registered all the same (its calls fail as
// provider failures until it answers, and the client reconnects by itself),
// so a daemon and the providers it names can start in any order.
func (d *Daemon) addRemoteProvider(ctx context.Context, p ProviderConfig, typ vss.ProviderType) error {
	c, err := wire.Dial(p.Remote)
	if err != nil {
		return err
	}
	id, err := providerID(d.array, p.Name)
	if err != nil {
		_ = c.Close()
		return err
	}
	e := &remoteProvider{client: c, reg: coordinator.Registration{ID: id, Name: p.Name, Type: typ, Priority: p.Priority,
		Provider: c, Host: c}}
	d.remotes = append(d.remotes, e)
	lctx, cancel := context.WithTimeout(ctx, onLoadTimeout)
	defer cancel()
	err = d.svc.RegisterProvider(lctx, e.reg)
	if errors.Is(err, wire.ErrUnavailable) || errors.Is(err, wire.ErrDeadline) {
		d.log.Warn("remote provider not reachable yet; registered all the same", "provider", p.Name, "addr", p.Remote, "err", err)
		return nil
	}
	return err
}

// serveProvider serves an array provider over the protocol from New on,
// so that the daemon's own remote providers (a loop back, in tests) and
// other coordinators can reach it as soon as it is registered; an address
// in use fails the start. stopProviders stops it.
func (d *Daemon) serveProvider(name, addr string, prov provider.Provider) error {
	ls, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("provider %s: listen: %w", name, err)
	}
	ps := &providerServer{name: name, ls: ls, done: make(chan struct{}),
		srv: wire.NewServer(prov, wire.WithArray(d.array), wire.WithServerLogger(d.log))}
	d.provSrvs = append(d.provSrvs, ps)
	d.log.Info("serving the provider protocol", "provider", name, "addr", ls.Addr().String())
	go func() {
		defer close(ps.done)
		if err := ps.srv.Serve(ls); err != nil {
			d.log.Error("provider protocol server failed", "provider", name, "err", err)
		}
	}()
	return nil
}

// ProviderAddrs returns the addresses the array providers are served on
// over the provider protocol, by provider name.
func (d *Daemon) ProviderAddrs() map[string]net.Addr {
	out := map[string]net.Addr{}
	for _, ps := range d.provSrvs {
		out[ps.name] = ps.ls.Addr()
	}
	return out
}

// stopProviders stops the provider servers (their holds are released) and
// closes the remote providers' connections.
func (d *Daemon) stopProviders() {
	for _, ps := range d.provSrvs {
		ps.srv.Stop()
		<-ps.done
	}
	d.provSrvs = nil
	for _, r := range d.remotes {
		_ = r.client.Close()
	}
}
