package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
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
