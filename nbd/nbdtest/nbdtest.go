// Package nbdtest drives real NBD clients from tests, as net/http/httptest
// serves HTTP to them: the Debian tools (nbdfuse, mkfs.ext4, mount), with a
// skip that names the missing package, a failure instead when CI=true, and
// cleanups that leave no mount or process behind.
package nbdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// NeedTool skips the test when tool is not installed, naming the Debian
// package that has it; under CI=true it fails instead. Under -short it
// skips, as these tests are slow.
func NeedTool(t testing.TB, tool, pkg string) {
	t.Helper()
	if testing.Short() {
		t.Skip("real-client test skipped in -short mode")
	}
	if _, err := exec.LookPath(tool); err != nil {
		msg := fmt.Sprintf("%s is not installed (Debian package %s; make deps installs it)", tool, pkg)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// NeedMounts checks what loop-mounting an export needs: nbdfuse, fuse3,
// mkfs.ext4, /dev/fuse, and root. Missing tools behave as in NeedTool; not
// being root skips the test, or fails it under CI=true (CI runs as root).
func NeedMounts(t testing.TB) {
	t.Helper()
	NeedTool(t, "nbdfuse", "nbdfuse")
	NeedTool(t, "fusermount3", "fuse3")
	NeedTool(t, "mkfs.ext4", "e2fsprogs")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("mounting a loop device needs root, which CI has")
		}
		t.Skip("mounting a loop device needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse in this environment")
	}
}

// Run runs a tool to completion and returns its combined output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// FuseMount exposes the export at uri as the file dir/disk with nbdfuse
// and returns its path; it is unmounted when the test ends.
func FuseMount(t testing.TB, dir, uri string, readOnly bool) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	pidfile := dir + ".pid"
	args := []string{"-P", pidfile}
	if readOnly {
		args = append(args, "-r")
	}
	cmd := exec.Command("nbdfuse", append(args, filepath.Join(dir, "disk"), uri)...)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = exec.Command("fusermount3", "-u", dir).Run()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidfile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("nbdfuse exited: %v\n%s", err, stderr.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "nbdfuse did not start:\n%s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	return filepath.Join(dir, "disk")
}

// LoopMount mounts the ext4 image file at dir through a loop device
// (read-only without replaying the journal when readOnly); it is unmounted
// when the test ends if still mounted.
func LoopMount(t testing.TB, dir, image string, readOnly bool) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	opts := "loop"
	if readOnly {
		opts += ",ro,noload"
	}
	Run(t, "mount", "-t", "ext4", "-o", opts, image, dir)
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

// Unmount unmounts dir and waits for its loop device to detach (which
// flushes it).
func Unmount(t testing.TB, dir string) {
	t.Helper()
	Run(t, "umount", dir)
	for range 100 {
		out, err := exec.Command("losetup", "-a").Output()
		if err != nil || !strings.Contains(string(out), filepath.Dir(dir)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer collects a process's output from its copying goroutines.
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
