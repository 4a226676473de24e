package lun

import (
	"errors"
	"fmt"

	"github.com/dustin/go-humanize"

	"github.com/shadowbench/shadowbench/vss"
)

// Errors of the array's namespace.
var (
	// ErrNotFound is returned for a LUN name the array does not hold.
	ErrNotFound = errors.New("lun: no such LUN")
	// ErrExists is returned when creating a LUN under a name in use.
	ErrExists = errors.New("lun: a LUN of that name exists")
	// ErrBadName is returned for an empty name, one over 255 bytes, or
	// one with characters outside [A-Za-z0-9._:-].
	ErrBadName = errors.New("lun: LUN names are 1-255 characters of [A-Za-z0-9._:-], other than . and ..")
	// ErrBadGeometry is returned for a block size other than 512 or 4096, or
	// a size that is not a positive multiple of the block size.
	ErrBadGeometry = errors.New("lun: size must be a positive multiple of a 512 or 4096 byte block size")
	// ErrCapacity is returned, inside a *CapacityError, when a thick LUN's
	// size does not fit in the array's capacity beside the other thick
	// LUNs'. Writes past the store's capacity fail with cow.ErrNoSpace.
	ErrCapacity = errors.New("lun: array capacity exceeded")
	// ErrMaxSnapshots is the HRESULT VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED,
	// returned when a LUN already has its maximum number of snapshots.
	ErrMaxSnapshots = vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED
)

// Errors of a LUN's state.
var (
	// ErrDeleted is returned for I/O, holds and snapshots of a deleted LUN.
	ErrDeleted = errors.New("lun: LUN deleted")
	// ErrReadOnly is returned for a write to a read-only LUN.
	ErrReadOnly = errors.New("lun: LUN is read-only")
	// ErrNotSnapshot is returned when an operation needs a snapshot LUN.
	ErrNotSnapshot = errors.New("lun: not a snapshot LUN")
	// ErrNoBase is returned by Changed when there is no image to compare
	// with (no earlier snapshot of the source, or it was deleted).
	ErrNoBase = errors.New("lun: no base image for changed-block tracking")
	// ErrHoldTimeout is returned by Hold.Release when the hold's deadline
	// passed first and the gate released itself (vss-spec.md B.2).
	ErrHoldTimeout = errors.New("lun: hold deadline passed; writes were released")
	// ErrHoldReleased is returned by a second Hold.Release.
	ErrHoldReleased = errors.New("lun: hold already released")
	// ErrInSet is returned when a snapshot of a LUN is prepared while the
	// LUN is in another snapshot group not yet committed or aborted.
	ErrInSet = errors.New("lun: LUN is in another snapshot set being prepared")
	// ErrGroupDone is returned for a snapshot group already committed or
	// aborted.
	ErrGroupDone = errors.New("lun: snapshot group already committed or aborted")
)

// CapacityError is a thick LUN refused because its size does not fit in
// the array's capacity beside the sizes of the thick LUNs already there.
// It unwraps to ErrCapacity.
type CapacityError struct {
	LUN         string
	Size        int64 // the LUN's size
	Capacity    int64 // the array's capacity
	Provisioned int64 // the sum of the thick LUNs' sizes already there
}

// Error names the LUN and the figures, in binary units.
func (e *CapacityError) Error() string {
	free := max(e.Capacity-e.Provisioned, 0)
	return fmt.Sprintf("%v: thick LUN %s of %s does not fit: capacity %s, %s provisioned by thick LUNs, %s free; a thin LUN may overcommit",
		ErrCapacity, e.LUN, iBytes(e.Size), iBytes(e.Capacity), iBytes(e.Provisioned), iBytes(free))
}

// Unwrap returns ErrCapacity.
func (e *CapacityError) Unwrap() error { return ErrCapacity }

// iBytes formats n bytes in binary units, as storage tools read them.
func iBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
