package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// demoRun runs a demo command line and returns its stdout and stderr.
func demoRun(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"demo"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

func TestDemoRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"extra"}, `unknown command "extra" for "shadowbench demo"`},
		{[]string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"--sets", "many"}, `invalid argument "many" for "--sets"`},
		{[]string{"--sets", "-1"}, "bench: demo: sets must be 0 or more, not -1"},
		{[]string{"--duration", "soon"}, `invalid argument "soon" for "--duration"`},
		{[]string{"--duration", "0s"}, "bench: demo: duration must be positive"},
		{[]string{"--load-rate", "often"}, `invalid argument "often" for "--load-rate" flag: bench: rate "often"`},
		{[]string{"--load-rate", "0"}, "bench: demo: load rate must be positive"},
		{[]string{"--slow-delay", "1m"}, "bench: demo: slow writer delay must be from 0 to 5s"},
		{[]string{"--report", "x.html", "--no-report"}, "demo: --report and --no-report exclude each other"},
		{[]string{"--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"--profile", "no-such-profile.yaml"}, "--profile: "},
	} {
		_, _, err := demoRun(tc.args...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}

func TestDemoHelp(t *testing.T) {
	out, _, err := demoRun("--help")
	require.NoError(t, err)
	for _, want := range []string{"no setup and no root", "--sets", "--duration", "--report", "--no-report", "--json",
		"(default 100)", "(default 15s)", `(default "demo-report.html")`} {
		require.Contains(t, out, want)
	}
	var root bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"--help"}, &root, &root))
	require.Contains(t, root.String(), "demo")
}

// TestDemoTiny runs a short demo with --json - and --report: the JSON goes
// to stdout, the narrative to stderr, and the report to its file.
func TestDemoTiny(t *testing.T) {
	report := filepath.Join(t.TempDir(), "r.html")
	out, errOut, err := demoRun("--sets", "2", "--duration", "300ms", "--slow-delay", "10ms", "--load-rate", "200",
		"--report", report, "--json", "-")
	require.NoError(t, err, errOut)
	var res struct {
		Passed bool   `json:"passed"`
		Sets   int    `json:"sets"`
		Report string `json:"report"`
		Checks []struct {
			Name string `json:"name"`
			Pass bool   `json:"pass"`
		} `json:"checks"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.True(t, res.Passed)
	require.Equal(t, 4, res.Sets)
	require.Equal(t, report, res.Report)
	require.NotEmpty(t, res.Checks)
	require.Contains(t, errOut, "Timeline of set 1")
	require.Contains(t, errOut, "All 15 checks passed")
	fi, err := os.Stat(report)
	require.NoError(t, err)
	require.Positive(t, fi.Size())
}

// TestDemoFailsOnAFailedCheck gives the demo an array whose third
// CommitSnapshots fails: the command runs to the end and exits with an
// error that counts the failed checks.
func TestDemoFailsOnAFailedCheck(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "p.yaml")
	require.NoError(t, os.WriteFile(profile, []byte(`name: fails-third-commit
description: CommitSnapshots fails on its third call.
methods:
  CommitSnapshots:
    failure: {hresult: VSS_E_PROVIDER_VETO, nth: 3}
`), 0o644))
	out, _, err := demoRun("--sets", "2", "--duration", "300ms", "--slow-delay", "10ms", "--load-rate", "200",
		"--no-report", "--profile", profile)
	require.EqualError(t, err, "demo: 1 of 15 checks failed")
	require.Contains(t, out, "   FAIL  every set created: 1 of 2 sets created")
}
