package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var be = binary.BigEndian

// Errors that end a connection. They are logged, never sent.
var (
	errBadMagic      = errors.New("nbd: bad magic")
	errClientFlags   = errors.New("nbd: unknown client flags")
	errNotFixed      = errors.New("nbd: option other than EXPORT_NAME from a non-fixed-newstyle client")
	errOptionTooBig  = errors.New("nbd: option too large to skip")
	errPayloadTooBig = errors.New("nbd: write payload too large to skip")
	errExportName    = errors.New("nbd: NBD_OPT_EXPORT_NAME for an unknown export")
	errTLSPipelined  = errors.New("nbd: data sent before the TLS handshake")
	errTLSRequired   = errors.New("nbd: NBD_OPT_EXPORT_NAME without TLS on a server that requires it")
)

// isViolation reports whether err is a protocol violation that closes a
// connection (N4), as ServerStats.ProtocolErrors counts them.
func isViolation(err error) bool {
	for _, v := range []error{errBadMagic, errClientFlags, errNotFixed, errOptionTooBig, errPayloadTooBig, errTLSPipelined} {
		if errors.Is(err, v) {
			return true
		}
	}
	return false
}

// discardLimit bounds what the server reads and throws away to stay in step
// with a client: an option over MaxOptionLen or a WRITE over MaxPayload. A
// longer one closes the connection rather than tie the server up.
const discardLimit = 128 << 20

// ioBufSize is the size of a connection's write buffer (and the client's).
const ioBufSize = 64 << 10

// readBufSize is the size of a connection's read buffer. It is smaller than
// the write buffer because reading a request header fills the buffer with
// whatever follows, and the part of a large WRITE payload read that way is
// copied once more than the rest, which is read straight into the payload
// buffer: with 64 KiB, 1 MiB writes ran 8% slower (fio, QD8 x 2), and
// 16 KiB still holds a few 4 KiB writes per read.
const readBufSize = 16 << 10

// metaKind is a metadata context; its value is its context ID.
type metaKind uint32

const (
	metaAlloc   metaKind = 1
	metaChanged metaKind = 2
)

func (m metaKind) name() string {
	if m == metaAlloc {
		return MetaBaseAllocation
	}
	return MetaChanged
}

// conn is one client connection. Its serving goroutine runs the handshake;
// transmission runs MaxInFlight+1 workers and one writer (see transmit),
// all stopped before serve returns.
type conn struct {
	s    *Server
	raw  net.Conn // the accepted connection: deadlines and Close
	rw   net.Conn // raw, or the TLS connection over it
	br   *bufio.Reader
	bw   *sendBuf
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	// reqs is the context of backend calls: ctx's child, also cancelled
	// when the client is gone (see endReading), so that a request it can
	// no longer receive the answer to (one in an injected delay, or
	// waiting at a held gate) ends then, and not when it would have.
	reqs       context.Context
	cancelReqs context.CancelFunc

	// draining is set by Server.Shutdown before it interrupts the reader
	// with a past read deadline; the reader then ends gracefully.
	draining atomic.Bool
	// aborted is set when the connection is closed under the reader.
	aborted atomic.Bool
	// serving is the backend selected, for Server.Connections.
	serving atomic.Value

	// Negotiated in the handshake; read-only in transmission.
	noZeroes   bool
	structured bool
	tls        bool
	metaExport string
	meta       []metaKind
	name       string
	b          Backend
	ct         ChangeTracker
	vr         VecReader // b, when it reads without a copy
	size       uint64
	readOnly   bool
	maxPayload uint32

	// Transmission (see transmit). The worker holding the reading turn
	// owns br and rhdr; writeMu guards bw, wtmp, sent and writeFailed.
	// sent holds the requests whose replies are in bw, not yet flushed:
	// their memory (pinned grains, buffers) is bw's until then. turnKept
	// is set while a worker runs a request with the turn kept (see lead).
	free        chan *request
	work        chan *request
	replies     chan *request
	turnKept    atomic.Bool
	turnTimer   *time.Timer
	rhdr        [requestHeaderLen]byte
	writeMu     sync.Mutex
	writeFailed bool
	sent        []*request
	wtmp        [32]byte
	dirty       atomic.Bool
	opt         []byte // handshake option data, reused
	// mem is the connection's payload memory (MaxConnInFlightBytes).
	mem budget
	// idle is set by the reader when a session ends for want of requests
	// (see readRequest); session reads it after the workers are gone.
	idle bool
	// stats is the shard of the server's request counters this
	// connection counts into.
	stats *connStats
}

func newConn(s *Server, ctx context.Context, nc net.Conn) *conn {
	c := &conn{s: s, raw: nc, rw: nc, maxPayload: uint32(s.opts.MaxPayload)}
	c.stats = &s.stats[s.nextShard.Add(1)%uint64(len(s.stats))]
	c.mem.size, c.mem.waits = s.opts.MaxConnInFlightBytes, &s.memWaits
	c.ctx, c.stop = context.WithCancel(ctx)
	c.reqs, c.cancelReqs = context.WithCancel(c.ctx)
	c.log = s.log.With("remote", nc.RemoteAddr().String())
	return c
}

// drain asks the connection to stop reading and finish what is in flight.
func (c *conn) drain() {
	c.draining.Store(true)
	_ = c.raw.SetReadDeadline(time.Now())
}

// abort closes the connection under its goroutines.
func (c *conn) abort() {
	c.aborted.Store(true)
	_ = c.raw.Close()
	c.stop()
}

func (c *conn) serve() {
	defer c.stop()
	// Closing rw ends a TLS session properly (close_notify) before the
	// socket closes.
	defer func() { _ = c.rw.Close() }()
	stop := context.AfterFunc(c.ctx, c.abort)
	defer stop()

	_ = c.raw.SetDeadline(time.Now().Add(c.s.opts.HandshakeTimeout))
	ok, err := true, c.greet()
	if err == nil {
		c.takeBuffers()
		defer c.dropBuffers()
		ok, err = c.handshake()
	}
	if err != nil || !ok {
		if err != nil && !c.draining.Load() && !c.aborted.Load() {
			c.log.Debug("nbd: handshake ended", "err", err)
		}
		if isViolation(err) {
			c.s.protocolErrors.Add(1)
		}
		return
	}
	c.opt = nil
	// Clear the handshake deadline, then look at draining: Shutdown sets it
	// before its deadline, so one of the two is seen.
	_ = c.raw.SetDeadline(time.Time{})
	if c.draining.Load() {
		return
	}
	c.transmit()
}

// backendOf boxes a Backend for an atomic.Value, which wants one type.
type backendOf struct{ b Backend }

// greet sends the server's greeting and waits, holding no buffer, for the
// client's first bytes (see waitReadable), within the handshake's
// deadline, which the caller has set. A client that connects and says
// nothing so costs its socket and one goroutine until the handshake times
// out. Taking the socket buffers at accept, as before, held 80 KiB for
// each such client for the whole timeout: 800 MB of heap for 10 000.
func (c *conn) greet() error {
	var hello [18]byte
	be.PutUint64(hello[0:], magicInit)
	be.PutUint64(hello[8:], magicOption)
	be.PutUint16(hello[16:], hsFlagFixedNewstyle|hsFlagNoZeroes)
	if _, err := c.rw.Write(hello[:]); err != nil {
		return err
	}
	sc, ok := c.rw.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	if err := waitReadable(rc); !errors.Is(err, errNoLeanWait) {
		return err
	}
	return nil
}

// handshake runs the fixed newstyle negotiation after the greeting. It
// returns true when the client entered transmission with c.b set, false
// after NBD_OPT_ABORT.
func (c *conn) handshake() (bool, error) {
	var hdr [optionHeaderLen]byte
	if _, err := io.ReadFull(c.br, hdr[:4]); err != nil {
		return false, err
	}
	cflags := be.Uint32(hdr[:4])
	if cflags&^(clFlagFixedNewstyle|clFlagNoZeroes) != 0 {
		return false, errClientFlags
	}
	c.noZeroes = cflags&clFlagNoZeroes != 0
	fixed := cflags&clFlagFixedNewstyle != 0

	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return false, err
		}
		if be.Uint64(hdr[0:]) != magicOption {
			return false, errBadMagic
		}
		opt, length := be.Uint32(hdr[8:]), be.Uint32(hdr[12:])
		if !fixed && opt != optExportName {
			return false, errNotFixed
		}
		if length > MaxOptionLen {
			if opt == optExportName || length > discardLimit {
				return false, errOptionTooBig
			}
			if _, err := c.br.Discard(int(length)); err != nil {
				return false, err
			}
			if err := c.optError(opt, repErrTooBig, "option data too large"); err != nil {
				return false, err
			}
			if err := c.bw.Flush(); err != nil {
				return false, err
			}
			continue
		}
		if cap(c.opt) < int(length) {
			c.opt = make([]byte, length)
		}
		data := c.opt[:length]
		if _, err := io.ReadFull(c.br, data); err != nil {
			return false, err
		}
		done, err := c.option(opt, data)
		if err != nil || done {
			return c.b != nil, err
		}
		if err := c.bw.Flush(); err != nil {
			return false, err
		}
	}
}

// option answers one option. done is true when negotiation is over.
func (c *conn) option(opt uint32, data []byte) (done bool, err error) {
	if c.s.opts.TLSRequired && c.s.opts.TLSConfig != nil && !c.tls && opt != optStartTLS && opt != optAbort {
		if opt == optExportName {
			return true, errTLSRequired
		}
		return false, c.optError(opt, repErrTLSReqd, "this server requires TLS: send NBD_OPT_STARTTLS first")
	}
	switch opt {
	case optExportName:
		return true, c.exportName(data)
	case optAbort:
		if err := c.optReply(opt, repAck, 0); err != nil {
			return true, err
		}
		return true, c.bw.Flush()
	case optList:
		return false, c.list(data)
	case optStartTLS:
		return false, c.startTLS(data)
	case optInfo, optGo:
		return c.infoGo(opt, data)
	case optStructured:
		if len(data) != 0 {
			return false, c.optError(opt, repErrInvalid, "option takes no data")
		}
		c.structured = true
		return false, c.optReply(opt, repAck, 0)
	case optListMetaCtx, optSetMetaCtx:
		return false, c.metaContext(opt, data)
	}
	return false, c.optError(opt, repErrUnsup, "option not supported")
}

func (c *conn) optReply(opt, typ, length uint32) error {
	var h [optionReplyHeaderLen]byte
	be.PutUint64(h[0:], magicOptionReply)
	be.PutUint32(h[8:], opt)
	be.PutUint32(h[12:], typ)
	be.PutUint32(h[16:], length)
	_, err := c.bw.Write(h[:])
	return err
}

func (c *conn) optError(opt, typ uint32, msg string) error {
	if err := c.optReply(opt, typ, uint32(len(msg))); err != nil {
		return err
	}
	_, err := c.bw.WriteString(msg)
	return err
}

// lookup finds an export by the name a client gave and returns its
// canonical name: the empty name means Options.DefaultExport.
func (c *conn) lookup(name string) (string, Backend, error) {
	if name == "" && c.s.opts.DefaultExport != "" {
		name = c.s.opts.DefaultExport
	}
	b, err := c.s.cat.Lookup(name)
	return name, b, err
}

func (c *conn) exportFlags(b Backend) TransmissionFlags {
	f := FlagHasFlags | FlagSendFlush | FlagSendCache | FlagCanMultiConn
	if c.exportReadOnly(b) {
		f |= FlagReadOnly
	} else {
		f |= FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes | FlagSendFastZero
	}
	if c.structured {
		f |= FlagSendDF
	}
	return f
}

func (c *conn) exportName(data []byte) error {
	if len(data) > MaxStringLen {
		return errExportName
	}
	name, b, err := c.lookup(string(data))
	if err != nil {
		return errExportName
	}
	var reply [10 + exportNameZeroesLen]byte
	be.PutUint64(reply[0:], uint64(b.Size()))
	be.PutUint16(reply[8:], uint16(c.exportFlags(b)))
	n := len(reply)
	if c.noZeroes {
		n = 10
	}
	if _, err := c.bw.Write(reply[:n]); err != nil {
		return err
	}
	c.selectExport(name, b)
	return c.bw.Flush()
}

// exportReadOnly reports whether b is served read-only: its own flag, or
// the server's Options.ReadOnly.
func (c *conn) exportReadOnly(b Backend) bool { return c.s.opts.ReadOnly || b.ReadOnly() }

func (c *conn) selectExport(name string, b Backend) {
	c.name, c.b = name, b
	// Before the reply that ends the handshake goes out, so that a client
	// whose Dial returned is already counted (Server.Connections).
	c.serving.Store(backendOf{b})
	c.size = uint64(max(b.Size(), 0))
	c.readOnly = c.exportReadOnly(b)
	c.ct, _ = b.(ChangeTracker)
	c.vr, _ = b.(VecReader)
	if c.metaExport != name {
		c.meta = nil
	}
	if c.ct == nil {
		// A context selected for another export of the same name that
		// tracked changes is no longer available.
		kept := c.meta[:0]
		for _, m := range c.meta {
			if m != metaChanged {
				kept = append(kept, m)
			}
		}
		c.meta = kept
	}
}

func (c *conn) list(data []byte) error {
	if len(data) != 0 {
		return c.optError(optList, repErrInvalid, "NBD_OPT_LIST takes no data")
	}
	for _, e := range c.s.cat.List() {
		if len(e.Name) > MaxStringLen {
			continue
		}
		desc := e.Description
		if len(desc) > MaxStringLen {
			desc = desc[:MaxStringLen]
		}
		if err := c.optReply(optList, repServer, uint32(4+len(e.Name)+len(desc))); err != nil {
			return err
		}
		var n [4]byte
		be.PutUint32(n[:], uint32(len(e.Name)))
		c.bw.Write(n[:])
		c.bw.WriteString(e.Name)
		if _, err := c.bw.WriteString(desc); err != nil {
			return err
		}
	}
	return c.optReply(optList, repAck, 0)
}

func (c *conn) startTLS(data []byte) error {
	switch {
	case len(data) != 0:
		return c.optError(optStartTLS, repErrInvalid, "NBD_OPT_STARTTLS takes no data")
	case c.s.opts.TLSConfig == nil:
		return c.optError(optStartTLS, repErrPolicy, "TLS is not configured on this server")
	case c.tls:
		return c.optError(optStartTLS, repErrInvalid, "TLS is already negotiated")
	}
	if err := c.optReply(optStartTLS, repAck, 0); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	if c.br.Buffered() != 0 {
		return errTLSPipelined
	}
	tc := tls.Server(c.raw, c.s.opts.TLSConfig)
	if err := tc.HandshakeContext(c.ctx); err != nil {
		return err
	}
	c.tls, c.rw = true, tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return nil
}

// parseName reads a 32-bit length and a string from the front of data.
func parseName(data []byte) (name string, rest []byte, rep uint32) {
	if len(data) < 4 {
		return "", nil, repErrInvalid
	}
	n := be.Uint32(data)
	if n > MaxStringLen {
		return "", nil, repErrTooBig
	}
	if uint64(n) > uint64(len(data)-4) {
		return "", nil, repErrInvalid
	}
	return string(data[4 : 4+n]), data[4+n:], 0
}

func (c *conn) infoGo(opt uint32, data []byte) (bool, error) {
	name, rest, rep := parseName(data)
	if rep != 0 {
		return false, c.optError(opt, rep, "malformed export name")
	}
	if len(rest) < 2 || len(rest) != 2+2*int(be.Uint16(rest)) {
		return false, c.optError(opt, repErrInvalid, "malformed information requests")
	}
	reqs := rest[2:]
	name, b, err := c.lookup(name)
	if err != nil {
		return false, c.optError(opt, repErrUnknown, "unknown export")
	}
	var buf [14]byte
	be.PutUint16(buf[0:], infoExport)
	be.PutUint64(buf[2:], uint64(b.Size()))
	be.PutUint16(buf[10:], uint16(c.exportFlags(b)))
	if err := c.optReply(opt, repInfo, 12); err != nil {
		return false, err
	}
	c.bw.Write(buf[:12])
	var sent [4]bool
	for i := 0; i+1 < len(reqs); i += 2 {
		t := be.Uint16(reqs[i:])
		if t >= uint16(len(sent)) || sent[t] {
			continue
		}
		sent[t] = true
		var payload string
		switch t {
		case infoName:
			payload = name
		case infoDescription:
			payload = b.Description()
			if len(payload) > MaxStringLen {
				payload = payload[:MaxStringLen]
			}
		case infoBlockSize:
			be.PutUint16(buf[0:], infoBlockSize)
			be.PutUint32(buf[2:], 1)
			be.PutUint32(buf[6:], min(uint32(max(b.BlockSize(), 1)), c.maxPayload))
			be.PutUint32(buf[10:], c.maxPayload)
			if err := c.optReply(opt, repInfo, 14); err != nil {
				return false, err
			}
			c.bw.Write(buf[:14])
			continue
		default:
			continue
		}
		if err := c.optReply(opt, repInfo, uint32(2+len(payload))); err != nil {
			return false, err
		}
		be.PutUint16(buf[0:], t)
		c.bw.Write(buf[:2])
		c.bw.WriteString(payload)
	}
	if err := c.optReply(opt, repAck, 0); err != nil {
		return false, err
	}
	if opt == optInfo {
		return false, nil
	}
	c.selectExport(name, b)
	return true, c.bw.Flush()
}

// metaContext answers NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
// Queries are exact context names or a bare namespace ("base:",
// "shadowbench:"); a LIST without queries lists every context.
func (c *conn) metaContext(opt uint32, data []byte) error {
	set := opt == optSetMetaCtx
	if set && !c.structured {
		return c.optError(opt, repErrInvalid, "structured replies must be negotiated first")
	}
	name, rest, rep := parseName(data)
	if rep != 0 {
		return c.optError(opt, rep, "malformed export name")
	}
	if len(rest) < 4 {
		return c.optError(opt, repErrInvalid, "malformed query count")
	}
	nq := be.Uint32(rest)
	rest = rest[4:]
	// Parse every query before answering, so a malformed one answers an
	// error alone.
	var want [3]bool
	for i := uint32(0); i < nq; i++ {
		q, r, rep := parseName(rest)
		if rep != 0 {
			return c.optError(opt, rep, "malformed query")
		}
		rest = r
		switch q {
		case MetaBaseAllocation, "base:":
			want[metaAlloc] = true
		case MetaChanged, "shadowbench:":
			want[metaChanged] = true
		}
	}
	if len(rest) != 0 {
		return c.optError(opt, repErrInvalid, "trailing data after queries")
	}
	if nq == 0 && !set {
		want[metaAlloc], want[metaChanged] = true, true
	}
	name, b, err := c.lookup(name)
	if err != nil {
		return c.optError(opt, repErrUnknown, "unknown export")
	}
	if _, ok := b.(ChangeTracker); !ok {
		want[metaChanged] = false
	}
	if set {
		c.meta = c.meta[:0]
		c.metaExport = name
	}
	for _, m := range [...]metaKind{metaAlloc, metaChanged} {
		if !want[m] {
			continue
		}
		id := uint32(0) // reserved in LIST replies
		if set {
			id = uint32(m)
			c.meta = append(c.meta, m)
		}
		if err := c.optReply(opt, repMetaContext, uint32(4+len(m.name()))); err != nil {
			return err
		}
		var b [4]byte
		be.PutUint32(b[:], id)
		c.bw.Write(b[:])
		c.bw.WriteString(m.name())
	}
	return c.optReply(opt, repAck, 0)
}
