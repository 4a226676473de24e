package provider

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// injector runs one method's profile behaviour: it draws a latency and
// decides whether a failure fires. It is safe for concurrent use. A nil
// *injector injects nothing, which keeps CommitSnapshots' fast path to one
// nil check.
type injector struct {
	latency  Latency
	failures []failureState

	mu struct {
		sync.Mutex
		rng   *rand.Rand // latency draws
		calls int64
	}
}

// failureState is a Failure with its own generator, so that each failure's
// draws replay the same whatever the other failures of the method do.
type failureState struct {
	Failure
	rng *rand.Rand // guarded by injector.mu
}

// newInjector returns an injector of latency and failures whose draws come
// from generators seeded by seed and salt (the method), or nil when there is
// nothing to inject.
func newInjector(seed, salt uint64, latency Latency, failures []Failure) *injector {
	if latency.IsZero() && len(failures) == 0 {
		return nil
	}
	in := &injector{latency: latency}
	in.mu.rng = rand.New(rand.NewPCG(seed, salt<<32))
	for i, f := range failures {
		fseed := f.Seed
		if fseed == 0 {
			fseed = seed ^ salt<<40 ^ uint64(i+1)<<48
		}
		in.failures = append(in.failures, failureState{Failure: f, rng: rand.New(rand.NewPCG(fseed, 0x5eed))})
	}
	return in
}

// next counts a call and returns its delay and the code of the first
// failure that fires (S_OK for none). Every failure draws on every call,
// fired or not, so each one's sequence depends only on the call count.
func (in *injector) next() (time.Duration, vss.HRESULT) {
	if in == nil {
		return 0, vss.S_OK
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.mu.calls++
	delay := in.latency.Sample(in.mu.rng)
	code := vss.S_OK
	for i := range in.failures {
		f := &in.failures[i]
		fire := false
		switch f.Trigger {
		case TriggerAlways:
			fire = true
		case TriggerNth:
			fire = in.mu.calls == f.Nth
		case TriggerProbability:
			fire = f.rng.Float64() < f.Probability
		}
		if fire && code == vss.S_OK {
			code = f.Code
		}
	}
	return delay, code
}

// sleep waits for d, or until ctx or stop ends first and returns its error.
func sleep(ctx, stop context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop.Done():
		return context.Cause(stop)
	}
}
