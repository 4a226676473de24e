package main

import (
	"context"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd"
)

func TestLUNFault(t *testing.T) {
	api := serveForTest(t)
	ctx := context.Background()
	out, _, err := cli(ctx, "lun", "fault", "lun0", "--op", "write", "--latency", "5ms", "--error", "EIO", "--probability", "0.1",
		"--nth", "3", "--seed", "7", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "write, latency 5ms, error EIO, op #3 only, probability 0.1 (seed 7)")

	// A fault that always fires reaches an NBD client as EIO.
	var fl daemon.FaultList
	cliJSON(t, &fl, "lun", "fault", "lun0", "--clear", "--op", "write", "--error", "eio", "--api", api)
	require.Len(t, fl.Rules, 1, "--clear with a fault replaces the faults")
	var l daemon.LUNInfo
	cliJSON(t, &l, "lun", "list", "lun0", "--api", api)
	c, err := nbd.Dial(ctx, "tcp", l.Exports[0][len("nbd://"):len(l.Exports[0])-len("/lun0")], &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	defer c.Close()
	err = c.Write(ctx, []byte("x"), 0, 0)
	require.ErrorIs(t, err, nbd.Errno(syscall.EIO))
	require.NoError(t, c.Read(ctx, make([]byte, 1), 0), "reads are not affected")

	out, _, err = cli(ctx, "lun", "fault", "lun0", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "write, error EIO")
	out, _, err = cli(ctx, "lun", "fault", "lun0", "--clear", "--api", api)
	require.NoError(t, err)
	require.Equal(t, "LUN lun0: no faults\n", out)
	require.NoError(t, c.Write(ctx, []byte("x"), 0, 0))

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"lun0", "--op", "write"}, "a fault needs a latency, an error or both"},
		{[]string{"lun0", "--error", "EBADF"}, `error "EBADF": want EIO, ENOSPC, EPERM, EINVAL or ENOMEM`},
		{[]string{"lun0", "--latency", "soon"}, `latency "soon": want 5ms, 1ms..5ms, exp:5ms or normal:5ms/1ms`},
		{[]string{"lun0", "--error", "EIO", "--probability", "2"}, "probability 2: want a number in (0, 1]"},
		{[]string{"lun0", "--error", "EIO", "--nth", "-1"}, "nth -1: want 1 or more"},
		{[]string{"lun0", "--error", "EIO", "--op", "rename"}, `op "rename": want read, write, flush, trim, zero or extents`},
		{[]string{"lun0", "--probability", "half"}, `invalid argument "half" for "--probability"`},
		{[]string{"nope", "--error", "EIO"}, "no such LUN: nope"},
	} {
		_, _, err := cli(ctx, append(append([]string{"lun", "fault"}, tc.args...), "--api", api)...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
	cliJSON(t, &fl, "lun", "fault", "lun0", "--api", api)
	require.Empty(t, fl.Rules, "bad requests changed nothing")
}
