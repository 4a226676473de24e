package nbd

import (
	"context"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd/nbdtest"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// readOps returns the LUN's count of reads and of bytes read.
func readOps(l *lun.LUN) (ops, bytes uint64) {
	for _, s := range l.Stats() {
		if s.Op == lun.OpRead {
			return uint64(s.Ops), uint64(s.Bytes)
		}
	}
	return 0, 0
}

// faultReads are the READs every read fault must reach, on a LUN with data
// in its first 64 KiB and nothing written after: all data, data and holes,
// holes only (answered with a hole chunk alone), and empty.
var faultReads = []struct {
	name     string
	off      uint64
	length   uint32
	wantData bool
}{
	{"data", 0, 64 << 10, true},
	{"data and holes", 32 << 10, 128 << 10, true},
	{"holes only", 1 << 20, 256 << 10, false},
	{"empty", 1 << 20, 0, false},
}

// TestReadFaultsReachHoles checks that a read fault (an error, a delay)
// applies to every structured READ once, holes included: a range never
// written is answered from the extents alone, without a copy, and before
// it met no fault at all.
func TestReadFaultsReachHoles(t *testing.T) {
	a := newArray(t, testSize, "lun0")
	l := getLUN(t, a, "lun0")
	require.NoError(t, l.WriteAt(tctx(t), pattern(64<<10, 3), 0, false))
	ts := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	r := rawDial(t, ts)
	r.goExport("lun0", true)

	l.SetFaults(lun.Only(lun.Fail(lun.EIO), lun.OpRead))
	for i, rd := range faultReads {
		ops, _ := readOps(l)
		r.request(0, CmdRead, uint64(i), rd.off, rd.length, nil)
		ch := r.chunk()
		require.Equal(t, uint16(replyError), ch.typ, "%s: answered %d, not an error", rd.name, ch.typ)
		require.Equal(t, uint32(EIO), be.Uint32(ch.payload), rd.name)
		after, _ := readOps(l)
		require.Equal(t, ops+1, after, "%s: one read", rd.name)
	}

	const delay = 150 * time.Millisecond
	l.SetFaults(lun.Only(lun.Delay(lun.Fixed(delay)), lun.OpRead))
	for i, rd := range faultReads {
		ops, bytes := readOps(l)
		start := time.Now()
		r.request(0, CmdRead, uint64(i), rd.off, rd.length, nil)
		sawData := false
		for {
			ch := r.chunk()
			require.NotEqual(t, uint16(replyError), ch.typ, rd.name)
			sawData = sawData || ch.typ == replyOffsetData
			if ch.flags&replyFlagDone != 0 {
				break
			}
		}
		took := time.Since(start)
		require.Equal(t, rd.wantData, sawData, rd.name)
		require.GreaterOrEqual(t, took, delay, "%s: delayed", rd.name)
		require.Less(t, took, 2*delay, "%s: delayed once, not once per chunk", rd.name)
		afterOps, afterBytes := readOps(l)
		require.Equal(t, ops+1, afterOps, "%s: one read", rd.name)
		require.Equal(t, bytes+uint64(rd.length), afterBytes, "%s: counted whole", rd.name)
	}
}

// TestRealReadFaultsReachHoles checks the same with the clients that
// negotiate structured replies by default: a read of never-written blocks
// with a read fault fails. nbdcopy is told not to ask for extents, or it
// would read none of a LUN that is all holes.
func TestRealReadFaultsReachHoles(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-io", "qemu-utils")
	nbdtest.NeedTool(t, "nbdcopy", "libnbd-bin")
	a := newArray(t, 4<<20, "lun0")
	l := getLUN(t, a, "lun0")
	l.SetFaults(lun.Only(lun.Fail(lun.EIO), lun.OpRead))
	for _, tg := range serveArray(t, a) {
		t.Run(tg.name, func(t *testing.T) {
			out, err := exec.Command("qemu-io", "-r", "-f", "raw", "-c", "read 1M 64k", tg.uri("lun0")).CombinedOutput()
			require.Contains(t, string(out), "Input/output error", "qemu-io read of a hole: %v", err)

			out, err = exec.Command("nbdcopy", "--no-extents", tg.uri("lun0"), "null:").CombinedOutput()
			require.Error(t, err, "nbdcopy of a never-written LUN:\n%s", out)
			require.Contains(t, string(out), "Input/output error")
		})
	}
}

// delayReads installs a read fault of an hour on l and returns a channel
// that receives once per read entering the delay.
func delayReads(l *lun.LUN) <-chan struct{} {
	entered := make(chan struct{}, 16)
	l.SetFaults(lun.Only(lun.All(lun.InjectorFunc(func(context.Context, lun.Op) error {
		entered <- struct{}{}
		return nil
	}), lun.Delay(lun.Fixed(time.Hour))), lun.OpRead))
	return entered
}

// TestKilledClientEndsItsDelayedRead checks that a client gone while its
// READ sits in an injected delay (closed without NBD_CMD_DISC, as a killed
// process's socket is) ends the delay: the server closes the socket and
// the connection's goroutines exit, and none of the server's is left.
func TestKilledClientEndsItsDelayedRead(t *testing.T) {
	a := newArray(t, testSize, "lun0")
	l := getLUN(t, a, "lun0")
	ts := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	entered := delayReads(l)
	defer l.SetFaults(nil)

	for _, structured := range []bool{false, true} {
		r := rawDial(t, ts)
		r.goExport("lun0", structured)
		r.request(0, CmdRead, 1, 0, 4096, nil)
		r.request(0, CmdRead, 2, 1<<20, 4096, nil)
		<-entered
		<-entered
		require.NoError(t, r.c.Close())
		require.Eventually(t, func() bool { return ts.Stats().Open == 0 }, 2*time.Second, time.Millisecond,
			"the connection of a client gone is closed")
	}
}

// TestClearedFaultReleasesADelayedRead checks that clearing a LUN's faults
// ends a delay already running: the READ is answered, with its data.
func TestClearedFaultReleasesADelayedRead(t *testing.T) {
	a := newArray(t, testSize, "lun0")
	l := getLUN(t, a, "lun0")
	want := pattern(4096, 5)
	require.NoError(t, l.WriteAt(tctx(t), want, 0, false))
	ts := serveOn(t, "tcp", ArrayCatalog(a), Options{})
	entered := delayReads(l)
	r := rawDial(t, ts)
	r.goExport("lun0", false)
	r.request(0, CmdRead, 7, 0, 4096, nil)
	<-entered
	l.SetFaults(nil)
	errno, handle := r.simple()
	require.Equal(t, Errno(0), errno)
	require.Equal(t, uint64(7), handle)
	got := make([]byte, 4096)
	_, err := io.ReadFull(r.br, got)
	require.NoError(t, err)
	require.Equal(t, want, got)
}
