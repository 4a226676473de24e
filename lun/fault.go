package lun

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Op names a kind of LUN operation, for fault injection and statistics.
type Op uint8

// The operations.
const (
	OpRead Op = iota
	OpWrite
	OpFlush
	OpTrim
	OpZero
	OpExtents
	numOps
)

var opNames = [numOps]string{"read", "write", "flush", "trim", "zero", "extents"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return "unknown"
}

// ParseOp returns the Op named s (read, write, flush, trim, zero, extents).
func ParseOp(s string) (Op, bool) {
	for i, n := range opNames {
		if n == s {
			return Op(i), true
		}
	}
	return 0, false
}

// Ops lists every operation.
func Ops() []Op {
	out := make([]Op, numOps)
	for i := range out {
		out[i] = Op(i)
	}
	return out
}

// Injected errors. They are syscall.Errno values, so the NBD server answers
// them as themselves.
var (
	EIO    error = syscall.EIO
	ENOSPC error = syscall.ENOSPC
)

// Injector decides, per operation, whether to delay it and whether to fail
// it. Injectors compose (All, Only, Probability, Nth, Toggle) in the manner
// of pebble's errorfs. Implementations must be safe for concurrent use.
type Injector interface {
	// Inject runs before the operation: it may sleep (respecting ctx) and
	// returns the error the operation fails with, or nil.
	Inject(ctx context.Context, op Op) error
}

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(ctx context.Context, op Op) error

// Inject implements Injector.
func (f InjectorFunc) Inject(ctx context.Context, op Op) error { return f(ctx, op) }

// Fail always fails with err.
func Fail(err error) Injector {
	return InjectorFunc(func(context.Context, Op) error { return err })
}

// Delay sleeps for a duration drawn from d, or until ctx ends.
func Delay(d Dist) Injector {
	return InjectorFunc(func(ctx context.Context, _ Op) error {
		wait := d.Sample()
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// All runs each injector in order and returns the first error, so a delay
// and a failure compose into a slow failure.
func All(injs ...Injector) Injector {
	return InjectorFunc(func(ctx context.Context, op Op) error {
		for _, in := range injs {
			if err := in.Inject(ctx, op); err != nil {
				return err
			}
		}
		return nil
	})
}

// Only applies inj to the listed operations and lets the others pass.
func Only(inj Injector, ops ...Op) Injector {
	var mask uint32
	for _, o := range ops {
		mask |= 1 << o
	}
	return InjectorFunc(func(ctx context.Context, op Op) error {
		if mask&(1<<op) == 0 {
			return nil
		}
		return inj.Inject(ctx, op)
	})
}

// Probability applies inj to each operation with probability p, drawing
// from a generator seeded with seed so that a run can be replayed.
func Probability(p float64, seed uint64, inj Injector) Injector {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return InjectorFunc(func(ctx context.Context, op Op) error {
		mu.Lock()
		hit := rng.Float64() < p
		mu.Unlock()
		if !hit {
			return nil
		}
		return inj.Inject(ctx, op)
	})
}

// Nth applies inj to the nth operation it sees (counting from 1) and to no
// other.
func Nth(n int64, inj Injector) Injector {
	var count atomic.Int64
	return InjectorFunc(func(ctx context.Context, op Op) error {
		if count.Add(1) != n {
			return nil
		}
		return inj.Inject(ctx, op)
	})
}

// Toggle applies an injector while switched on.
type Toggle struct {
	on  atomic.Bool
	inj Injector
}

var _ Injector = (*Toggle)(nil)

// NewToggle returns a toggle, initially off, around inj.
func NewToggle(inj Injector) *Toggle { return &Toggle{inj: inj} }

// Set switches the toggle on or off.
func (t *Toggle) Set(on bool) { t.on.Store(on) }

// Inject implements Injector.
func (t *Toggle) Inject(ctx context.Context, op Op) error {
	if !t.on.Load() {
		return nil
	}
	return t.inj.Inject(ctx, op)
}

// Dist is a distribution of durations.
type Dist interface {
	Sample() time.Duration
}

// Fixed is a constant duration.
type Fixed time.Duration

// Sample implements Dist.
func (f Fixed) Sample() time.Duration { return time.Duration(f) }

// Uniform draws uniformly from [Min, Max].
type Uniform struct{ Min, Max time.Duration }

// Sample implements Dist.
func (u Uniform) Sample() time.Duration {
	if u.Max <= u.Min {
		return u.Min
	}
	return u.Min + time.Duration(rand.Int64N(int64(u.Max-u.Min)+1))
}

// Normal draws from a normal distribution, clipped at zero.
type Normal struct{ Mean, StdDev time.Duration }

// Sample implements Dist.
func (n Normal) Sample() time.Duration {
	return max(0, n.Mean+time.Duration(rand.NormFloat64()*float64(n.StdDev)))
}

// Exponential draws from an exponential distribution: a long tail, as
// real devices have.
type Exponential struct{ Mean time.Duration }

// Sample implements Dist.
func (e Exponential) Sample() time.Duration {
	return time.Duration(rand.ExpFloat64() * float64(e.Mean))
}
