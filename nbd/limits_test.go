package nbd

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flakyListener fails its first fails Accepts with EMFILE, as a process out
// of descriptors does, then accepts.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
	calls atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptErrorsAreRetried(t *testing.T) {
	inner, err := netListen(t, "tcp")
	require.NoError(t, err)
	l := &flakyListener{Listener: inner}
	l.fails.Store(4)
	var logs syncBuffer
	s := NewServer(newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{Logger: slogTo(&logs)})
	served := make(chan error, 1)
	start := time.Now()
	go func() { served <- s.Serve(tctx(t), l) }()

	c, err := Dial(tctx(t), "tcp", inner.Addr().String(), &DialOptions{Export: "lun0"})
	require.NoError(t, err, "the server accepts once descriptors are back")
	require.NoError(t, c.Write(tctx(t), []byte("x"), 0, 0))
	require.GreaterOrEqual(t, time.Since(start), (5+10+20+40)*time.Millisecond, "the pause doubles from 5 ms")
	require.GreaterOrEqual(t, l.calls.Load(), int32(5), "four failures, then the accept that served")
	require.Equal(t, 1, strings.Count(logs.String(), "accept failed"), "one warning for the burst: %s", logs.String())
	require.Contains(t, logs.String(), "too many open files")
	select {
	case err := <-served:
		t.Fatalf("Serve returned on an accept error: %v", err)
	default:
	}
	require.NoError(t, c.Close())

	// Only a closed listener ends Serve, and Shutdown cuts a pause short.
	l.fails.Store(1000)
	calls := l.calls.Load()
	leanDial(t, "tcp", inner.Addr().String(), "") // ends the Accept waiting now
	require.Eventually(t, func() bool { return l.calls.Load() >= calls+4 }, 5*time.Second, time.Millisecond)
	shut := time.Now()
	require.NoError(t, s.Shutdown(tctx(t)))
	select {
	case err := <-served:
		require.ErrorIs(t, err, ErrServerClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	require.Less(t, time.Since(shut), 500*time.Millisecond, "Shutdown waits for no pause")
}

func TestServeEndsWhenItsListenerCloses(t *testing.T) {
	l, err := netListen(t, "tcp")
	require.NoError(t, err)
	s := NewServer(newCatalog(nil), Options{Logger: discardLogger()})
	served := make(chan error, 1)
	go func() { served <- s.Serve(tctx(t), l) }()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, l.Close())
	require.True(t, errors.Is(<-served, net.ErrClosed))
}

func TestLogLimiterCountsWhatItHolds(t *testing.T) {
	var l logLimiter
	n, ok := l.tick()
	require.True(t, ok)
	require.Equal(t, uint64(1), n)
	for range 5 {
		_, ok := l.tick()
		require.False(t, ok)
	}
	l.last = l.last.Add(-logEvery)
	n, ok = l.tick()
	require.True(t, ok)
	require.Equal(t, uint64(6), n, "the five held back and this one")
}

func TestConnectionCap(t *testing.T) {
	var logs syncBuffer
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}),
		Options{MaxConnections: 2, Logger: slogTo(&logs)})
	// conns is the connection part of the server's counters.
	conns := func() ServerStats {
		st := ts.Stats()
		return ServerStats{Open: st.Open, Accepted: st.Accepted, Refused: st.Refused, MaxConnections: st.MaxConnections}
	}
	a := leanDial(t, "tcp", ts.addr, "lun0")
	leanDial(t, "tcp", ts.addr, "lun0")
	require.Equal(t, ServerStats{Open: 2, Accepted: 2, MaxConnections: 2}, conns())

	// The third and fourth are closed before the server says anything.
	for range 2 {
		over := leanDial(t, "tcp", ts.addr, "")
		require.NoError(t, over.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := over.Read(make([]byte, 1))
		require.Equal(t, 0, n)
		require.ErrorIs(t, err, io.EOF)
	}
	require.Equal(t, ServerStats{Open: 2, Accepted: 2, Refused: 2, MaxConnections: 2}, conns())
	require.Equal(t, 1, strings.Count(logs.String(), "connections refused"), "one warning for the burst: %s", logs.String())

	// A place freed is taken again.
	require.NoError(t, a.Close())
	require.Eventually(t, func() bool { return ts.Stats().Open == 1 }, 5*time.Second, time.Millisecond)
	c := ts.dial(t, &DialOptions{Export: "lun0"})
	require.NoError(t, c.Write(tctx(t), []byte("x"), 0, 0))
	require.Equal(t, ServerStats{Open: 2, Accepted: 3, Refused: 2, MaxConnections: 2}, conns())
}

func TestDefaultMaxConnectionsFollowsTheDescriptorLimit(t *testing.T) {
	var rl syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	require.Equal(t, defaultMaxConnections(rl.Cur), DefaultMaxConnections())
	require.Equal(t, DefaultMaxConnections(), NewServer(newCatalog(nil), Options{}).Stats().MaxConnections)
	for _, c := range []struct {
		nofile uint64
		want   int
	}{{1024, 768}, {20000, 19744}, {256, 64}, {100, 64}, {1 << 40, 1<<30 - 256}} {
		require.Equal(t, c.want, defaultMaxConnections(c.nofile), "RLIMIT_NOFILE %d", c.nofile)
	}
}
