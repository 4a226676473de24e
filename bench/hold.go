package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// HoldConfig configures the hold workload: the flush & hold window
// (vss-spec.md B.2: flush and hold every LUN, CommitSnapshots, release) of
// whole snapshot sets taken while NBD clients write to the LUNs.
type HoldConfig struct {
	LUNs    int  `json:"luns"`
	LUNSize Size `json:"lun_size"`
	Span    Size `json:"span"`
	// Writers is the number of VSS writers taking part in each set.
	Writers int `json:"writers"`
	// Conns NBD connections, spread over the LUNs, each keep QD writes
	// of BlockSize in flight.
	Conns     int    `json:"conns"`
	QD        int    `json:"qd"`
	BlockSize Size   `json:"block_size"`
	Network   string `json:"network"`
	// Rate is how often a set starts; 0 runs them back to back.
	Rate Rate `json:"rate_per_s"`
	// LoadRate paces the writes open-loop, in writes a second over all
	// connections; 0 writes as fast as the connections go, which on a
	// machine that runs the clients too measures a saturated system.
	LoadRate Rate          `json:"load_rate_per_s"`
	Duration time.Duration `json:"duration_ns"`
	// DataDir, when set, runs on a durable array in a new directory
	// under it, removed at the end, rather than in memory.
	DataDir string `json:"data_dir,omitempty"`
}

// DefaultHoldConfig is 16 LUNs under 16 connections at QD 4 of 4 KiB
// writes, a set 50 times a second, for 10 s.
func DefaultHoldConfig() HoldConfig {
	return HoldConfig{LUNs: 16, LUNSize: 1 << 30, Span: 64 << 20, Conns: 16, QD: 4, BlockSize: 4 << 10,
		Network: "tcp", Rate: 50, Duration: 10 * time.Second}
}

func (c HoldConfig) params() []Param {
	return []Param{{"luns", fmt.Sprint(c.LUNs)}, {"lun size", c.LUNSize.String()}, {"span", c.Span.String()},
		{"writers", fmt.Sprint(c.Writers)}, {"connections", fmt.Sprint(c.Conns)}, {"queue depth", fmt.Sprint(c.QD)},
		{"block size", c.BlockSize.String()}, {"network", c.Network}, {"rate", c.Rate.String()}, {"load rate", c.LoadRate.String()},
		{"duration", c.Duration.String()}}
}

func (c HoldConfig) validate() error {
	if c.Writers < 0 || c.Rate < 0 {
		return fmt.Errorf("bench: hold: writers and rate must not be negative")
	}
	return validateLoad("hold", c.LUNs, c.LUNSize, c.Span, c.Conns, c.QD, c.BlockSize, c.Network, c.Duration)
}

// RunHold runs the hold workload.
func RunHold(ctx context.Context, cfg HoldConfig, p Progress) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rg, err := newNBDRig(ctx, rigConfig{LUNs: cfg.LUNs, LUNSize: int64(cfg.LUNSize), Writers: cfg.Writers, Network: cfg.Network, MaxInFlight: cfg.QD, DataDir: cfg.DataDir}, int64(cfg.Span))
	if err != nil {
		return nil, err
	}
	defer rg.Close()
	res := &Result{Workload: "hold", Config: cfg, Params: cfg.params(), Machine: Describe(), Started: time.Now()}
	runtime.GC()
	ld, err := startLoad(ctx, rg, rg.luns, loadConfig{Conns: cfg.Conns, QD: cfg.QD, BlockSize: int64(cfg.BlockSize), Span: int64(cfg.Span), Rate: float64(cfg.LoadRate)})
	if err != nil {
		return nil, err
	}
	defer ld.stop()
	st := newSetStats()
	flush, commit, release := NewHistogram(), NewHistogram(), NewHistogram()
	stop := ticker(p, cfg.Duration, func() string { return fmt.Sprintf("%d sets", len(st.samples)) })
	err = paced(ctx, cfg.Duration, cfg.Rate, func() error {
		s, err := rg.snapshotSet(ctx)
		if err != nil {
			return err
		}
		st.add(s)
		for _, sp := range s.tl.Spans() {
			if sp.Kind != coordinator.KindPhase {
				continue
			}
			switch sp.Name {
			case "FlushAndHold":
				flush.Record(sp.Duration())
			case "CommitSnapshots":
				commit.Record(sp.Duration())
			case "ReleaseWrites":
				release.Record(sp.Duration())
			}
		}
		return nil
	})
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
	res.addLatency("window/hold", st.hold)
	res.addLatency("hold/flush, hold and drain", flush)
	res.addLatency("hold/commit", commit)
	res.addLatency("hold/release", release)
	res.addLatency("sequence/DoSnapshotSet", st.total)
	res.addLatency("nbd/write", t.writes[0])
	res.Timeline = st.timeline()
	res.Series = t.series
	res.Series.markSnapshots(ld.base, st.samples)
	res.addMetric("sets", float64(len(st.samples)), "")
	res.addMetric("writes", float64(t.writes[0].Count())/res.Elapsed.Seconds(), "op/s")
	res.Summary = fmt.Sprintf("%d sets of %d LUNs under %d x QD %d NBD writes of %s: hold window p50 %s, p99 %s",
		len(st.samples), cfg.LUNs, cfg.Conns, cfg.QD, cfg.BlockSize, FormatDuration(st.hold.Quantile(50)), FormatDuration(st.hold.Quantile(99)))
	res.Notes = append(res.Notes,
		"the hold window runs from the flush of the first LUN to the release of the last (vss-spec.md B.2)",
		"flush, hold and drain is one step: lun.Hold closes the gate and waits for the I/O in flight in one call")
	return res, rg.Close()
}

// paced calls fn every 1/rate (back to back when rate is 0; at once
// again when fn overran its slot) until d has passed or ctx ends.
func paced(ctx context.Context, d time.Duration, rate Rate, fn func() error) error {
	start := time.Now()
	next := start
	iv := rate.Interval()
	for ctx.Err() == nil {
		if now := time.Now(); next.After(now) {
			if next.Sub(start) >= d { // no more sets: see the time out
				wait(ctx, d-now.Sub(start))
				return nil
			}
			wait(ctx, next.Sub(now))
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if time.Since(start) >= d {
			return nil
		}
		if err := fn(); err != nil {
			return err
		}
		next = next.Add(iv)
		if now := time.Now(); next.Before(now) {
			next = now
		}
	}
	return ctx.Err()
}
