package cow

import "errors"

// Errors of argument checking. Nothing is written when one is returned.
var (
	// ErrOutOfRange is returned for an offset or length outside the volume,
	// including lengths whose end overflows.
	ErrOutOfRange = errors.New("cow: range outside the volume")
	// ErrGrainSize is returned for a grain size that is not a power of two
	// from MinGrain to MaxGrain.
	ErrGrainSize = errors.New("cow: grain size must be a power of two from 512 B to 64 KiB")
	// ErrSize is returned for a volume size that is not positive or too large.
	ErrSize = errors.New("cow: volume size must be positive and at most 1 EiB")
	// ErrMismatch is returned when two images or an image and a volume do
	// not share a store, a grain size and a size.
	ErrMismatch = errors.New("cow: images are not of one geometry and store")
)

// Errors of state.
var (
	// ErrReadOnly is returned for a write to an image. Images never change
	// (C2); clone one to write.
	ErrReadOnly = errors.New("cow: image is read-only")
	// ErrReleased is returned for any use of a volume or image after
	// Release.
	ErrReleased = errors.New("cow: volume or image released")
	// ErrNoSpace is returned when the store cannot hold the blocks a write
	// needs. Nothing of that write is applied.
	ErrNoSpace = errors.New("cow: store is full")
	// ErrBusy is returned by Group.Add for a volume that is already in an
	// open group: a volume belongs to one at a time.
	ErrBusy = errors.New("cow: volume is in another open group")
	// ErrGroupDone is returned for a group that has already committed or
	// aborted.
	ErrGroupDone = errors.New("cow: group already committed or aborted")
	// ErrNotCommitted is returned for the use of an image whose Group has
	// not committed (or aborted).
	ErrNotCommitted = errors.New("cow: image not committed")
	// ErrMapOnly is returned for a Clone or Revert of a Checkpoint's
	// image, whose data the volume still writes in place (C8).
	ErrMapOnly = errors.New("cow: a checkpoint image fixes a map, not data: it cannot be cloned or reverted to")
)
