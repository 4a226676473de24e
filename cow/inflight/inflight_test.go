package inflight

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEnterExitZero(t *testing.T) {
	var c Counter
	require.True(t, c.Zero())
	toks := make([]Token, 100)
	for i := range toks {
		toks[i] = c.Enter()
	}
	require.False(t, c.Zero())
	for _, tok := range toks[:99] {
		c.Exit(tok)
	}
	require.False(t, c.Zero())
	c.Exit(toks[99])
	require.True(t, c.Zero())
}

// TestWaitSeesEveryAdmitted uses the enter-then-recheck pattern the
// package documents: once admission closes, Wait returns only after every
// admitted operation exited, never before.
func TestWaitSeesEveryAdmitted(t *testing.T) {
	for range 50 {
		var c Counter
		var open atomic.Bool
		open.Store(true)
		var running, admitted atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					tok := c.Enter()
					if !open.Load() {
						c.Exit(tok)
						return
					}
					admitted.Add(1)
					running.Add(1)
					time.Sleep(time.Duration(admitted.Load()%3) * time.Microsecond)
					running.Add(-1)
					c.Exit(tok)
				}
			})
		}
		time.Sleep(time.Millisecond)
		open.Store(false)
		require.True(t, c.Wait(nil))
		require.Zero(t, running.Load(), "Wait returned with an admitted operation still running")
		wg.Wait()
	}
}

func TestWaitGivesUpWhenDone(t *testing.T) {
	var c Counter
	c.Enter()
	done := make(chan struct{})
	close(done)
	require.False(t, c.Wait(done))
}

func TestShardCount(t *testing.T) {
	for procs, want := range map[int]int{1: 2, 2: 2, 3: 4, 8: 8, 9: 16, 64: 16} {
		require.Equal(t, want, shardCount(procs), "procs=%d", procs)
	}
}
