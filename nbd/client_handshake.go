package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// maxOptionReply bounds an option reply the client reads.
const maxOptionReply = MaxOptionLen

// clientHandshake is the client's side of option haggling.
type clientHandshake struct {
	ctx      context.Context
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	stop     func() bool
	fixed    bool
	noZeroes bool
	buf      []byte
}

// dialHandshake connects and completes the greeting (and STARTTLS when
// tc is set). ctx bounds the whole handshake, which ends with h.stop.
func dialHandshake(ctx context.Context, network, addr string, tc *tls.Config) (*clientHandshake, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	h := &clientHandshake{ctx: ctx, nc: nc}
	h.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	if err := h.greet(tc); err != nil {
		h.stop()
		_ = nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return h, nil
}

func (h *clientHandshake) greet(tc *tls.Config) error {
	h.br = bufio.NewReaderSize(h.nc, ioBufSize)
	h.bw = bufio.NewWriterSize(h.nc, 4096)
	var hello [18]byte
	if _, err := io.ReadFull(h.br, hello[:]); err != nil {
		return err
	}
	if be.Uint64(hello[0:]) != magicInit || be.Uint64(hello[8:]) != magicOption {
		return fmt.Errorf("%w: not a newstyle NBD server", ErrProtocol)
	}
	sflags := be.Uint16(hello[16:])
	var cflags uint32
	if sflags&hsFlagFixedNewstyle != 0 {
		h.fixed = true
		cflags |= clFlagFixedNewstyle
	}
	if sflags&hsFlagNoZeroes != 0 {
		h.noZeroes = true
		cflags |= clFlagNoZeroes
	}
	var b [4]byte
	be.PutUint32(b[:], cflags)
	h.bw.Write(b[:])
	if err := h.bw.Flush(); err != nil {
		return err
	}
	if tc == nil {
		return nil
	}
	if !h.fixed {
		return fmt.Errorf("%w: TLS needs fixed newstyle", ErrUnsupported)
	}
	if err := h.send(optStartTLS, nil); err != nil {
		return err
	}
	typ, _, err := h.reply(optStartTLS)
	if err != nil {
		return err
	}
	if typ != repAck {
		return fmt.Errorf("%w: unexpected reply %d to STARTTLS", ErrProtocol, typ)
	}
	tconn := tls.Client(h.nc, tc)
	if err := tconn.Handshake(); err != nil {
		return err
	}
	h.nc = tconn
	h.br.Reset(tconn)
	h.bw.Reset(tconn)
	return nil
}

func (h *clientHandshake) send(opt uint32, data []byte) error {
	var hdr [optionHeaderLen]byte
	be.PutUint64(hdr[0:], magicOption)
	be.PutUint32(hdr[8:], opt)
	be.PutUint32(hdr[12:], uint32(len(data)))
	h.bw.Write(hdr[:])
	h.bw.Write(data)
	return h.bw.Flush()
}

// reply reads one option reply; an error reply type is returned as an
// *OptionError.
func (h *clientHandshake) reply(opt uint32) (uint32, []byte, error) {
	var hdr [optionReplyHeaderLen]byte
	if _, err := io.ReadFull(h.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	if be.Uint64(hdr[0:]) != magicOptionReply || be.Uint32(hdr[8:]) != opt {
		return 0, nil, fmt.Errorf("%w: bad option reply", ErrProtocol)
	}
	typ, n := be.Uint32(hdr[12:]), be.Uint32(hdr[16:])
	if n > maxOptionReply {
		return 0, nil, fmt.Errorf("%w: option reply of %d bytes", ErrProtocol, n)
	}
	if cap(h.buf) < int(n) {
		h.buf = make([]byte, n)
	}
	data := h.buf[:n]
	if _, err := io.ReadFull(h.br, data); err != nil {
		return 0, nil, err
	}
	if typ&repErrBit != 0 {
		msg := data
		if len(msg) > MaxStringLen {
			msg = msg[:MaxStringLen]
		}
		return typ, nil, &OptionError{Option: opt, Reply: typ, Message: string(msg)}
	}
	return typ, data, nil
}

func appendString32(b []byte, s string) []byte {
	b = be.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// negotiate selects the export and returns the running client.
func (h *clientHandshake) negotiate(opts *DialOptions) (*Client, error) {
	defer h.stop()
	if len(opts.Export) > MaxStringLen {
		return nil, fmt.Errorf("%w: export name longer than %d bytes", ErrTooLarge, MaxStringLen)
	}
	if !h.fixed {
		return h.exportName(opts)
	}
	structured := false
	if !opts.NoStructuredReplies {
		if err := h.send(optStructured, nil); err != nil {
			return nil, err
		}
		typ, _, err := h.reply(optStructured)
		var oe *OptionError
		switch {
		case err == nil && typ == repAck:
			structured = true
		case errors.As(err, &oe):
		case err != nil:
			return nil, err
		}
	}
	meta := map[uint32]string{}
	var metaNames []string
	if structured && len(opts.MetaContexts) > 0 {
		q := appendString32(nil, opts.Export)
		q = be.AppendUint32(q, uint32(len(opts.MetaContexts)))
		for _, m := range opts.MetaContexts {
			q = appendString32(q, m)
		}
		if err := h.send(optSetMetaCtx, q); err != nil {
			return nil, err
		}
		for {
			typ, data, err := h.reply(optSetMetaCtx)
			if err != nil {
				return nil, err
			}
			if typ == repAck {
				break
			}
			if typ != repMetaContext || len(data) < 4 {
				return nil, fmt.Errorf("%w: bad meta context reply", ErrProtocol)
			}
			name := string(data[4:])
			meta[be.Uint32(data)] = name
			metaNames = append(metaNames, name)
		}
	}

	q := appendString32(nil, opts.Export)
	q = be.AppendUint16(q, 3)
	q = be.AppendUint16(q, infoName)
	q = be.AppendUint16(q, infoDescription)
	q = be.AppendUint16(q, infoBlockSize)
	if err := h.send(optGo, q); err != nil {
		return nil, err
	}
	info := Info{Name: opts.Export}
	gotExport := false
	for {
		typ, data, err := h.reply(optGo)
		var oe *OptionError
		if errors.As(err, &oe) && oe.Reply == repErrUnsup {
			return h.exportName(opts)
		}
		if err != nil {
			return nil, err
		}
		if typ == repAck {
			break
		}
		if typ != repInfo || len(data) < 2 {
			return nil, fmt.Errorf("%w: bad NBD_OPT_GO reply", ErrProtocol)
		}
		switch be.Uint16(data) {
		case infoExport:
			if len(data) != 12 {
				return nil, fmt.Errorf("%w: bad NBD_INFO_EXPORT", ErrProtocol)
			}
			info.Size = int64(be.Uint64(data[2:]))
			info.Flags = TransmissionFlags(be.Uint16(data[10:]))
			gotExport = true
		case infoName:
			info.Name = string(data[2:])
		case infoDescription:
			info.Description = string(data[2:])
		case infoBlockSize:
			if len(data) != 14 {
				return nil, fmt.Errorf("%w: bad NBD_INFO_BLOCK_SIZE", ErrProtocol)
			}
			info.MinBlock, info.PreferredBlock, info.MaxBlock = be.Uint32(data[2:]), be.Uint32(data[6:]), be.Uint32(data[10:])
		}
	}
	if !gotExport {
		return nil, fmt.Errorf("%w: NBD_OPT_GO without NBD_INFO_EXPORT", ErrProtocol)
	}
	if err := h.transmission(); err != nil {
		return nil, err
	}
	c := newClient(h.nc, h.br, structured, opts.MaxInFlight)
	c.info, c.meta, c.metaNames = info, meta, metaNames
	c.start()
	return c, nil
}

// transmission detaches the handshake from its context: the connection now
// lives until Close.
func (h *clientHandshake) transmission() error {
	if !h.stop() {
		return h.ctx.Err()
	}
	return h.nc.SetDeadline(time.Time{})
}

// exportName enters transmission the old way, for servers without
// NBD_OPT_GO.
func (h *clientHandshake) exportName(opts *DialOptions) (*Client, error) {
	if err := h.send(optExportName, []byte(opts.Export)); err != nil {
		return nil, err
	}
	n := 10
	if !h.noZeroes {
		n += exportNameZeroesLen
	}
	var b [10 + exportNameZeroesLen]byte
	if _, err := io.ReadFull(h.br, b[:n]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownExport, opts.Export)
		}
		return nil, err
	}
	if err := h.transmission(); err != nil {
		return nil, err
	}
	c := newClient(h.nc, h.br, false, opts.MaxInFlight)
	c.info = Info{Name: opts.Export, Size: int64(be.Uint64(b[:])), Flags: TransmissionFlags(be.Uint16(b[8:]))}
	c.start()
	return c, nil
}

func (h *clientHandshake) list() ([]ExportInfo, error) {
	if !h.fixed {
		return nil, fmt.Errorf("%w: NBD_OPT_LIST needs fixed newstyle", ErrUnsupported)
	}
	if err := h.send(optList, nil); err != nil {
		return nil, err
	}
	var out []ExportInfo
	for {
		typ, data, err := h.reply(optList)
		if err != nil {
			return nil, err
		}
		if typ == repAck {
			return out, nil
		}
		if typ != repServer || len(data) < 4 || uint64(be.Uint32(data)) > uint64(len(data)-4) {
			return nil, fmt.Errorf("%w: bad NBD_REP_SERVER", ErrProtocol)
		}
		n := be.Uint32(data)
		out = append(out, ExportInfo{Name: string(data[4 : 4+n]), Description: string(data[4+n:])})
		if len(out) > 1<<16 {
			return nil, fmt.Errorf("%w: too many exports", ErrProtocol)
		}
	}
}

// abort ends negotiation with NBD_OPT_ABORT; the server's answer is optional.
func (h *clientHandshake) abort() {
	if h.send(optAbort, nil) == nil {
		_, _, _ = h.reply(optAbort)
	}
}
