package lun

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/cow"
)

// TestDiffAndUniqueBytes: Diff names the grains where two LUNs of one
// family differ; UniqueBytes counts the data only a snapshot holds, what
// deleting it frees.
func TestDiffAndUniqueBytes(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	g := int64(cow.DefaultGrain)
	l := newLUN(t, a, "lun0", 16*g)
	fill := func(b byte, grain int64) {
		require.NoError(t, l.WriteAt(ctx, bytes.Repeat([]byte{b}, int(g)), grain*g, false))
	}
	fill(1, 0) // X in grain 0
	fill(1, 5) // shared by all
	s1, err := a.Snapshot("lun0", "s1")
	require.NoError(t, err)
	fill(2, 0) // Y over X
	fill(2, 1)
	s2, err := a.Snapshot("lun0", "s2")
	require.NoError(t, err)
	fill(3, 1)
	fill(3, 9)

	d, err := a.Diff("s1", "s2")
	require.NoError(t, err)
	require.Equal(t, []cow.Range{{Off: 0, Len: 2 * g}}, d)
	d, err = a.Diff("s2", "")
	require.NoError(t, err, "against the source")
	require.Equal(t, []cow.Range{{Off: g, Len: g}, {Off: 9 * g, Len: g}}, d)
	d, err = a.Diff("lun0", "s1")
	require.NoError(t, err, "either way round")
	require.Equal(t, []cow.Range{{Off: 0, Len: 2 * g}, {Off: 9 * g, Len: g}}, d)

	u, err := s1.UniqueBytes()
	require.NoError(t, err)
	require.Equal(t, g, u, "s1 alone holds X")
	u, err = s2.UniqueBytes()
	require.NoError(t, err)
	require.Equal(t, g, u, "s2 alone holds grain 1's first write; Y is shared with the source")

	_, err = a.Diff("lun0", "")
	require.ErrorIs(t, err, ErrNotSnapshot)
	other := newLUN(t, a, "other", 16*g)
	_ = other
	_, err = a.Diff("s1", "other")
	require.ErrorIs(t, err, ErrNotFamily)
	_, err = a.Diff("s1", "nope")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = l.UniqueBytes()
	require.ErrorIs(t, err, ErrNotSnapshot)
}
