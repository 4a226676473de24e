package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// TestShutdown checks D4: Run stops on ctx with a held set, an attached
// writer and a poll in flight; the writer's client learns the daemon
// stopped, the held set's auto-release snapshots are deleted, the socket
// is removed, and no goroutine is left (TestMain's goleak).
func TestShutdown(t *testing.T) {
	cfg := testConfig()
	sock := filepath.Join(t.TempDir(), "api.sock")
	cfg.API.Listen, cfg.API.Socket = "", sock
	d, err := New(context.Background(), cfg, Options{Logger: quiet})
	require.NoError(t, err)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "D1: the socket is the owner's alone")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	c, err := NewClient("unix:" + sock)
	require.NoError(t, err)
	defer c.Close()
	st, err := c.Status(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"unix:" + sock}, st.API)

	w, err := coordinator.NewScriptedWriter(coordinator.Script{})
	require.NoError(t, err)
	a, err := c.Attach(context.Background(), WriterRegistration{Name: "w"})
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- a.Serve(context.Background(), w, nil) }()
	rep, err := c.CreateSet(context.Background(), CreateSetRequest{Targets: []string{"lun0", "lun1"}})
	require.NoError(t, err)
	require.True(t, rep.Held)

	t0 := time.Now()
	cancel()
	require.NoError(t, <-done)
	require.Less(t, time.Since(t0), 3*time.Second)
	err = <-served
	require.True(t, errors.Is(err, ErrStopping) || errors.Is(err, ErrUnreachable), "the client learns the daemon stopped: %v", err)
	for _, l := range d.Array().List() {
		require.Equal(t, lun.Original, l.Kind(), "the held set's snapshot %s was deleted", l.Name())
	}
	_, err = os.Stat(sock)
	require.True(t, os.IsNotExist(err), "the API socket is removed")
	_, err = d.Service().NewBackupComponents().StartSnapshotSet()
	require.ErrorIs(t, err, vss.VSS_E_BAD_STATE)
	require.Error(t, d.Run(context.Background()), "Run runs once")
}

// TestNewErrors checks that a daemon that cannot start releases what it
// built and says why.
func TestNewErrors(t *testing.T) {
	busy := testConfig()
	d, err := New(context.Background(), busy, Options{Logger: quiet})
	require.NoError(t, err)
	defer d.Close()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		err  string
	}{
		{"nothing to serve", func(c *Config) { c.NBD.Listen = "" }, "nothing to serve NBD on"},
		{"NBD address in use", func(c *Config) { c.NBD.Listen = d.NBDAddrs()[0].String() }, "nbd listen " + d.NBDAddrs()[0].String()},
		{"API address in use", func(c *Config) { c.API.Listen = d.APIURLs()[0][len("http://"):] }, "api listen"},
		{"API socket dir", func(c *Config) { c.API.Socket = "/nonexistent/dir/api.sock" }, "api socket /nonexistent/dir/api.sock"},
		{"fsfreeze not a mount", func(c *Config) {
			c.Writers = []WriterConfig{{Name: "fs", Fsfreeze: &FsfreezeConfig{MountPoint: t.TempDir()}}}
		}, "writers[0]: coordinator: fsfreeze writer"},
	} {
		cfg := testConfig()
		tc.edit(cfg)
		_, err := New(context.Background(), cfg, Options{Logger: quiet})
		require.ErrorContains(t, err, tc.err, tc.name)
	}
}

// TestShutdownWaitsForNBD checks that a durable array is closed only once
// the NBD server has finished: a READ still in the LUN when serve is told
// to stop gets its data, and the daemon does not unmap the data file
// under it (which ended the process with a fault).
func TestShutdownWaitsForNBD(t *testing.T) {
	cfg := testConfig()
	cfg.Array.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.API.TokenFile = filepath.Join(t.TempDir(), "api-token")
	d, err := New(context.Background(), cfg, Options{Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	rctx := context.Background()
	nc, err := nbd.Dial(rctx, "tcp", d.NBDAddrs()[0].String(), &nbd.DialOptions{Export: "lun0"})
	require.NoError(t, err)
	defer nc.Close()
	want := bytes.Repeat([]byte{0xa5}, 64<<10)
	require.NoError(t, nc.Write(rctx, want, 0, nbd.CmdFlagFUA))

	l, err := d.Array().Get("lun0")
	require.NoError(t, err)
	entered := make(chan struct{})
	var once sync.Once
	l.SetFaults(lun.InjectorFunc(func(_ context.Context, op lun.Op) error {
		if op == lun.OpRead {
			once.Do(func() { close(entered) })
			time.Sleep(300 * time.Millisecond) // past the rest of the shutdown
		}
		return nil
	}))
	got := make([]byte, len(want))
	read := make(chan error, 1)
	go func() { read <- nc.Read(rctx, got, 0) }()
	<-entered
	cancel()
	require.NoError(t, <-read)
	require.Equal(t, want, got)
	require.NoError(t, <-done)
}
