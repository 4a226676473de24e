package nbd

import (
	"io"
	"net"
)

// sendBuf is a connection's write buffer. It buffers what is written to
// it as bufio.Writer does, and adds Ref: a slice of memory that the caller
// keeps unchanged until the next Flush (a READ's pinned grains, see
// cow.Vec) is queued by reference, and goes out with the buffered bytes
// around it in one writev (net.Buffers), so the kernel's copy into the
// socket is the only copy of a READ's data. bufio.Writer was rejected
// because it cannot hand its buffered bytes to a writev: a reply's header
// would cost a write of its own, or the grains behind it a copy.
//
// Over TLS the connection is no buffersWriter, and net.Buffers writes the
// segments one after another: correct, and as many records as segments.
type sendBuf struct {
	w   io.Writer
	buf []byte // copied bytes; never grows past its capacity
	// from is where the bytes of buf not yet in segs begin.
	from int
	// segs is what Flush sends, in order: runs of buf and referenced
	// slices.
	segs net.Buffers
	out  net.Buffers // segs as handed to WriteTo, which consumes it
	err  error
}

// refMin is the shortest slice Ref queues by reference; a shorter one is
// copied, since an iovec costs the kernel about what copying a few hundred
// bytes does.
const refMin = 512

func newSendBuf(size int) *sendBuf { return &sendBuf{buf: make([]byte, 0, size)} }

// Reset discards what is buffered and writes to w from then on.
func (b *sendBuf) Reset(w io.Writer) {
	clear(b.segs)
	b.segs, b.buf, b.from, b.err, b.w = b.segs[:0], b.buf[:0], 0, nil, w
}

// Write copies p into the buffer, flushing as it fills.
func (b *sendBuf) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if b.err != nil {
			return n - len(p), b.err
		}
		if len(b.buf) == cap(b.buf) {
			if err := b.Flush(); err != nil {
				return n - len(p), err
			}
		}
		k := copy(b.buf[len(b.buf):cap(b.buf)], p)
		b.buf, p = b.buf[:len(b.buf)+k], p[k:]
	}
	return n, b.err
}

// WriteString is Write for a string.
func (b *sendBuf) WriteString(s string) (int, error) {
	n := len(s)
	for len(s) > 0 {
		if b.err != nil {
			return n - len(s), b.err
		}
		if len(b.buf) == cap(b.buf) {
			if err := b.Flush(); err != nil {
				return n - len(s), err
			}
		}
		k := copy(b.buf[len(b.buf):cap(b.buf)], s)
		b.buf, s = b.buf[:len(b.buf)+k], s[k:]
	}
	return n, b.err
}

// Ref queues p by reference: the caller must not change or reuse p until
// Flush returns. Slices shorter than refMin are copied instead.
func (b *sendBuf) Ref(p []byte) error {
	if len(p) < refMin && cap(b.buf)-len(b.buf) >= len(p) {
		_, err := b.Write(p)
		return err
	}
	if b.err != nil {
		return b.err
	}
	b.cut()
	b.segs = append(b.segs, p)
	return nil
}

// cut moves the bytes buffered since the last cut into segs.
func (b *sendBuf) cut() {
	if len(b.buf) > b.from {
		b.segs = append(b.segs, b.buf[b.from:len(b.buf):len(b.buf)])
		b.from = len(b.buf)
	}
}

// Buffered is the number of bytes waiting for Flush, copied or referenced.
func (b *sendBuf) Buffered() int {
	n := len(b.buf) - b.from
	for _, s := range b.segs {
		n += len(s)
	}
	return n
}

// Flush sends everything queued, in one writev where the connection can.
// After an error every call returns it.
func (b *sendBuf) Flush() error {
	if b.err != nil {
		return b.err
	}
	b.cut()
	if len(b.segs) == 0 {
		return nil
	}
	n := len(b.segs)
	b.out = b.segs
	_, err := b.out.WriteTo(b.w)
	clear(b.segs[:n])
	b.out, b.segs, b.buf, b.from = nil, b.segs[:0], b.buf[:0], 0
	if cap(b.segs) > maxKeptSegs {
		b.segs = nil
	}
	b.err = err
	return err
}

// maxKeptSegs bounds the segment capacity a sendBuf keeps between
// flushes.
const maxKeptSegs = 4096
