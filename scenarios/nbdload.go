package scenarios

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// loadMagic starts every block the load writes, so a block read back tells
// which write it holds: magic, then the write's sequence number and the
// block's index.
const loadMagic = 0x5342_4c4f_4144_0001 // "SBLOAD", version 1

// writeRec is one write of the load: which block, its sequence number,
// when it was issued and when it was acknowledged (zero while in flight or
// if it failed).
type writeRec struct {
	block      int64
	seq        uint64
	start, ack time.Time
}

// loadGen writes numbered blocks through NBD while the steps run. Each
// connection owns the blocks whose index is its number modulo the
// connection count and writes them one at a time, so a block's writes are
// ordered and the last acknowledged one is what the LUN must hold.
type loadGen struct {
	spec    loadSpec
	clients []*nbd.Client
	blocks  int64

	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond
	seq      uint64
	recs     []writeRec
	last     []uint64 // per block: the sequence number of the last acknowledged write
	failures int
	firstErr error
	inflight int
	paused   int
	frozen   map[vss.ID][]uint64 // per set: last at the quiescing writer's Freeze
	maxLat   time.Duration
}

// maxRecords bounds the write log: at the largest rate a scenario would
// need minutes to reach it.
const maxRecords = 1 << 20

func newLoadGen(spec loadSpec, clients []*nbd.Client) *loadGen {
	l := &loadGen{spec: spec, clients: clients, blocks: spec.region / int64(spec.blockSize), stop: make(chan struct{}),
		frozen: map[vss.ID][]uint64{}}
	l.last = make([]uint64, l.blocks)
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *loadGen) start(ctx context.Context) {
	n := len(l.clients)
	for i, c := range l.clients {
		l.wg.Go(func() { l.run(ctx, c, int64(i), int64(n)) })
	}
}

func (l *loadGen) run(ctx context.Context, c *nbd.Client, first, stride int64) {
	owned := (l.blocks - first + stride - 1) / stride
	rng := rand.New(rand.NewPCG(l.spec.seed, uint64(first)))
	interval := time.Duration(float64(time.Second) * float64(stride) / l.spec.rate)
	buf := make([]byte, l.spec.blockSize)
	next := time.Now()
	for k := int64(0); ; k++ {
		var j int64
		if l.spec.random {
			j = rng.Int64N(owned)
		} else {
			j = k % owned
		}
		block := first + j*stride
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-l.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		next = next.Add(interval)
		if now := time.Now(); next.Before(now.Add(-100 * time.Millisecond)) {
			next = now // do not burst to catch up after a pause or a hold
		}
		l.mu.Lock()
		for l.paused > 0 {
			l.cond.Wait()
		}
		select {
		case <-l.stop:
			l.mu.Unlock()
			return
		default:
		}
		l.seq++
		seq := l.seq
		idx := len(l.recs)
		if idx < maxRecords {
			l.recs = append(l.recs, writeRec{block: block, seq: seq, start: time.Now()})
		}
		l.inflight++
		l.mu.Unlock()

		binary.LittleEndian.PutUint64(buf[0:], loadMagic)
		binary.LittleEndian.PutUint64(buf[8:], seq)
		binary.LittleEndian.PutUint64(buf[16:], uint64(block))
		for i := 24; i < len(buf); i++ {
			buf[i] = byte(seq)
		}
		start := time.Now()
		err := c.Write(ctx, buf, block*int64(l.spec.blockSize), 0)
		ack := time.Now()

		l.mu.Lock()
		l.inflight--
		if err != nil {
			l.failures++
			if l.firstErr == nil {
				l.firstErr = fmt.Errorf("write %d of block %d: %w", seq, block, err)
			}
		} else {
			if idx < maxRecords {
				l.recs[idx].ack = ack
			}
			l.last[block] = seq
			l.maxLat = max(l.maxLat, ack.Sub(start))
		}
		l.cond.Broadcast()
		l.mu.Unlock()
		if err != nil && ctx.Err() != nil {
			return
		}
	}
}

// acked returns how many writes were acknowledged so far.
func (l *loadGen) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if !r.ack.IsZero() {
			n++
		}
	}
	return n
}

// pause stops issuing writes, waits for those in flight, and keeps what the
// LUN must then hold, as the snapshot of set must (the pre-freeze content).
func (l *loadGen) pause(set vss.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused++
	for l.inflight > 0 {
		l.cond.Wait()
	}
	if _, ok := l.frozen[set]; !ok {
		l.frozen[set] = append([]uint64(nil), l.last...)
	}
}

// forget drops what the load held when a writer froze for set: the writer
// was aborted, so the application may have written again before the
// commit, and only the point-in-time check applies.
func (l *loadGen) forget(set vss.ID) {
	l.mu.Lock()
	delete(l.frozen, set)
	l.mu.Unlock()
}

func (l *loadGen) resume() {
	l.mu.Lock()
	l.paused--
	l.cond.Broadcast()
	l.mu.Unlock()
}

// halt stops the load and waits for its goroutines.
func (l *loadGen) halt() {
	l.mu.Lock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.paused = 0
	l.cond.Broadcast()
	l.mu.Unlock()
	l.wg.Wait()
}

// readSeqs reads the load's region through read and returns, per block,
// the sequence number it holds (0 for a block no write of the load
// reached), or an error naming a block that holds something else.
func (l *loadGen) readSeqs(ctx context.Context, read func(ctx context.Context, p []byte, off int64) error) ([]uint64, error) {
	out := make([]uint64, l.blocks)
	bs := int64(l.spec.blockSize)
	const chunk = 1 << 20
	per := max(chunk/bs, 1)
	buf := make([]byte, per*bs)
	for b := int64(0); b < l.blocks; b += per {
		n := min(per, l.blocks-b)
		p := buf[:n*bs]
		if err := read(ctx, p, b*bs); err != nil {
			return nil, fmt.Errorf("read at block %d: %w", b, err)
		}
		for i := int64(0); i < n; i++ {
			blk := p[i*bs : (i+1)*bs]
			magic := binary.LittleEndian.Uint64(blk[0:])
			switch {
			case magic == loadMagic && int64(binary.LittleEndian.Uint64(blk[16:])) == b+i:
				out[b+i] = binary.LittleEndian.Uint64(blk[8:])
			case allZero(blk):
			default:
				return nil, fmt.Errorf("block %d holds data the load never wrote there", b+i)
			}
		}
	}
	return out, nil
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// verifyLive checks, once the load has stopped, that every block holds its
// last acknowledged write: no write was lost.
func (l *loadGen) verifyLive(got []uint64) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for b, s := range got {
		if s != l.last[b] {
			return fmt.Sprintf("block %d holds write %d, but write %d was the last acknowledged", b, s, l.last[b]), false
		}
	}
	return fmt.Sprintf("%d blocks hold their last acknowledged write", l.blocks), true
}

// verifyFrozen checks a snapshot of set against what the LUN held when
// the quiescing writer froze: the pre-freeze content, exactly.
func (l *loadGen) verifyFrozen(set vss.ID, got []uint64) (string, bool, bool) {
	l.mu.Lock()
	want, ok := l.frozen[set]
	l.mu.Unlock()
	if !ok {
		return "", false, false
	}
	for b := range got {
		if got[b] != want[b] {
			return fmt.Sprintf("block %d holds write %d, but held write %d when the writer froze", b, got[b], want[b]), false, true
		}
	}
	return fmt.Sprintf("all %d blocks equal the pre-freeze content", len(got)), true, true
}

// verifyPointInTime checks a snapshot taken by a commit that ran from
// commitStart to commitEnd against cow's C4: every write acknowledged
// before the commit began is in it, and no write issued after the commit
// returned is.
func (l *loadGen) verifyPointInTime(got []uint64, commitStart, commitEnd time.Time) (string, bool) {
	l.mu.Lock()
	lo := make([]uint64, l.blocks)
	hi := make([]uint64, l.blocks)
	for _, r := range l.recs {
		if !r.ack.IsZero() && r.ack.Before(commitStart) {
			lo[r.block] = max(lo[r.block], r.seq)
		}
		if !r.start.After(commitEnd) {
			hi[r.block] = max(hi[r.block], r.seq)
		}
	}
	l.mu.Unlock()
	before, after := 0, 0
	for b := range got {
		switch {
		case got[b] < lo[b]:
			return fmt.Sprintf("block %d holds write %d, but write %d was acknowledged before the commit", b, got[b], lo[b]), false
		case got[b] > hi[b]:
			return fmt.Sprintf("block %d holds write %d, issued after the commit returned", b, got[b]), false
		}
		if got[b] != 0 {
			before++
		}
		if hi[b] > got[b] {
			after++
		}
	}
	return fmt.Sprintf("point in time: %d blocks written before the commit are in it, %d blocks rewritten since are not", before, after), true
}

// verifyHeld is the stricter point in time (point-in-time: hold). The
// gates admit no write from the moment the hold began (every LUN's gate
// closed, the end of FlushAndHold) to the release, so a block holds
// exactly: every write acknowledged before the release (it went in before
// the hold), and none issued after the hold began, though CommitSnapshots
// ran later. A block's writes are one at a time, so at most one write, the
// one in flight when the hold began and acknowledged after the release,
// may be in or not. A write issued after the hold began and acknowledged
// before the release went through a closed gate.
func (l *loadGen) verifyHeld(got []uint64, held, release time.Time) (string, bool) {
	l.mu.Lock()
	acked := make([]uint64, l.blocks)
	issued := make([]uint64, l.blocks)
	var through *writeRec
	for i, r := range l.recs {
		if !r.ack.IsZero() && r.ack.Before(release) {
			acked[r.block] = max(acked[r.block], r.seq)
			if !r.start.Before(held) && through == nil {
				through = &l.recs[i]
			}
		}
		if r.start.Before(held) {
			issued[r.block] = max(issued[r.block], r.seq)
		}
	}
	l.mu.Unlock()
	if through != nil {
		return fmt.Sprintf("write %d to block %d was issued after the hold began and acknowledged before the release: a gate let it through",
			through.seq, through.block), false
	}
	exact, open := 0, 0
	for b := range got {
		switch {
		case got[b] < acked[b]:
			return fmt.Sprintf("block %d holds write %d, but write %d was acknowledged before the release", b, got[b], acked[b]), false
		case got[b] > issued[b]:
			return fmt.Sprintf("block %d holds write %d, issued after the hold began (the last issued before it: %d)", b, got[b], issued[b]), false
		case acked[b] == issued[b]:
			exact++
		default:
			open++
		}
	}
	return fmt.Sprintf("point in time of the hold: %d blocks exactly, %d with a write in flight across it", exact, open), true
}

// loadSummary is what a load did.
type loadSummary struct {
	writes, failures int
	firstErr         error
	maxLatency       time.Duration
}

func (l *loadGen) summary() loadSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadSummary{int(l.seq), l.failures, l.firstErr, l.maxLat}
}
