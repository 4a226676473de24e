package nbd

import "syscall"

// waitReadable parks the caller until the socket has data to read (or an
// end of file, or an error), without reading it. The first call of the
// callback peeks without blocking (MSG_PEEK|MSG_DONTWAIT): data already
// there returns at once, since the poller's readiness may have been used
// up by an earlier read. EAGAIN makes the runtime wait for the socket to
// become readable, and the callback's second call returns at once: a
// spurious wake-up only means the read that follows blocks as usual, with
// its buffer. Reading into a one-byte buffer was rejected: the byte would
// have to be carried into the request's header by hand.
func waitReadable(rc syscall.RawConn) error {
	first := true
	return rc.Read(func(fd uintptr) bool {
		if !first {
			return true
		}
		first = false
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}
