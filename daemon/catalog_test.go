package daemon

import (
	"context"
	"path/filepath"
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
	kept, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0", "lun1"}, Context: "app-rollback"})
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
	require.Equal(t, 2, sets[0].Snapshots)
	_, err = c.RevertSnapshot(ctx, after[0].ID)
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
