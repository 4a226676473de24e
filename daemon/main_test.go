package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, and gives the
// daemons a runtime directory of their own for their token files.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shadowbench-daemon-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_RUNTIME_DIR", dir)
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// quiet discards the daemon's log; -v tests can swap it for stderr.
var quiet = slog.New(slog.DiscardHandler)

// testConfig is a small daemon on ephemeral loopback ports: two 64 MiB
// LUNs and short windows.
func testConfig() *Config {
	cfg := DefaultConfig()
	cfg.NBD.Listen, cfg.API.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Array.LUNs = []LUNConfig{{Name: "lun0", Size: 64 << 20}, {Name: "lun1", Size: 64 << 20, BlockSize: 4096}}
	cfg.NBD.ShutdownTimeout = 5 * time.Second
	cfg.Windows.Event = 5 * time.Second // a stuck test fails in seconds, not minutes
	cfg.Windows.Prepare = 5 * time.Second
	return cfg
}

// start runs a daemon until the test ends, and returns it with a client,
// which reads the daemon's token from its token file (one per test).
func start(t *testing.T, cfg *Config) (*Daemon, *Client) {
	t.Helper()
	if cfg.API.TokenFile == "" {
		cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")
	}
	d, c, stop := run(t, cfg)
	t.Cleanup(stop)
	return d, c
}

// run starts a daemon on cfg and returns it, a client and a function that
// shuts it down cleanly.
func run(t *testing.T, cfg *Config) (*Daemon, *Client, func()) {
	t.Helper()
	d, err := New(context.Background(), cfg, Options{Logger: quiet, Version: "test"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	c, err := ClientFor(d.APIURLs()[0], cfg.API.TokenFile)
	require.NoError(t, err)
	return d, c, func() {
		cancel()
		require.NoError(t, <-done)
		c.Close()
	}
}
