package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// IOImpactConfig configures the io-impact workload: NBD write latency
// before, during and after snapshot sets taken at Rate. The run is a
// quarter without snapshots, half with, and a quarter without again.
type IOImpactConfig struct {
	LUNs    int  `json:"luns"`
	LUNSize Size `json:"lun_size"`
	Span    Size `json:"span"`
	// Writers is the number of VSS writers taking part in each set.
	Writers   int    `json:"writers"`
	Conns     int    `json:"conns"`
	QD        int    `json:"qd"`
	BlockSize Size   `json:"block_size"`
	Network   string `json:"network"`
	// Rate is how often a snapshot set starts in the middle half.
	Rate     Rate          `json:"rate_per_s"`
	Duration time.Duration `json:"duration_ns"`
	// DataDir, when set, runs on a durable array in a new directory
	// under it, removed at the end, rather than in memory.
	DataDir string `json:"data_dir,omitempty"`
}

// DefaultIOImpactConfig is 4 LUNs, 4 writers, 4 connections at QD 4 of
// 4 KiB writes, a set a second, for 20 s (5 s before, 10 s during, 5 s
// after).
func DefaultIOImpactConfig() IOImpactConfig {
	return IOImpactConfig{LUNs: 4, LUNSize: 1 << 30, Span: 64 << 20, Writers: 4, Conns: 4, QD: 4,
		BlockSize: 4 << 10, Network: "tcp", Rate: 1, Duration: 20 * time.Second}
}

func (c IOImpactConfig) params() []Param {
	return []Param{{"luns", fmt.Sprint(c.LUNs)}, {"lun size", c.LUNSize.String()}, {"span", c.Span.String()},
		{"writers", fmt.Sprint(c.Writers)}, {"connections", fmt.Sprint(c.Conns)}, {"queue depth", fmt.Sprint(c.QD)},
		{"block size", c.BlockSize.String()}, {"network", c.Network}, {"rate", c.Rate.String()},
		{"duration", c.Duration.String()}}
}

func (c IOImpactConfig) validate() error {
	if c.Writers < 0 {
		return fmt.Errorf("bench: io-impact: writers must not be negative")
	}
	if c.Rate <= 0 {
		return fmt.Errorf("bench: io-impact: rate must be positive")
	}
	return validateLoad("io-impact", c.LUNs, c.LUNSize, c.Span, c.Conns, c.QD, c.BlockSize, c.Network, c.Duration)
}

// The io-impact phases.
const (
	phaseBefore = iota
	phaseDuring
	phaseAfter
)

// RunIOImpact runs the io-impact workload.
func RunIOImpact(ctx context.Context, cfg IOImpactConfig, p Progress) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rg, err := newNBDRig(ctx, rigConfig{LUNs: cfg.LUNs, LUNSize: int64(cfg.LUNSize), Writers: cfg.Writers, Network: cfg.Network, MaxInFlight: cfg.QD, DataDir: cfg.DataDir}, int64(cfg.Span))
	if err != nil {
		return nil, err
	}
	defer rg.Close()
	res := &Result{Workload: "io-impact", Config: cfg, Params: cfg.params(), Machine: Describe(), Started: time.Now()}
	runtime.GC()
	ld, err := startLoad(ctx, rg, rg.luns, loadConfig{Conns: cfg.Conns, QD: cfg.QD, BlockSize: int64(cfg.BlockSize),
		Span: int64(cfg.Span), Phases: 3, Samples: map[int]bool{phaseDuring: true}})
	if err != nil {
		return nil, err
	}
	defer ld.stop()
	st := newSetStats()
	stop := ticker(p, cfg.Duration, func() string { return fmt.Sprintf("%d sets", len(st.samples)) })
	quarter := cfg.Duration / 4
	wait(ctx, quarter)
	ld.setPhase(phaseDuring)
	err = paced(ctx, cfg.Duration-2*quarter, cfg.Rate, func() error {
		s, err := rg.snapshotSet(ctx)
		if err == nil {
			st.add(s)
		}
		return err
	})
	ld.setPhase(phaseAfter)
	if err == nil {
		wait(ctx, quarter)
	}
	stop()
	ld.stop()
	res.Elapsed = time.Since(ld.base)
	if err != nil && ctx.Err() == nil {
		return nil, err
	}
	t := ld.totals()
	if err := t.failed(); err != nil {
		return nil, err
	}
	before, during, after := t.writes[phaseBefore], t.writes[phaseDuring], t.writes[phaseAfter]
	steady := NewHistogram()
	steady.Merge(before)
	steady.Merge(after)
	held, free := classify(t.samples, ld.base, st.samples)
	res.addLatency("write/before", before)
	res.addLatency("write/during", during)
	res.addLatency("write/after", after)
	res.addLatency("write/steady (before and after)", steady)
	res.addLatency("during/writes sent in a hold window", held)
	res.addLatency("during/other writes", free)
	res.addLatency("window/hold", st.hold)
	res.addLatency("sequence/DoSnapshotSet", st.total)
	res.Timeline = st.timeline()
	res.Series = t.series
	res.Series.markSnapshots(ld.base, st.samples)
	ratio := func(q float64) float64 {
		if steady.Count() == 0 || during.Count() == 0 {
			return 0
		}
		return float64(during.Quantile(q)) / float64(steady.Quantile(q))
	}
	res.addMetric("p99 during / p99 steady", ratio(99), "x")
	res.addMetric("p99.9 during / p99.9 steady", ratio(99.9), "x")
	res.addMetric("sets", float64(len(st.samples)), "")
	res.addMetric("writes", float64(before.Count()+during.Count()+after.Count())/res.Elapsed.Seconds(), "op/s")
	res.Summary = fmt.Sprintf("%s NBD writes, %d x QD %d on %d LUNs, %d sets at %s: p99 steady %s, during %s (%.2fx)",
		cfg.BlockSize, cfg.Conns, cfg.QD, cfg.LUNs, len(st.samples), cfg.Rate,
		FormatDuration(steady.Quantile(99)), FormatDuration(during.Quantile(99)), ratio(99))
	if t.dropped > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d writes of the middle half were not kept for the hold analysis (memory bound)", t.dropped))
	}
	res.Notes = append(res.Notes, "writes sent in a hold window started while one was open: the gate held them until the release")
	return res, rg.Close()
}

// classify splits the writes of the middle half into those sent while a
// hold window of some set was open, which the gate queued unless they
// reached it after the release, and the others. Writes are classified by
// their start alone: "in flight during a window" would favour long writes,
// since the longer a write, the likelier it overlaps a window.
func classify(samples []sample, base time.Time, sets []setSample) (held, free *Histogram) {
	type iv struct{ a, b time.Duration }
	var wins []iv
	for _, s := range sets {
		off := s.tl.Origin().Sub(base)
		for _, sp := range s.tl.Spans() {
			if sp.Kind == coordinator.KindWindow && sp.Name == "hold" {
				wins = append(wins, iv{off + sp.Start, off + sp.End})
			}
		}
	}
	slices.SortFunc(wins, func(x, y iv) int { return int(x.a - y.a) })
	held, free = NewHistogram(), NewHistogram()
	for _, smp := range samples {
		// The first window that ends after the write starts.
		i, _ := slices.BinarySearchFunc(wins, smp.start, func(w iv, t time.Duration) int { return int(w.b - t) })
		if i < len(wins) && wins[i].a <= smp.start {
			held.Record(smp.lat)
		} else {
			free.Record(smp.lat)
		}
	}
	return held, free
}
