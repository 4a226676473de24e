package cow

import (
	"testing"
	"time"
)

// BenchmarkCommitGroup64 measures committing a group of 64 quiet volumes:
// the floor of a 64-LUN CommitSnapshots.
func BenchmarkCommitGroup64(b *testing.B) {
	s, _ := NewMemStore(DefaultGrain, 0)
	vols := make([]*Volume, 64)
	for i := range vols {
		vols[i], _ = NewVolume(s, gib)
		_, _ = vols[i].WriteAt(make([]byte, 4096), int64(i)*4096)
	}
	var lat []int64
	for b.Loop() {
		b.StopTimer()
		g := NewGroup()
		for _, v := range vols {
			if err := join(g, v); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		imgs, err := g.Commit()
		lat = append(lat, int64(time.Since(start)))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		for _, img := range imgs {
			_ = img.Release()
		}
		b.StartTimer()
	}
	reportPercentiles(b, lat)
}
