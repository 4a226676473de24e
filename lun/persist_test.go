package lun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/lun/durable"
)

const durableCap = 256 * mib

func openArray(t testing.TB, dir string) *Array {
	t.Helper()
	a, err := Open(dir, Config{Capacity: durableCap})
	require.NoError(t, err)
	return a
}

// crash closes a durable array without a flush, as a kill leaves it.
func crash(t testing.TB, a *Array) {
	t.Helper()
	for _, l := range a.List() {
		l.gate.shut()
	}
	require.NoError(t, a.db.Close())
}

func readAll(t testing.TB, l *LUN) []byte {
	t.Helper()
	p := make([]byte, l.Size())
	require.NoError(t, l.ReadAt(context.Background(), p, 0))
	return p
}

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// TestDurableRestart checks that every kind of LUN comes back from its
// data directory with its identity, flags, lineage and data (D1-D3).
func TestDurableRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openArray(t, dir)
	require.True(t, a.Durable())
	want := NewIdentity(ProductLUN)
	want.Serial = "SERIAL-0001"
	src, err := a.Create("src", Options{Size: 4 * mib, BlockSize: 4096, Identity: &want})
	require.NoError(t, err)
	other, err := a.Create("other", Options{Size: 2 * mib, ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, src.WriteAt(ctx, fill('a', 8192), 0, false))
	snap1, err := a.Snapshot("src", "src.s1")
	require.NoError(t, err)
	require.NoError(t, src.WriteAt(ctx, fill('b', 4096), 4096, false))

	// A set of one LUN committed through a group, then unmasked.
	g := a.NewSnapshotGroup()
	p, err := g.Prepare("src", "src.s2")
	require.NoError(t, err)
	require.NoError(t, g.CommitAt(time.Now()))
	snap2 := p.LUN()
	require.NoError(t, snap2.SetMasked(false))

	clone, err := a.Clone("src.s1", "src.c1")
	require.NoError(t, err)
	require.NoError(t, clone.WriteAt(ctx, fill('c', 512), mib, true /* fua */))
	broken, err := a.Snapshot("src", "src.s3")
	require.NoError(t, err)
	require.NoError(t, broken.MakeWritable())
	require.NoError(t, broken.WriteAt(ctx, fill('d', 512), 0, false))
	require.NoError(t, src.WriteAt(ctx, fill('e', 512), 3*mib, false))
	require.NoError(t, a.Flush())
	// Not flushed, into a grain the snapshots share: a copy, which the
	// crash loses.
	require.NoError(t, src.WriteAt(ctx, fill('x', 512), 0, false))
	// Not flushed, over a grain only src has: written in place into the
	// block the map names, so the crash may keep it, as a disk's cache
	// may have written it back (cow's C8).
	require.NoError(t, src.WriteAt(ctx, fill('y', 512), 3*mib, false))

	wantData := map[string][]byte{}
	for _, l := range a.List() {
		wantData[l.Name()] = readAll(t, l)
	}
	copy(wantData["src"], fill('a', 512))
	crash(t, a)

	a = openArray(t, dir)
	defer func() { require.NoError(t, a.Close()) }()
	var names []string
	for _, l := range a.List() {
		names = append(names, l.Name())
		got := readAll(t, l)
		if l.Name() == "src" && bytes.Equal(got[3*mib:3*mib+512], fill('e', 512)) {
			copy(got[3*mib:], fill('y', 512)) // the older content is as right
		}
		require.Equal(t, wantData[l.Name()], got, "%s's data", l.Name())
	}
	require.Equal(t, []string{"other", "src", "src.c1", "src.s1", "src.s2", "src.s3"}, names)

	src2, _ := a.Get("src")
	require.Equal(t, want, src2.Identity())
	require.Equal(t, 4096, src2.BlockSize())
	require.Equal(t, Original, src2.Kind())
	o2, _ := a.Get("other")
	require.True(t, o2.ReadOnly())
	require.Equal(t, other.Identity(), o2.Identity())
	s1, _ := a.Get("src.s1")
	require.Equal(t, Snapshot, s1.Kind())
	require.True(t, s1.ReadOnly())
	require.True(t, s1.Masked())
	require.Same(t, src2, s1.Parent())
	require.Equal(t, snap1.Identity(), s1.Identity())
	require.True(t, snap1.Created().Equal(s1.Created()))
	s2, _ := a.Get("src.s2")
	require.False(t, s2.Masked())
	s3, _ := a.Get("src.s3")
	require.False(t, s3.ReadOnly())
	c1, _ := a.Get("src.c1")
	require.Equal(t, Clone, c1.Kind())
	require.Same(t, s1, c1.Parent())

	// Changed-block tracking runs on the rebuilt chain: s2 differs from
	// s1 in the second 4 KiB.
	ranges, err := s2.Changed(ctx, 0, s2.Size())
	require.NoError(t, err)
	require.Len(t, ranges, 1)
	require.EqualValues(t, 4096, ranges[0].Off)

	// And the rebuilt array goes on: revert, delete, restart again.
	require.NoError(t, a.Revert("src", "src.s1"))
	require.NoError(t, a.Delete("src.s2"))
	require.NoError(t, a.Delete("other"))
	crash(t, a)
	a = openArray(t, dir)
	src3, err := a.Get("src")
	require.NoError(t, err)
	require.Equal(t, readAll(t, s1), readAll(t, src3))
	_, err = a.Get("src.s2")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = a.Get("other")
	require.ErrorIs(t, err, ErrNotFound)
}

// TestDurableLocked checks that a data directory serves one array at a
// time.
func TestDurableLocked(t *testing.T) {
	dir := t.TempDir()
	a := openArray(t, dir)
	defer a.Close()
	_, err := Open(dir, Config{Capacity: durableCap})
	require.ErrorIs(t, err, durable.ErrLocked)
	require.Contains(t, err.Error(), dir)
}

// TestDurableCatalogue checks records written beside the LUNs.
func TestDurableCatalogue(t *testing.T) {
	dir := t.TempDir()
	a := openArray(t, dir)
	require.NoError(t, a.PutRecord("sets", "k", []byte("v")))
	require.Error(t, a.PutRecord(lunsBucket, "k", []byte("v")))
	crash(t, a)
	a = openArray(t, dir)
	defer a.Close()
	recs, err := a.Records("sets")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"k": []byte("v")}, recs)
}

// TestDurableNotFlushedCreate checks that a LUN exists once Create
// returns, with or without a flush, and that its data is not there until
// one.
func TestDurableNotFlushedCreate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openArray(t, dir)
	l := newLUN(t, a, "x", mib)
	require.NoError(t, l.WriteAt(ctx, fill('q', 4096), 0, false))
	crash(t, a)
	a = openArray(t, dir)
	defer a.Close()
	l, err := a.Get("x")
	require.NoError(t, err)
	require.Equal(t, make([]byte, mib), readAll(t, l))
	if _, err := Open(dir+"/nested", Config{}); err == nil || errors.Is(err, durable.ErrLocked) {
		t.Fatalf("open without a capacity: %v", err)
	}
}

// TestFlushAll: one flush of a group of LUNs makes every write completed
// before it on each durable, as the coordinator's FlushAndHold asks.
func TestFlushAll(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := openArray(t, dir)
	var luns []*LUN
	for i := range 4 {
		l, err := a.Create(fmt.Sprintf("l%d", i), Options{Size: 1 << 20})
		require.NoError(t, err)
		require.NoError(t, l.WriteAt(ctx, fill(byte(i+1), 64<<10), int64(i)<<16, false))
		luns = append(luns, l)
	}
	require.NoError(t, FlushAll(ctx, luns))
	for _, l := range luns {
		require.EqualValues(t, 1, l.Stats()[OpFlush].Ops, "each LUN counts its flush")
	}
	crash(t, a)
	a = openArray(t, dir)
	defer a.Close()
	for i := range 4 {
		l, err := a.Get(fmt.Sprintf("l%d", i))
		require.NoError(t, err)
		got := readAll(t, l)
		require.Equal(t, fill(byte(i+1), 64<<10), got[i<<16:(i+1)<<16], "LUN %s", l.Name())
	}

	// An in-memory array's LUNs flush too.
	m, err := NewArray(Config{})
	require.NoError(t, err)
	l, err := m.Create("m", Options{Size: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, FlushAll(ctx, []*LUN{l}))
}

// TestDurableThick checks that a LUN's provisioning survives a restart,
// that the thick LUNs' sizes are set against the capacity again after it,
// and that a record written before LUNs could be thick reads as thin.
func TestDurableThick(t *testing.T) {
	dir := t.TempDir()
	a := openArray(t, dir)
	_, err := a.Create("thick", Options{Size: 200 * mib})
	require.NoError(t, err)
	_, err = a.Create("thin", Options{Size: 1 << 30, Thin: true})
	require.NoError(t, err)
	_, err = a.Create("over", Options{Size: 1 << 30})
	require.ErrorIs(t, err, ErrCapacity)
	crash(t, a)

	a = openArray(t, dir)
	thick, err := a.Get("thick")
	require.NoError(t, err)
	thin, err := a.Get("thin")
	require.NoError(t, err)
	require.False(t, thick.Thin())
	require.True(t, thin.Thin())
	require.Equal(t, Provisioning{ThickBytes: 200 * mib, ThinBytes: 1 << 30}, a.Provisioned())
	var ce *CapacityError
	_, err = a.Create("more", Options{Size: 100 * mib})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, CapacityError{LUN: "more", Size: 100 * mib, Capacity: durableCap, Provisioned: 200 * mib}, *ce)

	// The record of "thick" as an older version wrote it: no "thick".
	recs, err := a.db.Records(lunsBucket)
	require.NoError(t, err)
	var r map[string]any
	require.NoError(t, json.Unmarshal(recs["thick"], &r))
	require.Equal(t, true, r["thick"])
	delete(r, "thick")
	old, err := json.Marshal(r)
	require.NoError(t, err)
	require.NoError(t, a.db.Put(durable.Edit{Bucket: lunsBucket, Key: "thick", Value: old}))
	crash(t, a)

	a = openArray(t, dir)
	defer a.Close()
	thick, err = a.Get("thick")
	require.NoError(t, err)
	require.True(t, thick.Thin(), "a record without the field is thin, as every LUN was before")
	require.Equal(t, Provisioning{ThinBytes: 200*mib + 1<<30}, a.Provisioned())
	_, err = a.Create("more", Options{Size: 100 * mib})
	require.NoError(t, err)
}
