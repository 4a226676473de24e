package nbd

import (
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestBudgetWaitsInOrder(t *testing.T) {
	b := newBudget(10, new(atomic.Uint64))
	ctx := context.Background()
	require.NoError(t, b.acquire(ctx, 8))
	got := make(chan int64, 2)
	go func() { require.NoError(t, b.acquire(ctx, 6)); got <- 6 }()
	require.Eventually(t, func() bool { return b.nwait.Load() == 1 }, time.Second, time.Millisecond)
	go func() { require.NoError(t, b.acquire(ctx, 2)); got <- 2 }()
	require.Eventually(t, func() bool { return b.nwait.Load() == 2 }, time.Second, time.Millisecond)
	select {
	case n := <-got:
		t.Fatalf("%d jumped the queue (2 fit, but 6 came first), or got bytes that are not free", n)
	case <-time.After(20 * time.Millisecond):
	}
	b.release(8)
	require.ElementsMatch(t, []int64{6, 2}, []int64{<-got, <-got})
	require.Equal(t, int64(8), b.used.Load())
	require.Equal(t, uint64(2), b.waits.Load())

	// A waiter whose context ends leaves the queue, and lets those behind
	// it through.
	cctx, cancel := context.WithCancel(ctx)
	failed := make(chan error, 1)
	go func() { failed <- b.acquire(cctx, 10) }()
	require.Eventually(t, func() bool { return b.nwait.Load() == 1 }, time.Second, time.Millisecond)
	go func() { require.NoError(t, b.acquire(ctx, 1)); got <- 1 }()
	require.Eventually(t, func() bool { return b.nwait.Load() == 2 }, time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-failed, context.Canceled)
	require.Equal(t, int64(1), <-got)
	b.release(9)
	require.Zero(t, b.used.Load())
	require.Zero(t, b.nwait.Load())
}

// TestBudgetUnderRace takes and gives back random amounts from many
// goroutines, some of which give up waiting, and checks that the bound
// holds throughout and everything comes back.
func TestBudgetUnderRace(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	b := newBudget(100, new(atomic.Uint64))
	var wg sync.WaitGroup
	for g := range 8 {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() {
			for range 2000 {
				n := 1 + rng.Int64N(60)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(50))*time.Microsecond)
				err := b.acquire(ctx, n)
				cancel()
				if err != nil {
					continue
				}
				if u := b.used.Load(); u > b.size {
					t.Errorf("used %d of %d", u, b.size)
				}
				b.release(n)
			}
		})
	}
	wg.Wait()
	require.Zero(t, b.used.Load())
	require.Zero(t, b.nwait.Load())
}

// stallReads sends n simple READs of length bytes on r and reads nothing.
func stallReads(r *rawConn, n int, length uint32) {
	for i := range n {
		r.request(0, CmdRead, uint64(i), 0, length, nil)
	}
}

// drainReads reads the n simple replies stallReads asked for.
func drainReads(t *testing.T, r *rawConn, n int, length uint32) {
	t.Helper()
	for range n {
		errno, _ := r.simple()
		require.Equal(t, Errno(0), errno)
		_, err := io.CopyN(io.Discard, r.br, int64(length))
		require.NoError(t, err)
	}
}

// TestInFlightBytesBound checks MaxInFlightBytes and its per-connection
// share: a client that sends READs and never reads the replies holds its
// connection's share and no more, others are served meanwhile, and when
// stalled clients hold all of it a READ waits, and is answered once they
// read again, never failed.
func TestInFlightBytesBound(t *testing.T) {
	const mib = 1 << 20
	ts := serveOn(t, "unix", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}),
		Options{MaxPayload: mib, MaxConnInFlightBytes: 2 * mib, MaxInFlightBytes: 4 * mib})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	held := func(want int64) {
		t.Helper()
		require.Eventually(t, func() bool { return ts.Stats().InFlightBytes == want }, 5*time.Second, time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		require.Equal(t, want, ts.Stats().InFlightBytes, "and no more")
	}

	a := rawDial(t, ts)
	a.goExport("lun0", false)
	stallReads(a, 16, mib)
	held(2 * mib)
	require.Positive(t, ts.Stats().InFlightWaits, "a's third READ waits for its connection's share")

	b := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: true}) // a hole needs no memory
	buf := make([]byte, mib)
	for range 8 {
		require.NoError(t, b.Read(tctx(t), buf, 0), "served while a stalls")
	}

	c := rawDial(t, ts)
	c.goExport("lun0", false)
	stallReads(c, 16, mib)
	held(4 * mib)
	waits := ts.Stats().InFlightWaits
	read := make(chan error, 1)
	go func() { read <- b.Read(tctx(t), buf, 0) }()
	select {
	case err := <-read:
		t.Fatalf("a READ past the bound was answered (%v) while the memory was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.Greater(t, ts.Stats().InFlightWaits, waits)
	drainReads(t, a, 16, mib)
	require.NoError(t, <-read, "answered once memory came back")
	drainReads(t, c, 16, mib)
	require.NoError(t, b.Close())
	require.NoError(t, a.c.Close())
	require.NoError(t, c.c.Close())
	require.Eventually(t, func() bool { return ts.Stats().Open == 0 }, 5*time.Second, time.Millisecond)
	require.Zero(t, ts.Stats().InFlightBytes)
}

func TestDefaultInFlightBytes(t *testing.T) {
	require.Equal(t, int64(64<<20), defaultMaxInFlightBytes(512<<20))
	require.Equal(t, int64(1<<30), defaultMaxInFlightBytes(16<<30))
	require.Equal(t, int64(4<<30), defaultMaxInFlightBytes(1<<40))
	o := Options{}.withDefaults()
	require.Equal(t, DefaultMaxInFlightBytes(), o.MaxInFlightBytes)
	require.Equal(t, max(o.MaxInFlightBytes/16, DefaultMaxPayload), o.MaxConnInFlightBytes)
	o = Options{MaxInFlightBytes: 1 << 20}.withDefaults()
	require.Equal(t, int64(DefaultMaxPayload), o.MaxConnInFlightBytes, "a connection can always take one request")
	require.Equal(t, int64(DefaultMaxPayload), o.MaxInFlightBytes)
}
