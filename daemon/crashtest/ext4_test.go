//go:build linux

package crashtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	api "github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd/nbdtest"
	"github.com/shadowbench/shadowbench/vss"
)

// ext4LUNSize is the LUN the ext4 test makes its file system on: big
// enough for a real layout (several block groups, an 8 MiB journal), small
// enough that mkfs and fsck take well under a second.
const ext4LUNSize = 256 << 20

// TestExt4KillAndRestart is issue 17's real clients on a durable LUN: the
// kernel's ext4, reached through nbdfuse and a loop device, on a LUN of a
// durable serve that is killed with SIGKILL while the file system is
// mounted. Before the kill the test writes files and syncs them (fsync
// each, then syncfs), takes an APP_ROLLBACK snapshot with the CLI (the
// fsfreeze writer freezes the file system for it), writes and syncs more,
// takes a second APP_ROLLBACK snapshot with no writer (crash-consistent,
// as a snapshot of a disk whose host knows nothing of it is), writes and
// syncs a few more, and writes a tail it does not sync. After the restart:
//   - the file system is consistent: once its journal is replayed, as a
//     mount would, fsck.ext4 -fn finds nothing (D1: every block a FLUSH
//     covered is there, so the journal's commits are whole);
//   - every synced file holds what was written (D1); an unsynced file may
//     be missing or short, and read as zeros where ext4 has not recorded
//     its data as written, but holds no other bytes;
//   - both snapshots survived (D2). The frozen one, exposed over NBD and
//     mounted read-only, is clean for fsck.ext4 -fn and holds exactly the
//     files synced before it, with their contents. The crash-consistent
//     one is copied out with nbdcopy (a snapshot LUN is read-only, and its
//     journal needs replaying, as after a power cut): the copy, replayed,
//     is clean and holds exactly the files synced before it.
//
// fsck.ext4 -n runs only after the journal is replayed: before, it reads
// the home locations of metadata the journal has not checkpointed yet,
// and reports a file system that is fine, once mounted, as corrupt.
func TestExt4KillAndRestart(t *testing.T) {
	nbdtest.NeedMounts(t)
	nbdtest.NeedTool(t, "losetup", "mount")
	nbdtest.NeedTool(t, "fsck.ext4", "e2fsprogs")
	nbdtest.NeedTool(t, "filefrag", "e2fsprogs")
	nbdtest.NeedTool(t, "nbdcopy", "libnbd-bin")
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./daemon/crashtest -run TestExt4KillAndRestart -crash.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	t0 := time.Now()
	dir, run, mnts := t.TempDir(), t.TempDir(), t.TempDir()

	d := start(t, dir, run, 0, ext4LUNSize)
	live := attach(t, filepath.Join(mnts, "fuse0"), "nbd://"+d.nbd+"/c0", false)
	nbdtest.Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", live.loop)
	mnt := live.mount(t, filepath.Join(mnts, "mnt0"), "")
	before := writeFiles(t, rng, mnt, "before", 8, true /* sync */)
	syncfs(t, mnt)

	frozen := createSet(t, d, "--writer", "fsfreeze:"+mnt)

	after := writeFiles(t, rng, mnt, "after", 8, true /* sync */)
	syncfs(t, mnt)
	crashed := createSet(t, d)
	past := writeFiles(t, rng, mnt, "past", 2, true /* sync */)
	tail := writeFiles(t, rng, mnt, "tail", 8, false /* sync */)

	// The kill lands while a syncfs is writing the tail back, at a point
	// the seed picks, so that the journal may be cut mid-commit and part
	// of the tail may have reached the LUN.
	wb := make(chan string, 1)
	go func() {
		t1 := time.Now()
		err := syncfsErr(mnt)
		wb <- fmt.Sprintf("%v after %v", err, time.Since(t1).Round(time.Millisecond))
	}()
	delay := time.Duration(rng.IntN(40)) * time.Millisecond
	time.Sleep(delay)
	d.kill(t)
	live.cut(t)
	t.Logf("killed serve %v into the tail's writeback, with the file system mounted (syncfs: %s)", delay, <-wb)

	d = start(t, dir, run, 1, ext4LUNSize)
	live = attach(t, filepath.Join(mnts, "fuse1"), "nbd://"+d.nbd+"/c0", false)
	replayJournal(t, live.loop)
	fsck(t, live.loop, "the live LUN after the kill")
	mnt = live.mount(t, filepath.Join(mnts, "mnt1"), "")
	checkFiles(t, mnt, before)
	checkFiles(t, mnt, after)
	checkFiles(t, mnt, past)
	checkTail(t, mnt, tail)
	live.unmount(t)
	fsck(t, live.loop, "the live LUN after mounting it")

	c, err := api.NewClient("unix:" + d.api)
	require.NoError(t, err)
	defer c.Close()
	snaps, err := c.Snapshots(context.Background())
	require.NoError(t, err)
	var ids []vss.ID
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	require.ElementsMatch(t, []vss.ID{frozen, crashed}, ids, "both APP_ROLLBACK snapshots survive the kill (D2)")

	snap := attach(t, filepath.Join(mnts, "fuse2"), "nbd://"+d.nbd+"/"+expose(t, d, frozen), true)
	fsck(t, snap.loop, "the frozen snapshot")
	smnt := snap.mount(t, filepath.Join(mnts, "mnt2"), "ro,noload")
	checkFiles(t, smnt, before)
	require.Equal(t, names(before), regularFiles(t, smnt), "the frozen snapshot holds exactly the files synced before it")
	snap.unmount(t)

	img := filepath.Join(t.TempDir(), "crashed.img")
	nbdtest.Run(t, "nbdcopy", "nbd://"+d.nbd+"/"+expose(t, d, crashed), img)
	replayJournal(t, img)
	fsck(t, img, "the crash-consistent snapshot, replayed")
	cp := attach(t, filepath.Join(mnts, "copy"), img, true)
	cmnt := cp.mount(t, filepath.Join(mnts, "mnt3"), "ro")
	checkFiles(t, cmnt, before)
	checkFiles(t, cmnt, after)
	require.Equal(t, names(slices.Concat(before, after)), regularFiles(t, cmnt),
		"the crash-consistent snapshot holds exactly the files synced before it")
	cp.unmount(t)
	t.Logf("%d synced files kept, %d unsynced written, both snapshots intact; %v",
		len(before)+len(after)+len(past), len(tail), time.Since(t0).Round(time.Millisecond))
}

// file is one file the test wrote: its path under the mount and content.
type file struct {
	path string
	data []byte
}

// writeFiles writes n files of random content and size into mnt/group;
// with sync, each is fsynced before it is closed.
func writeFiles(t *testing.T, rng *rand.Rand, mnt, group string, n int, sync bool) []file {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Join(mnt, group), 0o755))
	var files []file
	for i := range n {
		// Sizes from one page to a little over a megabyte, most not
		// whole pages, so the tails of partial pages are checked too.
		data := make([]byte, 1+rng.IntN(1<<20+4096))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		f := file{path: filepath.Join(group, fmt.Sprintf("f%02d", i)), data: data}
		w, err := os.Create(filepath.Join(mnt, f.path))
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
		if sync {
			require.NoError(t, w.Sync())
		}
		require.NoError(t, w.Close())
		files = append(files, f)
	}
	return files
}

func syncfs(t *testing.T, mnt string) {
	t.Helper()
	require.NoError(t, syncfsErr(mnt))
}

func syncfsErr(mnt string) error {
	f, err := os.Open(mnt)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// checkFiles checks that every file is under mnt with its content.
func checkFiles(t *testing.T, mnt string, files []file) {
	t.Helper()
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(mnt, f.path))
		require.NoError(t, err, "%s was synced", f.path)
		require.Equal(t, sha256.Sum256(f.data), sha256.Sum256(got), "%s: %d bytes read, %d written and synced", f.path, len(got), len(f.data))
	}
}

// checkTail checks the files that were never synced: each may be missing
// or shorter than written, and a page of it may read as zeros, but only
// where ext4 has not recorded the page's data as written: a hole, or an
// unwritten extent (allocated before the data went out and converted
// after it completed, in a later transaction). Every other page is the
// one written: ext4 commits an extent as written only after its data
// completed, and its commit's FLUSH covers that data (D1).
func checkTail(t *testing.T, mnt string, files []file) {
	t.Helper()
	var whole, part, missing int
	for _, f := range files {
		path := filepath.Join(mnt, f.path)
		got, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			missing++
			continue
		}
		require.NoError(t, err, "%s is readable", f.path)
		require.LessOrEqual(t, len(got), len(f.data), "%s", f.path)
		written := writtenBlocks(t, path)
		for off := 0; off < len(got); off += 4096 {
			g, w := got[off:min(off+4096, len(got))], f.data[off:min(off+4096, len(got))]
			if bytes.Equal(g, w) {
				continue
			}
			require.False(t, slices.ContainsFunc(g, func(b byte) bool { return b != 0 }),
				"%s: the page at %d holds neither what was written nor zeros", f.path, off)
			require.False(t, written(off/4096),
				"%s: the page at %d reads as zeros, yet ext4 committed its extent as written (D1)", f.path, off)
		}
		if bytes.Equal(got, f.data) {
			whole++
		} else {
			part++
		}
	}
	t.Logf("unsynced files: %d whole, %d partly there, %d missing", whole, part, missing)
}

// writtenBlocks reports, for a file's 4 KiB blocks, whether an extent
// that is allocated and not marked unwritten holds it, as filefrag lists
// them.
func writtenBlocks(t *testing.T, path string) func(block int) bool {
	t.Helper()
	out := nbdtest.Run(t, "filefrag", "-v", "-b4096", path)
	type span struct{ first, last int }
	var spans []span
	parsed, found := 0, -1
	for line := range strings.Lines(out) {
		if _, err := fmt.Sscanf(line[strings.LastIndex(line, ":")+1:], "%d extent", &found); err == nil {
			continue
		}
		// "  1:   3..   4:   40011505..  40011506:   2:   40011510: last,unwritten,eof"
		// (the expected physical block, and its colon, only when the
		// extent is not where the last one ended).
		f := strings.Split(line, ":")
		if len(f) < 5 {
			continue
		}
		var sp span
		if _, err := fmt.Sscanf(strings.TrimSpace(f[1]), "%d..%d", &sp.first, &sp.last); err != nil {
			continue
		}
		parsed++
		if !strings.Contains(line, "unwritten") {
			spans = append(spans, sp)
		}
	}
	require.Equal(t, found, parsed, "extents read from filefrag -v:\n%s", out)
	return func(block int) bool {
		return slices.ContainsFunc(spans, func(sp span) bool { return sp.first <= block && block <= sp.last })
	}
}

func names(files []file) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.path)
	}
	slices.Sort(out)
	return out
}

// regularFiles lists the regular files under mnt, lost+found aside.
func regularFiles(t *testing.T, mnt string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(mnt, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		if e.IsDir() && rel == "lost+found" {
			return filepath.SkipDir
		}
		if e.Type().IsRegular() {
			out = append(out, rel)
		}
		return nil
	}))
	slices.Sort(out)
	return out
}

// createSet takes an APP_ROLLBACK set of c0 with the CLI and returns its
// one snapshot's ID; args are more flags (writers). With the fsfreeze
// writer the snapshot can be mounted with ro,noload as it is: ext4
// checkpoints its journal when frozen, so nothing the snapshot holds is
// only in the journal. Without it the snapshot is crash-consistent, and
// its journal needs replaying.
func createSet(t *testing.T, d *daemon, args ...string) vss.ID {
	t.Helper()
	out := cli(t, d, append(append([]string{"snapshot", "create", "--context", "app-rollback"}, args...), "c0")...)
	var set api.SetReport
	require.NoError(t, json.Unmarshal([]byte(out), &set), out)
	require.Equal(t, "created", set.State, out)
	require.Len(t, set.Snapshots, 1, "one snapshot of c0")
	return set.Snapshots[0].ID
}

// expose exports a snapshot's LUN with the CLI and returns its export name.
func expose(t *testing.T, d *daemon, id vss.ID) string {
	t.Helper()
	out := cli(t, d, "snapshot", "expose", id.String())
	var r api.ExposeResult
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.NotEmpty(t, r.Export, out)
	return r.Export
}

// cli runs a client subcommand against d with --json and returns stdout.
func cli(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append(slices.Clone(args), "--api", "unix:"+d.api, "--json")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "shadowbench %s:\n%s%s", strings.Join(args, " "), out, stderr.Bytes())
	return string(out)
}

// replayJournal replays the journal of the ext4 on dev, as mounting it
// would, and nothing else.
func replayJournal(t *testing.T, dev string) {
	t.Helper()
	out, code := runCode(t, "e2fsck", "-y", "-E", "journal_only", dev)
	// 0: nothing to replay or replayed; 1: e2fsck counts a replay as a
	// correction.
	require.LessOrEqual(t, code, 1, "e2fsck -E journal_only %s:\n%s", dev, out)
	if strings.Contains(out, "recovering journal") {
		t.Logf("%s: journal replayed", dev)
	} else {
		t.Logf("%s: nothing in the journal", dev)
	}
}

// fsck checks the ext4 on dev without changing it; it must be clean.
func fsck(t *testing.T, dev, what string) {
	t.Helper()
	out, code := runCode(t, "fsck.ext4", "-f", "-n", dev)
	require.Zero(t, code, "fsck.ext4 -fn on %s (exit %d):\n%s", what, code, out)
}

// runCode runs a tool and returns its output and exit code; failing to
// run it at all fails the test.
func runCode(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out), 0
}

// stack is an export as the kernel reaches it here, there being no nbd
// module: nbdfuse serves it as the file dir/disk, a loop device stands on
// the file, and a file system may be mounted from the loop device. It is
// taken down when the test ends, whatever state it is in.
type stack struct {
	dir    string     // nbdfuse's mount point
	fuse   *exec.Cmd  // nil when the loop device stands on a local file
	exited chan error // nbdfuse's exit, once
	loop   string     // the loop device
	mnt    string     // where the file system is mounted; "" when it is not
	down   bool
}

// attach starts nbdfuse on uri and a loop device on its file (both
// read-only with ro). A uri that is not an NBD URI is a local file, which
// the loop device stands on directly.
func attach(t *testing.T, dir, uri string, ro bool) *stack {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	s := &stack{dir: dir, exited: make(chan error, 1)}
	if !strings.HasPrefix(uri, "nbd") {
		t.Cleanup(func() { s.takeDown(t) })
		s.loop = s.losetup(t, uri, ro)
		return s
	}
	pidfile := dir + ".pid"
	args := []string{"-P", pidfile}
	if ro {
		args = append(args, "-r")
	}
	s.fuse = exec.Command("nbdfuse", append(args, filepath.Join(dir, "disk"), uri)...)
	// nbdfuse's output goes to a file rather than a buffer, so that no
	// goroutine of this process copies it while it runs.
	logf, err := os.Create(dir + ".log")
	require.NoError(t, err)
	defer logf.Close()
	s.fuse.Stdout, s.fuse.Stderr = logf, logf
	require.NoError(t, s.fuse.Start())
	go func() { s.exited <- s.fuse.Wait() }()
	t.Cleanup(func() { s.takeDown(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidfile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			break
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("nbdfuse exited: %v\n%s", err, log)
		default:
		}
		require.True(t, time.Now().Before(deadline), "nbdfuse did not start")
		time.Sleep(20 * time.Millisecond)
	}
	s.loop = s.losetup(t, filepath.Join(dir, "disk"), ro)
	return s
}

// losetup attaches a free loop device to file and returns its path.
func (s *stack) losetup(t *testing.T, file string, ro bool) string {
	t.Helper()
	args := []string{"--find", "--show"}
	if ro {
		args = append(args, "--read-only")
	}
	return strings.TrimSpace(nbdtest.Run(t, "losetup", append(args, file)...))
}

// mount mounts the ext4 on the loop device at dir with opts ("" for the
// defaults).
func (s *stack) mount(t *testing.T, dir, opts string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	args := []string{"-t", "ext4"}
	if opts != "" {
		args = append(args, "-o", opts)
	}
	nbdtest.Run(t, "mount", append(args, s.loop, dir)...)
	s.mnt = dir
	return dir
}

// unmount unmounts the file system cleanly, which writes it back.
func (s *stack) unmount(t *testing.T) {
	t.Helper()
	nbdtest.Run(t, "umount", s.mnt)
	s.mnt = ""
}

// cut takes the stack down after the server went away: nbdfuse is killed
// first, so that nothing the kernel still holds (the unsynced tail, the
// superblock written at unmount) can reach a server started later, and
// every request fails at once rather than waiting; then the file system
// is unmounted (lazily if it must be), the loop device detached and the
// FUSE mount removed.
func (s *stack) cut(t *testing.T) {
	t.Helper()
	_ = s.fuse.Process.Kill()
	s.takeDown(t)
	require.NoError(t, s.fuseErr(), "nbdfuse ended")
}

// fuseErr waits for nbdfuse to end and returns nil whatever its status:
// only a wait that does not end is an error.
func (s *stack) fuseErr() error {
	select {
	case err := <-s.exited:
		s.exited <- err
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("nbdfuse still runs 10 s after it was told to stop")
	}
}

// takeDown takes down what is left of the stack, top first, and gives up on
// nothing: a step that fails is retried in its lazy or forceful form.
func (s *stack) takeDown(t *testing.T) {
	if s.down {
		return
	}
	s.down = true
	if s.mnt != "" {
		if err := exec.Command("umount", s.mnt).Run(); err != nil {
			if out, err := exec.Command("umount", "-l", s.mnt).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v\n%s", s.mnt, err, out)
			}
		}
		s.mnt = ""
	}
	if s.loop != "" {
		// A loop device still open (a lazy unmount not yet finished) is
		// detached when it is closed.
		if out, err := exec.Command("losetup", "-d", s.loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", s.loop, err, out)
		}
	}
	if s.fuse == nil {
		return
	}
	if err := exec.Command("fusermount3", "-u", s.dir).Run(); err != nil {
		_ = exec.Command("fusermount3", "-u", "-z", s.dir).Run()
	}
	if s.fuseErr() != nil {
		_ = s.fuse.Process.Kill()
		_ = exec.Command("fusermount3", "-u", "-z", s.dir).Run()
		<-s.exited
	}
}
