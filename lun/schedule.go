package lun

import (
	"context"
	"fmt"
	"time"
)

// ScheduleResult counts what a snapshot schedule did.
type ScheduleResult struct {
	Taken   int
	Deleted int
	Errors  int
}

// SnapshotEvery snapshots the named LUNs every interval until ctx ends,
// as an array's snapshot schedule does, keeping the newest keep snapshots
// of each (at least 1) and deleting older ones. On return the snapshots it
// still keeps are deleted too, so a schedule leaves the array as it found
// it. Errors (a LUN deleted meanwhile, the snapshot limit) are counted and
// the schedule goes on.
func (a *Array) SnapshotEvery(ctx context.Context, interval time.Duration, keep int, names ...string) (res ScheduleResult) {
	keep = max(keep, 1)
	kept := make(map[string][]string, len(names))
	del := func(name string) {
		if err := a.Delete(name); err == nil {
			res.Deleted++
		}
	}
	defer func() {
		for _, snaps := range kept {
			for _, s := range snaps {
				del(s)
			}
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return res
		case <-t.C:
		}
		for _, name := range names {
			s, err := a.Snapshot(name, fmt.Sprintf("%s.sched-%d", name, n))
			if err != nil {
				res.Errors++
				continue
			}
			res.Taken++
			kept[name] = append(kept[name], s.Name())
			for len(kept[name]) > keep {
				del(kept[name][0])
				kept[name] = kept[name][1:]
			}
		}
	}
}
