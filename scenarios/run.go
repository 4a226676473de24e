package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// Options configure Run.
type Options struct {
	// TimeScale multiplies every duration of the scenario: the
	// coordinator's windows, the firmware profiles' latencies and commit
	// blocks, the writers' delays and freeze timeouts, sleeps, wait-for
	// timeouts and timing bounds. 0.01 runs a 10 s hold window in 100 ms.
	// 0 means 1. A scenario's min-time-scale raises it.
	TimeScale float64
	// Logger receives the event log as it is written; nil discards it. The
	// Result holds it either way.
	Logger *slog.Logger
	// Out receives the report (Result.WriteText) when the run ends; nil
	// for none.
	Out io.Writer
	// DataDir, when set, runs each scenario on a durable array in a new
	// directory under it (lun.OpenScratch), removed at the end, rather
	// than in memory: the same steps with every commit written down.
	DataDir string
	// Provider, when set, reaches the providers over the provider protocol
	// (provider/wire) rather than in-process: ProviderLoopback serves each
	// provider of the file on 127.0.0.1 for the run; HOST:PORT is a
	// provider served elsewhere, a vendor's own, which stands in for the
	// file's one hardware provider (see conformance.go).
	Provider string
}

// cleanupTimeout bounds, in real time, what the runner does after the
// last step: closing requesters, stopping the load, the service and the
// NBD server.
const cleanupTimeout = 30 * time.Second

// slack is added, in real time, to a scenario's scaled timeout: real work
// (the race detector, a loaded machine) does not scale.
const slack = 20 * time.Second

// Run runs the scenario and returns its result. It never panics on a
// scenario's account: a setup failure, a mismatch or a coordinator that
// panics in a requester call all end in a failed result. Everything it
// starts (the array, the service, the providers, the NBD server, the
// load) is stopped before it returns.
func Run(ctx context.Context, sc *Scenario, opts Options) *Result {
	scale := opts.TimeScale
	if scale <= 0 {
		scale = 1
	}
	scale = max(scale, sc.MinTimeScale)
	r := &runner{sc: sc, opts: opts, scale: scale, start: time.Now(), rec: newRecorder(),
		provs: map[string]*provState{}, writers: map[string]*writerState{}, runID: strconv.FormatInt(runIDs.Add(1), 10)}
	r.mu.marks = map[string]int64{}
	r.mounts = map[string]*mounted{}
	r.faultInjs = map[string]lun.Injector{}
	r.mu.reqs = map[string]*requester{}
	r.mu.asyncs = map[string]*asyncRun{}
	r.mu.saved = map[string]savedValue{}
	r.mu.seen = map[*coordinator.Timeline]bool{}
	r.mu.clients = map[string]*nbd.Client{}
	r.res = &Result{Name: sc.Name, File: sc.File, KnownFailure: sc.KnownFailure, TimeScale: scale}
	r.logs = newLogCapture(r.start, opts.Logger)

	timeout := sc.timeout
	if timeout == 0 {
		timeout = defaultTimeout
	}
	runCtx, cancel := context.WithTimeout(ctx, r.scaled(timeout)+slack)
	defer cancel()

	r.withRunLabel(runCtx, func(runCtx context.Context) {
		// R1: a panic of the runner itself ends the steps as a failure.
		defer func() {
			if p := recover(); p != nil {
				r.mismatch(0, "runner", "no panic", fmt.Sprintf("%v\n%s", p, debug.Stack()), r.start, time.Now())
			}
		}()
		if err := r.setup(runCtx); err != nil {
			if errors.Is(err, errNotHere) || errors.Is(err, errSkip) && os.Getenv("CI") != "true" {
				r.skipped = err.Error()
				return
			}
			r.mismatch(0, "setup", "the array, providers and writers of the file", err.Error(), r.start, time.Now())
			return
		}
		r.runSteps(runCtx, sc.steps)
	})
	r.stepsEnd = time.Now()
	r.finish()
	r.res.Elapsed = time.Since(r.start)
	r.verdict()
	if opts.Out != nil {
		_ = r.res.WriteText(opts.Out)
	}
	return r.res
}

// runner is one run of a scenario.
type runner struct {
	sc   *Scenario
	opts Options
	// closeArray closes a durable array and removes its directory.
	closeArray func() error
	scale      float64
	start      time.Time
	res        *Result
	rec        *recorder
	logs       *logCapture

	dir     string
	array   *lun.Array
	svc     *coordinator.Service
	provs   map[string]*provState
	writers map[string]*writerState
	loads   []*loadGen
	sock    string
	srvStop context.CancelFunc
	srvDone chan error

	stepsEnd time.Time

	// runID labels the run's goroutines (runLabel); baseGoroutines is how
	// many there were when the step before a goroutines check began.
	runID          string
	baseGoroutines int

	// mu guards what parallel steps share.
	mu struct {
		sync.Mutex
		reqs       map[string]*requester
		all        []*requester // every requester ever created, for cleanup
		asyncs     map[string]*asyncRun
		saved      map[string]savedValue
		sets       []*setTimeline
		seen       map[*coordinator.Timeline]bool
		mismatches []pendingMismatch
		checks     []Check
		clients    map[string]*nbd.Client
		marks      map[string]int64 // store-bytes marks
		snapMounts int              // snapshot file systems mounted so far, for their directories
	}

	mounts  map[string]*mounted // LUN -> its file system
	closers []func() error      // real writers to close (an fsfreeze writer thaws)
	// wired are the providers reached over the provider protocol
	// (Options.Provider); external is the one served elsewhere.
	wired    []*wireProvider
	external *wireProvider

	// cutMu guards cuts, the cuts powercut steps armed (powercut.go);
	// faultInjs are the LUNs' faults from the file, by LUN, set up once.
	cutMu     sync.Mutex
	cuts      []*armedCut
	faultInjs map[string]lun.Injector
	skipped   string // why the scenario cannot run on this machine
}

type provState struct {
	spec  providerSpec
	id    vss.ID
	inner *provider.ArrayProvider // nil for a provider served elsewhere
	// traced is what the coordinator calls: it traces every call and
	// forwards it to inner, or to the provider protocol's client.
	traced *tracedProvider
}

type writerState struct {
	spec   writerSpec
	id     vss.ID
	traced *tracedWriter
}

// setTimeline is a snapshot set's timeline, kept from the moment the
// runner first sees it: an import replaces the set's record under the same
// ID, and the creation's timeline would be lost.
type setTimeline struct {
	id       vss.ID
	tl       *coordinator.Timeline
	imported bool
}

type asyncRun struct {
	a   *coordinator.Async
	req *requester
	set vss.ID
}

type savedValue struct {
	kind   savedKind
	id     vss.ID
	doc    []byte
	export string
}

type pendingMismatch struct {
	m        Mismatch
	from, to time.Time
}

// requester is one named requester: its BackupComponents and what the
// runner knows of its sequence.
type requester struct {
	name string
	bc   *coordinator.BackupComponents

	mu       sync.Mutex
	gathered bool // GatherWriterMetadata succeeded
	started  bool // a StartSnapshotSet succeeded
	closed   bool
	lastSet  vss.ID
	snaps    map[string]vss.ID // volume -> its snapshot in lastSet
}

func (r *runner) scaled(d time.Duration) time.Duration {
	if r.scale == 1 {
		return d
	}
	return time.Duration(float64(d) * r.scale)
}

// ---- setup ----

func (r *runner) setup(ctx context.Context) error {
	sc := r.sc
	for _, prog := range sc.needs {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("%w: the scenario needs %s, which is not in PATH", errSkip, prog)
		}
	}
	if p := r.opts.Provider; p != "" && p != ProviderLoopback {
		if err := sc.providerFacing(); err != nil {
			return err
		}
		if err := r.dialExternal(ctx); err != nil {
			return err
		}
	}
	cfg := lun.Config{Capacity: sc.array.capacity, MaxSnapshots: sc.array.maxSnapshots}
	var a *lun.Array
	var err error
	if r.opts.DataDir != "" {
		for _, l := range sc.array.luns {
			if l.opts.Cache != lun.CacheNone {
				return fmt.Errorf("%w: LUN %s has a write cache, and power cuts are emulated on in-memory arrays only", errNotHere, l.name)
			}
		}
		for _, p := range sc.providers {
			if p.profile.Cache.Mode != lun.CacheNone {
				return fmt.Errorf("%w: provider %s's firmware has a write cache, and power cuts are emulated on in-memory arrays only", errNotHere, p.name)
			}
		}
		a, r.closeArray, err = lun.OpenScratch(r.opts.DataDir, cfg)
	} else {
		a, err = lun.NewArray(cfg)
	}
	if err != nil {
		return err
	}
	r.array = a
	for _, l := range sc.array.luns {
		if r.external != nil && !r.external.local {
			break // the LUNs are the provider's array's
		}
		opts := l.opts
		if l.identity != nil {
			id := *l.identity
			opts.Identity = &id
		}
		created, err := a.Create(l.name, opts)
		if err != nil {
			return fmt.Errorf("LUN %s (line %d): %w", l.name, l.line, err)
		}
		if inj := r.faults(l.faults); inj != nil {
			created.SetFaults(inj)
			r.faultInjs[l.name] = inj
		}
	}
	svcCfg := r.serviceConfig()
	svcCfg.Logger = slog.New(r.logs)
	r.svc = coordinator.New(a, svcCfg)
	for _, ps := range sc.providers {
		if err := r.addProvider(ctx, ps); err != nil {
			return fmt.Errorf("provider %s (line %d): %w", ps.name, ps.line, err)
		}
	}
	for _, v := range sc.array.volumes {
		var err error
		if r.external != nil && !r.external.local {
			err = r.svc.AddVolumeOn(v.name, sc.providers[0].name, v.luns...)
		} else {
			err = r.svc.AddVolume(v.name, v.luns...)
		}
		if err != nil {
			return fmt.Errorf("volume %s (line %d): %w", v.name, v.line, err)
		}
	}
	if err := r.startNBD(); err != nil {
		return fmt.Errorf("NBD server: %w", err)
	}
	if err := r.setupFilesystems(ctx); err != nil {
		return err
	}
	for _, ls := range sc.loads {
		clients := make([]*nbd.Client, ls.connections)
		for i := range clients {
			c, err := nbd.Dial(ctx, "unix", r.sock, &nbd.DialOptions{Export: ls.lun})
			if err != nil {
				for _, c := range clients[:i] {
					_ = c.Close()
				}
				return fmt.Errorf("load on %s (line %d): %w", ls.lun, ls.line, err)
			}
			clients[i] = c
		}
		r.loads = append(r.loads, newLoadGen(ls, clients))
	}
	for _, ws := range sc.writers {
		w, err := r.newWriter(ws)
		if err != nil {
			return fmt.Errorf("writer %s (line %d): %w", ws.name, ws.line, err)
		}
		tw := &tracedWriter{name: ws.name, inner: w, rec: r.rec}
		for i, ls := range sc.loads {
			if ls.quiesceWith == ws.name {
				tw.loads = append(tw.loads, r.loads[i])
			}
		}
		st := &writerState{spec: ws, id: vss.NewID(), traced: tw}
		opts := coordinator.WriterOptions{Name: ws.name, ID: st.id, Level: ws.level}
		if ws.freezeTimeout > 0 {
			opts.FreezeTimeout = r.scaled(ws.freezeTimeout)
		}
		if _, err := r.svc.AddWriter(tw, opts); err != nil {
			return fmt.Errorf("writer %s (line %d): %w", ws.name, ws.line, err)
		}
		r.writers[ws.name] = st
	}
	// The load runs for a moment before the first step, so the first
	// snapshot already has written blocks to hold.
	for _, l := range r.loads {
		l.start(ctx)
	}
	deadline := time.Now().Add(time.Second)
	for _, l := range r.loads {
		for l.acked() < 8 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// newWriter builds a writer of the file: scripted (its delays scaled), an
// exec writer running real commands, or an fsfreeze writer on a mount
// point or on the file system the runner made on a LUN. An exec writer's
// timeout is real time: a command's run does not scale.
func (r *runner) newWriter(ws writerSpec) (coordinator.Writer, error) {
	log := slog.New(r.logs.with("writer", ws.name))
	switch {
	case ws.exec != nil:
		o := *ws.exec
		o.Logger = log
		// The array's NBD socket, so that a command reaches the LUNs as
		// an application does: nbd+unix:///NAME?socket=$SHADOWBENCH_NBD_SOCKET.
		o.Env = append(slices.Clone(o.Env), EnvNBDSocket+"="+r.sock)
		return coordinator.NewExecWriter(o)
	case ws.fsfreeze != nil:
		mp := ws.fsfreeze.mountPoint
		if ws.fsfreeze.lun != "" {
			mp = r.mounts[ws.fsfreeze.lun].dir
		}
		fw, err := coordinator.NewFsfreezeWriter(mp, coordinator.FsfreezeOptions{MaxFrozen: ws.fsfreeze.maxFrozen, Logger: log})
		if errors.Is(err, coordinator.ErrFsfreezeUnsupported) {
			return nil, fmt.Errorf("%w: %v", errSkip, err)
		}
		if err != nil {
			return nil, err
		}
		r.closers = append(r.closers, fw.Close)
		return fw, nil
	}
	return coordinator.NewScriptedWriter(r.scaleScript(ws.script))
}

// faults builds a LUN's injector from its faults, delays scaled; nil for
// none.
func (r *runner) faults(fs []faultSpec) lun.Injector {
	var injs []lun.Injector
	for _, f := range fs {
		var parts []lun.Injector
		if f.delay > 0 {
			parts = append(parts, lun.Delay(lun.Fixed(r.scaled(f.delay))))
		}
		if f.err != nil {
			parts = append(parts, lun.Fail(f.err))
		}
		inj := lun.All(parts...)
		switch {
		case f.nth > 0:
			inj = lun.Nth(int64(f.nth), inj)
		case f.probability > 0:
			inj = lun.Probability(f.probability, f.seed, inj)
		}
		injs = append(injs, lun.Only(inj, f.op))
	}
	if len(injs) == 0 {
		return nil
	}
	return lun.All(injs...)
}

// serviceConfig fills the coordinator's windows, in scenario time, with
// the coordinator's defaults and scales them. Defaults are filled before
// scaling: the coordinator would read a zero as its own unscaled default.
func (r *runner) serviceConfig() coordinator.Config {
	s := r.sc.service
	pick := func(d, def time.Duration) time.Duration {
		if d == 0 {
			d = def
		}
		return max(r.scaled(d), time.Microsecond)
	}
	return coordinator.Config{
		HoldWindow:      pick(s.hold, coordinator.DefaultHoldWindow),
		FreezeWindow:    pick(s.freeze, coordinator.DefaultFreezeWindow),
		PrepareWindow:   pick(s.prepare, coordinator.DefaultPrepareWindow),
		EventWindow:     pick(s.event, coordinator.DefaultEventWindow),
		ProviderTimeout: pick(s.providerTimeout, coordinator.DefaultProviderTimeout),
	}
}

// scaleProfile returns a copy of p with every latency scaled: the
// preparation latency, the commit block and each method's latency.
func (r *runner) scaleProfile(p *provider.Profile) *provider.Profile {
	c := *p
	c.Prepare.Latency = r.scaleLatency(p.Prepare.Latency)
	c.Commit.Block = r.scaleLatency(p.Commit.Block)
	c.Methods = make(map[vss.ProviderMethod]provider.MethodBehavior, len(p.Methods))
	for m, b := range p.Methods {
		b.Latency = r.scaleLatency(b.Latency)
		b.Failures = slices.Clone(b.Failures)
		c.Methods[m] = b
	}
	return &c
}

func (r *runner) scaleLatency(l provider.Latency) provider.Latency {
	l.Mean, l.StdDev, l.Min, l.Max = r.scaled(l.Mean), r.scaled(l.StdDev), r.scaled(l.Min), r.scaled(l.Max)
	return l
}

// scaleScript returns a copy of s with every delay scaled.
func (r *runner) scaleScript(s coordinator.Script) coordinator.Script {
	c := coordinator.Script{Components: slices.Clone(s.Components), On: maps.Clone(s.On)}
	for e, a := range c.On {
		a.Delay = r.scaled(a.Delay)
		c.On[e] = a
	}
	return c
}

// EnvNBDSocket is the environment variable that gives an exec writer's
// commands the unix socket the runner serves the array's LUNs on.
const EnvNBDSocket = "SHADOWBENCH_NBD_SOCKET"

// startNBD serves the array on a unix socket in a directory of its own.
func (r *runner) startNBD() error {
	dir, err := os.MkdirTemp("", "shadowbench-scenario-")
	if err != nil {
		return err
	}
	r.dir = dir
	r.sock = filepath.Join(dir, "nbd.sock")
	l, err := net.Listen("unix", r.sock)
	if err != nil {
		return err
	}
	srv := nbd.NewServer(nbd.ArrayCatalog(r.array), nbd.Options{Logger: slog.New(r.logs.with("component", "nbd"))})
	ctx, cancel := context.WithCancel(context.Background())
	r.srvStop, r.srvDone = cancel, make(chan error, 1)
	go func() { r.srvDone <- srv.Run(ctx, l) }()
	return nil
}

// ---- the end of a run ----

// finish stops the load and verifies it, closes what the steps left open,
// stops the service, builds the trace and checks every expectation.
func (r *runner) finish() {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	r.disarmCuts()
	for i, l := range r.loads {
		l.halt()
		r.verifyLoad(ctx, i, l)
	}
	r.mu.Lock()
	reqs := slices.Clone(r.mu.all)
	r.mu.Unlock()
	for _, q := range reqs {
		q.mu.Lock()
		open := !q.closed
		q.mu.Unlock()
		if open {
			r.closeRequester(ctx, q)
		}
	}
	if r.svc != nil {
		if err := r.svc.Close(ctx); err != nil {
			r.mismatch(0, "shutdown", "the service's goroutines to end", err.Error(), r.stepsEnd, time.Now())
		}
	}
	r.pollSets(false)
	trace := r.buildTrace()
	r.res.Trace = trace
	r.res.EventLog = r.logs.records()
	if r.svc != nil {
		r.checkExpectations(trace)
		r.checkInvariants(trace)
	}
	r.measurePhases(trace)
	r.mu.Lock()
	r.res.Checks = append(r.res.Checks, r.mu.checks...)
	r.mu.Unlock()
	r.fillContexts(trace)

	for _, c := range r.closers {
		if err := c(); err != nil {
			r.mismatch(0, "shutdown", "the writers to close", err.Error(), r.stepsEnd, time.Now())
		}
	}
	r.mu.Lock()
	for _, c := range r.mu.clients {
		_ = c.Close()
	}
	r.mu.clients = map[string]*nbd.Client{}
	r.mu.Unlock()
	r.unmountAll() // before the NBD server stops: nbdfuse is its client
	for _, p := range r.provs {
		if p.inner != nil {
			_ = p.inner.Close()
		}
	}
	r.closeWire()
	r.mu.Lock()
	for _, c := range r.mu.clients {
		_ = c.Close()
	}
	r.mu.Unlock()
	for _, l := range r.loads {
		for _, c := range l.clients {
			_ = c.Close()
		}
	}
	if r.srvStop != nil {
		r.srvStop()
		if err := <-r.srvDone; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, nbd.ErrServerClosed) {
			r.mismatch(0, "shutdown", "the NBD server to stop cleanly", err.Error(), r.stepsEnd, time.Now())
		}
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
	if r.closeArray != nil {
		if err := r.closeArray(); err != nil {
			r.mismatch(0, "shutdown", "the durable array to close", err.Error(), r.stepsEnd, time.Now())
		}
	}
}

// verdict sets the result's status from its mismatches and the
// scenario's known-failure mark.
func (r *runner) verdict() {
	r.mu.Lock()
	ms := slices.Clone(r.mu.mismatches)
	r.mu.Unlock()
	for _, m := range ms {
		r.res.Mismatches = append(r.res.Mismatches, m.m)
	}
	failed := len(ms) > 0
	switch {
	case r.skipped != "" && !failed:
		r.res.Status, r.res.Skipped = StatusSkipped, r.skipped
	case failed && r.sc.KnownFailure != "":
		r.res.Status = StatusKnownFailure
	case failed:
		r.res.Status = StatusFail
	case r.sc.KnownFailure != "":
		r.res.Status = StatusFixed
	default:
		r.res.Status = StatusPass
	}
}

// mismatch records an expectation that did not hold. from and to bound the
// part of the run it is about, for the trace shown around it.
func (r *runner) mismatch(line int, what, expected, got string, from, to time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.mismatches = append(r.mu.mismatches, pendingMismatch{
		m:    Mismatch{File: r.sc.File, Line: line, What: what, Expected: expected, Got: got},
		from: from, to: to,
	})
}

func (r *runner) addCheck(c Check) {
	r.mu.Lock()
	r.mu.checks = append(r.mu.checks, c)
	r.mu.Unlock()
	if !c.OK {
		r.mismatch(0, "check "+c.Name, "ok", c.Detail, time.Time{}, time.Time{})
	}
}

// pollSets keeps every snapshot set's timeline the service shows, the
// first time it shows it. imports marks the new ones as imports.
func (r *runner) pollSets(imports bool) {
	if r.svc == nil {
		return
	}
	infos := r.svc.Sets()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, si := range infos {
		if si.Timeline == nil || r.mu.seen[si.Timeline] {
			continue
		}
		r.mu.seen[si.Timeline] = true
		r.mu.sets = append(r.mu.sets, &setTimeline{id: si.ID, tl: si.Timeline, imported: imports})
	}
}

// setName names a set by its order of creation: "set 2".
func (r *runner) setName(id vss.ID) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.mu.sets {
		if s.imported {
			continue
		}
		n++
		if s.id == id {
			return fmt.Sprintf("set %d", n)
		}
	}
	return "set " + id.String()
}

// ---- the event log ----

// logCapture is the slog handler the coordinator and the providers log
// to: it keeps every record for the result and forwards it to the
// caller's logger.
type logCapture struct {
	start time.Time
	next  slog.Handler
	attrs []slog.Attr
	store *logStore
}

type logStore struct {
	mu   sync.Mutex
	recs []capturedRecord
}

type capturedRecord struct {
	at    time.Time
	level slog.Level
	msg   string
	attrs map[string]string
	id    int
}

func newLogCapture(start time.Time, l *slog.Logger) *logCapture {
	c := &logCapture{start: start, store: &logStore{}}
	if l != nil {
		c.next = l.Handler()
	}
	return c
}

func (c *logCapture) with(key, value string) *logCapture {
	n := *c
	n.attrs = append(slices.Clone(c.attrs), slog.String(key, value))
	if c.next != nil {
		n.next = c.next.WithAttrs([]slog.Attr{slog.String(key, value)})
	}
	return &n
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(ctx context.Context, rec slog.Record) error {
	cr := capturedRecord{at: rec.Time, level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		if a.Key == "event_id" {
			cr.id = int(a.Value.Int64())
		}
		cr.attrs[a.Key] = a.Value.String()
		return true
	}
	for _, a := range c.attrs {
		add(a)
	}
	rec.Attrs(add)
	c.store.mu.Lock()
	c.store.recs = append(c.store.recs, cr)
	c.store.mu.Unlock()
	if c.next != nil && c.next.Enabled(ctx, rec.Level) {
		return c.next.Handle(ctx, rec)
	}
	return nil
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	n := *c
	n.attrs = append(slices.Clone(c.attrs), as...)
	if c.next != nil {
		n.next = c.next.WithAttrs(as)
	}
	return &n
}

// WithGroup is accepted for the interface's sake; the project's loggers
// use no groups, so attributes stay flat.
func (c *logCapture) WithGroup(name string) slog.Handler {
	n := *c
	if c.next != nil {
		n.next = c.next.WithGroup(name)
	}
	return &n
}

func (c *logCapture) all() []capturedRecord {
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	return slices.Clone(c.store.recs)
}

// text prints a record as the report does: level, message, event ID and
// fields.
func (c capturedRecord) text() string {
	attrs := maps.Clone(c.attrs)
	delete(attrs, "event_id")
	return LogRecord{Level: c.level.String(), Message: c.msg, EventID: c.id, Attrs: attrs}.text()
}

// records returns the records a reader of the event log cares about:
// those with a Windows event ID, and warnings and errors.
func (c *logCapture) records() []LogRecord {
	var out []LogRecord
	for _, cr := range c.all() {
		if cr.id == 0 && cr.level < slog.LevelWarn {
			continue
		}
		attrs := maps.Clone(cr.attrs)
		delete(attrs, "event_id")
		out = append(out, LogRecord{At: cr.at.Sub(c.start), Level: cr.level.String(), Message: cr.msg, EventID: cr.id, Attrs: attrs})
	}
	return out
}
