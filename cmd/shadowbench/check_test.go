package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/lun/durable"
)

func TestCheck(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "array")
	a, err := lun.Open(dir, lun.Config{Capacity: 64 << 20})
	require.NoError(t, err)
	l, err := a.Create("lun0", lun.Options{Size: 8 << 20})
	require.NoError(t, err)
	err = l.WriteAt(ctx, bytes.Repeat([]byte{1}, 1<<20), 0, false)
	require.NoError(t, err)
	require.NoError(t, a.Close())

	var out, errb bytes.Buffer
	require.NoError(t, run(ctx, []string{"check", dir}, &out, &errb))
	require.Contains(t, out.String(), "1 LUNs")
	require.Contains(t, out.String(), "consistent\n")

	out.Reset()
	require.NoError(t, run(ctx, []string{"check", "--json", dir}, &out, &errb))
	var rep struct {
		LUNs     int      `json:"luns"`
		Trees    int      `json:"trees"`
		Problems []string `json:"problems"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep))
	require.Equal(t, 1, rep.LUNs)
	require.Equal(t, 1, rep.Trees)

	// A damaged directory: the check says what, and fails.
	require.NoError(t, os.Truncate(filepath.Join(dir, durable.DataFile), 0))
	out.Reset()
	err = run(ctx, []string{"check", dir}, &out, &errb)
	require.ErrorContains(t, err, "1 problems")
	require.Contains(t, out.String(), "the maps name block")

	err = run(ctx, []string{"check", filepath.Join(dir, "nothing")}, &out, &errb)
	require.ErrorContains(t, err, "is not a data directory")
}
