package cow

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestPut checks that put copies exactly, streamed or not, for every size
// and alignment, and that an aligned grain does stream where the machine
// can (otherwise the assembly would go untested).
func TestPut(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 3*MaxGrain)
	base := int((32 - uintptr(unsafe.Pointer(&buf[0]))%32) % 32) // first 32-byte aligned index
	for _, n := range []int{0, 1, 64, 127, 128, 384, 4096, 4097, MaxGrain} {
		for _, skew := range []int{0, 1, 8, 16, 32} {
			for _, stream := range []bool{false, true} {
				src := make([]byte, n)
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				for i := range buf {
					buf[i] = 0xaa
				}
				at := base + skew
				put(buf[at:], src, stream)
				storeFence()
				require.Equal(t, src, buf[at:at+n], "n=%d skew=%d stream=%v", n, skew, stream)
				for i, b := range buf[at+n:] {
					if b != 0xaa {
						t.Fatalf("n=%d skew=%d stream=%v: wrote past the end at +%d", n, skew, stream, i)
					}
				}
				for i, b := range buf[:at] {
					if b != 0xaa {
						t.Fatalf("n=%d skew=%d stream=%v: wrote before the start at %d", n, skew, stream, i)
					}
				}
			}
		}
	}
	aligned := buf[base : base+4096]
	require.Equal(t, streamAvailable(), streamCopy(aligned, make([]byte, 4096)), "an aligned grain streams where the machine can")
	require.False(t, streamCopy(buf[base+8:], make([]byte, 4096)), "an unaligned destination never streams")
	require.False(t, streamCopy(aligned, make([]byte, 100)), "a length that is not a multiple of 128 never streams")
}

// TestLargeWritesRoundTrip writes and reads back large writes (streamed)
// at grain-aligned and unaligned offsets, in place and after a snapshot.
func TestLargeWritesRoundTrip(t *testing.T) {
	v := newVol(t, 4096, 64*mib)
	model := make([]byte, 64*mib)
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 40 {
		n := streamMin + r.IntN(int(2*mib))
		off := r.Int64N(64*mib - int64(n))
		if round%2 == 0 {
			off &^= 4095
		}
		p := pattern(n, byte(round))
		_, err := v.WriteAt(p, off)
		require.NoError(t, err)
		copy(model[off:], p)
		if round%10 == 9 {
			img := mustSnap(t, v)
			got := make([]byte, len(model))
			_, err := img.ReadAt(got, 0)
			require.NoError(t, err)
			requireSame(t, model, got, fmt.Sprintf("round %d: image", round))
			defer func() { require.NoError(t, img.Release()) }()
		}
	}
	got := make([]byte, len(model))
	_, err := v.ReadAt(got, 0)
	require.NoError(t, err)
	requireSame(t, model, got, "volume")
}

// requireSame compares large buffers and names the first byte that differs
// rather than printing both.
func requireSame(t *testing.T, want, got []byte, what string) {
	t.Helper()
	require.Len(t, got, len(want))
	if !slices.Equal(want, got) {
		for j := range want {
			if want[j] != got[j] {
				t.Fatalf("%s: byte %d is %#x, want %#x", what, j, got[j], want[j])
			}
		}
	}
}
