package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tiny configurations: each workload in a few hundred milliseconds. Speed
// targets are never asserted here; the machine is shared and noisy.
func tinySequence() SequenceConfig {
	c := DefaultSequenceConfig()
	c.Writers, c.LUNs, c.Duration, c.Warmup = 2, 4, 150*time.Millisecond, 1
	return c
}

func tinyCommit() CommitConfig {
	return CommitConfig{LUNs: []int{1, 4}, LUNSize: 16 << 20, Data: 1 << 20, Cow: true, Duration: 50 * time.Millisecond}
}

func tinyHold() HoldConfig {
	c := DefaultHoldConfig()
	c.LUNs, c.Conns, c.QD, c.Span, c.LUNSize, c.Rate, c.Duration = 2, 2, 2, 4<<20, 16<<20, 20, 200*time.Millisecond
	return c
}

func tinyIOImpact() IOImpactConfig {
	c := DefaultIOImpactConfig()
	c.LUNs, c.Writers, c.Conns, c.QD, c.Span, c.LUNSize, c.Rate, c.Duration = 2, 1, 2, 2, 4<<20, 16<<20, 20, 300*time.Millisecond
	return c
}

func tinyFirstWrite() FirstWriteConfig {
	return FirstWriteConfig{Grains: Sizes{4 << 10, 16 << 10}, Sizes: Sizes{4 << 10}, Span: 1 << 20, Duration: 40 * time.Millisecond}
}

func tinyNBD() NBDConfig {
	c := DefaultNBDConfig()
	c.Span, c.LUNSize, c.QD, c.Duration = 4<<20, 16<<20, 4, 150*time.Millisecond
	return c
}

// TestWorkloads runs each workload tiny and checks that its result has
// the histograms it promises and survives a JSON round trip.
func TestWorkloads(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func() (*Result, error)
		want []string
	}{
		{"commit", func() (*Result, error) { return RunCommit(ctx, tinyCommit(), nil) },
			[]string{"CommitSnapshots/luns=1", "CommitSnapshots/luns=4", "swaps/luns=4", "cow/Snapshot"}},
		{"sequence", func() (*Result, error) { return RunSequence(ctx, tinySequence(), nil) },
			[]string{"sequence/DoSnapshotSet", "phase/prepare", "phase/freeze", "phase/hold", "phase/commit",
				"phase/thaw", "phase/post-snapshot", "phase/other", "window/hold", "window/freeze", "step/CommitSnapshots"}},
		{"hold", func() (*Result, error) { return RunHold(ctx, tinyHold(), nil) },
			[]string{"window/hold", "hold/flush, hold and drain", "hold/commit", "hold/release", "nbd/write"}},
		{"io-impact", func() (*Result, error) { return RunIOImpact(ctx, tinyIOImpact(), nil) },
			[]string{"write/before", "write/during", "write/after", "window/hold"}},
		{"first-write", func() (*Result, error) { return RunFirstWrite(ctx, tinyFirstWrite(), nil) },
			[]string{"grain=4KiB size=4KiB/first", "grain=4KiB size=4KiB/steady", "grain=16KiB size=4KiB/first"}},
		{"nbd", func() (*Result, error) { return RunNBD(ctx, tinyNBD(), nil) },
			[]string{"nbd/read", "nbd/write"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.run()
			require.NoError(t, err)
			require.Equal(t, tc.name, r.Workload)
			for _, name := range tc.want {
				l, ok := r.Latency(name)
				require.True(t, ok, "no latency %q", name)
				require.Positive(t, l.Count, name)
				require.LessOrEqual(t, l.Min, l.P50, name)
				require.LessOrEqual(t, l.P50, l.P99, name)
				require.LessOrEqual(t, l.P99, l.Max, name)
			}
			var buf bytes.Buffer
			require.NoError(t, r.WriteJSON(&buf))
			var back Result
			require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
			require.Equal(t, r.Workload, back.Workload)
			require.Len(t, back.Latencies, len(r.Latencies))
			buf.Reset()
			require.NoError(t, r.WriteText(&buf))
			require.Contains(t, buf.String(), "p99.9")
		})
	}
}

// TestWorkloadsDurable runs the workloads that can on a durable array
// (DataDir), and checks that they leave nothing behind in it.
func TestWorkloadsDurable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	commit, seq, hold, nb := tinyCommit(), tinySequence(), tinyHold(), tinyNBD()
	commit.DataDir, seq.DataDir, hold.DataDir, nb.DataDir = dir, dir, dir, dir
	for name, run := range map[string]func() (*Result, error){
		"commit":   func() (*Result, error) { return RunCommit(ctx, commit, nil) },
		"sequence": func() (*Result, error) { return RunSequence(ctx, seq, nil) },
		"hold":     func() (*Result, error) { return RunHold(ctx, hold, nil) },
		"nbd":      func() (*Result, error) { return RunNBD(ctx, nb, nil) },
	} {
		r, err := run()
		require.NoError(t, err, name)
		require.NotEmpty(t, r.Latencies, name)
		left, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, left, "%s left its array behind", name)
	}
}

// TestSequencePhasesAddUp checks that the phases of every set add up to
// its DoSnapshotSet exactly: nothing is dropped, "other" takes the rest.
func TestSequencePhasesAddUp(t *testing.T) {
	ctx := context.Background()
	rg, err := newRig(ctx, rigConfig{LUNs: 3, LUNSize: 1 << 20, Writers: 2})
	require.NoError(t, err)
	defer func() { require.NoError(t, rg.Close()) }()
	for range 5 {
		s, err := rg.snapshotSet(ctx)
		require.NoError(t, err)
		phases, steps := breakdown(s)
		var sum time.Duration
		for p, d := range phases {
			require.Contains(t, Phases, p, "step outside the known phases")
			require.GreaterOrEqual(t, d, time.Duration(0), p)
			sum += d
		}
		require.Equal(t, s.total(), sum)
		for name := range phaseOf {
			if name != "AutoImport" || steps[name] > 0 {
				require.Positive(t, steps[name], name)
			}
		}
		_, freeze := windows(s)
		require.Len(t, freeze, 2, "one freeze window per writer")
	}
}

func TestSequenceSetsBound(t *testing.T) {
	c := tinySequence()
	c.Duration, c.Sets = time.Minute, 3
	r, err := RunSequence(context.Background(), c, nil)
	require.NoError(t, err)
	l, _ := r.Latency("sequence/DoSnapshotSet")
	require.EqualValues(t, 3, l.Count)
	require.NotNil(t, r.Timeline)
	require.NotEmpty(t, r.Timeline.Spans)
}

// TestSequenceRemote: --remote runs as many sets across arrays over the
// provider protocol as in-process, in turn, and reports them apart, with
// the calls each remote set made to the arrays: three arrays answer every
// round-trip step once each, and the hold window holds a flush, a commit
// and a release per array.
func TestSequenceRemote(t *testing.T) {
	c := tinySequence()
	c.Duration, c.Sets, c.Remote = time.Minute, 4, 3
	r, err := RunSequence(context.Background(), c, nil)
	require.NoError(t, err)
	local, _ := r.Latency("sequence/DoSnapshotSet")
	remote, ok := r.Latency("remote/sequence/DoSnapshotSet")
	require.True(t, ok)
	require.EqualValues(t, 4, local.Count)
	require.EqualValues(t, 4, remote.Count)
	for _, m := range []string{"CommitSnapshots", "FlushAndHold", "ReleaseWrites"} {
		l, ok := r.Latency("remote/call/" + m)
		require.True(t, ok, m)
		require.EqualValues(t, 3*4, l.Count, "%s: once per array and set", m)
	}
	held, ok := r.Metric("remote/calls inside the hold window per set (median)")
	require.True(t, ok)
	require.EqualValues(t, 9, held.Value)
	require.NotNil(t, r.Timeline, "the median remote set's")
	_, err = RunSequence(context.Background(), SequenceConfig{Writers: 1, LUNs: 1, LUNSize: c.LUNSize, Sets: 1, Remote: -1}, nil)
	require.ErrorContains(t, err, "remote arrays must be 0 or more")
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"sequence luns", func() error {
			c := tinySequence()
			c.LUNs = 0
			_, err := RunSequence(ctx, c, nil)
			return err
		}, "luns must be at least 1"},
		{"commit set size", func() error {
			c := tinyCommit()
			c.LUNs = []int{0}
			_, err := RunCommit(ctx, c, nil)
			return err
		}, "want 1 to 4096"},
		{"hold qd", func() error {
			c := tinyHold()
			c.QD = 0
			_, err := RunHold(ctx, c, nil)
			return err
		}, "qd must be"},
		{"io-impact rate", func() error {
			c := tinyIOImpact()
			c.Rate = 0
			_, err := RunIOImpact(ctx, c, nil)
			return err
		}, "rate must be positive"},
		{"first-write grain", func() error {
			c := tinyFirstWrite()
			c.Grains = Sizes{3000}
			_, err := RunFirstWrite(ctx, c, nil)
			return err
		}, "power of two"},
		{"nbd network", func() error {
			c := tinyNBD()
			c.Network = "udp"
			_, err := RunNBD(ctx, c, nil)
			return err
		}, "network must be tcp or unix"},
		{"nbd span per request", func() error {
			c := tinyNBD()
			c.Span, c.Conns, c.QD = 64<<10, 4, 8
			_, err := RunNBD(ctx, c, nil)
			return err
		}, "must hold a block for each request in flight"},
		{"nbd read-pct", func() error {
			c := tinyNBD()
			c.ReadPct = 101
			_, err := RunNBD(ctx, c, nil)
			return err
		}, "read-pct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestNBDOverUnixSocket(t *testing.T) {
	c := tinyNBD()
	c.Network, c.ReadPct = "unix", 0
	r, err := RunNBD(context.Background(), c, nil)
	require.NoError(t, err)
	_, ok := r.Latency("nbd/read")
	require.False(t, ok, "no reads at 0%")
	m, ok := r.Metric("write throughput")
	require.True(t, ok)
	require.Positive(t, m.Value)
}

func TestRateParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		str  string
	}{
		{"1/s", 1, "1/s"}, {"30/m", 0.5, "every 2s"}, {"2/h", 2.0 / 3600, "every 30m0s"},
		{"500ms", 2, "2/s"}, {"every 2s", 0.5, "every 2s"}, {"4", 4, "4/s"}, {"0", 0, "0"}, {"10/100ms", 100, "100/s"},
	} {
		var r Rate
		require.NoError(t, r.Set(tc.in), tc.in)
		require.InDelta(t, float64(tc.want), float64(r), 1e-9, tc.in)
		require.Equal(t, tc.str, r.String(), tc.in)
	}
	for _, bad := range []string{"", "x/s", "1/fortnight", "-1/s", "-5ms", "every"} {
		var r Rate
		require.Error(t, r.Set(bad), bad)
	}
}

func TestSizeParseAndFormat(t *testing.T) {
	var s Size
	require.NoError(t, s.Set("4KiB"))
	require.EqualValues(t, 4096, s)
	require.Equal(t, "4 KiB", s.String())
	require.NoError(t, s.Set("64k")) // k is 1024, as fio reads it
	require.EqualValues(t, 65536, s)
	require.NoError(t, s.Set("64KB")) // the decimal spelling
	require.EqualValues(t, 64000, s)
	require.Error(t, s.Set("lots"))
	var ss Sizes
	require.NoError(t, ss.Set("512,4KiB, 64KiB"))
	require.Equal(t, Sizes{512, 4096, 65536}, ss)
	require.Equal(t, "512 B,4 KiB,64 KiB", ss.String())
	require.Equal(t, "1.5 MiB", FormatBytes(3<<19))
	require.Equal(t, "23.6 GiB", FormatBytes(24731708<<10))
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		312: "312ns", 1452: "1.45µs", 12345678: "12.3ms", 1200 * time.Millisecond: "1.20s",
		150 * time.Microsecond: "150µs", -2 * time.Millisecond: "-2.00ms", 0: "0ns",
	} {
		require.Equal(t, want, FormatDuration(d))
	}
}

func TestHistogramSummary(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	h.Record(-1)             // clamped to the lowest value
	h.Record(time.Hour * 24) // clamped to the highest
	l := h.Summary("x")
	require.EqualValues(t, 1002, l.Count)
	require.InDelta(t, 500*time.Microsecond, l.P50, float64(time.Microsecond))
	require.InDelta(t, 990*time.Microsecond, l.P99, float64(2*time.Microsecond))
	require.Equal(t, time.Duration(1), l.Min)
	require.InDelta(t, float64(histMax), float64(l.Max), float64(histMax)/500)
	var n int64
	for _, b := range l.Buckets {
		require.Less(t, b.Low, b.High)
		n += b.Count
	}
	require.Equal(t, l.Count, n, "buckets hold every value")
	require.NotEmpty(t, l.Curve)
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	b := NewProgressBar(&buf, "sequence")
	b.Update(0.5, "early")
	require.Empty(t, buf.String(), "nothing in the first two seconds")
	b.ShowAfter = time.Nanosecond
	b.Update(0.5, "12 sets")
	require.Contains(t, buf.String(), "50%")
	require.Contains(t, buf.String(), "12 sets")
	b.Finish()
	require.Contains(t, buf.String(), "\r\x1b[K")

	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer f.Close()
	require.False(t, IsTerminal(f), "a file is not a terminal")
}

func TestMachine(t *testing.T) {
	m := Describe()
	require.Positive(t, m.Cores)
	require.NotEmpty(t, m.GoVersion)
	require.NotEmpty(t, m.OS)
	require.False(t, m.Date.IsZero())
	require.Contains(t, m.String(), "cores")
	require.Positive(t, m.Procs)

	m.CPU, m.Cores, m.Procs = "cpu", 2, 2
	require.Contains(t, m.String(), ", 2 cores, ")
	m.Procs = 1
	require.Contains(t, m.String(), ", 2 cores (GOMAXPROCS=1), ")
}
