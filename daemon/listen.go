package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrSocketInUse is a unix socket path the daemon cannot take: another
// process listens on it, or the file there is not a socket.
var ErrSocketInUse = errors.New("daemon: the socket path is taken")

// listenUnix listens on the unix socket at path. A socket file that a
// daemon killed without a chance to remove it (SIGKILL) left behind is
// removed first, once a connection to it is refused: nobody listens. A
// path where another process listens, or a file that is not a socket,
// is refused with ErrSocketInUse and never removed.
//
// Trying to connect is the test because the file alone tells nothing: a
// live socket and a stale one look the same. A lock file beside the
// socket was rejected: it would be one more leftover to clean up.
func listenUnix(path string, log *slog.Logger) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if !errors.Is(err, syscall.EADDRINUSE) {
		return l, err
	}
	fi, serr := os.Lstat(path)
	if serr != nil {
		return nil, err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("%w: the file there is not a socket; move it away or choose another path", ErrSocketInUse)
	}
	c, derr := net.DialTimeout("unix", path, time.Second)
	if derr == nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w: another process listens on it (another shadowbench serve?); stop it or choose another path", ErrSocketInUse)
	}
	if !errors.Is(derr, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w: cannot tell whether another process listens on it: %w", ErrSocketInUse, derr)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale socket: %w", err)
	}
	log.Info("removed a stale socket nobody listened on", "path", path)
	return net.Listen("unix", path)
}

// capListener caps the connections a listener has open. Past the cap a
// new connection is answered 503 at once and closed, and counted.
//
// netutil.LimitListener (golang.org/x/net) was rejected: past its cap it
// stops accepting, so new connections wait in the kernel's backlog, and a
// client learns nothing until its own timeout; here it gets an answer
// that says why. Each listener has a cap of its own, so that a flood of
// TCP connections leaves the unix socket usable.
type capListener struct {
	net.Listener
	slots   chan struct{}
	open    atomic.Int64
	refused atomic.Int64
}

// tooMany is the answer to a connection past the cap, written whole
// before the request is read.
var tooMany = func() []byte {
	body := `{"error":"too many connections to the API; try again later"}` + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s", len(body), body)
}()

func newCapListener(l net.Listener, max int) *capListener {
	return &capListener{Listener: l, slots: make(chan struct{}, max)}
}

// Accept returns the next connection within the cap. A connection past
// it gets tooMany, written with a short deadline so that Accept never
// waits on a client, and is closed. The answer is best effort: closing a
// socket whose request has arrived unread resets it, and a client may
// see the reset first (1 in 100 here, where requests follow the
// connect at once). Draining the request first would need a goroutine
// per refused connection, which a flood would multiply.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			l.open.Add(1)
			return &cappedConn{Conn: c, l: l}, nil
		default:
			l.refused.Add(1)
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
			_, _ = c.Write(tooMany)
			_ = c.Close()
		}
	}
}

// cappedConn gives its slot back when it closes, once.
type cappedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}
