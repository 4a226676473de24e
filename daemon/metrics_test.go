package daemon

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
		`shadowbench_provider_call_duration_seconds_count{method="CommitSnapshots",provider="array"} 1`,
		`shadowbench_store_data_bytes`,
		`shadowbench_writers{kind="remote"} 0`,
		`shadowbench_build_info{version="test"} 1`,
		`shadowbench_start_time_seconds`,
		`go_goroutines`,
	} {
		require.Contains(t, text, want)
	}
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
