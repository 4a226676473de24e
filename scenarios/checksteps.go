package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"reflect"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shadowbench/shadowbench/provider"
)

// ---- store-bytes ----

// checkStoreBytes marks or bounds the array's data memory.
func (r *runner) checkStoreBytes(c *storeBytesCheck, fail func(expected, got string)) {
	now := r.array.StoreStats().DataBytes
	r.mu.Lock()
	if c.mark != "" {
		r.mu.marks[c.mark] = now
	}
	limit := func(size int64, mark string) (int64, string) {
		if mark == "" {
			return size, fmtBytes(size)
		}
		return r.mu.marks[mark], fmt.Sprintf("%s (mark %s)", fmtBytes(r.mu.marks[mark]), mark)
	}
	maxV, maxS := limit(c.max, c.maxMark)
	minV, minS := limit(c.min, c.minMark)
	r.mu.Unlock()
	if c.hasMax && now > maxV {
		fail("the array's data memory at most "+maxS, fmtBytes(now))
	}
	if c.hasMin && now < minV {
		fail("the array's data memory at least "+minS, fmtBytes(now))
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB (%d bytes)", float64(n)/(1<<20), n)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB (%d bytes)", float64(n)/(1<<10), n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ---- goroutines ----

// runLabel is the pprof label every goroutine a run starts carries: the
// runner's own, and, since goroutines inherit their creator's labels, the
// service's, the providers', the NBD server's and the load's. Counting the
// process's goroutines (runtime.NumGoroutine) was rejected: scenarios run
// in parallel, and the count would be theirs too.
const runLabel = "shadowbench-scenario-run"

var runIDs atomic.Int64

// withRunLabel runs fn with the run's label set on the goroutine.
func (r *runner) withRunLabel(ctx context.Context, fn func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(runLabel, r.runID), fn)
}

// runGoroutines counts the goroutines that carry the run's label, and
// returns the stack of each group of them.
func (r *runner) runGoroutines() (int, []string) {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return 0, nil
	}
	want := fmt.Sprintf("%q:%q", runLabel, r.runID)
	n := 0
	var stacks []string
	var count int
	var group []string
	flush := func() {
		if len(group) > 1 && strings.Contains(group[1], want) {
			n += count
			stacks = append(stacks, fmt.Sprintf("%d x %s", count, firstFrame(group)))
		}
		group = nil
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if c, _, ok := strings.Cut(line, " @ "); ok && !strings.HasPrefix(line, "#") {
			flush()
			count, _ = strconv.Atoi(c)
		}
		if line != "" {
			group = append(group, line)
		}
	}
	flush()
	return n, stacks
}

// firstFrame is the first function of a goroutine group's stack outside
// the runtime, which names what the goroutines wait in.
func firstFrame(group []string) string {
	for _, l := range group {
		f := strings.Fields(strings.TrimPrefix(l, "#"))
		if len(f) >= 2 && !strings.HasPrefix(f[1], "runtime.") && !strings.HasPrefix(f[1], "internal/") && strings.Contains(f[1], ".") {
			return f[1]
		}
	}
	return "?"
}

// goroutineSettle is how long, in real time, a goroutines check waits for
// the run's goroutines to come back to their number: what an abort started
// may still be returning.
const goroutineSettle = 2 * time.Second

func (r *runner) checkGoroutines(fail func(expected, got string)) {
	deadline := time.Now().Add(goroutineSettle)
	for {
		n, stacks := r.runGoroutines()
		if n <= r.baseGoroutines {
			return
		}
		if time.Now().After(deadline) {
			fail(fmt.Sprintf("at most %d goroutines of the run, as when the step before began", r.baseGoroutines),
				fmt.Sprintf("%d after %v: %s", n, goroutineSettle, strings.Join(stacks, ", ")))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- lun-info ----

// checkLunInfo asks each target LUN's provider for FillInLunInfo and
// compares its answer with the VDS_LUN_INFORMATION GetTargetLuns gave for
// the same LUN, field by field, and with the fields the file expects.
func (r *runner) checkLunInfo(ctx context.Context, s *step, c *lunInfoCheck, fail func(expected, got string)) {
	var want string
	if c.snapshot != "" {
		want = r.snapshotID(r.req(s.requester), c.snapshot).String()
	}
	checked := 0
	for _, sv := range r.svc.Saved() {
		props := sv.Properties
		if want != "" && props.SnapshotID.String() != want {
			continue
		}
		var prov *provState
		for _, p := range r.provs {
			if p.id == props.ProviderID {
				prov = p
			}
		}
		if prov == nil {
			fail("a provider of the scenario for snapshot "+props.SnapshotID.String(), "none")
			continue
		}
		for i, target := range sv.Targets {
			dev := ""
			if l := lunByNAA(r.array, target.NAA()); l != nil {
				dev = l.Name()
			}
			what := fmt.Sprintf("target %d of the snapshot of %s", i+1, props.OriginalVolume)
			if dev == "" {
				fail(what+" in the array", "no LUN with its page-83 identifier")
				continue
			}
			var got provider.LunInfo
			known, err := prov.traced.FillInLunInfo(ctx, dev, &got)
			switch {
			case err != nil:
				fail("FillInLunInfo of "+dev+" to succeed", err.Error())
				continue
			case !known:
				fail("FillInLunInfo to know "+dev, "known=false")
				continue
			}
			checked++
			if d := lunInfoDiff(target, got); len(d) > 0 {
				fail(fmt.Sprintf("FillInLunInfo of %s (%s) to match GetTargetLuns", dev, what), strings.Join(d, "; "))
			}
			for _, f := range lunInfoFields {
				w, ok := c.want[f]
				if !ok {
					continue
				}
				if g := lunInfoField(target, f); g != w {
					fail(fmt.Sprintf("%s %s %q", what, f, w), fmt.Sprintf("%q", g))
				}
			}
		}
	}
	if checked == 0 {
		fail("a surfaced target LUN to check", "none")
	}
}

// lunInfoField is one field of a LUN record, as lun-info names it.
func lunInfoField(info provider.LunInfo, f string) string {
	switch f {
	case "vendor":
		return info.VendorID
	case "product":
		return info.ProductID
	case "revision":
		return info.ProductRevision
	case "serial":
		return info.SerialNumber
	case "bus-type":
		return strconv.Itoa(int(info.BusType))
	case "version":
		return strconv.Itoa(int(info.Version))
	}
	return ""
}

// lunInfoDiff names the fields in which two LUN records differ, with both
// values.
func lunInfoDiff(want, got provider.LunInfo) []string {
	var out []string
	for _, f := range lunInfoFields {
		if a, b := lunInfoField(want, f), lunInfoField(got, f); a != b {
			out = append(out, fmt.Sprintf("%s %q, FillInLunInfo %q", f, a, b))
		}
	}
	if want.DiskSignature != got.DiskSignature {
		out = append(out, fmt.Sprintf("disk signature %v, FillInLunInfo %v", want.DiskSignature, got.DiskSignature))
	}
	if want.DeviceType != got.DeviceType || want.DeviceTypeModifier != got.DeviceTypeModifier || want.CommandQueueing != got.CommandQueueing {
		out = append(out, "device type or command queueing")
	}
	if !reflect.DeepEqual(want.DeviceIDDescriptor, got.DeviceIDDescriptor) {
		out = append(out, fmt.Sprintf("page-83 identifiers %s, FillInLunInfo %s", idsText(want), idsText(got)))
	}
	return out
}

func idsText(info provider.LunInfo) string {
	var parts []string
	for _, id := range info.DeviceIDDescriptor {
		parts = append(parts, fmt.Sprintf("type %d %x", id.Type, id.Value))
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, ", ") + "]"
}
