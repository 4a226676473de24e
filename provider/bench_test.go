package provider_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// BenchmarkCommitSnapshots measures CommitSnapshots over 1, 16 and 64 LUNs
// of 64 MiB while two goroutines write 4 KiB blocks to them. Each iteration
// prepares a set (one volume per LUN, as VSS adds them), then, with
// hold=true, holds every LUN's gate as flush & hold does around the commit
// (vss-spec.md A.7f-h), calls CommitSnapshots, releases, and aborts the set
// to delete its snapshot LUNs. With hold=false the commit also waits for
// the writes in flight on each LUN to drain (cow C3), which is what a
// commit outside the VSS sequence costs.
//
// p50-ns and p99-ns are the latencies of the CommitSnapshots calls alone
// (the target is a median under 5 µs at 64 LUNs under hold); swap-p50-ns is
// the provider's own CommitDuration, the pointer swaps without the state
// machine. ns/op is the whole iteration, preparation and clean-up included:
// toggling the timer around the commit would cost a stop-the-world per
// iteration, more than the commit itself. Names are benchstat-friendly:
// luns=64/hold=true.
func BenchmarkCommitSnapshots(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		for _, hold := range []bool{true, false} {
			b.Run(fmt.Sprintf("luns=%d/hold=%t", n, hold), func(b *testing.B) { benchCommit(b, n, hold) })
		}
	}
}

func benchCommit(b *testing.B, n int, hold bool) {
	ctx := context.Background()
	const size = 64 * mib
	a, err := lun.NewArray(lun.Config{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := provider.NewArray(a, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	luns := make([]*lun.LUN, n)
	infos := make([]provider.LunInfo, n)
	for i := range luns {
		if luns[i], err = a.Create(fmt.Sprintf("lun%d", i), lun.Options{Size: size}); err != nil {
			b.Fatal(err)
		}
		infos[i] = provider.LunInfoOf(luns[i])
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			buf := make([]byte, 4096)
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for !stop.Load() {
				l := luns[r.IntN(n)]
				_ = l.WriteAt(ctx, buf, r.Int64N(size/4096)*4096, false)
			}
		})
	}

	lat := make([]int64, 0, 1<<16)
	holds := make([]*lun.Hold, n)
	for b.Loop() {
		set := vss.NewID()
		for i := range luns {
			if err := p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, []string{luns[i].Name()}, infos[i:i+1]); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.EndPrepareSnapshots(ctx, set); err != nil {
			b.Fatal(err)
		}
		if err := p.PreCommitSnapshots(ctx, set); err != nil {
			b.Fatal(err)
		}
		if hold {
			for i, l := range luns {
				if holds[i], err = l.Hold(ctx, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		}

		start := time.Now()
		err := p.CommitSnapshots(ctx, set)
		lat = append(lat, int64(time.Since(start)))
		if err != nil {
			b.Fatal(err)
		}

		if hold {
			for _, h := range holds {
				if err := h.Release(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := p.AbortSnapshots(ctx, set); err != nil { // deletes the snapshot LUNs
			b.Fatal(err)
		}
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	reportCommits(b, lat, p)
}

// BenchmarkCommitSnapshotsDurable measures CommitSnapshots over 1, 16 and
// 64 LUNs of 64 MiB of a durable array (lun.Open) in the test's temporary
// directory, which must be on the disk being measured rather than tmpfs
// (TMPDIR chooses it). Before each set, writes=16 random 4 KiB blocks go
// into every LUN, so that every commit has maps to write down: a write
// after a commit copies the grain the last snapshot shares, which changes
// the map. The commit is an fdatasync of the data file, then one
// transaction of meta.db (D2), whose commit is two more. With flush=false
// the data file's fdatasync writes back the writes of the set (4 MiB at 64
// LUNs), which is what a commit costs after writes no FLUSH covered; with
// flush=true an array Flush comes first, as the FLUSH of a file system
// being frozen does in the VSS sequence, and what is left is the commit's
// own cost. The target is a median under 1 ms at 64 LUNs. The gates are
// held around the commit, as in the VSS sequence; metrics and ns/op mean
// what they do in BenchmarkCommitSnapshots. There are no concurrent
// writers: their data would make one commit's fdatasync longer than
// another's for reasons other than the commit.
func BenchmarkCommitSnapshotsDurable(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		for _, flush := range []bool{false, true} {
			b.Run(fmt.Sprintf("luns=%d/writes=16/flush=%t", n, flush), func(b *testing.B) { benchCommitDurable(b, n, 16, flush) })
		}
	}
}

func benchCommitDurable(b *testing.B, n, writes int, flush bool) {
	ctx := context.Background()
	const size = 64 * mib
	a, err := lun.Open(b.TempDir(), lun.Config{Capacity: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	p, err := provider.NewArray(a, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	luns := make([]*lun.LUN, n)
	infos := make([]provider.LunInfo, n)
	for i := range luns {
		if luns[i], err = a.Create(fmt.Sprintf("lun%d", i), lun.Options{Size: size}); err != nil {
			b.Fatal(err)
		}
		infos[i] = provider.LunInfoOf(luns[i])
	}

	buf := make([]byte, 4096)
	r := rand.New(rand.NewPCG(uint64(n), 5))
	lat := make([]int64, 0, 1<<12)
	holds := make([]*lun.Hold, n)
	for b.Loop() {
		for _, l := range luns {
			for range writes {
				buf[0]++
				if err := l.WriteAt(ctx, buf, r.Int64N(size/4096)*4096, false); err != nil {
					b.Fatal(err)
				}
			}
		}
		if flush {
			if err := a.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		set := vss.NewID()
		for i := range luns {
			if err := p.BeginPrepareSnapshot(ctx, set, vss.NewID(), vss.VSS_CTX_BACKUP, []string{luns[i].Name()}, infos[i:i+1]); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.EndPrepareSnapshots(ctx, set); err != nil {
			b.Fatal(err)
		}
		if err := p.PreCommitSnapshots(ctx, set); err != nil {
			b.Fatal(err)
		}
		for i, l := range luns {
			if holds[i], err = l.Hold(ctx, time.Minute); err != nil {
				b.Fatal(err)
			}
		}

		start := time.Now()
		err := p.CommitSnapshots(ctx, set)
		lat = append(lat, int64(time.Since(start)))
		if err != nil {
			b.Fatal(err)
		}

		for _, h := range holds {
			if err := h.Release(); err != nil {
				b.Fatal(err)
			}
		}
		if err := p.AbortSnapshots(ctx, set); err != nil { // deletes the snapshot LUNs
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCommits(b, lat, p)
}

// reportCommits reports the p50 and p99 of the CommitSnapshots latencies
// measured, and the provider's own median of its pointer swaps.
func reportCommits(b *testing.B, lat []int64, p *provider.ArrayProvider) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
	b.ReportMetric(float64(p.CommitStats().P50), "swap-p50-ns")
}
