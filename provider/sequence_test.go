package provider_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// TestAbortSnapshotsOnlyAfterDoSnapshotSet checks B.7 (P3): AbortSnapshots
// before EndPrepareSnapshots is VSS_E_BAD_STATE and leaves the set alone;
// after it, the set is aborted and everything it prepared or committed is
// gone.
func TestAbortSnapshotsOnlyAfterDoSnapshotSet(t *testing.T) {
	ctx := context.Background()
	t.Run("before EndPrepareSnapshots", func(t *testing.T) {
		b := newBench(t, lun.Config{MaxSnapshots: 1}, nil, 3)
		set := vss.NewID()
		b.run(set, 1)
		err := b.p.AbortSnapshots(ctx, set)
		requireCode(t, vss.VSS_E_BAD_STATE, err)
		s, _ := b.p.State(set)
		require.Equal(t, vss.VSS_SS_PREPARING, s)
		// The set goes on as if nothing happened.
		b.run(set, 0)
		for _, m := range steps[1:] {
			require.NoError(t, b.call(ctx, m, set))
		}
		require.Len(t, b.snapshotLUNs(), 3)
	})
	t.Run("unknown set", func(t *testing.T) {
		b := newBench(t, lun.Config{}, nil, 1)
		requireCode(t, vss.VSS_E_OBJECT_NOT_FOUND, b.p.AbortSnapshots(ctx, vss.NewID()))
		requireCode(t, vss.E_INVALIDARG, b.p.AbortSnapshots(ctx, vss.GUID_NULL))
	})
	for _, after := range []int{2, 3, 4, 5, 6} { // PREPARED ... PREFINALCOMMITTED
		t.Run("after "+steps[after-1].String(), func(t *testing.T) {
			b := newBench(t, lun.Config{MaxSnapshots: 1}, nil, 3)
			set := vss.NewID()
			b.run(set, after)
			require.NoError(t, b.p.AbortSnapshots(ctx, set))
			s, _ := b.p.State(set)
			require.Equal(t, vss.VSS_SS_ABORTED, s)
			require.NoError(t, b.p.AbortSnapshots(ctx, set), "a second abort is harmless")
			b.requireNothingLeft(set)
		})
	}
	t.Run("created", func(t *testing.T) {
		b := newBench(t, lun.Config{}, nil, 2)
		set := b.create()
		requireCode(t, vss.VSS_E_BAD_STATE, b.p.AbortSnapshots(ctx, set))
		require.Len(t, b.snapshotLUNs(), 2, "created snapshots stay")
	})
}

// TestOutOfSequenceBeginPrepareStartsNewSet checks B.8 (P2): a
// BeginPrepareSnapshot with a new set ID, at any point of the old set,
// starts the new set and leaves nothing of the old one: no LUNs, names,
// snapshot counts or goroutines, and its ID is unknown from then on.
func TestOutOfSequenceBeginPrepareStartsNewSet(t *testing.T) {
	ctx := context.Background()
	slow := provider.DefaultProfile()
	slow.Prepare.Latency = provider.Fixed(time.Hour)
	for _, c := range []struct {
		name    string
		profile *provider.Profile
		setup   func(b *bench, set vss.ID)
	}{
		{"mid-prepare, preparer sleeping", slow, func(b *bench, set vss.ID) { b.run(set, 1) }},
		{"prepared, EndPrepare not called", nil, func(b *bench, set vss.ID) {
			b.run(set, 1)
			require.Eventually(b.t, func() bool { // every LUN prepared: names and counts taken
				done, total, _ := b.p.Prepared(set)
				return done == total
			}, 5*time.Second, time.Millisecond)
			_, err := b.a.Create(provider.TargetName(b.devices[2], set), lun.Options{Size: mib})
			require.ErrorIs(b.t, err, lun.ErrExists)
		}},
		{"EndPrepare running", slow, func(b *bench, set vss.ID) {
			b.run(set, 1)
			go func() { _ = b.p.EndPrepareSnapshots(ctx, set) }()
			b.waitState(set, vss.VSS_SS_PROCESSING_PREPARE)
		}},
		{"prepared", nil, func(b *bench, set vss.ID) { b.run(set, 2) }},
		{"precommitted", nil, func(b *bench, set vss.ID) { b.run(set, 3) }},
		{"committed, then the requester failed silently", nil, func(b *bench, set vss.ID) { b.run(set, 4) }},
		{"after a failed commit", failing(vss.MethodCommitSnapshots, vss.VSS_E_PROVIDER_VETO), func(b *bench, set vss.ID) {
			b.run(set, 3)
			require.Error(b.t, b.call(ctx, vss.MethodCommitSnapshots, set))
		}},
		{"post-committed", nil, func(b *bench, set vss.ID) { b.run(set, 5) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			b := newBench(t, lun.Config{MaxSnapshots: 1}, c.profile, 3)
			old := vss.NewID()
			c.setup(b, old)

			// The new set uses the same LUNs: with a limit of one
			// snapshot per LUN it can only be prepared if the old
			// set's counts were freed.
			next := vss.NewID()
			require.NoError(t, b.p.BeginPrepareSnapshot(ctx, next, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[:1], b.infos[:1]))
			s, ok := b.p.State(next)
			require.True(t, ok)
			require.Equal(t, vss.VSS_SS_PREPARING, s)

			_, known := b.p.State(old)
			require.False(t, known, "the old set is gone")
			requireCode(t, vss.VSS_E_OBJECT_NOT_FOUND, b.p.EndPrepareSnapshots(ctx, old))
			requireCode(t, vss.VSS_E_OBJECT_NOT_FOUND, b.p.AbortSnapshots(ctx, old))

			if c.profile == slow {
				// The new set would sleep an hour too; abandon it as well.
				require.NoError(t, b.p.BeginPrepareSnapshot(ctx, vss.NewID(), vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[:1], b.infos[:1]))
				require.NoError(t, b.p.Close())
				b.requireNothingLeft(old)
				goleak.VerifyNone(t, ignore)
				return
			}
			require.NoError(t, b.p.EndPrepareSnapshots(ctx, next))
			goleak.VerifyNone(t, ignore) // the preparers of both sets have exited
			require.NoError(t, b.p.AbortSnapshots(ctx, next))
			b.requireNothingLeft(old)
		})
	}
}

// TestAbortSnapshotsRacingEndPrepare checks B.7 (P3): AbortSnapshots while
// EndPrepareSnapshots waits for a slow preparation stops it at once;
// EndPrepareSnapshots returns E_ABORT and nothing of the set remains.
func TestAbortSnapshotsRacingEndPrepare(t *testing.T) {
	ctx := context.Background()
	prof := provider.DefaultProfile()
	prof.Prepare.Latency = provider.Fixed(time.Hour) // per LUN
	b := newBench(t, lun.Config{MaxSnapshots: 1}, prof, 4)
	set := vss.NewID()
	// Two volumes, the second sharing a LUN with the first.
	require.NoError(t, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[:3], b.infos[:3]))
	require.NoError(t, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[2:], b.infos[2:]))

	endErr := make(chan error, 1)
	go func() { endErr <- b.p.EndPrepareSnapshots(ctx, set) }()
	b.waitState(set, vss.VSS_SS_PROCESSING_PREPARE)

	start := time.Now()
	require.NoError(t, b.p.AbortSnapshots(ctx, set))
	var err error
	select {
	case err = <-endErr:
	case <-time.After(5 * time.Second):
		t.Fatal("EndPrepareSnapshots still running after AbortSnapshots")
	}
	require.Less(t, time.Since(start), time.Second, "preparation stops at once")
	requireCode(t, vss.E_ABORT, err)
	require.ErrorIs(t, err, provider.ErrAborted)
	s, _ := b.p.State(set)
	require.Equal(t, vss.VSS_SS_ABORTED, s)
	b.requireNothingLeft(set)
}

// TestAbortSnapshotsDuringCommitBlock checks that an abort ends a
// CommitSnapshots blocked by the profile before it takes any snapshot, as
// the coordinator does when the flush & hold window expires.
func TestAbortSnapshotsDuringCommitBlock(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		set  func(*provider.Profile)
	}{
		{"block", func(p *provider.Profile) { p.Commit.Block = provider.Fixed(time.Hour) }},
		{"until-released", func(p *provider.Profile) { p.Commit.UntilReleased = true }},
	} {
		t.Run(c.name, func(t *testing.T) {
			prof := provider.DefaultProfile()
			c.set(prof)
			b := newBench(t, lun.Config{MaxSnapshots: 1}, prof, 2)
			set := vss.NewID()
			b.run(set, 3)
			commitErr := make(chan error, 1)
			go func() { commitErr <- b.p.CommitSnapshots(ctx, set) }()
			b.waitState(set, vss.VSS_SS_PROCESSING_COMMIT)
			require.NoError(t, b.p.AbortSnapshots(ctx, set))
			requireCode(t, vss.E_ABORT, <-commitErr)
			_, ok := b.p.CommitDuration(set)
			require.False(t, ok)
			b.requireNothingLeft(set)
		})
	}
}

// TestCommitUntilReleased checks the external "snapshot taken" signal: the
// commit waits for ReleaseCommit, which may also come first.
func TestCommitUntilReleased(t *testing.T) {
	ctx := context.Background()
	prof, err := provider.LoadProfile("profiles/until-released.yaml")
	require.NoError(t, err)
	b := newBench(t, lun.Config{}, prof, 2)

	set := vss.NewID()
	b.run(set, 3)
	done := make(chan error, 1)
	go func() { done <- b.p.CommitSnapshots(ctx, set) }()
	b.waitState(set, vss.VSS_SS_PROCESSING_COMMIT)
	select {
	case err := <-done:
		t.Fatalf("commit returned before the release: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, b.p.ReleaseCommit(set))
	require.NoError(t, <-done)
	require.Len(t, b.snapshotLUNs(), 2)

	early := vss.NewID()
	b.run(early, 3)
	require.NoError(t, b.p.ReleaseCommit(early))
	require.NoError(t, b.p.CommitSnapshots(ctx, early))
	requireCode(t, vss.VSS_E_OBJECT_NOT_FOUND, b.p.ReleaseCommit(vss.NewID()))

	// The caller's context ends the wait too.
	late := vss.NewID()
	b.run(late, 3)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	requireCode(t, vss.E_ABORT, b.p.CommitSnapshots(cctx, late))
}

// TestSameLUNInTwoVolumes checks F.1: a LUN shared by two volumes of a set
// is snapshotted once and both volumes map to the same target.
func TestSameLUNInTwoVolumes(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{MaxSnapshots: 1}, nil, 3)
	set := vss.NewID()
	require.NoError(t, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[:2], b.infos[:2]))
	require.NoError(t, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[1:], b.infos[1:]))
	for _, m := range steps[1:4] {
		require.NoError(t, b.call(ctx, m, set))
	}
	require.NoError(t, b.p.PostCommitSnapshots(ctx, set, 2))
	require.Len(t, b.snapshotLUNs(), 3)
	out, err := b.p.GetTargetLuns(ctx, []string{"lun1", "lun0", "lun1"}, []provider.LunInfo{b.infos[1], b.infos[0], b.infos[1]})
	require.NoError(t, err)
	require.Equal(t, out[0], out[2])
	require.NotEqual(t, out[0].NAA(), out[1].NAA())
}

// TestBeginPrepareSnapshotArguments checks the arguments and contexts
// BeginPrepareSnapshot refuses, before any set state changes.
func TestBeginPrepareSnapshotArguments(t *testing.T) {
	ctx := context.Background()
	prof := provider.DefaultProfile()
	prof.Capabilities.Transportable = false
	b := newBench(t, lun.Config{}, prof, 2)
	snap, err := b.a.Snapshot("lun0", "")
	require.NoError(t, err)
	foreign := provider.LunInfoOf(b.luns[1])
	set := vss.NewID()
	for _, c := range []struct {
		name    string
		set     vss.ID
		snapCtx vss.SnapshotContext
		devices []string
		infos   []provider.LunInfo
		want    vss.HRESULT
	}{
		{"null set", vss.GUID_NULL, vss.VSS_CTX_BACKUP, b.devices, b.infos, vss.E_INVALIDARG},
		{"nil slices", set, vss.VSS_CTX_BACKUP, nil, nil, vss.E_INVALIDARG},
		{"mismatched slices", set, vss.VSS_CTX_BACKUP, b.devices, b.infos[:1], vss.E_INVALIDARG},
		{"duplicate device", set, vss.VSS_CTX_BACKUP, []string{"lun0", "lun0"}, []provider.LunInfo{b.infos[0], b.infos[0]}, vss.E_INVALIDARG},
		{"unknown device", set, vss.VSS_CTX_BACKUP, []string{"nope"}, b.infos[:1], vss.E_INVALIDARG},
		{"not owned", set, vss.VSS_CTX_BACKUP, []string{"lun0"}, []provider.LunInfo{foreign}, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER},
		{"snapshot LUN", set, vss.VSS_CTX_BACKUP, []string{snap.Name()}, []provider.LunInfo{provider.LunInfoOf(snap)}, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER},
		{"transportable", set, vss.VSS_CTX_BACKUP | vss.SnapshotContext(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE), b.devices, b.infos, vss.VSS_E_UNSUPPORTED_CONTEXT},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := b.p.BeginPrepareSnapshot(ctx, c.set, vss.NewID(), c.snapCtx, c.devices, c.infos)
			requireCode(t, c.want, err)
			_, known := b.p.State(c.set)
			require.False(t, known)
		})
	}
	// Within a set: the same snapshot ID twice, another context, a 65th volume.
	snapID := vss.NewID()
	require.NoError(t, b.p.BeginPrepareSnapshot(ctx, set, snapID, vss.VSS_CTX_BACKUP, b.devices[:1], b.infos[:1]))
	requireCode(t, vss.E_INVALIDARG, b.p.BeginPrepareSnapshot(ctx, set, snapID, vss.VSS_CTX_BACKUP, b.devices[1:], b.infos[1:]))
	requireCode(t, vss.E_INVALIDARG, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_APP_ROLLBACK, b.devices[1:], b.infos[1:]))
	for range 63 {
		require.NoError(t, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[1:], b.infos[1:]))
	}
	requireCode(t, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, b.p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, b.devices[1:], b.infos[1:]))
	requireCode(t, vss.E_INVALIDARG, b.p.PostCommitSnapshots(ctx, vss.GUID_NULL, 64))
}

// TestEndPrepareSnapshotsReportsPreparationErrors checks that resource
// shortages found while preparing come back from EndPrepareSnapshots with
// their HRESULT, and that AbortSnapshots then cleans up.
func TestEndPrepareSnapshotsReportsPreparationErrors(t *testing.T) {
	ctx := context.Background()
	fill := func(b *bench, n int64) {
		for off := int64(0); off < n; off += 64 << 10 {
			require.NoError(t, b.luns[0].WriteAt(ctx, make([]byte, 64<<10), off%mib, false))
		}
	}
	for _, c := range []struct {
		name  string
		cfg   lun.Config
		prof  func(*provider.Profile)
		setup func(*bench)
		want  vss.HRESULT
		// atBegin: the limit is reported by BeginPrepareSnapshot, inside
		// AddToSnapshotSet (vss-spec.md F.9), not by EndPrepareSnapshots.
		atBegin bool
	}{
		{"array snapshot limit", lun.Config{MaxSnapshots: 1}, nil, func(b *bench) {
			_, err := b.a.Snapshot("lun1", "")
			require.NoError(t, err)
		}, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, true},
		{"profile snapshot limit", lun.Config{}, func(p *provider.Profile) { p.Capabilities.MaxSnapshotsPerLUN = 2 }, func(b *bench) {
			b.create()
			b.create()
		}, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, true},
		{"array full", lun.Config{}, func(p *provider.Profile) { p.Capabilities.Capacity = 256 << 10 }, func(b *bench) {
			fill(b, 256<<10)
		}, vss.VSS_E_INSUFFICIENT_STORAGE, false},
		{"reserve", lun.Config{}, func(p *provider.Profile) {
			p.Capabilities.Capacity = mib
			p.Capabilities.SnapshotReserve = 256 << 10
		}, func(b *bench) { fill(b, 768<<10) }, vss.VSS_E_INSUFFICIENT_STORAGE, false},
		{"injected", lun.Config{}, func(p *provider.Profile) {
			p.Methods = map[vss.ProviderMethod]provider.MethodBehavior{
				vss.MethodEndPrepareSnapshots: {Failures: []provider.Failure{provider.Always(vss.VSS_E_INSUFFICIENT_STORAGE)}},
			}
		}, nil, vss.VSS_E_INSUFFICIENT_STORAGE, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			prof := provider.DefaultProfile()
			if c.prof != nil {
				c.prof(prof)
			}
			b := newBench(t, c.cfg, prof, 2)
			if c.setup != nil {
				c.setup(b)
			}
			before := len(b.snapshotLUNs())
			set := vss.NewID()
			if c.atBegin {
				requireCode(t, c.want, b.call(ctx, vss.MethodBeginPrepareSnapshot, set))
				require.Len(t, b.snapshotLUNs(), before)
				return
			}
			b.run(set, 1)
			requireCode(t, c.want, b.p.EndPrepareSnapshots(ctx, set))
			s, _ := b.p.State(set)
			require.Equal(t, vss.VSS_SS_PROCESSING_PREPARE, s)
			require.NoError(t, b.p.AbortSnapshots(ctx, set))
			require.Len(t, b.snapshotLUNs(), before)
		})
	}
}

// TestConcurrentCalls runs whole sets and queries from several goroutines
// against one provider, for the race detector: one set at a time succeeds,
// the others are discarded or refused, and nothing is left half done.
func TestConcurrentCalls(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, lun.Config{}, nil, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				set := vss.NewID()
				for _, m := range steps {
					if b.call(ctx, m, set) != nil {
						_ = b.p.AbortSnapshots(ctx, set)
						break
					}
				}
				_, _ = b.p.GetTargetLuns(ctx, b.devices, b.infos)
				var info provider.LunInfo
				_, _ = b.p.FillInLunInfo(ctx, b.devices[0], &info)
				_, _ = b.p.AreLunsSupported(ctx, vss.VSS_CTX_BACKUP, b.devices, b.infos)
			}
		})
	}
	wg.Wait()
	// Every snapshot LUN left belongs to a created set, and can be reclaimed.
	for _, l := range b.snapshotLUNs() {
		require.NoError(t, b.p.OnLunEmpty(ctx, l.Name(), provider.LunInfoOf(l)))
	}
	require.Empty(t, b.snapshotLUNs())
}

// TestRefusal checks that Refusal says why AreLunsSupported answers FALSE,
// and answers nil exactly when it answers TRUE.
func TestRefusal(t *testing.T) {
	ctx := context.Background()
	prof := provider.DefaultProfile()
	prof.Capabilities.Capacity = 3 * mib
	prof.Capabilities.SnapshotReserve = mib
	b := newBench(t, lun.Config{}, prof, 2)
	for _, c := range []struct {
		name    string
		snapCtx vss.SnapshotContext
		devices []string
		want    error
		msg     string
	}{
		{"fits", vss.VSS_CTX_BACKUP, b.devices, nil, ""},
		{"unknown device", vss.VSS_CTX_BACKUP, []string{"lun0", "nope"}, provider.ErrUnknownDevice, `"nope"`},
		{"context", vss.VSS_CTX_ALL, b.devices, provider.ErrUnsupportedContext, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := b.p.Refusal(c.snapCtx, c.devices)
			require.ErrorIs(t, err, c.want)
			if c.msg != "" {
				require.ErrorContains(t, err, c.msg)
			}
		})
	}
	for _, l := range b.luns { // 1 MiB each: 1 MiB left, room for one snapshot, not two
		require.NoError(t, l.WriteAt(ctx, make([]byte, mib), 0, false))
	}
	err := b.p.Refusal(vss.VSS_CTX_BACKUP, b.devices)
	require.ErrorIs(t, err, provider.ErrNoCapacity)
	require.EqualError(t, err, "provider: array capacity exhausted: 2 snapshots need 2.0 MiB free (snapshot-reserve 1.0 MiB each), "+
		"1.0 MiB is (2.0 MiB of 3.0 MiB in use, 0 snapshots promised)")
	ok, err := b.p.AreLunsSupported(ctx, vss.VSS_CTX_BACKUP, b.devices, b.infos)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, b.p.Refusal(vss.VSS_CTX_BACKUP, b.devices[:1]))
	ok, err = b.p.AreLunsSupported(ctx, vss.VSS_CTX_BACKUP, b.devices[:1], b.infos[:1])
	require.NoError(t, err)
	require.True(t, ok)
}
