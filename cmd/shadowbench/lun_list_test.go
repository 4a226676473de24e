package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestLUNList(t *testing.T) {
	api := serveForTest(t)
	out, _, err := cli(context.Background(), "lun", "list", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `NAME\s+KIND\s+SIZE\s+BLOCK\s+FLAGS\s+PARENT\s+EXPORT`, out)
	require.Regexp(t, `lun1\s+original\s+64 MiB\s+4096\s+-\s+-\s+nbd://127\.0\.0\.1:\d+/lun1`, out)

	out, _, err = cli(context.Background(), "lun", "list", "lun0", "--api", api)
	require.NoError(t, err)
	for _, want := range []string{"LUN", "lun0", "serial", "NAA", "naa.6", "export"} {
		require.Contains(t, out, want)
	}
	var ls []daemon.LUNInfo
	cliJSON(t, &ls, "lun", "list", "--api", api)
	require.Len(t, ls, 2)

	_, _, err = cli(context.Background(), "lun", "list", "nope", "--api", api)
	require.EqualError(t, err, "no such LUN: nope [VSS_E_OBJECT_NOT_FOUND 0x80042308]")
	_, _, err = cli(context.Background(), "lun", "list", "a", "b", "--api", api)
	require.ErrorContains(t, err, "accepts at most 1 arg(s)")
}
