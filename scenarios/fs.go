package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// A file system on a LUN is real: the LUN's NBD export is a file through
// nbdfuse, made ext4 with mkfs.ext4 and mounted through a loop device, as
// a Linux client of the array would use it. A snapshot is read the same
// way, read-only and without replaying its journal. This needs nbdfuse,
// fuse3, e2fsprogs, /dev/fuse and root; elsewhere such a scenario is
// skipped, saying what is missing, and under CI=true (where those are
// installed) it fails instead.

// fsTools are the programs a file system needs, with the Debian packages
// that have them.
var fsTools = [][2]string{{"nbdfuse", "nbdfuse"}, {"fusermount3", "fuse3"}, {"mkfs.ext4", "e2fsprogs"},
	{"mount", "mount"}, {"umount", "mount"}}

// errSkip is wrapped by what makes a scenario impossible on this machine.
var errSkip = errors.New("cannot run here")

// errNotHere is wrapped by what makes a scenario mean nothing in the run
// asked for (a power cut on a durable array): skipped, even under CI.
var errNotHere = errors.New("not run here")

// needFilesystems reports what the machine lacks for file systems, or nil.
func needFilesystems() error {
	var missing []string
	for _, t := range fsTools {
		if _, err := exec.LookPath(t[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t[0], t[1]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: file systems need %s", errSkip, strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: mounting a loop device needs root", errSkip)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: no /dev/fuse", errSkip)
	}
	return nil
}

// mounted is one file system the runner mounted: the loop mount on top of
// the nbdfuse file, and what it takes to take both down.
type mounted struct {
	dir    string // the loop mount
	fuse   string // the nbdfuse mount point
	looped bool   // the loop mount is up
	done   chan error
	cmd    *exec.Cmd
	log    *syncBuffer
}

// fsTimeout bounds each tool the runner runs, in real time.
const fsTimeout = time.Minute

func runTool(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, fsTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// mountExport exposes export as a file with nbdfuse under dir, and mounts
// it with a loop device; mkfs first makes it ext4.
func (r *runner) mountExport(ctx context.Context, dir, export string, readOnly, mkfs bool) (*mounted, error) {
	m := &mounted{fuse: filepath.Join(dir, "fuse"), dir: filepath.Join(dir, "mnt"), done: make(chan error, 1), log: &syncBuffer{}}
	for _, d := range []string{m.fuse, m.dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	pidfile := filepath.Join(dir, "nbdfuse.pid")
	args := []string{"-P", pidfile}
	if readOnly {
		args = append(args, "-r")
	}
	disk := filepath.Join(m.fuse, "disk")
	uri := "nbd+unix:///" + export + "?socket=" + r.sock
	m.cmd = exec.Command("nbdfuse", append(args, disk, uri)...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.done <- m.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidfile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			break
		}
		select {
		case err := <-m.done:
			m.done <- err
			return nil, fmt.Errorf("nbdfuse exited: %v: %s", err, m.log.String())
		default:
		}
		if time.Now().After(deadline) {
			m.unmount()
			return nil, fmt.Errorf("nbdfuse did not start: %s", m.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mkfs {
		if err := runTool(ctx, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", disk); err != nil {
			m.unmount()
			return nil, err
		}
	}
	opts := "loop"
	if readOnly {
		opts += ",ro,noload"
	}
	if err := runTool(ctx, "mount", "-t", "ext4", "-o", opts, disk, m.dir); err != nil {
		m.unmount()
		return nil, err
	}
	m.looped = true
	return m, nil
}

// unmount takes the loop mount (if any) and the nbdfuse mount down and
// waits for nbdfuse to exit.
func (m *mounted) unmount() {
	if m.looped {
		_ = exec.Command("umount", m.dir).Run()
	}
	_ = exec.Command("fusermount3", "-u", m.fuse).Run()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// setupFilesystems makes and mounts the file system of every LUN that has
// one.
func (r *runner) setupFilesystems(ctx context.Context) error {
	need := false
	for _, l := range r.sc.array.luns {
		need = need || l.filesystem != nil
	}
	if !need {
		return nil
	}
	if err := needFilesystems(); err != nil {
		return err
	}
	for _, l := range r.sc.array.luns {
		if l.filesystem == nil {
			continue
		}
		m, err := r.mountExport(ctx, filepath.Join(r.dir, "fs-"+l.name), l.name, false, true)
		if err != nil {
			return fmt.Errorf("file system on %s (line %d): %w", l.name, l.line, err)
		}
		r.mounts[l.name] = m
	}
	return nil
}

// unmountAll takes every file system down, the snapshots' first.
func (r *runner) unmountAll() {
	for _, m := range r.mounts {
		m.unmount()
	}
	r.mounts = map[string]*mounted{}
}

// filesystem runs a file-system step: a file written on a LUN's mounted
// file system (and fsynced), or read, on it or on a snapshot's, mounted
// read-only for the step.
func (r *runner) filesystem(ctx context.Context, s *step, fail func(expected, got string)) {
	f := s.fs
	dir := ""
	if f.lun != "" {
		m := r.mounts[f.lun]
		if m == nil {
			fail("the file system on "+f.lun, "none mounted")
			return
		}
		dir = m.dir
	} else {
		export, err := r.snapshotExport(s.requester, f.snapshot, f.sourceLUN)
		if err != nil {
			fail("a surfaced target LUN of the snapshot of "+f.snapshot, err.Error())
			return
		}
		r.mu.Lock()
		r.mu.snapMounts++
		n := r.mu.snapMounts
		r.mu.Unlock()
		m, err := r.mountExport(ctx, filepath.Join(r.dir, fmt.Sprintf("snap-%d", n)), export, true, false)
		if err != nil {
			fail("the snapshot's file system mounted read-only", err.Error())
			return
		}
		defer m.unmount()
		dir = m.dir
	}
	path := filepath.Join(dir, f.path)
	switch {
	case f.write != nil:
		if err := writeSynced(path, f.write); err != nil {
			fail("the file "+f.path+" written", err.Error())
		}
	case f.absent:
		if _, err := os.Stat(path); err == nil {
			fail("no file "+f.path, "it is there")
		}
	default:
		got, err := os.ReadFile(path)
		switch {
		case err != nil:
			fail(fmt.Sprintf("%q in %s", f.read, f.path), err.Error())
		case !bytes.Equal(got, f.read):
			fail(fmt.Sprintf("%q in %s", f.read, f.path), fmt.Sprintf("%q", got))
		}
	}
}

func writeSynced(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
