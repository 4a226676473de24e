package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// complete asks the command line for the completions of args, as the
// shell scripts of shadowbench completion do.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	out, _, err := cli(context.Background(), append([]string{"__complete"}, args...)...)
	require.NoError(t, err)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") {
			got = append(got, l)
		}
	}
	return got
}

// TestCompletion: the shell completes LUN names, snapshot names and IDs
// and set names from the daemon.
func TestCompletion(t *testing.T) {
	api := serveForTest(t)
	rep := createSet(t, api, "lun0", "--context", "app-rollback", "--name", "nightly")
	require.ElementsMatch(t, []string{"lun0", "lun1", rep.Snapshots[0].TargetLUNs[0]}, complete(t, "lun", "delete", "--api", api, ""))
	require.Equal(t, []string{"lun1"}, complete(t, "lun", "fault", "--api", api, "lun1"))
	require.Empty(t, complete(t, "lun", "fault", "--api", api, "lun0", ""), "one LUN only")
	require.Equal(t, []string{"nightly", "nightly/lun0"}, complete(t, "snapshot", "revert", "--api", api, "n"))
	require.Contains(t, complete(t, "snapshot", "show", "--api", api, "{"), rep.Snapshots[0].ID.String())
	require.Equal(t, []string{"nightly"}, complete(t, "snapshot", "break", "--api", api, "ni"))
	require.ElementsMatch(t, []string{"lun0", "lun1"}, complete(t, "snapshot", "create", "--api", api, "l"))
	require.Empty(t, complete(t, "lun", "delete", "--api", "unix:/nonexistent/api.sock", ""), "no daemon, no completions")
	out, _, err := cli(context.Background(), "completion", "bash")
	require.NoError(t, err)
	require.Contains(t, out, "__start_shadowbench")
}

// TestManPages: shadowbench man writes a page per command.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	_, _, err := cli(context.Background(), "man", dir)
	require.NoError(t, err)
	for _, name := range []string{"shadowbench.1", "shadowbench-serve.1", "shadowbench-snapshot-diff.1", "shadowbench-lun-create.1"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		require.Contains(t, string(b), `.TH "`+strings.ToUpper(strings.TrimSuffix(name, ".1"))+`" "1"`)
	}
	b, err := os.ReadFile(filepath.Join(dir, "shadowbench-serve.1"))
	require.NoError(t, err)
	require.Contains(t, string(b), "captive mode", "the page is the command's help")
}
