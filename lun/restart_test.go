package lun

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/lun/durable"
)

// The restart measurement (issue 17, items 4 and 7) writes tens of GiB, so
// it runs only when asked: make bench-restart, or
//
//	go test -count=1 -timeout 2h -run TestRestartTime -v ./lun -restart.gib 64
var (
	restartGiB   = flag.Int("restart.gib", 0, "GiB written into one LUN by TestRestartTime (0: skip the test)")
	restartSnaps = flag.Int("restart.snapshots", 100, "snapshots TestRestartTime takes while it writes")
	restartOver  = flag.Int("restart.overwrites", 4096, "random 4 KiB overwrites before each snapshot")
	restartOpens = flag.Int("restart.opens", 3, "opens TestRestartTime times, each in a new process, warm and cold")
	restartProf  = flag.String("restart.cpuprofile", "", "write CPU profiles of the first warm and the first cold Open to this file with .warm and .cold appended")
	restartDir   = flag.String("restart.dir", "", "directory for the data (default: the test's temporary directory); removed at the end")
	restartKeep  = flag.Bool("restart.keep", false, "keep the array after the test, and open the one -restart.dir holds already instead of writing a new one")
	restartHeap  = flag.String("restart.heapprofile", "", "write a heap profile after the first warm Open to this file")
)

// restartChild, in the environment of a child process, is the data
// directory it opens; restartChildProf the file of its CPU profile.
const (
	restartChild     = "SHADOWBENCH_RESTART_OPEN"
	restartChildProf = "SHADOWBENCH_RESTART_PROF"
	restartChildHeap = "SHADOWBENCH_RESTART_HEAP"
)

// TestRestartTime builds a durable array of one LUN with -restart.gib GiB
// written at the default grain and -restart.snapshots snapshots taken
// along the way, then measures lun.Open of it in new processes, as a
// restart of serve does: the wall time of Open and the RSS after it (and
// the peak). The targets for 64 GiB and 100 snapshots: Open under
// 5 s (item 7) and under 2 GiB of RSS (item 4).
//
// The data goes in 1 MiB writes, in as many slices as there are
// snapshots; before each snapshot, -restart.overwrites random 4 KiB
// overwrites over what is written so far make every tree of the chain
// hold entries of its own, as a LUN written between periodic snapshots
// does. A flush follows every GiB, as a client's would. "warm" opens find
// meta.db in the page cache, as a restart of the daemon does; "cold" opens
// follow a POSIX_FADV_DONTNEED of meta.db, as the first start after a
// reboot does (the data file is not read at Open). The directory is
// removed at the end, also when the test fails.
func TestRestartTime(t *testing.T) {
	if dir := os.Getenv(restartChild); dir != "" {
		restartOpenChild(t, dir)
		return
	}
	if *restartGiB <= 0 {
		t.Skip("-restart.gib not set: TestRestartTime writes tens of GiB (make bench-restart)")
	}
	size := int64(*restartGiB) << 30
	dir := *restartDir
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "restart")
	kept := false
	if *restartKeep {
		_, err := os.Stat(filepath.Join(dir, durable.MetaFile))
		kept = err == nil
	} else {
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	require.NoError(t, os.MkdirAll(dir, 0o700))

	// The data, the blocks the overwrites copy, meta.db (about 40 bytes a
	// map entry) and a margin for the rest of the machine.
	grains := size / 4096
	over := int64(*restartSnaps) * int64(*restartOver) * 4096
	need := size + over + grains*40 + 2<<30
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &st))
	free := int64(st.Bavail) * st.Bsize
	t.Logf("%s: %.1f GiB free, %.1f GiB needed", dir, gib(free), gib(need))
	if free < need && !kept {
		t.Fatalf("%s has %.1f GiB free; -restart.gib %d needs about %.1f GiB", dir, gib(free), *restartGiB, gib(need))
	}

	if kept {
		t.Logf("opening the array %s holds", dir)
	} else {
		start := time.Now()
		restartFill(t, dir, size)
		t.Logf("written: %.1f GiB and %d snapshots in %v; the writer's peak RSS %.0f MiB (target < 2048 MiB)",
			gib(size), *restartSnaps, time.Since(start).Round(time.Second), procStatus(t, "VmHWM"))
	}
	du := func(name string) float64 {
		var s unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(dir, name), &s))
		return gib(s.Blocks * 512)
	}
	t.Logf("on disk: %s %.2f GiB, %s %.2f GiB", durable.DataFile, du(durable.DataFile), durable.MetaFile, du(durable.MetaFile))

	for _, cold := range []bool{false, true} {
		var opens, rss, hwm []float64
		for i := range *restartOpens {
			if cold {
				dropCache(t, filepath.Join(dir, durable.MetaFile))
			}
			prof := ""
			if i == 0 && *restartProf != "" {
				prof = *restartProf + map[bool]string{false: ".warm", true: ".cold"}[cold]
			}
			heap := ""
			if i == 0 && !cold {
				heap = *restartHeap
			}
			r := restartOpen(t, dir, prof, heap)
			t.Logf("open %d (cold=%t): %v", i+1, cold, r)
			opens = append(opens, r["open-s"])
			rss = append(rss, r["rss-mib"])
			hwm = append(hwm, r["hwm-mib"])
		}
		t.Logf("cold=%t: median of %d opens: Open %.2f s (target < 5 s), RSS %.0f MiB, peak RSS %.0f MiB (target < 2048 MiB)",
			cold, len(opens), median(opens), median(rss), median(hwm))
	}
}

// restartFill writes the array of TestRestartTime into dir.
func restartFill(t *testing.T, dir string, size int64) {
	ctx := context.Background()
	a, err := Open(dir, Config{Capacity: size + size/4})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	l, err := a.Create("lun0", Options{Size: size})
	require.NoError(t, err)

	r := rand.New(rand.NewPCG(17, 7))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	snaps := int64(*restartSnaps)
	slice := size / max(snaps, 1) / int64(len(buf)) * int64(len(buf))
	var off int64
	flushed := int64(0)
	for s := int64(0); s < max(snaps, 1); s++ {
		end := off + slice
		if s == max(snaps, 1)-1 {
			end = size
		}
		for ; off < end; off += int64(len(buf)) {
			buf[0], buf[4096] = byte(off>>20), byte(off>>28)
			require.NoError(t, l.WriteAt(ctx, buf, off, false))
			if off+int64(len(buf))-flushed >= 1<<30 {
				require.NoError(t, a.Flush())
				flushed = off + int64(len(buf))
			}
		}
		if snaps == 0 {
			break
		}
		for range *restartOver {
			require.NoError(t, l.WriteAt(ctx, buf[:4096], r.Int64N(off/4096)*4096, false))
		}
		_, err := a.Snapshot("lun0", fmt.Sprintf("lun0-s%03d", s))
		require.NoError(t, err)
		if s%10 == 9 {
			t.Logf("%d snapshots, %.1f GiB written", s+1, gib(off))
		}
	}
	require.NoError(t, a.Flush())
	st := a.StoreStats()
	t.Logf("store: %.2f GiB of data, %.0f MiB of metadata in memory", gib(st.DataBytes), float64(st.MetaBytes)/(1<<20))
}

// restartOpen runs the test binary again to open dir and returns what it
// measured.
func restartOpen(t *testing.T, dir, prof, heap string) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRestartTime$", "-test.count", "1", "-test.v")
	cmd.Env = append(os.Environ(), restartChild+"="+dir, restartChildProf+"="+prof, restartChildHeap+"="+heap)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	res := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "restart-result ")
		if i < 0 {
			continue
		}
		for _, kv := range strings.Fields(line[i+len("restart-result "):]) {
			k, v, _ := strings.Cut(kv, "=")
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, "%s", line)
			res[k] = f
		}
	}
	require.NotEmpty(t, res, "the child printed no result:\n%s", out)
	return res
}

// restartOpenChild is the child: it opens dir, measures, and closes it
// without a flush, so that the next open finds the same records.
func restartOpenChild(t *testing.T, dir string) {
	if p := os.Getenv(restartChildProf); p != "" {
		f, err := os.Create(p)
		require.NoError(t, err)
		require.NoError(t, pprof.StartCPUProfile(f))
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	start := time.Now()
	a, err := Open(dir, Config{Capacity: 1 << 40})
	elapsed := time.Since(start)
	require.NoError(t, err)
	rss, hwm := procStatus(t, "VmRSS"), procStatus(t, "VmHWM")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("restart-result open-s=%.3f rss-mib=%.0f hwm-mib=%.0f heap-mib=%.0f luns=%d\n",
		elapsed.Seconds(), rss, hwm, float64(ms.HeapInuse)/(1<<20), len(a.List()))
	if p := os.Getenv(restartChildHeap); p != "" {
		runtime.GC()
		f, err := os.Create(p)
		require.NoError(t, err)
		require.NoError(t, pprof.Lookup("heap").WriteTo(f, 0))
		require.NoError(t, f.Close())
	}
	require.NoError(t, a.db.Close())
}

// procStatus returns a field of /proc/self/status in MiB.
func procStatus(t *testing.T, field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			require.NoError(t, err)
			return kb / 1024
		}
	}
	t.Fatalf("/proc/self/status has no %s", field)
	return 0
}

// dropCache takes a file's pages out of the page cache.
func dropCache(t *testing.T, path string) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }
