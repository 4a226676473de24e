package daemon

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

func TestCreateSetAndManage(t *testing.T) {
	cfg := testConfig()
	cfg.Volumes = []VolumeConfig{{Name: "data", LUNs: []string{"lun0", "lun1"}}}
	d, c := start(t, cfg)
	ctx := context.Background()

	// Data written before the set is in the snapshot.
	nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	require.NoError(t, nc.Write(ctx, []byte("before"), 0, 0))

	rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"data"}, Context: "app-rollback"})
	require.NoError(t, err)
	require.Equal(t, "created", rep.State)
	require.Equal(t, "S_OK", rep.Result)
	require.Equal(t, "VSS_CTX_APP_ROLLBACK", rep.Context)
	require.False(t, rep.Held, "a persistent set needs no held requester")
	require.Len(t, rep.Snapshots, 1)
	snap := rep.Snapshots[0]
	require.Equal(t, []string{"lun0", "lun1"}, snap.SourceLUNs)
	require.Len(t, snap.Exports, 2)
	require.NotEmpty(t, rep.Timeline)
	for _, name := range []string{"EndPrepareSnapshots", "Freeze", "FlushAndHold", "CommitSnapshots", "PostFinalCommitSnapshots"} {
		require.True(t, hasSpan(rep, name), name)
	}
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	for _, want := range []string{rep.ID.String(), snap.ID.String(), snap.Exports[0], "OFFSET", "DURATION", "KIND", "ACTOR", "CommitSnapshots"} {
		require.Contains(t, text.String(), want)
	}

	// The snapshot's export reads the data of the time of the set.
	require.NoError(t, nc.Write(ctx, []byte("after!"), 0, 0))
	target := snap.TargetLUNs[0]
	sc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: target})
	require.NoError(t, err)
	buf := make([]byte, 6)
	require.NoError(t, sc.Read(ctx, buf, 0))
	require.Equal(t, "before", string(buf))
	require.NoError(t, sc.Close())

	got, err := c.Snapshot(ctx, snap.ID)
	require.NoError(t, err)
	require.Equal(t, snap.ID, got.ID)
	desc, err := c.Describe(ctx, rep.ID)
	require.NoError(t, err)
	require.IsType(t, &SetReport{}, desc)
	exp, err := c.ExposeSnapshot(ctx, snap.ID)
	require.NoError(t, err)
	require.Equal(t, target, exp.Export)

	// The client is closed first, and the server has seen it go: a revert
	// under connected clients is refused (TestRevertWithClients).
	require.NoError(t, nc.Close())
	lun0, err := d.array.Get("lun0")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return d.nbd.Connections(lun0) == 0 }, 5*time.Second, time.Millisecond)
	rev, err := c.RevertSnapshot(ctx, snap.ID, false)
	require.NoError(t, err)
	require.Equal(t, "data", rev.Volume)
	nc, err = nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	require.NoError(t, nc.Read(ctx, buf, 0))
	require.Equal(t, "before", string(buf), "the revert brought the snapshot's data back")
	require.NoError(t, nc.Close())

	br, err := c.BreakSet(ctx, rep.ID, BreakRequest{MakeReadWrite: true})
	require.NoError(t, err)
	require.Equal(t, "VSS_BREAKEX_FLAG_MAKE_READ_WRITE", br.Flags)
	require.ElementsMatch(t, snap.TargetLUNs, br.LUNs)
	snaps, err := c.Snapshots(ctx)
	require.NoError(t, err)
	require.Empty(t, snaps, "a broken set's snapshots are no longer VSS's")
	l, err := c.LUN(ctx, target)
	require.NoError(t, err)
	require.False(t, l.ReadOnly, "the broken LUN is writable")

	// A second, auto-release set is held until deleted.
	rep2, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0", "lun1"}})
	require.NoError(t, err)
	require.True(t, rep2.Held)
	require.Len(t, rep2.Snapshots, 2)
	del, err := c.DeleteSnapshot(ctx, rep2.Snapshots[0].ID)
	require.NoError(t, err)
	require.Equal(t, []string{rep2.Snapshots[0].ID.String()}, del.Deleted)
	del, err = c.DeleteSet(ctx, rep2.ID)
	require.NoError(t, err)
	require.Equal(t, []string{rep2.Snapshots[1].ID.String()}, del.Deleted)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Held)
	require.Equal(t, 1, st.Sets["created"], "the broken set; the deleted one left")
	_, err = c.DeleteSet(ctx, rep2.ID)
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
}

func hasSpan(r *SetReport, name string) bool {
	for _, s := range r.Timeline {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TestCreateSetFailure checks that a set that fails after it started is
// answered with the HRESULT and the set's report, timeline included.
func TestCreateSetFailure(t *testing.T) {
	cfg := testConfig()
	cfg.Windows.Hold = 50 * time.Millisecond
	prof, err := ParseConfig("c.yaml", []byte("providers:\n  - name: slow\n    profile:\n      commit: {block: 200ms}\n"))
	require.NoError(t, err)
	cfg.Providers = prof.Providers
	cfg.File, cfg.root = prof.File, prof.root
	_, c := start(t, cfg)
	_, err = c.CreateSet(context.Background(), CreateSetRequest{Targets: []string{"lun0"}, Context: "VSS_CTX_APP_ROLLBACK"})
	require.ErrorIs(t, err, vss.VSS_E_HOLD_WRITES_TIMEOUT)
	var ae *APIError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusGatewayTimeout, ae.Status)
	require.NotNil(t, ae.Set)
	require.Equal(t, "failed", ae.Set.State)
	require.Equal(t, "VSS_E_HOLD_WRITES_TIMEOUT", ae.Set.Result)
	require.True(t, hasSpan(ae.Set, "hold"))
	require.Empty(t, ae.Set.Snapshots)
	require.True(t, strings.HasPrefix(err.Error(), "DoSnapshotSet: VSS_E_HOLD_WRITES_TIMEOUT"), err.Error())
}

// TestSetsAreSerialized checks that two requests for sets at once both
// succeed: the second waits for the first (B.1) instead of failing.
func TestSetsAreSerialized(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	errs := make(chan error, 2)
	for _, l := range []string{"lun0", "lun1"} {
		go func() {
			_, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{l}, Context: "nas-rollback"})
			errs <- err
		}()
	}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
}

// TestDeleteSetLeavesTheListing: a deleted set is gone from GET /v1/sets
// and GET /v1/sets/{id}; the others stay.
func TestDeleteSetLeavesTheListing(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	kept, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
	require.NoError(t, err)
	for _, sc := range []string{"backup", "app-rollback"} { // held and not held
		rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun1"}, Context: sc})
		require.NoError(t, err)
		del, err := c.DeleteSet(ctx, rep.ID)
		require.NoError(t, err, sc)
		require.Equal(t, []string{rep.Snapshots[0].ID.String()}, del.Deleted, sc)
		require.Equal(t, rep.ID, *del.Set, sc)
		_, err = c.Set(ctx, rep.ID)
		require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND, "%s: the deleted set is gone", sc)
	}
	sets, err := c.Sets(ctx)
	require.NoError(t, err)
	require.Len(t, sets, 1, "only the set that was not deleted")
	require.Equal(t, kept.ID, sets[0].ID)
}

// TestDeleteSetWithoutSnapshots: a set that holds no snapshot (abandoned,
// failed, or emptied one snapshot at a time) can be deleted; it used to
// answer "has no snapshot left" and stay listed for good.
func TestDeleteSetWithoutSnapshots(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	_, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"nope"}})
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	emptied, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "app-rollback"})
	require.NoError(t, err)
	_, err = c.DeleteSnapshot(ctx, emptied.Snapshots[0].ID)
	require.NoError(t, err)

	sets, err := c.Sets(ctx)
	require.NoError(t, err)
	require.Len(t, sets, 2)
	states := map[string]vss.ID{}
	for _, s := range sets {
		require.Zero(t, s.Snapshots)
		states[s.State] = s.ID
	}
	require.Contains(t, states, "abandoned")
	require.Equal(t, emptied.ID, states["created"])
	for _, id := range []vss.ID{states["abandoned"], emptied.ID} {
		del, err := c.DeleteSet(ctx, id)
		require.NoError(t, err)
		require.Empty(t, del.Deleted)
		require.Equal(t, id, *del.Set)
		var text bytes.Buffer
		require.NoError(t, del.WriteText(&text))
		require.Equal(t, "deleted set "+id.String()+"\n", text.String())
	}
	sets, err = c.Sets(ctx)
	require.NoError(t, err)
	require.Empty(t, sets)
	_, err = c.DeleteSet(ctx, emptied.ID)
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND, "deleted once")
}

// heapInUse is the live heap after two collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSetsCostNothingOnceDeleted: sets created and deleted leave no
// memory behind. Each one used to keep about 4.6 kB (its record and
// timeline in the service's history, and the daemon's record) for as long
// as the daemon ran. The sets are made by the handlers' own methods: HTTP
// keeps nothing, and costs the race detector seconds.
func TestSetsCostNothingOnceDeleted(t *testing.T) {
	d, c := start(t, testConfig())
	ctx := context.Background()
	cycle := func(n int) {
		for range n {
			rep, err := d.createSet(ctx, CreateSetRequest{Targets: []string{"lun0"}})
			require.NoError(t, err)
			_, err = d.deleteSet(ctx, rep.ID)
			require.NoError(t, err)
		}
	}
	cycle(100)
	before := heapInUse()
	t0 := time.Now()
	cycle(2000)
	took := time.Since(t0)
	after := heapInUse()
	runtime.KeepAlive(d)
	grown := int64(after) - int64(before)
	t.Logf("heap %d B after 100 sets, %d B after 2100 (%v for 2000): %d B a set", before, after, took, grown/2000)
	require.Less(t, grown, int64(2000*512), "2000 deleted sets keep less than 512 B each (the leak was 4.6 kB)")
	sets, err := c.Sets(ctx)
	require.NoError(t, err)
	require.Empty(t, sets)
}

// TestSetHistoryKeepsTheNewest: past sets.history the oldest sets are
// forgotten, their memory with them, while the outcome counters go on
// counting every set.
func TestSetHistoryKeepsTheNewest(t *testing.T) {
	cfg := testConfig()
	cfg.Sets.History = 50
	d, c := start(t, cfg)
	ctx := context.Background()
	var last vss.ID
	abandon := func(n int) {
		for range n {
			rep, err := d.createSet(ctx, CreateSetRequest{Targets: []string{"nope"}})
			require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
			last = rep.ID
		}
	}
	abandon(100)
	before := heapInUse()
	abandon(2000)
	after := heapInUse()
	grown := int64(after) - int64(before)
	t.Logf("heap %d B after 100 sets, %d B after 2100: %d B a set", before, after, grown/2000)
	require.Less(t, grown, int64(2000*128), "sets past the history keep less than 128 B each")

	sets, err := c.Sets(ctx)
	require.NoError(t, err)
	require.Len(t, sets, 50)
	require.Equal(t, last, sets[len(sets)-1].ID, "the newest are kept")
	d.mu.Lock()
	records := len(d.mu.sets)
	d.mu.Unlock()
	require.Equal(t, 50, records, "the daemon's records follow the history")
	text, err := c.Metrics(ctx)
	require.NoError(t, err)
	require.Contains(t, text, `shadowbench_snapshot_sets_total{outcome="abandoned"} 2100`, "counted, not recounted from the history")
}
