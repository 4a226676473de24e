package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd"
)

// cli runs a command line and returns its stdout, stderr and error.
func cli(ctx context.Context, args ...string) (string, string, error) {
	var out, errb syncBuffer
	err := run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

// serveForTest runs `shadowbench serve` in-process until the test ends:
// the API on a unix socket in a temporary directory, NBD on an ephemeral
// port, and two 64 MiB LUNs, lun0 and lun1, unless args say otherwise. It
// returns the --api value that reaches it.
func serveForTest(t *testing.T, args ...string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	if len(args) == 0 {
		args = []string{"--lun", "name=lun0,size=64MiB", "--lun", "name=lun1,size=64MiB,block-size=4096"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log syncBuffer
	go func() {
		var out syncBuffer
		done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--api", "", "--api-socket", sock}, args...), &out, &log)
	}()
	api := "unix:" + sock
	require.Eventually(t, func() bool {
		_, _, err := cli(context.Background(), "status", "--api", api)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "the daemon answers")
	t.Cleanup(func() {
		cancel()
		err := <-done
		if t.Failed() {
			t.Logf("the daemon's log:\n%s", log.String())
		}
		require.NoError(t, err)
	})
	return api
}

// dialLUN connects an NBD client to a LUN of the daemon at api, at the
// address its export names; the test closes it.
func dialLUN(t *testing.T, api, name string) (*nbd.Client, string) {
	t.Helper()
	var l daemon.LUNInfo
	cliJSON(t, &l, "lun", "list", name, "--api", api)
	addr := strings.TrimSuffix(strings.TrimPrefix(l.Exports[0], "nbd://"), "/"+name)
	c, err := nbd.Dial(context.Background(), "tcp", addr, &nbd.DialOptions{Export: name})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, addr
}

// cliJSON runs a client command with --json and decodes its stdout.
func cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, stderr, err := cli(context.Background(), append(args, "--json")...)
	require.NoError(t, err, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), v), out)
}

// TestClientHelp checks that every client subcommand explains itself and
// offers --json and --api.
func TestClientHelp(t *testing.T) {
	for _, cmd := range [][]string{
		{"lun", "create"}, {"lun", "list"}, {"lun", "delete"}, {"lun", "fault"},
		{"snapshot", "create"}, {"snapshot", "list"}, {"snapshot", "show"}, {"snapshot", "delete"},
		{"snapshot", "expose"}, {"snapshot", "revert"}, {"snapshot", "break"},
		{"writer", "attach"}, {"writer", "list"}, {"status"},
	} {
		out, _, err := cli(context.Background(), append(cmd, "--help")...)
		require.NoError(t, err, "%v", cmd)
		for _, want := range []string{"Usage:", "--json", "--api", "SHADOWBENCH_API"} {
			require.Contains(t, out, want, "%v --help", cmd)
		}
		require.Greater(t, len(strings.Split(out, "\n")), 10, "%v --help explains", cmd)
	}
}

// TestClientWithoutDaemon checks the error when nothing answers, and the
// address forms the client accepts.
func TestClientWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"status", "--api", "unix:" + sock}, "cannot reach the shadowbench daemon (is `shadowbench serve` running?): unix:" + sock},
		{[]string{"lun", "list", "--api", "127.0.0.1:1"}, "cannot reach the shadowbench daemon"},
		{[]string{"status", "--api", "ftp://x"}, `bad API address: want http://HOST:PORT, HOST:PORT or unix:/PATH: "ftp://x"`},
		{[]string{"snapshot", "show", "not-an-id", "--api", "unix:" + sock}, "cannot reach the shadowbench daemon"},
	} {
		_, _, err := cli(context.Background(), tc.args...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
	t.Setenv("SHADOWBENCH_API", "unix:"+sock)
	_, _, err := cli(context.Background(), "status")
	require.ErrorContains(t, err, "unix:"+sock, "SHADOWBENCH_API is used without --api")
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// syncBuffer is a bytes.Buffer that a command line and a test may use at
// once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestJSONErrors: with --json an error is a JSON object on stderr (the
// API's error body and the exit status), for a script to read; without
// it, a line of text.
func TestJSONErrors(t *testing.T) {
	api := serveForTest(t)
	_, _, err := cli(context.Background(), "lun", "create", "lun0", "--size", "1MiB", "--api", api, "--json")
	require.Error(t, err)
	var errb bytes.Buffer
	writeError(&errb, err)
	var body struct {
		Error, HRESULT, Code string
		Exit                 int
	}
	require.NoError(t, json.Unmarshal(errb.Bytes(), &body), errb.String())
	require.Contains(t, body.Error, "LUN lun0 exists already")
	require.Equal(t, 1, body.Exit)

	_, _, err = cli(context.Background(), "snapshot", "show", "{9593A157-44E9-4344-BBEB-44FBF9B06B10}", "--api", api, "--json")
	errb.Reset()
	writeError(&errb, err)
	require.NoError(t, json.Unmarshal(errb.Bytes(), &body), errb.String())
	require.Equal(t, "VSS_E_OBJECT_NOT_FOUND", body.HRESULT)
	require.Equal(t, "0x80042308", body.Code)

	_, _, err = cli(context.Background(), "lun", "list", "--api", "127.0.0.1:1")
	errb.Reset()
	writeError(&errb, err)
	require.True(t, strings.HasPrefix(errb.String(), "shadowbench: "), errb.String())
}
