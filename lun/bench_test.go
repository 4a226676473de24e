package lun

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHold measures Hold (close the gate and drain) plus Release with
// 0 and 8 writers issuing 4 KiB writes. p50-ns and p99-ns are the
// per-hold latencies of Hold alone, the figure nbdkit's pause filter is
// compared on; ns/op includes Release and the writers' share of the CPU.
func BenchmarkHold(b *testing.B) {
	for _, writers := range []int{0, 8} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			a, _ := NewArray(Config{})
			l, _ := a.Create("lun0", Options{Size: 256 * mib})
			ctx := context.Background()
			var stop atomic.Bool
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					p := make([]byte, 4096)
					r := rand.New(rand.NewPCG(uint64(w), 2))
					for !stop.Load() {
						_ = l.WriteAt(ctx, p, r.Int64N(256*mib/4096)*4096, false)
					}
				})
			}
			lat := make([]int64, 0, 1<<16)
			for b.Loop() {
				start := time.Now()
				h, err := l.Hold(ctx, time.Minute)
				lat = append(lat, int64(time.Since(start)))
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Release(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
		})
	}
}
