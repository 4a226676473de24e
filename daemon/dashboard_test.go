package daemon

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/nbd"
)

// dashboardPath is the Grafana dashboard that ships with the project.
const dashboardPath = "../contrib/grafana/shadowbench.json"

var metricName = regexp.MustCompile(`\bshadowbench_[a-z0-9_]+`)

// dashboardExprs returns every query of the dashboard, with its panel's
// title, and checks that each panel reads the dashboard's data source.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			FieldConfig struct {
				Defaults struct {
					Unit string `json:"unit"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	exprs := map[string]string{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.Equal(t, "${datasource}", p.Datasource.UID, p.Title)
		require.NotEmpty(t, p.FieldConfig.Defaults.Unit, "%s: every panel says its unit", p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			exprs[tg.Expr] = p.Title
		}
	}
	return exprs
}

// TestDashboardMetricsExist checks that every metric the Grafana
// dashboard queries is on /metrics of a real daemon that has served NBD
// requests and run a set with a writer, so that no panel stays empty for
// want of a renamed metric.
func TestDashboardMetricsExist(t *testing.T) {
	cfg := testConfig()
	cfg.Writers = []WriterConfig{{Name: "app", Scripted: &ScriptConfig{}}}
	d, c := start(t, cfg)
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

	exported := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		exported[name] = true
	}
	var queried []string
	for expr, title := range dashboardExprs(t) {
		names := metricName.FindAllString(expr, -1)
		require.NotEmpty(t, names, "%s: %s queries no shadowbench metric", title, expr)
		for _, n := range names {
			require.True(t, exported[n], "panel %q queries %s, which /metrics does not export", title, n)
			queried = append(queried, n)
		}
	}
	// The dashboard shows what the issue asked a dashboard to show.
	for _, want := range []string{"shadowbench_snapshot_set_results_total", "shadowbench_hold_window_seconds_bucket",
		"shadowbench_writer_freeze_window_seconds_bucket", "shadowbench_provider_call_duration_seconds_bucket",
		"shadowbench_writers_by_state", "shadowbench_nbd_request_duration_seconds_bucket",
		"shadowbench_nbd_protocol_errors_total", "shadowbench_nbd_requests_in_flight",
		"shadowbench_nbd_connections_refused_total", "shadowbench_lun_latency_seconds_bucket"} {
		require.True(t, slices.Contains(queried, want), "the dashboard shows %s", want)
	}
}
