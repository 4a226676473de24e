package bench

import (
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
)

// SeriesInterval is the width of one point of a time series: fio's
// log_avg_msec and Grafana users' 100 ms, fine enough to see what a
// snapshot costs the I/O around it.
const SeriesInterval = 100 * time.Millisecond

// TimeSeries is a load's throughput and latency over time, one point per
// SeriesInterval since the load began, with the snapshot sets taken
// meanwhile marked on the same clock.
type TimeSeries struct {
	Interval time.Duration `json:"interval_ns"`
	// End is when the load stopped, so that the last point, cut short,
	// is read over its own length; 0 when not known.
	End    time.Duration `json:"end_ns,omitempty"`
	Points []SeriesPoint `json:"points"`
	// Snapshots are the sets taken under the load, in order.
	Snapshots []SnapshotMark `json:"snapshots,omitempty"`
}

// SeriesPoint is one interval: the requests that completed in it, their
// bytes, and their latency percentiles (within 19%, the width of the
// buckets they are counted in) and maximum.
type SeriesPoint struct {
	Start      time.Duration `json:"start_ns"`
	Reads      int64         `json:"reads"`
	Writes     int64         `json:"writes"`
	ReadBytes  int64         `json:"read_bytes"`
	WriteBytes int64         `json:"write_bytes"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
}

// SnapshotMark is one snapshot set on a time series' clock: when its
// hold window opened (FlushAndHold began) and closed, and when
// CommitSnapshots, the instant the snapshot is taken, began.
type SnapshotMark struct {
	HoldStart time.Duration `json:"hold_start_ns"`
	Commit    time.Duration `json:"commit_ns"`
	HoldEnd   time.Duration `json:"hold_end_ns"`
}

// Ops returns the requests that completed in the interval.
func (p SeriesPoint) Ops() int64 { return p.Reads + p.Writes }

// width is the length of the interval that starts at start: Interval, or
// less for the last one, which the end of the load cut short.
func (ts *TimeSeries) width(start time.Duration) time.Duration {
	iv := max(ts.Interval, time.Millisecond)
	if ts.End > start && ts.End-start < iv {
		return ts.End - start
	}
	return iv
}

// seriesBuckets are the latency buckets of one point: bucketOf's, up to
// 2^37 ns (137 s), past the longest latency a histogram keeps.
const seriesBuckets = 37 * 4

// maxSeriesPoints bounds a worker's points: 10 minutes of 100 ms, at
// most 3.6 MB a worker; a longer run's series covers its first 10 minutes.
const maxSeriesPoints = 6000

// seriesPoint is a worker's own record of one interval.
type seriesPoint struct {
	reads, writes, readBytes, writeBytes int64
	max                                  time.Duration
	lat                                  *[seriesBuckets]uint32
}

// seriesRecorder is one worker's time series, unshared, as its
// histograms are.
type seriesRecorder struct{ pts []seriesPoint }

// record counts a request that completed at since the load began.
func (r *seriesRecorder) record(at, lat time.Duration, bytes int64, read bool) {
	i := int(at / SeriesInterval)
	if i < 0 || i >= maxSeriesPoints {
		return
	}
	for len(r.pts) <= i {
		r.pts = append(r.pts, seriesPoint{})
	}
	p := &r.pts[i]
	if read {
		p.reads++
		p.readBytes += bytes
	} else {
		p.writes++
		p.writeBytes += bytes
	}
	p.max = max(p.max, lat)
	if p.lat == nil {
		p.lat = new([seriesBuckets]uint32)
	}
	p.lat[min(max(bucketOf(max(int64(lat), 1)), 0), seriesBuckets-1)]++
}

// mergeSeries adds the workers' records into one time series.
func mergeSeries(rs []*seriesRecorder) *TimeSeries {
	n := 0
	for _, r := range rs {
		n = max(n, len(r.pts))
	}
	ts := &TimeSeries{Interval: SeriesInterval, Points: make([]SeriesPoint, n)}
	for i := range ts.Points {
		var sum seriesPoint
		var lat [seriesBuckets]uint64
		for _, r := range rs {
			if i >= len(r.pts) {
				continue
			}
			p := r.pts[i]
			sum.reads += p.reads
			sum.writes += p.writes
			sum.readBytes += p.readBytes
			sum.writeBytes += p.writeBytes
			sum.max = max(sum.max, p.max)
			if p.lat != nil {
				for k, c := range p.lat {
					lat[k] += uint64(c)
				}
			}
		}
		pt := SeriesPoint{Start: time.Duration(i) * SeriesInterval, Reads: sum.reads, Writes: sum.writes,
			ReadBytes: sum.readBytes, WriteBytes: sum.writeBytes, Max: sum.max}
		if n := sum.reads + sum.writes; n > 0 {
			pt.P50 = min(bucketQuantile(&lat, n, 0.50), sum.max)
			pt.P99 = min(bucketQuantile(&lat, n, 0.99), sum.max)
		}
		ts.Points[i] = pt
	}
	return ts
}

// bucketQuantile is the upper edge of the bucket that holds quantile q of
// n values.
func bucketQuantile(lat *[seriesBuckets]uint64, n int64, q float64) time.Duration {
	rank := uint64(q*float64(n-1)) + 1
	var cum uint64
	for k, c := range lat {
		cum += c
		if cum >= rank {
			return time.Duration(bucketEdge(k + 1))
		}
	}
	return time.Duration(bucketEdge(seriesBuckets))
}

// markSnapshots marks the sets on the series' clock: origin is when the
// load began.
func (ts *TimeSeries) markSnapshots(origin time.Time, sets []setSample) {
	for _, s := range sets {
		if m, ok := snapshotMark(s.tl, s.tl.Origin().Sub(origin)); ok {
			ts.Snapshots = append(ts.Snapshots, m)
		}
	}
}

// snapshotMark is a set's mark, its timeline's zero being off on the
// series' clock; false for a set that did not reach CommitSnapshots.
func snapshotMark(tl *coordinator.Timeline, off time.Duration) (SnapshotMark, bool) {
	m := SnapshotMark{HoldStart: -1, Commit: -1, HoldEnd: -1}
	for _, sp := range tl.Spans() {
		if sp.Kind != coordinator.KindPhase {
			continue
		}
		switch sp.Name {
		case "FlushAndHold":
			m.HoldStart = off + sp.Start
		case "CommitSnapshots":
			m.Commit = off + sp.Start
		case "ReleaseWrites":
			m.HoldEnd = off + sp.End
		}
	}
	if m.Commit < 0 {
		return m, false
	}
	if m.HoldStart < 0 {
		m.HoldStart = m.Commit
	}
	if m.HoldEnd < 0 {
		m.HoldEnd = m.Commit
	}
	return m, true
}
