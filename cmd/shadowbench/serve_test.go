package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseLUNSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want lunSpec
		err  string
	}{
		{in: "name=lun0,size=1GiB", want: lunSpec{"lun0", lun.Options{Size: 1 << 30, BlockSize: 512}}},
		{in: "size=64MiB,name=db,blocksize=4096,readonly=true", want: lunSpec{"db", lun.Options{Size: 64 << 20, BlockSize: 4096, ReadOnly: true}}},
		{in: "name=a,size=1M", want: lunSpec{"a", lun.Options{Size: 1000000, BlockSize: 512}}, err: "not a multiple"},
		{in: "name=a,size=4096", want: lunSpec{"a", lun.Options{Size: 4096, BlockSize: 512}}},
		{in: "size=1GiB", err: "name is missing"},
		{in: "name=a", err: "size is missing"},
		{in: "name=a,size=lots", err: `size "lots"`},
		{in: "name=a,size=0", err: `size "0"`},
		{in: "name=a,size=1GiB,blocksize=1024", err: `blocksize "1024": want 512 or 4096`},
		{in: "name=a,size=1GiB,readonly=maybe", err: `readonly "maybe"`},
		{in: "name=a,size=1GiB,colour=red", err: `unknown key "colour"`},
		{in: "name=a,name=b,size=1GiB", err: "name given twice"},
		{in: "name=a,size", err: `"size" is not key=value`},
		{in: "", err: "not key=value"},
	} {
		got, err := parseLUNSpec(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

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
		{[]string{"serve", "--lun", "name=a,size=1GiB,blocksize=1000"}, `invalid argument "name=a,size=1GiB,blocksize=1000" for "--lun" flag: blocksize "1000"`},
		{[]string{"serve", "--lun", "name=a,size=1GiB", "--lun", "name=a,size=2GiB", "--listen", "127.0.0.1:0"}, "--lun a: lun: a LUN of that name exists"},
		{[]string{"serve", "--lun", "name=bad/name,size=1GiB", "--listen", "127.0.0.1:0"}, "--lun bad/name: lun: LUN names"},
		{[]string{"serve", "--listen", ""}, "nothing to serve on"},
		{[]string{"serve", "--listen", "127.0.0.1:99999"}, "--listen:"},
		{[]string{"serve", "extra"}, `unknown command "extra"`},
		{[]string{"--log-level", "loud", "serve"}, `--log-level "loud"`},
		{[]string{"--log-format", "xml", "serve"}, `--log-format "xml"`},
	} {
		_, err := execute(context.Background(), tc.args...)
		require.ErrorContains(t, err, tc.err, "%v", tc.args)
	}
}

func TestServeServesUntilCancelled(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stderr string
	go func() {
		var err error
		stderr, err = execute(ctx, "serve", "--listen", "", "--socket", sock,
			"--lun", "name=db,size=64MiB,blocksize=4096", "--lun", "name=ro,size=1MiB,readonly=true")
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
		_, err := execute(context.Background(), "--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--socket", sock)
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
