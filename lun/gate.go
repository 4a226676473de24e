package lun

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowbench/shadowbench/cow/inflight"
)

// DefaultHoldDeadline is how long a hold lasts before the gate releases
// itself: VSS kernel support's flush & hold window (vss-spec.md B.2).
const DefaultHoldDeadline = 10 * time.Second

// Gate is a LUN's I/O gate, VSS kernel support's flush & hold. While open,
// admitting I/O costs two uncontended atomic adds. Hold closes it: new I/O
// queues (it is never failed), in-flight I/O drains, and Hold returns.
// Release reopens it and admits the queue.
//
// Holds are counted: the gate stays closed while any hold is active, so one
// LUN shared by two volumes of a set can be held twice. Each hold has a
// deadline; at expiry that hold releases itself and reports the timeout.
type Gate struct {
	inflight inflight.Counter
	// closed is non-nil while any hold is active; I/O that finds it
	// waits for its channel to close.
	closed atomic.Pointer[chan struct{}]
	// wake nudges a draining holder when I/O exits during a hold.
	wake chan struct{}

	mu struct {
		sync.Mutex
		holds   int
		deleted bool
	}
}

func newGate() *Gate { return &Gate{wake: make(chan struct{}, 1)} }

// enter admits one I/O, waiting while the gate is held. It fails only when
// ctx ends first, or has ended: I/O of a connection dropped while it
// waited (a power cut drops them) is not admitted when the gate opens,
// though the gate's channel and ctx were ready together.
func (g *Gate) enter(ctx context.Context) (inflight.Token, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if c := g.closed.Load(); c != nil {
			select {
			case <-*c:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			continue
		}
		t := g.inflight.Enter()
		if g.closed.Load() == nil {
			return t, nil
		}
		g.exit(t) // a hold began between the check and the count
	}
}

func (g *Gate) exit(t inflight.Token) {
	g.inflight.Exit(t)
	if g.closed.Load() != nil {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// Hold closes the gate, waits for in-flight I/O to drain, and returns the
// hold. The deadline (DefaultHoldDeadline when 0) runs from the call; at
// expiry the hold releases itself, Expired is closed and Release reports
// ErrHoldTimeout. If ctx ends before the drain completes the hold is
// released and ctx's error returned. It is Close followed by Hold.Drain.
func (g *Gate) Hold(ctx context.Context, deadline time.Duration) (*Hold, error) {
	h, err := g.Close(deadline)
	if err != nil {
		return nil, err
	}
	if err := h.Drain(ctx); err != nil {
		_ = h.Release()
		return nil, err
	}
	return h, nil
}

// Close closes the gate at once, without waiting for the I/O in flight:
// new I/O queues from here on. Holding many gates at once (flush & hold of
// a whole set) closes them all first and then drains each, so the drains
// overlap. The deadline runs from the call, as for Hold.
func (g *Gate) Close(deadline time.Duration) (*Hold, error) {
	if deadline <= 0 {
		deadline = DefaultHoldDeadline
	}
	g.mu.Lock()
	if g.mu.deleted {
		g.mu.Unlock()
		return nil, ErrDeleted
	}
	g.mu.holds++
	if g.mu.holds == 1 {
		c := make(chan struct{})
		g.closed.Store(&c)
	}
	g.mu.Unlock()

	h := &Hold{g: g, expired: make(chan struct{}), start: time.Now()}
	h.timer = time.AfterFunc(deadline, h.expire)
	return h, nil
}

// Drain waits until no I/O admitted before the gate closed is in flight, or
// the hold expires (then Release reports it), or ctx ends.
func (h *Hold) Drain(ctx context.Context) error { return h.g.drain(ctx, h.expired) }

// drain waits until no I/O is in flight: a short spin for the common case
// of memory-speed I/O, then sleeps woken by exiting I/O.
func (g *Gate) drain(ctx context.Context, expired <-chan struct{}) error {
	for i := 0; !g.inflight.Zero(); i++ {
		if i < 32 {
			runtime.Gosched()
			continue
		}
		select {
		case <-g.wake:
		case <-time.After(100 * time.Microsecond): // another holder took the wake-up
		case <-expired:
			return nil // the hold released itself; Release will say so
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *Gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.holds--
	if g.mu.holds == 0 {
		if c := g.closed.Swap(nil); c != nil {
			close(*c)
		}
	}
}

// Held reports whether any hold is active.
func (g *Gate) Held() bool { return g.closed.Load() != nil }

// shut is called when the LUN is deleted: later holds fail, and the gate
// is forced open so queued I/O wakes and fails with ErrDeleted.
func (g *Gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.deleted = true
	if c := g.closed.Swap(nil); c != nil {
		close(*c)
	}
}

// Hold is one active hold of a gate.
type Hold struct {
	g       *Gate
	timer   *time.Timer
	start   time.Time
	done    atomic.Bool
	expired chan struct{} // closed when the deadline released the hold
}

func (h *Hold) expire() {
	if h.done.CompareAndSwap(false, true) {
		close(h.expired)
		h.g.release()
	}
}

// Expired is closed when the deadline passes before Release; the gate has
// then released itself.
func (h *Hold) Expired() <-chan struct{} { return h.expired }

// Held returns how long the hold has lasted so far.
func (h *Hold) Held() time.Duration { return time.Since(h.start) }

// Release reopens the gate (once every hold of it is released) and admits
// the queued I/O. It returns ErrHoldTimeout when the deadline came first.
func (h *Hold) Release() error {
	if !h.done.CompareAndSwap(false, true) {
		select {
		case <-h.expired:
			return ErrHoldTimeout
		default:
			return ErrHoldReleased
		}
	}
	h.timer.Stop()
	h.g.release()
	return nil
}
