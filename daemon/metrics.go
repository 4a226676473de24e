package daemon

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// durationBuckets are the buckets of the windows and whole sets, in
// seconds: 10 µs to 60 s, about three per decade, up to a writer's 60 s
// freeze window.
var durationBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10, 30, 60,
}

// fastBuckets are the buckets of what takes microseconds: a LUN's
// operations, the NBD server's requests, the steps of a set, provider
// calls and the commit's pointer swaps. They are durationBuckets from
// 100 ns: an operation on an in-memory LUN takes about a microsecond, a
// commit's pointer swaps one to a few, so buckets from 10 µs, as before,
// put nearly all of them in the first bucket. They are
// nbd.RequestLatencyBounds, in seconds.
var fastBuckets = func() []float64 {
	out := make([]float64, len(nbd.RequestLatencyBounds))
	for i, b := range nbd.RequestLatencyBounds {
		out[i] = b.Seconds()
	}
	return out
}()

// metrics is the daemon's Prometheus registry. Two kinds of metric live
// in it. What the array and the providers already measure (per-LUN
// operations and their latency histograms, commit durations, the store)
// is read at scrape time by a collector, so the I/O path carries no
// instrumentation of its own (D5). What only a finished set tells (phase
// durations, the hold and freeze windows, writer outcomes) is observed
// once per set, from its timeline, when the daemon's requester is done
// with it.
type metrics struct {
	reg *prometheus.Registry

	setDuration  *prometheus.HistogramVec
	phase        *prometheus.HistogramVec
	hold         prometheus.Histogram
	freeze       *prometheus.HistogramVec
	providerCall *prometheus.HistogramVec
	writerEvents *prometheus.CounterVec
	// sets counts the sets that ended, by outcome, as they end: counting
	// the service's history at scrape time would go backwards once it
	// forgets a set. results counts them by DoSnapshotSet's result code.
	sets, results *prometheus.CounterVec
	// writerStates are the states the writers ended the last set with
	// writers in, each state counted.
	writerStates *prometheus.GaugeVec
}

// setOutcomes are the states a set ends in.
var setOutcomes = []string{"created", "failed", "cancelled", "abandoned"}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	hist := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, labels)
	}
	fast := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: fastBuckets}, labels)
	}
	m.setDuration = hist("shadowbench_snapshot_set_duration_seconds",
		"Time from AddToSnapshotSet to BackupComplete or AbortBackup of the sets the daemon ran, by outcome.", "outcome")
	m.phase = fast("shadowbench_snapshot_phase_duration_seconds",
		"Duration of each step of DoSnapshotSet (vss-spec.md A.7), from the sets' timelines.", "phase")
	m.hold = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shadowbench_hold_window_seconds",
		Help: "How long writes were held (flush & hold to release) per set.", Buckets: durationBuckets})
	m.freeze = hist("shadowbench_writer_freeze_window_seconds",
		"Each writer's freeze window, from its OnFreeze to the end of PostCommitSnapshots.", "writer")
	m.providerCall = fast("shadowbench_provider_call_duration_seconds",
		"Duration of each provider call the coordinator made during a set.", "provider", "method")
	m.writerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowbench_writer_events_total",
		Help: "Writer events delivered during sets, by writer, event and result (true, false, timeout, panic)."},
		[]string{"writer", "event", "result"})
	m.sets = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowbench_snapshot_sets_total",
		Help: "Snapshot sets that ended, by outcome: created, failed, cancelled, abandoned."}, []string{"outcome"})
	m.results = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowbench_snapshot_set_results_total",
		Help: "Snapshot sets that ended, by the result code of the set (S_OK, VSS_E_WRITERERROR_RETRYABLE, ...)."}, []string{"result"})
	m.writerStates = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowbench_writers_by_state",
		Help: "Writers in each VSS_WRITER_STATE at the end of the last set that had writers, as GatherWriterStatus reported them."},
		[]string{"state"})
	for _, o := range setOutcomes {
		m.sets.WithLabelValues(o) // every outcome is exported from the start, at 0
	}
	m.results.WithLabelValues(vss.S_OK.Name())
	for s := vss.VSS_WS_UNKNOWN; s < vss.VSS_WS_COUNT; s++ {
		m.writerStates.WithLabelValues(s.String())
	}
	m.reg.MustRegister(m.setDuration, m.phase, m.hold, m.freeze, m.providerCall, m.writerEvents, m.sets, m.results,
		m.writerStates, newCollector(d),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// observeSet records a finished set: its outcome and its timeline.
// createSet calls it once per set, when the set has ended. It used to
// keep every set's ID to make sure of that, which cost memory for each
// set ever run.
func (m *metrics) observeSet(d *Daemon, id vss.ID) {
	info, ok := d.svc.Set(id)
	if !ok {
		return
	}
	if slices.Contains(setOutcomes, info.State) {
		m.sets.WithLabelValues(info.State).Inc()
		m.results.WithLabelValues(info.Result.Name()).Inc()
	}
	d.mu.Lock()
	var dur time.Duration
	var writers []WriterStatusReport
	rec := d.mu.sets[id]
	if rec != nil {
		dur, writers = rec.duration, rec.writers
	}
	d.mu.Unlock()
	if len(writers) > 0 {
		counts := map[string]int{}
		for _, w := range writers {
			counts[w.State]++
		}
		for s := vss.VSS_WS_UNKNOWN; s < vss.VSS_WS_COUNT; s++ {
			m.writerStates.WithLabelValues(s.String()).Set(float64(counts[s.String()]))
		}
	}
	if info.Timeline == nil {
		return
	}
	if rec != nil {
		m.setDuration.WithLabelValues(info.State).Observe(dur.Seconds())
	}
	for _, s := range info.Timeline.Spans() {
		sec := s.Duration().Seconds()
		switch {
		case s.Kind == coordinator.KindPhase:
			m.phase.WithLabelValues(s.Name).Observe(sec)
		case s.Kind == coordinator.KindWindow && s.Name == "hold":
			m.hold.Observe(sec)
		case s.Kind == coordinator.KindWindow && s.Name == "freeze-window":
			m.freeze.WithLabelValues(s.Actor).Observe(sec)
		case s.Kind == coordinator.KindProvider:
			m.providerCall.WithLabelValues(s.Actor, s.Name).Observe(sec)
		case s.Kind == coordinator.KindWriter:
			m.writerEvents.WithLabelValues(s.Actor, s.Name, s.Result).Inc()
		}
	}
}

// collector reads the array's, the providers' and the service's own
// measures at scrape time.
type collector struct {
	d *Daemon

	lunOps, lunBytes, lunErrors, lunLatency, lunSize *prometheus.Desc
	cacheWrites, cacheBytes, cacheMaxBytes           *prometheus.Desc
	crashPoints, maxCrashPoints                      *prometheus.Desc
	storeData, storeMeta, storeCapacity              *prometheus.Desc
	setsInProgress, snapshots, held                  *prometheus.Desc
	commit                                           *prometheus.Desc
	writers, build, start                            *prometheus.Desc
	apiConns, apiRefused                             *prometheus.Desc
	nbdOpen, nbdAccepted, nbdRefused, nbdMaxConns    *prometheus.Desc
	nbdInFlight, nbdMaxInFlight, nbdInFlightWaits    *prometheus.Desc
	nbdRequestsInFlight, nbdProtocolErrors           *prometheus.Desc
	nbdRequests, nbdRequestErrors, nbdRequestBytes   *prometheus.Desc
	nbdRequestDuration                               *prometheus.Desc
}

func newCollector(d *Daemon) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{d: d,
		lunOps:         desc("shadowbench_lun_ops_total", "Operations per LUN and kind of operation.", "lun", "op"),
		lunBytes:       desc("shadowbench_lun_bytes_total", "Bytes moved by successful operations per LUN and operation.", "lun", "op"),
		lunErrors:      desc("shadowbench_lun_errors_total", "Failed operations per LUN and operation, injected faults included.", "lun", "op"),
		lunLatency:     desc("shadowbench_lun_latency_seconds", "Operation latency per LUN and operation, from the LUN's HDR histogram; the sum is exact.", "lun", "op"),
		lunSize:        desc("shadowbench_lun_size_bytes", "Size of each LUN.", "lun", "kind"),
		cacheWrites:    desc("shadowbench_lun_cache_writes", "Writes, trims and zeroes an emulated write cache logged since its last durable point, per LUN.", "lun", "mode"),
		cacheBytes:     desc("shadowbench_lun_cache_bytes", "Bytes an emulated write cache's log holds since its last durable point, per LUN.", "lun", "mode"),
		cacheMaxBytes:  desc("shadowbench_lun_cache_max_bytes", "The cache size: past it, an emulated write cache destages everything.", "lun", "mode"),
		crashPoints:    desc("shadowbench_lun_crash_points", "Crash points (FLUSHes and marks) a LUN keeps.", "lun"),
		maxCrashPoints: desc("shadowbench_lun_max_crash_points", "The crash points a LUN keeps at most: past it, the oldest is dropped.", "lun"),
		storeData:      desc("shadowbench_store_data_bytes", "Data blocks allocated in the array's copy-on-write store."),
		storeMeta:      desc("shadowbench_store_meta_bytes", "Block-map nodes alive in the array's store."),
		storeCapacity:  desc("shadowbench_store_capacity_bytes", "The array's capacity; 0 for no limit."),
		setsInProgress: desc("shadowbench_snapshot_sets_in_progress", "Snapshot sets being created."),
		snapshots:      desc("shadowbench_snapshots", "Snapshots the coordinator holds."),
		held:           desc("shadowbench_held_sets", "Auto-release sets whose requester the daemon holds open."),
		commit:         desc("shadowbench_provider_commit_duration_seconds", "CommitSnapshots' pointer swaps per set, without the firmware profile's block, per provider.", "provider"),
		writers:        desc("shadowbench_writers", "Writers the daemon knows, by kind.", "kind"),
		build:          desc("shadowbench_build_info", "The daemon's version.", "version"),
		start:          desc("shadowbench_start_time_seconds", "When the daemon started, in seconds since the epoch."),
		apiConns:       desc("shadowbench_api_connections", "Open connections of each API listener.", "listener"),
		apiRefused:     desc("shadowbench_api_connections_refused_total", "Connections each API listener refused past api.max-connections.", "listener"),
		nbdOpen:        desc("shadowbench_nbd_connections", "NBD connections served now."),
		nbdAccepted:    desc("shadowbench_nbd_connections_accepted_total", "NBD connections accepted and served."),
		nbdRefused:     desc("shadowbench_nbd_connections_refused_total", "NBD connections closed at once because max-connections were open."),
		nbdMaxConns:    desc("shadowbench_nbd_max_connections", "The cap on NBD connections served at once."),
		nbdInFlight:    desc("shadowbench_nbd_in_flight_bytes", "Payload memory the NBD server holds: READ replies not yet sent, WRITE payloads not yet written."),
		nbdMaxInFlight: desc("shadowbench_nbd_max_in_flight_bytes", "The cap on shadowbench_nbd_in_flight_bytes (max-in-flight-bytes)."),
		nbdInFlightWaits: desc("shadowbench_nbd_in_flight_waits_total",
			"NBD requests that waited for payload memory, their connection's share or the server's."),
		nbdRequestsInFlight: desc("shadowbench_nbd_requests_in_flight", "NBD requests read and not yet answered, over every connection."),
		nbdProtocolErrors: desc("shadowbench_nbd_protocol_errors_total",
			"NBD connections closed on a protocol violation: bad magic, unknown client flags, an option or a WRITE too large to skip."),
		nbdRequests:      desc("shadowbench_nbd_requests_total", "NBD requests answered, by command.", "cmd"),
		nbdRequestErrors: desc("shadowbench_nbd_request_errors_total", "NBD requests answered with an error, by command.", "cmd"),
		nbdRequestBytes: desc("shadowbench_nbd_request_bytes_total",
			"Length of the NBD requests answered without error, by command: the data of READ and WRITE, the range of TRIM, WRITE_ZEROES and CACHE.", "cmd"),
		nbdRequestDuration: desc("shadowbench_nbd_request_duration_seconds",
			"NBD request latency by command, from its header read to its reply written; the sum is exact.", "cmd"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lunOps, c.lunBytes, c.lunErrors, c.lunLatency, c.lunSize,
		c.cacheWrites, c.cacheBytes, c.cacheMaxBytes, c.crashPoints, c.maxCrashPoints,
		c.storeData, c.storeMeta, c.storeCapacity, c.setsInProgress, c.snapshots, c.held,
		c.commit, c.writers, c.build, c.start, c.apiConns, c.apiRefused, c.nbdOpen, c.nbdAccepted,
		c.nbdRefused, c.nbdMaxConns, c.nbdInFlight, c.nbdMaxInFlight, c.nbdInFlightWaits,
		c.nbdRequestsInFlight, c.nbdProtocolErrors, c.nbdRequests, c.nbdRequestErrors, c.nbdRequestBytes,
		c.nbdRequestDuration} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	for _, l := range d.array.List() {
		name := l.Name()
		gauge(c.lunSize, float64(l.Size()), name, l.Kind().String())
		if u, ok := l.CacheUse(); ok {
			mode := u.Mode.String()
			gauge(c.cacheWrites, float64(u.Pending), name, mode)
			gauge(c.cacheBytes, float64(u.Bytes), name, mode)
			gauge(c.cacheMaxBytes, float64(u.MaxBytes), name, mode)
			gauge(c.crashPoints, float64(u.Points), name)
			gauge(c.maxCrashPoints, float64(u.MaxPoints), name)
		}
		for _, s := range l.Stats() {
			op := s.Op.String()
			counter(c.lunOps, float64(s.Ops), name, op)
			counter(c.lunBytes, float64(s.Bytes), name, op)
			counter(c.lunErrors, float64(s.Errors), name, op)
			if s.Latency != nil {
				ch <- constHistogram(c.lunLatency, s.Latency, fastBuckets, s.LatencySum, name, op)
			}
		}
	}
	ss := d.array.StoreStats()
	gauge(c.storeData, float64(ss.DataBytes))
	gauge(c.storeMeta, float64(ss.MetaBytes))
	gauge(c.storeCapacity, float64(ss.CapacityBytes))

	inProgress := 0
	for _, s := range d.svc.Sets() {
		if !slices.Contains(setOutcomes, s.State) {
			inProgress++
		}
	}
	gauge(c.setsInProgress, float64(inProgress))
	gauge(c.snapshots, float64(len(d.svc.Query())))
	d.mu.Lock()
	gauge(c.held, float64(len(d.mu.sessions)))
	d.mu.Unlock()

	for _, p := range d.provs {
		h, sum := p.prov.CommitHistogramSum()
		ch <- constHistogram(c.commit, h, fastBuckets, sum, p.reg.Name)
	}
	kinds := map[string]int{"scripted": 0, "exec": 0, "fsfreeze": 0, "remote": 0}
	for _, w := range d.writers() {
		kinds[w.Kind]++
	}
	for k, n := range kinds {
		gauge(c.writers, float64(n), k)
	}
	urls := d.APIURLs()
	for i, l := range d.apiLs {
		cl := l.(*capListener)
		gauge(c.apiConns, float64(cl.open.Load()), urls[i])
		counter(c.apiRefused, float64(cl.refused.Load()), urls[i])
	}
	ns := d.nbd.Stats()
	gauge(c.nbdOpen, float64(ns.Open))
	counter(c.nbdAccepted, float64(ns.Accepted))
	counter(c.nbdRefused, float64(ns.Refused))
	gauge(c.nbdMaxConns, float64(ns.MaxConnections))
	gauge(c.nbdInFlight, float64(ns.InFlightBytes))
	gauge(c.nbdMaxInFlight, float64(ns.MaxInFlightBytes))
	counter(c.nbdInFlightWaits, float64(ns.InFlightWaits))
	gauge(c.nbdRequestsInFlight, float64(ns.InFlightRequests))
	counter(c.nbdProtocolErrors, float64(ns.ProtocolErrors))
	for _, cs := range ns.Commands {
		counter(c.nbdRequests, float64(cs.Requests), cs.Command)
		counter(c.nbdRequestErrors, float64(cs.Errors), cs.Command)
		counter(c.nbdRequestBytes, float64(cs.Bytes), cs.Command)
		buckets := make(map[float64]uint64, len(fastBuckets))
		var cum uint64
		for i, b := range fastBuckets {
			cum += cs.Latency[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.nbdRequestDuration, cs.Requests, cs.LatencySum.Seconds(), buckets, cs.Command)
	}
	gauge(c.build, 1, d.version)
	gauge(c.start, float64(d.started.UnixNano())/1e9)
}

// constHistogram turns an HDR histogram of nanoseconds into a Prometheus
// histogram over bounds, in seconds, with the exact sum its owner kept.
// HDR keeps no exact sum; the mean times the count, used before, made
// the sum up from the rounded values.
func constHistogram(desc *prometheus.Desc, h *hdrhistogram.Histogram, bounds []float64, sum time.Duration, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	bars := h.Distribution()
	i := 0
	for _, b := range bounds {
		ns := int64(math.Round(b * 1e9)) // compared in integers: 100*1e-9 > 100e-9
		for ; i < len(bars) && bars[i].To <= ns; i++ {
			cum += uint64(bars[i].Count)
		}
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(desc, uint64(h.TotalCount()), sum.Seconds(), buckets, labels...)
}
