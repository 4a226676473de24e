package cow

import (
	"testing"
	"time"
)

// BenchmarkCommitPrepared64 measures committing 64 prepared snapshots of
// quiet volumes in a row: the floor of a 64-LUN CommitSnapshots.
func BenchmarkCommitPrepared64(b *testing.B) {
	s, _ := NewMemStore(DefaultGrain, 0)
	vols := make([]*Volume, 64)
	for i := range vols {
		vols[i], _ = NewVolume(s, gib)
		_, _ = vols[i].WriteAt(make([]byte, 4096), int64(i)*4096)
	}
	preps := make([]*PreparedSnapshot, 64)
	var lat []int64
	for b.Loop() {
		b.StopTimer()
		for i, v := range vols {
			preps[i] = v.PrepareSnapshot()
		}
		b.StartTimer()
		start := time.Now()
		for _, p := range preps {
			img, _ := p.Commit()
			_ = img
		}
		lat = append(lat, int64(time.Since(start)))
		b.StopTimer()
		for _, p := range preps {
			_ = p.img.Release()
		}
		b.StartTimer()
	}
	reportPercentiles(b, lat)
}
