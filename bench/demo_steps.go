package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

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
	met, metFailed := d.load.metHold(d.holds)
	d.check(metFailed == 0, "writes that met a hold",
		fmt.Sprintf("%d writes met one of the %d hold windows: %d acknowledged (slowest %s), %d failed",
			met.Count()+int64(metFailed), len(d.holds), met.Count(), FormatDuration(met.Quantile(100)), metFailed))

	// The application's last writes are all on the live LUN.
	content, _, writes, appErr := d.app.state()
	live := make([]byte, len(content))
	switch {
	case appErr != nil:
		d.check(false, "the application's writes", fmt.Sprintf("a write failed: %v", appErr))
	case conns["lun0"] == nil:
		// The dial failed: "no write lost" says so already.
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
