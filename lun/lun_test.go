package lun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/vss"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = int64(1) << 20

func newArray(t testing.TB, cfg Config) *Array {
	t.Helper()
	a, err := NewArray(cfg)
	require.NoError(t, err)
	return a
}

func newLUN(t testing.TB, a *Array, name string, size int64) *LUN {
	t.Helper()
	l, err := a.Create(name, Options{Size: size})
	require.NoError(t, err)
	return l
}

func TestIO(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", 4*mib)
	require.Equal(t, 512, l.BlockSize())
	p := bytes.Repeat([]byte("shadow"), 1000)
	require.NoError(t, l.WriteAt(ctx, p, 777, true /* fua */))
	got := make([]byte, len(p))
	require.NoError(t, l.ReadAt(ctx, got, 777))
	require.Equal(t, p, got)
	require.NoError(t, l.Flush(ctx))
	require.NoError(t, l.Trim(ctx, 0, mib))
	require.NoError(t, l.WriteZeroes(ctx, 2*mib, mib, true))
	ext, err := l.Extents(ctx, 0, 4*mib)
	require.NoError(t, err)
	require.Equal(t, []cow.Extent{{Off: 0, Len: 2 * mib, Kind: cow.Hole}, {Off: 2 * mib, Len: mib, Kind: cow.Zero}, {Off: 3 * mib, Len: mib, Kind: cow.Hole}}, ext)

	st := l.Stats()
	require.EqualValues(t, 1, st[OpWrite].Ops)
	require.EqualValues(t, len(p), st[OpWrite].Bytes)
	require.EqualValues(t, 1, st[OpRead].Ops)
	require.NotNil(t, st[OpRead].Latency)
	require.EqualValues(t, 1, st[OpRead].Latency.TotalCount())
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	for _, c := range []struct {
		name string
		opts Options
		err  error
	}{
		{"", Options{Size: mib}, ErrBadName},
		{"a/b", Options{Size: mib}, ErrBadName},
		{".", Options{Size: mib}, ErrBadName},  // a path segment: nbd://host/. is the root
		{"..", Options{Size: mib}, ErrBadName}, // and nbd://host/.. its parent
		{"x", Options{Size: 0}, ErrBadGeometry},
		{"x", Options{Size: 1000}, ErrBadGeometry},
		{"x", Options{Size: mib, BlockSize: 1024}, ErrBadGeometry},
		{"x", Options{Size: 4096 * 3, BlockSize: 4096 * 2}, ErrBadGeometry},
	} {
		_, err := a.Create(c.name, c.opts)
		require.ErrorIs(t, err, c.err, "%q %+v", c.name, c.opts)
	}
	for _, name := range []string{"...", ".x", "x..", "a.b"} {
		_, err := a.Create(name, Options{Size: mib})
		require.NoError(t, err, "%q is a name, not a path segment", name)
		require.NoError(t, a.Delete(name))
	}
	l := newLUN(t, a, "lun0", mib)
	_, err := a.Create("lun0", Options{Size: mib})
	require.ErrorIs(t, err, ErrExists)
	require.ErrorIs(t, l.WriteAt(ctx, []byte{1, 2}, mib-1, false), cow.ErrOutOfRange)
	require.ErrorIs(t, l.ReadAt(ctx, make([]byte, 1), -1), cow.ErrOutOfRange)
	require.ErrorIs(t, l.Trim(ctx, 1, 1<<62), cow.ErrOutOfRange)

	ro, err := a.Create("ro", Options{Size: mib, ReadOnly: true})
	require.NoError(t, err)
	require.ErrorIs(t, ro.WriteAt(ctx, []byte{1}, 0, false), ErrReadOnly)

	_, err = a.Get("nope")
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, a.Delete("nope"), ErrNotFound)
	require.NoError(t, a.Delete("lun0"))
	require.ErrorIs(t, l.WriteAt(ctx, []byte{1}, 0, false), ErrDeleted, "use after delete")
	require.ErrorIs(t, l.ReadAt(ctx, []byte{1}, 0), ErrDeleted)
	_, err = l.Hold(ctx, 0)
	require.ErrorIs(t, err, ErrDeleted)
}

func TestSnapshotsAndClones(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{MaxSnapshots: 2})
	l := newLUN(t, a, "lun0", mib)
	require.NoError(t, l.WriteAt(ctx, bytes.Repeat([]byte{1}, int(mib)), 0, false))
	s1, err := a.Snapshot("lun0", "s1")
	require.NoError(t, err)
	require.True(t, s1.ReadOnly())
	require.True(t, s1.Masked(), "snapshot LUNs are created masked")
	require.Equal(t, Snapshot, s1.Kind())
	require.Same(t, l, s1.Parent())
	require.NotEqual(t, l.Identity().NAA, s1.Identity().NAA, "L4")
	require.ErrorIs(t, s1.WriteAt(ctx, []byte{1}, 0, false), ErrReadOnly)

	require.NoError(t, l.WriteAt(ctx, []byte{2, 2, 2}, 4096, false))
	changed, err := l.Changed(ctx, 0, mib)
	require.NoError(t, err)
	require.Equal(t, []cow.Range{{Off: 4096, Len: 4096}}, changed, "live LUN against its newest snapshot")
	s2, err := a.Snapshot("lun0", "s2")
	require.NoError(t, err)
	changed, err = s2.Changed(ctx, 0, mib)
	require.NoError(t, err)
	require.Equal(t, []cow.Range{{Off: 4096, Len: 4096}}, changed, "snapshot against the previous snapshot")
	_, err = s1.Changed(ctx, 0, mib)
	require.ErrorIs(t, err, ErrNoBase)

	_, err = a.Snapshot("lun0", "s3")
	require.ErrorIs(t, err, ErrMaxSnapshots)
	var hr vss.HRESULT
	require.ErrorAs(t, err, &hr)
	require.Equal(t, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, hr)
	require.NoError(t, a.Delete("s1"))
	_, err = a.Snapshot("lun0", "s3")
	require.NoError(t, err, "deleting a snapshot frees its place")

	c, err := a.Clone("s2", "c2")
	require.NoError(t, err)
	require.NoError(t, c.WriteAt(ctx, []byte{9}, 0, false))
	got := make([]byte, 1)
	require.NoError(t, s2.ReadAt(ctx, got, 0))
	require.Equal(t, []byte{1}, got)

	require.NoError(t, l.WriteAt(ctx, []byte{7}, 0, false))
	require.NoError(t, a.Revert("lun0", "s2"))
	require.NoError(t, l.ReadAt(ctx, got, 0))
	require.Equal(t, []byte{1}, got, "reverted")

	require.NoError(t, s2.MakeWritable())
	require.False(t, s2.ReadOnly())
	require.NoError(t, s2.WriteAt(ctx, []byte{5}, 0, false))
	require.NoError(t, c.ReadAt(ctx, got, 0))
	require.Equal(t, []byte{9}, got, "the clone is independent of the broken snapshot")
}

// TestPrepareAbort checks that an aborted prepared snapshot leaves nothing:
// no name, no count, and that a committed-then-aborted one is gone too.
func TestPrepareAbort(t *testing.T) {
	a := newArray(t, Config{MaxSnapshots: 1})
	newLUN(t, a, "lun0", mib)
	p, err := a.PrepareSnapshot("lun0", "s")
	require.NoError(t, err)
	_, err = a.Get("s")
	require.ErrorIs(t, err, ErrNotFound, "a prepared snapshot is invisible")
	require.ErrorIs(t, p.LUN().ReadAt(context.Background(), make([]byte, 1), 0), ErrNotFound)
	p.Abort()
	p, err = a.PrepareSnapshot("lun0", "s")
	require.NoError(t, err, "the name and the count were given back")
	require.NoError(t, p.Commit())
	_, err = a.Get("s")
	require.NoError(t, err)
	p.Abort()
	_, err = a.Get("s")
	require.ErrorIs(t, err, ErrNotFound)
	require.Len(t, a.List(), 1)
}

// TestArrayConcurrent creates, lists, snapshots and deletes LUNs from many
// goroutines.
func TestArrayConcurrent(t *testing.T) {
	a := newArray(t, Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				name := fmt.Sprintf("l%d-%d", g, i)
				l, err := a.Create(name, Options{Size: mib})
				if err != nil {
					t.Error(err)
					return
				}
				_ = l.WriteAt(context.Background(), []byte{byte(i)}, int64(i), false)
				if _, err := a.Snapshot(name, name+".s"); err != nil {
					t.Error(err)
				}
				_ = a.List()
				if i%2 == 0 {
					require.NoError(t, a.Delete(name+".s"))
					require.NoError(t, a.Delete(name))
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, a.List(), 8*25*2)
}

// TestReclaimThroughArray checks C5 through the array: deleting every
// snapshot and clone returns the store to the live data's size.
func TestReclaimThroughArray(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", 64*mib)
	buf := bytes.Repeat([]byte{3}, int(mib))
	for i := range 8 {
		require.NoError(t, l.WriteAt(ctx, buf, int64(i)*mib, false))
	}
	live := a.StoreStats().DataBytes
	for i := range 5 {
		s, err := a.Snapshot("lun0", fmt.Sprintf("s%d", i))
		require.NoError(t, err)
		c, err := a.Clone(s.Name(), fmt.Sprintf("c%d", i))
		require.NoError(t, err)
		require.NoError(t, c.WriteAt(ctx, buf, 0, false))
		require.NoError(t, l.WriteAt(ctx, buf, int64(i)*mib, false))
	}
	require.Greater(t, a.StoreStats().DataBytes, live)
	for _, x := range a.List() {
		if x.Name() != "lun0" {
			require.NoError(t, a.Delete(x.Name()))
		}
	}
	require.Equal(t, live, a.StoreStats().DataBytes)
}

func TestCapacity(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{Capacity: mib})
	l, err := a.Create("big", Options{Size: 64 * mib, Thin: true}) // bigger than the array
	require.NoError(t, err)
	require.NoError(t, l.WriteAt(ctx, make([]byte, mib), 0, false))
	require.ErrorIs(t, l.WriteAt(ctx, make([]byte, 4096), 2*mib, false), cow.ErrNoSpace)
}

// TestThickCapacity checks that thick LUNs' sizes add up within the
// capacity, while thin LUNs, snapshot LUNs and clones overcommit it.
func TestThickCapacity(t *testing.T) {
	a := newArray(t, Config{Capacity: 8 * mib})
	newLUN(t, a, "a", 5*mib)
	_, err := a.Create("big", Options{Size: 9 * mib})
	var ce *CapacityError
	require.ErrorAs(t, err, &ce, "larger than the capacity")
	require.ErrorIs(t, err, ErrCapacity)
	require.Equal(t, CapacityError{LUN: "big", Size: 9 * mib, Capacity: 8 * mib, Provisioned: 5 * mib}, *ce)
	_, err = a.Create("b", Options{Size: 4 * mib})
	require.EqualError(t, err, "lun: array capacity exceeded: thick LUN b of 4.0 MiB does not fit: capacity 8.0 MiB, 5.0 MiB provisioned by thick LUNs, 3.0 MiB free; a thin LUN may overcommit")
	_, err = a.Get("b")
	require.ErrorIs(t, err, ErrNotFound, "a refused LUN leaves nothing")
	b := newLUN(t, a, "b", 3*mib) // exactly what is left
	require.False(t, b.Thin())

	thin, err := a.Create("thin", Options{Size: 64 * mib, Thin: true})
	require.NoError(t, err)
	require.True(t, thin.Thin())
	snap, err := a.Snapshot("b", "b.s")
	require.NoError(t, err)
	clone, err := a.Clone("b.s", "b.c")
	require.NoError(t, err)
	require.True(t, snap.Thin())
	require.True(t, clone.Thin())
	require.Equal(t, Provisioning{ThickBytes: 8 * mib, ThinBytes: 64*mib + 3*mib}, a.Provisioned(), "snapshot LUNs are not counted")

	// Deleting a thick LUN gives its size back.
	require.NoError(t, a.Delete("a"))
	newLUN(t, a, "c", 5*mib)

	// Without a capacity, nothing is refused.
	unlimited := newArray(t, Config{})
	newLUN(t, unlimited, "huge", 1<<50)
}

// TestThickCapacityRace checks that concurrent creations cannot provision
// more than the capacity between them.
func TestThickCapacityRace(t *testing.T) {
	a := newArray(t, Config{Capacity: 8 * mib})
	var wg sync.WaitGroup
	var made atomic.Int32
	for i := range 16 {
		wg.Go(func() {
			_, err := a.Create(fmt.Sprintf("l%d", i), Options{Size: 2 * mib})
			if err == nil {
				made.Add(1)
			} else if !errors.Is(err, ErrCapacity) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 4, made.Load())
	require.EqualValues(t, 8*mib, a.Provisioned().ThickBytes)
}

// TestGateHoldDrainsAndQueues checks L1 and L2: Hold waits for in-flight
// I/O, queued I/O waits without failing, Release resumes it.
func TestGateHoldDrainsAndQueues(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	slow := NewToggle(Delay(Fixed(50 * time.Millisecond)))
	slow.Set(true)
	l.SetFaults(slow)

	inflightDone := make(chan error, 1)
	go func() { inflightDone <- l.WriteAt(ctx, []byte{1}, 0, false) }()
	time.Sleep(10 * time.Millisecond) // the write is in flight, inside its delay
	h, err := l.Hold(ctx, time.Minute)
	require.NoError(t, err)
	require.EqualValues(t, 1, l.Stats()[OpWrite].Ops, "L2: the in-flight write finished before Hold returned")
	require.NoError(t, <-inflightDone)
	slow.Set(false)

	var queued atomic.Int32
	results := make(chan error, 8)
	for i := range 8 {
		go func() {
			queued.Add(1)
			results <- l.WriteAt(ctx, []byte{byte(i)}, int64(i), false)
		}()
	}
	require.Eventually(t, func() bool { return queued.Load() == 8 }, time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.Empty(t, results, "L2: no I/O admitted while held")
	require.NoError(t, h.Release())
	for range 8 {
		require.NoError(t, <-results, "L1: held I/O is delayed, never failed")
	}
	require.ErrorIs(t, h.Release(), ErrHoldReleased)
}

// TestGateDeadline checks L3: the deadline releases the gate by itself and
// the hold reports the timeout.
func TestGateDeadline(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	h, err := l.Hold(ctx, 30*time.Millisecond)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- l.WriteAt(ctx, []byte{1}, 0, false) }()
	select {
	case <-h.Expired():
	case <-time.After(5 * time.Second):
		t.Fatal("L3: the hold outlived its deadline")
	}
	require.NoError(t, <-done, "the queued write went through after expiry")
	require.ErrorIs(t, h.Release(), ErrHoldTimeout)
	require.False(t, l.Gate().Held())
}

// TestGateConcurrentHolds: the gate stays closed until the last hold goes.
func TestGateConcurrentHolds(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	holds := make(chan *Hold, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			h, err := l.Hold(ctx, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			holds <- h
		})
	}
	wg.Wait()
	close(holds)
	var hs []*Hold
	for h := range holds {
		hs = append(hs, h)
	}
	require.Len(t, hs, 4)
	done := make(chan error, 1)
	go func() { done <- l.WriteAt(ctx, []byte{1}, 0, false) }()
	for _, h := range hs[:3] {
		require.NoError(t, h.Release())
		time.Sleep(5 * time.Millisecond)
		require.Empty(t, done, "still held by another hold")
	}
	require.NoError(t, hs[3].Release())
	require.NoError(t, <-done)
}

// TestGateHoldDuringDelete: deleting a held LUN releases its queued I/O
// with ErrDeleted, and holds after that fail.
func TestGateHoldDuringDelete(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	h, err := l.Hold(ctx, time.Minute)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- l.WriteAt(ctx, []byte{1}, 0, false) }()
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, a.Delete("lun0"))
	require.ErrorIs(t, <-done, ErrDeleted)
	require.NoError(t, h.Release())
	_, err = l.Gate().Hold(ctx, time.Minute)
	require.ErrorIs(t, err, ErrDeleted)
}

// TestGateHoldCancelled: a hold whose context ends while draining gives
// up and leaves the gate open.
func TestGateHoldCancelled(t *testing.T) {
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	l.SetFaults(Delay(Fixed(200 * time.Millisecond)))
	go func() { _ = l.WriteAt(context.Background(), []byte{1}, 0, false) }()
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := l.Hold(ctx, time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, l.Gate().Held())
	time.Sleep(250 * time.Millisecond) // let the slow write finish before the leak check
}

func TestFaultInjectors(t *testing.T) {
	ctx := context.Background()
	count := func(inj Injector, op Op, n int) (errs int) {
		for range n {
			if inj.Inject(ctx, op) != nil {
				errs++
			}
		}
		return errs
	}
	require.Equal(t, 10, count(Fail(EIO), OpRead, 10))
	require.Equal(t, 1, count(Nth(3, Fail(EIO)), OpRead, 10), "Nth fires once")
	require.Zero(t, count(Only(Fail(EIO), OpWrite), OpRead, 10), "Only filters by op")
	require.Equal(t, 10, count(Only(Fail(EIO), OpWrite), OpWrite, 10))
	hits := count(Probability(0.3, 42, Fail(ENOSPC)), OpWrite, 10000)
	require.InDelta(t, 3000, hits, 300)
	require.Equal(t, hits, count(Probability(0.3, 42, Fail(ENOSPC)), OpWrite, 10000), "a seed replays")
	tg := NewToggle(Fail(EIO))
	require.Zero(t, count(tg, OpRead, 5))
	tg.Set(true)
	require.Equal(t, 5, count(tg, OpRead, 5))

	start := time.Now()
	require.ErrorIs(t, All(Delay(Fixed(20*time.Millisecond)), Fail(EIO)).Inject(ctx, OpRead), syscall.EIO)
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "All composes a delay and a failure")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, Delay(Fixed(time.Hour)).Inject(cctx, OpRead), context.Canceled)

	for _, d := range []Dist{Uniform{time.Millisecond, 2 * time.Millisecond}, Normal{time.Millisecond, time.Millisecond}, Exponential{time.Millisecond}} {
		for range 100 {
			require.GreaterOrEqual(t, d.Sample(), time.Duration(0))
		}
	}

	// Through a LUN: errors are counted and the errno survives.
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	l.SetFaults(Only(Nth(2, Fail(EIO)), OpWrite))
	require.NoError(t, l.WriteAt(ctx, []byte{1}, 0, false))
	err := l.WriteAt(ctx, []byte{1}, 0, false)
	var errno syscall.Errno
	require.True(t, errors.As(err, &errno))
	require.Equal(t, syscall.EIO, errno)
	require.NoError(t, l.WriteAt(ctx, []byte{1}, 0, false))
	require.EqualValues(t, 1, l.Stats()[OpWrite].Errors)
	l.SetFaults(nil)
}

// TestReadHolesIsARead checks that a read answered from the extents goes
// through the read faults and is counted as a read of its length.
func TestReadHolesIsARead(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	require.NoError(t, l.ReadHoles(ctx, 4096, 8192))
	require.EqualValues(t, 1, l.Stats()[OpRead].Ops)
	require.EqualValues(t, 8192, l.Stats()[OpRead].Bytes)
	l.SetFaults(Only(Fail(EIO), OpRead))
	require.ErrorIs(t, l.ReadHoles(ctx, 4096, 8192), syscall.EIO)
	require.EqualValues(t, 1, l.Stats()[OpRead].Errors)
	l.SetFaults(nil)
	require.ErrorIs(t, l.ReadHoles(ctx, mib-1, 2), cow.ErrOutOfRange)
	require.ErrorIs(t, l.ReadHoles(ctx, -1, 1), cow.ErrOutOfRange)
}

// TestClearingFaultsEndsTheirDelays checks that a delay running when the
// faults are cleared ends at once and its operation succeeds, and that
// replacing the injector (a rule added) lets the delay run on.
func TestClearingFaultsEndsTheirDelays(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l := newLUN(t, a, "lun0", mib)
	require.NoError(t, l.WriteAt(ctx, []byte("kept"), 0, false))
	entered := make(chan struct{}, 1)
	l.SetFaults(Only(All(InjectorFunc(func(context.Context, Op) error {
		entered <- struct{}{}
		return nil
	}), Delay(Fixed(time.Hour)), Fail(EIO)), OpRead))
	done := make(chan error, 1)
	p := make([]byte, 4)
	go func() { done <- l.ReadAt(ctx, p, 0) }()
	<-entered

	l.SetFaults(Only(Fail(EIO), OpWrite))
	select {
	case err := <-done:
		t.Fatalf("replacing the faults ended the delay: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	start := time.Now()
	l.SetFaults(nil)
	select {
	case err := <-done:
		require.NoError(t, err, "a cleared fault fails nothing")
		require.Equal(t, "kept", string(p))
		require.Less(t, time.Since(start), time.Second)
	case <-time.After(5 * time.Second):
		t.Fatal("clearing the faults left the delay running")
	}

	// Faults installed after a clearing delay as before.
	l.SetFaults(Only(Delay(Fixed(30*time.Millisecond)), OpRead))
	start = time.Now()
	require.NoError(t, l.ReadAt(ctx, p, 0))
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	l.SetFaults(nil)
}

func TestIdentityUnique(t *testing.T) {
	seen := map[[16]byte]bool{}
	for range 1000 {
		id := NewIdentity(ProductLUN)
		require.False(t, seen[id.NAA])
		seen[id.NAA] = true
		require.Equal(t, byte(6), id.NAA[0]>>4, "NAA type 6")
		require.LessOrEqual(t, len(id.Vendor), 8)
		require.LessOrEqual(t, len(id.Product), 16)
		require.LessOrEqual(t, len(id.Revision), 4)
	}
}

func TestSnapshotEvery(t *testing.T) {
	a := newArray(t, Config{})
	newLUN(t, a, "lun0", mib)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan ScheduleResult)
	go func() { done <- a.SnapshotEvery(ctx, 10*time.Millisecond, 2, "lun0") }()
	require.Eventually(t, func() bool { return len(a.List()) == 3 }, time.Second, time.Millisecond, "the source and the two newest")
	res := <-done
	require.GreaterOrEqual(t, res.Taken, 3)
	require.Equal(t, res.Taken, res.Deleted, "nothing left behind")
	require.Zero(t, res.Errors)
	require.Len(t, a.List(), 1)
}

// TestSnapshotGroupInterleaved: a snapshot taken while a group holding the
// same source is prepared does not fail, and the changed-block chain ends
// up in commit order, whatever the order of preparation.
func TestSnapshotGroupInterleaved(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	src := newLUN(t, a, "lun0", mib)
	first, err := a.Snapshot("lun0", "s0")
	require.NoError(t, err)
	sg := a.NewSnapshotGroup()
	late, err := sg.Prepare("lun0", "s2")
	require.NoError(t, err)
	_, err = a.NewSnapshotGroup().Prepare("lun0", "other")
	require.ErrorIs(t, err, ErrInSet, "one open group per source")

	require.NoError(t, src.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false))
	mid, err := a.Snapshot("lun0", "s1") // while s2 is prepared
	require.NoError(t, err)
	require.Same(t, first, mid.prev.Value(), "the prepared s2 is skipped")
	require.NoError(t, src.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 8192, false))
	require.NoError(t, sg.CommitAt(time.Now()))

	require.Same(t, mid, late.LUN().prev.Value(), "s2 committed after s1")
	require.Same(t, late.LUN(), src.lastSnap.Load())
	got, err := late.LUN().Changed(ctx, 0, mib)
	require.NoError(t, err)
	require.Equal(t, []cow.Range{{Off: 8192, Len: 4096}}, got, "s2 against s1: only the write between them")
	got, err = mid.Changed(ctx, 0, mib)
	require.NoError(t, err)
	require.Equal(t, []cow.Range{{Off: 0, Len: 4096}}, got)
}

// heapInUse is the live heap after two collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestReleasedSnapshotsCostNothing checks L5: snapshots taken and deleted
// as a schedule keeping the newest two does (SnapshotEvery) leave no
// memory behind. Each one used to cost about 3 kB for as long as the source
// lived, kept by the chain of changed-block bases.
func TestReleasedSnapshotsCostNothing(t *testing.T) {
	a := newArray(t, Config{})
	src := newLUN(t, a, "lun0", mib)
	var kept []string
	cycle := func(from, n int) {
		for i := from; i < from+n; i++ {
			s, err := a.Snapshot("lun0", fmt.Sprintf("lun0.sched-%d", i))
			require.NoError(t, err)
			kept = append(kept, s.Name())
			for len(kept) > 2 {
				require.NoError(t, a.Delete(kept[0]))
				kept = kept[1:]
			}
		}
	}
	cycle(0, 100)
	before := heapInUse()
	cycle(100, 2000)
	after := heapInUse()
	runtime.KeepAlive(src)
	grown := int64(after) - int64(before)
	t.Logf("heap %d B after 100 snapshots, %d B after 2100: %d B a snapshot", before, after, grown/2000)
	require.Less(t, grown, int64(2000*256), "2000 released snapshots keep less than 256 B each (the leak was 3 kB)")

	// The chain still serves changed-block tracking between live snapshots.
	require.NoError(t, src.WriteAt(context.Background(), []byte{1}, 0, false))
	s, err := a.Snapshot("lun0", "last")
	require.NoError(t, err)
	got, err := s.Changed(context.Background(), 0, mib)
	require.NoError(t, err)
	require.Equal(t, []cow.Range{{Off: 0, Len: int64(a.Config().Grain)}}, got)
}

// TestStatsResolveSubMicrosecond checks that a LUN's latency histogram is
// in nanoseconds, so an operation of a few hundred nanoseconds is told
// from one of a microsecond, and that the exact sum is kept.
func TestStatsResolveSubMicrosecond(t *testing.T) {
	var s Stats
	s.record(OpRead, 512, 300*time.Nanosecond, nil)
	s.record(OpRead, 512, 1700*time.Nanosecond, nil)
	st := s.Snapshot()[OpRead]
	require.InDelta(t, 300, st.Latency.Min(), 3)
	require.InDelta(t, 1700, st.Latency.Max(), 17)
	require.Equal(t, 2000*time.Nanosecond, st.LatencySum)
}
