package bench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSequence measures a whole DoSnapshotSet (vss-spec.md A.7) with
// 4 writers and 16 LUNs and no injected delay, from the call to the
// return of Async.Wait. The rest of the requester's conversation runs
// outside the timer. Commit alone is cow's and provider's BenchmarkCommit.
func BenchmarkSequence(b *testing.B) {
	ctx := context.Background()
	rg, err := newRig(ctx, rigConfig{LUNs: 16, LUNSize: 64 << 20, Writers: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer rg.Close()
	benchSets(b, rg)
}

// benchSets times DoSnapshotSet on rg, one set per iteration, and reports
// the mean and the median and p99 per set.
func benchSets(b *testing.B, rg *rig) {
	ctx := context.Background()
	h := NewHistogram()
	var total time.Duration
	for b.Loop() {
		s, err := rg.snapshotSet(ctx)
		if err != nil {
			b.Fatal(err)
		}
		h.Record(s.total())
		total += s.total()
	}
	b.ReportMetric(0, "ns/op") // the requester's other calls would inflate it
	b.ReportMetric(float64(total)/float64(b.N), "ns/set")
	b.ReportMetric(float64(h.Quantile(50)), "p50-ns")
	b.ReportMetric(float64(h.Quantile(99)), "p99-ns")
}

// BenchmarkSequenceRemote is BenchmarkSequence across three arrays reached
// over the provider protocol on 127.0.0.1 (bench sequence --remote).
func BenchmarkSequenceRemote(b *testing.B) {
	ctx := context.Background()
	rg, err := newRemoteRig(ctx, rigConfig{LUNs: 16, LUNSize: 64 << 20, Writers: 4}, 3, &callLog{})
	if err != nil {
		b.Fatal(err)
	}
	defer rg.Close()
	benchSets(b, rg)
}
