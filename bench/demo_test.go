package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// tinyDemo is the demo in about a second: 5 burst sets, a slow writer of
// 20 ms, a light load.
func tinyDemo(t *testing.T) DemoConfig {
	c := DefaultDemoConfig()
	c.Sets, c.Duration, c.LUNSize = 5, 500*time.Millisecond, 16<<20
	c.LoadWriters, c.LoadRate, c.LoadSlots = 2, 400, 64
	c.AppRegion, c.SlowDelay = 64<<10, 20*time.Millisecond
	c.Report = filepath.Join(t.TempDir(), "demo-report.html")
	return c
}

// TestDemo runs the demo end to end and checks that every verification
// passed, that the narrative has its parts, and that the report is HTML
// with both sets' Gantt charts.
func TestDemo(t *testing.T) {
	cfg := tinyDemo(t)
	cfg.CSV = filepath.Join(t.TempDir(), "csv")
	var out bytes.Buffer
	res, err := RunDemo(context.Background(), cfg, &out)
	require.NoError(t, err)
	text := out.String()
	require.True(t, res.Passed, "failed: %+v\n%s", res.Failed(), text)
	require.Empty(t, res.Failed())
	require.Equal(t, 2+cfg.Sets, res.Sets, "two showcase sets and the burst")
	require.Zero(t, res.FailedSets)

	var names []string
	for _, c := range res.Checks {
		names = append(names, c.Name)
	}
	for _, want := range []string{"application data in the snapshot", "the application resumed after Thaw",
		"the snapshot is read-only", "D: load records are a point in time", "E: load records are a point in time",
		"the set survives the veto", "the veto is reported", "every set created",
		"every snapshot holds the application's data", "the load saw no error", "no write lost",
		"the application's writes"} {
		require.Contains(t, names, want)
	}
	for _, want := range []string{"nbd://127.0.0.1:", "PASS  application data in the snapshot", "bytes equal",
		"VSS_WS_FAILED_AT_FREEZE", "VSS_E_WRITERERROR_RETRYABLE", "Timeline of set 1", "CommitSnapshots",
		"FlushAndHold", "p99.9", "Report: " + cfg.Report, "All 15 checks passed"} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "   FAIL  ")

	// The veto is in the status, and the set was created all the same.
	require.NotNil(t, res.VetoSet)
	require.Equal(t, "S_OK", res.VetoSet.Result)
	require.NotNil(t, res.FirstSet)
	require.NotEmpty(t, res.FirstSet.Spans)

	for _, name := range []string{"set/CommitSnapshots", "set/hold window", "set/DoSnapshotSet", "load/write"} {
		var found bool
		for _, l := range res.Latencies {
			if l.Name == name {
				found = true
				require.Positive(t, l.Count, name)
			}
		}
		require.True(t, found, name)
	}

	html, err := os.ReadFile(cfg.Report)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(html), "<!DOCTYPE html>"))
	for _, id := range []string{`<svg id="gantt-0"`, `<svg id="gantt-1"`, `<svg id="percentiles-0-set"`,
		`<svg id="hold-0"`, `<svg id="series-0"`} {
		require.Contains(t, string(html), id)
	}
	require.Equal(t, cfg.Report, res.Report)
	// The load over time has every set created marked.
	require.NotNil(t, res.Results[0].Series)
	require.Len(t, res.Results[0].Series.Snapshots, res.Sets)
	cs := charts(t, string(html))
	checkLegends(t, cs)
	checkTextInside(t, cs)
	require.Contains(t, text, "CSV: ")
	require.FileExists(t, filepath.Join(cfg.CSV, "demo-series.csv"))
	require.FileExists(t, filepath.Join(cfg.CSV, "demo-set-2-vetoed-timeline.csv"))

	var buf bytes.Buffer
	require.NoError(t, res.WriteJSON(&buf))
	var back map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.Equal(t, true, back["passed"])
}

// TestDemoNoReport writes nothing when Report is empty, and runs with no
// burst at all.
func TestDemoNoReport(t *testing.T) {
	cfg := tinyDemo(t)
	cfg.Report, cfg.Sets, cfg.SlowDelay = "", 0, 0
	dir := t.TempDir()
	t.Chdir(dir)
	res, err := RunDemo(context.Background(), cfg, nil)
	require.NoError(t, err)
	require.True(t, res.Passed, "%+v", res.Failed())
	require.Empty(t, res.Report)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestDemoRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		edit func(*DemoConfig)
		err  string
	}{
		{func(c *DemoConfig) { c.Sets = -1 }, "sets must be 0 or more"},
		{func(c *DemoConfig) { c.Duration = 0 }, "duration must be positive"},
		{func(c *DemoConfig) { c.LoadWriters = 0 }, "load writers must be from 1 to 64"},
		{func(c *DemoConfig) { c.LoadRate = 0 }, "load rate must be positive"},
		{func(c *DemoConfig) { c.LoadSlots = 0 }, "load slots must be at least 1"},
		{func(c *DemoConfig) { c.AppRegion = 1000 }, "multiple of 8 KiB"},
		{func(c *DemoConfig) { c.AppInterval = 0 }, "application interval must be positive"},
		{func(c *DemoConfig) { c.SlowDelay = time.Minute }, "slow writer delay must be from 0 to 5s"},
		{func(c *DemoConfig) { c.LUNSize = 1 << 20 }, "must be a multiple of 4 KiB and hold"},
	} {
		cfg := DefaultDemoConfig()
		tc.edit(&cfg)
		_, err := RunDemo(context.Background(), cfg, nil)
		require.ErrorContains(t, err, tc.err)
		require.ErrorContains(t, err, "bench: demo: ")
	}
}

// TestDemoLoadChecksCatchDamage feeds the load's checks slots that a
// snapshot or a LUN could hold, right and wrong: they must tell them
// apart, or the demo's PASS would mean nothing.
func TestDemoLoadChecksCatchDamage(t *testing.T) {
	const slots = 8
	l := &demoLoad{slots: slots}
	w := &demoLoadWriter{id: 3}
	// 20 records: record n sent at n ms, acknowledged at n ms + 500 µs.
	for n := 1; n <= 20; n++ {
		w.sent = append(w.sent, time.Duration(n)*time.Millisecond)
		w.done = append(w.done, time.Duration(n)*time.Millisecond+500*time.Microsecond)
	}
	image := func(n int64) []byte {
		p := make([]byte, slots*demoRecordSize)
		for s := range slots {
			l.expected(p[s*demoRecordSize:(s+1)*demoRecordSize], w.id, s, n)
		}
		return p
	}
	size := slots * demoRecordSize

	// After 20 records, slot 3 holds record 20 and slot 4 record 13.
	full := image(20)
	require.Equal(t, size, l.matchPrefix(full, w.id, 20))
	require.Less(t, l.matchPrefix(full, w.id, 19), size)
	rec := make([]byte, demoRecordSize)
	demoRecord(rec, w.id, 13)
	require.Equal(t, rec, full[4*demoRecordSize:5*demoRecordSize])
	// Fewer records than slots leave zeros.
	require.Equal(t, make([]byte, demoRecordSize), image(2)[5*demoRecordSize:6*demoRecordSize])

	// A hold from 10.2 ms to 11.2 ms: record 9 was acknowledged before it,
	// record 11 sent before its end. An image of 10 records is a point
	// in time; so are 9 and 11.
	from, to := 10200*time.Microsecond, 11200*time.Microsecond
	for _, n := range []int64{9, 10, 11} {
		got, eq, lo, hi := l.pointInTime(image(n), w, from, to)
		require.Equal(t, n, got)
		require.Equal(t, size, eq)
		require.Equal(t, int64(9), lo)
		require.Equal(t, int64(12), hi)
	}
	// An image that lost record 9, acknowledged before the hold, fails.
	_, eq, _, _ := l.pointInTime(image(8), w, from, to)
	require.Less(t, eq, size)
	// An image with record 11 but not record 10 is no point in time.
	torn := image(11)
	l.expected(torn[1*demoRecordSize:2*demoRecordSize], w.id, 1, 9) // slot 1 back to record 2
	_, eq, _, _ = l.pointInTime(torn, w, from, to)
	require.Less(t, eq, size)
	// One flipped byte fails too.
	flipped := image(10)
	flipped[2*demoRecordSize+100] ^= 1
	_, eq, _, _ = l.pointInTime(flipped, w, from, to)
	require.Equal(t, size-1, eq)
}

// TestDemoReportsFailures runs the demo on an array whose CommitSnapshots
// fails on its third call, the first set of the burst: that set's check
// fails, the demo still runs to the end, and the result says it failed.
func TestDemoReportsFailures(t *testing.T) {
	cfg := tinyDemo(t)
	cfg.Report, cfg.Sets = "", 3
	cfg.Profile = provider.DefaultProfile()
	cfg.Profile.Name = "fails-third-commit"
	cfg.Profile.Methods = map[vss.ProviderMethod]provider.MethodBehavior{
		vss.MethodCommitSnapshots: {Failures: []provider.Failure{provider.OnNth(3, vss.VSS_E_PROVIDER_VETO)}},
	}
	var out bytes.Buffer
	res, err := RunDemo(context.Background(), cfg, &out)
	require.NoError(t, err)
	require.False(t, res.Passed)
	failed := res.Failed()
	require.Len(t, failed, 1, out.String())
	require.Equal(t, "every set created", failed[0].Name)
	require.Contains(t, failed[0].Detail, "2 of 3 sets created")
	require.Contains(t, failed[0].Detail, "VSS_E_PROVIDER_VETO")
	require.Equal(t, 1, res.FailedSets)
	require.Contains(t, out.String(), "   FAIL  every set created")
	require.Contains(t, out.String(), "1 of 15 checks FAILED")
	require.Contains(t, out.String(), `firmware profile "fails-third-commit"`)
}
