package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// serveNBD serves the array over a unix socket for the test's lifetime.
func serveNBD(t *testing.T, a *lun.Array) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := nbd.NewServer(nbd.ArrayCatalog(a), nbd.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, l) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return sock
}

func dial(t *testing.T, sock, export string) *nbd.Client {
	t.Helper()
	c, err := nbd.Dial(context.Background(), "unix", sock, &nbd.DialOptions{Export: export})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// appWriter is an application that writes its region through NBD until
// OnFreeze and again after OnThaw, as a database would around a checkpoint.
type appWriter struct {
	BaseWriter
	c      *nbd.Client
	region int64 // bytes from offset 0
	mu     sync.Mutex
	frozen bool
	gen    byte
	// atFreeze is the region's content when the writer froze: what the
	// snapshot must hold byte for byte.
	atFreeze []byte
	content  []byte
}

func (w *appWriter) write(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frozen {
		return nil
	}
	w.gen++
	off := int64(w.gen) * 4096 % w.region
	p := bytes.Repeat([]byte{w.gen}, 8192)
	if off+int64(len(p)) > w.region {
		p = p[:w.region-off]
	}
	if err := w.c.Write(ctx, p, off, 0); err != nil {
		return err
	}
	copy(w.content[off:], p)
	return nil
}

func (w *appWriter) OnFreeze(ev *Event) bool {
	w.mu.Lock() // waits for the write in progress: the application quiesces
	defer w.mu.Unlock()
	w.frozen = true
	w.atFreeze = bytes.Clone(w.content)
	return true
}

func (w *appWriter) OnThaw(ev *Event) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frozen = false
	return true
}

func (w *appWriter) OnAbort(ev *Event) bool { return w.OnThaw(ev) }

// TestDataConsistencyThroughNBD: a writer writes up to OnFreeze and again
// after OnThaw through NBD; the snapshot holds exactly the pre-freeze data,
// byte for byte; a load generator writing throughout on another connection
// loses no write and sees none fail because of the hold (B.2).
func TestDataConsistencyThroughNBD(t *testing.T) {
	ctx := context.Background()
	b := newBench(t, fast, "lun0")
	sock := serveNBD(t, b.a)
	const region = 1 << 18
	app := &appWriter{c: dial(t, sock, "lun0"), region: region, content: make([]byte, region)}
	_, err := b.s.AddWriter(app, WriterOptions{Name: "app", FreezeTimeout: 5 * time.Second})
	require.NoError(t, err)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appErr, loadErr atomic.Value
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := app.write(ctx); err != nil {
				appErr.Store(err)
				return
			}
		}
	})
	// The load writes sequence-numbered 512-byte records after the app's
	// region and remembers every acknowledged one.
	load := dial(t, sock, "lun0")
	var acked atomic.Int64
	wg.Go(func() {
		rec := make([]byte, 512)
		for seq := int64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.LittleEndian.PutUint64(rec, uint64(seq))
			if err := load.Write(ctx, rec, region+((seq-1)%1024)*512, 0); err != nil {
				loadErr.Store(err)
				return
			}
			acked.Store(seq)
		}
	})
	time.Sleep(20 * time.Millisecond)
	bc, a := b.backup(ctx, "lun0")
	require.NoError(t, a.Wait(ctx))
	// Writes after Thaw, and enough load that every record slot was
	// written.
	require.Eventually(t, func() bool { return acked.Load() > 2048 && loadErr.Load() == nil }, 10*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
	require.Nil(t, appErr.Load(), "the application's writes never fail")
	require.Nil(t, loadErr.Load(), "no load write fails because of the hold")
	require.Greater(t, acked.Load(), int64(1024), "the load ran through the sequence")

	snaps := bc.Query()
	require.Len(t, snaps, 1)
	export, err := bc.ExposeSnapshot(ctx, snaps[0].SnapshotID)
	require.NoError(t, err)
	sc := dial(t, sock, export)
	require.True(t, sc.Flags()&nbd.FlagReadOnly != 0, "a snapshot export is read-only")
	got := make([]byte, region)
	require.NoError(t, sc.Read(ctx, got, 0))
	require.Equal(t, app.atFreeze, got, "the snapshot holds exactly the pre-freeze data")
	require.NotEqual(t, app.atFreeze, app.content, "the application wrote again after Thaw")

	// No acknowledged load write was lost: each record slot holds the
	// last sequence number written to it.
	live := dial(t, sock, "lun0")
	slots := make([]byte, 1024*512)
	require.NoError(t, live.Read(ctx, slots, region))
	last := acked.Load()
	for slot := int64(0); slot < 1024; slot++ {
		want := last - ((last-1-slot)%1024+1024)%1024
		gotSeq := int64(binary.LittleEndian.Uint64(slots[slot*512:]))
		require.Equal(t, want, gotSeq, "slot %d", slot)
	}
	require.NoError(t, bc.BackupComplete(ctx))
	require.Equal(t, vss.VSS_WS_STABLE, statusOf(t, bc, "app").State)
	require.NoError(t, bc.Close(ctx))
}
