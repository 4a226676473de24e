package daemon

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
)

// cacheConfig is testConfig with LUN wb of 1 MiB and cache mode, keeping
// crash points.
func cacheConfig(mode string) *Config {
	cfg := testConfig()
	cfg.Array.LUNs = append(cfg.Array.LUNs, LUNConfig{Name: "wb", Size: 1 << 20, Cache: mode, CrashPoints: 4})
	return cfg
}

// waitCut waits until LUN name has lost power by a fault rule, and its
// rules are cleared.
func waitCut(t *testing.T, c *Client, name string) LUNInfo {
	t.Helper()
	ctx := context.Background()
	var info LUNInfo
	require.Eventually(t, func() bool {
		var err error
		info, err = c.LUN(ctx, name)
		require.NoError(t, err)
		return info.LastPowerCut != nil && len(info.Faults) == 0
	}, 5*time.Second, 5*time.Millisecond, "the power-cut rule fires and is cleared")
	return info
}

// TestPowerCutAfterWrites arms a power cut at the Nth write and sends
// N+k writes over NBD, one 4 KiB block each: the cut happens at the Nth,
// the writes after it fail with the dropped connection, and what
// survives is the cache mode's: every write up to the Nth for
// write-through, the flushed ones for write-back.
func TestPowerCutAfterWrites(t *testing.T) {
	const n, k = 5, 3
	for _, tc := range []struct {
		mode string
		kept int // blocks that survive, from 0; the 2nd write is flushed
	}{
		{"write-through", n},
		{"write-back", 2},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			d, c := start(t, cacheConfig(tc.mode))
			ctx := context.Background()
			fl, err := c.AddFault(ctx, "wb", FaultRule{Ops: []string{"write"}, Nth: n, PowerCut: &PowerCutRequest{Keep: "none"}})
			require.NoError(t, err)
			require.Len(t, fl.Rules, 1)
			seed := fl.Rules[0].Seed
			require.NotZero(t, seed, "a power-cut rule gets a seed, reported for replay")
			t.Logf("seed %d", seed)
			require.Equal(t, seed, fl.Rules[0].PowerCut.Seed)
			require.Contains(t, fl.Rules[0].String(), "power cut after write #5, keep none")

			nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "wb"})
			require.NoError(t, err)
			defer nc.Close()
			first := -1 // the first write that failed, from 0
			for i := range n + k {
				err := nc.Write(ctx, bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096, 0)
				if i == 1 && err == nil {
					require.NoError(t, nc.Flush(ctx))
				}
				if err != nil && first < 0 {
					first = i
				}
				if first >= 0 {
					require.Error(t, err, "write %d after the cut", i+1)
				}
			}
			// The Nth write landed; its reply may have been lost with the
			// connection, as an acknowledgement in flight at a power cut.
			require.Contains(t, []int{n - 1, n}, first, "the first write to fail is the Nth's or the next")

			info := waitCut(t, c, "wb")
			cut := info.LastPowerCut
			require.Equal(t, seed, cut.Seed)
			require.Equal(t, 1, cut.Dropped)
			require.Contains(t, cut.Trigger, "fault rule: power cut after write #5")
			fl, err = c.Faults(ctx, "wb")
			require.NoError(t, err)
			require.Empty(t, fl.Rules, "cleared when fired")

			rc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "wb"})
			require.NoError(t, err)
			defer rc.Close()
			got := make([]byte, (n+k)*4096)
			require.NoError(t, rc.Read(ctx, got, 0))
			for i := range n + k {
				want := make([]byte, 4096)
				if i < tc.kept {
					want = bytes.Repeat([]byte{byte(i + 1)}, 4096)
				}
				require.Equal(t, want, got[i*4096:(i+1)*4096], "block %d after a cut at write %d (%s)", i, n, cut.Summary)
			}
			require.NoError(t, rc.Write(ctx, got[:4096], 0, 0), "the power is back")
		})
	}
}

// TestPowerCutWithin arms a power cut at a random instant of a window:
// the instant is drawn from the seed and listed, the cut fires then and
// clears the rule; clearing an armed rule disarms it.
func TestPowerCutWithin(t *testing.T) {
	d, c := start(t, cacheConfig("write-back"))
	ctx := context.Background()
	before := time.Now()
	fl, err := c.AddFault(ctx, "wb", FaultRule{Within: Duration(300 * time.Millisecond), Seed: 42, PowerCut: &PowerCutRequest{}})
	require.NoError(t, err)
	r := fl.Rules[0]
	require.Equal(t, Seed(42), r.Seed)
	delay := withinDelay(r.Within, 42)
	require.Less(t, delay, 300*time.Millisecond)
	require.WithinDuration(t, before.Add(delay), r.At, 100*time.Millisecond, "the instant is the seed's")
	require.Contains(t, r.String(), "power cut at a random instant within 300ms: ")
	require.Contains(t, r.String(), "(seed 42)")

	l, err := d.array.Get("wb")
	require.NoError(t, err)
	require.NoError(t, l.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false))
	info := waitCut(t, c, "wb")
	require.False(t, info.LastPowerCut.At.Before(r.At), "not before its instant")
	require.Equal(t, 1, info.LastPowerCut.Pending)
	require.Equal(t, Seed(42), info.LastPowerCut.Seed)

	_, err = c.AddFault(ctx, "wb", FaultRule{Within: Duration(time.Hour), PowerCut: &PowerCutRequest{}})
	require.NoError(t, err)
	_, err = c.ClearFaults(ctx, "wb")
	require.NoError(t, err)
	d.mu.Lock()
	require.Empty(t, d.mu.cuts, "cleared rules are disarmed")
	d.mu.Unlock()

	// A rule still armed at shutdown is stopped with the daemon.
	_, err = c.AddFault(ctx, "wb", FaultRule{Within: Duration(time.Hour), PowerCut: &PowerCutRequest{}})
	require.NoError(t, err)
}

// TestPowerCutRuleErrors: bad power-cut rules are refused, saying why.
func TestPowerCutRuleErrors(t *testing.T) {
	_, c := start(t, cacheConfig("write-back"))
	ctx := context.Background()
	cut := &PowerCutRequest{}
	for _, tc := range []struct {
		name   string
		lun    string
		rule   FaultRule
		status int
		msg    string
	}{
		{"no cache", "lun0", FaultRule{Nth: 1, PowerCut: cut}, http.StatusConflict, "emulates no write cache"},
		{"no trigger", "wb", FaultRule{PowerCut: cut}, http.StatusBadRequest, "needs a trigger: nth"},
		{"two triggers", "wb", FaultRule{Nth: 1, Within: Duration(time.Second), PowerCut: cut}, http.StatusBadRequest, "give nth or within, not both"},
		{"within alone", "wb", FaultRule{Within: Duration(time.Second)}, http.StatusBadRequest, "arms a power cut: add powercut"},
		{"with an error", "wb", FaultRule{Nth: 1, Error: "EIO", PowerCut: cut}, http.StatusBadRequest, "takes no latency, error or probability"},
		{"keep", "wb", FaultRule{Nth: 1, PowerCut: &PowerCutRequest{Keep: "some"}}, http.StatusBadRequest, `keep "some"`},
		{"op", "wb", FaultRule{Nth: 1, Ops: []string{"wrte"}, PowerCut: cut}, http.StatusBadRequest, `op "wrte"`},
		{"seeds", "wb", FaultRule{Nth: 1, Seed: 1, PowerCut: &PowerCutRequest{Seed: 2}}, http.StatusBadRequest, "one seed"},
		{"no LUN", "nope", FaultRule{Nth: 1, PowerCut: cut}, http.StatusNotFound, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AddFault(ctx, tc.lun, tc.rule)
			var ae *APIError
			require.True(t, errors.As(err, &ae), "%v", err)
			require.Equal(t, tc.status, ae.Status, "%v", err)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}

// TestPowerCutHeldLUN: a power cut of a LUN held by flush & hold (inside
// a slow CommitSnapshots) happens at once, without waiting for the hold;
// the set still succeeds, and its snapshot holds what FlushAndHold
// flushed, which the cut keeps.
func TestPowerCutHeldLUN(t *testing.T) {
	cfg := cacheConfig("write-back")
	prof, err := ParseConfig("c.yaml", []byte("providers:\n  - name: array\n    profile: {commit: {block: 1s}}\n"))
	require.NoError(t, err)
	cfg.Providers, cfg.File, cfg.root = prof.Providers, prof.File, prof.root
	d, c := start(t, cfg)
	ctx := context.Background()
	l, err := d.array.Get("wb")
	require.NoError(t, err)
	require.NoError(t, l.WriteAt(ctx, bytes.Repeat([]byte{7}, 4096), 0, false))
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"wb"}, Context: "nas-rollback"})
		done <- err
	}()
	require.Eventually(t, l.Gate().Held, 5*time.Second, time.Millisecond)
	start := time.Now()
	res, err := c.PowerCut(ctx, "wb", PowerCutRequest{Keep: "none"})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 500*time.Millisecond, "the cut does not wait for the 1 s commit")
	require.True(t, l.Gate().Held(), "the hold goes on")
	require.Zero(t, res.Pending, "FlushAndHold flushed the write: nothing to lose")
	require.NoError(t, <-done)
	got := make([]byte, 4096)
	require.NoError(t, l.ReadAt(ctx, got, 0))
	require.Equal(t, bytes.Repeat([]byte{7}, 4096), got)
}

// TestCacheUseShown: the LUN, status and metrics show the write log's
// use against its bounds.
func TestCacheUseShown(t *testing.T) {
	d, c := start(t, cacheConfig("write-back"))
	ctx := context.Background()
	l, err := d.array.Get("wb")
	require.NoError(t, err)
	require.NoError(t, l.WriteAt(ctx, make([]byte, 4096), 0, false))
	require.NoError(t, l.Flush(ctx))
	require.NoError(t, l.WriteAt(ctx, make([]byte, 4096), 0, false))
	want := CacheUseInfo{Mode: "write-back", Pending: 1, Bytes: 4096 + 64, MaxBytes: lun.DefaultCacheSize, CrashPoints: 1, MaxPoints: 4}

	info, err := c.LUN(ctx, "wb")
	require.NoError(t, err)
	require.Equal(t, &want, info.CacheUse)
	var text bytes.Buffer
	require.NoError(t, info.WriteText(&text))
	require.Contains(t, text.String(), "write-back: 1 writes, 4.1 KiB of 64 MiB since the last durable point; 1 of 4 crash points")

	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]CacheUseInfo{"wb": want}, st.Caches)
	text.Reset()
	require.NoError(t, st.WriteText(&text))
	require.Contains(t, text.String(), "wb: write-back: 1 writes")

	m, err := c.Metrics(ctx)
	require.NoError(t, err)
	for _, s := range []string{
		`shadowbench_lun_cache_writes{lun="wb",mode="write-back"} 1`,
		`shadowbench_lun_cache_bytes{lun="wb",mode="write-back"} 4160`,
		`shadowbench_lun_cache_max_bytes{lun="wb",mode="write-back"} 6.7108864e+07`,
		`shadowbench_lun_crash_points{lun="wb"} 1`,
		`shadowbench_lun_max_crash_points{lun="wb"} 4`,
	} {
		require.Contains(t, m, s)
	}
	require.NotContains(t, m, `shadowbench_lun_cache_writes{lun="lun0"`, "a LUN without a cache has none")
}

// TestProfileCache: LUNs created without a cache mode, configured or
// through the API, get the firmware profile's; "none" opts out; a durable
// array refuses the profile.
func TestProfileCache(t *testing.T) {
	cfg := testConfig()
	prof, err := ParseConfig("c.yaml", []byte("providers:\n  - name: array\n    profile: {cache: {mode: ignore-flush, crash-points: 8}}\n"))
	require.NoError(t, err)
	cfg.Providers, cfg.File, cfg.root = prof.Providers, prof.File, prof.root
	cfg.Array.LUNs = append(cfg.Array.LUNs, LUNConfig{Name: "own", Size: 1 << 20, Cache: "write-through"},
		LUNConfig{Name: "plain", Size: 1 << 20, Cache: "none"})
	_, c := start(t, cfg)
	ctx := context.Background()
	for name, want := range map[string]string{"lun0": "ignore-flush", "own": "write-through", "plain": ""} {
		info, err := c.LUN(ctx, name)
		require.NoError(t, err)
		require.Equal(t, want, info.Cache, name)
	}
	info, err := c.LUN(ctx, "lun0")
	require.NoError(t, err)
	require.Equal(t, 8, info.CacheUse.MaxPoints, "the profile's crash points")
	created, err := c.CreateLUN(ctx, CreateLUNRequest{Name: "new", Size: 1 << 20})
	require.NoError(t, err)
	require.Equal(t, "ignore-flush", created.Cache)
	created, err = c.CreateLUN(ctx, CreateLUNRequest{Name: "new-none", Size: 1 << 20, Cache: "none"})
	require.NoError(t, err)
	require.Empty(t, created.Cache)

	dcfg, err := ParseConfig("c.yaml", []byte("array: {data-dir: /nonexistent}\nproviders:\n  - name: array\n    profile: {cache: write-back}\n"))
	require.NoError(t, err)
	err = dcfg.Validate()
	require.ErrorIs(t, err, lun.ErrCacheDurable)
	require.ErrorContains(t, err, "c.yaml:4: providers[0].profile: profile \"array-inline\" sets cache write-back")
}

// TestCrashPointAndMarkErrors: a crash point that no longer exists and a
// mark with a bad label each answer a clear error naming the LUN.
func TestCrashPointAndMarkErrors(t *testing.T) {
	d, c := start(t, cacheConfig("write-back"))
	ctx := context.Background()
	l, err := d.array.Get("wb")
	require.NoError(t, err)
	for range 6 {
		require.NoError(t, l.Flush(ctx))
	}
	var ae *APIError
	_, err = c.ExposeCrashPoint(ctx, "wb", 1, ExposePointRequest{})
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusNotFound, ae.Status)
	require.ErrorContains(t, err, "LUN wb has no point 1: it was dropped past the bound of 4; points 3 to 6 are kept")
	_, err = c.Mark(ctx, "wb", "bad label")
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusBadRequest, ae.Status)
	require.ErrorContains(t, err, `LUN wb: mark "bad label"`)
	_, err = c.Mark(ctx, "lun0", "fine")
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusConflict, ae.Status)
	require.ErrorContains(t, err, "lun0 keeps no crash points")
}
