package cow

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckpointWritesInPlace checks C8: after a Checkpoint, overwrites
// allocate nothing and leave the checkpoint's map as it was, writes into
// holes allocate as ever, and a Snapshot taken after a checkpoint is still
// immutable (C2).
func TestCheckpointWritesInPlace(t *testing.T) {
	v := newVol(t, 4096, 4*mib) // four leaves
	for off := int64(0); off < v.Size(); off += 64 * kib {
		_, err := v.WriteAt(fill(4096, 1), off)
		require.NoError(t, err)
	}
	data := v.Store().Stats().DataBytes
	cp, err := v.Checkpoint()
	require.NoError(t, err)
	before := grainMap(t, cp)

	for off := int64(0); off < v.Size(); off += 64 * kib {
		_, err := v.WriteAt(fill(4096, 2), off)
		require.NoError(t, err)
	}
	require.Equal(t, data, v.Store().Stats().DataBytes, "overwrites after a checkpoint allocated")
	require.Equal(t, before, grainMap(t, cp), "the checkpoint's map changed")

	cp2, err := v.Checkpoint()
	require.NoError(t, err)
	var changed int
	require.NoError(t, ChangedGrains(cp, cp2, func(uint64, Grain) error { changed++; return nil }))
	require.Zero(t, changed, "in-place overwrites changed the map")

	_, err = v.WriteAt(fill(4096, 3), 4096) // a hole
	require.NoError(t, err)
	require.Equal(t, data+4096, v.Store().Stats().DataBytes)

	snap := mustSnap(t, v)
	want := readAll(t, snap)
	_, err = v.WriteAt(fill(4096, 4), 0)
	require.NoError(t, err)
	require.Equal(t, want, readAll(t, snap), "a snapshot after a checkpoint changed (C2)")
	require.Equal(t, data+2*4096, v.Store().Stats().DataBytes, "the write after a snapshot did not copy")

	_, err = cp.Clone()
	require.ErrorIs(t, err, ErrMapOnly)
	require.ErrorIs(t, v.Revert(cp2), ErrMapOnly)
	d, err := cp2.Dup()
	require.NoError(t, err)
	_, err = d.Clone()
	require.ErrorIs(t, err, ErrMapOnly)

	// Releasing every checkpoint frees nothing the volume still maps, and
	// then everything (C5).
	for _, im := range []*Image{cp, cp2, d, snap} {
		require.NoError(t, im.Release())
	}
	require.Equal(t, data+4096, v.Store().Stats().DataBytes)
	require.NoError(t, v.Release())
	require.Zero(t, v.Store().Stats().DataBytes)
}
