package nbd

import (
	"context"
	"sync"
	"sync/atomic"
)

// budget is a weighted semaphore of bytes: acquire waits, in arrival
// order, until n bytes fit under size, or until ctx ends. The server has
// one for the payload buffers of every connection (MaxInFlightBytes), and
// each connection one for its own (MaxConnInFlightBytes).
//
// While nobody waits, acquire and release are one compare-and-swap and
// one add on used; waiters queue under mu. A waiter registers (nwait) and
// then tries again under mu, and a release looks at nwait after giving
// its bytes back, so a release cannot slip between a waiter's failed try
// and its registration unseen. A mutex on every call was rejected: every
// READ and WRITE of every connection takes the server's budget.
// golang.org/x/sync/semaphore does the same but would be a dependency for
// forty lines.
type budget struct {
	size  int64
	used  atomic.Int64
	nwait atomic.Int32
	// waits counts the acquires that had to wait; the server's budget and
	// its connections' share one counter.
	waits *atomic.Uint64

	mu      sync.Mutex
	waiters []*budgetWaiter // FIFO; guarded by mu
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(size int64, waits *atomic.Uint64) *budget { return &budget{size: size, waits: waits} }

// acquire takes n bytes (at most size: the caller never asks for more).
func (b *budget) acquire(ctx context.Context, n int64) error {
	if b.nwait.Load() == 0 && b.tryAdd(n) {
		return nil
	}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.tryAdd(n) {
		b.mu.Unlock()
		return nil
	}
	b.waits.Add(1)
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.nwait.Add(1)
	b.grantLocked()
	b.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.mu.Unlock()
		b.release(n)
		return ctx.Err()
	default:
	}
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			b.nwait.Add(-1)
			break
		}
	}
	b.grantLocked() // w may have held back those behind it
	b.mu.Unlock()
	return ctx.Err()
}

// release gives back n bytes taken with acquire.
func (b *budget) release(n int64) {
	b.used.Add(-n)
	if b.nwait.Load() > 0 {
		b.mu.Lock()
		b.grantLocked()
		b.mu.Unlock()
	}
}

// grantLocked admits waiters from the head of the queue while they fit.
func (b *budget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if !b.tryAdd(w.n) {
			return
		}
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
		b.nwait.Add(-1)
		close(w.ready)
	}
}

func (b *budget) tryAdd(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.size {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}
