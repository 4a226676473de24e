package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExitCodes: a command line that cannot be run exits 2, with a message
// that names the command; a group alone prints its help and succeeds.
func TestExitCodes(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{"lun", "crate", "x"}, {"snapshot", "foo"}, {"nosuch"}, {"lun", "list", "--bogus"}, {"lun", "fault", "lun0", "--nth", "0", "--error", "EIO"}} {
		var out, errb bytes.Buffer
		err := run(ctx, args, &out, &errb)
		require.Error(t, err, "%v", args)
		require.Equal(t, 2, exitCode(err), "%v: %v", args, err)
	}
	var out, errb bytes.Buffer
	err := run(ctx, []string{"lun", "crate"}, &out, &errb)
	require.ErrorContains(t, err, `unknown command "crate" for "shadowbench lun"`)
	out.Reset()
	require.NoError(t, run(ctx, []string{"lun"}, &out, &errb))
	require.Contains(t, out.String(), "Available Commands")
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb bytes.Buffer
		require.NoError(t, run(context.Background(), args, &out, &errb))
		require.Regexp(t, `^shadowbench \S+ \(go1\.\d+`, out.String())
	}
}
