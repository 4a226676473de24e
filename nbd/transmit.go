package nbd

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/cow"
)

const (
	// minHoleChunk is the shortest zero run a structured read sends as a
	// hole chunk; shorter runs travel as data, so a fragmented read does not
	// become a storm of 20-byte chunks.
	minHoleChunk = 4096
	// maxStatusSpan bounds the range one BLOCK_STATUS looks at, and
	// maxDescriptors the descriptors one context returns; the protocol lets
	// the server answer less than asked, and the client continues from where
	// the reply ends.
	maxStatusSpan  = 256 << 20
	maxDescriptors = 1 << 14
	// maxKeptChunks bounds the chunk and descriptor capacity a request slot
	// keeps between requests.
	maxKeptChunks = 1024
)

// request is one transmission request. A connection owns MaxInFlight of
// them; the free list is the in-flight bound.
type request struct {
	flags  CmdFlags
	cmd    Command
	handle uint64
	off    uint64
	length uint32

	bp      *[]byte // pooled payload buffer
	data    []byte  // read data or write payload
	vec     cow.Vec // read data, pinned where it lies (VecReader)
	zc      bool    // the read data is vec, not data
	charged int64   // payload memory taken for data or vec (see charge)

	errno Errno
	msg   string    // static explanation for structured error replies
	start time.Time // when its header was read, for the latency counters

	chunks  []chunk     // structured read: content chunks in offset order
	status  [2]ctxReply // block status: one per selected context
	nstatus int
}

// chunk is a content chunk of a structured read, relative to the request.
type chunk struct {
	off, n int64
	hole   bool
}

type ctxReply struct {
	id   uint32
	desc []descriptor
}

type descriptor struct{ length, flags uint32 }

// transmit serves requests until the client disconnects, the connection
// fails, or Shutdown drains it, then waits for every request in flight to be
// answered and flushes the export if the connection wrote to it.
//
// An idle connection costs its socket and its serving goroutine: transmit
// waits for the client's next request holding no buffer (see
// awaitRequest), then runs a session (see session) with the workers, the
// writer, the request slots and the socket buffers, which ends when the
// connection has had nothing in flight for Options.IdleRelease and gives
// all of them back.
func (c *conn) transmit() {
	for c.awaitRequest() && c.session() {
	}
	if c.dirty.Load() && !c.aborted.Load() {
		if err := c.b.Flush(c.ctx); err != nil {
			c.log.Warn("nbd: flush at disconnect failed", "export", c.name, "err", err)
		}
	}
}

// session serves requests until reading ends, and reports whether it ended
// because the connection was idle (see readRequest), so that transmit waits
// for the next request with nothing held.
//
// MaxInFlight+1 workers share the connection. One at a time holds the
// reading turn (see lead); the others run requests. A request that is
// alone in flight, with nothing more from the client in the read buffer,
// is run by the worker that read it, and its reply is written at once (see
// reply): at low queue depth a request reaches the backend and its reply
// the socket without passing between goroutines, which would cost a
// wake-up each, and often a thread's. Under load, requests and replies
// queue on channels, and the writer sends replies that finish together in
// one write.
func (c *conn) session() (idle bool) {
	c.takeBuffers()
	c.idle = false
	n := c.s.opts.MaxInFlight
	c.free = make(chan *request, n)
	c.work = make(chan *request, n+1)
	c.replies = make(chan *request, n)
	slots := make([]request, n)
	for i := range slots {
		c.free <- &slots[i]
	}
	c.work <- nil // the reading turn
	c.turnTimer = time.AfterFunc(time.Hour, c.passTurn)
	c.turnTimer.Stop()
	var workers sync.WaitGroup
	for range n + 1 {
		workers.Go(c.worker)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	workers.Wait()
	c.turnTimer.Stop()
	close(c.replies)
	<-writerDone
	c.free, c.work, c.replies, c.turnTimer = nil, nil, nil, nil
	if !c.idle {
		return false
	}
	c.dropBuffers()
	return true
}

// keepWriteLen is the WRITE length from which the worker that read the
// payload runs the write itself, as it does a request read alone: the
// payload is then copied into the LUN by the core whose cache the socket
// read just filled, instead of moving to another worker's. fio 1 MiB
// writes, QD8 x 2, interleaved rounds: medians 4339 and 4576 IOPS against
// 4060 and 4408.
const keepWriteLen = 256 << 10

// largeWrite reports whether r is a WRITE its reader runs itself.
func (r *request) largeWrite() bool { return r.cmd == CmdWrite && r.length >= keepWriteLen }

// turnPatience is how long a worker running a request it kept (see lead)
// holds on to the reading turn before a timer passes it on.
const turnPatience = 20 * time.Microsecond

// patience is turnPatience for r; a WRITE of keepWriteLen or more gets
// 250 ns per KiB (256 µs a MiB), the time its copy takes at 4 GB/s. Passing
// the turn while a large write copies at memory speed only reads the next
// payload into a second buffer, which competes with the copy for the cores
// and the cache; a write still running after that waits on something else
// (a hold, an injected delay), and the turn passes then. fio 1 MiB writes,
// QD8 x 2, ten interleaved rounds: median 5628 IOPS with the turn kept,
// 5359 with turnPatience, 5619 for go-nbd's server over the same LUN
// (Intel Xeon). On an AMD EPYC (family 26) with other work on the
// machine, two runs of the two against each other went either way (medians
// 2258 kept against 2494 passed, then 3130 against 2805): no difference
// that the noise does not cover, so the threshold is not chosen by CPU.
func patience(r *request) time.Duration {
	if r.largeWrite() {
		return time.Duration(r.length>>10) * 250 * time.Nanosecond
	}
	return turnPatience
}

// worker runs requests from c.work; a nil entry is the reading turn.
func (c *conn) worker() {
	var done []*request // replies this worker flushed, to settle
	for r := range c.work {
		kept := false
		if r == nil {
			if r, kept = c.lead(); r == nil {
				return
			}
		}
		for {
			if r.errno == 0 {
				c.handle(r)
			}
			c.reply(r, kept, &done)
			if !kept || !c.reclaimTurn() {
				break
			}
			if r, kept = c.lead(); r == nil {
				return
			}
		}
	}
}

// lead reads requests while its worker holds the reading turn. A request
// with more buffered behind it, or others in flight, goes to the workers,
// and reading goes on. The first one that is alone, or a WRITE of at least
// keepWriteLen, the worker runs itself, keeping the turn (kept is true):
// when the request is done within its patience, as a memory-speed one is,
// the worker takes up reading again (reclaimTurn) and no other goroutine
// had to be woken; a slower one has the turn passed on by a timer
// (passTurn), so the requests after it are read and run meanwhile. When
// reading is over (the client disconnected, the connection failed,
// Shutdown drained it) lead closes c.work and returns nil.
func (c *conn) lead() (r *request, kept bool) {
	for {
		r, err := c.readRequest()
		if err != nil {
			c.endReading(err)
			close(c.work)
			return nil, false
		}
		if c.br.Buffered() == 0 && c.alone() || r.largeWrite() {
			c.turnKept.Store(true)
			c.turnTimer.Reset(patience(r))
			return r, true
		}
		c.work <- r
	}
}

// reclaimTurn takes the reading turn back after running a request lead
// kept, unless passTurn has passed it on.
func (c *conn) reclaimTurn() bool {
	if !c.turnKept.CompareAndSwap(true, false) {
		return false
	}
	c.turnTimer.Stop()
	return true
}

// passTurn runs when a kept request outlasts turnPatience: it gives the
// reading turn to the other workers.
func (c *conn) passTurn() {
	if c.turnKept.CompareAndSwap(true, false) {
		c.work <- nil
	}
}

// alone reports whether the caller's request is the only one in flight.
func (c *conn) alone() bool { return len(c.free) == cap(c.free)-1 }

// errEndOfRequests ends reading without an error: NBD_CMD_DISC or
// Shutdown's drain. The requests in flight are answered.
var errEndOfRequests = errors.New("nbd: end of requests")

// endReading ends reading on err. After NBD_CMD_DISC or a drain, the
// requests in flight finish and are answered. Anything else (the client
// closed its end without NBD_CMD_DISC, the socket failed, the stream broke)
// means no answer will be read: the requests in flight are cancelled, and
// the connection closes as soon as they return. Letting them finish was
// rejected: a client killed while its READ sat in an hour's injected delay
// left the socket in CLOSE-WAIT, and its goroutines, for that hour.
func (c *conn) endReading(err error) {
	switch {
	case errors.Is(err, errIdle):
		c.idle = true
		return
	case errors.Is(err, errEndOfRequests), c.draining.Load() && isTimeout(err):
		return
	}
	c.cancelReqs()
	switch {
	case errors.Is(err, errRequestTimeout):
		c.log.Debug("nbd: closing connection: a request was not received in time", "export", c.name,
			"timeout", c.s.opts.RequestTimeout)
	case errors.Is(err, errBadMagic), errors.Is(err, errPayloadTooBig):
		c.log.Warn("nbd: closing connection on a protocol violation", "export", c.name, "err", err)
		c.s.protocolErrors.Add(1)
		c.abort()
	case errors.Is(err, io.EOF), c.aborted.Load():
	default:
		c.log.Debug("nbd: connection ended", "export", c.name, "err", err)
	}
}

// readRequest reads the next request, its WRITE payload included, into a
// free slot and validates it. A request that fails validation comes back
// with its errno set and its payload discarded, to be answered.
func (c *conn) readRequest() (*request, error) {
	if err := c.awaitHeader(); err != nil {
		return nil, err
	}
	h := c.rhdr[:]
	if err := c.readPart(h); err != nil {
		return nil, err
	}
	start := time.Now()
	if be.Uint32(h[0:]) != magicRequest {
		return nil, errBadMagic
	}
	cmd := Command(be.Uint16(h[6:]))
	if cmd == CmdDisc {
		return nil, errEndOfRequests
	}
	var r *request
	select {
	case r = <-c.free:
	case <-c.ctx.Done():
		return nil, c.ctx.Err()
	}
	c.stats.begin(r, start)
	r.flags = CmdFlags(be.Uint16(h[4:]))
	r.cmd = cmd
	r.handle = be.Uint64(h[8:])
	r.off = be.Uint64(h[16:])
	r.length = be.Uint32(h[24:])
	if e, msg := c.validate(r); e != 0 {
		if cmd == CmdWrite {
			if r.length > discardLimit {
				c.release(r)
				return nil, errPayloadTooBig
			}
			if err := c.discardPart(int(r.length)); err != nil {
				c.release(r)
				return nil, err
			}
		}
		r.errno, r.msg = e, msg
		return r, nil
	}
	if cmd == CmdWrite {
		if err := c.charge(r, int64(r.length)); err != nil {
			c.release(r)
			return nil, err
		}
		r.bp, r.data = getBuf(int(r.length))
		if err := c.readPart(r.data); err != nil {
			c.release(r)
			return nil, err
		}
	}
	return r, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// validate checks a request against the protocol and the export before any
// work or allocation: command, flags, read-only, payload bound, range.
func (c *conn) validate(r *request) (Errno, string) {
	allowed := CmdFlagFUA
	switch r.cmd {
	case CmdRead:
		if c.structured {
			allowed |= CmdFlagDF
		}
	case CmdWrite, CmdFlush, CmdTrim, CmdCache:
	case CmdWriteZeroes:
		allowed |= CmdFlagNoHole | CmdFlagFastZero
	case CmdBlockStatus:
		allowed |= CmdFlagReqOne
	default:
		return EINVAL, "unknown command"
	}
	if r.flags&^allowed != 0 {
		return EINVAL, "command flag not valid for this command"
	}
	switch r.cmd {
	case CmdWrite, CmdTrim, CmdWriteZeroes:
		if c.readOnly {
			return EPERM, "export is read-only"
		}
	}
	switch r.cmd {
	case CmdRead, CmdWrite:
		if r.length > c.maxPayload {
			return EINVAL, "request length exceeds the maximum payload"
		}
	case CmdFlush:
		if r.off != 0 || r.length != 0 {
			return EINVAL, "flush offset and length must be zero"
		}
		return 0, ""
	case CmdBlockStatus:
		if len(c.meta) == 0 {
			return EINVAL, "no metadata context negotiated"
		}
		if r.length == 0 {
			return EINVAL, "block status length must not be zero"
		}
	}
	if r.off > c.size || uint64(r.length) > c.size-r.off {
		if r.cmd == CmdWrite || r.cmd == CmdWriteZeroes {
			return ENOSPC, "write beyond the end of the export"
		}
		return EINVAL, "offset and length beyond the end of the export"
	}
	return 0, ""
}

// handle runs one validated request against the backend. A panic answers
// EIO and is logged; it never reaches the client or the server.
func (c *conn) handle(r *request) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("nbd: request handler panicked", "export", c.name, "cmd", r.cmd,
				"offset", r.off, "length", r.length, "panic", p, "stack", string(debug.Stack()))
			r.errno, r.msg = EIO, "internal server error"
		}
	}()
	ctx, b := c.reqs, c.b
	off, n := int64(r.off), int64(r.length)
	fua := r.flags&CmdFlagFUA != 0
	var err error
	switch r.cmd {
	case CmdRead:
		err = c.read(r)
	case CmdWrite:
		c.markDirty()
		err = b.WriteAt(ctx, r.data, off, fua)
		c.dropPayload(r) // its reply carries no data
	case CmdFlush:
		err = b.Flush(ctx)
	case CmdTrim:
		c.markDirty()
		if err = b.Trim(ctx, off, n); err == nil && fua {
			err = b.Flush(ctx)
		}
	case CmdWriteZeroes:
		// Zeroing is a map update here, never slower than writing zeros,
		// so CmdFlagFastZero is always honoured.
		c.markDirty()
		if err = b.WriteZeroes(ctx, off, n, r.flags&CmdFlagNoHole != 0); err == nil && fua {
			err = b.Flush(ctx)
		}
	case CmdCache:
		// Everything is in memory already.
	case CmdBlockStatus:
		err = c.blockStatus(r)
	}
	if err != nil {
		r.errno, r.msg = errnoOf(err), ""
		if r.cmd == CmdFlush {
			// A failed flush is the one failure whose errno alone says
			// nothing useful (a full disk answers ENOSPC to a client that
			// wrote nothing new): the backend's error, with the file and
			// its cause, goes to the log. Other failures are the client's
			// to report, and fault injection makes many of them; a FUA
			// write's failure may be the write's own, so it is not logged
			// as a flush's.
			c.log.Warn("nbd: flush failed", "export", c.name, "errno", r.errno, "err", err)
		}
	}
}

func (c *conn) markDirty() {
	if !c.dirty.Load() {
		c.dirty.Store(true)
	}
}

// read fills r for a READ. With structured replies, zero runs of at least
// minHoleChunk become hole chunks and only the data is sent.
//
// A backend that reads without a copy (VecReader) fills r.vec with its
// grains, pinned, and the reply sends them by reference: the kernel's copy
// into the socket is the only copy. The payload budget is charged for the
// whole read as for a buffer, so it bounds the memory pinned as it bounds
// buffers, whether the client reads its replies or not.
//
// Every READ is one read of the backend, so that its read faults and
// statistics see each request once, whatever its chunks: a range with
// data is read whole, its holes copied as zeros that are not sent, and a
// range of holes only goes through readHoles. Reading each data chunk on
// its own was rejected: a read fault's delay would be paid once per
// chunk, and a read of holes only would meet no fault at all.
func (c *conn) read(r *request) error {
	ctx, off, n := c.reqs, int64(r.off), int64(r.length)
	if !c.structured {
		if err := c.charge(r, n); err != nil {
			return err
		}
		return c.readData(ctx, r, off, n)
	}
	if c.vr != nil && n > 0 {
		return c.readVecChunks(ctx, r, off, n)
	}
	if n > 0 {
		r.chunks = holeChunks(ctx, r.chunks[:0], c.b, off, n)
		if r.flags&CmdFlagDF != 0 && len(r.chunks) > 1 {
			r.chunks = append(r.chunks[:0], chunk{0, n, false})
		}
	}
	if n == 0 || len(r.chunks) == 1 && r.chunks[0].hole {
		return c.readHoles(ctx, off, n)
	}
	if err := c.charge(r, n); err != nil {
		return err
	}
	return c.readData(ctx, r, off, n)
}

// readVecChunks is a structured READ of a VecReader: one ReadVec, whose
// hole segments give the chunks, so that the read walks the tree once.
// Asking Extents first, as holeChunks does, walked it twice: a 4 KiB
// random read spent as long in the extents' walk as in the read's. A read
// that pins nothing (holes only) gives its payload memory back at once.
func (c *conn) readVecChunks(ctx context.Context, r *request, off, n int64) error {
	if err := c.charge(r, n); err != nil {
		return err
	}
	r.zc = true
	if err := c.vr.ReadVec(ctx, &r.vec, off, n); err != nil {
		return err
	}
	if r.vec.Pinned() == 0 {
		c.uncharge(r)
	}
	if r.flags&CmdFlagDF != 0 {
		r.chunks = append(r.chunks[:0], chunk{0, n, false})
		return nil
	}
	r.chunks = vecChunks(r.chunks[:0], &r.vec, n)
	return nil
}

// vecChunks splits a read of n bytes into data and hole chunks by vec's
// hole segments, as holeChunks does by extents: a zero run becomes a hole
// chunk when it is at least minHoleChunk long or the whole read.
func vecChunks(chs []chunk, vec *cow.Vec, n int64) []chunk {
	var at int64
	for i := 0; i < len(vec.Segs); {
		hole := vec.Holes[i]
		run := int64(0)
		for ; i < len(vec.Segs) && vec.Holes[i] == hole; i++ {
			run += int64(len(vec.Segs[i]))
		}
		h := hole && (run >= minHoleChunk || run == n)
		if k := len(chs); k > 0 && chs[k-1].hole == h {
			chs[k-1].n += run
		} else {
			chs = append(chs, chunk{at, run, h})
		}
		at += run
	}
	return chs
}

// readData reads [off, off+n) for r: pinned in r.vec where the backend
// can, into a pooled buffer otherwise.
func (c *conn) readData(ctx context.Context, r *request, off, n int64) error {
	if c.vr != nil {
		r.zc = true
		return c.vr.ReadVec(ctx, &r.vec, off, n)
	}
	r.bp, r.data = getBuf(int(n))
	return c.b.ReadAt(ctx, r.data, off)
}

// charge takes n bytes of payload memory for r, from the connection's
// budget and then the server's, waiting as long as that takes (or until
// the client is gone). The connection's comes first, so a connection
// waiting for its own share takes nothing from the others.
func (c *conn) charge(r *request, n int64) error {
	if n == 0 {
		return nil
	}
	if err := c.mem.acquire(c.reqs, n); err != nil {
		return err
	}
	if err := c.s.mem.acquire(c.reqs, n); err != nil {
		c.mem.release(n)
		return err
	}
	r.charged = n
	return nil
}

// uncharge gives r's payload memory back to the budgets.
func (c *conn) uncharge(r *request) {
	if r.charged > 0 {
		c.mem.release(r.charged)
		c.s.mem.release(r.charged)
		r.charged = 0
	}
}

// readHoles passes a READ answered without data through the backend's
// read path (see HoleReader).
func (c *conn) readHoles(ctx context.Context, off, n int64) error {
	if hr, ok := c.b.(HoleReader); ok {
		return hr.ReadHoles(ctx, off, n)
	}
	return c.b.ReadAt(ctx, nil, off)
}

// holeChunks splits [off, off+n) into data and hole chunks by the backend's
// extents. Extents that fail or do not tile the range exactly make the
// whole read one data chunk.
func holeChunks(ctx context.Context, chs []chunk, b Backend, off, n int64) []chunk {
	whole := func() []chunk { return append(chs[:0], chunk{0, n, false}) }
	ext, err := b.Extents(ctx, off, n)
	if err != nil {
		return whole()
	}
	at := off
	for _, e := range ext {
		if e.Off != at || e.Len <= 0 || e.Len > off+n-at {
			return whole()
		}
		hole := e.Kind != cow.Data && (e.Len >= minHoleChunk || e.Len == n)
		if k := len(chs); k > 0 && chs[k-1].hole == hole {
			chs[k-1].n += e.Len
		} else {
			chs = append(chs, chunk{e.Off - off, e.Len, hole})
		}
		at += e.Len
	}
	if at != off+n {
		return whole()
	}
	return chs
}

// blockStatus fills r's descriptors for every selected context.
func (c *conn) blockStatus(r *request) error {
	ctx, off := c.reqs, int64(r.off)
	span := min(int64(r.length), maxStatusSpan)
	end := off + span
	r.nstatus = 0
	for _, m := range c.meta {
		st := &r.status[r.nstatus]
		st.id, st.desc = uint32(m), st.desc[:0]
		switch m {
		case metaAlloc:
			ext, err := c.b.Extents(ctx, off, span)
			if err != nil {
				return err
			}
			at := off
			for _, e := range ext {
				lo, hi := max(e.Off, at), min(e.Off+e.Len, end)
				if lo != at || hi <= lo {
					break
				}
				st.desc = appendDesc(st.desc, hi-lo, allocFlags(e.Kind))
				at = hi
			}
		case metaChanged:
			rs, err := c.ct.Changed(ctx, off, span)
			if err != nil && !isNoBase(err) {
				return err
			}
			if err != nil {
				rs = append(rs[:0], cow.Range{Off: off, Len: span})
			}
			at := off
			for _, x := range rs {
				lo, hi := max(x.Off, at), min(x.Off+x.Len, end)
				if hi <= lo {
					continue
				}
				if lo > at {
					st.desc = appendDesc(st.desc, lo-at, 0)
				}
				st.desc = appendDesc(st.desc, hi-lo, StateChanged)
				at = hi
			}
			if at < end {
				st.desc = appendDesc(st.desc, end-at, 0)
			}
		}
		if len(st.desc) == 0 {
			// The protocol requires one descriptor; status 0 claims nothing.
			st.desc = appendDesc(st.desc, span, 0)
		}
		if r.flags&CmdFlagReqOne != 0 {
			st.desc = st.desc[:1]
		} else if len(st.desc) > maxDescriptors {
			st.desc = st.desc[:maxDescriptors]
		}
		r.nstatus++
	}
	return nil
}

func appendDesc(d []descriptor, n int64, flags uint32) []descriptor {
	if k := len(d); k > 0 && d[k-1].flags == flags {
		d[k-1].length += uint32(n)
		return d
	}
	return append(d, descriptor{uint32(n), flags})
}

func allocFlags(k cow.ExtentKind) uint32 {
	switch k {
	case cow.Hole:
		return StateHole | StateZero
	case cow.Zero:
		return StateZero
	}
	return 0
}

// dropPayload returns r's buffer to the pool and its memory to the
// budgets.
func (c *conn) dropPayload(r *request) {
	putBuf(r.bp)
	r.bp, r.data = nil, nil
	if r.zc {
		r.vec.Release()
		r.zc = false
	}
	c.uncharge(r)
}

// release returns r's buffer to the pool, its memory to the budgets and r
// to the free list.
func (c *conn) release(r *request) {
	c.stats.inFlight.Add(-1)
	c.dropPayload(r)
	r.errno, r.msg = 0, ""
	r.chunks = r.chunks[:0]
	if cap(r.chunks) > maxKeptChunks {
		r.chunks = nil
	}
	for i := range r.status {
		if cap(r.status[i].desc) > maxKeptChunks {
			r.status[i].desc = nil
		}
	}
	r.nstatus = 0
	c.free <- r
}
