package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// scenarioFile writes a scenario into a temporary directory.
func scenarioFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

const passing = `# A backup that succeeds. Covers vss-spec.md A.
description: passes
array:
  luns: [{name: lun0, size: 16MiB}]
providers: [{name: array}]
writers: [{name: sql}]
steps:
  - backup: {volumes: [lun0]}
expect:
  subsequence: [provider:CommitSnapshots -> S_OK]
`

const failing = `description: fails
array:
  luns: [{name: lun0, size: 16MiB}]
providers: [{name: array}]
steps:
  - call: StartSnapshotSet
`

// runCmd runs the command line and returns its stdout, stderr and error.
func runCmd(args ...string) (string, string, error) {
	var out, errb syncBuffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestScenarioRun(t *testing.T) {
	good := scenarioFile(t, "good.yaml", passing)
	out, _, err := runCmd("scenario", "run", "--time-scale", "0.01", good)
	require.NoError(t, err)
	require.Contains(t, out, "provider:CommitSnapshots:array -> S_OK")
	require.Contains(t, out, "--- PASS good (")
	require.Contains(t, out, "1 passed")

	bad := scenarioFile(t, "bad.yaml", failing)
	out, _, err = runCmd("scenario", "run", "--time-scale", "0.01", good, bad)
	require.EqualError(t, err, "scenario run: 1 passed, 1 failed")
	require.Contains(t, out, "--- FAIL bad (")
	require.Contains(t, out, "bad.yaml:6: step at line 6 (call StartSnapshotSet, requester r1): expected S_OK, got VSS_E_BAD_STATE")
	require.Contains(t, out, "> requester:StartSnapshotSet:r1 -> VSS_E_BAD_STATE", "the trace around the mismatch")
}

func TestScenarioRunJSON(t *testing.T) {
	good := scenarioFile(t, "good.yaml", passing)
	out, errOut, err := runCmd("scenario", "run", "--json", "--time-scale", "0.01", good)
	require.NoError(t, err)
	var results []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Trace  []struct {
			Kind, Name, Actor, Result string
		} `json:"trace"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &results), out)
	require.Len(t, results, 1)
	require.Equal(t, "good", results[0].Name)
	require.Equal(t, "pass", results[0].Status)
	require.NotEmpty(t, results[0].Trace)
	require.Contains(t, errOut, "PASS good")
}

func TestScenarioCheckAndList(t *testing.T) {
	good := scenarioFile(t, "good.yaml", passing)
	out, _, err := runCmd("scenario", "check", good)
	require.NoError(t, err)
	require.Contains(t, out, "ok   "+good)

	typo := scenarioFile(t, "typo.yaml", "array:\n  luns: [{name: l, size: 1MiB}]\nprovider: [{name: p}]\nsteps: [{call: Close}]\n")
	_, _, err = runCmd("scenario", "check", good, typo)
	require.ErrorContains(t, err, typo+`:3:1: unknown key "provider"`)
	_, _, err = runCmd("scenario", "run", typo)
	require.ErrorContains(t, err, typo+":3:1:", "run checks every file before it runs any")

	out, _, err = runCmd("scenario", "list", filepath.Join("..", "..", "scenarios", "library"))
	require.NoError(t, err)
	require.Contains(t, out, "a-full-backup ")

	// A scenario marked known-failure is flagged in the list.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.yaml"), []byte(passing), 0o644))
	marked := strings.Replace(passing, "description: passes\n", "description: passes\nknown-failure: \"a defect someone owes a fix\"\n", 1)
	require.NotEqual(t, passing, marked)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "marked.yaml"), []byte(marked), 0o644))
	out, _, err = runCmd("scenario", "list", dir)
	require.NoError(t, err)
	require.Contains(t, out, "[known failure]")
	require.Equal(t, 1, strings.Count(out, "[known failure]"))
}
