package nbd

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/cow"
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
