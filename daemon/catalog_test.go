package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSnapshotsSurviveRestart checks that a durable array's snapshot sets
// come back with the daemon: a persistent set with its properties and its
// provider, which can then be reverted and deleted; an auto-release set
// goes with the daemon that held its requester (A.10).
func TestSnapshotsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Array.DataDir = filepath.Join(t.TempDir(), "array")
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")

	_, c, stop := run(t, cfg)
	kept, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0", "lun1"}, Context: "app-rollback", Name: "kept"})
	require.NoError(t, err)
	_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}})
	require.NoError(t, err)
	before, err := c.Snapshots(ctx)
	require.NoError(t, err)
	require.Len(t, before, 3)
	stop()

	_, c, stop = run(t, cfg)
	after, err := c.Snapshots(ctx)
	require.NoError(t, err)
	require.Len(t, after, 2, "the app-rollback set's two snapshots, and not the auto-release one")
	for i, s := range after {
		require.Equal(t, kept.ID, s.SetID)
		require.Equal(t, "kept", s.Name, "the set's name is kept")
		want := before[i]
		want.Exports, s.Exports = nil, nil
		require.Equal(t, want.ID, s.ID)
		require.Equal(t, want.Provider, s.Provider, "the provider is the same after a restart")
		require.Equal(t, want.TargetLUNs, s.TargetLUNs)
		require.Equal(t, want.Attributes, s.Attributes)
		require.True(t, want.Created.Equal(s.Created))
	}
	sets, err := c.Sets(ctx)
	require.NoError(t, err)
	require.Len(t, sets, 1)
	require.Equal(t, kept.ID, sets[0].ID)
	require.Equal(t, "kept", sets[0].Name)
	require.Equal(t, 2, sets[0].Snapshots)
	_, err = c.RevertSnapshot(ctx, after[0].ID, false)
	require.NoError(t, err, "the provider answers for the snapshot it adopted")
	_, err = c.DeleteSnapshot(ctx, after[1].ID)
	require.NoError(t, err)
	stop()

	_, c, stop = run(t, cfg)
	defer stop()
	final, err := c.Snapshots(ctx)
	require.NoError(t, err)
	require.Len(t, final, 1, "the deletion was written down")
	require.Equal(t, after[0].ID, final[0].ID)
	luns, err := c.LUNs(ctx)
	require.NoError(t, err)
	var names []string
	for _, l := range luns {
		names = append(names, l.Name)
	}
	require.ElementsMatch(t, []string{"lun0", "lun1", final[0].TargetLUNs[0]}, names)
}

// TestFaultsSurviveRestart: a durable array's fault rules come back with
// the daemon, and fail the LUN's I/O as before; cleared rules stay cleared.
func TestFaultsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Array.DataDir = filepath.Join(t.TempDir(), "array")
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")

	_, c, stop := run(t, cfg)
	rule := FaultRule{Ops: []string{"read"}, Error: "EIO", Probability: 0.5}
	set, err := c.AddFault(ctx, "lun0", rule)
	require.NoError(t, err)
	_, err = c.AddFault(ctx, "lun1", FaultRule{Ops: []string{"write"}, Error: "ENOSPC"})
	require.NoError(t, err)
	_, err = c.ClearFaults(ctx, "lun1")
	require.NoError(t, err)
	stop()

	d, c, stop := run(t, cfg)
	defer stop()
	got, err := c.Faults(ctx, "lun0")
	require.NoError(t, err)
	require.Equal(t, set.Rules, got.Rules, "the rule with the seed it was given")
	got, err = c.Faults(ctx, "lun1")
	require.NoError(t, err)
	require.Empty(t, got.Rules)

	l, err := d.array.Get("lun0")
	require.NoError(t, err)
	failed := 0
	for range 64 {
		if errors.Is(l.ReadAt(ctx, make([]byte, 4096), 0), syscall.EIO) {
			failed++
		}
	}
	require.Positive(t, failed, "the restored rule fails reads")
	require.Less(t, failed, 64, "with its probability")
}
