package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// leftover leaves a socket file at path that nobody listens on, as a
// daemon killed with SIGKILL does.
func leftover(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type())
}

// TestStaleSockets checks D7: a daemon starts over the sockets a killed one left
// behind (the API's and NBD's), and refuses, naming the path, a socket
// another process listens on or a file that is not a socket.
func TestStaleSockets(t *testing.T) {
	dir := t.TempDir()
	apiSock, nbdSock := filepath.Join(dir, "api.sock"), filepath.Join(dir, "nbd.sock")
	leftover(t, apiSock)
	leftover(t, nbdSock)
	cfg := testConfig()
	cfg.API.Listen, cfg.API.Socket = "", apiSock
	cfg.NBD.Listen, cfg.NBD.Socket = "", nbdSock
	d, c := start(t, cfg)
	_, err := c.Status(context.Background())
	require.NoError(t, err, "the API answers on the socket that was stale")
	conn, err := net.Dial("unix", nbdSock)
	require.NoError(t, err, "NBD listens on the socket that was stale")
	require.NoError(t, conn.Close())

	// The live daemon's sockets are refused, and left alone.
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.API.Socket = apiSock }, "api socket " + apiSock + ": "},
		{func(c *Config) { c.NBD.Socket = nbdSock }, "nbd socket " + nbdSock + ": "},
	} {
		cfg := testConfig()
		tc.edit(cfg)
		_, err := New(context.Background(), cfg, Options{Logger: quiet})
		require.ErrorIs(t, err, ErrSocketInUse)
		require.ErrorContains(t, err, tc.want)
		require.ErrorContains(t, err, "another process listens on it")
	}
	_, err = c.Status(context.Background())
	require.NoError(t, err, "the first daemon still answers")
	require.NotNil(t, d)

	// A file that is not a socket is never removed.
	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, []byte("keep me"), 0o600))
	cfg = testConfig()
	cfg.API.Socket = plain
	_, err = New(context.Background(), cfg, Options{Logger: quiet})
	require.ErrorIs(t, err, ErrSocketInUse)
	require.ErrorContains(t, err, "api socket "+plain+": ")
	require.ErrorContains(t, err, "not a socket")
	b, err := os.ReadFile(plain)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(b))
}

// TestWarnsOfExposedNBD: serving NBD beyond loopback is allowed, and
// said in the log; on loopback nothing is said.
func TestWarnsOfExposedNBD(t *testing.T) {
	for _, tc := range []struct {
		listen string
		warn   bool
	}{{"127.0.0.1:0", false}, {"0.0.0.0:0", true}} {
		var log bytes.Buffer
		cfg := testConfig()
		cfg.NBD.Listen = tc.listen
		d, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		require.NoError(t, err)
		require.NoError(t, d.Close())
		if tc.warn {
			require.Contains(t, log.String(), `level=WARN msg="NBD listens beyond loopback, without TLS`, tc.listen)
		} else {
			require.NotContains(t, log.String(), "beyond loopback", tc.listen)
		}
	}
}
