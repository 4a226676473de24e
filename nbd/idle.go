package nbd

import (
	"bufio"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"
)

// Reasons reading ends that are not the client's doing.
var (
	// errIdle ends a session: nothing was in flight for IdleRelease.
	errIdle = errors.New("nbd: connection idle")
	// errRequestTimeout closes a connection whose client sent part of a
	// request and not the rest within RequestTimeout.
	errRequestTimeout = errors.New("nbd: request not received in time")
	// errNoLeanWait says a connection cannot wait for data without a
	// buffer (TLS, a connection without a descriptor, another platform).
	errNoLeanWait = errors.New("nbd: no lean wait on this connection")
)

// The socket buffers of the connections that have them, pooled so that an
// idle connection holds none: a connection takes them for the handshake
// and for each session, and gives them back when it waits.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writerPool = sync.Pool{New: func() any { return newSendBuf(ioBufSize) }}
)

// takeBuffers gives the connection its socket buffers.
func (c *conn) takeBuffers() {
	if c.br == nil {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(c.rw)
	}
	if c.bw == nil {
		c.bw = writerPool.Get().(*sendBuf)
		c.bw.Reset(c.rw)
	}
}

// dropBuffers gives the socket buffers back; a read buffer with data the
// client sent is kept. The caller is the only goroutine of the connection.
func (c *conn) dropBuffers() {
	if c.br != nil && c.br.Buffered() == 0 {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

// awaitRequest waits until the client sends the next request, or leaves,
// and reports whether there is something to read. It holds no buffer while
// it waits: it parks in the runtime's poller until the socket is readable,
// as a blocked read would, but without reading (see waitReadable). A TLS
// connection waits in its read buffer instead, since its session may hold
// decrypted bytes the socket no longer shows.
func (c *conn) awaitRequest() bool {
	if c.br != nil && c.br.Buffered() > 0 {
		return true
	}
	_ = c.raw.SetReadDeadline(time.Time{})
	if c.draining.Load() {
		return false
	}
	c.dropBuffers()
	err := errNoLeanWait
	if sc, ok := c.rw.(syscall.Conn); ok {
		if rc, rerr := sc.SyscallConn(); rerr == nil {
			err = waitReadable(rc)
		}
	}
	if !errors.Is(err, errNoLeanWait) {
		return err == nil && !c.draining.Load()
	}
	c.takeBuffers()
	_, err = c.br.Peek(1)
	return err == nil
}

// setReadDeadline sets the socket's read deadline. Shutdown's drain sets
// draining before its own deadline, so after setting one, reading stops if
// draining is seen, and otherwise the drain's deadline comes later.
func (c *conn) setReadDeadline(t time.Time) error {
	_ = c.raw.SetReadDeadline(t)
	if c.draining.Load() {
		return errEndOfRequests
	}
	return nil
}

// awaitHeader waits for the first byte of the next request. Between
// requests the client may take as long as it likes; when the wait has
// lasted IdleRelease with nothing in flight, it returns errIdle, and the
// session ends so that the connection holds nothing while it waits on.
// The deadline is set only when the buffer is empty, that is, when the
// read would block anyway.
func (c *conn) awaitHeader() error {
	for c.br.Buffered() == 0 {
		if err := c.setReadDeadline(time.Now().Add(c.s.opts.IdleRelease)); err != nil {
			return err
		}
		_, err := c.br.Peek(1)
		switch {
		case err == nil:
			return nil
		case !isTimeout(err):
			return err
		case c.draining.Load():
			return errEndOfRequests
		case c.inFlight() == 0:
			return errIdle
		}
	}
	return nil
}

// readPart reads p, a request header or a WRITE payload, whole. What the
// buffer does not hold yet must arrive within RequestTimeout, counted from
// when the server starts to read it, so a header sent a byte a second
// (or a payload never finished) closes the connection instead of holding
// it, and its payload buffer, for good. A WRITE that waited for memory
// (see Options.MaxInFlightBytes) starts its clock after the wait.
func (c *conn) readPart(p []byte) error {
	if c.br.Buffered() < len(p) {
		if err := c.setReadDeadline(time.Now().Add(c.s.opts.RequestTimeout)); err != nil {
			return err
		}
	}
	_, err := io.ReadFull(c.br, p)
	return c.readErr(err)
}

// discardPart reads and drops n bytes, as readPart reads them.
func (c *conn) discardPart(n int) error {
	if c.br.Buffered() < n {
		if err := c.setReadDeadline(time.Now().Add(c.s.opts.RequestTimeout)); err != nil {
			return err
		}
	}
	_, err := c.br.Discard(n)
	return c.readErr(err)
}

func (c *conn) readErr(err error) error {
	switch {
	case err == nil:
		return nil
	case isTimeout(err) && c.draining.Load():
		return errEndOfRequests
	case isTimeout(err):
		return errRequestTimeout
	}
	return err
}

// inFlight is the number of requests read and not yet answered.
func (c *conn) inFlight() int { return cap(c.free) - len(c.free) }
