package lun

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms record microseconds from 1 µs to 100 s with two
// significant digits: about 50 KiB per operation, created on first use.
const (
	histMin    = 1
	histMax    = 100_000_000
	histDigits = 2
)

// opStats is one operation's counters and histogram. mu guards all of it:
// hdrhistogram is not safe for concurrent use, and one short critical
// section per I/O costs less than the timing around it.
type opStats struct {
	mu     sync.Mutex
	ops    int64
	bytes  int64
	errors int64
	hist   *hdrhistogram.Histogram
}

// Stats counts a LUN's operations, bytes, errors and latencies per
// operation.
type Stats struct {
	ops [numOps]opStats
}

func (s *Stats) record(op Op, n int, d time.Duration, err error) {
	o := &s.ops[op]
	o.mu.Lock()
	o.ops++
	if err != nil {
		o.errors++
	} else {
		o.bytes += int64(n)
	}
	if o.hist == nil {
		o.hist = hdrhistogram.New(histMin, histMax, histDigits)
	}
	_ = o.hist.RecordValue(max(histMin, min(d.Microseconds(), histMax)))
	o.mu.Unlock()
}

// OpStats is a copy of one operation's statistics.
type OpStats struct {
	Op     Op
	Ops    int64
	Bytes  int64
	Errors int64
	// Latency is a copy of the histogram in microseconds, nil before the
	// first operation.
	Latency *hdrhistogram.Histogram
}

// Snapshot returns a copy of the statistics of every operation.
func (s *Stats) Snapshot() []OpStats {
	out := make([]OpStats, numOps)
	for i := range s.ops {
		o := &s.ops[i]
		o.mu.Lock()
		out[i] = OpStats{Op: Op(i), Ops: o.ops, Bytes: o.bytes, Errors: o.errors}
		if o.hist != nil {
			out[i].Latency = hdrhistogram.Import(o.hist.Export())
		}
		o.mu.Unlock()
	}
	return out
}
