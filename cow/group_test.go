package cow

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// join adds v to g, for tests that want only the error.
// newVols returns n volumes of 1 MiB sharing one store.
func newVols(t *testing.T, n int) (*MemStore, []*Volume) {
	t.Helper()
	store, err := NewMemStore(DefaultGrain, 0)
	require.NoError(t, err)
	vs := make([]*Volume, n)
	for i := range vs {
		vs[i], err = NewVolume(store, 1<<20)
		require.NoError(t, err)
	}
	return store, vs
}

func join(g *Group, v *Volume) error {
	_, err := g.Add(v)
	return err
}

// TestGroupCommitsOneInstant checks that a group's images are of one
// instant across volumes. A writer stamps counter k into volume 0, then
// into volume 1, then 2, ..., so at any instant the stamps read k, ..., k,
// k-1, ..., k-1 from the first volume to the last: never increasing, and
// the first at most one ahead of the last. Volume-by-volume commits taken
// while it runs would catch a later volume ahead of an earlier one.
func TestGroupCommitsOneInstant(t *testing.T) {
	const vols = 8
	store, vs := newVols(t, vols)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 8)
		for k := uint64(1); !stop.Load(); k++ {
			binary.LittleEndian.PutUint64(buf, k)
			for _, v := range vs {
				if _, err := v.WriteAt(buf, 4096); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	stamp := func(im *Image) uint64 {
		buf := make([]byte, 8)
		_, err := im.ReadAt(buf, 4096)
		require.NoError(t, err)
		return binary.LittleEndian.Uint64(buf)
	}
	for round := range 300 {
		g := NewGroup()
		for _, v := range vs {
			require.NoError(t, join(g, v))
		}
		imgs, err := g.Commit()
		require.NoError(t, err)
		var all []uint64
		for _, im := range imgs {
			all = append(all, stamp(im))
		}
		first := stamp(imgs[0])
		prev := first
		for i, im := range imgs {
			s := stamp(im)
			require.LessOrEqual(t, s, prev, "round %d: volume %d is ahead of volume %d: %v", round, i, i-1, all)
			require.LessOrEqual(t, first-s, uint64(1), "round %d: volume %d lags volume 0 by %d writes", round, i, first-s)
			prev = s
			require.NoError(t, im.Release())
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, v := range vs {
		require.NoError(t, v.Release())
	}
	require.Zero(t, store.Stats().DataBytes)
	require.Zero(t, store.Stats().MetaBytes)
}

func TestGroupMembership(t *testing.T) {
	store, vs := newVols(t, 2)
	a, b := vs[0], vs[1]
	_, err := a.WriteAt(fill(4096, 1), 0)
	require.NoError(t, err)

	g1 := NewGroup()
	early, err := g1.Add(a)
	require.NoError(t, err)
	require.False(t, early.Committed())
	_, err = early.ReadAt(make([]byte, 512), 0)
	require.ErrorIs(t, err, ErrNotCommitted, "an image is unusable before its group commits")
	_, err = early.Clone()
	require.ErrorIs(t, err, ErrNotCommitted)
	require.ErrorIs(t, join(g1, a), ErrBusy, "twice in one group")
	g2 := NewGroup()
	require.ErrorIs(t, join(g2, a), ErrBusy, "in two open groups")
	require.NoError(t, join(g2, b))
	require.Equal(t, 1, g1.Len())

	// Writes keep landing in the open group's volume until the commit.
	_, err = a.WriteAt(fill(4096, 2), 0)
	require.NoError(t, err)
	imgs, err := g1.Commit()
	require.NoError(t, err)
	require.Same(t, early, imgs[0])
	require.True(t, early.Committed())
	_, err = a.WriteAt(fill(4096, 3), 0)
	require.NoError(t, err)
	require.Equal(t, fill(4096, 2), readAll(t, imgs[0])[:4096])
	require.Equal(t, fill(4096, 3), readAll(t, a)[:4096])
	_, err = g1.Commit()
	require.ErrorIs(t, err, ErrGroupDone)
	require.ErrorIs(t, join(g1, b), ErrGroupDone)

	// Once g1 committed, a may join another group.
	require.NoError(t, join(g2, a))
	g2.Abort()
	_, err = g2.Commit()
	require.ErrorIs(t, err, ErrGroupDone)
	g3 := NewGroup()
	require.NoError(t, join(g3, a), "an aborted group leaves its volumes free")
	g3.Abort()
	require.Equal(t, fill(4096, 3), readAll(t, a)[:4096])

	require.NoError(t, imgs[0].Release())
	require.NoError(t, a.Release())
	require.NoError(t, b.Release())
	require.Zero(t, store.Stats().DataBytes, "Abort returned Add's references")
	require.Zero(t, store.Stats().MetaBytes)
}

// TestGroupMemberReleased: releasing a member before the commit makes the
// whole group fail, and nothing is committed for the others.
func TestGroupMemberReleased(t *testing.T) {
	_, vs := newVols(t, 2)
	a, b := vs[0], vs[1]
	_, err := b.WriteAt(fill(8192, 7), 0)
	require.NoError(t, err)
	g := NewGroup()
	require.NoError(t, join(g, a))
	require.NoError(t, join(g, b))
	require.NoError(t, a.Release())
	imgs, err := g.Commit()
	require.ErrorIs(t, err, ErrReleased)
	require.Nil(t, imgs)
	_, err = b.WriteAt(fill(4096, 8), 0)
	require.NoError(t, err)
	got := readAll(t, b)
	require.Equal(t, fill(4096, 8), got[:4096])
	require.Equal(t, fill(4096, 7), got[4096:8192])
	require.ErrorIs(t, join(g, b), ErrGroupDone)
	g2 := NewGroup()
	require.NoError(t, join(g2, b))
	_, err = g2.Commit()
	require.NoError(t, err)
	require.NoError(t, b.Release())
}

// TestCommitWaitsForGroupReady: I/O that arrives after a group's commit
// point moves the volume on to the group's next epoch at once, while the
// commit still drains the I/O admitted before it and has yet to hand the
// next epoch its root. A Snapshot, Revert, Release or second group taken on
// that epoch meanwhile must wait for it: reading the root too early gave a
// second group's image without the writes the first group committed, and
// leaked the root the first group then installed.
func TestCommitWaitsForGroupReady(t *testing.T) {
	for _, second := range []string{"group", "snapshot", "revert", "release"} {
		t.Run(second, func(t *testing.T) {
			store, vs := newVols(t, 1)
			v := vs[0]
			_, err := v.WriteAt(fill(4096, 9), 0)
			require.NoError(t, err)
			base, err := v.Snapshot()
			require.NoError(t, err)
			g1 := NewGroup()
			img1, err := g1.Add(v)
			require.NoError(t, err)
			// The root changes after Add: the commit has a root to hand on.
			_, err = v.WriteAt(fill(4096, 1), 0)
			require.NoError(t, err)

			// An operation in flight holds g1's commit in its drain.
			e0, tok, err := v.enter()
			require.NoError(t, err)
			committed := make(chan error, 1)
			go func() {
				_, err := g1.Commit()
				committed <- err
			}()
			for g1.state.Load() != groupCommitted {
				runtime.Gosched()
			}
			v.catchUp(e0, e0.successor()) // as the next I/O to arrive does

			var img2 *Image
			done := make(chan error, 1)
			go func() {
				var err error
				switch second {
				case "group":
					g2 := NewGroup()
					if img2, err = g2.Add(v); err == nil {
						_, err = g2.Commit()
					}
				case "snapshot":
					img2, err = v.Snapshot()
				case "revert":
					err = v.Revert(base)
				case "release":
					err = v.Release()
				}
				done <- err
			}()
			// Let the second operation run as far as it can: to the end,
			// or to waiting with the volume's lock held.
			for held := 0; held < 3 && len(done) == 0; runtime.Gosched() {
				if v.mu.TryLock() {
					v.mu.Unlock()
					held = 0
				} else {
					held++
				}
			}
			e0.inflight.Exit(tok)
			require.NoError(t, <-committed)
			require.NoError(t, <-done)

			require.Equal(t, fill(4096, 1), readAll(t, img1)[:4096])
			switch second {
			case "group", "snapshot":
				require.Equal(t, fill(4096, 1), readAll(t, img2)[:4096], "the second commit holds the first's writes")
				require.Equal(t, fill(4096, 1), readAll(t, v)[:4096])
				require.NoError(t, img2.Release())
			case "revert":
				require.Equal(t, fill(4096, 9), readAll(t, v)[:4096])
			}
			require.NoError(t, img1.Release())
			require.NoError(t, base.Release())
			if second != "release" {
				require.NoError(t, v.Release())
			}
			require.Zero(t, store.Stats().DataBytes, "blocks leaked")
			require.Zero(t, store.Stats().MetaBytes, "nodes leaked")
		})
	}
}

// TestGroupStress runs group commits, aborts, snapshots, reverts and I/O
// on shared volumes from several goroutines at once, under the race
// detector, and then checks that every block came back (C5). The seed is
// printed.
func TestGroupStress(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	store, err := NewMemStore(512, 0)
	require.NoError(t, err)
	const nvol = 4
	const size = 64 << 10
	vs := make([]*Volume, nvol)
	for i := range vs {
		vs[i], err = NewVolume(store, size)
		require.NoError(t, err)
	}
	iters := 400
	if testing.Short() {
		iters = 100
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var keep []*Image
			for range iters {
				v := vs[rng.IntN(nvol)]
				switch rng.IntN(6) {
				case 0, 1:
					op := randomOp(rng, 0, size, 3000)
					if err := op.apply(v); err != nil {
						report(fmt.Errorf("%v: %w", op, err))
					}
				case 2:
					im, err := v.Snapshot()
					if err != nil {
						report(err)
						continue
					}
					keep = append(keep, im)
				case 3:
					if len(keep) > 0 {
						im := keep[rng.IntN(len(keep))]
						for _, v := range vs {
							if v.sameFamily(&im.geometry) {
								if err := v.Revert(im); err != nil {
									report(err)
								}
								break
							}
						}
					}
				default:
					g := NewGroup()
					for _, i := range rng.Perm(nvol)[:1+rng.IntN(nvol)] {
						if err := join(g, vs[i]); err != nil && err != ErrBusy {
							report(err)
						}
					}
					if rng.IntN(4) == 0 {
						g.Abort()
						continue
					}
					imgs, err := g.Commit()
					if err != nil {
						report(err)
						continue
					}
					keep = append(keep, imgs...)
				}
				for len(keep) > 6 {
					if err := keep[0].Release(); err != nil {
						report(err)
					}
					keep = keep[1:]
				}
			}
			for _, im := range keep {
				if err := im.Release(); err != nil {
					report(err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("seed %d: %v", seed, err)
	}
	for _, v := range vs {
		require.NoError(t, v.Release())
	}
	require.Zero(t, store.Stats().DataBytes, "seed %d: blocks leaked", seed)
	require.Zero(t, store.Stats().MetaBytes, "seed %d: nodes leaked", seed)
}
