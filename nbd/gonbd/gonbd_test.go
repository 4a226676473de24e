package gonbd

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/pojntfx/go-nbd/pkg/server"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLUN(t *testing.T, size int64) (*lun.Array, *lun.LUN) {
	t.Helper()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	l, err := a.Create("lun0", lun.Options{Size: size})
	require.NoError(t, err)
	return a, l
}

func TestBackendContracts(t *testing.T) {
	a, l := newLUN(t, 1<<20)
	b := Backend(l)
	size, err := b.Size()
	require.NoError(t, err)
	require.Equal(t, int64(1<<20), size)

	n, err := b.WriteAt([]byte("hello"), 1<<20-5)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	n, err = b.WriteAt([]byte("toolong"), 1<<20-5)
	require.Error(t, err, "a write past the end fails")
	require.Zero(t, n)

	p := make([]byte, 10)
	n, err = b.ReadAt(p, 1<<20-5)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, 5, n)
	require.Equal(t, "hello", string(p[:5]))
	n, err = b.ReadAt(p, 1<<20)
	require.ErrorIs(t, err, io.EOF)
	require.Zero(t, n)
	require.NoError(t, b.Sync())

	require.NoError(t, a.Delete("lun0"))
	_, err = b.Size()
	require.ErrorIs(t, err, lun.ErrDeleted)
	_, err = b.ReadAt(p, 0)
	require.ErrorIs(t, err, lun.ErrDeleted)
}

// TestServedByGoNBD serves a LUN with go-nbd's server and reads and writes
// it with this project's client.
func TestServedByGoNBD(t *testing.T) {
	_, l := newLUN(t, 4<<20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		served <- server.Handle(conn, []*server.Export{{Name: "lun0", Backend: Backend(l)}},
			&server.Options{MinimumBlockSize: 1, PreferredBlockSize: 4096, MaximumBlockSize: 1 << 20, SupportsMultiConn: true})
	}()

	ctx := context.Background()
	c, err := nbd.Dial(ctx, "tcp", ln.Addr().String(), &nbd.DialOptions{Export: "lun0", NoStructuredReplies: true, MaxInFlight: 1})
	require.NoError(t, err)
	require.Equal(t, int64(4<<20), c.Size())
	p := make([]byte, 12345)
	for i := range p {
		p[i] = byte(i)
	}
	require.NoError(t, c.Write(ctx, p, 777, 0))
	got := make([]byte, len(p))
	require.NoError(t, c.Read(ctx, got, 777))
	require.Equal(t, p, got)
	require.NoError(t, l.ReadAt(ctx, got, 777))
	require.Equal(t, p, got, "the write landed in the LUN")
	require.NoError(t, c.Disconnect(ctx))
	require.NoError(t, <-served)
}

// TestServeWithOurClient checks the peer server end to end: our client
// reads back what it wrote through go-nbd's server.
func TestServeWithOurClient(t *testing.T) {
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	l, err := a.Create("lun0", lun.Options{Size: 1 << 20})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, l) }()
	c, err := nbd.Dial(ctx, "tcp", ln.Addr().String(), &nbd.DialOptions{Export: "lun0", NoStructuredReplies: true})
	require.NoError(t, err)
	p := []byte("through go-nbd")
	require.NoError(t, c.Write(ctx, p, 4096, 0))
	got := make([]byte, len(p))
	require.NoError(t, c.Read(ctx, got, 4096))
	require.Equal(t, p, got)
	require.NoError(t, c.Close())
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
