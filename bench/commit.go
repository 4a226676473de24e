package bench

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// CommitConfig configures the commit workload: the array provider's
// CommitSnapshots over sets of each size in LUNs, called directly (no
// coordinator, no writers, no hold), and cow's Volume.Snapshot alone.
type CommitConfig struct {
	// LUNs lists the set sizes to measure, one after another.
	LUNs []int `json:"luns"`
	// LUNSize is each LUN's size; Data is how much of each is written
	// before the first commit (commit cost must not depend on either,
	// cow C1).
	LUNSize Size `json:"lun_size"`
	Data    Size `json:"data"`
	// Cow adds a case for cow.Volume.Snapshot alone, on one volume.
	Cow bool `json:"cow"`
	// Duration is how long each case runs.
	Duration time.Duration `json:"duration_ns"`
	// DataDir, when set, runs on a durable array in a new directory
	// under it, removed at the end, rather than in memory.
	DataDir string `json:"data_dir,omitempty"`
}

// DefaultCommitConfig measures sets of 1, 16 and 64 LUNs and cow alone,
// 2 s each.
func DefaultCommitConfig() CommitConfig {
	return CommitConfig{LUNs: []int{1, 16, 64}, LUNSize: 1 << 30, Data: 16 << 20, Cow: true, Duration: 2 * time.Second}
}

func (c CommitConfig) params() []Param {
	luns := make([]string, len(c.LUNs))
	for i, n := range c.LUNs {
		luns[i] = fmt.Sprint(n)
	}
	return []Param{{"luns", strings.Join(luns, ",")}, {"lun size", c.LUNSize.String()},
		{"data per LUN", c.Data.String()}, {"cow alone", fmt.Sprint(c.Cow)}, {"duration per case", c.Duration.String()}}
}

func (c CommitConfig) validate() error {
	if len(c.LUNs) == 0 && !c.Cow {
		return fmt.Errorf("bench: commit: nothing to measure: give --luns or --cow")
	}
	for _, n := range c.LUNs {
		if n < 1 || n > 4096 {
			return fmt.Errorf("bench: commit: a set of %d LUNs: want 1 to 4096", n)
		}
	}
	switch {
	case c.LUNSize < 4096 || c.LUNSize%4096 != 0:
		return fmt.Errorf("bench: commit: lun size must be a positive multiple of 4 KiB, not %d", c.LUNSize)
	case c.Data < 0 || c.Data > c.LUNSize:
		return fmt.Errorf("bench: commit: data must be between 0 and the LUN size")
	case c.Duration <= 0:
		return fmt.Errorf("bench: commit: duration must be positive")
	}
	return nil
}

// RunCommit runs the commit workload.
func RunCommit(ctx context.Context, cfg CommitConfig, p Progress) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	res := &Result{Workload: "commit", Config: cfg, Params: cfg.params(), Machine: Describe(), Started: time.Now()}
	cases := len(cfg.LUNs)
	if cfg.Cow {
		cases++
	}
	total := time.Duration(cases) * cfg.Duration
	var done time.Duration
	var summary []string
	for _, n := range cfg.LUNs {
		call, swaps, err := commitCase(ctx, cfg, n, subProgress(p, done, cfg.Duration, total))
		if err != nil {
			return nil, err
		}
		done += cfg.Duration
		res.addLatency(fmt.Sprintf("CommitSnapshots/luns=%d", n), call)
		res.addLatency(fmt.Sprintf("swaps/luns=%d", n), swaps)
		summary = append(summary, fmt.Sprintf("%d LUNs %s", n, FormatDuration(call.Quantile(50))))
	}
	if cfg.Cow {
		h, err := cowCase(ctx, cfg, subProgress(p, done, cfg.Duration, total))
		if err != nil {
			return nil, err
		}
		res.addLatency("cow/Snapshot", h)
		summary = append(summary, "cow alone "+FormatDuration(h.Quantile(50)))
	}
	res.Elapsed = time.Since(res.Started)
	res.Summary = "commit medians: " + strings.Join(summary, ", ")
	res.Notes = append(res.Notes,
		"CommitSnapshots/luns=N is one provider call as the coordinator makes it inside the hold window, timed around the call",
		"swaps/luns=N is the provider's own measure of the pointer swaps inside that call")
	return res, nil
}

// subProgress maps one case's progress into the run's.
func subProgress(p Progress, done, span, total time.Duration) Progress {
	if p == nil {
		return nil
	}
	return progressFunc(func(frac float64, status string) {
		p.Update((float64(done)+frac*float64(span))/float64(total), status)
	})
}

// progressFunc adapts a function to Progress.
type progressFunc func(frac float64, status string)

func (f progressFunc) Update(frac float64, status string) { f(frac, status) }

// commitCase drives the provider through whole sets of n LUNs, timing
// CommitSnapshots, and deletes each set's snapshot LUNs before the next.
func commitCase(ctx context.Context, cfg CommitConfig, n int, p Progress) (call, swaps *Histogram, err error) {
	rg, err := newRig(ctx, rigConfig{LUNs: n, LUNSize: int64(cfg.LUNSize), DataDir: cfg.DataDir})
	if err != nil {
		return nil, nil, err
	}
	defer rg.Close()
	buf := make([]byte, 1<<20)
	for _, name := range rg.luns {
		l, err := rg.array.Get(name)
		if err != nil {
			return nil, nil, err
		}
		for off := int64(0); off < int64(cfg.Data); off += int64(len(buf)) {
			if err := l.WriteAt(ctx, buf[:min(int64(len(buf)), int64(cfg.Data)-off)], off, false); err != nil {
				return nil, nil, err
			}
		}
	}
	// Volumes of the set as the coordinator would make them: at most 64.
	vols := rg.svc.Volumes()
	var devices [][]string
	for _, v := range rg.volumes {
		devices = append(devices, vols[v])
	}
	infos := make([][]provider.LunInfo, len(devices))
	for i, ds := range devices {
		for _, d := range ds {
			l, err := rg.array.Get(d)
			if err != nil {
				return nil, nil, err
			}
			infos[i] = append(infos[i], provider.LunInfoOf(l))
		}
	}
	call, swaps = NewHistogram(), NewHistogram()
	pr := rg.prov
	runtime.GC() // the set-up's garbage is not the commit's to collect
	start := time.Now()
	stop := ticker(p, cfg.Duration, func() string { return fmt.Sprintf("%d LUNs: %d commits", n, call.Count()) })
	defer stop()
	for time.Since(start) < cfg.Duration && ctx.Err() == nil {
		set := vss.NewID()
		for i := range devices {
			if err := pr.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, devices[i], infos[i]); err != nil {
				return nil, nil, err
			}
		}
		if err := pr.EndPrepareSnapshots(ctx, set); err != nil {
			return nil, nil, err
		}
		if err := pr.PreCommitSnapshots(ctx, set); err != nil {
			return nil, nil, err
		}
		t0 := time.Now()
		err := pr.CommitSnapshots(ctx, set)
		call.Record(time.Since(t0))
		if err != nil {
			return nil, nil, err
		}
		if d, ok := pr.CommitDuration(set); ok {
			swaps.Record(d)
		}
		if err := pr.PostCommitSnapshots(ctx, set, len(devices)); err != nil {
			return nil, nil, err
		}
		var targets []provider.LunInfo
		var names []string
		for i := range devices {
			t, err := pr.GetTargetLuns(ctx, devices[i], infos[i])
			if err != nil {
				return nil, nil, err
			}
			targets = append(targets, t...)
			for _, d := range devices[i] {
				names = append(names, provider.TargetName(d, set))
			}
		}
		if err := pr.PreFinalCommitSnapshots(ctx, set); err != nil {
			return nil, nil, err
		}
		if err := pr.PostFinalCommitSnapshots(ctx, set); err != nil {
			return nil, nil, err
		}
		for i, name := range names {
			if err := pr.OnLunEmpty(ctx, name, targets[i]); err != nil {
				return nil, nil, err
			}
		}
	}
	return call, swaps, rg.Close()
}

// cowCase times cow.Volume.Snapshot alone on one volume, releasing each
// image outside the timed call.
func cowCase(ctx context.Context, cfg CommitConfig, p Progress) (*Histogram, error) {
	store, err := cow.NewMemStore(cow.DefaultGrain, 0)
	if err != nil {
		return nil, err
	}
	v, err := cow.NewVolume(store, int64(cfg.LUNSize))
	if err != nil {
		return nil, err
	}
	defer v.Release()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < int64(cfg.Data); off += int64(len(buf)) {
		if _, err := v.WriteAt(buf[:min(int64(len(buf)), int64(cfg.Data)-off)], off); err != nil {
			return nil, err
		}
	}
	h := NewHistogram()
	runtime.GC()
	start := time.Now()
	stop := ticker(p, cfg.Duration, func() string { return fmt.Sprintf("cow: %d snapshots", h.Count()) })
	defer stop()
	for time.Since(start) < cfg.Duration && ctx.Err() == nil {
		t0 := time.Now()
		img, err := v.Snapshot()
		h.Record(time.Since(t0))
		if err != nil {
			return nil, err
		}
		if err := img.Release(); err != nil {
			return nil, err
		}
	}
	return h, nil
}
