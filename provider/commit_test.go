package provider_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// ioCounts returns each LUN's operation counts, without latencies.
func ioCounts(luns ...*lun.LUN) [][3]int64 {
	var out [][3]int64
	for _, l := range luns {
		for _, s := range l.Stats() {
			out = append(out, [3]int64{s.Ops, s.Bytes, s.Errors})
		}
	}
	return out
}

// TestCommitSnapshotsCommitsEveryPreparedLUN checks P4 and cow C2/C4: after
// CommitSnapshots returns, every LUN of the set has a snapshot LUN holding
// exactly what was written before the commit, readable at once, and later
// writes do not show through it.
func TestCommitSnapshotsCommitsEveryPreparedLUN(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 4)
	before := make([][]byte, len(b.luns))
	for i, l := range b.luns {
		before[i] = bytes.Repeat([]byte{byte('a' + i)}, 8192)
		require.NoError(t, l.WriteAt(ctx, before[i], 4096, false))
	}
	set := vss.NewID()
	b.run(set, 4)

	for i, dev := range b.devices {
		target, err := b.a.Get(provider.TargetName(dev, set))
		require.NoError(t, err)
		require.Equal(t, lun.Snapshot, target.Kind())
		require.Same(t, b.luns[i], target.Parent())
		require.True(t, target.Masked(), "snapshot LUNs stay masked until LocateLuns")
		require.True(t, target.ReadOnly())
		got := make([]byte, len(before[i]))
		require.NoError(t, target.ReadAt(ctx, got, 4096), "readable right after the commit")
		require.Equal(t, before[i], got)

		require.NoError(t, b.luns[i].WriteAt(ctx, bytes.Repeat([]byte{'z'}, 8192), 4096, false))
		require.NoError(t, target.ReadAt(ctx, got, 4096))
		require.Equal(t, before[i], got, "C2: later writes do not show through")
	}
	d, ok := b.p.CommitDuration(set)
	require.True(t, ok)
	require.Positive(t, d)
	st := b.p.CommitStats()
	require.EqualValues(t, 1, st.Count)
	// The histogram keeps three significant digits: compare within them.
	require.InDelta(t, float64(d), float64(st.Max), float64(d)/100+1, "the recorded commit is this one")
	require.EqualValues(t, 1, b.p.CommitHistogram().TotalCount())
}

// TestCommitSnapshotsDoesNoIO checks P4: the commit issues no I/O to the
// sources or the targets (their statistics do not move), and it does not
// block when every source's gate is held, as flush & hold does during the
// commit; held writers stay held throughout.
func TestCommitSnapshotsDoesNoIO(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 8)
	set := vss.NewID()
	b.run(set, 3)

	// Writers keep writing until the gates close.
	var stop atomic.Bool
	var written atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			p := make([]byte, 4096)
			for n := 0; !stop.Load(); n++ {
				if b.luns[(i+n)%len(b.luns)].WriteAt(ctx, p, int64(n%64)*4096, false) == nil {
					written.Add(1)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return written.Load() > 100 }, 5*time.Second, time.Millisecond)

	var holds []*lun.Hold
	for _, l := range b.luns {
		h, err := l.Hold(ctx, time.Minute)
		require.NoError(t, err)
		holds = append(holds, h)
	}
	sources := ioCounts(b.luns...)

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, b.p.CommitSnapshots(cctx, set), "a commit under a held gate does not block")

	require.Equal(t, sources, ioCounts(b.luns...), "no I/O to the sources during the commit")
	// The LUN statistics are recorded inside the gate, so they are exact
	// where a counter bumped after WriteAt returns is not.
	time.Sleep(10 * time.Millisecond)
	require.Equal(t, sources, ioCounts(b.luns...), "held writes stayed held")
	var targets []*lun.LUN
	for _, dev := range b.devices {
		target, err := b.a.Get(provider.TargetName(dev, set))
		require.NoError(t, err)
		targets = append(targets, target)
	}
	for _, c := range ioCounts(targets...) {
		require.Equal(t, [3]int64{}, c, "no I/O to the targets")
	}
	for _, h := range holds {
		require.NoError(t, h.Release())
	}
	stop.Store(true)
	wg.Wait()
}

// TestCommitSnapshotsReturnCodes checks the codes of vss-spec.md C's row
// (std + OBJECT_NOT_FOUND), each reached the way the array would: and that
// a failed commit takes no snapshot.
func TestCommitSnapshotsReturnCodes(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		prof *provider.Profile
		set  func(set vss.ID) vss.ID
		want vss.HRESULT
	}{
		{"S_OK", nil, nil, vss.S_OK},
		{"E_OUTOFMEMORY", failing(vss.MethodCommitSnapshots, vss.E_OUTOFMEMORY), nil, vss.E_OUTOFMEMORY},
		{"E_INVALIDARG", nil, func(vss.ID) vss.ID { return vss.GUID_NULL }, vss.E_INVALIDARG},
		{"VSS_E_OBJECT_NOT_FOUND", nil, func(vss.ID) vss.ID { return vss.NewID() }, vss.VSS_E_OBJECT_NOT_FOUND},
		{"VSS_E_PROVIDER_VETO", failing(vss.MethodCommitSnapshots, vss.VSS_E_PROVIDER_VETO), nil, vss.VSS_E_PROVIDER_VETO},
		{"illegal E_FAIL", failing(vss.MethodCommitSnapshots, vss.E_FAIL), nil, vss.E_FAIL},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBench(t, lun.Config{}, c.prof, 3)
			set := vss.NewID()
			b.run(set, 3)
			call := set
			if c.set != nil {
				call = c.set(set)
			}
			err := b.p.CommitSnapshots(ctx, call)
			requireCode(t, c.want, err)
			if c.want == vss.S_OK {
				require.Len(t, b.snapshotLUNs(), 3)
				return
			}
			require.Empty(t, b.snapshotLUNs(), "a failed commit takes no snapshot")
			if c.prof != nil {
				require.ErrorIs(t, err, provider.ErrInjected)
				s, _ := b.p.State(set)
				require.Equal(t, vss.VSS_SS_PROCESSING_COMMIT, s)
				// The coordinator translates a code the method may not return.
				require.Equal(t, c.want != vss.E_FAIL, vss.MethodCommitSnapshots.Translate(c.want) == c.want)
			}
		})
	}
}

// TestCommitSnapshotsNoPartialCommit checks B.9 (P4): when one LUN cannot be
// committed (its source was deleted after preparation), the LUNs committed
// before it are removed, the call fails, and AbortSnapshots then frees
// everything.
func TestCommitSnapshotsNoPartialCommit(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{MaxSnapshots: 1}, nil, 4)
	set := vss.NewID()
	b.run(set, 3)
	require.NoError(t, b.a.Delete("lun2")) // lun0 and lun1 commit first, then lun2 fails

	err := b.p.CommitSnapshots(ctx, set)
	requireCode(t, vss.VSS_E_OBJECT_NOT_FOUND, err)
	require.ErrorIs(t, err, lun.ErrDeleted)
	require.Empty(t, b.snapshotLUNs(), "no partial commit")
	_, ok := b.p.CommitDuration(set)
	require.False(t, ok)
	s, _ := b.p.State(set)
	require.Equal(t, vss.VSS_SS_PROCESSING_COMMIT, s)

	require.NoError(t, b.p.AbortSnapshots(ctx, set))
	b.luns = append(b.luns[:2], b.luns[3:]...)
	b.devices = append(b.devices[:2], b.devices[3:]...)
	b.requireNothingLeft(set)
}

// TestCommitBlock checks that the profile's block runs inside
// CommitSnapshots before the swaps, and that CommitDuration measures the
// swaps alone.
func TestCommitBlock(t *testing.T) {
	const block = 30 * time.Millisecond
	prof := provider.DefaultProfile()
	prof.Commit.Block = provider.Fixed(block)
	b := newBench(t, lun.Config{}, prof, 2)
	set := vss.NewID()
	b.run(set, 3)
	start := time.Now()
	require.NoError(t, b.p.CommitSnapshots(context.Background(), set))
	require.GreaterOrEqual(t, time.Since(start), block)
	d, ok := b.p.CommitDuration(set)
	require.True(t, ok)
	require.Less(t, d, block)
	for _, m := range steps[4:] {
		require.NoError(t, b.call(context.Background(), m, set))
	}

	// The caller's deadline ends the block: nothing is committed.
	set = vss.NewID()
	b.run(set, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	requireCode(t, vss.E_ABORT, b.p.CommitSnapshots(ctx, set))
	require.Len(t, b.snapshotLUNs(), 2)
}
