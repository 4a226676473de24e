package nbd

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"
)

// pipeConn is a net.Conn that reads a fixed client byte stream and throws
// the server's replies away.
type pipeConn struct{ r *bytes.Reader }

var _ net.Conn = (*pipeConn)(nil)

func (p *pipeConn) Read(b []byte) (int, error)       { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzAllocBound is what one fuzzed connection may allocate: its I/O
// buffers, one option, MaxInFlight payloads of fuzzMaxPayload and the
// backend's extent lists, with room to spare. A length taken from the input
// and allocated would blow it (N1).
const (
	fuzzMaxPayload  = 4 << 10
	fuzzMaxInFlight = 4
	fuzzAllocBound  = 8 << 20
)

func fuzzServer() *Server {
	ro := newMem(1 << 20)
	ro.ro = true
	cat := newCatalog(map[string]*memBackend{"lun0": newMem(1 << 20), "ro": ro})
	return NewServer(cat, Options{MaxPayload: fuzzMaxPayload, MaxInFlight: fuzzMaxInFlight, Logger: discardLogger()})
}

func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func checkAllocs(t *testing.T, before uint64) {
	if n := allocated() - before; n > fuzzAllocBound {
		t.Fatalf("one connection allocated %d bytes, bound %d", n, fuzzAllocBound)
	}
}

// clientStream builds client bytes for seeds.
type clientStream struct{ b []byte }

func (s *clientStream) option(opt uint32, data []byte) *clientStream {
	s.b = be.AppendUint64(s.b, magicOption)
	s.b = be.AppendUint32(s.b, opt)
	s.b = be.AppendUint32(s.b, uint32(len(data)))
	s.b = append(s.b, data...)
	return s
}

func (s *clientStream) request(flags CmdFlags, cmd Command, off uint64, length uint32, payload []byte) *clientStream {
	s.b = be.AppendUint32(s.b, magicRequest)
	s.b = be.AppendUint16(s.b, uint16(flags))
	s.b = be.AppendUint16(s.b, uint16(cmd))
	s.b = be.AppendUint64(s.b, 1)
	s.b = be.AppendUint64(s.b, off)
	s.b = be.AppendUint32(s.b, length)
	s.b = append(s.b, payload...)
	return s
}

func requestSeed() []byte {
	s := &clientStream{}
	s.request(0, CmdWrite, 100, 5, []byte("hello")).
		request(CmdFlagFUA, CmdWrite, 4096, 2048, make([]byte, 2048)).
		request(0, CmdRead, 0, 8192, nil).
		request(CmdFlagDF, CmdRead, 0, 8192, nil).
		request(0, CmdRead, 0, 0, nil).
		request(0, CmdTrim, 0, 4096, nil).
		request(CmdFlagNoHole|CmdFlagFastZero, CmdWriteZeroes, 8192, 4096, nil).
		request(CmdFlagReqOne, CmdBlockStatus, 0, 1<<20, nil).
		request(0, CmdBlockStatus, 0, 1<<20, nil).
		request(0, CmdCache, 0, 1<<20, nil).
		request(0, CmdFlush, 0, 0, nil).
		request(0, CmdWrite, 1<<20-2, 5, []byte("past!")).
		request(0, CmdWrite, 0, fuzzMaxPayload+1, make([]byte, fuzzMaxPayload+1)).
		request(0, Command(99), 0, 0, nil).
		request(0, CmdDisc, 0, 0, nil)
	return s.b
}

func FuzzHandshake(f *testing.F) {
	flags := be.AppendUint32(nil, clFlagFixedNewstyle|clFlagNoZeroes)
	goLun := be.AppendUint16(appendString32(nil, "lun0"), 3)
	goLun = be.AppendUint16(be.AppendUint16(be.AppendUint16(goLun, infoName), infoDescription), infoBlockSize)
	meta := be.AppendUint32(appendString32(nil, "lun0"), 2)
	meta = appendString32(appendString32(meta, MetaBaseAllocation), MetaChanged)

	s := &clientStream{b: bytes.Clone(flags)}
	s.option(optList, nil).option(optStructured, nil).option(optSetMetaCtx, meta).
		option(optListMetaCtx, be.AppendUint32(appendString32(nil, "lun0"), 0)).
		option(optInfo, goLun).option(optStartTLS, nil).option(optGo, goLun)
	f.Add(append(s.b, requestSeed()...))
	f.Add((&clientStream{b: bytes.Clone(flags)}).option(optExportName, []byte("lun0")).b)
	f.Add((&clientStream{b: bytes.Clone(flags)}).option(optExportName, []byte("nope")).b)
	f.Add((&clientStream{b: bytes.Clone(flags)}).option(optAbort, nil).b)
	f.Add((&clientStream{b: bytes.Clone(flags)}).option(optGo, appendString32(nil, "ro")).b)
	f.Add(append(bytes.Clone(flags), be.AppendUint32(be.AppendUint32(be.AppendUint64(nil, magicOption), optInfo), 1<<31)...))
	f.Add([]byte{0, 0, 0, 3})

	srv := fuzzServer()
	f.Fuzz(func(t *testing.T, data []byte) {
		before := allocated()
		c := newConn(srv, context.Background(), &pipeConn{r: bytes.NewReader(data)})
		c.serve()
		checkAllocs(t, before)
	})
}

// requestServer is FuzzRequest's server; its catalog and backends persist
// across inputs like a long-running server's.
var requestServer = fuzzServer()

func FuzzRequest(f *testing.F) {
	seed := requestSeed()
	for mode := range byte(16) {
		f.Add(append([]byte{mode}, seed...))
	}
	f.Add([]byte{1, 0x25, 0x60, 0x95, 0x13, 0, 0})
	f.Fuzz(runFuzzRequest)
}

func runFuzzRequest(t *testing.T, data []byte) {
	if len(data) == 0 {
		return
	}
	srv := requestServer
	before := allocated()
	mode := data[0]
	c := newConn(srv, context.Background(), &pipeConn{r: bytes.NewReader(data[1:])})
	c.br = bufio.NewReaderSize(c.rw, readBufSize)
	c.bw = newSendBuf(ioBufSize)
	c.bw.Reset(c.rw)
	c.structured = mode&1 != 0
	if c.structured && mode&2 != 0 {
		c.meta = append(c.meta, metaAlloc)
	}
	if c.structured && mode&4 != 0 {
		c.meta = append(c.meta, metaChanged)
	}
	name := "lun0"
	if mode&8 != 0 {
		name = "ro"
	}
	c.metaExport = name
	b, err := srv.cat.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	c.selectExport(name, b)
	c.transmit()
	c.stop()
	checkAllocs(t, before)
}
