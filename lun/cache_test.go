package lun

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var cacheSeed = flag.Uint64("cache.seed", 0, "seed of TestCacheModel (0: from the clock)")

// cacheModel is what a LUN with an emulated cache must hold: durable is
// its state at the durable point, live what it reads now, pending the
// writes since the durable point.
type cacheModel struct {
	mode    CacheMode
	limit   int64
	durable []byte
	live    []byte
	pending []cacheRec
	bytes   int64
}

func (m *cacheModel) apply(buf []byte, r cacheRec) {
	if r.data != nil {
		copy(buf[r.off:], r.data)
		return
	}
	clear(buf[r.off : r.off+r.n])
}

func (m *cacheModel) write(r cacheRec) {
	m.apply(m.live, r)
	if m.mode == CacheWriteThrough || m.mode == CacheWriteBackBattery {
		return
	}
	m.pending = append(m.pending, r)
	m.bytes += int64(len(r.data)) + 64
	if m.bytes > m.limit {
		m.advance()
	}
}

func (m *cacheModel) advance() {
	copy(m.durable, m.live)
	m.pending, m.bytes = nil, 0
}

func (m *cacheModel) flush() {
	if m.mode != CacheWriteThrough && m.mode != CacheWriteBackBattery && m.mode != CacheIgnoreFlush {
		m.advance()
	}
}

// cut returns what the LUN must hold after a cut keeping keep; for a
// random choice it returns nil, and the test checks bounds instead.
func (m *cacheModel) cut(keep Keep) []byte {
	if m.mode == CacheWriteThrough || m.mode == CacheWriteBackBattery {
		return bytes.Clone(m.live)
	}
	if keep == KeepRandom || (keep == KeepAll && m.mode == CacheReorder) {
		return nil
	}
	out := bytes.Clone(m.durable)
	for _, r := range m.pending {
		if keep == KeepAll || (r.fua && m.mode != CacheIgnoreFUA) {
			m.apply(out, r)
		}
	}
	return out
}

// TestCacheModel drives LUNs of every cache mode with random writes, FUA
// writes, trims, zeroes, flushes and power cuts, against a model of what
// each mode must keep. A failure prints the seed; -cache.seed replays it.
func TestCacheModel(t *testing.T) {
	seed := *cacheSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./lun -run TestCacheModel -cache.seed %d)", seed, seed)
	ctx := context.Background()
	const size = 64 << 10
	for mode := CacheWriteThrough; mode <= CacheReorder; mode++ {
		t.Run(mode.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(mode)))
			a := newArray(t, Config{})
			limit := int64(48 << 10)
			l, err := a.Create("lun0", Options{Size: size, Cache: mode, CacheSize: limit})
			require.NoError(t, err)
			m := &cacheModel{mode: mode, limit: limit, durable: make([]byte, size), live: make([]byte, size)}
			for step := range 600 {
				off := int64(rng.IntN(size/512)) * 512
				n := min(int64(1+rng.IntN(16))*512, size-off)
				switch p := rng.IntN(100); {
				case p < 55:
					data := bytes.Repeat([]byte{byte(1 + rng.IntN(255))}, int(n))
					fua := rng.IntN(5) == 0
					require.NoError(t, l.WriteAt(ctx, data, off, fua))
					m.write(cacheRec{op: OpWrite, off: off, n: n, data: data, fua: fua})
				case p < 62:
					require.NoError(t, l.Trim(ctx, off, n))
					m.write(cacheRec{op: OpTrim, off: off, n: n})
				case p < 68:
					require.NoError(t, l.WriteZeroes(ctx, off, n, rng.IntN(2) == 0))
					m.write(cacheRec{op: OpZero, off: off, n: n})
				case p < 85:
					require.NoError(t, l.Flush(ctx))
					m.flush()
				default:
					keep := []Keep{KeepRandom, KeepNone, KeepAll, KeepWorst}[rng.IntN(4)]
					if keep == KeepWorst {
						keep = KeepNone // the same choice without tearing
					}
					res, err := l.PowerCut(ctx, PowerCutOptions{Keep: keep, Seed: rng.Uint64()})
					require.NoError(t, err)
					got := make([]byte, size)
					require.NoError(t, l.ReadAt(ctx, got, 0))
					if want := m.cut(keep); want != nil {
						require.Equal(t, want, got, "step %d: power cut keeping %v (%s)", step, keep, res)
					} else {
						// Any subset: each sector is the durable point's or
						// one a pending write put there (writes are whole
						// sectors of one byte value, so a sector's first byte
						// stands for it).
						for i := 0; i < size; i += 512 {
							require.Equal(t, bytes.Repeat(got[i:i+1], 512), got[i:i+512], "step %d: sector at %d is whole", step, i)
							ok := got[i] == m.durable[i]
							for _, r := range m.pending {
								if int64(i) >= r.off && int64(i) < r.off+r.n && (r.data == nil && got[i] == 0 || r.data != nil && got[i] == r.data[int64(i)-r.off]) {
									ok = true
								}
							}
							require.True(t, ok, "step %d: byte %d is %d after a random cut (%s)", step, i, got[i], res)
						}
					}
					copy(m.live, got)
					m.advance()
				}
			}
		})
	}
}

// TestPowerCut: the cut keeps the durable point and the FUA writes, says
// what it lost, tears when asked, and is refused where it means nothing.
func TestPowerCut(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack})
	require.NoError(t, err)
	require.Equal(t, CacheWriteBack, l.CacheMode())
	ones, twos, threes := bytes.Repeat([]byte{1}, 4096), bytes.Repeat([]byte{2}, 4096), bytes.Repeat([]byte{3}, 4096)
	require.NoError(t, l.WriteAt(ctx, ones, 0, false))
	require.NoError(t, l.Flush(ctx))
	require.NoError(t, l.WriteAt(ctx, twos, 0, false))     // lost
	require.NoError(t, l.WriteAt(ctx, threes, 8192, true)) // FUA: kept
	res, err := l.PowerCut(ctx, PowerCutOptions{Keep: KeepNone, Seed: 7})
	require.NoError(t, err)
	require.Equal(t, PowerCutResult{Mode: CacheWriteBack, Pending: 2, Kept: 1, Forced: 1, LostBytes: 4096, Seed: 7}, res)
	require.Contains(t, res.String(), "1 of 2 writes since the last durable point survived (1 with FUA, which had to); 4096 bytes lost")
	got := make([]byte, 12288)
	require.NoError(t, l.ReadAt(ctx, got, 0))
	require.Equal(t, ones, got[:4096])
	require.Equal(t, threes, got[8192:])

	// Torn: of a 4 KiB write, some 512-byte sectors survive.
	require.NoError(t, l.WriteAt(ctx, twos, 0, false))
	res, err = l.PowerCut(ctx, PowerCutOptions{Keep: KeepAll, Tear: true, Seed: 3})
	require.NoError(t, err)
	require.Equal(t, 1, res.Torn, "seed 3 tears the write")
	require.NoError(t, l.ReadAt(ctx, got[:4096], 0))
	var old, new int
	for s := 0; s < 8; s++ {
		switch got[s*512] {
		case 1:
			old++
		case 2:
			new++
		}
		require.Equal(t, got[s*512:s*512+512], bytes.Repeat([]byte{got[s*512]}, 512), "a sector is whole")
	}
	require.Equal(t, 8, old+new)
	require.NotZero(t, new)
	require.NotZero(t, old)

	plain := newLUN(t, a, "plain", mib)
	_, err = plain.PowerCut(ctx, PowerCutOptions{})
	require.ErrorIs(t, err, ErrNoCache)
	_, err = ParseCacheMode("sometimes")
	require.ErrorIs(t, err, ErrCacheMode)
	for m := CacheNone; m <= CacheReorder; m++ {
		back, err := ParseCacheMode(m.String())
		require.NoError(t, err)
		require.Equal(t, m, back)
	}

	// A deleted LUN gives its durable image back.
	require.NoError(t, a.Delete("lun0"))
	_, err = l.PowerCut(ctx, PowerCutOptions{})
	require.ErrorIs(t, err, ErrDeleted)
}

// TestPowerCutUnderLoad: cuts while writers run, under the race
// detector: the gate keeps every write whole, before the cut or after it.
func TestPowerCutUnderLoad(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack, CacheSize: 256 << 10})
	require.NoError(t, err)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			buf := bytes.Repeat([]byte{byte(w + 1)}, 4096)
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				off := int64((i*4+w)%256) * 4096
				if err := l.WriteAt(ctx, buf, off, false); err != nil {
					errs <- err
					return
				}
				if i%17 == 0 {
					if err := l.Flush(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for range 20 {
		_, err := l.PowerCut(ctx, PowerCutOptions{Keep: KeepRandom, Seed: 1})
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	close(done)
	for range 4 {
		require.NoError(t, <-errs)
	}
	got := make([]byte, mib)
	require.NoError(t, l.ReadAt(ctx, got, 0))
	for b := 0; b < 256; b++ {
		blk := got[b*4096 : (b+1)*4096]
		require.Equal(t, bytes.Repeat(blk[:1], 4096), blk, "block %d is one write's, whole", b)
	}
}

// TestCrashPoints: each FLUSH and mark is a crash point, kept up to the
// bound; a point exposed holds what a power cut then would have left.
func TestCrashPoints(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack, CrashPoints: 3})
	require.NoError(t, err)
	block := func(b byte) []byte { return bytes.Repeat([]byte{b}, 4096) }
	require.NoError(t, l.WriteAt(ctx, block(1), 0, false))
	require.NoError(t, l.Flush(ctx)) // point 1: 1
	require.NoError(t, l.WriteAt(ctx, block(2), 0, false))
	m, err := l.Mark("after-2") // point 2: 2, though not flushed
	require.NoError(t, err)
	require.Equal(t, CrashPoint{ID: 2, Kind: "mark", Label: "after-2", At: m.At, Writes: 1}, m)
	require.NoError(t, l.WriteAt(ctx, block(3), 0, false))
	require.NoError(t, l.Flush(ctx)) // point 3: 3
	require.NoError(t, l.WriteAt(ctx, block(4), 0, false))
	require.NoError(t, l.Flush(ctx)) // point 4: 4; point 1 dropped
	pts := l.CrashPoints()
	require.Len(t, pts, 3)
	require.Equal(t, []int{2, 3, 4}, []int{pts[0].ID, pts[1].ID, pts[2].ID})

	for id, want := range map[int]byte{2: 2, 3: 3, 4: 4} {
		name := fmt.Sprintf("at%d", id)
		p, err := a.ExposeCrashPoint("lun0", id, name, false)
		require.NoError(t, err)
		got := make([]byte, 4096)
		require.NoError(t, p.ReadAt(ctx, got, 0))
		require.Equal(t, block(want), got, "point %d", id)
		require.ErrorIs(t, p.WriteAt(ctx, got, 0, false), ErrReadOnly)
		require.NoError(t, a.Delete(name))
	}
	w, err := a.ExposeCrashPoint("lun0", 3, "w3", true)
	require.NoError(t, err)
	require.NoError(t, w.WriteAt(ctx, block(9), 0, false), "a writable point, for a journal replay")
	got := make([]byte, 4096)
	require.NoError(t, l.ReadAt(ctx, got, 0))
	require.Equal(t, block(4), got, "the source is untouched")
	_, err = a.ExposeCrashPoint("lun0", 1, "gone", false)
	require.ErrorIs(t, err, ErrNoCrashPoint)
	_, err = l.Mark("no spaces")
	require.ErrorContains(t, err, "labels are")
	plain := newLUN(t, a, "plain", mib)
	_, err = plain.Mark("x")
	require.ErrorIs(t, err, ErrNoCache)

	// ignore-flush: a FLUSH point is the durable point, which FLUSH never
	// moves.
	bad, err := a.Create("bad", Options{Size: mib, Cache: CacheIgnoreFlush, CrashPoints: 8})
	require.NoError(t, err)
	require.NoError(t, bad.WriteAt(ctx, block(5), 0, false))
	require.NoError(t, bad.Flush(ctx))
	p, err := a.ExposeCrashPoint("bad", bad.CrashPoints()[0].ID, "bad-at", false)
	require.NoError(t, err)
	require.NoError(t, p.ReadAt(ctx, got, 0))
	require.Equal(t, make([]byte, 4096), got, "the FLUSH persisted nothing")
}

// BenchmarkPowerCut is lun powercut of a 1 GiB write-back LUN holding
// 10 000 4 KiB writes since its last FLUSH, keeping a random half: the
// revert to the durable image and the replay of what survives.
func BenchmarkPowerCut(b *testing.B) {
	ctx := context.Background()
	a := newArray(b, Config{})
	l, err := a.Create("lun0", Options{Size: 1 << 30, Cache: CacheWriteBack, CacheSize: 1 << 30})
	require.NoError(b, err)
	buf := bytes.Repeat([]byte{7}, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		b.StopTimer()
		for range 10000 {
			require.NoError(b, l.WriteAt(ctx, buf, int64(rng.IntN(1<<18))*4096, false))
		}
		b.StartTimer()
		res, err := l.PowerCut(ctx, PowerCutOptions{Keep: KeepRandom, Seed: rng.Uint64()})
		require.NoError(b, err)
		require.Equal(b, 10000, res.Pending)
	}
}

// TestPowerFault: a power fault cuts at the nth write, exactly: that
// write lands (write-through keeps it), the writes after it fail, and
// the cut is what PowerCut leaves.
func TestPowerFault(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		mode CacheMode
		// want is the first byte of each of the 6 blocks after the cut
		// at the 4th write, the 2nd having been followed by a FLUSH.
		want [6]byte
	}{
		{CacheWriteThrough, [6]byte{1, 2, 3, 4, 0, 0}},
		{CacheWriteBack, [6]byte{1, 2, 0, 0, 0, 0}},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			a := newArray(t, Config{})
			l, err := a.Create("lun0", Options{Size: mib, Cache: tc.mode})
			require.NoError(t, err)
			// conn stands for the writer's NBD connection, which the
			// cut drops first.
			conn, drop := context.WithCancel(ctx)
			defer drop()
			done := make(chan PowerCutResult, 1)
			l.SetFaults(Only(l.PowerFault(4, func(h *Hold) {
				go func() {
					drop()
					res, err := l.PowerCut(ctx, PowerCutOptions{Keep: KeepNone, Seed: 1})
					require.NoError(t, err)
					l.SetFaults(nil)
					require.NoError(t, h.Release())
					done <- res
				}()
			}), OpWrite))
			var errs []error
			for i := range 6 {
				errs = append(errs, l.WriteAt(conn, bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096, false))
				if i == 1 {
					require.NoError(t, l.Flush(conn), "flushes are not counted")
				}
			}
			res := <-done
			require.NoError(t, errors.Join(errs[:4]...), "writes up to the 4th land")
			require.ErrorIs(t, errs[4], context.Canceled, "queued at the gate the cut closed, on a dropped connection")
			require.ErrorIs(t, errs[5], context.Canceled)
			require.Equal(t, tc.mode, res.Mode)
			got := make([]byte, 6*4096)
			require.NoError(t, l.ReadAt(ctx, got, 0))
			for i, b := range tc.want {
				require.Equal(t, bytes.Repeat([]byte{b}, 4096), got[i*4096:(i+1)*4096], "block %d after the cut (%s)", i, res)
			}
			require.NoError(t, l.WriteAt(ctx, got[:4096], 0, false), "the power is back")
		})
	}

	// Operations admitted beside the nth, before the gate closed, meet
	// the injector after it: the power is off, and they fail.
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack})
	require.NoError(t, err)
	var hold *Hold
	inj := l.PowerFault(2, func(h *Hold) { hold = h })
	require.NoError(t, inj.Inject(ctx, OpWrite))
	require.Nil(t, hold)
	require.NoError(t, inj.Inject(ctx, OpWrite), "the nth lands")
	require.NotNil(t, hold)
	require.True(t, l.Gate().Held(), "nothing admitted after the nth lands before the cut")
	require.ErrorIs(t, inj.Inject(ctx, OpWrite), EIO)
	require.NoError(t, hold.Release())
}

// TestPowerCutHeld: a LUN held by flush & hold is cut at once, without
// waiting for the hold: the held gate admits nothing, so nothing is in
// flight. A write queued at the gate is the lun package's to admit after
// the release, and lands after the cut; the daemon drops its connection
// first, so there it fails instead.
func TestPowerCutHeld(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack})
	require.NoError(t, err)
	require.NoError(t, l.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false))
	h, err := l.Hold(ctx, time.Minute)
	require.NoError(t, err)
	queued := make(chan error, 1)
	go func() { queued <- l.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 4096, false) }()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	res, err := l.PowerCut(cctx, PowerCutOptions{Keep: KeepNone})
	require.NoError(t, err)
	require.Less(t, time.Since(start), time.Second, "the cut does not wait for the hold")
	require.Equal(t, 1, res.Pending, "the write before the hold; the queued one has not landed")
	require.True(t, l.Gate().Held(), "the cut leaves the hold in place")
	select {
	case err := <-queued:
		t.Fatalf("the queued write passed a held gate: %v", err)
	default:
	}
	require.NoError(t, h.Release())
	require.NoError(t, <-queued)
	got := make([]byte, 8192)
	require.NoError(t, l.ReadAt(ctx, got, 0))
	require.Equal(t, make([]byte, 4096), got[:4096], "the unflushed write before the hold is lost")
	require.Equal(t, bytes.Repeat([]byte{2}, 4096), got[4096:], "the queued write landed after the cut")
}

// TestCacheUse: the log's writes and bytes and the crash points against
// their bounds.
func TestCacheUse(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack, CacheSize: 1 << 20, CrashPoints: 2})
	require.NoError(t, err)
	u, ok := l.CacheUse()
	require.True(t, ok)
	require.Equal(t, CacheUse{Mode: CacheWriteBack, MaxBytes: 1 << 20, MaxPoints: 2}, u)
	require.NoError(t, l.WriteAt(ctx, make([]byte, 4096), 0, false))
	require.NoError(t, l.Trim(ctx, 0, 4096))
	u, _ = l.CacheUse()
	require.Equal(t, CacheUse{Mode: CacheWriteBack, Pending: 2, Bytes: 4096 + 2*64, MaxBytes: 1 << 20, MaxPoints: 2}, u)
	for range 3 {
		require.NoError(t, l.Flush(ctx))
	}
	u, _ = l.CacheUse()
	require.Equal(t, CacheUse{Mode: CacheWriteBack, Points: 2, MaxBytes: 1 << 20, MaxPoints: 2}, u)
	_, ok = newLUN(t, a, "plain", mib).CacheUse()
	require.False(t, ok)
}

// TestCrashPointErrors: a point that is gone, one not made yet, a LUN
// that keeps none and a bad label each say which and why.
func TestCrashPointErrors(t *testing.T) {
	ctx := context.Background()
	a := newArray(t, Config{})
	l, err := a.Create("lun0", Options{Size: mib, Cache: CacheWriteBack, CrashPoints: 2})
	require.NoError(t, err)
	_, err = a.ExposeCrashPoint("lun0", 1, "x", false)
	require.ErrorIs(t, err, ErrNoCrashPoint)
	require.ErrorContains(t, err, "LUN lun0 has no point 1: it has made none yet")
	for range 3 {
		require.NoError(t, l.Flush(ctx))
	}
	_, err = a.ExposeCrashPoint("lun0", 1, "x", false)
	require.ErrorIs(t, err, ErrNoCrashPoint)
	require.ErrorContains(t, err, "LUN lun0 has no point 1: it was dropped past the bound of 2; points 2 to 3 are kept")
	_, err = a.ExposeCrashPoint("lun0", 7, "x", false)
	require.ErrorContains(t, err, "LUN lun0 has no point 7: the newest is 3")
	_, err = a.Create("wb", Options{Size: mib, Cache: CacheWriteBack})
	require.NoError(t, err)
	_, err = a.ExposeCrashPoint("wb", 1, "x", false)
	require.ErrorContains(t, err, "LUN wb has no point 1: it keeps no crash points")
	for _, label := range []string{"", "no spaces", "slash/", string(bytes.Repeat([]byte{'a'}, 256))} {
		_, err = l.Mark(label)
		require.ErrorIs(t, err, ErrBadLabel, "%q", label)
		require.ErrorContains(t, err, "LUN lun0: mark ")
	}
	_, err = a.Get("x")
	require.ErrorIs(t, err, ErrNotFound, "no failed expose left a LUN behind")
}
