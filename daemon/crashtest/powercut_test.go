//go:build linux

package crashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	api "github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd/nbdtest"
)

// TestExt4PowerCut is the emulated array losing power under the kernel's
// ext4 (through nbdfuse and a loop device), on an in-memory LUN with a
// write cache. The file system is made, files are written and fsynced,
// more are written and not, and the host goes (nbdfuse killed, the mount
// dropped) once the array's power is cut keeping none of the writes it
// may lose. With a write-back cache every fsynced file is intact and,
// once the journal is replayed, fsck finds nothing: ext4's FLUSH and FUA
// were honoured. With the ignore-flush defect the same cut loses the fsynced
// files or the file system itself, and the test asserts that it does.
func TestExt4PowerCut(t *testing.T) {
	seed := needExt4(t)
	for _, mode := range []string{"write-back", "ignore-flush"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			run, mnts := t.TempDir(), t.TempDir()
			d := startWith(t, run, 0, "--lun", fmt.Sprintf("name=c0,size=%d,cache=%s", ext4LUNSize, mode))
			live := attach(t, filepath.Join(mnts, "fuse0"), "nbd://"+d.nbd+"/c0", false)
			nbdtest.Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", live.loop)
			mnt := live.mount(t, filepath.Join(mnts, "mnt0"), "")
			synced := writeFiles(t, rng, mnt, "synced", 6, true /* sync */)
			syncfs(t, mnt)
			tail := writeFiles(t, rng, mnt, "tail", 4, false /* sync */)
			// The tail's data goes to the LUN with no FLUSH after it
			// (sync_file_range issues none), so the cache holds writes
			// the cut may lose.
			// It is written back twice: from ext4 to the loop device,
			// whose writes land in the page cache of nbdfuse's file, then
			// from there to nbdfuse, which sends them as NBD writes.
			for _, f := range tail {
				writeBack(t, filepath.Join(mnt, f.path))
			}
			writeBack(t, filepath.Join(live.dir, "disk"))

			// The array loses power under a live host: the daemon drops
			// nbdfuse's connection (no flush at the disconnect, as there
			// is none on a power loss), then the host goes too.
			var res api.PowerCutResult
			require.NoError(t, json.Unmarshal([]byte(cli(t, d, "lun", "powercut", "c0", "--keep", "none", "--seed", fmt.Sprint(seed))), &res))
			t.Logf("%s: %s", mode, res.Summary)
			require.Positive(t, res.Dropped, "nbdfuse's connections dropped")
			live.cut(t)

			live = attach(t, filepath.Join(mnts, "fuse1"), "nbd://"+d.nbd+"/c0", false)
			if mode == "write-back" {
				require.Positive(t, res.Pending-res.Kept, "the cut lost the tail's unflushed writes")
				replayJournal(t, live.loop)
				fsck(t, live.loop, "the LUN after the power cut")
				mnt = live.mount(t, filepath.Join(mnts, "mnt1"), "")
				checkFiles(t, mnt, synced)
				checkTail(t, mnt, tail)
				live.unmount(t)
				fsck(t, live.loop, "the LUN after mounting it")
				return
			}
			// ignore-flush: FLUSH persisted nothing, so the fsynced files
			// cannot all have survived.
			require.Positive(t, res.Pending, "the writes since the LUN was made were all still in the cache")
			lost := "the file system"
			if out, code := runCode(t, "e2fsck", "-y", "-E", "journal_only", live.loop); code <= 1 {
				mnt = filepath.Join(mnts, "mnt1")
				require.NoError(t, os.MkdirAll(mnt, 0o755))
				if _, code := runCode(t, "mount", "-o", "ro", live.loop, mnt); code == 0 {
					live.mnt = mnt
					lost = ""
					for _, f := range synced {
						if b, err := os.ReadFile(filepath.Join(mnt, f.path)); err != nil || string(b) != string(f.data) {
							lost = "fsynced file " + f.path
							break
						}
					}
				}
			} else {
				t.Logf("e2fsck -E journal_only: %s", out)
			}
			require.NotEmpty(t, lost, "ignore-flush lost nothing that was fsynced")
			t.Logf("ignore-flush lost %s, as it must", lost)
		})
	}
}

// writeBack writes a file's dirty pages back without a FLUSH after them
// (sync_file_range asks for none).
func writeBack(t *testing.T, path string) {
	t.Helper()
	w, err := os.Open(path)
	require.NoError(t, err)
	defer w.Close()
	require.NoError(t, unix.SyncFileRange(int(w.Fd()), 0, 0,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER))
}

var crashTestPoints = flag.Int("crash.points", 0, "crash points TestCrashTestExt4 checks per cache mode, drawn with the seed (0: all)")

// needExt4 checks what a test of ext4 on a LUN needs, and returns its
// seed (-crash.seed, or the clock's), printed for a replay.
func needExt4(t *testing.T) uint64 {
	t.Helper()
	nbdtest.NeedMounts(t)
	nbdtest.NeedTool(t, "losetup", "mount")
	nbdtest.NeedTool(t, "fsck.ext4", "e2fsprogs")
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./daemon/crashtest -run %s -crash.seed %d)", seed, t.Name(), seed)
	return seed
}

// crashWorkload mounts the ext4 on $uri (through nbdfuse and a loop
// device), creates, writes, fsyncs and renames files, and unmounts.
const crashWorkload = `set -e
d=$(mktemp -d)
trap 'set +e; umount $d/mnt 2>/dev/null; [ -n "$loop" ] && losetup -d $loop; fusermount3 -u $d/fuse 2>/dev/null; rm -rf $d' EXIT
mkdir $d/fuse $d/mnt
nbdfuse -P $d/pid $d/fuse/disk "$uri" &
while [ ! -s $d/pid ]; do sleep 0.02; done
loop=$(losetup --find --show $d/fuse/disk)
mount -t ext4 $loop $d/mnt
mkdir $d/mnt/dir
for i in $(seq 40); do
  head -c $((i * 3000)) /dev/urandom > $d/mnt/dir/new$i
  sync $d/mnt/dir/new$i
  mv $d/mnt/dir/new$i $d/mnt/dir/file$i
  [ $((i % 4)) -eq 0 ] && sync -f $d/mnt
done
umount $d/mnt
`

// crashCheck replays the journal of the ext4 on $uri, as a mount would,
// and runs fsck.ext4 -fn on it.
const crashCheck = `set -e
d=$(mktemp -d)
trap 'set +e; [ -n "$loop" ] && losetup -d $loop; fusermount3 -u $d/fuse 2>/dev/null; rm -rf $d' EXIT
mkdir $d/fuse
nbdfuse -P $d/pid $d/fuse/disk "$uri" &
while [ ! -s $d/pid ]; do sleep 0.02; done
loop=$(losetup --find --show $d/fuse/disk)
e2fsck -y -E journal_only $loop || [ $? -le 1 ]
fsck.ext4 -f -n $loop
`

// TestCrashTestExt4 runs shadowbench crash-test over an ext4 workload
// (mounting, files created, written, fsynced, renamed, unmounting): with
// a write-back cache every crash point it checks holds a file system fsck
// finds clean once its journal is replayed; with the ignore-flush defect
// some do not.
func TestCrashTestExt4(t *testing.T) {
	seed := needExt4(t)
	for _, mode := range []string{"write-back", "ignore-flush"} {
		t.Run(mode, func(t *testing.T) {
			run := t.TempDir()
			d := startWith(t, run, 0, "--lun", fmt.Sprintf("name=c0,size=%d,cache=%s,crash-points=5000", ext4LUNSize, mode))
			// mkfs comes first, outside the workload: a file system cut
			// half-made is no file system, and no crash point of it.
			fs := attach(t, filepath.Join(t.TempDir(), "fuse"), "nbd://"+d.nbd+"/c0", false)
			nbdtest.Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", fs.loop)
			fs.takeDown(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binPath, "crash-test", "--api", "unix:"+d.api, "--json", "--lun", "c0",
				"--workload", crashWorkload, "--check", crashCheck, "--sample", fmt.Sprint(*crashTestPoints), "--seed", fmt.Sprint(seed))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.WaitDelay = 10 * time.Second // a helper the scripts left behind holds no pipe for ever
			out, err := cmd.Output()
			var res api.CrashTestResult
			require.NoError(t, json.Unmarshal(out, &res), "%s\n%s", out, stderr.Bytes())
			t.Logf("%s: %d crash points, %d checked: %d passed, %d failed, in %v",
				mode, res.Points, res.Checked, res.Passed, res.Failed, time.Duration(res.Elapsed).Round(time.Millisecond))
			require.GreaterOrEqual(t, res.Points, 100, "the workload makes at least 100 crash points")
			want := res.Points
			if n := *crashTestPoints; n > 0 {
				want = min(n, res.Points)
			}
			require.Equal(t, want, res.Checked)
			if mode == "write-back" {
				for _, c := range res.Checks {
					require.True(t, c.Passed, "point %d (%s): exit %d\n%s", c.Point.ID, c.Point.Kind, c.Exit, c.Output)
				}
				require.NoError(t, err, "%s", stderr.Bytes())
				return
			}
			require.Positive(t, res.Failed, "ignore-flush: some crash point holds a broken file system")
			require.Error(t, err, "crash-test exits 1 when a check failed")
		})
	}
}
