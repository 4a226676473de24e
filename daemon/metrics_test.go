package daemon

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
)

// TestMetrics checks that a scrape carries the expected families, with
// the LUN statistics read at scrape time (D5) and the sets' phases.
func TestMetrics(t *testing.T) {
	d, c := start(t, testConfig())
	ctx := context.Background()
	nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	require.NoError(t, nc.Write(ctx, make([]byte, 4096), 0, 0))
	require.NoError(t, nc.Read(ctx, make([]byte, 4096), 0))
	require.NoError(t, nc.Close())
	_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}})
	require.NoError(t, err)

	text, err := c.Metrics(ctx)
	require.NoError(t, err)
	for _, want := range []string{
		`shadowbench_lun_ops_total{lun="lun0",op="write"} 1`,
		`shadowbench_lun_ops_total{lun="lun0",op="read"} 1`,
		`shadowbench_lun_bytes_total{lun="lun0",op="write"} 4096`,
		`shadowbench_lun_errors_total{lun="lun0",op="write"} 0`,
		`shadowbench_lun_latency_seconds_bucket{lun="lun0",op="write",le="+Inf"} 1`,
		`shadowbench_lun_latency_seconds_count{lun="lun0",op="write"} 1`,
		`shadowbench_lun_size_bytes{kind="original",lun="lun1"} 6.7108864e+07`,
		`shadowbench_snapshot_sets_total{outcome="created"} 1`,
		`shadowbench_snapshot_sets_total{outcome="failed"} 0`,
		`shadowbench_snapshot_sets_in_progress 0`,
		`shadowbench_snapshots 1`,
		`shadowbench_held_sets 1`,
		`shadowbench_snapshot_phase_duration_seconds_count{phase="CommitSnapshots"} 1`,
		`shadowbench_snapshot_phase_duration_seconds_count{phase="FlushAndHold"} 1`,
		`shadowbench_hold_window_seconds_count 1`,
		`shadowbench_snapshot_set_duration_seconds_count{outcome="created"} 1`,
		`shadowbench_provider_commit_duration_seconds_count{provider="array"} 1`,
		`shadowbench_provider_commit_duration_seconds_bucket{provider="array",le="1e-07"}`,
		`shadowbench_snapshot_phase_duration_seconds_bucket{phase="CommitSnapshots",le="1e-07"}`,
		`shadowbench_provider_call_duration_seconds_bucket{method="CommitSnapshots",provider="array",le="1e-07"}`,
		`shadowbench_provider_call_duration_seconds_count{method="CommitSnapshots",provider="array"} 1`,
		`shadowbench_store_data_bytes`,
		`shadowbench_writers{kind="remote"} 0`,
		`shadowbench_build_info{version="test"} 1`,
		`shadowbench_start_time_seconds`,
		`go_goroutines`,
	} {
		require.Contains(t, text, want)
	}
	// The commit's sum is the provider's exact sum, not the mean times the
	// count of its rounded histogram.
	require.Equal(t, d.provs[0].prov.CommitStats().Sum.Seconds(),
		sample(t, text, `shadowbench_provider_commit_duration_seconds_sum{provider="array"}`))
	for _, line := range strings.Split(text, "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(line, "# TYPE ") {
			_ = name
			f := strings.Fields(line)[2]
			require.True(t, strings.HasPrefix(f, "shadowbench_") || strings.HasPrefix(f, "go_") || strings.HasPrefix(f, "process_"), f)
		}
	}
}

// TestMetricsCountRefusedConnections checks that a connection past
// nbd.max-connections is closed at once and counted.
func TestMetricsCountRefusedConnections(t *testing.T) {
	cfg := testConfig()
	cfg.NBD.MaxConnections = 1
	cfg.NBD.MaxInFlightBytes = 256 << 20
	d, c := start(t, cfg)
	ctx := context.Background()
	addr := d.NBDAddrs()[0].String()
	nc, err := nbd.Dial(ctx, "tcp", addr, &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	defer nc.Close()
	over, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer over.Close()
	require.NoError(t, over.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = over.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed before the greeting")
	require.NoError(t, nc.Read(ctx, make([]byte, 512), 0), "the connection served goes on")

	text, err := c.Metrics(ctx)
	require.NoError(t, err)
	for _, want := range []string{
		"shadowbench_nbd_connections 1\n",
		"shadowbench_nbd_connections_accepted_total 1\n",
		"shadowbench_nbd_connections_refused_total 1\n",
		"shadowbench_nbd_max_connections 1\n",
		"shadowbench_nbd_in_flight_bytes 0\n",
		"shadowbench_nbd_in_flight_waits_total 0\n",
		"shadowbench_nbd_max_in_flight_bytes 2.68435456e+08\n",
	} {
		require.Contains(t, text, want)
	}
}

// sample returns the value of the sample named line (name and labels, as
// the text format writes them) in a scrape.
func sample(t *testing.T, text, line string) float64 {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, line+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no sample %s in the scrape", line)
	return 0
}

// TestMetricsLatencyFromNanoseconds checks that the LUN latency buckets
// start at 100 ns and that its sum is the LUN's exact running sum, not
// the mean times the count; and the NBD server's request metrics.
func TestMetricsLatencyFromNanoseconds(t *testing.T) {
	d, c := start(t, testConfig())
	ctx := context.Background()
	nc, err := nbd.Dial(ctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, nc.Write(ctx, make([]byte, 4096), int64(i)*4096, 0))
	}
	require.NoError(t, nc.Read(ctx, make([]byte, 4096), 0))
	require.Error(t, nc.Read(ctx, make([]byte, 512), 64<<20), "past the end")
	require.NoError(t, nc.Close())

	// A request is counted once its reply has gone out, which the client
	// may see first, and the next request may be counted before it: wait
	// until every one is.
	var text string
	require.Eventually(t, func() bool {
		text, err = c.Metrics(ctx)
		require.NoError(t, err)
		return strings.Contains(text, `shadowbench_nbd_request_duration_seconds_count{cmd="read"} 2`) &&
			strings.Contains(text, `shadowbench_nbd_request_duration_seconds_count{cmd="write"} 5`) &&
			strings.Contains(text, "shadowbench_nbd_requests_in_flight 0\n")
	}, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, text, `shadowbench_lun_latency_seconds_bucket{lun="lun0",op="write",le="1e-07"}`)
	require.Contains(t, text, `shadowbench_lun_latency_seconds_bucket{lun="lun0",op="write",le="2.5e-07"}`)
	l, err := d.Array().Get("lun0")
	require.NoError(t, err)
	want := l.Stats()[lun.OpWrite].LatencySum.Seconds()
	require.Equal(t, want, sample(t, text, `shadowbench_lun_latency_seconds_sum{lun="lun0",op="write"}`))

	for _, want := range []string{
		`shadowbench_nbd_requests_total{cmd="write"} 5`,
		`shadowbench_nbd_requests_total{cmd="read"} 2`,
		`shadowbench_nbd_request_errors_total{cmd="read"} 1`,
		`shadowbench_nbd_request_errors_total{cmd="write"} 0`,
		`shadowbench_nbd_request_bytes_total{cmd="write"} 20480`,
		`shadowbench_nbd_request_bytes_total{cmd="read"} 4096`,
		`shadowbench_nbd_request_duration_seconds_bucket{cmd="write",le="1e-07"}`,
		`shadowbench_nbd_request_duration_seconds_bucket{cmd="write",le="+Inf"} 5`,
		`shadowbench_nbd_request_duration_seconds_count{cmd="read"} 2`,
		`shadowbench_nbd_requests_total{cmd="flush"} `,
		"shadowbench_nbd_requests_in_flight 0\n",
		"shadowbench_nbd_protocol_errors_total 0\n",
	} {
		require.Contains(t, text, want)
	}
	require.Positive(t, sample(t, text, `shadowbench_nbd_request_duration_seconds_sum{cmd="write"}`))
	require.NotContains(t, text, `cmd="disc"`)
}

// TestMetricsSetResultsAndWriterStates checks the sets counted by result
// code and the writers counted by the state they ended a set in.
func TestMetricsSetResultsAndWriterStates(t *testing.T) {
	cfg := testConfig()
	cfg.Writers = []WriterConfig{
		{Name: "app", Scripted: &ScriptConfig{}},
		{Name: "vetoer", Scripted: &ScriptConfig{On: map[string]ActionConfig{
			"Freeze": {Result: "veto", Failure: "VSS_E_WRITERERROR_RETRYABLE"}}}},
	}
	_, c := start(t, cfg)
	ctx := context.Background()
	text, err := c.Metrics(ctx)
	require.NoError(t, err)
	require.Contains(t, text, `shadowbench_snapshot_set_results_total{result="S_OK"} 0`)
	require.Contains(t, text, `shadowbench_writers_by_state{state="VSS_WS_STABLE"} 0`)

	// A writer's veto fails that writer, not the set (vss-spec.md D).
	_, err = c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}})
	require.NoError(t, err)
	text, err = c.Metrics(ctx)
	require.NoError(t, err)
	require.Contains(t, text, `shadowbench_writers_by_state{state="VSS_WS_FAILED_AT_FREEZE"} 1`)
	require.Equal(t, 2.0, sumOf(text, "shadowbench_writers_by_state{"))
	require.Equal(t, 1.0, sumOf(text, "shadowbench_snapshot_set_results_total{"))
	require.Contains(t, text, `shadowbench_snapshot_set_results_total{result="S_OK"} 1`)
}

// sumOf adds the samples whose line starts with prefix.
func sumOf(text, prefix string) float64 {
	sum := 0.0
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			f, _ := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
			sum += f
		}
	}
	return sum
}
