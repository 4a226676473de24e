package daemon

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// TestThickLUNs checks, through the API, that a thick LUN is refused when
// the thick LUNs' sizes would pass the capacity, that a thin one is not,
// and that status reports what the LUNs provision.
func TestThickLUNs(t *testing.T) {
	cfg := testConfig() // lun0 and lun1, 64 MiB each, thick
	cfg.Array.Capacity = 256 << 20
	_, c := start(t, cfg)
	ctx := context.Background()

	_, err := c.CreateLUN(ctx, CreateLUNRequest{Name: "big", Size: 200 << 20})
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusInsufficientStorage, ae.Status)
	require.EqualError(t, err, "LUN big: lun: array capacity exceeded: thick LUN big of 200 MiB does not fit: capacity 256 MiB, "+
		`128 MiB provisioned by thick LUNs, 128 MiB free; a thin LUN may overcommit (lun create --thin; "thin": true in the API)`)
	_, err = c.LUN(ctx, "big")
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)

	l, err := c.CreateLUN(ctx, CreateLUNRequest{Name: "fits", Size: 128 << 20})
	require.NoError(t, err)
	require.False(t, l.Thin)
	l, err = c.CreateLUN(ctx, CreateLUNRequest{Name: "thin", Size: 1 << 30, Thin: true})
	require.NoError(t, err)
	require.True(t, l.Thin)
	_, err = c.CreateLUN(ctx, CreateLUNRequest{Name: "one-more", Size: 512})
	require.ErrorContains(t, err, "0 B free", "the thick LUNs take the whole capacity")

	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, StoreInfo{CapacityBytes: 256 << 20, ThickBytes: 256 << 20, ThinBytes: 1 << 30, Overcommit: 5,
		MetaBytes: st.Store.MetaBytes}, st.Store)
	var text bytes.Buffer
	require.NoError(t, st.WriteText(&text))
	require.Contains(t, text.String(), "1.3 GiB of 256 MiB capacity (256 MiB thick, 1.0 GiB thin), overcommitted 5.00x")

	luns, err := c.LUNs(ctx)
	require.NoError(t, err)
	text.Reset()
	require.NoError(t, LUNList(luns).WriteText(&text))
	require.Regexp(t, `thin +original +1\.0 GiB +512 +thin `, text.String())
	text.Reset()
	require.NoError(t, l.WriteText(&text))
	require.Contains(t, text.String(), "thin (may overcommit the array)")
}

// TestConfigLUNTooLarge checks that a configured thick LUN that does not
// fit stops the start, naming the file, the line and the key, in memory
// and on disk alike.
func TestConfigLUNTooLarge(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		yaml := "array:\n  capacity: 64MiB\n  luns:\n    - {name: a, size: 32MiB}\n    - name: b\n      size: 48MiB\n    - {name: c, size: 1TiB, thin: true}\n"
		cfg, err := ParseConfig("c.yaml", []byte(yaml))
		require.NoError(t, err)
		cfg.Array.DataDir = dir
		require.NoError(t, cfg.Validate())
		_, err = BuildArray(cfg, quiet)
		require.EqualError(t, err, "c.yaml:6: array.luns[1].size: LUN b: lun: array capacity exceeded: thick LUN b of 48 MiB does not fit: "+
			"capacity 64 MiB, 32 MiB provisioned by thick LUNs, 32 MiB free; a thin LUN may overcommit (thin: true in the configuration, thin=true in --lun)")
		require.ErrorIs(t, err, ErrBadConfig)

		cfg.Array.LUNs[1].Thin = true
		a, err := BuildArray(cfg, quiet)
		require.NoError(t, err)
		require.Len(t, a.List(), 3)
		require.NoError(t, a.Close())
	}
}

// TestThinRestart checks that a durable array's LUNs keep their
// provisioning across a restart of the daemon.
func TestThinRestart(t *testing.T) {
	cfg := testConfig()
	cfg.Array.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Array.Capacity = 128 << 20
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")
	_, c, stop := run(t, cfg)
	ctx := context.Background()
	_, err := c.CreateLUN(ctx, CreateLUNRequest{Name: "thin", Size: 1 << 30, Thin: true})
	require.NoError(t, err)
	stop()

	_, c, stop = run(t, cfg)
	defer stop()
	l, err := c.LUN(ctx, "thin")
	require.NoError(t, err)
	require.True(t, l.Thin)
	l, err = c.LUN(ctx, "lun0")
	require.NoError(t, err)
	require.False(t, l.Thin)
	_, err = c.CreateLUN(ctx, CreateLUNRequest{Name: "x", Size: 1 << 20})
	require.ErrorContains(t, err, "128 MiB provisioned by thick LUNs")
}

// TestSetNoRoom checks that a snapshot set the array has no room for
// answers VSS_E_INSUFFICIENT_STORAGE through the API, whether the shortage
// is found when the volume is added (the provider answers FALSE to
// AreLunsSupported, and the VSS service VSS_E_VOLUME_NOT_SUPPORTED) or
// while the set is prepared.
func TestSetNoRoom(t *testing.T) {
	ctx := context.Background()
	noRoom := func(t *testing.T, err error, state, detail string) {
		t.Helper()
		require.ErrorIs(t, err, vss.VSS_E_INSUFFICIENT_STORAGE)
		var ae *APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, http.StatusInsufficientStorage, ae.Status)
		require.ErrorContains(t, err, detail)
		require.NotNil(t, ae.Set)
		require.Equal(t, state, ae.Set.State)
	}

	t.Run("array full", func(t *testing.T) {
		cfg := testConfig()
		cfg.Array.Capacity = 4 << 20
		cfg.Array.LUNs[0].Thin, cfg.Array.LUNs[1].Thin = true, true
		d, c := start(t, cfg)
		nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
		require.NoError(t, err)
		defer nc.Close()
		for off := int64(0); ; off += 1 << 20 {
			if err := nc.Write(ctx, make([]byte, 1<<20), off, 0); err != nil {
				require.ErrorContains(t, err, "ENOSPC")
				break
			}
		}
		_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
		noRoom(t, err, "abandoned", "AddToSnapshotSet(lun0): VSS_E_VOLUME_NOT_SUPPORTED (0x8004230C): provider array has no room for the snapshot: "+
			"provider: array capacity exhausted: 4.0 MiB of 4.0 MiB in use, none free")
		_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun1"}, Context: "app-rollback", Provider: "array"})
		noRoom(t, err, "abandoned", "VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER")
	})

	t.Run("profile capacity", func(t *testing.T) {
		// Room for one snapshot: a volume of two LUNs does not fit when
		// it is added; two volumes of one LUN each fit one by one, and
		// the second is found short while the set is prepared.
		cfg := testConfig()
		prof, err := ParseConfig("c.yaml", []byte("providers:\n  - name: array\n    profile:\n      capabilities: {capacity: 24MiB, snapshot-reserve: 16MiB}\n"))
		require.NoError(t, err)
		cfg.Providers = prof.Providers
		cfg.File, cfg.root = prof.File, prof.root
		cfg.Volumes = []VolumeConfig{{Name: "both", LUNs: []string{"lun0", "lun1"}}}
		_, c := start(t, cfg)
		_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"both"}, Context: "app-rollback"})
		noRoom(t, err, "abandoned", "2 snapshots need 32 MiB free (snapshot-reserve 16 MiB each), 24 MiB is")
		_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0", "lun1"}, Context: "app-rollback"})
		noRoom(t, err, "failed", "DoSnapshotSet")
		rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
		require.NoError(t, err, "one snapshot fits")
		require.Equal(t, "created", rep.State)
	})
}
