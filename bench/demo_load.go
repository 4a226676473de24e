package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/nbd"
)

// demoRecordSize is the size of one record of the demo's load: one NBD
// write of a 4 KiB block, the unit file systems and databases write in.
const demoRecordSize = 4096

// demoRecord fills p with record seq of load writer w: a header that names
// both, and a body derived from them, so that any byte out of place is
// caught when the record is read back.
func demoRecord(p []byte, w int, seq int64) {
	copy(p, "SBDEMO\x00\x01")
	binary.LittleEndian.PutUint32(p[8:], uint32(w))
	binary.LittleEndian.PutUint64(p[12:], uint64(seq))
	x := uint32(seq)*2654435761 ^ uint32(w+1)*40503
	for i := 20; i < len(p); i++ {
		x = x*1664525 + 1013904223
		p[i] = byte(x >> 24)
	}
}

// demoLoad is the demo's background load: Go NBD clients writing
// sequence-numbered records, paced, from start to end. Each writer owns
// Slots record slots on its LUN and writes record n to slot (n-1) mod
// Slots, one write at a time, so that after any point in time each slot
// holds a record that can be predicted from the last one acknowledged.
// That makes two checks possible: nothing acknowledged was lost (the live
// LUN after the load stopped), and a snapshot is a point in time (each
// writer's slots in the snapshot are those of one prefix of its writes,
// between the last acknowledged before the hold and the last sent before
// the release).
type demoLoad struct {
	slots    int
	base     time.Time
	stopCh   chan struct{}
	wg       sync.WaitGroup
	writers  []*demoLoadWriter
	interval time.Duration
}

// demoLoadWriter is one writer of the load, with its own connection.
type demoLoadWriter struct {
	id     int
	export string
	off    int64 // the first slot's offset in the LUN
	c      *nbd.Client
	lat    *Histogram // from the scheduled start: a stall shows in full

	// mu guards the fields below: the writer appends, the demo reads
	// them while the load runs to check a snapshot.
	mu sync.Mutex
	// sent and done are, for record n at index n-1, when the write was
	// sent and when it was acknowledged, since the load's base.
	sent, done []time.Duration
	errs       int64
	firstErr   error
	// failed is when the failed write, if any, was sent and answered.
	failed [][2]time.Duration
}

// demoLoadSpec places one writer: its export and its first slot.
type demoLoadSpec struct {
	export string
	off    int64
}

// startDemoLoad dials one connection per writer and starts them, rate
// writes a second in all.
func startDemoLoad(ctx context.Context, network, addr string, specs []demoLoadSpec, slots int, rate float64) (*demoLoad, error) {
	l := &demoLoad{slots: slots, stopCh: make(chan struct{})}
	for i, s := range specs {
		c, err := nbd.Dial(ctx, network, addr, &nbd.DialOptions{Export: s.export, MaxInFlight: 1})
		if err != nil {
			for _, w := range l.writers {
				_ = w.c.Close()
			}
			return nil, fmt.Errorf("bench: demo: load connection %d: %w", i, err)
		}
		l.writers = append(l.writers, &demoLoadWriter{id: i, export: s.export, off: s.off, c: c, lat: NewHistogram()})
	}
	l.interval = time.Duration(float64(time.Second) * float64(len(specs)) / rate)
	l.base = time.Now()
	for _, w := range l.writers {
		l.wg.Go(func() { l.run(w) })
	}
	return l, nil
}

// run writes records on a fixed schedule until stop. A write in flight
// when stop comes is finished, not cancelled, so that what the writer
// counts as acknowledged is exactly what was written.
func (l *demoLoad) run(w *demoLoadWriter) {
	buf := make([]byte, demoRecordSize)
	// Spread the writers' schedules over one interval.
	next := l.base.Add(l.interval * time.Duration(w.id) / time.Duration(len(l.writers)))
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for seq := int64(1); ; seq++ {
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-l.stopCh:
				return
			}
		} else {
			select {
			case <-l.stopCh:
				return
			default:
			}
		}
		demoRecord(buf, w.id, seq)
		sent := time.Since(l.base)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.c.Write(ctx, buf, w.off+int64((seq-1)%int64(l.slots))*demoRecordSize, 0)
		cancel()
		done := time.Since(l.base)
		w.mu.Lock()
		if err != nil {
			w.failed = append(w.failed, [2]time.Duration{sent, done})
			w.errs++
			if w.firstErr == nil {
				w.firstErr = err
			}
			w.mu.Unlock()
			return // the slot's content is now unknown: stop this writer
		}
		w.sent, w.done = append(w.sent, sent), append(w.done, done)
		w.mu.Unlock()
		w.lat.Record(time.Since(next))
		next = next.Add(l.interval)
	}
}

// stop ends the load after the writes in flight and closes the
// connections.
func (l *demoLoad) stop() {
	select {
	case <-l.stopCh:
		return
	default:
	}
	close(l.stopCh)
	l.wg.Wait()
	for _, w := range l.writers {
		_ = w.c.Close()
	}
}

// demoLoadTotals sums the writers' counts.
type demoLoadTotals struct {
	writes, errs int64
	err          error
	lat          *Histogram
}

func (l *demoLoad) totals() demoLoadTotals {
	t := demoLoadTotals{lat: NewHistogram()}
	for _, w := range l.writers {
		w.mu.Lock()
		t.writes += int64(len(w.done))
		t.errs += w.errs
		if t.err == nil {
			t.err = w.firstErr
		}
		w.mu.Unlock()
	}
	return t
}

// series is the load's throughput and latency over time, each write
// counted when it was acknowledged, with its latency from send to
// acknowledgement; call it after stop.
func (l *demoLoad) series() *TimeSeries {
	var rs []*seriesRecorder
	var end time.Duration
	for _, w := range l.writers {
		r := &seriesRecorder{}
		w.mu.Lock()
		for i, done := range w.done {
			r.record(done, done-w.sent[i], demoRecordSize, false)
			end = max(end, done)
		}
		w.mu.Unlock()
		rs = append(rs, r)
	}
	ts := mergeSeries(rs)
	ts.End = end
	return ts
}

// latencies merges the writers' histograms; call it after stop.
func (l *demoLoad) latencies() *Histogram {
	h := NewHistogram()
	for _, w := range l.writers {
		h.Merge(w.lat)
	}
	return h
}

// metHold returns the latencies, from send to acknowledgement, of the
// acknowledged writes in flight during any of the windows (given since the
// load's base), and how many writes that met one failed. Call it after
// stop.
func (l *demoLoad) metHold(windows [][2]time.Duration) (acked *Histogram, failed int) {
	met := func(s, d time.Duration) bool {
		for _, win := range windows {
			if s < win[1] && d > win[0] {
				return true
			}
		}
		return false
	}
	acked = NewHistogram()
	for _, w := range l.writers {
		for i := range w.done {
			if s, d := w.sent[i], w.done[i]; met(s, d) {
				acked.Record(d - s)
			}
		}
		for _, f := range w.failed {
			if met(f[0], f[1]) {
				failed++
			}
		}
	}
	return acked, failed
}

// expected fills p with what slot holds after the first n records of a
// writer: the last record n' <= n written to it, or zeros.
func (l *demoLoad) expected(p []byte, w, slot int, n int64) {
	last := n - (n-1-int64(slot)+int64(l.slots))%int64(l.slots)
	if n < 1 || last < 1 || last > n {
		clear(p)
		return
	}
	demoRecord(p, w, last)
}

// readSlots reads a writer's slots from an export.
func (l *demoLoad) readSlots(ctx context.Context, c *nbd.Client, w *demoLoadWriter) ([]byte, error) {
	buf := make([]byte, l.slots*demoRecordSize)
	const chunk = 1 << 20
	for off := 0; off < len(buf); off += chunk {
		if err := c.Read(ctx, buf[off:min(off+chunk, len(buf))], w.off+int64(off)); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// matchPrefix reports how many bytes of got, a writer's slots, equal what
// they hold after its first n records.
func (l *demoLoad) matchPrefix(got []byte, w int, n int64) (equal int) {
	want := make([]byte, demoRecordSize)
	for s := range l.slots {
		l.expected(want, w, s, n)
		g := got[s*demoRecordSize : (s+1)*demoRecordSize]
		if bytes.Equal(g, want) {
			equal += demoRecordSize
			continue
		}
		for i := range g {
			if g[i] == want[i] {
				equal++
			}
		}
	}
	return equal
}

// pointInTime finds the prefix of writer w's records a snapshot holds.
// The hold window [from, to] (since the load's base) bounds it: every
// record acknowledged before from must be in, none sent after to may be.
// It returns the prefix, the bytes that match it, and the bounds.
func (l *demoLoad) pointInTime(got []byte, w *demoLoadWriter, from, to time.Duration) (n int64, equal int, lo, hi int64) {
	w.mu.Lock()
	for i, d := range w.done {
		if d < from {
			lo = int64(i + 1)
		}
	}
	for i, s := range w.sent {
		if s < to {
			hi = int64(i + 1)
		}
	}
	w.mu.Unlock()
	// A write may be sent before to and not acknowledged yet.
	hi++
	// The newest record in [lo, hi] that its slot holds; lo if none.
	n = lo
	rec := make([]byte, demoRecordSize)
	for k := hi; k > lo; k-- {
		s := int((k - 1) % int64(l.slots))
		demoRecord(rec, w.id, k)
		if bytes.Equal(got[s*demoRecordSize:(s+1)*demoRecordSize], rec) {
			n = k
			break
		}
	}
	return n, l.matchPrefix(got, w.id, n), lo, hi
}
