package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

func TestStatus(t *testing.T) {
	api := serveForTest(t)
	out, _, err := cli(context.Background(), "status", "--api", api)
	require.NoError(t, err)
	for _, want := range []string{"shadowbench ", ", up ", "API", api, "NBD", "nbd://127.0.0.1:", "LUNs", "2 (2 original, 0 snapshot, 0 clone)",
		"provider", "array (hardware, priority 0, profile default)", "sets", "held", "provisioned", "(128 MiB thick, 0 B thin)"} {
		require.Contains(t, out, want)
	}
	var st daemon.Status
	cliJSON(t, &st, "status", "--api", api)
	require.Equal(t, 2, st.LUNs.Total)
	require.EqualValues(t, 128<<20, st.Store.ThickBytes)
	require.Positive(t, st.Store.CapacityBytes, "the default capacity: half the RAM")
	require.Equal(t, []string{api}, st.API)
	require.Len(t, st.Providers, 1)

	_, _, err = cli(context.Background(), "status", "--api", api, "extra")
	require.ErrorContains(t, err, `unknown command "extra"`)
}
