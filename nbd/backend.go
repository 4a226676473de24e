package nbd

import (
	"context"

	"github.com/shadowbench/shadowbench/cow"
)

// Backend is what the server needs of an export; *lun.LUN satisfies it.
// Every method is called concurrently from the connection's workers.
type Backend interface {
	// Size is the export's size in bytes, read once when a client selects it.
	Size() int64
	// BlockSize is the preferred I/O size (512 or 4096); any byte-aligned
	// I/O must be accepted.
	BlockSize() int
	// ReadOnly exports refuse WRITE, TRIM and WRITE_ZEROES with EPERM.
	ReadOnly() bool
	// Description is shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION.
	Description() string
	ReadAt(ctx context.Context, p []byte, off int64) error
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	Flush(ctx context.Context) error
	Trim(ctx context.Context, off, length int64) error
	WriteZeroes(ctx context.Context, off, length int64, noHole bool) error
	// Extents covers [off, off+length) exactly with merged extents.
	Extents(ctx context.Context, off, length int64) ([]cow.Extent, error)
}

// ChangeTracker is a Backend that can list the ranges changed since its base
// image (for a snapshot LUN, the previous snapshot of its source); it is
// found by type assertion, and backends that implement it offer the
// MetaChanged context. When there is no base image (lun.ErrNoBase) the
// context reports every block as changed: with nothing to compare against,
// an incremental backup must copy everything.
type ChangeTracker interface {
	Changed(ctx context.Context, off, length int64) ([]cow.Range, error)
}

// HoleReader is a Backend that can pass a read it does not copy through
// its read path: ReadHoles does for [off, off+length) what ReadAt does
// before and after its copy (for a LUN: the I/O gate, read faults and
// statistics). The server calls it for a structured READ that it answers
// with hole chunks only; for a backend without it, it calls ReadAt with an
// empty buffer at off, which applies the read path but counts no bytes.
type HoleReader interface {
	ReadHoles(ctx context.Context, off, length int64) error
}

// VecReader is a Backend that can read without copying: ReadVec does what
// ReadAt does, but leaves the bytes where they are and fills vec with
// slices of them, pinned until vec.Release (see cow.Vec). The server sends
// them by reference (one writev for a reply and the replies around it)
// and releases the Vec once the send naming them has returned.
type VecReader interface {
	ReadVec(ctx context.Context, vec *cow.Vec, off, length int64) error
}

// ExportInfo names an export in NBD_OPT_LIST.
type ExportInfo struct {
	Name        string
	Description string
}

// Catalog is where the server finds exports, at the moment a client asks:
// an export created after the server started is reachable, and a deleted
// one leaves the list.
type Catalog interface {
	// Lookup returns the named export, or an error when there is none.
	Lookup(name string) (Backend, error)
	// List returns the exports to advertise, in a stable order.
	List() []ExportInfo
}
