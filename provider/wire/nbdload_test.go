package wire_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/vss"
)

// nbdDialer connects an NBD client to an export of array i.
type nbdDialer func(t testing.TB, i int, export string) *nbd.Client

// serveNBD serves each array's LUNs over NBD on the listener ls(i) gives,
// until the end of the test, and returns how to reach them; around runs
// each dial (in the coordinator's namespace, for the netns tests: a socket
// stays in the namespace it was made in).
func serveNBD(t testing.TB, ras []*remoteArray, ls func(t testing.TB, i int) net.Listener, around func(func() error) error) nbdDialer {
	t.Helper()
	addrs := make([]string, len(ras))
	for i, ra := range ras {
		l := ls(t, i)
		addrs[i] = l.Addr().String()
		srv := nbd.NewServer(nbd.ArrayCatalog(ra.a), nbd.Options{Logger: quiet()})
		done := make(chan error, 1)
		go func() { done <- srv.Serve(context.Background(), l) }()
		t.Cleanup(func() {
			_ = srv.Close()
			if err := <-done; err != nil && !errors.Is(err, nbd.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.Errorf("NBD server of %s: %v", ra.name, err)
			}
		})
	}
	return func(t testing.TB, i int, export string) *nbd.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var c *nbd.Client
		require.NoError(t, around(func() (err error) {
			c, err = nbd.Dial(ctx, "tcp", addrs[i], &nbd.DialOptions{Export: export})
			return err
		}))
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
}

// seqWrite is one write of a sequence number, as its writer saw it.
type seqWrite struct {
	seq           uint64
	issued, acked time.Time
}

// onePointInTimeOverNBD runs a set across the arrays while writers write
// over NBD to every array, and checks with their sequence numbers that the
// snapshots are of one instant inside the hold window:
//
//   - a walker writes an increasing number to lun0 of each array in turn,
//     one write at a time: with every gate held at once, the three images
//     hold three consecutive numbers (the writer stopped at one held gate);
//     holds that did not overlap would have let it on between them;
//   - a loader per array writes its own increasing numbers to lun1 as fast
//     as it can: each image holds a number whose write was issued before
//     the last gate closed (the end of FlushAndHold), and every write
//     acknowledged before FlushAndHold began (B.2, cow C4).
func onePointInTimeOverNBD(t *testing.T, sv *service, ras []*remoteArray, dial nbdDialer) {
	t.Helper()
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var walked atomic.Int64
	walkers := make([]*nbd.Client, len(ras))
	for i := range ras {
		walkers[i] = dial(t, i, "lun0")
	}
	failed := make(chan error, len(ras)+1)
	wg.Go(func() {
		buf := make([]byte, 512)
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.LittleEndian.PutUint64(buf, seq)
			if err := walkers[seq%uint64(len(ras))].Write(ctx, buf, 0, 0); err != nil {
				failed <- fmt.Errorf("walker: %w", err)
				return
			}
			walked.Add(1)
		}
	})
	logs := make([][]seqWrite, len(ras))
	var loaded atomic.Int64
	for i := range ras {
		c := dial(t, i, "lun1")
		wg.Go(func() {
			buf := make([]byte, 4096)
			for seq := uint64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				binary.LittleEndian.PutUint64(buf, seq)
				w := seqWrite{seq: seq, issued: time.Now()}
				if err := c.Write(ctx, buf, 0, 0); err != nil {
					failed <- fmt.Errorf("loader of %s: %w", ras[i].name, err)
					return
				}
				w.acked = time.Now()
				logs[i] = append(logs[i], w)
				loaded.Add(1)
			}
		})
	}
	require.Eventually(t, func() bool { return walked.Load() > 300 && loaded.Load() > 300 }, 10*time.Second, time.Millisecond)

	bc, set, snaps := rollbackSet(t, sv, ras)
	w, l := walked.Load(), loaded.Load()
	require.Eventually(t, func() bool { return walked.Load() > w+30 && loaded.Load() > l+30 }, 10*time.Second, time.Millisecond,
		"every gate was released")
	close(stop)
	wg.Wait()
	close(failed)
	for err := range failed {
		require.NoError(t, err, "no write failed (B.2: held writes are delayed, never failed)")
	}

	info, _ := sv.s.Set(set)
	origin := info.Timeline.Origin()
	fh, ok := info.Timeline.Find(coordinator.KindPhase, "FlushAndHold")
	require.True(t, ok)
	holdBegan, held := origin.Add(fh.Start), origin.Add(fh.End)

	read := func(a *lun.Array, name string) uint64 {
		buf := make([]byte, 512)
		require.NoError(t, mustGet(t, a, name).ReadAt(ctx, buf, 0))
		return binary.LittleEndian.Uint64(buf)
	}
	var walks []uint64
	for i, id := range snaps {
		p, err := bc.GetSnapshotProperties(id)
		require.NoError(t, err)
		require.True(t, p.Imported, "the snapshot LUNs arrived on their own array (remote rescan): %s", sv.logs.String())
		require.Len(t, p.TargetLUNs, 2)
		walks = append(walks, read(ras[i].a, p.TargetLUNs[0]))

		got := read(ras[i].a, p.TargetLUNs[1])
		var in *seqWrite
		var lastBefore uint64
		for j := range logs[i] {
			w := &logs[i][j]
			if w.seq == got {
				in = w
			}
			if w.acked.Before(holdBegan) {
				lastBefore = w.seq
			}
		}
		require.NotNil(t, in, "%s: the snapshot of lun1 holds write %d, which its loader made", ras[i].name, got)
		require.True(t, in.issued.Before(held), "%s: write %d was issued %v after the last gate closed, yet it is in the snapshot",
			ras[i].name, got, in.issued.Sub(held))
		require.GreaterOrEqual(t, got, lastBefore, "%s: write %d was acknowledged before FlushAndHold began, yet the snapshot holds %d",
			ras[i].name, lastBefore, got)
	}
	lo, hi := min(walks[0], walks[1], walks[2]), max(walks[0], walks[1], walks[2])
	require.Equal(t, uint64(2), hi-lo, "one point in time across the arrays: %v", walks)
}

// noPartialCommit fails the last array's CommitSnapshots (the arrays before
// it have committed) and checks B.9 across arrays: every array gets
// AbortSnapshots, none keeps a snapshot of the failed set, and every gate
// is released.
func noPartialCommit(t *testing.T, sv *service, ras []*remoteArray) {
	t.Helper()
	err, tl, _ := sv.backup(context.Background(), volumes(ras)...)
	require.ErrorIs(t, err, vss.VSS_E_PROVIDER_VETO)
	aborted := map[string]bool{}
	var commits []string
	for _, sp := range tl.Spans() {
		if sp.Kind == coordinator.KindProvider && sp.Name == "AbortSnapshots" {
			require.Equal(t, "S_OK", sp.Result)
			aborted[sp.Actor] = true
		}
		if sp.Kind == coordinator.KindProvider && sp.Name == "CommitSnapshots" {
			commits = append(commits, sp.Actor+"="+sp.Result)
		}
	}
	require.Contains(t, commits, ras[len(ras)-1].name+"=VSS_E_PROVIDER_VETO")
	for _, ra := range ras {
		require.True(t, aborted[ra.name], "AbortSnapshots reached %s", ra.name)
		require.Empty(t, snapshotLUNs(ra.a), "%s keeps no snapshot of the failed set", ra.name)
		requireDone(t, write(t, ra.a, "lun1"))
	}
}
