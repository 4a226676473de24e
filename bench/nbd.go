package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// NBDConfig configures the nbd workload: throughput and latency of the
// project's NBD server through the project's Go client, over loopback.
type NBDConfig struct {
	// LUNs are the exports; connections are spread over them.
	LUNs    int  `json:"luns"`
	LUNSize Size `json:"lun_size"`
	// Span is how much of each LUN is addressed, written before the run.
	Span Size `json:"span"`
	// Conns connections each keep QD requests in flight.
	Conns int `json:"conns"`
	QD    int `json:"qd"`
	// BlockSize is each request's length; ReadPct the share of reads.
	BlockSize Size `json:"block_size"`
	ReadPct   int  `json:"read_pct"`
	// Network is "tcp" (127.0.0.1) or "unix".
	Network  string        `json:"network"`
	Duration time.Duration `json:"duration_ns"`
	// DataDir, when set, runs on a durable array in a new directory
	// under it, removed at the end, rather than in memory.
	DataDir string `json:"data_dir,omitempty"`
}

// DefaultNBDConfig is one connection at QD 16, 4 KiB, 50% reads, over TCP
// loopback, for 10 s.
func DefaultNBDConfig() NBDConfig {
	return NBDConfig{LUNs: 1, LUNSize: 1 << 30, Span: 256 << 20, Conns: 1, QD: 16, BlockSize: 4 << 10,
		ReadPct: 50, Network: "tcp", Duration: 10 * time.Second}
}

func (c NBDConfig) params() []Param {
	return []Param{{"luns", fmt.Sprint(c.LUNs)}, {"lun size", c.LUNSize.String()}, {"span", c.Span.String()},
		{"connections", fmt.Sprint(c.Conns)}, {"queue depth", fmt.Sprint(c.QD)},
		{"block size", c.BlockSize.String()}, {"reads", fmt.Sprintf("%d%%", c.ReadPct)},
		{"network", c.Network}, {"duration", c.Duration.String()}}
}

// validateLoad checks the fields every NBD-driven workload shares.
func validateLoad(workload string, luns int, lunSize, span Size, conns, qd int, bs Size, network string, d time.Duration) error {
	switch {
	case luns < 1:
		return fmt.Errorf("bench: %s: luns must be at least 1, not %d", workload, luns)
	case lunSize < 4096 || lunSize%4096 != 0:
		return fmt.Errorf("bench: %s: lun size must be a positive multiple of 4 KiB, not %d", workload, lunSize)
	case conns < 1 || conns > 1024:
		return fmt.Errorf("bench: %s: conns must be from 1 to 1024, not %d", workload, conns)
	case qd < 1 || qd > 1024:
		return fmt.Errorf("bench: %s: qd must be from 1 to 1024, not %d", workload, qd)
	case bs < 512 || bs > 32<<20:
		return fmt.Errorf("bench: %s: block size must be from 512 B to 32 MiB, not %d", workload, bs)
	case span > lunSize:
		return fmt.Errorf("bench: %s: span %s is larger than the LUN (%s)", workload, span, lunSize)
	case span < bs*Size(conns*qd):
		// Every request in flight has blocks of its own (see startLoad).
		return fmt.Errorf("bench: %s: span %s must hold a block for each request in flight (conns x qd x block size = %s)",
			workload, span, bs*Size(conns*qd))
	case network != "tcp" && network != "unix":
		return fmt.Errorf("bench: %s: network must be tcp or unix, not %q", workload, network)
	case d <= 0:
		return fmt.Errorf("bench: %s: duration must be positive", workload)
	}
	return nil
}

func (c NBDConfig) validate() error {
	if c.ReadPct < 0 || c.ReadPct > 100 {
		return fmt.Errorf("bench: nbd: read-pct must be from 0 to 100, not %d", c.ReadPct)
	}
	return validateLoad("nbd", c.LUNs, c.LUNSize, c.Span, c.Conns, c.QD, c.BlockSize, c.Network, c.Duration)
}

// RunNBD runs the nbd workload.
func RunNBD(ctx context.Context, cfg NBDConfig, p Progress) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rg, err := newNBDRig(ctx, rigConfig{LUNs: cfg.LUNs, LUNSize: int64(cfg.LUNSize), Network: cfg.Network, MaxInFlight: cfg.QD, DataDir: cfg.DataDir}, int64(cfg.Span))
	if err != nil {
		return nil, err
	}
	defer rg.Close()
	res := &Result{Workload: "nbd", Config: cfg, Params: cfg.params(), Machine: Describe(), Started: time.Now()}
	runtime.GC()
	ld, err := startLoad(ctx, rg, rg.luns, loadConfig{Conns: cfg.Conns, QD: cfg.QD, BlockSize: int64(cfg.BlockSize),
		ReadPct: cfg.ReadPct, Span: int64(cfg.Span)})
	if err != nil {
		return nil, err
	}
	stop := ticker(p, cfg.Duration, func() string { return "" })
	wait(ctx, cfg.Duration)
	stop()
	ld.stop()
	res.Elapsed = time.Since(ld.base)
	t := ld.totals()
	if err := t.failed(); err != nil {
		return nil, err
	}
	if t.reads[0].Count()+t.writes[0].Count() == 0 {
		return nil, errNoLoad
	}
	res.Series = t.series
	if cfg.ReadPct > 0 {
		res.addLatency("nbd/read", t.reads[0])
	}
	if cfg.ReadPct < 100 {
		res.addLatency("nbd/write", t.writes[0])
	}
	secs := res.Elapsed.Seconds()
	ops := float64(t.reads[0].Count() + t.writes[0].Count())
	res.addMetric("requests", ops/secs, "op/s")
	res.addMetric("throughput", float64(t.readBytes+t.writeBytes)/secs, "B/s")
	res.addMetric("read throughput", float64(t.readBytes)/secs, "B/s")
	res.addMetric("write throughput", float64(t.writeBytes)/secs, "B/s")
	res.Summary = fmt.Sprintf("%s requests, %d%% reads, %d connection(s) x QD %d over %s: %s, %s",
		cfg.BlockSize, cfg.ReadPct, cfg.Conns, cfg.QD, cfg.Network, FormatOps(ops/secs), FormatRate(float64(t.readBytes+t.writeBytes)/secs))
	res.Notes = append(res.Notes, "client and server share the machine's cores: the figures are of both")
	return res, rg.Close()
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
