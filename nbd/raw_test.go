package nbd

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawConn speaks the protocol byte by byte, for tests that look at the
// wire or break the rules.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func rawDial(t testing.TB, ts *testServer) *rawConn {
	t.Helper()
	c, err := net.Dial(ts.network, ts.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	var hello [18]byte
	_, err = io.ReadFull(r.br, hello[:])
	require.NoError(t, err)
	require.Equal(t, magicInit, be.Uint64(hello[0:]))
	require.Equal(t, magicOption, be.Uint64(hello[8:]))
	require.Equal(t, hsFlagFixedNewstyle|hsFlagNoZeroes, be.Uint16(hello[16:]))
	r.write(be.AppendUint32(nil, clFlagFixedNewstyle|clFlagNoZeroes))
	return r
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_, err := r.c.Write(b)
	require.NoError(r.t, err)
}

func (r *rawConn) option(opt uint32, data []byte) {
	r.t.Helper()
	b := be.AppendUint64(nil, magicOption)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, uint32(len(data)))
	r.write(append(b, data...))
}

func (r *rawConn) reply(opt uint32) (uint32, []byte) {
	r.t.Helper()
	var h [20]byte
	_, err := io.ReadFull(r.br, h[:])
	require.NoError(r.t, err)
	require.Equal(r.t, magicOptionReply, be.Uint64(h[0:]))
	require.Equal(r.t, opt, be.Uint32(h[8:]))
	data := make([]byte, be.Uint32(h[16:]))
	_, err = io.ReadFull(r.br, data)
	require.NoError(r.t, err)
	return be.Uint32(h[12:]), data
}

// goExport negotiates structured replies (if asked) and enters
// transmission on name with NBD_OPT_GO.
func (r *rawConn) goExport(name string, structured bool) {
	r.t.Helper()
	if structured {
		r.option(optStructured, nil)
		typ, _ := r.reply(optStructured)
		require.Equal(r.t, repAck, typ)
	}
	q := appendString32(nil, name)
	q = be.AppendUint16(q, 0)
	r.option(optGo, q)
	for {
		typ, _ := r.reply(optGo)
		if typ == repAck {
			return
		}
		require.Equal(r.t, repInfo, typ)
	}
}

func (r *rawConn) request(flags CmdFlags, cmd Command, handle, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	b := be.AppendUint32(nil, magicRequest)
	b = be.AppendUint16(b, uint16(flags))
	b = be.AppendUint16(b, uint16(cmd))
	b = be.AppendUint64(b, handle)
	b = be.AppendUint64(b, off)
	b = be.AppendUint32(b, length)
	r.write(append(b, payload...))
}

type rawChunk struct {
	flags, typ uint16
	handle     uint64
	payload    []byte
}

func (r *rawConn) chunk() rawChunk {
	r.t.Helper()
	var h [20]byte
	_, err := io.ReadFull(r.br, h[:])
	require.NoError(r.t, err)
	require.Equal(r.t, magicStructured, be.Uint32(h[0:]))
	ch := rawChunk{flags: be.Uint16(h[4:]), typ: be.Uint16(h[6:]), handle: be.Uint64(h[8:])}
	ch.payload = make([]byte, be.Uint32(h[16:]))
	_, err = io.ReadFull(r.br, ch.payload)
	require.NoError(r.t, err)
	return ch
}

// simple reads a simple reply header.
func (r *rawConn) simple() (Errno, uint64) {
	r.t.Helper()
	var h [16]byte
	_, err := io.ReadFull(r.br, h[:])
	require.NoError(r.t, err)
	require.Equal(r.t, magicSimple, be.Uint32(h[0:]))
	return Errno(be.Uint32(h[4:])), be.Uint64(h[8:])
}

// closed asserts that the server closed the connection.
func (r *rawConn) closed() {
	r.t.Helper()
	_, err := io.ReadAll(r.br)
	if err != nil {
		require.False(r.t, isTimeout(err), "server should close the connection: %v", err)
	}
}

// leanDial opens a connection and, with export set, negotiates NBD_OPT_GO
// without keeping a buffer: all that stays on the client's side is the
// socket, so what an idle connection costs is the server's part.
func leanDial(t testing.TB, network, addr, export string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	if export == "" {
		return c
	}
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	var hello [18]byte
	_, err = io.ReadFull(c, hello[:])
	require.NoError(t, err)
	b := be.AppendUint32(nil, clFlagFixedNewstyle|clFlagNoZeroes)
	q := be.AppendUint16(appendString32(nil, export), 0)
	b = be.AppendUint64(b, magicOption)
	b = be.AppendUint32(b, optGo)
	b = be.AppendUint32(b, uint32(len(q)))
	_, err = c.Write(append(b, q...))
	require.NoError(t, err)
	for {
		var h [20]byte
		_, err := io.ReadFull(c, h[:])
		require.NoError(t, err)
		_, err = io.CopyN(io.Discard, c, int64(be.Uint32(h[16:])))
		require.NoError(t, err)
		typ := be.Uint32(h[12:])
		if typ == repAck {
			break
		}
		require.Equal(t, repInfo, typ)
	}
	require.NoError(t, c.SetDeadline(time.Time{}))
	return c
}
