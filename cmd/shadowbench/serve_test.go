package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, and gives the
// daemons a runtime directory of their own for their token files.
func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main() // the test binary re-executed as shadowbench (see TestServeSocketActivation)
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "shadowbench-cmd-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_RUNTIME_DIR", dir)
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// envRunMain makes the test binary run as shadowbench itself.
const envRunMain = "SHADOWBENCH_TEST_RUN_MAIN"

// execute runs the command line and returns its stderr and error.
func execute(ctx context.Context, args ...string) (string, error) {
	var out, errb syncBuffer
	err := run(ctx, args, &out, &errb)
	return errb.String(), err
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"serve", "--lun", "name=a,size=1GiB,block-size=1000"}, `invalid argument "name=a,size=1GiB,block-size=1000" for "--lun" flag: block-size "1000"`},
		{[]string{"serve", "--lun", "name=a,size=1GiB", "--lun", "name=a,size=2GiB", "--listen", "127.0.0.1:0"}, `--lun name=a,size=2GiB: LUN "a" is defined twice`},
		{[]string{"serve", "--capacity", "100M", "--lun", "name=big,size=1G", "--listen", "127.0.0.1:0", "--api", ""}, `thick LUN big of 1.0 GiB does not fit: capacity 100 MiB`},
		{[]string{"serve", "--lun", "name=bad/name,size=1GiB", "--listen", "127.0.0.1:0", "--api", ""}, "LUN bad/name: lun: LUN names"},
		{[]string{"serve", "--lun", "name=huge,size=1EiB", "--listen", "127.0.0.1:0", "--api", ""}, "array.luns[0].size: LUN huge: lun: array capacity exceeded: thick LUN huge of 1.0 EiB does not fit"},
		{[]string{"serve", "--listen", "", "--api", ""}, "nothing to serve NBD on: give --listen or --socket"},
		{[]string{"serve", "--listen", "127.0.0.1:99999", "--api", ""}, "nbd listen 127.0.0.1:99999:"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:99999"}, "api listen 127.0.0.1:99999:"},
		{[]string{"serve", "--api", "0.0.0.0:10810"}, `api.listen: "0.0.0.0:10810": daemon: the API listens on loopback only`},
		{[]string{"serve", "--api", "10810"}, `api.listen: "10810": address 10810: missing port in address`},
		{[]string{"serve", "--config", "/nonexistent/daemon.yaml"}, "open /nonexistent/daemon.yaml: no such file or directory"},
		{[]string{"serve", "--profile", "/nonexistent/profile.yaml"}, "providers[0].profile: provider:"},
		{[]string{"serve", "--hold-window", "-1s"}, "windows.hold: must not be negative"},
		{[]string{"serve", "--max-in-flight", "-1"}, "nbd.max-in-flight: must not be negative"},
		{[]string{"serve", "--set-history", "-1"}, "sets.history: must not be negative"},
		{[]string{"serve", "--max-connections", "-1"}, "nbd.max-connections: must not be negative"},
		{[]string{"serve", "--request-timeout", "-1s"}, "nbd.request-timeout: must not be negative"},
		{[]string{"serve", "--max-in-flight-bytes", "lots"}, `invalid argument "lots" for "--max-in-flight-bytes" flag: size "lots"`},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--api", "", "--engine", "bogus"}, `--engine "bogus": want go-nbd or nothing`},
		{[]string{"serve", "extra"}, `unknown command "extra"`},
		{[]string{"--log-level", "loud", "serve"}, `--log-level "loud"`},
		{[]string{"--log-format", "xml", "serve"}, `--log-format "xml"`},
	} {
		_, err := execute(context.Background(), tc.args...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}

// TestServeRejectsBadConfig checks that a bad configuration file is refused
// with the file, the line and what is wrong, before anything is served.
func TestServeRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		yaml, err string
	}{
		{"nbd:\n  listen: 127.0.0.1:0\n  lisen: x\n", `c.yaml:3: unknown key "lisen"`},
		{"array:\n  luns:\n    - {name: a, size: big}\n", `c.yaml:3: size "big"`},
		{"windows:\n  hold: 10\n", "c.yaml:2: cannot unmarshal !!int `10` into a duration"},
		{"providers:\n  - name: p\n    profile: {commit: {block: never}}\n", "c.yaml:3:"},
		{"writers:\n  - {name: w, exec: {command: [x]}, scripted: {}}\n", "c.yaml:2: writers[0]: give exactly one of scripted, exec and fsfreeze"},
		{"volumes:\n  - {name: v, luns: [lun9]}\n", `c.yaml:2: volumes[0].luns[0]: LUN "lun9" is not in array.luns`},
		{"api: {listen: 192.0.2.1:80}\n", `c.yaml:1: api.listen: "192.0.2.1:80": daemon: the API listens on loopback only`},
	} {
		path := filepath.Join(dir, "c.yaml")
		require.NoError(t, os.WriteFile(path, []byte(tc.yaml), 0o644))
		args := []string{"serve", "--config", path, "--listen", "127.0.0.1:0"}
		if !strings.HasPrefix(tc.yaml, "api:") {
			args = append(args, "--api", "") // so that a configuration that passed would not take the default port
		}
		_, err := execute(context.Background(), args...)
		require.ErrorContains(t, err, strings.Replace(tc.err, "c.yaml", path, 1), tc.yaml)
	}
}

// TestServeConfig runs serve from a configuration file, with flags that
// override it and a --lun that extends it.
func TestServeConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`nbd: {listen: 127.0.0.1:1}
array:
  luns: [{name: db, size: 8MiB}, {name: logs, size: 8MiB}]
providers:
  - {name: fast, priority: 2, profile: {commit: {block: 1ms}}}
writers:
  - {name: sql, level: back-end, scripted: {on: {Freeze: {result: veto, failure: VSS_E_WRITERERROR_RETRYABLE}}}}
volumes:
  - {name: data, luns: [db, logs]}
`), 0o644))
	api := serveForTest(t, "--config", path, "--lun", "name=extra,size=1MiB")
	var st daemon.Status
	cliJSON(t, &st, "status", "--api", api)
	require.Equal(t, 3, st.LUNs.Total, "--lun adds to the configuration's LUNs")
	require.Equal(t, map[string][]string{"data": {"db", "logs"}}, st.Volumes)
	require.Equal(t, "fast", st.Providers[0].Name)
	require.Equal(t, "fast-inline", st.Providers[0].Profile)
	require.Len(t, st.Writers, 1)
	require.NotContains(t, st.NBD[0], "127.0.0.1:1", "--listen overrides the configuration")

	var rep daemon.SetReport
	cliJSON(t, &rep, "snapshot", "create", "data", "--api", api)
	require.Equal(t, "VSS_WS_FAILED_AT_FREEZE", rep.Writers[0].State)
	require.Equal(t, "fast", rep.Snapshots[0].Provider)
}

func TestServeServesUntilCancelled(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	apiSock := filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stderr string
	go func() {
		var err error
		stderr, err = execute(ctx, "serve", "--listen", "", "--socket", sock, "--api-socket", apiSock, "--api", "",
			"--lun", "name=db,size=64MiB,block-size=4096", "--lun", "name=ro,size=1MiB,read-only=true")
		done <- err
	}()
	c := dialWhenUp(t, sock, "")
	require.Equal(t, "db", c.Info().Name, "the first LUN is the default export")
	require.Equal(t, int64(64<<20), c.Size())
	require.Equal(t, uint32(4096), c.Info().PreferredBlock)
	list, err := nbd.List(context.Background(), "unix", sock, nil)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "ro", list[1].Name)
	require.NoError(t, c.Write(context.Background(), []byte("data"), 0, 0))
	out, _, err := cli(context.Background(), "status", "--api", "unix:"+apiSock)
	require.NoError(t, err)
	require.Contains(t, out, "nbd+unix:///?socket="+sock)

	cancel()
	require.NoError(t, <-done)
	require.ErrorIs(t, c.Flush(context.Background()), nbd.ErrClosed, "shutdown closed the connection")
	require.NoError(t, c.Close())
	require.Contains(t, stderr, "serving NBD")
	require.Contains(t, stderr, "NBD server stopped")
	_, err = os.Stat(sock)
	require.True(t, os.IsNotExist(err), "the socket is removed")
}

func TestServeStopsOnSIGTERM(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	done := make(chan error, 1)
	go func() {
		_, err := execute(context.Background(), "--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--socket", sock, "--api", "127.0.0.1:0")
		done <- err
	}()
	c := dialWhenUp(t, sock, "lun1")
	require.Equal(t, int64(1<<30), c.Size())
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	require.NoError(t, c.Close())
}

// dialWhenUp connects to the socket once the server listens on it.
func dialWhenUp(t *testing.T, sock, export string) *nbd.Client {
	t.Helper()
	var c *nbd.Client
	require.Eventually(t, func() bool {
		var err error
		c, err = nbd.Dial(context.Background(), "unix", sock, &nbd.DialOptions{Export: export})
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	return c
}
