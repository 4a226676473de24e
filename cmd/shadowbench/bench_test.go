package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// benchRun runs a bench command line and returns its stdout and stderr.
func benchRun(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"bench"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{nil, "bench: name a workload: commit, sequence"},
		{[]string{"fio"}, `bench: unknown workload "fio": want one of commit`},
		{[]string{"sequence", "extra"}, `unknown command "extra"`},
		{[]string{"sequence", "--luns", "many"}, `invalid argument "many" for "--luns"`},
		{[]string{"sequence", "--luns", "0"}, "bench: sequence: luns must be at least 1"},
		{[]string{"sequence", "--duration", "soon"}, `invalid argument "soon" for "--duration"`},
		{[]string{"sequence", "--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"commit", "--luns", "1,0"}, "a set of 0 LUNs: want 1 to 4096"},
		{[]string{"hold", "--rate", "often"}, `invalid argument "often" for "--rate" flag: bench: rate "often"`},
		{[]string{"hold", "--block-size", "huge"}, `invalid argument "huge" for "--block-size"`},
		{[]string{"io-impact", "--rate", "0"}, "bench: io-impact: rate must be positive"},
		{[]string{"first-write", "--grains", "3000"}, "grain 2.9 KiB: want a power of two"},
		{[]string{"nbd", "--network", "udp"}, "network must be tcp or unix"},
		{[]string{"nbd", "--read-pct", "150"}, "read-pct must be from 0 to 100"},
	} {
		_, _, err := benchRun(tc.args...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}

func TestBenchHelpExplainsWorkloads(t *testing.T) {
	out, _, err := benchRun("--help")
	require.NoError(t, err)
	for _, w := range workloads {
		require.Contains(t, out, w)
	}
	out, _, err = benchRun("io-impact", "--help")
	require.NoError(t, err)
	require.Contains(t, out, "a quarter without snapshots")
	require.Contains(t, out, "(default 1/s)")
	require.Contains(t, out, "(default 4 KiB)")
}

// TestBenchWorkloadsTiny runs each workload for 200 ms with small sizes
// and checks its JSON.
func TestBenchWorkloadsTiny(t *testing.T) {
	small := []string{"--duration", "200ms"}
	load := []string{"--luns", "2", "--conns", "2", "--qd", "2", "--lun-size", "16MiB", "--span", "4MiB"}
	for _, tc := range []struct {
		workload string
		args     []string
		latency  string
	}{
		{"commit", []string{"--luns", "1,2", "--lun-size", "16MiB", "--data", "1MiB", "--duration", "100ms"}, "CommitSnapshots/luns=2"},
		{"sequence", []string{"--luns", "4", "--writers", "2", "--warmup", "1"}, "phase/other"},
		{"hold", append(load, "--rate", "20/s"), "window/hold"},
		{"io-impact", append(load, "--rate", "20/s", "--writers", "1"), "write/during"},
		{"first-write", []string{"--grains", "4KiB", "--sizes", "512,4KiB", "--span", "1MiB"}, "grain=4KiB size=512B/first"},
		{"nbd", append(load, "--network", "unix"), "nbd/write"},
	} {
		t.Run(tc.workload, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "out.json")
			args := append(append([]string{tc.workload}, small...), tc.args...)
			out, _, err := benchRun(append(args, "--json", file)...)
			require.NoError(t, err)
			require.Contains(t, out, tc.workload+":")
			require.Contains(t, out, "p99.9")
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			var res struct {
				Workload  string `json:"workload"`
				Latencies []struct {
					Name  string `json:"name"`
					Count int64  `json:"count"`
					P99   int64  `json:"p99_ns"`
				} `json:"latencies"`
			}
			require.NoError(t, json.Unmarshal(b, &res))
			require.Equal(t, tc.workload, res.Workload)
			var found bool
			for _, l := range res.Latencies {
				if l.Name == tc.latency {
					found = true
					require.Positive(t, l.Count)
					require.Positive(t, l.P99)
				}
			}
			require.True(t, found, "no latency %q in %s", tc.latency, b)
		})
	}
}

// TestBenchJSONToStdout checks that --json - leaves stdout to the JSON
// alone and that --report writes a page with the charts.
func TestBenchJSONToStdout(t *testing.T) {
	report := filepath.Join(t.TempDir(), "r.html")
	out, errOut, err := benchRun("sequence", "--duration", "200ms", "--luns", "2", "--writers", "1", "--json", "-", "--report", report)
	require.NoError(t, err)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &res), "stdout is JSON alone")
	require.Equal(t, "sequence", res["workload"])
	require.Contains(t, errOut, "sequence:", "the text goes to stderr")
	html, err := os.ReadFile(report)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(html), "<!DOCTYPE html>"))
	require.Contains(t, string(html), `<svg id="gantt-0"`)
	require.Contains(t, string(html), `<svg id="percentiles-0-phase"`)
}

// TestBenchCompareAndCSV runs a workload twice, the second time comparing
// with the first's JSON and writing CSV files.
func TestBenchCompareAndCSV(t *testing.T) {
	dir := t.TempDir()
	args := []string{"hold", "--duration", "200ms", "--luns", "1", "--conns", "1", "--qd", "1", "--lun-size", "16MiB",
		"--span", "1MiB", "--rate", "20/s"}
	old := filepath.Join(dir, "old.json")
	_, _, err := benchRun(append(args, "--json", old)...)
	require.NoError(t, err)
	report, csvDir := filepath.Join(dir, "report.html"), filepath.Join(dir, "csv")
	out, _, err := benchRun(append(args, "--report", report, "--compare", old, "--csv", csvDir)...)
	require.NoError(t, err)
	require.Contains(t, out, "CSV: ")
	html, err := os.ReadFile(report)
	require.NoError(t, err)
	require.Contains(t, string(html), "Compared with the run started")
	require.Contains(t, string(html), ">old: write</text>")
	require.FileExists(t, filepath.Join(csvDir, "hold-latency.csv"))
	require.FileExists(t, filepath.Join(csvDir, "hold-series.csv"))

	_, _, err = benchRun(append(args, "--compare", old)...)
	require.ErrorContains(t, err, "give --report too")
	_, _, err = benchRun(append(args, "--report", report, "--compare", filepath.Join(dir, "nope.json"))...)
	require.ErrorContains(t, err, "--compare")
}
