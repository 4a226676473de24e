package faultfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// openRW creates name under the mount with n bytes of b.
func openRW(t *testing.T, m *Mounted, name string, b byte, n int) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(m.Dir(), name), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	_, err = f.WriteAt(fill(b, n), 0)
	require.NoError(t, err)
	return f
}

// TestPassthrough checks F1 and F2 without rules: what is written through
// the mount is in the backing file, and every call is counted by name.
func TestPassthrough(t *testing.T) {
	backing := t.TempDir()
	m := Mount(t, backing)
	f := openRW(t, m, "a", 'a', 3<<20) // 3 MiB: 24 writes of 128 KiB
	require.NoError(t, f.Sync())
	require.NoError(t, unix.Fdatasync(int(f.Fd())))
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 3<<20, 1<<20))
	require.NoError(t, f.Truncate(2<<20))
	got, err := os.ReadFile(filepath.Join(backing, "a"))
	require.NoError(t, err)
	requireBytes(t, fill('a', 2<<20), got)
	got, err = os.ReadFile(filepath.Join(m.Dir(), "a"))
	require.NoError(t, err)
	requireBytes(t, fill('a', 2<<20), got)
	c := m.Counts()
	require.Equal(t, map[Site]int{
		{"a", OpOpen}: 2, {"a", OpWrite}: 24, {"a", OpFsync}: 1, {"a", OpFdatasync}: 1, {"a", OpFallocate}: 1, {"a", OpTruncate}: 1,
	}, c.Calls)
	require.Empty(t, c.Hits)
	m.Reset()
	require.Empty(t, m.Counts().Calls)
}

// TestRules checks F1 for each kind of rule: the calls it hits fail with
// its errno and change nothing, the others go through, and only files of
// its name are hit.
func TestRules(t *testing.T) {
	const page = 4096
	for _, tc := range []struct {
		name  string
		rules []Rule
		// run makes the calls and returns the errors, in order.
		run  func(f, other *os.File) []error
		want []syscall.Errno // per call: 0 for none
		// content is what f holds after, by page.
		content string
	}{
		{"nth write", []Rule{Fail("f", OpWrite, 2, syscall.EIO)},
			func(f, _ *os.File) []error { return writes(f, 'x', 0, 1, 2) },
			[]syscall.Errno{0, syscall.EIO, 0}, "xax"},
		{"every write from nth", []Rule{FailFrom("f", OpWrite, 2, syscall.ENOSPC)},
			func(f, _ *os.File) []error { return writes(f, 'x', 0, 1, 2) },
			[]syscall.Errno{0, syscall.ENOSPC, syscall.ENOSPC}, "xaa"},
		{"calls 2 to 3", []Rule{{File: "f", Op: OpWrite, Nth: 2, Count: 2, Errno: syscall.EIO}},
			func(f, _ *os.File) []error { return writes(f, 'x', 0, 1, 2, 0) },
			[]syscall.Errno{0, syscall.EIO, syscall.EIO, 0}, "xaa"},
		{"other file", []Rule{FailFrom("f", OpWrite, 1, syscall.EIO)},
			func(_, other *os.File) []error { return writes(other, 'x', 0) },
			[]syscall.Errno{0}, "aaa"},
		{"every file", []Rule{FailFrom("", OpWrite, 1, syscall.EIO)},
			func(f, other *os.File) []error { return append(writes(other, 'x', 0), writes(f, 'x', 0)...) },
			[]syscall.Errno{syscall.EIO, syscall.EIO}, "aaa"},
		{"fsync", []Rule{Fail("f", OpFsync, 1, syscall.EIO)},
			func(f, _ *os.File) []error {
				return []error{unix.Fdatasync(int(f.Fd())), f.Sync(), f.Sync()}
			}, []syscall.Errno{0, syscall.EIO, 0}, "aaa"},
		{"fdatasync", []Rule{Fail("f", OpFdatasync, 1, syscall.EIO)},
			func(f, _ *os.File) []error {
				return []error{f.Sync(), unix.Fdatasync(int(f.Fd())), unix.Fdatasync(int(f.Fd()))}
			}, []syscall.Errno{0, syscall.EIO, 0}, "aaa"},
		{"fallocate", []Rule{Fail("f", OpFallocate, 1, syscall.ENOSPC)},
			func(f, _ *os.File) []error {
				return []error{
					unix.Fallocate(int(f.Fd()), 0, 3*page, page),
					unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, page, page),
				}
			}, []syscall.Errno{syscall.ENOSPC, 0}, "a0a"},
		{"truncate", []Rule{Fail("f", OpTruncate, 1, syscall.EIO)},
			func(f, _ *os.File) []error { return []error{f.Truncate(page), f.Truncate(2 * page)} },
			[]syscall.Errno{syscall.EIO, 0}, "aa"},
		{"open", []Rule{Fail("f", OpOpen, 1, syscall.EACCES)},
			func(f, _ *os.File) []error {
				g, err := os.OpenFile(f.Name(), os.O_RDWR, 0)
				if err == nil {
					g.Close()
				}
				g, err2 := os.OpenFile(f.Name(), os.O_RDWR, 0)
				if err2 == nil {
					g.Close()
				}
				return []error{err, err2}
			}, []syscall.Errno{syscall.EACCES, 0}, "aaa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backing := t.TempDir()
			m := Mount(t, backing)
			f := openRW(t, m, "f", 'a', 3*page)
			other := openRW(t, m, "g", 'a', page)
			m.Reset()
			require.NoError(t, m.Set(tc.rules...))
			errs := tc.run(f, other)
			require.NoError(t, m.Set())
			require.Len(t, errs, len(tc.want))
			hits := 0
			for i, e := range tc.want {
				if e == 0 {
					require.NoError(t, errs[i], "call %d", i+1)
					continue
				}
				require.ErrorIs(t, errs[i], e, "call %d", i+1)
				hits++
			}
			total := 0
			for _, n := range m.Counts().Hits {
				total += n
			}
			require.Equal(t, hits, total, "hits counted")
			got, err := os.ReadFile(filepath.Join(backing, "f"))
			require.NoError(t, err)
			var want []byte
			for _, c := range tc.content {
				if c == '0' {
					c = 0
				}
				want = append(want, fill(byte(c), page)...)
			}
			requireBytes(t, want, got)
		})
	}
}

// writes writes a page of b at each page number given, and returns the
// errors.
func writes(f *os.File, b byte, pages ...int64) []error {
	var errs []error
	for _, p := range pages {
		_, err := f.WriteAt(fill(b, 4096), p*4096)
		errs = append(errs, err)
	}
	return errs
}

// TestShortWrite checks a short write: half the bytes land and their count
// is answered; the caller's next call writes the rest, or fails.
func TestShortWrite(t *testing.T) {
	backing := t.TempDir()
	m := Mount(t, backing)
	f := openRW(t, m, "f", 'a', 16384)
	m.Reset()
	require.NoError(t, m.Set(ShortWrite("f", 1)))
	n, err := unix.Pwrite(int(f.Fd()), fill('x', 8192), 0)
	require.NoError(t, err)
	require.Equal(t, 4096, n)
	// os.File.WriteAt goes on after a short write: with the next call
	// failing, it answers the error (and drops the count of what the
	// first call wrote).
	require.NoError(t, m.Set(ShortWrite("f", 2), Fail("f", OpWrite, 3, syscall.ENOSPC)))
	_, err = f.WriteAt(fill('y', 8192), 8192)
	require.ErrorIs(t, err, syscall.ENOSPC)
	got, err := os.ReadFile(filepath.Join(backing, "f"))
	require.NoError(t, err)
	requireBytes(t, slicesConcat(fill('x', 4096), fill('a', 4096), fill('y', 4096), fill('a', 4096)), got)
	require.Equal(t, map[Site]int{{"f", OpWrite}: 3}, m.Counts().Hits)
}

// requireBytes compares without printing megabytes: the lengths and the
// first byte that differs.
func requireBytes(t *testing.T, want, got []byte, msg ...any) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	t.Fatalf("%v: %d bytes, want %d; first difference at %d", fmt.Sprint(msg...), len(got), len(want), i)
}

func slicesConcat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestMapping checks F3: a shared read-only mapping of a file, as bbolt
// and filestore make, shows each write once it returned, never a write
// that failed, the half of a short write that landed, a punched hole and
// a growth.
func TestMapping(t *testing.T) {
	const page = 4096
	backing := t.TempDir()
	m := Mount(t, backing)
	f := openRW(t, m, "f", 'a', 4*page)
	mem, err := unix.Mmap(int(f.Fd()), 0, 8*page, unix.PROT_READ, unix.MAP_SHARED)
	require.NoError(t, err)
	defer unix.Munmap(mem)
	want := slicesConcat(fill('a', 4*page))
	requireBytes(t, want, mem[:4*page])

	// A write through the file is seen through the mapping.
	_, err = f.WriteAt(fill('b', page), page)
	require.NoError(t, err)
	copy(want[page:], fill('b', page))
	requireBytes(t, want, mem[:4*page])
	// Unaligned, inside a page the mapping holds.
	_, err = f.WriteAt(fill('c', 100), 2*page+10)
	require.NoError(t, err)
	copy(want[2*page+10:], fill('c', 100))
	requireBytes(t, want, mem[:4*page])

	// A write that failed is not: the page cache does not keep it.
	require.NoError(t, m.Set(FailFrom("f", OpWrite, 1, syscall.EIO)))
	_, err = f.WriteAt(fill('d', 2*page), 0)
	require.ErrorIs(t, err, syscall.EIO)
	_, err = f.WriteAt(fill('d', 10), page+5)
	require.ErrorIs(t, err, syscall.EIO)
	requireBytes(t, want, mem[:4*page], "a failed write shows through the mapping")

	// A short write shows its first half.
	m.Reset()
	require.NoError(t, m.Set(ShortWrite("f", 1), Fail("f", OpWrite, 2, syscall.ENOSPC)))
	_, err = f.WriteAt(fill('e', 2*page), 2*page)
	require.ErrorIs(t, err, syscall.ENOSPC)
	copy(want[2*page:], fill('e', page))
	requireBytes(t, want, mem[:4*page])
	require.NoError(t, m.Set())

	// A hole punched reads as zeros; a growth extends what can be read.
	require.NoError(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, page))
	copy(want, make([]byte, page))
	requireBytes(t, want, mem[:4*page])
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 4*page, 2*page))
	_, err = f.WriteAt(fill('f', page), 5*page)
	require.NoError(t, err)
	want = append(want, slicesConcat(make([]byte, page), fill('f', page))...)
	requireBytes(t, want, mem[:6*page])
	got, err := os.ReadFile(filepath.Join(backing, "f"))
	require.NoError(t, err)
	requireBytes(t, want, got, "the backing file")
}

// TestConcurrentRules checks F4: rules changed while writers run; every
// write either succeeds or fails with a rule's errno, and every call is
// counted.
func TestConcurrentRules(t *testing.T) {
	backing := t.TempDir()
	m := Mount(t, backing)
	const writers, each = 4, 50
	files := make([]*os.File, writers)
	for i := range files {
		files[i] = openRW(t, m, fmt.Sprint("f", i), 'a', 4096)
	}
	m.Reset()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := files[i].WriteAt(fill('x', 4096), 0); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range 20 {
		rule := FailFrom("", OpWrite, 1, syscall.EIO)
		if i%2 == 1 {
			rule = Fail("f1", OpWrite, i, syscall.ENOSPC)
		}
		require.NoError(t, m.Set(rule))
		_ = m.Counts()
	}
	require.NoError(t, m.Set())
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if !(errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC)) {
			t.Fatalf("unexpected error: %v", err)
		}
		failed++
	}
	c := m.Counts()
	calls, hits := 0, 0
	for s, n := range c.Calls {
		require.Equal(t, OpWrite, s.Op)
		calls += n
	}
	for _, n := range c.Hits {
		hits += n
	}
	require.Equal(t, writers*each, calls)
	require.Equal(t, failed, hits)
}

// TestInProcess checks New, the file system served by this process, with
// plain reads and writes (no mapping: see the package doc).
func TestInProcess(t *testing.T) {
	if err := Available(); err != nil {
		unavailable(t, err)
	}
	backing, mnt := t.TempDir(), t.TempDir()
	fsys, err := New(backing, mnt)
	require.NoError(t, err)
	defer func() { require.NoError(t, fsys.Unmount()) }()
	require.Equal(t, mnt, fsys.Dir())
	require.NoError(t, fsys.Set(Fail("x", OpWrite, 1, syscall.EIO)))
	path := filepath.Join(mnt, "x")
	require.ErrorIs(t, os.WriteFile(path, []byte("hello"), 0o600), syscall.EIO)
	require.NoError(t, os.WriteFile(path, []byte("hello"), 0o600))
	got, err := os.ReadFile(filepath.Join(backing, "x"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
	c := fsys.Counts()
	require.Equal(t, 2, c.Calls[Site{"x", OpWrite}])
	require.Equal(t, 1, c.Hits[Site{"x", OpWrite}])
	require.NoError(t, fsys.Unmount())

	// NoSync: counted and failed, never made.
	fsys, err = New(backing, mnt, NoSync())
	require.NoError(t, err)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, fsys.Set(Fail("x", OpFsync, 2, syscall.EIO)))
	require.ErrorIs(t, f.Sync(), syscall.EIO)
	require.NoError(t, f.Close())
	require.Equal(t, 2, fsys.Counts().Calls[Site{"x", OpFsync}])
	require.Error(t, fsys.Set(Rule{File: "x", Op: OpFsync, Short: true}), "only a write is short")
	require.Error(t, fsys.Set(Rule{File: "x", Op: OpFsync}), "no errno")
	require.Error(t, fsys.Set(Rule{File: "x", Errno: syscall.EIO}), "no op")
}

// TestUnavailable checks that a missing FUSE skips a test, and fails it
// under CI.
func TestUnavailable(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			tb := &recorder{TB: t}
			done := make(chan struct{})
			go func() { // Skipf and Fatalf end the goroutine
				defer close(done)
				unavailable(tb, fmt.Errorf("%w: no /dev/fuse", ErrUnavailable))
			}()
			<-done
			if ci == "true" {
				require.True(t, tb.failed)
				require.Contains(t, tb.msg, "CI must run")
			} else {
				require.True(t, tb.skipped)
				require.Contains(t, tb.msg, "no /dev/fuse")
			}
		})
	}
}

// recorder is a testing.TB that records Skipf and Fatalf, which end the
// goroutine as theirs do.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
