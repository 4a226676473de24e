package nbd

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/stretchr/testify/require"
)

// imageBackend exports a cow image read-only, reading it without a copy
// (VecReader); Extents and Changed are not needed by these tests.
type imageBackend struct {
	img   *cow.Image
	reads atomic.Int32 // ReadVec calls returned
}

var _ VecReader = (*imageBackend)(nil)

func (b *imageBackend) Size() int64         { return b.img.Size() }
func (b *imageBackend) BlockSize() int      { return 4096 }
func (b *imageBackend) ReadOnly() bool      { return true }
func (b *imageBackend) Description() string { return "image" }
func (b *imageBackend) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := b.img.ReadAt(p, off)
	return err
}
func (b *imageBackend) ReadVec(_ context.Context, vec *cow.Vec, off, n int64) error {
	defer b.reads.Add(1)
	return b.img.ReadVec(vec, off, n)
}
func (b *imageBackend) WriteAt(context.Context, []byte, int64, bool) error { return cow.ErrReadOnly }
func (b *imageBackend) Flush(context.Context) error                        { return nil }
func (b *imageBackend) Trim(context.Context, int64, int64) error           { return cow.ErrReadOnly }
func (b *imageBackend) WriteZeroes(context.Context, int64, int64, bool) error {
	return cow.ErrReadOnly
}
func (b *imageBackend) Extents(_ context.Context, off, n int64) ([]cow.Extent, error) {
	return b.img.Extents(off, n)
}

type oneExport struct{ b Backend }

func (c oneExport) Lookup(string) (Backend, error) { return c.b, nil }
func (c oneExport) List() []ExportInfo             { return []ExportInfo{{Name: "img"}} }

// TestReplyKeepsItsGrainsPinned is the pinning rule at the socket: a READ
// of an image is sent from the image's blocks, by reference, while the
// client does not read, so the send blocks half-way; meanwhile the image
// is released (the volume wrote every grain since, so the image held the
// only reference to each) and another volume of the store writes, taking
// whatever blocks the release freed. The reply, read at last, must carry
// the image's bytes. Without the pins the release frees the blocks and the
// other volume's bytes go out in their place.
func TestReplyKeepsItsGrainsPinned(t *testing.T) {
	for _, structured := range []bool{false, true} {
		t.Run(map[bool]string{false: "simple", true: "structured"}[structured], func(t *testing.T) {
			const size = 16 << 20
			store, err := cow.NewMemStore(cow.DefaultGrain, 0)
			require.NoError(t, err)
			v, err := cow.NewVolume(store, size)
			require.NoError(t, err)
			other, err := cow.NewVolume(store, size)
			require.NoError(t, err)
			old := bytes.Repeat([]byte{'a'}, size)
			_, err = v.WriteAt(old, 0)
			require.NoError(t, err)
			img, err := v.Snapshot()
			require.NoError(t, err)
			_, err = v.WriteAt(bytes.Repeat([]byte{'b'}, size), 0)
			require.NoError(t, err)

			b := &imageBackend{img: img}
			ts := serveOn(t, "tcp", oneExport{b}, Options{MaxPayload: size})
			r := rawDial(t, ts)
			r.goExport("img", structured)
			r.request(0, CmdRead, 7, 0, size, nil)
			require.Eventually(t, func() bool { return b.reads.Load() == 1 }, 5*time.Second, time.Millisecond)
			time.Sleep(50 * time.Millisecond) // the send fills the socket buffers and blocks

			require.NoError(t, img.Release())
			_, err = other.WriteAt(bytes.Repeat([]byte{'z'}, size), 0)
			require.NoError(t, err)

			var got []byte
			if structured {
				for {
					ch := r.chunk()
					require.Equal(t, uint64(7), ch.handle)
					require.Equal(t, replyOffsetData, ch.typ)
					got = append(got, ch.payload[8:]...)
					if ch.flags&replyFlagDone != 0 {
						break
					}
				}
			} else {
				errno, h := r.simple()
				require.Zero(t, errno)
				require.Equal(t, uint64(7), h)
				got = make([]byte, size)
				_, err = io.ReadFull(r.br, got)
				require.NoError(t, err)
			}
			if i := bytes.IndexFunc(got, func(c rune) bool { return c != 'a' }); i >= 0 {
				t.Fatalf("the reply changed while it was sent: byte %d is %q", i, got[i])
			}
			require.Len(t, got, size)
		})
	}
}

// TestLUNReadsMatchTheLUN reads random ranges of a LUN with data, holes,
// zeroed grains and a snapshot's shared grains through the server, with
// structured replies (hole chunks from the pinned read's holes) and
// simple ones (holes as the shared zero page), and compares them with the
// LUN's own ReadAt.
func TestLUNReadsMatchTheLUN(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testLUNReads(t, newArray(t, 8<<20, "lun0")) })
	t.Run("durable", func(t *testing.T) {
		// A durable LUN's blocks are slices of its data file's mapping,
		// sent from there.
		a, err := lun.Open(t.TempDir(), lun.Config{Capacity: 64 << 20})
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close() })
		_, err = a.Create("lun0", lun.Options{Size: 8 << 20, BlockSize: 4096})
		require.NoError(t, err)
		testLUNReads(t, a)
	})
}

func testLUNReads(t *testing.T, a *lun.Array) {
	const size = 8 << 20
	l, err := a.Get("lun0")
	require.NoError(t, err)
	ctx := tctx(t)
	r := rand.New(rand.NewPCG(11, 12))
	for i := range 80 {
		off := r.Int64N(size)
		n := 1 + r.Int64N(min(size-off, 256<<10))
		switch i % 5 {
		case 0, 1, 2:
			require.NoError(t, l.WriteAt(ctx, pattern(int(n), byte(i)), off, false))
		case 3:
			require.NoError(t, l.Trim(ctx, off, n))
		case 4:
			require.NoError(t, l.WriteZeroes(ctx, off, n, i%2 == 0))
		}
		if i == 40 {
			snapshot(t, a, "lun0", "s1")
		}
	}
	ts := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	for _, simple := range []bool{false, true} {
		c := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: simple})
		for range 100 {
			off := r.Int64N(size)
			n := r.Int64N(min(size-off, 1<<20) + 1)
			want := make([]byte, n)
			require.NoError(t, l.ReadAt(ctx, want, off))
			got := make([]byte, n)
			for i := range got {
				got[i] = 0xee // a hole chunk must zero what it covers
			}
			require.NoError(t, c.Read(ctx, got, off))
			require.True(t, bytes.Equal(want, got), "simple=%v off %d n %d", simple, off, n)
		}
		require.NoError(t, c.Close())
	}
}

// TestLUNStructuredReadChunks is TestStructuredReadSendsHoleChunks on a
// LUN, whose chunks come from its pinned read: holes of a grain or more
// are hole chunks, data goes by reference.
func TestLUNStructuredReadChunks(t *testing.T) {
	a := newArray(t, testSize, "lun0")
	l, err := a.Get("lun0")
	require.NoError(t, err)
	ctx := tctx(t)
	require.NoError(t, l.WriteAt(ctx, pattern(8192, 3), 16384, false))
	require.NoError(t, l.WriteAt(ctx, []byte{9}, 40000, false))
	ts := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	rc := rawDial(t, ts)
	rc.goExport("lun0", true)
	rc.request(0, CmdRead, 7, 0, 64<<10, nil)
	type seen struct {
		typ    uint16
		off, n uint64
	}
	var chunks []seen
	for {
		ch := rc.chunk()
		s := seen{typ: ch.typ, off: be.Uint64(ch.payload)}
		if ch.typ == replyOffsetHole {
			s.n = uint64(be.Uint32(ch.payload[8:]))
		} else {
			s.n = uint64(len(ch.payload) - 8)
		}
		chunks = append(chunks, s)
		if ch.flags&replyFlagDone != 0 {
			break
		}
	}
	require.Equal(t, []seen{
		{replyOffsetHole, 0, 16384},
		{replyOffsetData, 16384, 8192},
		{replyOffsetHole, 24576, 36864 - 24576},
		{replyOffsetData, 36864, 4096},
		{replyOffsetHole, 40960, 64<<10 - 40960},
	}, chunks)
	// A read of holes only is one hole chunk and holds no payload memory.
	rc.request(0, CmdRead, 8, 1<<20, 100, nil)
	ch := rc.chunk()
	require.Equal(t, replyOffsetHole, ch.typ)
	require.Equal(t, uint32(100), be.Uint32(ch.payload[8:]))
}
