package soaktest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Wire constants of the fixed newstyle handshake and of requests, as the
// NBD protocol numbers them; the idle and unread clients speak it byte by
// byte, since nbd.Client reads every reply.
const (
	magicInit           = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption         = 0x49484156454F5054 // "IHAVEOPT"
	magicRequest        = 0x25609513
	clFlagFixedNewstyle = 1 << 0
	clFlagNoZeroes      = 1 << 1
	optExportName       = 1
	cmdRead             = 0
)

var be = binary.BigEndian

// handshake enters transmission on export with NBD_OPT_EXPORT_NAME, the
// shortest way in: no option replies, simple replies only.
func handshake(c net.Conn, export string) error {
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	var hello [18]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if be.Uint64(hello[0:]) != magicInit || be.Uint64(hello[8:]) != magicOption {
		return fmt.Errorf("greeting: not fixed newstyle: % x", hello)
	}
	b := be.AppendUint32(nil, clFlagFixedNewstyle|clFlagNoZeroes)
	b = be.AppendUint64(b, magicOption)
	b = be.AppendUint32(b, optExportName)
	b = be.AppendUint32(b, uint32(len(export)))
	b = append(b, export...)
	if _, err := c.Write(b); err != nil {
		return err
	}
	var info [10]byte // size and transmission flags; no zeroes asked
	if _, err := io.ReadFull(c, info[:]); err != nil {
		return fmt.Errorf("export %q: %w", export, err)
	}
	return c.SetDeadline(time.Time{})
}

// idleConns opens n connections that then send nothing: the even ones
// right after connect, the odd ones after the handshake.
func idleConns(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	const openers = 32
	for o := range openers {
		wg.Go(func() {
			for i := o; i < n; i += openers {
				c, err := net.DialTimeout("tcp", addr, 30*time.Second)
				if err == nil && i%2 == 1 {
					if err = handshake(c, "soak"); err != nil {
						c.Close()
					}
				}
				if err != nil {
					mu.Lock()
					first = errors.Join(first, fmt.Errorf("idle connection %d: %w", i, err))
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if first != nil {
		closeAll(conns)
		return nil, first
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// pastCap opens n connections while the cap is reached and checks that
// the server closes each at once, before its greeting. It returns the
// longest wait for the close.
func pastCap(addr string, n int) (time.Duration, error) {
	var longest time.Duration
	for i := range n {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return longest, fmt.Errorf("connection %d past the cap: dial: %w", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		_, err = c.Read(b[:])
		longest = max(longest, time.Since(t0))
		c.Close()
		var ne net.Error
		switch {
		case err == nil:
			return longest, fmt.Errorf("connection %d past the cap was served (greeting received)", i)
		case errors.As(err, &ne) && ne.Timeout():
			return longest, fmt.Errorf("connection %d past the cap: neither served nor closed after 10 s", i)
		}
	}
	return longest, nil
}

// unread is a client that sends READs of size bytes and never reads a
// reply. The server must hold at most its connection's share of
// --max-in-flight-bytes for it and serve everyone else as before.
type unread struct {
	c    net.Conn
	sent int
}

func newUnread(addr string, lunSize int64, size, requests int) (*unread, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if err := handshake(c, "soak"); err != nil {
		c.Close()
		return nil, err
	}
	u := &unread{c: c}
	// The requests are 28 bytes each: they all fit in the socket buffers
	// even once the server stops reading them, so this never blocks for
	// long; the deadline is there in case it does.
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	var b []byte
	for i := range requests {
		off := int64(i*size) % (lunSize - int64(size) + 1)
		b = be.AppendUint32(b, magicRequest)
		b = be.AppendUint16(b, 0)
		b = be.AppendUint16(b, cmdRead)
		b = be.AppendUint64(b, uint64(i+1))
		b = be.AppendUint64(b, uint64(off))
		b = be.AppendUint32(b, uint32(size))
	}
	n, err := c.Write(b)
	u.sent = n / 28
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("unread client: sent %d of %d READs: %w", u.sent, requests, err)
	}
	return u, nil
}

func (u *unread) close() { u.c.Close() }

// handshakeTimeout is the server's bound on a handshake (nbd's
// Options.HandshakeTimeout default, which serve keeps): a connection
// silent since connect is closed past it, while one idle after its
// handshake waits for ever.
const handshakeTimeout = 30 * time.Second

// idleOpen tells, for each connection of idleConns, whether the server
// still holds it open: a read that finds nothing within a moment is open,
// one that meets the end of the stream (after the greeting, for those
// silent since connect) was closed by the server.
func idleOpen(conns []net.Conn) (silent, handshaken int) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		next   = make(chan int)
		counts [2]int
	)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				c := conns[i]
				_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				_, err := io.Copy(io.Discard, c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					mu.Lock()
					counts[i%2]++
					mu.Unlock()
				}
			}
		})
	}
	for i := range conns {
		next <- i
	}
	close(next)
	wg.Wait()
	return counts[0], counts[1]
}
