package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLUNDelete(t *testing.T) {
	api := serveForTest(t)
	out, _, err := cli(context.Background(), "lun", "delete", "lun1", "--api", api)
	require.NoError(t, err)
	require.Equal(t, "deleted lun1\n", out)
	out, _, err = cli(context.Background(), "lun", "list", "--api", api)
	require.NoError(t, err)
	require.NotContains(t, out, "lun1")

	_, _, err = cli(context.Background(), "lun", "delete", "lun1", "--api", api)
	require.ErrorContains(t, err, "no such LUN: lun1")
	_, _, err = cli(context.Background(), "lun", "delete", "--api", api)
	require.ErrorContains(t, err, "requires at least 1 arg(s)")
}
