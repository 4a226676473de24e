package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowbench/shadowbench/nbd"
)

// loadConfig is NBD load: Conns connections spread over the LUNs, each
// with QD requests in flight (one goroutine per request slot), of
// BlockSize bytes at random aligned offsets within the first Span bytes of
// the LUN, ReadPct percent of them reads.
type loadConfig struct {
	Conns     int
	QD        int
	BlockSize int64
	ReadPct   int
	Span      int64
	// Phases is the number of phases the histograms are kept apart by
	// (at least 1); the phase is read when a request starts.
	Phases int
	// Samples keeps every write's start and latency in the phases it
	// lists, for analysis against the timelines afterwards.
	Samples map[int]bool
	// Rate, when positive, paces the load open-loop at that many requests
	// a second in all: each worker starts its requests on a fixed
	// schedule, and a request's latency runs from its scheduled start, so
	// a stall shows in full instead of slowing the load down (coordinated
	// omission). Zero runs closed-loop, each worker as fast as it can,
	// which saturates the cores of a machine that runs the clients too.
	Rate float64
}

// sample is one write: its start since the load began, and its latency.
type sample struct{ start, lat time.Duration }

// maxSamples bounds the samples each worker keeps (16 bytes each).
const maxSamples = 1 << 20

// load runs NBD requests until stopped.
type load struct {
	cfg     loadConfig
	clients []*nbd.Client
	base    time.Time
	phase   atomic.Int32
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	workers []*worker
	// stopped is when stop ended the load, since base.
	stopped time.Duration
}

type worker struct {
	reads, writes []*Histogram // by phase
	bytes         [2]int64     // read, written
	errs          int64
	firstErr      error
	samples       []sample
	dropped       int64
	series        seriesRecorder
}

// startLoad dials the connections and starts the workers. exports are the
// LUNs, taken round robin.
func startLoad(ctx context.Context, rg *rig, exports []string, cfg loadConfig) (*load, error) {
	if cfg.Phases < 1 {
		cfg.Phases = 1
	}
	l := &load{cfg: cfg}
	for i := range cfg.Conns {
		c, err := rg.dial(ctx, exports[i%len(exports)], cfg.QD)
		if err != nil {
			l.closeClients()
			return nil, fmt.Errorf("bench: NBD connection %d: %w", i, err)
		}
		l.clients = append(l.clients, c)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	l.base = time.Now()
	// Each worker owns every nth block of the span, n the number of
	// workers: no two requests in flight touch the same bytes. cow lets
	// reads race writes of the same grain, as a disk does, and the race
	// detector would flag that; real clients do not do it on purpose.
	n := uint64(cfg.Conns * cfg.QD)
	blocks := uint64(max(cfg.Span/cfg.BlockSize, 1))
	for ci, c := range l.clients {
		for q := range cfg.QD {
			idx := uint64(ci*cfg.QD + q)
			w := &worker{}
			for range cfg.Phases {
				w.reads = append(w.reads, NewHistogram())
				w.writes = append(w.writes, NewHistogram())
			}
			l.workers = append(l.workers, w)
			seed := uint64(ci)<<32 | uint64(q)
			l.wg.Go(func() { l.work(wctx, c, w, seed, idx, n, blocks) })
		}
	}
	return l, nil
}

func (l *load) work(ctx context.Context, c *nbd.Client, w *worker, seed, idx, n, blocks uint64) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	buf := make([]byte, l.cfg.BlockSize)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	var interval time.Duration
	next := time.Now()
	if l.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(n) / l.cfg.Rate)
		next = next.Add(time.Duration(r.Int64N(int64(interval) + 1))) // spread the workers' phases
	}
	for ctx.Err() == nil {
		off := int64(idx+n*r.Uint64N(max(blocks/n, 1))) * l.cfg.BlockSize
		read := r.IntN(100) < l.cfg.ReadPct
		start := time.Now()
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			start = next
			next = next.Add(interval)
		}
		ph := int(l.phase.Load())
		var err error
		if read {
			err = c.Read(ctx, buf, off)
		} else {
			err = c.Write(ctx, buf, off, 0)
		}
		lat := time.Since(start)
		if err == nil {
			w.series.record(time.Since(l.base), lat, l.cfg.BlockSize, read)
		}
		if err != nil {
			if ctx.Err() != nil {
				return // stopped while in flight: not a sample
			}
			w.errs++
			if w.firstErr == nil {
				w.firstErr = err
			}
			continue
		}
		if read {
			w.reads[ph].Record(lat)
			w.bytes[0] += l.cfg.BlockSize
			continue
		}
		w.writes[ph].Record(lat)
		w.bytes[1] += l.cfg.BlockSize
		if l.cfg.Samples[ph] {
			if len(w.samples) < maxSamples {
				w.samples = append(w.samples, sample{start.Sub(l.base), lat})
			} else {
				w.dropped++
			}
		}
	}
}

// setPhase makes requests that start from now on count in phase p.
func (l *load) setPhase(p int) { l.phase.Store(int32(p)) }

// stop ends the load, waits for the workers and closes the connections.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	if l.stopped == 0 {
		l.stopped = time.Since(l.base)
	}
	l.closeClients()
}

func (l *load) closeClients() {
	for _, c := range l.clients {
		_ = c.Close()
	}
	l.clients = nil
}

// loadTotals are the merged figures of every worker.
type loadTotals struct {
	reads, writes []*Histogram // by phase
	readBytes     int64
	writeBytes    int64
	errs          int64
	err           error
	samples       []sample
	dropped       int64
	series        *TimeSeries
}

func (l *load) totals() loadTotals {
	t := loadTotals{}
	for range l.cfg.Phases {
		t.reads = append(t.reads, NewHistogram())
		t.writes = append(t.writes, NewHistogram())
	}
	var rs []*seriesRecorder
	for _, w := range l.workers {
		rs = append(rs, &w.series)
		for p := range l.cfg.Phases {
			t.reads[p].Merge(w.reads[p])
			t.writes[p].Merge(w.writes[p])
		}
		t.readBytes += w.bytes[0]
		t.writeBytes += w.bytes[1]
		t.errs += w.errs
		if t.err == nil {
			t.err = w.firstErr
		}
		t.samples = append(t.samples, w.samples...)
		t.dropped += w.dropped
	}
	t.series = mergeSeries(rs)
	t.series.End = l.stopped
	return t
}

// failed returns an error when requests failed: a benchmark of failing
// I/O measures nothing.
func (t loadTotals) failed() error {
	if t.errs == 0 {
		return nil
	}
	return fmt.Errorf("bench: %d NBD requests failed, the first with: %w", t.errs, t.err)
}

// newNBDRig starts a rig serving its LUNs over NBD, with the first span
// bytes of each LUN written (prefill): what the NBD workloads load.
func newNBDRig(ctx context.Context, cfg rigConfig, span int64) (*rig, error) {
	cfg.NBD = true
	rg, err := newRig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := prefill(ctx, rg, span); err != nil {
		_ = rg.Close()
		return nil, err
	}
	return rg, nil
}

// prefill writes the first span bytes of each LUN directly (not through
// NBD), so that reads find data and writes after a snapshot copy grains,
// as on a volume in use.
func prefill(ctx context.Context, rg *rig, span int64) error {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for _, name := range rg.luns {
		l, err := rg.array.Get(name)
		if err != nil {
			return err
		}
		for off := int64(0); off < span; off += int64(len(buf)) {
			if err := l.WriteAt(ctx, buf[:min(int64(len(buf)), span-off)], off, false); err != nil {
				return err
			}
		}
	}
	return nil
}

var errNoLoad = errors.New("bench: the load completed no request")
