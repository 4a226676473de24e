package durable

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkFlush is a 4 KiB overwrite and a flush, as fio's fsync=1 job
// does through NBD, against the same on a plain file: pwrite and
// fdatasync. The difference is the checkpoint's own cost.
func BenchmarkFlush(b *testing.B) {
	const size = 64 << 20
	p := make([]byte, 4096)
	b.Run("durable", func(b *testing.B) {
		db, err := Open(b.TempDir(), Options{Capacity: 2 * size})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		t, err := db.NewVolume(size, Set())
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += 1 << 20 {
			if _, err := t.Volume().WriteAt(make([]byte, 1<<20), off); err != nil {
				b.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if _, err := t.Volume().WriteAt(p, rand.Int64N(size/4096)*4096); err != nil {
				b.Fatal(err)
			}
			if err := db.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "f"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(make([]byte, size)); err != nil {
			b.Fatal(err)
		}
		_ = unix.Fdatasync(int(f.Fd()))
		b.ResetTimer()
		for b.Loop() {
			if _, err := f.WriteAt(p, rand.Int64N(size/4096)*4096); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
		}
	})
}
