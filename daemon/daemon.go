package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// defaultShutdownTimeout bounds the drain of requests at shutdown when the
// configuration sets none.
const defaultShutdownTimeout = 10 * time.Second

// Options configure a Daemon beyond its Config.
type Options struct {
	// Logger receives the daemon's log and the coordinator's event log;
	// slog.Default when nil.
	Logger *slog.Logger
	// Version is what status reports; the module's build information
	// when empty.
	Version string
	// PIDFile, when set, is written with the process ID once every
	// listener serves, and removed at exit.
	PIDFile string
	// Run is a captive command (nbdkit's --run): once the daemon serves,
	// /bin/sh runs it with $uri, $nbd, $port or $unixsocket, $exportname
	// and SHADOWBENCH_API set, and the daemon stops when it exits; Run
	// then returns a *CaptiveExit for a status other than 0. Its output
	// goes to RunStdout and RunStderr (os.Stdout and os.Stderr when nil).
	Run                  string
	RunStdout, RunStderr io.Writer
}

// Daemon is a running shadowbench: the array, the NBD server, the
// coordinator with its providers and writers, and the HTTP API.
type Daemon struct {
	cfg     *Config
	opts    Options
	log     *slog.Logger
	version string
	started time.Time
	// defaultExport is the export of NBD clients that name none.
	defaultExport string

	array *lun.Array
	svc   *coordinator.Service
	provs []*providerEntry
	// remotes are the providers reached over the provider protocol;
	// provSrvs serve array providers over it.
	remotes  []*remoteProvider
	provSrvs []*providerServer
	nbd      *nbd.Server
	nbdLs    []net.Listener
	apiLs    []net.Listener // each a *capListener
	// token is the TCP API's bearer token, "" when it takes none;
	// tokenFile is where it was written.
	token, tokenFile string
	http             *http.Server
	metrics          *metrics
	closers          []func() error // writers that hold resources (fsfreeze)

	// seq serializes the daemon's snapshot sets (B.1): a second request
	// waits for the first rather than failing with
	// VSS_E_SNAPSHOT_SET_IN_PROGRESS, and ephemeral writers join and
	// leave the service only between sets.
	seq chan struct{}

	// stop is closed when shutdown begins: polls of remote writers return
	// and new requests are refused. reqCtx is the base of every request's
	// context; reqCancel ends requests that outlive the drain.
	stop      chan struct{}
	reqCtx    context.Context
	reqCancel context.CancelFunc

	// wg owns the daemon's goroutines (servers, the reaper); handlers
	// counts API requests in flight, which net/http runs.
	wg       sync.WaitGroup
	handlers tracker
	bodies   bodyReads
	runOnce  sync.Once

	// mu guards the daemon's own records. It is never held across a call
	// into the coordinator, which may call back into remote writers.
	mu struct {
		sync.Mutex
		writers  map[vss.ID]*writerEntry
		faults   map[string][]FaultRule
		sessions map[vss.ID]*session
		sets     map[vss.ID]*setRecord
		stopping bool
		// cuts are the armed power-cut fault rules, by rule ID; nextRule
		// numbers the rules; lastCut is each LUN's last power cut.
		cuts     map[uint64]*armedCut
		nextRule uint64
		lastCut  map[string]PowerCutResult
	}
	// cuts counts the power cuts fault rules fired that are under way
	// (powerfault.go); shutdown waits for them.
	cuts    sync.WaitGroup
	catalog catalog
}

// providerEntry is a registered provider.
type providerEntry struct {
	reg  coordinator.Registration
	prov *provider.ArrayProvider
}

// writerEntry is a writer the daemon knows: one it runs (from the
// configuration) or a remote one.
type writerEntry struct {
	info   WriterInfo
	remote *remoteWriter
}

// New builds the daemon the configuration describes, after Validate: the
// array and its LUNs, the providers, the service with its writers and
// volumes, and the listeners. Nothing is served until Run. On error
// everything built so far is released.
func New(ctx context.Context, cfg *Config, opts Options) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &Daemon{cfg: cfg, opts: opts, log: log, version: opts.Version, started: time.Now(),
		seq: make(chan struct{}, 1), stop: make(chan struct{})}
	if d.version == "" {
		d.version = buildVersion()
	}
	d.reqCtx, d.reqCancel = context.WithCancel(context.Background())
	d.mu.writers = map[vss.ID]*writerEntry{}
	d.mu.faults = map[string][]FaultRule{}
	d.mu.cuts = map[uint64]*armedCut{}
	d.mu.lastCut = map[string]PowerCutResult{}
	d.mu.sessions = map[vss.ID]*session{}
	d.mu.sets = map[vss.ID]*setRecord{}
	defer func() {
		if err != nil {
			d.release()
		}
	}()

	if d.array, err = BuildArray(cfg, log); err != nil {
		return nil, err
	}
	w := cfg.Windows
	d.svc = coordinator.New(d.array, coordinator.Config{HoldWindow: w.Hold, FreezeWindow: w.Freeze,
		PrepareWindow: w.Prepare, EventWindow: w.Event, ProviderTimeout: w.Provider, SetHistory: cfg.Sets.History,
		Logger: log})
	for _, p := range cfg.Providers {
		typ, _ := providerType(p.Type)
		if p.Remote != "" {
			if err := d.addRemoteProvider(ctx, p, typ); err != nil {
				return nil, fmt.Errorf("provider %s: %w", p.Name, err)
			}
			continue
		}
		prov, err := provider.NewArray(d.array, p.profile, provider.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.Name, err)
		}
		id, err := providerID(d.array, p.Name)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.Name, err)
		}
		e := &providerEntry{prov: prov, reg: coordinator.Registration{ID: id, Name: p.Name, Type: typ,
			Priority: p.Priority, Provider: prov}}
		d.provs = append(d.provs, e)
		if err := d.svc.RegisterProvider(ctx, e.reg); err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.Name, err)
		}
		if p.Listen != "" {
			if err := d.serveProvider(p.Name, p.Listen, prov); err != nil {
				return nil, err
			}
		}
	}
	for i, wc := range cfg.Writers {
		if err := d.addConfigWriter(wc); err != nil {
			return nil, cfg.errAt(err, "writers", i)
		}
	}
	for i, v := range cfg.Volumes {
		add := d.svc.AddVolume
		if v.Provider != "" {
			add = func(name string, luns ...string) error { return d.svc.AddVolumeOn(name, v.Provider, luns...) }
		}
		if err := add(v.Name, v.LUNs...); err != nil {
			return nil, cfg.errAt(err, "volumes", i)
		}
	}
	if err := d.restoreSnapshots(); err != nil {
		return nil, fmt.Errorf("snapshots of %s: %w", d.array.Dir(), err)
	}
	if err := d.restoreFaults(); err != nil {
		return nil, err
	}
	if d.nbdLs, err = ListenNBD(cfg, log); err != nil {
		return nil, err
	}
	if err := d.listenAPI(); err != nil {
		return nil, err
	}
	if err := d.setUpAuth(); err != nil {
		return nil, err
	}
	def := cfg.NBD.DefaultExport
	if def == "" {
		def = cfg.Array.LUNs[0].Name
		if _, err := d.array.Get(def); err != nil {
			if all := d.array.List(); len(all) > 0 {
				def = all[0].Name()
			}
		}
	}
	d.defaultExport = def
	nopts, err := NBDOptions(cfg, def, log)
	if err != nil {
		return nil, err
	}
	d.nbd = nbd.NewServer(nbd.ArrayCatalog(d.array), nopts)
	d.metrics = newMetrics(d)
	// ReadTimeout covers the body too, so a client that sends a header and
	// no body is answered 408 and closed, as one that sends half a header
	// is closed, and IdleTimeout closes idle keep-alive connections: all
	// of them used to stay open for good. The long requests lift the
	// deadlines once their body is read (see serve).
	api := cfg.API
	d.http = &http.Server{Handler: d.authorize(d.routes()), ConnContext: withConnNetwork,
		ReadHeaderTimeout: cmp.Or(api.ReadTimeout, DefaultAPIReadTimeout),
		ReadTimeout:       cmp.Or(api.ReadTimeout, DefaultAPIReadTimeout),
		WriteTimeout:      d.writeTimeout(),
		IdleTimeout:       cmp.Or(api.IdleTimeout, DefaultAPIIdleTimeout),
		BaseContext:       func(net.Listener) context.Context { return d.reqCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return d, nil
}

// ListenNBD opens the configured NBD listeners, or takes those of socket
// activation (LISTEN_FDS) instead. A stale unix socket is replaced, and
// said so in log (see listenUnix).
func ListenNBD(cfg *Config, log *slog.Logger) (ls []net.Listener, err error) {
	defer func() {
		if err != nil {
			closeAll(ls)
			ls = nil
		}
	}()
	if ls, err = activatedListeners(); err != nil {
		return nil, err
	}
	for _, l := range ls {
		log.Info("socket activation: serving NBD on a listener the service manager passed; --listen and --socket are not opened",
			"network", l.Addr().Network(), "addr", l.Addr().String())
	}
	activated := ls != nil
	for _, a := range [...]struct{ network, addr, what string }{{"tcp", cfg.NBD.Listen, "nbd listen"}, {"unix", cfg.NBD.Socket, "nbd socket"}} {
		if activated || a.addr == "" {
			continue
		}
		var l net.Listener
		if a.network == "unix" {
			l, err = listenUnix(a.addr, log)
		} else {
			l, err = net.Listen(a.network, a.addr)
		}
		if err != nil {
			return ls, fmt.Errorf("%s %s: %w", a.what, a.addr, err)
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, ErrNothingToServe
	}
	if cfg.NBD.TLS.mode() != TLSRequire {
		warnExposed(log, ls)
	}
	return ls, nil
}

// warnExposed warns of each NBD listener that reaches beyond loopback.
// NBD has no authentication of its own, and without TLS required
// (--tls require) any host that reaches such an address reads and writes
// every LUN. Listening there stays allowed, as NBD servers allow it: an
// isolated test network is a fair use.
func warnExposed(log *slog.Logger, ls []net.Listener) {
	for _, l := range ls {
		if a, ok := l.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			log.Warn("NBD listens beyond loopback, without TLS required: any host that reaches this address can read and write every LUN",
				"addr", a.String())
		}
	}
}

// listenAPI opens the API listeners: loopback TCP, and a unix socket only
// its owner may use, each with its cap of connections.
func (d *Daemon) listenAPI() error {
	limit := cmp.Or(d.cfg.API.MaxConnections, DefaultAPIMaxConnections)
	if a := d.cfg.API.Listen; a != "" {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("api listen %s: %w", a, err)
		}
		d.apiLs = append(d.apiLs, newCapListener(l, limit))
	}
	if p := d.cfg.API.Socket; p != "" {
		l, err := listenUnix(p, d.log)
		if err != nil {
			return fmt.Errorf("api socket %s: %w", p, err)
		}
		d.apiLs = append(d.apiLs, newCapListener(l, limit))
		if err := os.Chmod(p, 0o600); err != nil {
			return fmt.Errorf("api socket %s: %w", p, err)
		}
	}
	return nil
}

func (d *Daemon) writeTimeout() time.Duration {
	return cmp.Or(d.cfg.API.WriteTimeout, DefaultAPIWriteTimeout)
}

func (d *Daemon) shutdownTimeout() time.Duration {
	if t := d.cfg.NBD.ShutdownTimeout; t > 0 {
		return t
	}
	return defaultShutdownTimeout
}

func (d *Daemon) remoteTimeout() time.Duration {
	if t := d.cfg.Windows.RemoteWriter; t > 0 {
		return t
	}
	return DefaultRemoteWriterTimeout
}

// Array returns the daemon's array.
func (d *Daemon) Array() *lun.Array { return d.array }

// Service returns the daemon's coordinator.
func (d *Daemon) Service() *coordinator.Service { return d.svc }

// APIURLs returns the URLs the API answers on, as clients write them.
func (d *Daemon) APIURLs() []string {
	var out []string
	for _, l := range d.apiLs {
		if l.Addr().Network() == "unix" {
			out = append(out, "unix:"+l.Addr().String())
		} else {
			out = append(out, "http://"+l.Addr().String())
		}
	}
	return out
}

// NBDAddrs returns the NBD listeners' addresses.
func (d *Daemon) NBDAddrs() []net.Addr {
	out := make([]net.Addr, len(d.nbdLs))
	for i, l := range d.nbdLs {
		out[i] = l.Addr()
	}
	return out
}

// Run serves NBD and the API until ctx ends or a server fails, then shuts
// down cleanly (D4): it stops accepting, releases the remote writers,
// lets the requests in flight finish (at most the shutdown timeout),
// releases the requesters it holds (which deletes their auto-release
// snapshots, as Windows does), waits for the coordinator, and drains and
// flushes the NBD connections. It returns nil after a clean shutdown on
// ctx. Run may be called once.
func (d *Daemon) Run(ctx context.Context) error {
	err := errors.New("daemon: Run called twice")
	d.runOnce.Do(func() { err = d.run(ctx) })
	return err
}

func (d *Daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer governMemory(d.log)()
	errc := make(chan error, 1+len(d.apiLs))
	d.wg.Go(func() {
		if err := d.nbd.Run(ctx, d.nbdLs...); err != nil {
			errc <- fmt.Errorf("nbd: %w", err)
		}
		cancel()
	})
	for _, l := range d.apiLs {
		d.wg.Go(func() {
			if err := d.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("api: %w", err)
				cancel()
			}
		})
	}
	d.wg.Go(func() { d.reap(ctx) })
	for _, a := range d.NBDAddrs() {
		d.log.Info("serving NBD", "network", a.Network(), "addr", a.String())
	}
	for _, u := range d.APIURLs() {
		d.log.Info("serving the API", "url", u)
	}
	d.log.Info("LUNs ready", "luns", len(d.array.List()), "providers", len(d.provs), "version", d.version)
	if err := d.ready(); err != nil {
		cancel()
		errc <- err
	}
	defer d.unready()
	captive := make(chan error, 1)
	if d.opts.Run != "" {
		d.wg.Go(func() {
			captive <- d.runCaptive(ctx, cmp.Or[io.Writer](d.opts.RunStdout, os.Stdout), cmp.Or[io.Writer](d.opts.RunStderr, os.Stderr), cancel)
		})
	}

	<-ctx.Done()
	d.log.Info("shutting down")
	notify("STOPPING=1")
	serr := d.shutdown()
	d.wg.Wait() // the NBD server too
	d.closeArray()
	close(errc)
	close(captive)
	errs := []error{serr, <-captive}
	for err := range errc {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	d.log.Info("NBD server stopped", "err", err)
	return err
}

// shutdown is Run's clean stop once ctx has ended (the NBD server drains
// on its own, on the same ctx).
func (d *Daemon) shutdown() error {
	d.mu.Lock()
	d.mu.stopping = true
	var remotes []*writerEntry
	for _, e := range d.mu.writers {
		if e.remote != nil {
			remotes = append(remotes, e)
		}
	}
	d.mu.Unlock()
	d.stopCuts()
	close(d.stop)
	d.bodies.cut()
	for _, e := range remotes {
		d.dropWriter(e.info.ID, "the daemon is shutting down")
	}

	timeout := d.shutdownTimeout()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	if err := d.http.Shutdown(sctx); err != nil {
		d.log.Warn("API requests outlived the shutdown timeout; cancelling them", "timeout", timeout)
		d.reqCancel()
		_ = d.http.Close()
	}
	d.reqCancel()
	d.handlers.closeAndWait()

	cctx, ccancel := context.WithTimeout(context.Background(), timeout)
	defer ccancel()
	d.mu.Lock()
	sessions := d.mu.sessions
	d.mu.sessions = map[vss.ID]*session{}
	d.mu.Unlock()
	for id, s := range sessions {
		if err := s.close(cctx); err != nil {
			errs = append(errs, fmt.Errorf("release set %v: %w", id, err))
		}
	}
	if err := d.svc.Close(cctx); err != nil {
		errs = append(errs, fmt.Errorf("coordinator: %w", err))
	}
	d.saveSnapshots() // the auto-release sets' snapshots went with their requesters
	d.releaseServices()
	return errors.Join(errs...)
}

// release frees what New built and Run did not serve: the listeners too.
func (d *Daemon) release() {
	d.releaseResources()
	closeAll(d.apiLs)
	closeAll(d.nbdLs)
}

// releaseResources releases the services (releaseServices), then closes
// the array.
func (d *Daemon) releaseResources() {
	d.releaseServices()
	d.closeArray()
}

// closeArray closes the array: a durable one is flushed and its data file
// unmapped, so it comes after the NBD server has finished, whose requests
// in flight read from that mapping.
func (d *Daemon) closeArray() {
	if d.array != nil {
		if err := d.array.Close(); err != nil {
			d.log.Error("closing the array", "dir", d.array.Dir(), "err", err)
		}
	}
}

// releaseServices removes the token file and closes the providers and
// the writers' resources (an fsfreeze writer thaws); the servers close
// their own listeners.
func (d *Daemon) releaseServices() {
	d.removeToken()
	d.stopProviders()
	for _, p := range d.provs {
		_ = p.prov.Close()
	}
	for _, c := range d.closers {
		_ = c()
	}
	if d.reqCancel != nil {
		d.reqCancel()
	}
}

// Close releases a daemon that was built and never run. After Run it does
// nothing.
func (d *Daemon) Close() error {
	d.runOnce.Do(d.release)
	return nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// BuildVersion is the main module's version, or its VCS revision.
func BuildVersion() string { return buildVersion() }

// buildVersion is the main module's version, or its VCS revision.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
			v = "devel-" + s.Value[:12]
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return v
}
