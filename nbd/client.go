package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
)

// DialOptions configure a Client. The zero value selects the default export
// with structured replies and no metadata context.
type DialOptions struct {
	// Export is the export name; empty selects the server's default export.
	Export string
	// MetaContexts are the metadata contexts to select for BlockStatus,
	// e.g. MetaBaseAllocation and MetaChanged. The server may grant fewer.
	MetaContexts []string
	// NoStructuredReplies asks for simple replies only (no hole chunks, no
	// block status).
	NoStructuredReplies bool
	// MaxInFlight bounds the client's concurrent requests; callers beyond
	// it wait. Default 64.
	MaxInFlight int
	// TLSConfig, when set, makes the client upgrade with NBD_OPT_STARTTLS
	// and fail if the server refuses.
	TLSConfig *tls.Config
}

// Info describes the export a Client is connected to.
type Info struct {
	Name        string
	Description string
	Size        int64
	Flags       TransmissionFlags
	// Block size constraints from NBD_INFO_BLOCK_SIZE (zero if the server
	// sent none).
	MinBlock, PreferredBlock, MaxBlock uint32
}

// BlockDescriptor is one extent of a block status reply.
type BlockDescriptor struct {
	Length uint32
	Flags  uint32
}

// ContextStatus is the block status of one metadata context.
type ContextStatus struct {
	Context     string
	Descriptors []BlockDescriptor
}

// Client is a connection to one export. Its methods may be called from many
// goroutines at once: requests are multiplexed by handle and replies may
// arrive in any order. One reader goroutine, owned by the Client, runs until
// Close or Disconnect.
type Client struct {
	nc         net.Conn
	info       Info
	structured bool
	meta       map[uint32]string
	metaNames  []string

	// wmu serialises requests onto the connection; wq counts senders
	// waiting for it, so the last one flushes (batching concurrent sends).
	wmu  sync.Mutex
	bw   *bufio.Writer
	whdr [requestHeaderLen]byte
	wq   atomic.Int32

	br    *bufio.Reader // reader goroutine only
	rhdr  [structuredHeaderLen]byte
	slots []*call
	free  chan *call

	// dead is closed when the reader exits, after err is set and every
	// pending call has been completed with it.
	dead      chan struct{}
	err       error
	closeOnce sync.Once
	closing   atomic.Bool
}

// Call states. A caller moves idle -> pending; the reader moves
// pending -> claimed while it reads a reply chunk, then back to pending or
// on to done; a caller that gives up moves pending -> abandoned, and the
// reader frees the slot when the reply ends.
const (
	stateIdle uint32 = iota
	statePending
	stateClaimed
	stateDone
	stateAbandoned
)

// call is a request slot; its index is the low half of the handle.
type call struct {
	state  atomic.Uint32
	idx    uint32
	seq    uint32
	handle uint64
	cmd    Command
	off    uint64
	length uint32
	rbuf   []byte
	got    uint64
	err    error
	status []ContextStatus
	done   chan struct{}
}

// Dial connects to addr, negotiates with NBD_OPT_GO (structured replies and
// metadata contexts when asked) and starts the client's reader.
func Dial(ctx context.Context, network, addr string, opts *DialOptions) (*Client, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	h, err := dialHandshake(ctx, network, addr, opts.TLSConfig)
	if err != nil {
		return nil, err
	}
	c, err := h.negotiate(opts)
	if err != nil {
		_ = h.nc.Close()
		return nil, err
	}
	return c, nil
}

// List returns the exports the server at addr advertises.
func List(ctx context.Context, network, addr string, opts *DialOptions) ([]ExportInfo, error) {
	var tc *tls.Config
	if opts != nil {
		tc = opts.TLSConfig
	}
	h, err := dialHandshake(ctx, network, addr, tc)
	if err != nil {
		return nil, err
	}
	defer h.nc.Close()
	defer h.stop()
	list, err := h.list()
	if err != nil {
		return nil, err
	}
	h.abort()
	return list, nil
}

func newClient(nc net.Conn, br *bufio.Reader, structured bool, n int) *Client {
	if n <= 0 {
		n = 64
	}
	c := &Client{
		nc: nc, br: br, structured: structured,
		bw:    bufio.NewWriterSize(nc, ioBufSize),
		slots: make([]*call, n),
		free:  make(chan *call, n),
		dead:  make(chan struct{}),
		meta:  make(map[uint32]string),
	}
	calls := make([]call, n)
	for i := range calls {
		cl := &calls[i]
		cl.idx = uint32(i)
		cl.done = make(chan struct{}, 1)
		c.slots[i] = cl
		c.free <- cl
	}
	return c
}

func (c *Client) start() { go c.readLoop() }

// Info describes the connected export.
func (c *Client) Info() Info { return c.info }

// Size is the export's size in bytes.
func (c *Client) Size() int64 { return c.info.Size }

// Flags are the export's transmission flags.
func (c *Client) Flags() TransmissionFlags { return c.info.Flags }

// StructuredReplies reports whether structured replies were negotiated.
func (c *Client) StructuredReplies() bool { return c.structured }

// MetaContexts are the metadata contexts the server granted.
func (c *Client) MetaContexts() []string { return c.metaNames }

// Read fills p from the export at off.
func (c *Client) Read(ctx context.Context, p []byte, off int64) error {
	return c.ReadFlags(ctx, p, off, 0)
}

// ReadFlags is Read with command flags (CmdFlagDF, CmdFlagFUA).
func (c *Client) ReadFlags(ctx context.Context, p []byte, off int64, flags CmdFlags) error {
	if uint64(len(p)) > math.MaxUint32 {
		return ErrTooLarge
	}
	return c.exec(ctx, CmdRead, flags, off, uint32(len(p)), p, nil, nil)
}

// Write writes p to the export at off; flags may hold CmdFlagFUA.
func (c *Client) Write(ctx context.Context, p []byte, off int64, flags CmdFlags) error {
	if uint64(len(p)) > math.MaxUint32 {
		return ErrTooLarge
	}
	return c.exec(ctx, CmdWrite, flags, off, uint32(len(p)), nil, p, nil)
}

// Flush makes every write that has been answered persistent.
func (c *Client) Flush(ctx context.Context) error {
	return c.exec(ctx, CmdFlush, 0, 0, 0, nil, nil, nil)
}

// Trim discards [off, off+length); flags may hold CmdFlagFUA.
func (c *Client) Trim(ctx context.Context, off int64, length uint32, flags CmdFlags) error {
	return c.exec(ctx, CmdTrim, flags, off, length, nil, nil, nil)
}

// WriteZeroes zeroes [off, off+length); flags may hold CmdFlagFUA,
// CmdFlagNoHole and CmdFlagFastZero.
func (c *Client) WriteZeroes(ctx context.Context, off int64, length uint32, flags CmdFlags) error {
	return c.exec(ctx, CmdWriteZeroes, flags, off, length, nil, nil, nil)
}

// Cache asks the server to prefetch [off, off+length).
func (c *Client) Cache(ctx context.Context, off int64, length uint32) error {
	return c.exec(ctx, CmdCache, 0, off, length, nil, nil, nil)
}

// BlockStatus returns the status of [off, off+length) in every granted
// metadata context, in the order the server sent them. The descriptors may
// cover less than length; flags may hold CmdFlagReqOne.
func (c *Client) BlockStatus(ctx context.Context, off int64, length uint32, flags CmdFlags) ([]ContextStatus, error) {
	var st []ContextStatus
	err := c.exec(ctx, CmdBlockStatus, flags, off, length, nil, nil, &st)
	return st, err
}

// Disconnect waits for the requests in flight, sends NBD_CMD_DISC, waits
// for the server to close and releases the client. Later calls fail with
// ErrClosed.
func (c *Client) Disconnect(ctx context.Context) error {
	taken := 0
	for taken < len(c.slots) {
		select {
		case <-c.free:
			taken++
		case <-c.dead:
			return c.Close()
		case <-ctx.Done():
			_ = c.Close()
			return ctx.Err()
		}
	}
	c.wmu.Lock()
	h := c.whdr[:]
	clear(h)
	be.PutUint32(h[0:], magicRequest)
	be.PutUint16(h[6:], uint16(CmdDisc))
	_, err := c.bw.Write(h)
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	c.closing.Store(true)
	if err == nil {
		select {
		case <-c.dead:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	_ = c.Close()
	return err
}

// Close closes the connection at once; requests in flight fail with
// ErrClosed. It waits for the reader goroutine to exit.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		_ = c.nc.Close()
	})
	<-c.dead
	return nil
}

func (c *Client) exec(ctx context.Context, cmd Command, flags CmdFlags, off int64, length uint32, rbuf, wbuf []byte, st *[]ContextStatus) error {
	if off < 0 {
		return EINVAL
	}
	var cl *call
	select {
	case cl = <-c.free:
	default:
		select {
		case cl = <-c.free:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.dead:
			return c.err
		}
	}
	cl.seq++
	cl.handle = uint64(cl.seq)<<32 | uint64(cl.idx)
	cl.cmd, cl.off, cl.length, cl.rbuf = cmd, uint64(off), length, rbuf
	cl.got, cl.err, cl.status = 0, nil, nil
	cl.state.Store(statePending)
	if err := c.send(cl, flags, wbuf); err != nil {
		if cl.state.CompareAndSwap(statePending, stateIdle) {
			c.free <- cl
			return err
		}
		// The reader failed the call first; collect its answer.
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		if cl.state.CompareAndSwap(statePending, stateAbandoned) {
			return ctx.Err()
		}
		<-cl.done
	}
	err := cl.err
	if st != nil {
		*st = cl.status
	}
	cl.rbuf, cl.status, cl.err = nil, nil, nil
	cl.state.Store(stateIdle)
	c.free <- cl
	return err
}

func (c *Client) send(cl *call, flags CmdFlags, payload []byte) error {
	c.wq.Add(1)
	c.wmu.Lock()
	h := c.whdr[:]
	be.PutUint32(h[0:], magicRequest)
	be.PutUint16(h[4:], uint16(flags))
	be.PutUint16(h[6:], uint16(cl.cmd))
	be.PutUint64(h[8:], cl.handle)
	be.PutUint64(h[16:], cl.off)
	be.PutUint32(h[24:], cl.length)
	_, err := c.bw.Write(h)
	if err == nil && len(payload) > 0 {
		_, err = c.bw.Write(payload)
	}
	if c.wq.Add(-1) == 0 && err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		_ = c.nc.Close()
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

// readLoop is the client's reader goroutine.
func (c *Client) readLoop() {
	err := c.readReplies()
	if c.closing.Load() || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		c.err = ErrClosed
	} else {
		c.err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	_ = c.nc.Close()
	// Fail every call still waiting, including one whose reply was being
	// read when the connection broke (claimed by this goroutine).
	for _, cl := range c.slots {
		if cl.state.CompareAndSwap(statePending, stateDone) || cl.state.CompareAndSwap(stateClaimed, stateDone) {
			cl.err = c.err
			cl.done <- struct{}{}
		}
	}
	close(c.dead)
}

func (c *Client) readReplies() error {
	h := c.rhdr[:]
	for {
		if _, err := io.ReadFull(c.br, h[:4]); err != nil {
			return err
		}
		switch be.Uint32(h) {
		case magicSimple:
			if _, err := io.ReadFull(c.br, h[4:simpleHeaderLen]); err != nil {
				return err
			}
			if err := c.simpleReply(Errno(be.Uint32(h[4:])), be.Uint64(h[8:])); err != nil {
				return err
			}
		case magicStructured:
			if _, err := io.ReadFull(c.br, h[4:structuredHeaderLen]); err != nil {
				return err
			}
			flags, typ := be.Uint16(h[4:]), be.Uint16(h[6:])
			if err := c.chunk(flags, typ, be.Uint64(h[8:]), be.Uint32(h[16:])); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: reply magic %#x", ErrProtocol, be.Uint32(h))
		}
	}
}

// claim finds the call a reply is for. It returns nil for an abandoned call,
// whose reply is read and dropped.
func (c *Client) claim(handle uint64) (*call, error) {
	idx := uint32(handle)
	if int(idx) >= len(c.slots) {
		return nil, fmt.Errorf("%w: unknown handle %#x", ErrProtocol, handle)
	}
	cl := c.slots[idx]
	if !cl.state.CompareAndSwap(statePending, stateClaimed) {
		if cl.state.Load() == stateAbandoned && cl.handle == handle {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: unexpected handle %#x", ErrProtocol, handle)
	}
	if cl.handle != handle {
		return nil, fmt.Errorf("%w: stale handle %#x", ErrProtocol, handle)
	}
	return cl, nil
}

func (c *Client) complete(cl *call) {
	cl.state.Store(stateDone)
	cl.done <- struct{}{}
}

func (c *Client) freeAbandoned(handle uint64) {
	cl := c.slots[uint32(handle)]
	cl.rbuf, cl.status = nil, nil
	cl.state.Store(stateIdle)
	c.free <- cl
}

func (c *Client) simpleReply(errno Errno, handle uint64) error {
	cl, err := c.claim(handle)
	if err != nil {
		return err
	}
	if cl == nil {
		abandoned := c.slots[uint32(handle)]
		if abandoned.cmd == CmdRead && errno == 0 {
			if _, err := c.br.Discard(int(abandoned.length)); err != nil {
				return err
			}
		}
		c.freeAbandoned(handle)
		return nil
	}
	if errno != 0 {
		cl.err = errno
	} else if cl.cmd == CmdRead {
		if _, err := io.ReadFull(c.br, cl.rbuf); err != nil {
			return err
		}
	}
	c.complete(cl)
	return nil
}

// maxChunkLen bounds structured chunks that are not read data, so a hostile
// server cannot make the client allocate without bound.
const maxChunkLen = 4 + 8*(1<<20)

func (c *Client) chunk(flags, typ uint16, handle uint64, length uint32) error {
	cl, err := c.claim(handle)
	if err != nil {
		return err
	}
	done := flags&replyFlagDone != 0
	if cl == nil {
		if _, err := c.br.Discard(int(length)); err != nil {
			return err
		}
		if done {
			c.freeAbandoned(handle)
		}
		return nil
	}
	if err := c.chunkPayload(cl, typ, length); err != nil {
		return err
	}
	if !done {
		cl.state.Store(statePending)
		return nil
	}
	if cl.err == nil && cl.cmd == CmdRead && cl.got != uint64(cl.length) {
		cl.err = &ReplyError{EIO, "structured read did not cover the request"}
	}
	c.complete(cl)
	return nil
}

func (c *Client) chunkPayload(cl *call, typ uint16, length uint32) error {
	var tmp [12]byte
	switch {
	case typ == replyNone:
		if length != 0 {
			return fmt.Errorf("%w: NONE chunk with payload", ErrProtocol)
		}
	case typ == replyOffsetData && cl.cmd == CmdRead:
		if length < 9 {
			return fmt.Errorf("%w: short data chunk", ErrProtocol)
		}
		if _, err := io.ReadFull(c.br, tmp[:8]); err != nil {
			return err
		}
		at, n := be.Uint64(tmp[:]), uint64(length-8)
		if at < cl.off || at-cl.off > uint64(cl.length) || n > uint64(cl.length)-(at-cl.off) {
			return fmt.Errorf("%w: data chunk outside the request", ErrProtocol)
		}
		if _, err := io.ReadFull(c.br, cl.rbuf[at-cl.off:][:n]); err != nil {
			return err
		}
		cl.got += n
	case typ == replyOffsetHole && cl.cmd == CmdRead:
		if length != 12 {
			return fmt.Errorf("%w: hole chunk length %d", ErrProtocol, length)
		}
		if _, err := io.ReadFull(c.br, tmp[:12]); err != nil {
			return err
		}
		at, n := be.Uint64(tmp[:]), uint64(be.Uint32(tmp[8:]))
		if n == 0 || at < cl.off || at-cl.off > uint64(cl.length) || n > uint64(cl.length)-(at-cl.off) {
			return fmt.Errorf("%w: hole chunk outside the request", ErrProtocol)
		}
		clear(cl.rbuf[at-cl.off:][:n])
		cl.got += n
	case typ == replyBlockStatus && cl.cmd == CmdBlockStatus:
		if length < 12 || (length-4)%8 != 0 || length > maxChunkLen {
			return fmt.Errorf("%w: block status chunk length %d", ErrProtocol, length)
		}
		p := make([]byte, length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return err
		}
		d := make([]BlockDescriptor, (length-4)/8)
		for i := range d {
			d[i] = BlockDescriptor{be.Uint32(p[4+8*i:]), be.Uint32(p[8+8*i:])}
		}
		cl.status = append(cl.status, ContextStatus{Context: c.meta[be.Uint32(p)], Descriptors: d})
	case typ&replyErrBit != 0:
		if length < 6 || length > 6+MaxStringLen+8 {
			return fmt.Errorf("%w: error chunk length %d", ErrProtocol, length)
		}
		p := make([]byte, length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return err
		}
		errno, mlen := Errno(be.Uint32(p)), int(be.Uint16(p[4:]))
		if mlen > int(length)-6 {
			return fmt.Errorf("%w: error message overflows its chunk", ErrProtocol)
		}
		if errno == 0 {
			errno = EIO
		}
		if cl.err == nil {
			if mlen > 0 {
				cl.err = &ReplyError{errno, string(p[6 : 6+mlen])}
			} else {
				cl.err = errno
			}
		}
	default:
		return fmt.Errorf("%w: unexpected chunk type %d for %v", ErrProtocol, typ, cl.cmd)
	}
	return nil
}
