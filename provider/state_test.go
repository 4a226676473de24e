package provider_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// reach puts a new set of b in state s along the success path; a processing
// state is reached by a call that fails (the bench's profile must make the
// method leading into it fail). It returns the set ID.
func reach(t *testing.T, b *bench, s vss.SnapshotState) vss.ID {
	t.Helper()
	set := vss.NewID()
	ctx := context.Background()
	after := map[vss.SnapshotState]int{ // successful steps before s
		vss.VSS_SS_UNKNOWN: 0, vss.VSS_SS_PREPARING: 1, vss.VSS_SS_PREPARED: 2, vss.VSS_SS_PRECOMMITTED: 3,
		vss.VSS_SS_COMMITTED: 4, vss.VSS_SS_POSTCOMMITTED: 5, vss.VSS_SS_PREFINALCOMMITTED: 6, vss.VSS_SS_CREATED: 7,
	}
	failingStep := map[vss.SnapshotState]int{ // index of the failing step
		vss.VSS_SS_PROCESSING_PREPARE: 1, vss.VSS_SS_PROCESSING_PRECOMMIT: 2, vss.VSS_SS_PROCESSING_COMMIT: 3,
		vss.VSS_SS_PROCESSING_POSTCOMMIT: 4, vss.VSS_SS_PROCESSING_PREFINALCOMMIT: 5, vss.VSS_SS_PROCESSING_POSTFINALCOMMIT: 6,
	}
	switch {
	case s == vss.VSS_SS_ABORTED:
		b.run(set, 2)
		require.NoError(t, b.p.AbortSnapshots(ctx, set))
	case failingStep[s] > 0:
		b.run(set, failingStep[s])
		require.ErrorIs(t, b.call(ctx, steps[failingStep[s]], set), provider.ErrInjected)
	default:
		n, ok := after[s]
		require.True(t, ok, "no way to reach %v", s)
		b.run(set, n)
	}
	if s != vss.VSS_SS_UNKNOWN {
		got, _ := b.p.State(set)
		require.Equal(t, s, got)
	}
	return set
}

// leadsInto maps a processing state to the method whose failure leaves a
// set in it.
var leadsInto = map[vss.SnapshotState]vss.ProviderMethod{
	vss.VSS_SS_PROCESSING_PREPARE:         vss.MethodEndPrepareSnapshots,
	vss.VSS_SS_PROCESSING_PRECOMMIT:       vss.MethodPreCommitSnapshots,
	vss.VSS_SS_PROCESSING_COMMIT:          vss.MethodCommitSnapshots,
	vss.VSS_SS_PROCESSING_POSTCOMMIT:      vss.MethodPostCommitSnapshots,
	vss.VSS_SS_PROCESSING_PREFINALCOMMIT:  vss.MethodPreFinalCommitSnapshots,
	vss.VSS_SS_PROCESSING_POSTFINALCOMMIT: vss.MethodPostFinalCommitSnapshots,
}

// TestTransitions calls every set-bound method in every reachable state and
// checks the outcome against the state diagram written out here, separately
// from the provider's table (P1): legal calls move the set to the listed
// state, illegal ones answer VSS_E_BAD_STATE and change nothing, and calls
// for a set never begun answer VSS_E_OBJECT_NOT_FOUND.
func TestTransitions(t *testing.T) {
	states := []vss.SnapshotState{
		vss.VSS_SS_UNKNOWN, vss.VSS_SS_PREPARING, vss.VSS_SS_PROCESSING_PREPARE, vss.VSS_SS_PREPARED,
		vss.VSS_SS_PROCESSING_PRECOMMIT, vss.VSS_SS_PRECOMMITTED, vss.VSS_SS_PROCESSING_COMMIT, vss.VSS_SS_COMMITTED,
		vss.VSS_SS_PROCESSING_POSTCOMMIT, vss.VSS_SS_POSTCOMMITTED, vss.VSS_SS_PROCESSING_PREFINALCOMMIT,
		vss.VSS_SS_PREFINALCOMMITTED, vss.VSS_SS_PROCESSING_POSTFINALCOMMIT, vss.VSS_SS_CREATED, vss.VSS_SS_ABORTED,
	}
	methods := []vss.ProviderMethod{
		vss.MethodBeginPrepareSnapshot, vss.MethodEndPrepareSnapshots, vss.MethodPreCommitSnapshots,
		vss.MethodCommitSnapshots, vss.MethodPostCommitSnapshots, vss.MethodGetTargetLuns,
		vss.MethodPreFinalCommitSnapshots, vss.MethodPostFinalCommitSnapshots, vss.MethodAbortSnapshots,
	}
	legal := map[vss.ProviderMethod]map[vss.SnapshotState]vss.SnapshotState{
		vss.MethodBeginPrepareSnapshot: {
			vss.VSS_SS_UNKNOWN:   vss.VSS_SS_PREPARING,
			vss.VSS_SS_PREPARING: vss.VSS_SS_PREPARING, // another volume
		},
		vss.MethodEndPrepareSnapshots:      {vss.VSS_SS_PREPARING: vss.VSS_SS_PREPARED},
		vss.MethodPreCommitSnapshots:       {vss.VSS_SS_PREPARED: vss.VSS_SS_PRECOMMITTED},
		vss.MethodCommitSnapshots:          {vss.VSS_SS_PRECOMMITTED: vss.VSS_SS_COMMITTED},
		vss.MethodPostCommitSnapshots:      {vss.VSS_SS_COMMITTED: vss.VSS_SS_POSTCOMMITTED},
		vss.MethodPreFinalCommitSnapshots:  {vss.VSS_SS_POSTCOMMITTED: vss.VSS_SS_PREFINALCOMMITTED},
		vss.MethodPostFinalCommitSnapshots: {vss.VSS_SS_PREFINALCOMMITTED: vss.VSS_SS_CREATED},
		vss.MethodGetTargetLuns: {
			vss.VSS_SS_POSTCOMMITTED:     vss.VSS_SS_POSTCOMMITTED,
			vss.VSS_SS_PREFINALCOMMITTED: vss.VSS_SS_PREFINALCOMMITTED,
			vss.VSS_SS_CREATED:           vss.VSS_SS_CREATED,
		},
		vss.MethodAbortSnapshots: {vss.VSS_SS_ABORTED: vss.VSS_SS_ABORTED},
	}
	// AbortSnapshots: after EndPrepareSnapshots was called and before the
	// set is created (B.7).
	for _, s := range states[2:13] {
		legal[vss.MethodAbortSnapshots][s] = vss.VSS_SS_ABORTED
	}

	for _, s := range states {
		for _, m := range methods {
			t.Run(fmt.Sprintf("%v/%v", s, m), func(t *testing.T) {
				var prof *provider.Profile
				if lead, ok := leadsInto[s]; ok {
					prof = failing(lead, vss.VSS_E_PROVIDER_VETO)
				}
				b := newBench(t, lun.Config{}, prof, 2)
				set := reach(t, b, s)
				err := b.call(context.Background(), m, set)
				got, known := b.p.State(set)
				if want, ok := legal[m][s]; ok {
					require.NoError(t, err)
					require.Equal(t, want, got)
					return
				}
				if s == vss.VSS_SS_UNKNOWN && m != vss.MethodGetTargetLuns {
					requireCode(t, vss.VSS_E_OBJECT_NOT_FOUND, err)
					require.ErrorIs(t, err, provider.ErrUnknownSet)
					require.False(t, known)
					return
				}
				requireCode(t, vss.VSS_E_BAD_STATE, err)
				require.ErrorIs(t, err, provider.ErrBadTransition)
				require.Equal(t, s, got, "an illegal call changes nothing")
			})
		}
	}
}

// TestStateNames checks that every state a set passes through prints its
// Windows name, as traces show it.
func TestStateNames(t *testing.T) {
	b := newBench(t, lun.Config{}, nil, 1)
	set := vss.NewID()
	var seen []string
	for _, m := range steps {
		require.NoError(t, b.call(context.Background(), m, set))
		s, _ := b.p.State(set)
		seen = append(seen, s.String())
	}
	require.Equal(t, []string{"VSS_SS_PREPARING", "VSS_SS_PREPARED", "VSS_SS_PRECOMMITTED", "VSS_SS_COMMITTED",
		"VSS_SS_POSTCOMMITTED", "VSS_SS_PREFINALCOMMITTED", "VSS_SS_CREATED"}, seen)
}
