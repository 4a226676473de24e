package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

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
	// Report is the HTML report's path; empty writes none.
	Report string `json:"report,omitempty"`
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
		{"slow writer delay", FormatDuration(c.SlowDelay)}}
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

	array *lun.Array
	prov  *provider.ArrayProvider
	svc   *coordinator.Service
	addr  string

	srvCancel context.CancelFunc
	srvWG     sync.WaitGroup
	srvErr    error

	load *demoLoad
	app  *demoApp

	writers map[string]vss.ID // name -> instance

	// Figures over every set created.
	total, commit, hold *Histogram
	holds               [][2]time.Duration // hold windows since the load's base
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
	if d.array, err = lun.NewArray(lun.Config{}); err != nil {
		return err
	}
	for _, v := range demoVolumes {
		if _, err := d.array.Create(v.lun, lun.Options{Size: int64(cfg.LUNSize), BlockSize: 4096}); err != nil {
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
	if d.prov, err = provider.NewArray(d.array, provider.DefaultProfile(), provider.WithLogger(d.log)); err != nil {
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
		"The provider is the emulated array provider, a VSS hardware provider over this array.")
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
	if r.err != nil {
		d.res.FailedSets++
		return r, nil
	}
	d.res.Sets++
	d.total.Record(r.end - r.start)
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

// checkApp compares the snapshot of D:'s application region with what the
// application had at Freeze. It returns the snapshot's region.
func (d *demo) checkApp(ctx context.Context, c *nbd.Client, r *demoRun, export string) []byte {
	want := d.app.frozenContent(r.id)
	got := make([]byte, d.cfg.AppRegion)
	err := c.Read(ctx, got, 0)
	switch {
	case err != nil:
		d.check(false, "application data in the snapshot", fmt.Sprintf("reading %s: %v", export, err))
		return nil
	case want == nil:
		d.check(false, "application data in the snapshot", "the application never froze for this set")
		return nil
	}
	eq := equalBytes(got, want)
	d.check(eq == len(want), "application data in the snapshot",
		fmt.Sprintf("D:'s snapshot (export %s) holds what the app had at Freeze: %d of %d bytes equal", export, eq, len(want)))
	return got
}

// equalBytes counts the positions where a and b hold the same byte.
func equalBytes(a, b []byte) int {
	if bytes.Equal(a, b) {
		return len(a)
	}
	n := 0
	for i := range min(len(a), len(b)) {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}

// checkLoadPointInTime checks that each load writer's slots in a
// snapshot are those of one prefix of its records, bounded by the hold
// window (C4: every write acknowledged before the snapshot is in it, none
// started after it is).
func (d *demo) checkLoadPointInTime(ctx context.Context, c *nbd.Client, r *demoRun, volume, source string) {
	from, to, ok := d.holdWindow(r)
	if !ok {
		d.check(false, volume+" load records are a point in time", "the set has no hold window")
		return
	}
	var prefixes []string
	total, equal := 0, 0
	pass := true
	for _, w := range d.load.writers {
		if w.export != source {
			continue
		}
		got, err := d.load.readSlots(ctx, c, w)
		if err != nil {
			d.check(false, volume+" load records are a point in time", fmt.Sprintf("reading the snapshot: %v", err))
			return
		}
		n, eq, lo, hi := d.load.pointInTime(got, w, from, to)
		total += len(got)
		equal += eq
		if eq != len(got) || hi-lo >= int64(d.load.slots) {
			pass = false
		}
		prefixes = append(prefixes, fmt.Sprintf("client %d through #%d", w.id, n))
	}
	d.check(pass && total > 0, volume+" load records are a point in time",
		fmt.Sprintf("%s (each between the last acknowledged before the hold and the last sent before the release); %d of %d bytes equal",
			strings.Join(prefixes, ", "), equal, total))
}

func (d *demo) firstSet(ctx context.Context) error {
	d.begin("Snapshot set 1 of D: and E:, the full VSS sequence (vss-spec.md A).",
		"The requester gathers the writers' metadata, adds both volumes and prepares; then",
		"DoSnapshotSet runs the sequence: the writers prepare and freeze, the array holds",
		"I/O on both LUNs at once, commits, releases, and the writers thaw.")
	r, err := d.backup(ctx)
	if err != nil {
		return err
	}
	d.res.FirstSet = r.info()
	if r.err != nil {
		d.check(false, "set 1 created", fmt.Sprintf("DoSnapshotSet failed: %v", r.err))
		return d.done(ctx, r)
	}
	hold := time.Duration(0)
	if sp, ok := r.tl.Find(coordinator.KindWindow, "hold"); ok {
		hold = sp.Duration()
	}
	slow := ""
	if d.cfg.SlowDelay > 0 {
		slow = fmt.Sprintf(" (2 x %s of it the slow writer)", FormatDuration(d.cfg.SlowDelay))
	}
	d.printf("   DoSnapshotSet took %s%s; writes were held for %s of it.\n",
		FormatDuration(r.end-r.start), slow, FormatDuration(hold))
	var bad []string
	for _, s := range r.status {
		if s.State.IsFailed() || s.Failure != vss.S_OK {
			bad = append(bad, fmt.Sprintf("%s %v %v", s.Name, s.State, s.Failure.Name()))
		}
	}
	if len(bad) == 0 && len(r.status) > 0 {
		d.check(true, "writers", fmt.Sprintf("all %d writers report no failure (%v)", len(r.status), r.status[0].State))
	} else {
		d.check(false, "writers", fmt.Sprintf("%d writers report: %s", len(r.status), strings.Join(bad, "; ")))
	}

	d.begin("Check set 1 through NBD: ExposeSnapshot makes each snapshot a read-only export.")
	export, c, err := d.exposeVolume(ctx, r, "D:")
	if err != nil {
		d.check(false, "expose D:'s snapshot", err.Error())
	} else {
		snap := d.checkApp(ctx, c, r, export)
		// The application resumed after Thaw, and the snapshot does not
		// show what it wrote since.
		var content []byte
		var since int64
		deadline := time.Now().Add(5 * time.Second)
		for {
			content, since, _, _ = d.app.state()
			if since > 0 || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(d.cfg.AppInterval)
		}
		if snap != nil {
			diff := len(snap) - equalBytes(snap, content)
			d.check(since > 0 && diff > 0, "the application resumed after Thaw",
				fmt.Sprintf("%s since; its region now differs from the snapshot in %d bytes, as it should", plural(since, "write"), diff))
		}
		werr := c.Write(ctx, make([]byte, 4096), 0, 0)
		d.check(werr != nil && c.Flags()&nbd.FlagReadOnly != 0, "the snapshot is read-only",
			fmt.Sprintf("the export is flagged read-only and a write was refused (%v)", werr))
		d.checkLoadPointInTime(ctx, c, r, "D:", "lun0")
		_ = c.Close()
	}
	if _, c, err := d.exposeVolume(ctx, r, "E:"); err != nil {
		d.check(false, "expose E:'s snapshot", err.Error())
	} else {
		d.checkLoadPointInTime(ctx, c, r, "E:", "lun1")
		_ = c.Close()
	}
	return d.done(ctx, r)
}

func (d *demo) vetoSet(ctx context.Context) error {
	const msg = "log disk busy, try again later"
	vetoer, err := coordinator.NewScriptedWriter(coordinator.Script{On: map[vss.WriterEvent]coordinator.Action{
		vss.EventFreeze: {Result: coordinator.ResultVeto, Failure: vss.VSS_E_WRITERERROR_RETRYABLE, Message: msg},
	}})
	if err != nil {
		return err
	}
	if err := d.addWriter("vetoer", vetoer, vss.VSS_APP_BACK_END); err != nil {
		return err
	}
	d.begin("Snapshot set 2: a fourth writer, vetoer, vetoes.",
		"It answers Freeze with VSS_E_WRITERERROR_RETRYABLE and returns true: a non-fatal",
		"error. The set goes on; the requester finds the veto in the writers' status and",
		"decides (vss-spec.md D: retry after 10 minutes, up to 3 times).")
	r, err := d.backup(ctx)
	if err != nil {
		return err
	}
	d.res.VetoSet = r.info()
	d.printf("   DoSnapshotSet took %s. GatherWriterStatus:\n", FormatDuration(r.end-r.start))
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "     writer\tstate\tfailure\tmessage")
	for _, s := range r.status {
		fmt.Fprintf(tw, "     %s\t%v\t%s\t%s\n", s.Name, s.State, s.Failure.Name(), s.Message)
	}
	_ = tw.Flush()
	d.check(r.err == nil, "the set survives the veto", fmt.Sprintf("DoSnapshotSet returned %s", d.res.VetoSet.Result))
	var veto *coordinator.WriterStatus
	others := 0
	for i, s := range r.status {
		switch {
		case s.Name == "vetoer":
			veto = &r.status[i]
		case !s.State.IsFailed() && s.Failure == vss.S_OK:
			others++
		}
	}
	if veto == nil {
		d.check(false, "the veto is reported", "vetoer is missing from the writers' status")
	} else {
		d.check(veto.State == vss.VSS_WS_FAILED_AT_FREEZE && veto.Failure == vss.VSS_E_WRITERERROR_RETRYABLE,
			"the veto is reported", fmt.Sprintf("vetoer is %v with %s; the %d others report no failure", veto.State, veto.Failure.Name(), others))
	}
	if r.err == nil {
		if export, c, err := d.exposeVolume(ctx, r, "D:"); err != nil {
			d.check(false, "expose D:'s snapshot", err.Error())
		} else {
			d.checkApp(ctx, c, r, export)
			_ = c.Close()
		}
	}
	return d.done(ctx, r)
}

// finish erases a progress bar, if the Progress is one.
func finish(p Progress) {
	if f, ok := p.(interface{ Finish() }); ok {
		f.Finish()
	}
}

func (d *demo) burst(ctx context.Context) error {
	cfg := d.cfg
	if cfg.Sets == 0 {
		return nil
	}
	for _, name := range []string{"slow", "vetoer"} {
		if err := d.removeWriter(name); err != nil {
			return err
		}
	}
	left := cfg.Duration - time.Since(d.load.base)
	iv := max(left/time.Duration(cfg.Sets), 0)
	pace := "back to back"
	if iv > 0 {
		pace = "one every " + FormatDuration(iv)
	}
	d.begin(fmt.Sprintf("A burst of %d quick sets, %s, still under load.", cfg.Sets, pace),
		"slow and vetoer unsubscribe, so the figures are the array's and the coordinator's.",
		"Each set's snapshot of D: is read back and compared with the application's data at Freeze.")
	created, matched, compared := 0, 0, 0
	var firstBad string
	stop := ticker(cfg.Progress, left, func() string { return fmt.Sprintf("%d/%d sets", created, cfg.Sets) })
	start := time.Now()
	for i := range cfg.Sets {
		wait(ctx, time.Until(start.Add(time.Duration(i)*iv)))
		if ctx.Err() != nil {
			break
		}
		r, err := d.backup(ctx)
		if err != nil {
			stop()
			finish(cfg.Progress)
			return err
		}
		if r.err != nil {
			if firstBad == "" {
				firstBad = fmt.Sprintf("set %d: DoSnapshotSet failed: %v", i+1, r.err)
			}
		} else {
			created++
			if err := d.burstCheck(ctx, r); err != nil {
				if firstBad == "" {
					firstBad = fmt.Sprintf("set %d: %v", i+1, err)
				}
			} else {
				matched++
			}
			compared += int(cfg.AppRegion)
		}
		if err := d.done(ctx, r); err != nil {
			stop()
			finish(cfg.Progress)
			return err
		}
	}
	stop()
	finish(cfg.Progress)
	if err := ctx.Err(); err != nil {
		return err
	}
	d.check(created == cfg.Sets, "every set created", fmt.Sprintf("%d of %d sets created%s", created, cfg.Sets, suffix(firstBad)))
	d.check(matched == created && created > 0, "every snapshot holds the application's data",
		fmt.Sprintf("%d of %d snapshots of D: equal the app's region at Freeze (%s compared)%s",
			matched, created, FormatBytes(int64(compared)), suffix(firstBad)))
	return nil
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return "; first problem: " + s
}

// burstCheck compares one burst set's snapshot of D: with the
// application's data at Freeze.
func (d *demo) burstCheck(ctx context.Context, r *demoRun) error {
	export, c, err := d.exposeVolume(ctx, r, "D:")
	if err != nil {
		return err
	}
	defer c.Close()
	want := d.app.frozenContent(r.id)
	if want == nil {
		return errors.New("the application never froze for it")
	}
	got := make([]byte, len(want))
	if err := c.Read(ctx, got, 0); err != nil {
		return fmt.Errorf("reading %s: %w", export, err)
	}
	if eq := equalBytes(got, want); eq != len(want) {
		return fmt.Errorf("%s: %d of %d bytes equal", export, eq, len(want))
	}
	return nil
}

func (d *demo) finalChecks(ctx context.Context) error {
	d.begin("Stop the load and the application, and check what they wrote.",
		"During each hold (flush & hold, vss-spec.md B.2) the array queues new writes and waits",
		"for those in flight: a write may be delayed, never failed, never lost.")
	d.load.stop()
	d.app.stop()
	t := d.load.totals()
	detail := fmt.Sprintf("%d writes acknowledged, %d failed", t.writes, t.errs)
	if t.err != nil {
		detail += fmt.Sprintf(" (the first: %v)", t.err)
	}
	d.check(t.errs == 0 && t.writes > 0, "the load saw no error", detail)

	// Nothing lost: each slot holds the last record acknowledged for it.
	var readErr error
	total, equal := 0, 0
	conns := map[string]*nbd.Client{}
	for _, v := range demoVolumes {
		c, err := nbd.Dial(ctx, "tcp", d.addr, &nbd.DialOptions{Export: v.lun})
		if err != nil {
			readErr = err
			break
		}
		conns[v.lun] = c
		defer c.Close()
	}
	if readErr == nil {
		for _, w := range d.load.writers {
			got, err := d.load.readSlots(ctx, conns[w.export], w)
			if err != nil {
				readErr = err
				break
			}
			total += len(got)
			equal += d.load.matchPrefix(got, w.id, int64(len(w.done)))
		}
	}
	if readErr != nil {
		d.check(false, "no write lost", fmt.Sprintf("reading the LUNs back: %v", readErr))
	} else {
		d.check(equal == total && total > 0, "no write lost",
			fmt.Sprintf("every slot of the live LUNs holds its last acknowledged record: %d of %d bytes equal", equal, total))
	}
	met := d.load.metHold(d.holds)
	d.check(t.errs == 0, "writes that met a hold",
		fmt.Sprintf("%d writes met one of the %d hold windows; all were acknowledged (slowest %s)",
			met.Count(), len(d.holds), FormatDuration(met.Quantile(100))))

	// The application's last writes are all on the live LUN.
	content, _, writes, appErr := d.app.state()
	live := make([]byte, len(content))
	switch {
	case appErr != nil:
		d.check(false, "the application's writes", fmt.Sprintf("a write failed: %v", appErr))
	case conns["lun0"] == nil:
	default:
		if err := conns["lun0"].Read(ctx, live, 0); err != nil {
			d.check(false, "the application's writes", fmt.Sprintf("reading lun0: %v", err))
		} else {
			eq := equalBytes(live, content)
			d.check(eq == len(content), "the application's writes",
				fmt.Sprintf("%d writes; live D: holds the last of each: %d of %d bytes equal", writes, eq, len(content)))
		}
	}

	lat := d.load.latencies()
	d.res.Latencies = []Latency{
		d.commit.Summary("set/CommitSnapshots"),
		d.hold.Summary("set/hold window"),
		d.total.Summary("set/DoSnapshotSet"),
		lat.Summary("load/write"),
		met.Summary("load/write that met a hold"),
	}
	if h := d.prov.CommitHistogram(); h != nil && h.TotalCount() > 0 {
		d.res.Latencies = slices.Insert(d.res.Latencies, 1, (&Histogram{h: h}).Summary("set/array commit (pointer swaps)"))
	}
	elapsed := time.Since(d.load.base)
	d.loadWrites = t.writes
	d.res.Metrics = []Metric{
		{Name: "sets created", Value: float64(d.res.Sets)},
		{Name: "sets failed", Value: float64(d.res.FailedSets)},
		{Name: "load writes", Value: float64(t.writes)},
		{Name: "load write rate", Value: float64(t.writes) / elapsed.Seconds(), Unit: "op/s"},
		{Name: "writes that met a hold", Value: float64(met.Count())},
	}
	return nil
}

// summary prints the first set's timeline, the latency table, writes the
// report and prints the verdict.
func (d *demo) summary(started time.Time) {
	if fs := d.res.FirstSet; fs != nil {
		d.printf("\nTimeline of set 1, from StartSnapshotSet (vss-spec.md A.7 names the steps; provider calls\n")
		d.printf("and writer events are indented under the step that made them):\n")
		tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "   offset\tduration\tkind\tname\tactor\tresult\t")
		rows := append([]coordinator.Span{{Kind: "requester", Name: "DoSnapshotSet",
			Start: fs.Start, End: fs.End, Result: fs.Result}}, fs.Spans...)
		slices.SortStableFunc(rows, func(a, b coordinator.Span) int {
			if a.Start != b.Start {
				return int(a.Start - b.Start)
			}
			return int(b.End - a.End) // the enclosing span first
		})
		for _, sp := range rows {
			name := sp.Name
			if sp.Kind == coordinator.KindProvider || sp.Kind == coordinator.KindWriter {
				name = "  " + name
			}
			res := sp.Result
			if sp.Detail != "" && sp.Kind != coordinator.KindWindow {
				res += " (" + sp.Detail + ")"
			}
			fmt.Fprintf(tw, "   %.3fms\t%s\t%s\t%s\t%s\t%s\t\n", float64(sp.Start)/1e6, FormatDuration(sp.Duration()),
				sp.Kind, name, dash(sp.Actor), res)
		}
		_ = tw.Flush()
	}

	d.printf("\nLatency over the %d sets created, and over the load's writes:\n", d.res.Sets)
	labels := map[string]string{
		"set/CommitSnapshots":              "CommitSnapshots, as the coordinator timed it",
		"set/array commit (pointer swaps)": "the array's commit itself (pointer swaps)",
		"set/hold window":                  "hold window: flush, hold, commit, release",
		"set/DoSnapshotSet":                "DoSnapshotSet, the whole sequence",
		"load/write":                       "load write, from its scheduled start",
		"load/write that met a hold":       "load write that met a hold window",
	}
	width := 0
	for _, l := range d.res.Latencies {
		width = max(width, len(labels[l.Name]))
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, " %-*s\tcount\tp50\tp99\tp99.9\tmax\t\n", width, "")
	for _, l := range d.res.Latencies {
		if l.Count == 0 {
			fmt.Fprintf(tw, " %-*s\t0\t-\t-\t-\t-\t\n", width, labels[l.Name])
			continue
		}
		fmt.Fprintf(tw, " %-*s\t%d\t%s\t%s\t%s\t%s\t\n", width, labels[l.Name], l.Count,
			FormatDuration(l.P50), FormatDuration(l.P99), FormatDuration(l.P999), FormatDuration(l.Max))
	}
	_ = tw.Flush()
	if d.cfg.SlowDelay > 0 && d.res.Sets > 2 {
		d.printf("   DoSnapshotSet's tail is sets 1 and 2, which waited for the slow writer.\n")
	}
	if d.res.Sets < 1000 {
		d.printf("   With %d sets, p99.9 is the slowest set; --sets 1000 gives the tail some meaning.\n", d.res.Sets)
	}

	d.res.Results = d.results(started)
	if d.cfg.Report != "" {
		if err := writeReport(d.cfg.Report, d.res.Results); err != nil {
			d.check(false, "the report", err.Error())
			d.res.Passed = false
		} else {
			d.res.Report = d.cfg.Report
			where := d.cfg.Report
			if abs, err := filepath.Abs(where); err == nil {
				where = abs
			}
			d.printf("\nReport: %s\n", d.cfg.Report)
			d.printf("   Open file://%s in a browser: the Gantt chart of sets 1 and 2, percentile curves, histograms.\n", where)
		}
	}

	if failed := d.res.Failed(); len(failed) == 0 {
		d.printf("\nAll %d checks passed in %s.\n", len(d.res.Checks), FormatDuration(time.Since(started)))
	} else {
		d.printf("\n%d of %d checks FAILED:\n", len(failed), len(d.res.Checks))
		for _, c := range failed {
			d.printf("   step %d, %s: %s\n", c.Step, c.Name, c.Detail)
		}
	}
}

// plural writes n things: "1 write", "7 writes".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// results builds what the report shows.
func (d *demo) results(started time.Time) []*Result {
	m := Describe()
	var notes []string
	for _, c := range d.res.Checks {
		v := "PASS"
		if !c.Pass {
			v = "FAIL"
		}
		notes = append(notes, fmt.Sprintf("%s (step %d) %s: %s", v, c.Step, c.Name, c.Detail))
	}
	first := &Result{Workload: "demo", Config: d.cfg, Params: d.cfg.params(), Machine: m, Started: started,
		Elapsed: time.Since(started), Latencies: d.res.Latencies, Metrics: d.res.Metrics, Notes: notes,
		Summary: fmt.Sprintf("%d snapshot sets of D: and E: under %d NBD load writes; the timeline is set 1's, with writers app, slow and quick",
			d.res.Sets, d.loadWrites)}
	if fs := d.res.FirstSet; fs != nil {
		first.Timeline = &Timeline{Caption: fmt.Sprintf("set 1, %v: DoSnapshotSet %s", fs.ID, FormatDuration(fs.End-fs.Start)),
			Start: fs.Start, End: fs.End, Spans: fs.Spans}
	}
	out := []*Result{first}
	if vs := d.res.VetoSet; vs != nil {
		var wn []string
		for _, s := range vs.Writers {
			wn = append(wn, fmt.Sprintf("writer %s: %v, %s %s", s.Name, s.State, s.Failure.Name(), s.Message))
		}
		out = append(out, &Result{Workload: "demo: set 2, vetoed", Machine: m, Started: started,
			Elapsed: vs.End - vs.Start, Notes: wn,
			Params:  []Param{{"writers", "app, slow, quick, vetoer"}, {"vetoer", "vetoes Freeze with VSS_E_WRITERERROR_RETRYABLE"}},
			Summary: fmt.Sprintf("DoSnapshotSet returned %s although vetoer vetoed (vss-spec.md D)", vs.Result),
			Timeline: &Timeline{Caption: fmt.Sprintf("set 2, %v: DoSnapshotSet %s", vs.ID, FormatDuration(vs.End-vs.Start)),
				Start: vs.Start, End: vs.End, Spans: vs.Spans}})
	}
	return out
}

// writeReport writes the HTML report to path.
func writeReport(path string, results []*Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteHTML(f, results...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
	return errors.Join(errs...)
}

// WriteJSON writes the result as indented JSON. Durations are integers of
// nanoseconds in fields ending in _ns.
func (r *DemoResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
