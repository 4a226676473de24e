package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

// TestLUNPowercutArmed: lun powercut --after-writes and lun fault
// --powercut arm a power cut that fires once, at the write it names, and
// is cleared; status shows the write log's use.
func TestLUNPowercutArmed(t *testing.T) {
	api := serveForTest(t, "--lun", "name=wt,size=1MiB,cache=write-through", "--lun", "name=plain,size=1MiB")
	ctx := context.Background()
	out, _, err := cli(ctx, "lun", "powercut", "wt", "--after-writes", "3", "--keep", "none", "--seed", "9", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "power cut after write #3, keep none (seed 9)")
	out, _, err = cli(ctx, "lun", "fault", "wt", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "power cut after write #3", "listed where faults are listed")

	c, _ := dialLUN(t, api, "wt")
	var errs []error
	for i := range 5 {
		errs = append(errs, c.Write(ctx, bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096, 0))
	}
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Error(t, errs[3], "the connection dropped at the 3rd write")
	require.Error(t, errs[4])
	var l daemon.LUNInfo
	require.Eventually(t, func() bool {
		l = daemon.LUNInfo{} // a field the answer leaves out is not kept from the last one
		cliJSON(t, &l, "lun", "list", "wt", "--api", api)
		return l.LastPowerCut != nil && len(l.Faults) == 0
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, daemon.Seed(9), l.LastPowerCut.Seed)
	out, _, err = cli(ctx, "lun", "list", "wt", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "by fault rule: power cut after write #3")
	rc, _ := dialLUN(t, api, "wt")
	got := make([]byte, 5*4096)
	require.NoError(t, rc.Read(ctx, got, 0))
	for i := range 5 {
		want := make([]byte, 4096)
		if i < 3 {
			want = bytes.Repeat([]byte{byte(i + 1)}, 4096)
		}
		require.Equal(t, want, got[i*4096:(i+1)*4096], "block %d: write-through keeps the writes up to the cut", i)
	}

	out, _, err = cli(ctx, "lun", "fault", "wt", "--powercut", "--within", "1h", "--seed", "5", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "power cut at a random instant within 1h0m0s")
	require.Contains(t, out, "(seed 5)")
	out, _, err = cli(ctx, "status", "--api", api)
	require.NoError(t, err)
	require.Contains(t, out, "wt: write-through: nothing to lose")
	_, _, err = cli(ctx, "lun", "fault", "wt", "--clear", "--api", api)
	require.NoError(t, err)

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"lun", "powercut", "wt", "--after-writes", "0"}, "--after-writes 0: want 1 or more"},
		{[]string{"lun", "powercut", "wt", "--after-writes", "2", "--within", "1s"}, "not both"},
		{[]string{"lun", "powercut", "plain", "--after-writes", "2"}, "emulates no write cache"},
		{[]string{"lun", "fault", "wt", "--within", "1s"}, "add --powercut"},
		{[]string{"lun", "fault", "wt", "--powercut"}, "needs a trigger"},
		{[]string{"lun", "fault", "wt", "--powercut", "--nth", "1", "--error", "EIO"}, "takes no latency, error or probability"},
	} {
		_, _, err := cli(ctx, append(tc.args, "--api", api)...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}
