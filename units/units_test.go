package units

import (
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "4k": 4 << 10, "4K": 4 << 10, "4KiB": 4 << 10, "4 kib": 4 << 10,
		"64M": 64 << 20, "64MiB": 64 << 20, "1G": 1 << 30, "1g": 1 << 30, "1GiB": 1 << 30,
		"1.5G": 3 << 29, "2T": 2 << 40, "1E": 1 << 60, "1P": 1 << 50,
		"1GB": 1e9, "4KB": 4000, "1MB": 1e6, "100B": 100, " 8 M ": 8 << 20, "0.5k": 512,
		"1.0001k": 1024, // rounded down
	} {
		got, err := ParseBytes(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "k", "-1", "1x", "1.2.3", ".", "1 GiBs", "1ib", "1bb", "8E", "1e3", "0x10"} {
		_, err := ParseBytes(in)
		require.Error(t, err, in)
	}
	n, err := ParseBytes("9223372036854775807")
	require.NoError(t, err)
	require.Equal(t, int64(math.MaxInt64), n)
}

// FuzzParseBytes: any input gives a size or an error, never a panic, and a
// size written back in bytes reads the same.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"4k", "1.5G", "1GB", "64 MiB", "9223372036854775807", ".5t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, n, int64(0))
		back, err := ParseBytes(strconv.FormatInt(n, 10))
		require.NoError(t, err)
		require.Equal(t, n, back)
	})
}
