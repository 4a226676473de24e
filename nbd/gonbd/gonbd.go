// Package gonbd lets github.com/pojntfx/go-nbd serve shadowbench LUNs: a
// *lun.LUN adapted to go-nbd's backend.Backend, for go-nbd users and as the
// peer in the NBD benchmark.
//
// go-nbd's interface has no context, so every call runs under
// context.Background; ReadAt and WriteAt keep io.ReaderAt's and
// io.WriterAt's contracts (a short read past the end returns io.EOF, a
// write that does not fit fails and writes nothing).
package gonbd

import (
	"context"
	"io"

	"github.com/pojntfx/go-nbd/pkg/backend"
	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/lun"
)

// Backend adapts l to go-nbd's backend.Backend.
func Backend(l *lun.LUN) backend.Backend { return &adapter{l: l} }

type adapter struct{ l *lun.LUN }

var _ backend.Backend = (*adapter)(nil)

// ReadAt reads up to the end of the LUN; a read that reaches past it
// returns the bytes before the end and io.EOF.
func (a *adapter) ReadAt(p []byte, off int64) (int, error) {
	size := a.l.Size()
	if off < 0 {
		return 0, cow.ErrOutOfRange
	}
	if off >= size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), size-off))
	if err := a.l.ReadAt(context.Background(), p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes all of p or nothing.
func (a *adapter) WriteAt(p []byte, off int64) (int, error) {
	if err := a.l.WriteAt(context.Background(), p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Size is the LUN's size; a deleted LUN reports lun.ErrDeleted.
func (a *adapter) Size() (int64, error) {
	if a.l.Deleted() {
		return 0, lun.ErrDeleted
	}
	return a.l.Size(), nil
}

// Sync flushes the LUN.
func (a *adapter) Sync() error { return a.l.Flush(context.Background()) }
