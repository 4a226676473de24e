package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// The demo is a tour for newcomers and a smoke test of the whole data
// and snapshot paths at once. Its checks rest on data that proves itself
// rather than on the components' own reports:
//
//   - the application writer remembers its region at OnFreeze; each
//     snapshot of D: must equal it byte for byte (A.7: writers are quiet
//     between Freeze and Thaw, and the commit falls in between);
//   - the load writes sequence-numbered records, one at a time per
//     connection, so a snapshot must hold one prefix of each connection's
//     records, bounded by the hold window (cow C4), and the live LUN the
//     last record acknowledged for each slot (nothing lost);
//   - a write that meets a hold is delayed, never failed (B.2);
//   - a veto fails the writer, not the set (D).
//
// Its figures come from the sets' timelines and the provider, as the
// sequence and hold workloads' do; with a hundred sets the tail is the
// slowest set, which the narrative says.

// DemoConfig configures the demo: a tour of shadowbench that runs an
// array, serves it over NBD on loopback, writes to it all the time, takes
// VSS snapshot sets with several writers, and checks what they caught.
type DemoConfig struct {
	// Sets is the number of quick sets in the burst that follows the two
	// showcase sets, for latency percentiles.
	Sets int `json:"sets"`
	// Duration is how long the load runs, from the first set to the end
	// of the burst: the burst's sets are spread over what the first two
	// leave. If they need longer, the demo takes longer.
	Duration time.Duration `json:"duration_ns"`
	// LUNSize is the size of each of the two LUNs; they are thin.
	LUNSize Size `json:"lun_size"`
	// LoadWriters NBD connections write LoadRate 4 KiB records a second in
	// all, each into LoadSlots slots of its own.
	LoadWriters int  `json:"load_writers"`
	LoadRate    Rate `json:"load_rate_per_s"`
	LoadSlots   int  `json:"load_slots"`
	// AppRegion is the application writer's region, at the start of lun0;
	// it writes 8 KiB of it every AppInterval while not frozen.
	AppRegion   Size          `json:"app_region"`
	AppInterval time.Duration `json:"app_interval_ns"`
	// SlowDelay is how long the slow writer takes in PrepareForSnapshot
	// and in Freeze.
	SlowDelay time.Duration `json:"slow_delay_ns"`
	// Profile is the array provider's firmware profile; nil is
	// provider.DefaultProfile, which injects nothing. A profile that fails
	// or slows the provider shows what a vendor's firmware does to a
	// backup, and fails the checks that depend on it.
	Profile *provider.Profile `json:"-"`
	// Report is the HTML report's path; empty writes none.
	Report string `json:"report,omitempty"`
	// CSV is a directory to write every series of the report into as
	// CSV files (WriteCSV); empty writes none.
	CSV string `json:"csv,omitempty"`
	// DataDir, when set, runs on a durable array in a new directory under
	// it, removed at the end, rather than in memory.
	DataDir string `json:"data_dir,omitempty"`
	// Logger receives the coordinator's, the provider's and the NBD
	// server's logs; nil discards them, so that the narrative stands alone.
	Logger *slog.Logger `json:"-"`
	// Progress, when not nil, follows the burst.
	Progress Progress `json:"-"`
}

// DefaultDemoConfig is the demo as `shadowbench demo` runs it: about 15 s,
// 100 quick sets after the two showcase sets, 2000 load writes a second,
// a slow writer that takes 300 ms, and demo-report.html.
func DefaultDemoConfig() DemoConfig {
	return DemoConfig{Sets: 100, Duration: 15 * time.Second, LUNSize: 64 << 20,
		LoadWriters: 4, LoadRate: 2000, LoadSlots: 512,
		AppRegion: 256 << 10, AppInterval: 2 * time.Millisecond,
		SlowDelay: 300 * time.Millisecond, Report: "demo-report.html"}
}

// demoFreezeTimeout is every demo writer's freeze window (B.3): long
// enough for the slow writer, short enough to fail fast if one hangs.
const demoFreezeTimeout = 10 * time.Second

// The demo's volumes: D: is lun0, which the application writes; E: is
// lun1.
var demoVolumes = []struct{ name, lun string }{{"D:", "lun0"}, {"E:", "lun1"}}

func (c DemoConfig) params() []Param {
	return []Param{{"burst sets", fmt.Sprint(c.Sets)}, {"duration", c.Duration.String()},
		{"luns", "2 of " + c.LUNSize.String()}, {"load writers", fmt.Sprint(c.LoadWriters)},
		{"load rate", c.LoadRate.String()}, {"load slots per writer", fmt.Sprint(c.LoadSlots)},
		{"application region", c.AppRegion.String()}, {"application write every", c.AppInterval.String()},
		{"slow writer delay", FormatDuration(c.SlowDelay)}, {"provider profile", c.profile().Name}}
}

// profile returns the provider's profile.
func (c DemoConfig) profile() *provider.Profile {
	if c.Profile == nil {
		return provider.DefaultProfile()
	}
	return c.Profile
}

// lun0Need is how much of lun0 the application and the load use; lun1
// holds the rest of the load.
func (c DemoConfig) lun0Need() int64 {
	return int64(c.AppRegion) + int64((c.LoadWriters+1)/2)*int64(c.LoadSlots)*demoRecordSize
}

func (c DemoConfig) validate() error {
	switch {
	case c.Sets < 0:
		return fmt.Errorf("bench: demo: sets must be 0 or more, not %d", c.Sets)
	case c.Duration <= 0:
		return fmt.Errorf("bench: demo: duration must be positive, not %v", c.Duration)
	case c.LoadWriters < 1 || c.LoadWriters > 64:
		return fmt.Errorf("bench: demo: load writers must be from 1 to 64, not %d", c.LoadWriters)
	case c.LoadRate <= 0:
		return fmt.Errorf("bench: demo: load rate must be positive: the demo checks the load")
	case c.LoadSlots < 1:
		return fmt.Errorf("bench: demo: load slots must be at least 1, not %d", c.LoadSlots)
	case c.AppRegion < demoAppWrite || c.AppRegion%demoAppWrite != 0:
		return fmt.Errorf("bench: demo: application region must be a positive multiple of 8 KiB, not %s", c.AppRegion)
	case c.AppInterval <= 0:
		return fmt.Errorf("bench: demo: application interval must be positive")
	case c.SlowDelay < 0 || c.SlowDelay > demoFreezeTimeout/2:
		return fmt.Errorf("bench: demo: slow writer delay must be from 0 to %v, not %v", demoFreezeTimeout/2, c.SlowDelay)
	case c.Profile != nil && c.Profile.Validate() != nil:
		return fmt.Errorf("bench: demo: %w", c.Profile.Validate())
	case c.LUNSize%4096 != 0 || int64(c.LUNSize) < c.lun0Need():
		return fmt.Errorf("bench: demo: lun size %s must be a multiple of 4 KiB and hold the application's region and the load's slots (%s)",
			c.LUNSize, FormatBytes(c.lun0Need()))
	}
	return nil
}

// DemoResult is what the demo found.
type DemoResult struct {
	// Passed is true when every check passed.
	Passed bool        `json:"passed"`
	Checks []DemoCheck `json:"checks"`
	Config DemoConfig  `json:"config"`
	// NBD is the server's address while the demo ran.
	NBD     string        `json:"nbd"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Sets counts the sets created, FailedSets those whose DoSnapshotSet
	// failed.
	Sets       int `json:"sets"`
	FailedSets int `json:"failed_sets"`
	// FirstSet is the clean set; VetoSet the one a writer vetoed.
	FirstSet *DemoSet `json:"first_set,omitempty"`
	VetoSet  *DemoSet `json:"veto_set,omitempty"`
	// Latencies are over every set created, and over the load's writes.
	Latencies []Latency `json:"latencies"`
	Metrics   []Metric  `json:"metrics"`
	// Report is the HTML report's path, when one was written.
	Report string `json:"report,omitempty"`
	// Results are what the report shows: the first set with every
	// figure, and the vetoed set.
	Results []*Result `json:"-"`
}

// Failed returns the checks that failed.
func (r *DemoResult) Failed() []DemoCheck {
	var out []DemoCheck
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// DemoCheck is one verification, as printed.
type DemoCheck struct {
	Step   int    `json:"step"`
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// DemoSet is one snapshot set of the demo: its timeline and the writers'
// status after DoSnapshotSet.
type DemoSet struct {
	ID vss.ID `json:"id"`
	// Result is DoSnapshotSet's: S_OK or the HRESULT's name.
	Result string `json:"result"`
	// Start and End bracket DoSnapshotSet on the timeline's clock.
	Start   time.Duration              `json:"start_ns"`
	End     time.Duration              `json:"end_ns"`
	Spans   []coordinator.Span         `json:"spans"`
	Writers []coordinator.WriterStatus `json:"writers"`
}

// demo is one run of the demo and everything it started.
type demo struct {
	cfg  DemoConfig
	out  io.Writer
	res  *DemoResult
	step int
	log  *slog.Logger

	array      *lun.Array
	closeArray func() error // a durable array's: close and remove it
	prov       *provider.ArrayProvider
	svc        *coordinator.Service
	addr       string

	srvCancel context.CancelFunc
	srvWG     sync.WaitGroup
	srvErr    error

	load *demoLoad
	app  *demoApp

	writers map[string]vss.ID // name -> instance

	// Figures over every set created.
	total, commit, hold *Histogram
	holds               [][2]time.Duration // hold windows since the load's base
	snaps               []SnapshotMark     // the sets on the load's clock
	loadWrites          int64
}

// RunDemo runs the demo and prints its narrative to out: numbered steps
// that say what happens and why, PASS or FAIL for each check, the first
// set's timeline, latency percentiles, and where the report went. An error
// means the demo could not run; a check that failed is in the result
// (DemoResult.Passed is false), with the rest of the demo run all the same.
func RunDemo(ctx context.Context, cfg DemoConfig, out io.Writer) (*DemoResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if out == nil {
		out = io.Discard
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &demo{cfg: cfg, out: out, log: log, res: &DemoResult{Config: cfg},
		writers: map[string]vss.ID{}, total: NewHistogram(), commit: NewHistogram(), hold: NewHistogram()}
	started := time.Now()
	err := d.run(ctx)
	if ctx.Err() != nil {
		err = fmt.Errorf("bench: demo: interrupted: %w", ctx.Err())
	}
	if cerr := d.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	d.res.Elapsed = time.Since(started)
	d.res.Passed = len(d.res.Failed()) == 0
	d.summary(started)
	return d.res, nil
}

// printf writes to the narrative. A narrative that cannot be written (a
// closed pipe) does not stop the demo: its checks still decide the result.
func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// begin starts a numbered step.
func (d *demo) begin(title string, why ...string) {
	d.step++
	d.printf("\n%d. %s\n", d.step, title)
	for _, w := range why {
		d.printf("   %s\n", w)
	}
}

// check records and prints one verification.
func (d *demo) check(pass bool, name, detail string) {
	d.res.Checks = append(d.res.Checks, DemoCheck{Step: d.step, Name: name, Pass: pass, Detail: detail})
	d.log.Debug("demo: check", "step", d.step, "name", name, "pass", pass, "detail", detail)
	verdict := "PASS"
	if !pass {
		verdict = "FAIL"
	}
	d.printf("   %s  %s: %s\n", verdict, name, detail)
}

func (d *demo) run(ctx context.Context) error {
	cfg := d.cfg
	d.printf("shadowbench demo: a software storage array takes VSS snapshot sets under load, then checks them.\n")
	d.printf("Everything runs in this process, on 127.0.0.1; nothing to install, no root needed.\n")
	d.printf("It takes about %s; each step says what happens and why.\n", cfg.Duration.Round(time.Second))

	// 1. The array.
	var err error
	if cfg.DataDir != "" {
		d.array, d.closeArray, err = lun.OpenScratch(cfg.DataDir, cfg.profile().ArrayConfig())
	} else {
		d.array, err = lun.NewArray(cfg.profile().ArrayConfig())
	}
	if err != nil {
		return err
	}
	for _, v := range demoVolumes {
		if _, err := d.array.Create(v.lun, lun.Options{Size: int64(cfg.LUNSize), BlockSize: 4096, Thin: true}); err != nil {
			return err
		}
	}
	d.begin(fmt.Sprintf("An array of two %s LUNs, in memory: lun0 is volume D:, lun1 is volume E:.", cfg.LUNSize),
		"LUNs are thin and copy-on-write: a snapshot swaps one pointer, however big the LUN,",
		"and only the blocks written after it are copied.")

	// 2. The NBD server.
	if err := d.serve(ctx); err != nil {
		return err
	}
	d.res.NBD = "nbd://" + d.addr
	d.begin(fmt.Sprintf("Served over NBD at nbd://%s (exports lun0 and lun1).", d.addr),
		"Any NBD client can attach while the demo runs, for instance:",
		fmt.Sprintf("  nbdinfo nbd://%s/lun0", d.addr))

	// 3. The load.
	var specs []demoLoadSpec
	for i := range cfg.LoadWriters {
		off := int64(i/2) * int64(cfg.LoadSlots) * demoRecordSize
		export := "lun1"
		if i%2 == 0 {
			export, off = "lun0", off+int64(cfg.AppRegion)
		}
		specs = append(specs, demoLoadSpec{export: export, off: off})
	}
	if d.load, err = startDemoLoad(ctx, "tcp", d.addr, specs, cfg.LoadSlots, float64(cfg.LoadRate)); err != nil {
		return err
	}
	d.begin(fmt.Sprintf("Load: %d NBD clients write 4 KiB records, %s in all, from now to the end.", cfg.LoadWriters, cfg.LoadRate),
		"Each record carries its client and a sequence number, so the demo can tell later",
		"whether an acknowledged write went missing, and exactly what a snapshot caught.")

	// 4. The provider, the coordinator and the writers.
	if err := d.subscribe(ctx); err != nil {
		return err
	}

	// 5-6. A clean set, checked.
	if err := d.firstSet(ctx); err != nil {
		return err
	}
	// 7. A vetoed set.
	if err := d.vetoSet(ctx); err != nil {
		return err
	}
	// 8. The burst.
	if err := d.burst(ctx); err != nil {
		return err
	}
	// 9. Stop and check the load and the application.
	if err := d.finalChecks(ctx); err != nil {
		return err
	}
	return nil
}

// serve starts the NBD server on an ephemeral loopback port.
func (d *demo) serve(ctx context.Context) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.addr = l.Addr().String()
	srv := nbd.NewServer(nbd.ArrayCatalog(d.array), nbd.Options{Logger: d.log})
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.srvCancel = cancel
	d.srvWG.Go(func() { d.srvErr = srv.Run(sctx, l) })
	return nil
}

// subscribe registers the provider and the volumes, starts the
// application and subscribes the writers.
func (d *demo) subscribe(ctx context.Context) error {
	cfg := d.cfg
	var err error
	if d.prov, err = provider.NewArray(d.array, cfg.profile(), provider.WithLogger(d.log)); err != nil {
		return err
	}
	d.svc = coordinator.New(d.array, coordinator.Config{Logger: d.log})
	if err := d.svc.RegisterProvider(ctx, coordinator.Registration{Name: "array", Type: vss.VSS_PROV_HARDWARE, Provider: d.prov}); err != nil {
		return err
	}
	for _, v := range demoVolumes {
		if err := d.svc.AddVolume(v.name, v.lun); err != nil {
			return err
		}
	}
	c, err := nbd.Dial(ctx, "tcp", d.addr, &nbd.DialOptions{Export: "lun0", MaxInFlight: 1})
	if err != nil {
		return fmt.Errorf("bench: demo: the application's connection: %w", err)
	}
	d.app = startDemoApp(c, int64(cfg.AppRegion), cfg.AppInterval)
	slow, err := coordinator.NewScriptedWriter(coordinator.Script{On: map[vss.WriterEvent]coordinator.Action{
		vss.EventPrepareForSnapshot: {Delay: cfg.SlowDelay},
		vss.EventFreeze:             {Delay: cfg.SlowDelay},
	}})
	if err != nil {
		return err
	}
	for _, w := range []struct {
		name  string
		w     coordinator.Writer
		level vss.ApplicationLevel
	}{
		{"app", d.app, vss.VSS_APP_FRONT_END},
		{"slow", slow, vss.VSS_APP_BACK_END},
		{"quick", coordinator.BaseWriter{}, vss.VSS_APP_SYSTEM},
	} {
		if err := d.addWriter(w.name, w.w, w.level); err != nil {
			return err
		}
	}
	d.begin("VSS writers subscribe, as applications do on Windows; the array's provider registers.",
		fmt.Sprintf("  app    front-end  writes its %s of D: through NBD; stops at Freeze, resumes at Thaw", cfg.AppRegion),
		fmt.Sprintf("  slow   back-end   takes %s in PrepareForSnapshot and again in Freeze", FormatDuration(cfg.SlowDelay)),
		"  quick  system     answers every event at once",
		"Freeze goes level by level: front-end, back-end, then system (vss-spec.md A.7 d).",
		"The provider is the emulated array provider, a VSS hardware provider over this array,",
		fmt.Sprintf("with firmware profile %q: %s", cfg.profile().Name, cfg.profile().Description))
	return nil
}

func (d *demo) addWriter(name string, w coordinator.Writer, level vss.ApplicationLevel) error {
	id, err := d.svc.AddWriter(w, coordinator.WriterOptions{Name: name, Level: level, FreezeTimeout: demoFreezeTimeout})
	if err != nil {
		return err
	}
	d.writers[name] = id
	return nil
}

func (d *demo) removeWriter(name string) error {
	if err := d.svc.RemoveWriter(d.writers[name]); err != nil {
		return fmt.Errorf("bench: demo: unsubscribe %s: %w", name, err)
	}
	delete(d.writers, name)
	return nil
}

// demoRun is one backup: the requester's object and its set.
type demoRun struct {
	bc         *coordinator.BackupComponents
	id         vss.ID
	tl         *coordinator.Timeline
	start, end time.Duration
	// err is DoSnapshotSet's failure; the set was then not created.
	err    error
	status []coordinator.WriterStatus
}

// backup runs a requester through DoSnapshotSet (vss-spec.md A.1-A.8) over
// both volumes. The caller checks the set, then calls done. An error means
// the conversation broke before DoSnapshotSet.
func (d *demo) backup(ctx context.Context) (r *demoRun, err error) {
	r = &demoRun{bc: d.svc.NewBackupComponents()}
	defer func() {
		if err != nil {
			_ = r.bc.Close(context.WithoutCancel(ctx))
		}
	}()
	if err := r.bc.InitializeForBackup(nil); err != nil {
		return nil, err
	}
	if err := r.bc.SetBackupState(false, false, vss.VSS_BT_FULL, false); err != nil {
		return nil, err
	}
	if err := r.bc.GatherWriterMetadata(ctx); err != nil {
		return nil, err
	}
	if r.id, err = r.bc.StartSnapshotSet(); err != nil {
		return nil, err
	}
	info, ok := d.svc.Set(r.id)
	if !ok || info.Timeline == nil {
		return nil, fmt.Errorf("bench: demo: the service has no record of set %v", r.id)
	}
	r.tl = info.Timeline
	for _, v := range demoVolumes {
		if _, err := r.bc.AddToSnapshotSet(ctx, v.name, vss.GUID_NULL); err != nil {
			return nil, err
		}
	}
	if err := r.bc.PrepareForBackup(ctx); err != nil {
		return nil, err
	}
	r.start = time.Since(r.tl.Origin())
	async, err := r.bc.DoSnapshotSet(ctx)
	if err != nil {
		return nil, err
	}
	r.err = async.Wait(ctx)
	r.end = time.Since(r.tl.Origin())
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if r.status, err = r.bc.GatherWriterStatus(ctx); err != nil {
		return nil, err
	}
	d.log.Debug("demo: snapshot set", "set", r.id.String(), "err", r.err, "do_snapshot_set", r.end-r.start)
	if r.err != nil {
		d.res.FailedSets++
		return r, nil
	}
	d.res.Sets++
	d.total.Record(r.end - r.start)
	if m, ok := snapshotMark(r.tl, r.tl.Origin().Sub(d.load.base)); ok {
		d.snaps = append(d.snaps, m)
	}
	for _, sp := range r.tl.Spans() {
		switch {
		case sp.Kind == coordinator.KindPhase && sp.Name == "CommitSnapshots":
			d.commit.Record(sp.Duration())
		case sp.Kind == coordinator.KindWindow && sp.Name == "hold":
			d.hold.Record(sp.Duration())
			base := r.tl.Origin().Sub(d.load.base)
			d.holds = append(d.holds, [2]time.Duration{base + sp.Start, base + sp.End})
		}
	}
	return r, nil
}

// done ends a backup: BackupComplete after a created set, AbortBackup
// after a failed one (A.9, A.12), then Close, which deletes the snapshots
// of this auto-release context.
func (d *demo) done(ctx context.Context, r *demoRun) error {
	var err error
	if r.err == nil {
		err = r.bc.BackupComplete(ctx)
	} else {
		err = r.bc.AbortBackup(ctx)
	}
	return errors.Join(err, r.bc.Close(ctx))
}

// holdWindow returns the set's hold window, since the load's base.
func (d *demo) holdWindow(r *demoRun) (from, to time.Duration, ok bool) {
	sp, ok := r.tl.Find(coordinator.KindWindow, "hold")
	if !ok {
		return 0, 0, false
	}
	base := r.tl.Origin().Sub(d.load.base)
	return base + sp.Start, base + sp.End, true
}

// info returns the set's record for the result.
func (r *demoRun) info() *DemoSet {
	res := "S_OK"
	if r.err != nil {
		res = hresultName(r.err)
	}
	return &DemoSet{ID: r.id, Result: res, Start: r.start, End: r.end, Spans: spans(r.tl), Writers: r.status}
}

// hresultName names the HRESULT an error carries, or gives its text.
func hresultName(err error) string {
	var hr vss.HRESULT
	if errors.As(err, &hr) {
		return hr.Name()
	}
	return err.Error()
}

// exposeVolume makes the set's snapshot of a volume an NBD export
// (ExposeSnapshot) and connects to it.
func (d *demo) exposeVolume(ctx context.Context, r *demoRun, volume string) (string, *nbd.Client, error) {
	for _, s := range r.bc.Query() {
		if s.SnapshotSetID != r.id || s.OriginalVolume != volume {
			continue
		}
		export, err := r.bc.ExposeSnapshot(ctx, s.SnapshotID)
		if err != nil {
			return "", nil, fmt.Errorf("ExposeSnapshot of %s: %w", volume, err)
		}
		c, err := nbd.Dial(ctx, "tcp", d.addr, &nbd.DialOptions{Export: export})
		if err != nil {
			return "", nil, fmt.Errorf("connect to the snapshot of %s: %w", volume, err)
		}
		return export, c, nil
	}
	return "", nil, fmt.Errorf("set %v has no snapshot of %s", r.id, volume)
}

// close stops everything the demo started, in reverse order.
func (d *demo) close() error {
	var errs []error
	if d.load != nil {
		d.load.stop()
	}
	if d.app != nil {
		d.app.stop()
		errs = append(errs, d.app.c.Close())
	}
	if d.svc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, d.svc.Close(ctx))
		cancel()
	}
	if d.prov != nil {
		errs = append(errs, d.prov.Close())
	}
	if d.srvCancel != nil {
		d.srvCancel()
		d.srvWG.Wait()
		errs = append(errs, d.srvErr)
	}
	if d.closeArray != nil {
		errs = append(errs, d.closeArray())
	}
	return errors.Join(errs...)
}
