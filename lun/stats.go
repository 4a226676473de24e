package lun

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms record nanoseconds from 1 ns to 100 s with two
// significant digits: about 30 KiB per operation, created on first use.
// They were in microseconds from 1 µs, but an operation on an in-memory
// LUN takes about a microsecond, so half of them landed in the first
// bucket and metrics could not tell 200 ns from 900 ns.
const (
	histMin    = 1
	histMax    = int64(100 * time.Second)
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
	// sum is the exact total of the latencies recorded, which the
	// histogram cannot give (it keeps values rounded to its buckets).
	sum  time.Duration
	hist *hdrhistogram.Histogram
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
	o.sum += d
	_ = o.hist.RecordValue(max(histMin, min(int64(d), histMax)))
	o.mu.Unlock()
}

// OpStats is a copy of one operation's statistics.
type OpStats struct {
	Op     Op
	Ops    int64
	Bytes  int64
	Errors int64
	// Latency is a copy of the histogram in nanoseconds, nil before the
	// first operation.
	Latency *hdrhistogram.Histogram
	// LatencySum is the exact sum of every operation's latency.
	LatencySum time.Duration
}

// Snapshot returns a copy of the statistics of every operation.
func (s *Stats) Snapshot() []OpStats {
	out := make([]OpStats, numOps)
	for i := range s.ops {
		o := &s.ops[i]
		o.mu.Lock()
		out[i] = OpStats{Op: Op(i), Ops: o.ops, Bytes: o.bytes, Errors: o.errors, LatencySum: o.sum}
		if o.hist != nil {
			out[i].Latency = hdrhistogram.Import(o.hist.Export())
		}
		o.mu.Unlock()
	}
	return out
}
