package coordinator

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

func TestFsfreezeConstruction(t *testing.T) {
	dir := t.TempDir()
	if runtime.GOOS != "linux" {
		_, err := NewFsfreezeWriter(dir, FsfreezeOptions{})
		require.ErrorIs(t, err, ErrFsfreezeUnsupported)
		return
	}
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	_, err := NewFsfreezeWriter(sub, FsfreezeOptions{})
	require.ErrorIs(t, err, ErrNotMountPoint, "a plain directory would freeze the file system it lives on")

	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = NewFsfreezeWriter(file, FsfreezeOptions{})
	require.ErrorIs(t, err, ErrNotMountPoint)

	_, err = NewFsfreezeWriter(filepath.Join(dir, "missing"), FsfreezeOptions{})
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// TestFsfreezeUnsupportedFileSystem freezes /proc, which no one can freeze:
// EOPNOTSUPP as root, EPERM otherwise. Both are non-retryable.
func TestFsfreezeUnsupportedFileSystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("FIFREEZE is Linux only")
	}
	w, err := NewFsfreezeWriter("/proc", FsfreezeOptions{})
	if err != nil {
		t.Skipf("/proc is not a mount point here: %v", err)
	}
	ev := &Event{Ctx: t.Context(), Kind: vss.EventFreeze}
	require.False(t, w.OnFreeze(ev))
	f := ev.end()
	require.NotNil(t, f)
	require.Equal(t, vss.VSS_E_WRITERERROR_NONRETRYABLE, f.hr)
	require.Contains(t, f.msg, "FIFREEZE")
	require.False(t, w.Frozen())

	ev = &Event{Ctx: t.Context(), Kind: vss.EventThaw}
	require.True(t, w.OnThaw(ev), "nothing to thaw")
	require.Nil(t, ev.end())
	require.NoError(t, w.Close())
}

// fsfreezeMount is an ext4 file system on a loop device, mounted for one
// test, with the writes the test started against it.
type fsfreezeMount struct {
	dir    string
	probes sync.WaitGroup
}

// newFsfreezeMount makes and mounts a small ext4 image. It skips the test
// when not root, and when mkfs.ext4 or mount is missing or fails, except
// with CI=true, where a missing tool or a failed mount is a failure. Its
// cleanup thaws the file system (whatever the writers did), waits for the
// writes, and unmounts.
func newFsfreezeMount(t *testing.T) *fsfreezeMount {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("FIFREEZE is Linux only")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a loop device and freezes it")
	}
	ci := os.Getenv("CI") == "true"
	unavailable := func(format string, args ...any) {
		t.Helper()
		if ci {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable("%s is not available: %v", tool, err)
		}
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "fs.img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(32<<20))
	require.NoError(t, f.Close())
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		unavailable("mkfs.ext4: %v: %s", err, out)
	}
	m := &fsfreezeMount{dir: filepath.Join(tmp, "mnt")}
	require.NoError(t, os.Mkdir(m.dir, 0o755))
	if out, err := exec.Command("mount", "-o", "loop", img, m.dir).CombinedOutput(); err != nil {
		unavailable("mount -o loop: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Thaw first, whatever state the writers left: an unmount of a
		// frozen file system would block, and the writes wait for it.
		_ = fsfreezeThawDirect(m.dir)
		m.probes.Wait()
		for range 50 {
			out, err := exec.Command("umount", m.dir).CombinedOutput()
			if err == nil {
				return
			}
			if !strings.Contains(string(out), "busy") {
				t.Errorf("umount %s: %v: %s", m.dir, err, out)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		out, err := exec.Command("umount", "-l", m.dir).CombinedOutput()
		t.Errorf("umount %s stayed busy; lazy unmount: %v %s", m.dir, err, out)
	})
	return m
}

// fsfreezeThawDirect thaws the file system mounted at dir without a
// writer, as "fsfreeze -u" does. A file system that is not frozen is no
// error.
func fsfreezeThawDirect(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return fsThaw(int(f.Fd()))
}

// write starts a child process that writes a file on the mount and syncs it,
// and returns a channel that receives its result.
func (m *fsfreezeMount) write(t *testing.T, name string) <-chan error {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `echo x > "$1" && sync "$1"`, "sh", filepath.Join(m.dir, name))
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	m.probes.Go(func() { done <- cmd.Wait() })
	return done
}

// requireWritable checks that a write to the mount completes.
func (m *fsfreezeMount) requireWritable(t *testing.T, name string) {
	t.Helper()
	select {
	case err := <-m.write(t, name):
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("a write to %s did not complete: the file system is still frozen", m.dir)
	}
}

// fsfreezeEvent calls fn with a fresh Event for e and returns its answer
// and what it recorded.
func fsfreezeEvent(ctx context.Context, e vss.WriterEvent, fn func(*Event) bool) (bool, *failure) {
	ev := &Event{Ctx: ctx, Kind: e}
	ok := fn(ev)
	return ok, ev.end()
}

func TestFsfreezeFreezesAndThaws(t *testing.T) {
	m := newFsfreezeMount(t)
	ctx := t.Context()
	w, err := NewFsfreezeWriter(m.dir, FsfreezeOptions{MaxFrozen: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	require.False(t, w.Frozen())
	m.requireWritable(t, "before")

	t.Run("Freeze blocks writes until Thaw", func(t *testing.T) {
		ok, f := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
		require.True(t, ok)
		require.Nil(t, f)
		require.True(t, w.Frozen())

		blocked := m.write(t, "during")
		select {
		case err := <-blocked:
			t.Fatalf("a write completed on a frozen file system: %v", err)
		case <-time.After(500 * time.Millisecond):
		}

		ok, f = fsfreezeEvent(ctx, vss.EventThaw, w.OnThaw)
		require.True(t, ok)
		require.Nil(t, f)
		require.False(t, w.Frozen())
		select {
		case err := <-blocked:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("the blocked write did not complete after Thaw")
		}
		b, err := os.ReadFile(filepath.Join(m.dir, "during"))
		require.NoError(t, err)
		require.Equal(t, "x\n", string(b))
	})

	thawers := []struct {
		name string
		thaw func(*Event) bool
		e    vss.WriterEvent
	}{
		{"Abort", w.OnAbort, vss.EventAbort},
		{"BackupShutdown", w.OnBackupShutdown, vss.EventBackupShutdown},
	}
	for _, th := range thawers {
		t.Run(th.name+" thaws", func(t *testing.T) {
			ok, _ := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
			require.True(t, ok)
			ok, f := fsfreezeEvent(ctx, th.e, th.thaw)
			require.True(t, ok)
			require.Nil(t, f)
			require.False(t, w.Frozen())
			m.requireWritable(t, th.name)

			ok, f = fsfreezeEvent(ctx, th.e, th.thaw)
			require.True(t, ok, "nothing left to thaw")
			require.Nil(t, f)
		})
	}

	t.Run("a second Freeze keeps the first", func(t *testing.T) {
		for range 2 {
			ok, f := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
			require.True(t, ok)
			require.Nil(t, f)
		}
		ok, _ := fsfreezeEvent(ctx, vss.EventThaw, w.OnThaw)
		require.True(t, ok)
		m.requireWritable(t, "twice")
	})

	t.Run("frozen by someone else", func(t *testing.T) {
		other, err := NewFsfreezeWriter(m.dir, FsfreezeOptions{})
		require.NoError(t, err)
		ok, _ := fsfreezeEvent(ctx, vss.EventFreeze, other.OnFreeze)
		require.True(t, ok)
		ok, f := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
		require.False(t, ok)
		require.NotNil(t, f)
		require.Equal(t, vss.VSS_E_WRITERERROR_RETRYABLE, f.hr)
		require.False(t, w.Frozen())
		require.NoError(t, other.Close())
		m.requireWritable(t, "other")
	})

	t.Run("thawed by someone else", func(t *testing.T) {
		ok, _ := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
		require.True(t, ok)
		require.NoError(t, fsfreezeThawDirect(m.dir))
		ok, f := fsfreezeEvent(ctx, vss.EventThaw, w.OnThaw)
		require.True(t, ok, "FITHAW's EINVAL means already thawed")
		require.Nil(t, f)
		require.False(t, w.Frozen())
	})

	t.Run("window over while freezing", func(t *testing.T) {
		done, cancel := context.WithCancel(ctx)
		cancel()
		ok, f := fsfreezeEvent(done, vss.EventFreeze, w.OnFreeze)
		require.False(t, ok)
		require.NotNil(t, f)
		require.Equal(t, vss.VSS_E_WRITERERROR_TIMEOUT, f.hr)
		require.False(t, w.Frozen())
		m.requireWritable(t, "late")
	})

	t.Run("watchdog", func(t *testing.T) {
		dog, err := NewFsfreezeWriter(m.dir, FsfreezeOptions{MaxFrozen: 100 * time.Millisecond})
		require.NoError(t, err)
		defer func() { require.NoError(t, dog.Close()) }()
		ok, _ := fsfreezeEvent(ctx, vss.EventFreeze, dog.OnFreeze)
		require.True(t, ok)
		require.Eventually(t, func() bool { return !dog.Frozen() }, 5*time.Second, 10*time.Millisecond)
		m.requireWritable(t, "watchdog")
		ok, f := fsfreezeEvent(ctx, vss.EventThaw, dog.OnThaw)
		require.False(t, ok, "the snapshot may postdate the watchdog's thaw")
		require.NotNil(t, f)
		require.Equal(t, vss.VSS_E_WRITERERROR_TIMEOUT, f.hr)

		ok, _ = fsfreezeEvent(ctx, vss.EventFreeze, dog.OnFreeze)
		require.True(t, ok, "a new freeze starts afresh")
		ok, f = fsfreezeEvent(ctx, vss.EventThaw, dog.OnThaw)
		require.True(t, ok)
		require.Nil(t, f)
	})

	t.Run("Close thaws and ends the writer", func(t *testing.T) {
		ok, _ := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
		require.True(t, ok)
		require.NoError(t, w.Close())
		require.False(t, w.Frozen())
		m.requireWritable(t, "closed")
		ok, f := fsfreezeEvent(ctx, vss.EventFreeze, w.OnFreeze)
		require.False(t, ok)
		require.NotNil(t, f)
		require.Equal(t, vss.VSS_E_WRITERERROR_NONRETRYABLE, f.hr)
		require.Contains(t, f.msg, ErrFsfreezeClosed.Error())
		require.NoError(t, w.Close(), "Close is idempotent")
	})
}
