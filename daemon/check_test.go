package daemon

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/shadowbench/shadowbench/lun/durable"
)

// TestCheck checks a data directory a daemon left: consistent, with its
// LUNs and snapshot records counted, while it is served refused, and with a
// snapshot record whose LUN record is gone, a problem a repair leaves alone.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Array.DataDir = filepath.Join(t.TempDir(), "array")
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")

	_, c, stop := run(t, cfg)
	_, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
	require.NoError(t, err)
	_, err = Check(cfg.Array.DataDir, false)
	require.ErrorIs(t, err, durable.ErrLocked, "a directory in use is not checked")
	snaps, err := c.Snapshots(ctx)
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	stop()

	r, err := Check(cfg.Array.DataDir, false)
	require.NoError(t, err)
	require.NoError(t, r.Err())
	require.Equal(t, len(cfg.Array.LUNs)+1, r.LUNs)
	require.Equal(t, 1, r.Snapshots)
	var out bytes.Buffer
	require.NoError(t, r.WriteText(&out))
	require.Contains(t, out.String(), "consistent")

	// The snapshot LUN's record goes, as a damaged catalogue might lose it.
	bdb, err := bolt.Open(filepath.Join(cfg.Array.DataDir, durable.MetaFile), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("luns")).Delete([]byte(snaps[0].TargetLUNs[0]))
	}))
	require.NoError(t, bdb.Close())
	r, err = Check(cfg.Array.DataDir, true)
	require.NoError(t, err)
	require.ErrorContains(t, r.Err(), "problems")
	require.Empty(t, r.Repaired)
	out.Reset()
	require.NoError(t, r.WriteText(&out))
	require.Contains(t, out.String(), "names LUN "+snaps[0].TargetLUNs[0]+", which has no record")
	require.Contains(t, out.String(), "no record names it")
	require.Contains(t, out.String(), "the directory is damaged")
}
