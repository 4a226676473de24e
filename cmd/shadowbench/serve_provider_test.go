package main

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// serve --provider-listen serves the array provider over the provider
// protocol and --remote-provider registers one reached over it (here the
// daemon's own, looped back); a malformed --remote-provider is refused,
// naming the flag.
func TestServeProviderFlags(t *testing.T) {
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ls.Addr().String()
	require.NoError(t, ls.Close())

	out, stderr, err := executeOut(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "",
		"--lun", "name=db,size=8MiB", "--provider-listen", addr, "--remote-provider", "loop="+addr,
		"--run", "echo served")
	require.NoError(t, err, stderr)
	require.Contains(t, out, "served")
	require.Contains(t, stderr, `msg="serving the provider protocol" provider=array addr=`+addr)
	require.NotContains(t, stderr, "not reachable", "the looped-back provider answered OnLoad")

	_, _, err = executeOut(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "",
		"--remote-provider", "nope", "--run", "true")
	require.ErrorContains(t, err, "--remote-provider")
	require.ErrorContains(t, err, "NAME=HOST:PORT")

	_, _, err = executeOut(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "",
		"--provider-listen", "nowhere", "--run", "true")
	require.ErrorContains(t, err, "HOST:PORT")
}
