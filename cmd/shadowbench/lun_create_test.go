package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestLUNCreate(t *testing.T) {
	api := serveForTest(t)
	out, _, err := cli(context.Background(), "lun", "create", "db", "--size", "4MiB", "--block-size", "4096", "--api", api)
	require.NoError(t, err)
	for _, want := range []string{"db", "original", "4.0 MiB (4194304 bytes), 4096-byte blocks", "nbd://127.0.0.1:"} {
		require.Contains(t, out, want)
	}
	var l daemon.LUNInfo
	cliJSON(t, &l, "lun", "create", "ro", "--size", "1MiB", "--read-only", "--api", api)
	require.True(t, l.ReadOnly)
	require.Equal(t, 512, l.BlockSize)
	require.False(t, l.Thin)

	// Larger than the array: refused thick, created thin.
	_, _, err = cli(context.Background(), "lun", "create", "huge", "--size", "1EiB", "--api", api)
	require.ErrorContains(t, err, "LUN huge: lun: array capacity exceeded: thick LUN huge of 1.0 EiB does not fit: capacity ")
	require.ErrorContains(t, err, "a thin LUN may overcommit (lun create --thin")
	cliJSON(t, &l, "lun", "create", "huge", "--size", "1EiB", "--thin", "--api", api)
	require.True(t, l.Thin)
	out, _, err = cli(context.Background(), "lun", "list", "huge", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "thin (may overcommit the array)")
	out, _, err = cli(context.Background(), "status", "--api", api)
	require.NoError(t, err)
	require.Regexp(t, `provisioned +1\.0 EiB of .* capacity \(133 MiB thick, 1\.0 EiB thin\), overcommitted `, out)

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"lun", "create", "x"}, `required flag(s) "size" not set`},
		{[]string{"lun", "create", "--size", "1MiB"}, "accepts 1 arg(s), received 0"},
		{[]string{"lun", "create", "x", "--size", "lots"}, `size "lots": want a number of bytes or a size such as 64M, 64MiB or 1G`},
		{[]string{"lun", "create", "x", "--size", "1MiB", "--block-size", "1000"}, "bad request: block-size 1000: want 512 or 4096 [E_INVALIDARG 0x80070057]"},
		{[]string{"lun", "create", "x", "--size", "1000"}, "size 1000 is not a multiple of the block size 512"},
		{[]string{"lun", "create", "db", "--size", "1MiB"}, "LUN db exists already"},
		{[]string{"lun", "create", "a/b", "--size", "1MiB"}, "lun: LUN names are 1-255 characters"},
	} {
		_, _, err := cli(context.Background(), append(tc.args, "--api", api)...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}
