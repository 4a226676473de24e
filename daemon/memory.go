package daemon

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// The memory governor keeps the Go heap of a daemon close to what it holds
// live. An in-memory array's blocks are on the heap, and every array's
// block maps (a durable array's 64 GiB LUN has 16 million grains), and
// the collector's default lets the heap grow to twice its live size
// before it runs: the soak's 2 GiB of data reached 3.6 GiB of RSS with one
// collection in a minute. Every memGovernEvery it sets the runtime's
// memory limit to the live heap of the last collection plus a quarter of
// it, or plus memHeadroom when that is more, so that the heap, and with it
// the RSS, stays within 1.25 times the data plus a fixed overhead, while a
// small heap collects as often as before (GOGC still applies below the
// limit). GOMEMLIMIT in the environment, or GOGC=off, leaves the runtime
// alone. One governor serves every daemon of the process.
const (
	memGovernEvery = 250 * time.Millisecond
	memHeadroom    = 512 << 20
)

var governor struct {
	sync.Mutex
	users  int
	old    int64
	cancel context.CancelFunc
	done   chan struct{}
}

// governMemory starts the governor, or counts one more user of it, and
// returns the function that ends this use.
func governMemory(log *slog.Logger) func() {
	if os.Getenv("GOMEMLIMIT") != "" || os.Getenv("GOGC") == "off" {
		return func() {}
	}
	governor.Lock()
	defer governor.Unlock()
	if governor.users == 0 {
		governor.old = debug.SetMemoryLimit(-1)
		ctx, cancel := context.WithCancel(context.Background())
		governor.cancel, governor.done = cancel, make(chan struct{})
		go govern(ctx, governor.done)
		log.Info("memory: the heap is kept within 1.25x what is live, plus 512 MiB (GOMEMLIMIT overrides)")
	}
	governor.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			governor.Lock()
			defer governor.Unlock()
			if governor.users--; governor.users == 0 {
				governor.cancel()
				<-governor.done
				debug.SetMemoryLimit(governor.old)
			}
		})
	}
}

func govern(ctx context.Context, done chan struct{}) {
	defer close(done)
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(memGovernEvery)
	defer t.Stop()
	for {
		rtmetrics.Read(sample)
		if sample[0].Value.Kind() == rtmetrics.KindUint64 {
			live := int64(sample[0].Value.Uint64())
			debug.SetMemoryLimit(live + max(live/4, memHeadroom))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
