package nbd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd/nbdtest"
	"github.com/stretchr/testify/require"
)

// Real-client tests: the server runs in-process on an ephemeral port or a
// unix socket, over a lun.Array, and the Debian tools talk to it. Without a
// tool they skip, naming the package; with CI=true they fail instead.

// realTarget is one way to reach the server: a URI per export.
type realTarget struct {
	name string
	uri  func(export string) string
}

// serveArray serves a on TCP and on a unix socket and returns both targets.
func serveArray(t *testing.T, a *lun.Array) []realTarget {
	t.Helper()
	tcp := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	unix := serveOn(t, "unix", ArrayCatalog(a), Options{})
	return []realTarget{
		{"tcp", func(e string) string { return "nbd://" + tcp.addr + "/" + e }},
		{"unix", func(e string) string { return "nbd+unix:///" + e + "?socket=" + unix.addr }},
	}
}

func getLUN(t *testing.T, a *lun.Array, name string) *lun.LUN {
	t.Helper()
	l, err := a.Get(name)
	require.NoError(t, err)
	return l
}

// testImage is a 4 MiB image with data, a hole and more data.
func testImage() []byte {
	img := make([]byte, 4<<20)
	copy(img, pattern(1<<20, 11))
	copy(img[3<<20:], pattern(512<<10, 12))
	img[2<<20+123] = 7 // a lone byte in the middle of zeros
	return img
}

func TestRealNbdinfo(t *testing.T) {
	nbdtest.NeedTool(t, "nbdinfo", "libnbd-bin")
	a := newArray(t, 4<<20, "lun0", "lun1")
	ctx := tctx(t)
	l0 := getLUN(t, a, "lun0")
	require.NoError(t, l0.WriteAt(ctx, pattern(65536, 1), 0, false))
	require.NoError(t, l0.WriteAt(ctx, pattern(4096, 2), 1<<20, false))
	require.NoError(t, l0.WriteZeroes(ctx, 2<<20, 8192, true /* noHole */))
	snapshot(t, a, "lun0", "snap")

	for _, tg := range serveArray(t, a) {
		t.Run(tg.name, func(t *testing.T) {
			var list struct {
				Exports []struct {
					Name         string   `json:"export-name"`
					Description  string   `json:"description"`
					Contexts     []string `json:"contexts"`
					ReadOnly     bool     `json:"is_read_only"`
					CanTrim      bool     `json:"can_trim"`
					CanZero      bool     `json:"can_zero"`
					CanFastZero  bool     `json:"can_fast_zero"`
					CanFUA       bool     `json:"can_fua"`
					CanFlush     bool     `json:"can_flush"`
					CanCache     bool     `json:"can_cache"`
					CanDF        bool     `json:"can_df"`
					CanMultiConn bool     `json:"can_multi_conn"`
					BlockMin     int      `json:"block_size_minimum"`
					BlockPref    int      `json:"block_size_preferred"`
					BlockMax     int      `json:"block_size_maximum"`
					Size         int64    `json:"export-size"`
				} `json:"exports"`
			}
			out := nbdtest.Run(t, "nbdinfo", "--json", "--list", tg.uri(""))
			require.NoError(t, json.Unmarshal([]byte(out), &list), out)
			require.Len(t, list.Exports, 3)
			for i, name := range []string{"lun0", "lun1", "snap"} {
				e := list.Exports[i]
				require.Equal(t, name, e.Name)
				require.Equal(t, getLUN(t, a, name).Description(), e.Description)
				require.Equal(t, []string{MetaBaseAllocation, MetaChanged}, e.Contexts)
				require.Equal(t, int64(4<<20), e.Size)
				rw := name != "snap"
				require.Equal(t, !rw, e.ReadOnly, name)
				require.Equal(t, [4]bool{rw, rw, rw, rw}, [4]bool{e.CanTrim, e.CanZero, e.CanFastZero, e.CanFUA}, name)
				require.True(t, e.CanFlush && e.CanCache && e.CanDF && e.CanMultiConn, name)
				require.Equal(t, [3]int{1, 4096, DefaultMaxPayload}, [3]int{e.BlockMin, e.BlockPref, e.BlockMax})
			}

			// --map shows exactly the LUN's extents.
			ext, err := l0.Extents(ctx, 0, l0.Size())
			require.NoError(t, err)
			var want []string
			for _, e := range ext {
				want = append(want, fmt.Sprintf("%d %d %d", e.Off, e.Len, allocFlags(e.Kind)))
			}
			require.Equal(t, want, mapLines(t, nbdtest.Run(t, "nbdinfo", "--map", tg.uri("lun0"))))
			require.Contains(t, nbdtest.Run(t, "nbdinfo", "--map", tg.uri("lun0")), "hole,zero")
			require.Equal(t, []string{
				"0 65536 0", "65536 983040 3", "1048576 4096 0", "1052672 1044480 3",
				"2097152 8192 2", "2105344 2088960 3",
			}, want, "written data, holes and allocated zeros")

			// The change context: the snapshot has no earlier snapshot to
			// compare with, so it is changed throughout; lun0 has not
			// changed since the snapshot.
			require.Equal(t, []string{"0 4194304 1"}, mapLines(t, nbdtest.Run(t, "nbdinfo", "--map="+MetaChanged, tg.uri("snap"))))
			require.Equal(t, []string{"0 4194304 0"}, mapLines(t, nbdtest.Run(t, "nbdinfo", "--map="+MetaChanged, tg.uri("lun0"))))
		})
	}
}

// mapLines parses nbdinfo --map output into "offset length flags" lines.
func mapLines(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		require.GreaterOrEqual(t, len(f), 3, "map line %q", sc.Text())
		lines = append(lines, strings.Join(f[:3], " "))
	}
	return lines
}

func TestRealQemuImg(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-img", "qemu-utils")
	a := newArray(t, 4<<20, "lun0", "lun1")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	img := testImage()
	require.NoError(t, os.WriteFile(src, img, 0o644))

	for i, tg := range serveArray(t, a) {
		t.Run(tg.name, func(t *testing.T) {
			export := []string{"lun0", "lun1"}[i]
			uri := tg.uri(export)
			var info struct {
				VirtualSize int64 `json:"virtual-size"`
			}
			require.NoError(t, json.Unmarshal([]byte(nbdtest.Run(t, "qemu-img", "info", "--output=json", "-f", "raw", uri)), &info))
			require.Equal(t, int64(4<<20), info.VirtualSize)

			nbdtest.Run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
			got := make([]byte, len(img))
			require.NoError(t, getLUN(t, a, export).ReadAt(tctx(t), got, 0))
			require.Equal(t, img, got, "convert in landed in the LUN")
			require.Contains(t, nbdtest.Run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri), "identical")

			out := filepath.Join(dir, export+".out")
			nbdtest.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out)
			back, err := os.ReadFile(out)
			require.NoError(t, err)
			require.Equal(t, img, back, "convert out")

			// A difference is found.
			require.NoError(t, getLUN(t, a, export).WriteAt(tctx(t), []byte{0xff}, 3<<20+5, false))
			cmd := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri)
			outp, err := cmd.CombinedOutput()
			require.Error(t, err, "%s", outp)
			require.Contains(t, string(outp), "mismatch at offset 3145728")
		})
	}
}

func TestRealQemuIO(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-io", "qemu-utils")
	a := newArray(t, 4<<20, "lun0")
	l0 := getLUN(t, a, "lun0")
	ctx := tctx(t)
	require.NoError(t, l0.WriteAt(ctx, pattern(4<<20, 3), 0, false))
	snapshot(t, a, "lun0", "snap")
	for _, tg := range serveArray(t, a) {
		t.Run(tg.name, func(t *testing.T) {
			out := nbdtest.Run(t, "qemu-io", "-f", "raw",
				"-c", "write -P 0xab 1000 5000",
				"-c", "read -P 0xab 1000 5000",
				"-c", "write -P 0xcd 70001 3333",
				"-c", "read -P 0xcd 70001 3333",
				"-c", "discard 1048576 65536",
				"-c", "read -P 0 1048576 65536",
				"-c", "write -z 200000 30000",
				"-c", "read -P 0 200000 30000",
				"-c", "write -z -u 2097152 131072",
				"-c", "read -P 0 2097152 131072",
				"-c", "flush",
				tg.uri("lun0"))
			require.NotContains(t, out, "failed", out)
			require.NotContains(t, out, "error", out)

			got := make([]byte, 5002)
			require.NoError(t, l0.ReadAt(ctx, got, 999))
			require.Equal(t, pattern(4<<20, 3)[999], got[0], "the byte before is untouched")
			require.Equal(t, bytes.Repeat([]byte{0xab}, 5000), got[1:5001])
			ext, err := l0.Extents(ctx, 2097152, 131072)
			require.NoError(t, err)
			require.Equal(t, []cow.Extent{{Off: 2097152, Len: 131072, Kind: cow.Hole}}, ext, "write -z -u punched a hole")

			// The snapshot is read-only and still holds the old data.
			out = nbdtest.Run(t, "qemu-io", "-r", "-f", "raw", "-c", "read -v 1000 16", tg.uri("snap"))
			require.NotContains(t, out, "failed", out)
			cmd := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 1 0 512", tg.uri("snap"))
			outp, _ := cmd.CombinedOutput()
			require.True(t, cmd.ProcessState.ExitCode() != 0 || strings.Contains(string(outp), "failed") ||
				strings.Contains(string(outp), "read-only") || strings.Contains(string(outp), "ermission"),
				"a write to the snapshot fails: %s", outp)
		})
	}
}

func TestRealNbdcopy(t *testing.T) {
	nbdtest.NeedTool(t, "nbdcopy", "libnbd-bin")
	a := newArray(t, 4<<20, "lun0", "lun1")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	img := testImage()
	require.NoError(t, os.WriteFile(src, img, 0o644))
	for _, tg := range serveArray(t, a) {
		t.Run(tg.name, func(t *testing.T) {
			nbdtest.Run(t, "nbdcopy", src, tg.uri("lun0"))
			got := make([]byte, len(img))
			require.NoError(t, getLUN(t, a, "lun0").ReadAt(tctx(t), got, 0))
			require.Equal(t, img, got, "copy in")

			out := filepath.Join(dir, tg.name+".out")
			nbdtest.Run(t, "nbdcopy", tg.uri("lun0"), out)
			back, err := os.ReadFile(out)
			require.NoError(t, err)
			require.Equal(t, img, back, "copy out")

			// Export to export, over several connections, then compare.
			nbdtest.Run(t, "nbdcopy", "--connections=2", tg.uri("lun0"), tg.uri("lun1"))
			clear(got)
			require.NoError(t, getLUN(t, a, "lun1").ReadAt(tctx(t), got, 0))
			require.Equal(t, img, got, "copy between exports")
			ext, err := getLUN(t, a, "lun1").Extents(tctx(t), 1<<20, 1<<20)
			require.NoError(t, err)
			require.NotEqual(t, cow.Data, ext[0].Kind, "nbdcopy keeps zeros sparse")
		})
	}
}

func TestRealFio(t *testing.T) {
	nbdtest.NeedTool(t, "fio", "fio")
	if err := exec.Command("fio", "--enghelp=nbd").Run(); err != nil {
		msg := "fio lacks the nbd engine (Debian's fio package has it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	a := newArray(t, 8<<20, "lun0")
	tgs := serveArray(t, a)
	out := nbdtest.Run(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+tgs[0].uri("lun0"),
		"--rw=randwrite", "--bsrange=512-64k", "--size=4m", "--iodepth=16",
		"--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0")
	require.Contains(t, out, "err= 0", out)
	require.NotContains(t, out, "verify: bad", out)
	out = nbdtest.Run(t, "fio", "--name=verify-unix", "--ioengine=nbd", "--uri="+tgs[1].uri("lun0"),
		"--rw=write", "--bs=128k", "--offset=4m", "--size=4m", "--iodepth=4",
		"--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0")
	require.Contains(t, out, "err= 0", out)
}

// TestRealNbdfuseExt4Snapshot makes an ext4 file system on a LUN through
// nbdfuse and a loop device, snapshots the LUN, changes the live file
// system, and mounts the snapshot LUN read-only to find the old contents.
func TestRealNbdfuseExt4Snapshot(t *testing.T) {
	nbdtest.NeedMounts(t)
	a := newArray(t, 32<<20, "lun0")
	tgs := serveArray(t, a)
	dir := t.TempDir()

	live := nbdtest.FuseMount(t, filepath.Join(dir, "live"), tgs[0].uri("lun0"), false)
	nbdtest.Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", live)
	mnt := nbdtest.LoopMount(t, filepath.Join(dir, "mnt"), live, false)
	data := pattern(1<<20, 42)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "data.bin"), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("before the snapshot\n"), 0o644))
	nbdtest.Unmount(t, mnt)

	snapshot(t, a, "lun0", "snap1")

	mnt = nbdtest.LoopMount(t, filepath.Join(dir, "mnt"), live, false)
	require.NoError(t, os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("after the snapshot\n"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(mnt, "data.bin")))
	nbdtest.Unmount(t, mnt)

	snap := nbdtest.FuseMount(t, filepath.Join(dir, "snap"), tgs[1].uri("snap1"), true)
	smnt := nbdtest.LoopMount(t, filepath.Join(dir, "smnt"), snap, true)
	got, err := os.ReadFile(filepath.Join(smnt, "hello.txt"))
	require.NoError(t, err)
	require.Equal(t, "before the snapshot\n", string(got))
	got, err = os.ReadFile(filepath.Join(smnt, "data.bin"))
	require.NoError(t, err)
	require.Equal(t, data, got)
	nbdtest.Unmount(t, smnt)

	mnt = nbdtest.LoopMount(t, filepath.Join(dir, "mnt"), live, true)
	got, err = os.ReadFile(filepath.Join(mnt, "hello.txt"))
	require.NoError(t, err)
	require.Equal(t, "after the snapshot\n", string(got))
	nbdtest.Unmount(t, mnt)
}
