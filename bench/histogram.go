package bench

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: one nanosecond to 100 seconds at three significant
// digits, so a 300 ns commit and a 10 s hold timeout land in one histogram
// with 0.1% error.
const (
	histMin     = 1
	histMax     = int64(100 * time.Second)
	histSigFigs = 3
)

// Histogram records durations in nanoseconds. It is not safe for concurrent
// use: each goroutine records into its own and Merge combines them, as
// pebble's bench/histogram.go does, rather than sharing one under a lock
// that would serialise the very I/O being measured.
type Histogram struct {
	h *hdrhistogram.Histogram
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(histMin, histMax, histSigFigs)}
}

// Record adds one duration; values outside the bounds are clamped to them.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < histMin {
		v = histMin
	}
	if v > histMax {
		v = histMax
	}
	_ = h.h.RecordValue(v) // cannot fail within the bounds
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) {
	if o != nil {
		h.h.Merge(o.h)
	}
}

// Count returns the number of values recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Quantile returns the value at quantile q in [0, 100].
func (h *Histogram) Quantile(q float64) time.Duration {
	return time.Duration(h.h.ValueAtQuantile(q))
}

// Summary returns the named summary of the histogram: count, extremes,
// the usual percentiles, the percentile curve and the distribution.
func (h *Histogram) Summary(name string) Latency {
	l := Latency{Name: name, Count: h.Count()}
	if l.Count == 0 {
		return l
	}
	l.Min = time.Duration(h.h.Min())
	l.Max = time.Duration(h.h.Max())
	l.Mean = time.Duration(math.Round(h.h.Mean()))
	l.P50 = h.Quantile(50)
	l.P90 = h.Quantile(90)
	l.P99 = h.Quantile(99)
	l.P999 = h.Quantile(99.9)
	for _, b := range h.h.CumulativeDistributionWithTicks(5) {
		l.Curve = append(l.Curve, CurvePoint{Percentile: b.Quantile, Value: time.Duration(b.ValueAt)})
		if b.Quantile >= 100 {
			break
		}
	}
	l.Buckets = logBuckets(h.h)
	return l
}

// logBuckets folds the histogram into buckets of four per power of two
// (about 19% wide), enough to draw its shape without the thousands of
// sub-buckets hdrhistogram keeps. Bucket k is [edge(k), edge(k+1)), so
// neighbours share their edge. Each edge was rounded down as a low and up
// as a high before, so neighbours missed each other by a nanosecond and
// the chart dropped to zero between every two buckets.
func logBuckets(h *hdrhistogram.Histogram) []Bucket {
	var out []Bucket
	for _, bar := range h.Distribution() {
		if bar.Count == 0 {
			continue
		}
		k := bucketOf(max(bar.From, 1))
		lo, hi := bucketEdge(k), bucketEdge(k+1)
		if n := len(out); n > 0 && out[n-1].Low == time.Duration(lo) {
			out[n-1].Count += bar.Count
			continue
		}
		out = append(out, Bucket{Low: time.Duration(lo), High: time.Duration(hi), Count: bar.Count})
	}
	return out
}

// bucketEdge is the lower edge of bucket k: 2^(k/4), rounded.
func bucketEdge(k int) int64 { return int64(math.Round(math.Pow(2, float64(k)/4))) }

// bucketOf is the bucket of v: the last k whose edge is at most v, and
// whose next edge is above it (small edges repeat after rounding).
func bucketOf(v int64) int {
	k := int(math.Floor(math.Log2(float64(v)) * 4))
	for bucketEdge(k) > v {
		k--
	}
	for bucketEdge(k+1) <= v {
		k++
	}
	return k
}

// Latency is the summary of one histogram, as reports and JSON carry it.
// Durations are in nanoseconds in JSON.
type Latency struct {
	Name  string        `json:"name"`
	Count int64         `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
	// Curve is the percentile curve, more points towards the tail.
	Curve []CurvePoint `json:"curve,omitempty"`
	// Buckets is the distribution in buckets four to a power of two.
	Buckets []Bucket `json:"buckets,omitempty"`
}

// CurvePoint is one point of a percentile curve.
type CurvePoint struct {
	Percentile float64       `json:"percentile"`
	Value      time.Duration `json:"value_ns"`
}

// Bucket counts the values in [Low, High).
type Bucket struct {
	Low   time.Duration `json:"low_ns"`
	High  time.Duration `json:"high_ns"`
	Count int64         `json:"count"`
}
