package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestWriterList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`writers:
  - {name: sql, level: back-end, scripted: {}}
  - {name: hook, exec: {command: [/bin/true]}}
`), 0o644))
	api := serveForTest(t, "--config", path)
	out, _, err := cli(context.Background(), "writer", "list", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `NAME\s+KIND\s+LEVEL\s+ID\s+STATE`, out)
	require.Regexp(t, `hook\s+exec\s+front-end\s+\{[0-9A-F-]{36}\}\s+subscribed\n`, out)
	require.Regexp(t, `sql\s+scripted\s+back-end\s+\{[0-9A-F-]{36}\}\s+subscribed\n`, out)
	var ws []daemon.WriterInfo
	cliJSON(t, &ws, "writer", "list", "--api", api)
	require.Len(t, ws, 2)
	_, _, err = cli(context.Background(), "writer", "list", "x", "--api", api)
	require.ErrorContains(t, err, `unknown command "x"`)
}
