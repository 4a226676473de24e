package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/lun"
)

// FirstWriteConfig configures the first-write workload: the cost of the
// copy-on-write that the first write to a grain after a snapshot pays,
// against a steady write to a grain already copied, for each grain and
// write size. Writes go to a LUN directly (gate, statistics, cow), without
// the network.
type FirstWriteConfig struct {
	Grains Sizes `json:"grains"`
	Sizes  Sizes `json:"sizes"`
	// Span is how much of the LUN is written before each snapshot and
	// then written again.
	Span Size `json:"span"`
	// Duration is how long each grain and size pair runs.
	Duration time.Duration `json:"duration_ns"`
}

// DefaultFirstWriteConfig is grains of 4, 16 and 64 KiB, writes of 512 B,
// 4 KiB and 64 KiB, over 64 MiB, 1 s per pair.
func DefaultFirstWriteConfig() FirstWriteConfig {
	return FirstWriteConfig{Grains: Sizes{4 << 10, 16 << 10, 64 << 10}, Sizes: Sizes{512, 4 << 10, 64 << 10},
		Span: 64 << 20, Duration: time.Second}
}

func (c FirstWriteConfig) params() []Param {
	return []Param{{"grains", c.Grains.String()}, {"write sizes", c.Sizes.String()}, {"span", c.Span.String()},
		{"duration per pair", c.Duration.String()}}
}

func (c FirstWriteConfig) validate() error {
	if len(c.Grains) == 0 || len(c.Sizes) == 0 {
		return fmt.Errorf("bench: first-write: give at least one grain and one size")
	}
	for _, g := range c.Grains {
		if g < 512 || g > 64<<10 || g&(g-1) != 0 {
			return fmt.Errorf("bench: first-write: grain %s: want a power of two from 512 B to 64 KiB", g)
		}
	}
	for _, s := range c.Sizes {
		if s < 512 || s > 4<<20 || s%512 != 0 {
			return fmt.Errorf("bench: first-write: size %s: want a multiple of 512 B up to 4 MiB", s)
		}
	}
	for _, g := range c.Grains {
		for _, s := range c.Sizes {
			if c.Span < max(g, s) {
				return fmt.Errorf("bench: first-write: span %s is smaller than a write of %s in grains of %s", c.Span, s, g)
			}
		}
	}
	if c.Duration <= 0 {
		return fmt.Errorf("bench: first-write: duration must be positive")
	}
	return nil
}

// RunFirstWrite runs the first-write workload.
func RunFirstWrite(ctx context.Context, cfg FirstWriteConfig, p Progress) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	res := &Result{Workload: "first-write", Config: cfg, Params: cfg.params(), Machine: Describe(), Started: time.Now()}
	total := time.Duration(len(cfg.Grains)*len(cfg.Sizes)) * cfg.Duration
	var done time.Duration
	var summary []string
	for _, g := range cfg.Grains {
		for _, s := range cfg.Sizes {
			first, steady, err := firstWriteCase(ctx, cfg, int(g), int64(s), subProgress(p, done, cfg.Duration, total))
			if err != nil {
				return nil, err
			}
			done += cfg.Duration
			name := fmt.Sprintf("grain=%s size=%s", compact(g), compact(s))
			res.addLatency(name+"/first", first)
			res.addLatency(name+"/steady", steady)
			r := float64(first.Quantile(50)) / float64(max(steady.Quantile(50), 1))
			res.addMetric(name+" first/steady p50", r, "x")
			summary = append(summary, fmt.Sprintf("%s: %s vs %s", name, FormatDuration(first.Quantile(50)), FormatDuration(steady.Quantile(50))))
		}
	}
	res.Elapsed = time.Since(res.Started)
	res.Summary = "first write after a snapshot vs steady, p50: " + strings.Join(summary, "; ")
	res.Notes = append(res.Notes,
		"first: the first write to its grains after a snapshot, which copies each grain it only partly covers",
		"steady: the same write again, to grains the live volume already owns")
	return res, nil
}

// compact prints a size without spaces ("4KiB") for latency names.
func compact(s Size) string { return strings.ReplaceAll(s.String(), " ", "") }

// firstWriteCase writes the span, takes a snapshot, and times one write at
// each of the span's write slots in random order (first writes), then the
// same again (steady writes); then deletes the snapshot and starts over.
// Slots are max(grain, size) apart, so every first write meets grains no
// other write has copied.
func firstWriteCase(ctx context.Context, cfg FirstWriteConfig, grain int, size int64, p Progress) (first, steady *Histogram, err error) {
	a, err := lun.NewArray(lun.Config{Grain: grain})
	if err != nil {
		return nil, nil, err
	}
	l, err := a.Create("lun0", lun.Options{Size: int64(cfg.Span), BlockSize: 512})
	if err != nil {
		return nil, nil, err
	}
	defer a.Delete("lun0")
	fill := make([]byte, 1<<20)
	for off := int64(0); off < int64(cfg.Span); off += int64(len(fill)) {
		if err := l.WriteAt(ctx, fill[:min(int64(len(fill)), int64(cfg.Span)-off)], off, false); err != nil {
			return nil, nil, err
		}
	}
	stride := max(int64(grain), size)
	slots := make([]int64, int64(cfg.Span)/stride)
	for i := range slots {
		slots[i] = int64(i) * stride
	}
	r := rand.New(rand.NewPCG(uint64(grain), uint64(size)))
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	first, steady = NewHistogram(), NewHistogram()
	runtime.GC()
	start := time.Now()
	stop := ticker(p, cfg.Duration, func() string { return fmt.Sprintf("grain %s, size %s", Size(grain), Size(size)) })
	defer stop()
	for round := 0; time.Since(start) < cfg.Duration && ctx.Err() == nil; round++ {
		snap, err := a.Snapshot("lun0", fmt.Sprintf("snap%d", round))
		if err != nil {
			return nil, nil, err
		}
		r.Shuffle(len(slots), func(i, j int) { slots[i], slots[j] = slots[j], slots[i] })
		for _, h := range []*Histogram{first, steady} {
			for _, off := range slots {
				t0 := time.Now()
				if err := l.WriteAt(ctx, buf, off, false); err != nil {
					return nil, nil, err
				}
				h.Record(time.Since(t0))
			}
		}
		if err := a.Delete(snap.Name()); err != nil {
			return nil, nil, err
		}
	}
	return first, steady, nil
}
