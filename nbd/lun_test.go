package nbd

import (
	"syscall"
	"testing"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/stretchr/testify/require"
)

// newArray returns an array with the named LUNs of size bytes.
func newArray(t testing.TB, size int64, names ...string) *lun.Array {
	t.Helper()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	for _, n := range names {
		_, err := a.Create(n, lun.Options{Size: size, BlockSize: 4096})
		require.NoError(t, err)
	}
	return a
}

// snapshot takes and unmasks a snapshot LUN, as a provider's LocateLuns would.
func snapshot(t testing.TB, a *lun.Array, source, name string) *lun.LUN {
	t.Helper()
	s, err := a.Snapshot(source, name)
	require.NoError(t, err)
	s.SetMasked(false)
	return s
}

func TestArrayCatalogServesLUNsAndSnapshots(t *testing.T) {
	a := newArray(t, testSize, "lun0")
	_, err := a.Create("hidden", lun.Options{Size: 1 << 20, Masked: true})
	require.NoError(t, err)
	ts := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	ctx := tctx(t)

	list, err := List(ctx, ts.network, ts.addr, nil)
	require.NoError(t, err)
	require.Len(t, list, 1, "masked LUNs are not exported")
	require.Equal(t, "lun0", list[0].Name)
	l0, _ := a.Get("lun0")
	require.Equal(t, l0.Description(), list[0].Description)
	_, err = Dial(ctx, ts.network, ts.addr, &DialOptions{Export: "hidden"})
	require.ErrorIs(t, err, ErrUnknownExport)

	c := ts.dial(t, allMeta("lun0"))
	require.Equal(t, uint32(4096), c.Info().PreferredBlock)
	first := pattern(64<<10, 1)
	require.NoError(t, c.Write(ctx, first, 0, 0))
	st, err := c.BlockStatus(ctx, 0, 1<<20, 0)
	require.NoError(t, err)
	require.Equal(t, []BlockDescriptor{{64 << 10, 0}, {1<<20 - 64<<10, StateHole | StateZero}}, st[0].Descriptors)
	require.Equal(t, []BlockDescriptor{{1 << 20, StateChanged}}, st[1].Descriptors,
		"no snapshot yet: everything counts as changed")

	snapshot(t, a, "lun0", "s1")
	second := pattern(8192, 2)
	require.NoError(t, c.Write(ctx, second, 1<<20, 0))
	snapshot(t, a, "lun0", "s2")

	s1 := ts.dial(t, allMeta("s1"))
	require.True(t, s1.Flags()&FlagReadOnly != 0)
	require.Zero(t, s1.Flags()&(FlagSendTrim|FlagSendWriteZeroes))
	got := make([]byte, len(first))
	require.NoError(t, s1.Read(ctx, got, 0))
	require.Equal(t, first, got)
	require.ErrorIs(t, s1.Write(ctx, []byte("x"), 0, 0), syscall.EPERM)
	require.NoError(t, s1.Read(ctx, got[:8192], 1<<20))
	require.Equal(t, make([]byte, 8192), got[:8192], "s1 predates the second write")

	s2 := ts.dial(t, allMeta("s2"))
	st, err = s2.BlockStatus(ctx, 0, 2<<20, 0)
	require.NoError(t, err)
	require.Equal(t, MetaChanged, st[1].Context)
	require.Equal(t, []BlockDescriptor{{1 << 20, 0}, {8192, StateChanged}, {1<<20 - 8192, 0}}, st[1].Descriptors,
		"s2 differs from s1 only where the second write landed")

	// Deleting the LUN: it leaves the list; its connection gets errors.
	require.NoError(t, a.Delete("lun0"))
	list, err = List(ctx, ts.network, ts.addr, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"s1", "s2"}, []string{list[0].Name, list[1].Name})
	require.ErrorIs(t, c.Write(ctx, []byte("x"), 0, 0), syscall.EIO)
	require.ErrorIs(t, c.Read(ctx, got, 0), syscall.EIO)
	require.NoError(t, c.Disconnect(ctx))
	require.NoError(t, s2.Read(ctx, got[:8192], 1<<20), "snapshots outlive their source")
	require.Equal(t, second, got[:8192])
}

func TestArrayCatalogErrnoMapping(t *testing.T) {
	require.Equal(t, EPERM, errnoOf(lun.ErrReadOnly))
	require.Equal(t, EIO, errnoOf(lun.ErrDeleted))
	require.True(t, isNoBase(lun.ErrNoBase))
	require.False(t, isNoBase(lun.ErrDeleted))
}
