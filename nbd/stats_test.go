package nbd

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// command returns the counters of the named command.
func command(t *testing.T, st ServerStats, name string) CommandStats {
	t.Helper()
	for _, c := range st.Commands {
		if c.Command == name {
			return c
		}
	}
	t.Fatalf("no counters for %q in %+v", name, st.Commands)
	return CommandStats{}
}

// answered sums the requests counted over every command.
func answered(st ServerStats) uint64 {
	var n uint64
	for _, c := range st.Commands {
		n += c.Requests
	}
	return n
}

// TestStatsCountRequests checks the per-command counters: requests,
// errors, bytes, latency buckets and their exact sum, the requests in
// flight, and that a connection's counters outlive it.
func TestStatsCountRequests(t *testing.T) {
	m := newMem(testSize)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{MaxInFlight: 4})
	c := ts.dial(t, &DialOptions{Export: "lun0"})
	ctx := tctx(t)

	require.NoError(t, c.Write(ctx, make([]byte, 4096), 0, 0))
	require.NoError(t, c.Read(ctx, make([]byte, 512), 0))
	require.Error(t, c.Read(ctx, make([]byte, 512), testSize), "past the end")
	require.NoError(t, c.Flush(ctx))
	require.ErrorIs(t, c.exec(ctx, Command(42), 0, 0, 0, nil, nil, nil), syscall.EINVAL)

	check := func(st ServerStats) {
		t.Helper()
		w := command(t, st, "write")
		require.EqualValues(t, 1, w.Requests)
		require.EqualValues(t, 0, w.Errors)
		require.EqualValues(t, 4096, w.Bytes)
		r := command(t, st, "read")
		require.EqualValues(t, 2, r.Requests)
		require.EqualValues(t, 1, r.Errors)
		require.EqualValues(t, 512, r.Bytes, "a failed READ moves nothing")
		f := command(t, st, "flush")
		require.EqualValues(t, 1, f.Requests)
		require.EqualValues(t, 0, f.Bytes)
		o := command(t, st, "other")
		require.EqualValues(t, 1, o.Requests)
		require.EqualValues(t, 1, o.Errors)
		for _, cs := range st.Commands {
			var n uint64
			for _, b := range cs.Latency {
				n += b
			}
			require.Equal(t, cs.Requests, n, "%s: every request is in one bucket", cs.Command)
			if cs.Requests > 0 {
				require.Positive(t, cs.LatencySum, cs.Command)
			}
			require.NotEqual(t, "disc", cs.Command)
		}
		require.Zero(t, st.InFlightRequests)
	}
	// A request is counted once its reply has gone out, which may be
	// just after the client has read it.
	require.Eventually(t, func() bool {
		st := ts.Stats()
		return answered(st) == 5 && st.InFlightRequests == 0
	}, 5*time.Second, time.Millisecond)
	check(ts.Stats())

	// A READ held in the backend is in flight until it is answered.
	entered, release := holdAt(m, CmdRead, 8192)
	done := make(chan error, 1)
	go func() { done <- c.Read(ctx, make([]byte, 512), 8192) }()
	<-entered
	require.EqualValues(t, 1, ts.Stats().InFlightRequests)
	close(release)
	require.NoError(t, <-done)
	require.Eventually(t, func() bool { return ts.Stats().InFlightRequests == 0 }, 5*time.Second, time.Millisecond)
	require.EqualValues(t, 3, command(t, ts.Stats(), "read").Requests)

	// The counters of a connection that ended stay in the server's.
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return ts.Stats().Open == 0 }, 5*time.Second, time.Millisecond)
	st := ts.Stats()
	require.EqualValues(t, 3, command(t, st, "read").Requests)
	require.EqualValues(t, 4096, command(t, st, "write").Bytes)
}

// TestStatsLatencyBuckets checks that a request lands in the bucket of
// its latency: one held for 30 ms is counted between 25 and 50 ms.
func TestStatsLatencyBuckets(t *testing.T) {
	var s connStats
	r := &request{cmd: CmdTrim, length: 4096}
	s.begin(r, time.Now().Add(-30*time.Millisecond))
	s.done(r)
	c := &s.cmds[slot(CmdTrim)]
	for i, b := range RequestLatencyBounds {
		want := uint64(0)
		if b == 50*time.Millisecond {
			want = 1
		}
		require.Equal(t, want, c.buckets[i].Load(), "bucket ≤ %v", b)
	}
	require.GreaterOrEqual(t, time.Duration(c.sum.Load()), 30*time.Millisecond)
	require.EqualValues(t, 4096, c.bytes.Load())
	require.Equal(t, time.Duration(100), RequestLatencyBounds[0], "buckets start at 100 ns")
}

// TestStatsCountProtocolErrors checks that a connection closed on a
// protocol violation, in the handshake or in transmission, is counted,
// and that a client that leaves properly is not.
func TestStatsCountProtocolErrors(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	good := ts.dial(t, &DialOptions{Export: "lun0"})
	require.NoError(t, good.Write(tctx(t), []byte("fine"), 0, 0))
	require.NoError(t, good.Close())

	r := rawDial(t, ts)
	r.goExport("lun0", true)
	r.write(bytes.Repeat([]byte{0xde, 0xad}, 14))
	r.closed()

	r2 := rawDial(t, ts)
	r2.write(bytes.Repeat([]byte{1}, 16)) // unknown client flags
	r2.closed()

	require.Eventually(t, func() bool { return ts.Stats().Open == 0 }, 5*time.Second, time.Millisecond)
	require.EqualValues(t, 2, ts.Stats().ProtocolErrors)
}
