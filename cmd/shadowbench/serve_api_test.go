package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
)

// serveTCP runs serve with a TCP API on an ephemeral port and a unix
// socket, plus args, until the test ends; it returns the TCP API's URL
// and serve's log.
func serveTCP(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log syncBuffer
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--api-socket", sock,
			"--lun", "name=lun0,size=1MiB"}, args...), &syncBuffer{}, &log)
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var st daemon.Status
	require.Eventually(t, func() bool {
		out, _, err := cli(context.Background(), "status", "--json", "--api", "unix:"+sock)
		return err == nil && jsonUnmarshal(out, &st) == nil
	}, 10*time.Second, 5*time.Millisecond, "the daemon answers")
	for _, u := range st.API {
		if strings.HasPrefix(u, "http://") {
			return u, &log
		}
	}
	t.Fatalf("no TCP API in %v", st.API)
	return "", nil
}

// TestServeAPIToken: the CLI reads the token serve wrote, from the default
// file or the one --api-token-file or $SHADOWBENCH_API_TOKEN_FILE names,
// and a request without it is refused.
func TestServeAPIToken(t *testing.T) {
	api, log := serveTCP(t)
	require.Contains(t, log.String(), "the TCP API takes the bearer token in the token file")
	out, _, err := cli(context.Background(), "lun", "list", "--api", api)
	require.NoError(t, err, "the default token file, found by itself")
	require.Contains(t, out, "lun0")

	file := filepath.Join(t.TempDir(), "token")
	api2, _ := serveTCP(t, "--api-token-file", file)
	_, _, err = cli(context.Background(), "lun", "list", "--api", api2, "--api-token-file", file)
	require.NoError(t, err)
	t.Setenv(daemon.EnvAPITokenFile, file)
	_, _, err = cli(context.Background(), "status", "--api", api2)
	require.NoError(t, err, "the token file from the environment")
	t.Setenv(daemon.EnvAPITokenFile, "")
	_, _, err = cli(context.Background(), "status", "--api", api2)
	require.ErrorContains(t, err, "the TCP API needs the bearer token", "another daemon's token is not this one's")
	require.ErrorContains(t, err, file, "the answer says where the token is")

	require.NoError(t, os.WriteFile(file+".bad", []byte("nope\n"), 0o600))
	_, _, err = cli(context.Background(), "status", "--api", api2, "--api-token-file", file+".bad")
	require.ErrorContains(t, err, "the TCP API needs the bearer token")
}

// TestServeAPIAuthNone: --api-auth none serves the TCP API to any client,
// with a warning in the log.
func TestServeAPIAuthNone(t *testing.T) {
	api, log := serveTCP(t, "--api-auth", "none", "--api-token-file", filepath.Join(t.TempDir(), "token"))
	require.Contains(t, log.String(), `level=WARN msg="the TCP API takes no token`)
	_, _, err := cli(context.Background(), "status", "--api", api, "--api-token-file", filepath.Join(t.TempDir(), "nowhere"))
	require.ErrorContains(t, err, "reading the API token", "a token file named is read")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	_, _, err = cli(context.Background(), "status", "--api", api)
	require.NoError(t, err, "no token file, no token, and none needed")
	_, err = execute(context.Background(), "serve", "--api-auth", "maybe")
	require.ErrorContains(t, err, `api.auth: "maybe": want token or none`)
}
