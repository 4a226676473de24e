package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// get sends GET path over the daemon's TCP API with the given
// Authorization header ("" for none), and returns the status and the body.
func get(t *testing.T, d *Daemon, path, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.APIURLs()[0]+path, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b.String()
}

// TestAPIToken checks D1: over TCP only requests with the daemon's token
// are served, /metrics excepted; the unix socket needs none; the token
// file is its user's alone, and leaves with the daemon.
func TestAPIToken(t *testing.T) {
	cfg := testConfig()
	cfg.API.Socket = filepath.Join(t.TempDir(), "api.sock")
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "dir", "api-token")
	d, c := start(t, cfg)
	fi, err := os.Stat(cfg.API.TokenFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the daemon's user reads the token")
	fi, err = os.Stat(filepath.Dir(cfg.API.TokenFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	token, err := ReadToken(cfg.API.TokenFile)
	require.NoError(t, err)
	require.Len(t, token, 64, "256 random bits")

	for _, auth := range []string{"", "Bearer ", "Bearer " + strings.Repeat("0", 64), "Basic " + token, token} {
		for _, path := range []string{"/v1/luns", "/v1/status", "/v1/nope"} {
			status, hdr, body := get(t, d, path, auth)
			require.Equal(t, http.StatusUnauthorized, status, "%s with %q", path, auth)
			require.Equal(t, `Bearer realm="shadowbench"`, hdr.Get("WWW-Authenticate"))
			var eb ErrorBody
			require.NoError(t, json.Unmarshal([]byte(body), &eb))
			require.Contains(t, eb.Error, "the TCP API needs the bearer token")
			require.Contains(t, eb.Error, cfg.API.TokenFile, "the answer says where the token is")
		}
	}
	status, _, _ := get(t, d, "/v1/luns", "Bearer "+token)
	require.Equal(t, http.StatusOK, status)
	status, _, body := get(t, d, "/metrics", "")
	require.Equal(t, http.StatusOK, status, "Prometheus scrapes without the token")
	require.Contains(t, body, "shadowbench_build_info")
	_, err = c.LUNs(context.Background())
	require.NoError(t, err, "the client read the token from the file")

	sock, err := NewClient(d.APIURLs()[1])
	require.NoError(t, err)
	defer sock.Close()
	_, err = sock.LUNs(context.Background())
	require.NoError(t, err, "the unix socket needs no token")
}

// TestAPITokenDefaultFile: without api.token-file the token goes to
// $XDG_RUNTIME_DIR/shadowbench/api-token, where ClientFor finds it by
// itself, and it is removed at shutdown.
func TestAPITokenDefaultFile(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	path, err := DefaultTokenFile()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "shadowbench", "api-token"), path)
	d, err := New(context.Background(), testConfig(), Options{Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	c, err := ClientFor(d.APIURLs()[0], "")
	require.NoError(t, err)
	_, err = c.Status(context.Background())
	require.NoError(t, err)
	c.Close()

	other, err := ClientFor(d.APIURLs()[0], filepath.Join(t.TempDir(), "missing"))
	require.ErrorContains(t, err, "reading the API token", "a token file named and missing is an error")
	require.Nil(t, other)
	cancel()
	require.NoError(t, <-done)
	_, err = os.Stat(path)
	require.True(t, os.IsNotExist(err), "the token file leaves with the daemon")
}

// TestAPIAuthNone: api.auth none serves the TCP API to anyone, writes no
// token, and says so in the log.
func TestAPIAuthNone(t *testing.T) {
	var log bytes.Buffer
	cfg := testConfig()
	cfg.API.Auth = AuthNone
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")
	d, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	status, _, _ := get(t, d, "/v1/luns", "")
	require.Equal(t, http.StatusOK, status)
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, log.String(), `level=WARN msg="the TCP API takes no token`)
	_, err = os.Stat(cfg.API.TokenFile)
	require.True(t, os.IsNotExist(err), "no token is written")

	cfg = testConfig()
	cfg.API.Auth = "maybe"
	require.ErrorContains(t, cfg.Validate(), `api.auth: "maybe": want token or none`)
}
