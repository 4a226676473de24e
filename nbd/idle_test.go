package nbd

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// idleCost is what n idle connections cost the process, per connection.
type idleCost struct {
	goroutines float64
	heap       float64 // bytes of heap and goroutine stacks
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// measureIdle opens n connections with open, waits until settled says the
// server is done with them, and returns their cost per connection.
func measureIdle(t testing.TB, n int, open func() net.Conn, settled func() bool) idleCost {
	t.Helper()
	g0, h0 := runtime.NumGoroutine(), heapInUse()
	conns := make([]net.Conn, 0, n)
	for range n {
		conns = append(conns, open())
	}
	require.Eventually(t, settled, 10*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	g1, h1 := runtime.NumGoroutine(), heapInUse()
	runtime.KeepAlive(conns)
	return idleCost{goroutines: float64(g1-g0) / float64(n), heap: (float64(h1) - float64(h0)) / float64(n)}
}

// rawRead sends a simple READ of 4 KiB on c and reads its reply.
func rawRead(t testing.TB, c net.Conn) {
	t.Helper()
	b := be.AppendUint32(nil, magicRequest)
	b = be.AppendUint16(b, 0)
	b = be.AppendUint16(b, uint16(CmdRead))
	b = be.AppendUint64(b, 1)
	b = be.AppendUint64(b, 0)
	b = be.AppendUint32(b, 4096)
	_, err := c.Write(b)
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, c, simpleHeaderLen+4096)
	require.NoError(t, err)
}

// TestIdleConnectionCost checks N9: a connection silent since connect
// (until the handshake times out), idle after the handshake, or idle for
// IdleRelease after requests, costs its socket and one goroutine: no
// workers, no writer, no socket buffers. The sockets' own cost (both ends,
// in this process) is measured first, on a listener that only accepts.
// The bound on the rest is the read buffer alone (16 KiB): what remains is
// the connection's state and its goroutine's stack.
func TestIdleConnectionCost(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2000 sockets")
	}
	const n = 1000
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	sockets := measureIdle(t, n, func() net.Conn { return leanDial(t, "tcp", l.Addr().String(), "") },
		func() bool { return len(accepted) == n })
	l.Close()
	for c := range accepted {
		c.Close()
	}

	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}),
		Options{IdleRelease: 20 * time.Millisecond})
	// Warm the buffer pools and the server's first connection.
	ts.dial(t, &DialOptions{Export: "lun0"}).Close()
	require.Eventually(t, func() bool { return ts.Stats().Open == 0 }, 5*time.Second, time.Millisecond)
	for _, tc := range []struct {
		name string
		open func() net.Conn
	}{
		{"silent since connect", func() net.Conn {
			c := leanDial(t, "tcp", ts.addr, "")
			require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
			_, err := io.ReadFull(c, make([]byte, 18)) // the greeting is out
			require.NoError(t, err)
			return c
		}},
		{"after the handshake", func() net.Conn { return leanDial(t, "tcp", ts.addr, "lun0") }},
		{"after a request", func() net.Conn {
			c := leanDial(t, "tcp", ts.addr, "lun0")
			rawRead(t, c)
			return c
		}},
	} {
		opened, g0 := ts.Stats().Open, runtime.NumGoroutine()
		idle := measureIdle(t, n, tc.open, func() bool {
			// Sessions end IdleRelease after their last reply.
			return ts.Stats().Open == opened+n && runtime.NumGoroutine() <= g0+n+n/20
		})
		t.Logf("per idle connection %s, %d connections: %.2f goroutines, %.0f B of heap and stacks (sockets alone: %.0f B)",
			tc.name, n, idle.goroutines, idle.heap, sockets.heap)
		require.LessOrEqual(t, idle.goroutines, 1.05, "%s: one goroutine per idle connection", tc.name)
		require.Less(t, idle.heap-sockets.heap, float64(readBufSize), "%s: no buffers held by an idle connection", tc.name)
	}
}

// TestIdleConnectionWaitsForEver checks that a connection with nothing in
// flight is not timed out however long it waits, that its session ends
// and another starts with its next request, and that Shutdown reaches it.
func TestIdleConnectionWaitsForEver(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}),
		Options{RequestTimeout: 50 * time.Millisecond, IdleRelease: 10 * time.Millisecond})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := leanDial(t, "tcp", ts.addr, "lun0")
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		rawRead(t, c)
	}
	require.NoError(t, ts.Shutdown(tctx(t)))
	n, err := c.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "Shutdown closes an idle connection")
}

// TestHalfSentRequestTimesOut checks that a request whose header (or
// WRITE payload) stops half-way, or comes a byte at a time, closes its
// connection after RequestTimeout, and that the timeout does not count
// the wait before the header's first byte.
func TestHalfSentRequestTimesOut(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}),
		Options{RequestTimeout: timeout, IdleRelease: 20 * time.Millisecond})
	header := func(cmd Command, length uint32) []byte {
		b := be.AppendUint32(nil, magicRequest)
		b = be.AppendUint16(b, 0)
		b = be.AppendUint16(b, uint16(cmd))
		b = be.AppendUint64(b, 1)
		b = be.AppendUint64(b, 0)
		return be.AppendUint32(b, length)
	}
	for _, tc := range []struct {
		name string
		send func(c net.Conn)
	}{
		{"half a header", func(c net.Conn) { c.Write(header(CmdRead, 512)[:10]) }},
		{"a byte at a time", func(c net.Conn) {
			for _, b := range header(CmdRead, 512) {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(timeout / 8)
			}
		}},
		{"half a payload", func(c net.Conn) { c.Write(append(header(CmdWrite, 8192), make([]byte, 4096)...)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := leanDial(t, "tcp", ts.addr, "lun0")
			time.Sleep(2 * timeout) // idle first: not counted
			start := time.Now()
			go tc.send(c)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			_, err := io.Copy(io.Discard, c)
			if err != nil {
				require.False(t, isTimeout(err), "the server should close the connection: %v", err)
			}
			took := time.Since(start)
			require.GreaterOrEqual(t, took, timeout-10*time.Millisecond)
			require.Less(t, took, 2*time.Second)
		})
	}
}
