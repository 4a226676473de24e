package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// demoAppWrite is the size of one of the application's writes.
const demoAppWrite = 8192

// demoApp is the demo's application writer: a VSS writer for an
// application that writes its own region of a LUN through NBD, as a
// database writes its files, until OnFreeze and again after OnThaw. At
// OnFreeze it remembers its region's content: what the snapshot must hold
// byte for byte.
type demoApp struct {
	coordinator.BaseWriter
	c        *nbd.Client
	region   int64
	interval time.Duration
	stopCh   chan struct{}
	wg       sync.WaitGroup

	// mu guards the fields below. A write holds it while in flight, so
	// that OnFreeze, which takes it, waits for the write to finish: the
	// application quiesces before it answers.
	mu     sync.Mutex
	frozen bool
	gen    uint64
	// content is the region as the application wrote it.
	content []byte
	// atFreeze is the content at the last OnFreeze, for set.
	atFreeze    []byte
	atFreezeSet vss.ID
	writes      int64
	sinceThaw   int64
	err         error
}

var _ coordinator.Writer = (*demoApp)(nil)

// startDemoApp starts the application's writes, one every interval.
func startDemoApp(c *nbd.Client, region int64, interval time.Duration) *demoApp {
	a := &demoApp{c: c, region: region, interval: interval, stopCh: make(chan struct{}), content: make([]byte, region)}
	a.wg.Go(a.run)
	return a
}

func (a *demoApp) run() {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-a.stopCh:
			return
		case <-t.C:
		}
		if err := a.write(); err != nil {
			return
		}
	}
}

// write writes the next 8 KiB of the region, unless frozen.
func (a *demoApp) write() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.frozen || a.err != nil {
		return a.err
	}
	a.gen++
	slots := uint64(max(a.region/demoAppWrite, 1))
	off := int64(a.gen%slots) * demoAppWrite
	p := make([]byte, min(demoAppWrite, a.region-off))
	// Every byte differs from the last generation's, or nearly: a stale
	// block cannot pass for a fresh one.
	binary.LittleEndian.PutUint64(p, a.gen)
	x := uint32(a.gen) * 2654435761
	for i := 8; i < len(p); i++ {
		x = x*1664525 + 1013904223
		p[i] = byte(x >> 24)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.c.Write(ctx, p, off, 0); err != nil {
		a.err = err
		return err
	}
	copy(a.content[off:], p)
	a.writes++
	a.sinceThaw++
	return nil
}

// OnFreeze implements coordinator.Writer: it waits for the write in
// flight, stops writing and remembers the region.
func (a *demoApp) OnFreeze(ev *coordinator.Event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.frozen = true
	a.atFreeze = bytes.Clone(a.content)
	a.atFreezeSet = ev.SnapshotSetID
	return true
}

// OnThaw implements coordinator.Writer: the application writes again.
func (a *demoApp) OnThaw(*coordinator.Event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.frozen, a.sinceThaw = false, 0
	return true
}

// OnAbort implements coordinator.Writer: as OnThaw.
func (a *demoApp) OnAbort(ev *coordinator.Event) bool { return a.OnThaw(ev) }

// frozenContent returns the region as it was when the application froze
// for set, or nil.
func (a *demoApp) frozenContent(set vss.ID) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.atFreezeSet != set {
		return nil
	}
	return a.atFreeze
}

// state returns a copy of the content, the writes since the last thaw and
// in all, and the first error.
func (a *demoApp) state() (content []byte, sinceThaw, writes int64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return bytes.Clone(a.content), a.sinceThaw, a.writes, a.err
}

// stop ends the writes after the one in flight.
func (a *demoApp) stop() {
	select {
	case <-a.stopCh:
		return
	default:
	}
	close(a.stopCh)
	a.wg.Wait()
}
