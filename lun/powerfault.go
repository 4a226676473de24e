package lun

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// PowerFault returns an injector that takes the LUN's power away at the
// nth operation it sees (from 1; put Only around it to count writes
// alone), for a power cut triggered by the I/O rather than by a call.
//
// At the nth operation it closes the LUN's gate (BeginHold) before that
// operation lands, so that no operation admitted after it lands before
// the cut, and hands the hold to fire. The nth operation itself goes on
// and lands: it was in flight when the power went, and like any write in
// flight at a cut it survives or not by the cache mode's rule. Every
// operation that reaches the injector after it fails with EIO, as I/O to
// a powerless array does: those admitted at the same time as the nth,
// before the gate closed. fire runs once, inside the nth operation, so it
// must not wait for the LUN's I/O: it starts the cut elsewhere (its
// owner's goroutine), which drops the LUN's connections, calls PowerCut,
// removes the injector and releases the hold, in that order, so that the
// I/O queued at the gate fails with its dropped connection rather than
// landing after the cut.
//
// Running the cut inside the nth operation was rejected: PowerCut holds
// the gate and waits for the I/O in flight, the nth operation included.
func (l *LUN) PowerFault(n int64, fire func(*Hold)) Injector {
	var count atomic.Int64
	return InjectorFunc(func(ctx context.Context, op Op) error {
		switch c := count.Add(1); {
		case c < n:
			return nil
		case c > n:
			return EIO
		}
		h, err := l.BeginHold(0)
		if err != nil {
			return err
		}
		fire(h)
		return nil
	})
}

// PowerCutInstant is when a power cut armed to fire at a random instant
// of window (from its arming) fires: uniform in [0, window), drawn from
// seed on a stream of its own, so that a cut's choices (PowerCutOptions)
// may take the same seed. The daemon and the scenario runner both draw
// it here, so one seed names one instant everywhere.
func PowerCutInstant(window time.Duration, seed uint64) time.Duration {
	if window <= 0 {
		return 0
	}
	rng := rand.New(rand.NewPCG(seed, 0x77697468696e /* "within" */))
	return time.Duration(rng.Int64N(int64(window)))
}
