package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/lun/durable"
)

// newDataDir returns a data directory holding a LUN with data, closed.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "array")
	a, err := lun.Open(dir, lun.Config{Capacity: 64 << 20})
	require.NoError(t, err)
	l, err := a.Create("lun0", lun.Options{Size: 16 << 20})
	require.NoError(t, err)
	require.NoError(t, l.WriteAt(context.Background(), make([]byte, 1<<20), 0, false))
	require.NoError(t, a.Close())
	return dir
}

// TestServeDamagedDataDir checks what serve says about a data directory it
// cannot use: the directory, the file and what is wrong with it, before
// anything is served.
func TestServeDamagedDataDir(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
		want   []string
	}{
		{"meta.db empty", func(dir string) error { return os.Truncate(filepath.Join(dir, durable.MetaFile), 0) },
			[]string{"is damaged, and was left as it is", durable.MetaFile + " is empty but"}},
		{"meta.db cut short", func(dir string) error { return os.Truncate(filepath.Join(dir, durable.MetaFile), 3*4096) },
			[]string{"is damaged, and was left as it is", durable.MetaFile + " is damaged"}},
		{"data cut short", func(dir string) error { return os.Truncate(filepath.Join(dir, durable.DataFile), 4096) },
			[]string{"is damaged, and was left as it is", durable.DataFile + " is cut short: 4096 bytes"}},
	} {
		dir := newDataDir(t)
		require.NoError(t, tc.damage(dir))
		_, err := execute(context.Background(), "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--api", "")
		require.Error(t, err, tc.name)
		msg := err.Error()
		require.True(t, strings.HasPrefix(msg, "array.data-dir: data directory "+dir+" "), "%s: %s", tc.name, msg)
		for _, w := range tc.want {
			require.Contains(t, msg, w, tc.name)
		}
	}
}

// TestServeDataDirWithoutPermission runs serve as an unprivileged user
// (uid 65534, which root's test can become; skipped for anyone else) on a
// data directory, then a meta.db, it may not read or write, and checks the
// message and that nothing was changed.
func TestServeDataDirWithoutPermission(t *testing.T) {
	if dir := os.Getenv("SHADOWBENCH_TEST_SERVE_DIR"); dir != "" {
		// The child, as uid 65534.
		_, err := execute(context.Background(), "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--api", "")
		require.Error(t, err)
		os.Stderr.WriteString("serve: " + err.Error() + "\n")
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("the test becomes uid 65534, which only root can")
	}
	// The test binary, where uid 65534 may run it.
	bin := filepath.Join(t.TempDir(), "shadowbench.test")
	self, err := os.Executable()
	require.NoError(t, err)
	b, err := os.ReadFile(self)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, b, 0o755))
	for _, tc := range []struct {
		name  string
		lock  func(dir string) error
		where string // the path the error names
	}{
		{"directory", func(dir string) error { return os.Chmod(dir, 0o700) }, filepath.Join("array", durable.MetaFile)},
		{"meta.db", func(dir string) error {
			if err := os.Chmod(dir, 0o777); err != nil {
				return err
			}
			return os.Chmod(filepath.Join(dir, durable.MetaFile), 0o600)
		}, filepath.Join("array", durable.MetaFile)},
	} {
		dir := newDataDir(t)
		for p := filepath.Dir(dir); p != filepath.Dir(p) && strings.HasPrefix(p, os.TempDir()+"/"); p = filepath.Dir(p) {
			require.NoError(t, os.Chmod(p, 0o755)) // uid 65534 reaches the directory
		}
		require.NoError(t, os.Chmod(filepath.Dir(bin), 0o755))
		require.NoError(t, tc.lock(dir))
		before := dirState(t, dir)
		cmd := exec.Command(bin, "-test.run=^TestServeDataDirWithoutPermission$")
		cmd.Env = append(os.Environ(), "SHADOWBENCH_TEST_SERVE_DIR="+dir, "XDG_RUNTIME_DIR=")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", tc.name, out)
		line := ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "serve: ") {
				line = l
			}
		}
		t.Log(line)
		require.Contains(t, line, "array.data-dir: data directory "+dir+" cannot be opened by this user (uid 65534)", tc.name)
		require.Contains(t, line, filepath.Join(filepath.Dir(dir), tc.where), tc.name)
		require.Contains(t, line, "permission denied", tc.name)
		require.Equal(t, before, dirState(t, dir), tc.name)
	}
}

// dirState is every file in dir with its bytes and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		fi, err := e.Info()
		require.NoError(t, err)
		out[e.Name()] = fi.ModTime().String() + " " + string(b)
	}
	return out
}
