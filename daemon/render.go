package daemon

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

// Texter is an API answer the command line prints for people; --json
// prints the JSON instead.
type Texter interface {
	WriteText(w io.Writer) error
}

// table writes rows aligned in columns, the first row being the header.
func table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// short formats a duration with three significant digits at most.
func short(d Duration) string {
	t := time.Duration(d)
	switch {
	case t == 0:
		return "0"
	case t < time.Microsecond:
		return t.String()
	case t < time.Millisecond:
		return t.Round(10 * time.Nanosecond).String()
	case t < time.Second:
		return t.Round(10 * time.Microsecond).String()
	}
	return t.Round(10 * time.Millisecond).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// LUNList is the answer of lun list.
type LUNList []LUNInfo

// WriteText implements Texter.
func (ls LUNList) WriteText(w io.Writer) error {
	rows := [][]string{{"NAME", "KIND", "SIZE", "BLOCK", "FLAGS", "PARENT", "EXPORT"}}
	for _, l := range ls {
		var flags []string
		if l.ReadOnly {
			flags = append(flags, "ro")
		}
		if l.Masked {
			flags = append(flags, "masked")
		}
		if l.Thin {
			flags = append(flags, "thin")
		}
		if len(l.Faults) > 0 {
			flags = append(flags, "faults")
		}
		export := "-"
		if len(l.Exports) > 0 {
			export = l.Exports[0]
		}
		rows = append(rows, []string{l.Name, l.Kind, l.Size.String(), fmt.Sprint(l.BlockSize),
			orDash(strings.Join(flags, ",")), orDash(l.Parent), export})
	}
	return table(w, rows)
}

// provisioningOf names a LUN's provisioning for lun show.
func provisioningOf(thin bool) string {
	if thin {
		return "thin (may overcommit the array)"
	}
	return "thick (its size counts against the array's capacity)"
}

// WriteText implements Texter.
func (l LUNInfo) WriteText(w io.Writer) error {
	rows := [][]string{
		{"LUN", l.Name}, {"kind", l.Kind}, {"size", fmt.Sprintf("%s (%d bytes), %d-byte blocks", l.Size, int64(l.Size), l.BlockSize)},
		{"read-only", fmt.Sprint(l.ReadOnly)}, {"masked", fmt.Sprint(l.Masked)}, {"provisioning", provisioningOf(l.Thin)},
		{"serial", l.Serial}, {"NAA", l.NAA},
	}
	if l.Cache != "" {
		rows = append(rows, []string{"write cache", l.Cache + " (emulated: lun powercut loses what it would)"})
	}
	if l.CacheUse != nil {
		rows = append(rows, []string{"write log", l.CacheUse.String()})
	}
	if c := l.LastPowerCut; c != nil {
		by := "lun powercut"
		if c.Trigger != "" {
			by = c.Trigger
		}
		rows = append(rows, []string{"last power cut", fmt.Sprintf("%s, by %s: %s", c.At.Format(time.RFC3339), by, c.Summary)})
	}
	if l.Parent != "" {
		rows = append(rows, []string{"parent", l.Parent})
	}
	for _, e := range l.Exports {
		rows = append(rows, []string{"export", e})
	}
	for _, f := range l.Faults {
		rows = append(rows, []string{"fault", f.String()})
	}
	for _, s := range l.Stats {
		rows = append(rows, []string{"ops " + s.Op, fmt.Sprintf("%d ops, %s, %d errors, p50 %s, p99 %s",
			s.Ops, humanize.IBytes(uint64(s.Bytes)), s.Errors, short(s.P50), short(s.P99))})
	}
	return table(w, rows)
}

// WriteText implements Texter.
func (f FaultList) WriteText(w io.Writer) error {
	if len(f.Rules) == 0 {
		_, err := fmt.Fprintf(w, "LUN %s: no faults\n", f.LUN)
		return err
	}
	rows := [][]string{{"#", "FAULT"}}
	for i, r := range f.Rules {
		rows = append(rows, []string{fmt.Sprint(i + 1), r.String()})
	}
	if _, err := fmt.Fprintf(w, "LUN %s:\n", f.LUN); err != nil {
		return err
	}
	return table(w, rows)
}

// WriteText implements Texter.
func (r DeleteResult) WriteText(w io.Writer) error {
	if len(r.Deleted) == 0 && r.Set == nil {
		_, err := fmt.Fprintln(w, "nothing deleted")
		return err
	}
	for _, d := range r.Deleted {
		if _, err := fmt.Fprintln(w, "deleted", d); err != nil {
			return err
		}
	}
	if r.Set != nil {
		if _, err := fmt.Fprintln(w, "deleted set", r.Set.String()); err != nil {
			return err
		}
	}
	return nil
}

// WriteText implements Texter: what was created, the snapshots and their
// exports, the writers' status and the timeline.
func (r *SetReport) WriteText(w io.Writer) error {
	held := ""
	if r.Held {
		held = "; held until `snapshot delete --set` (auto-release context)"
	}
	name := ""
	if r.Name != "" {
		name = " " + r.Name
	}
	fmt.Fprintf(w, "Snapshot set %v%s: %s (%s), %s, %s%s\n", r.ID, name, r.State, r.Result, orDash(r.Context), short(r.Duration), held)
	if len(r.Snapshots) > 0 {
		fmt.Fprintln(w)
		if err := SnapshotList(r.Snapshots).WriteText(w); err != nil {
			return err
		}
	}
	if len(r.Writers) > 0 {
		fmt.Fprintln(w, "\nWriters:")
		rows := [][]string{{"NAME", "STATE", "FAILURE", "MESSAGE"}}
		for _, s := range r.Writers {
			rows = append(rows, []string{s.Name, s.State, orDash(s.Failure), orDash(firstLine(s.Message))})
		}
		if err := table(w, rows); err != nil {
			return err
		}
	}
	if len(r.Timeline) > 0 {
		fmt.Fprintln(w, "\nTimeline:")
		rows := [][]string{{"OFFSET", "DURATION", "KIND", "NAME", "ACTOR", "RESULT"}}
		for _, s := range r.Timeline {
			res := s.Result
			if s.Detail != "" {
				res += " (" + firstLine(s.Detail) + ")"
			}
			rows = append(rows, []string{short(s.Offset), short(s.Duration), s.Kind, s.Name, orDash(s.Actor), res})
		}
		return table(w, rows)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// SetList is the answer of snapshot list --sets.
type SetList []SetSummary

// WriteText implements Texter.
func (l SetList) WriteText(w io.Writer) error {
	rows := [][]string{{"SET", "NAME", "CONTEXT", "STATE", "RESULT", "SNAPSHOTS", "HELD", "STARTED"}}
	for _, s := range l {
		rows = append(rows, []string{s.ID.String(), orDash(s.Name), orDash(strings.TrimPrefix(s.Context, "VSS_CTX_")), s.State, s.Result,
			fmt.Sprint(s.Snapshots), fmt.Sprint(s.Held), s.Started.Format(time.RFC3339)})
	}
	return table(w, rows)
}

// SnapshotList is the answer of snapshot list.
type SnapshotList []SnapshotInfo

// WriteText implements Texter: one line a snapshot, as lvs shows thin
// snapshots: its name, origin, size and the data it alone holds.
func (l SnapshotList) WriteText(w io.Writer) error {
	rows := [][]string{{"SNAPSHOT", "NAME", "ORIGIN", "CREATED", "SIZE", "UNIQUE", "TARGET LUNS", "EXPORTS"}}
	for _, s := range l {
		targets := slices.Clone(s.TargetLUNs)
		for i, t := range targets {
			if t == "" {
				targets[i] = "(not surfaced)"
			}
		}
		rows = append(rows, []string{s.ID.String(), orDash(s.Name), s.Volume, s.Created.Local().Format(time.DateTime),
			humanize.IBytes(uint64(s.Size)), humanize.IBytes(uint64(s.UniqueBytes)),
			orDash(strings.Join(targets, ",")), orDash(strings.Join(s.Exports, " "))})
	}
	return table(w, rows)
}

// WriteText implements Texter: the LUNs' changed extents, as offset and
// length in bytes, after a line a LUN with their sum.
func (d *SnapshotDiff) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, l := range d.LUNs {
		fmt.Fprintf(&b, "%s against %s: %d extents, %s changed\n", l.LUN, l.Against, len(l.Extents), humanize.IBytes(uint64(l.Bytes)))
		if len(l.Extents) == 0 {
			continue
		}
		rows := [][]string{{"OFFSET", "LENGTH"}}
		for _, e := range l.Extents {
			rows = append(rows, []string{strconv.FormatInt(e.Offset, 10), strconv.FormatInt(e.Length, 10)})
		}
		if err := table(&b, rows); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText implements Texter.
func (s SnapshotInfo) WriteText(w io.Writer) error {
	rows := [][]string{
		{"snapshot", s.ID.String()}, {"name", orDash(s.Name)}, {"set", s.SetID.String()}, {"volume", s.Volume},
		{"size", humanize.IBytes(uint64(s.Size))}, {"unique", humanize.IBytes(uint64(s.UniqueBytes)) + " (what deleting it frees)"},
		{"context", s.Context}, {"attributes", s.Attributes}, {"provider", s.Provider},
		{"created", s.Created.Format(time.RFC3339Nano)}, {"state", s.State},
		{"source LUNs", strings.Join(s.SourceLUNs, ", ")}, {"target LUNs", orDash(strings.Join(s.TargetLUNs, ", "))},
		{"imported", fmt.Sprint(s.Imported)}, {"broken", fmt.Sprint(s.Broken)},
	}
	for _, e := range s.Exports {
		rows = append(rows, []string{"export", e})
	}
	return table(w, rows)
}

// WriteText implements Texter.
func (r ExposeResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "snapshot %v exposed as %s\n%s\n", r.SnapshotID, r.Export, strings.Join(r.URLs, "\n"))
	return err
}

// WriteText implements Texter.
func (r RevertResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "volume %s (%s) reverted to snapshot %v\n", r.Volume, strings.Join(r.LUNs, ", "), r.SnapshotID)
	return err
}

// WriteText implements Texter.
func (r BreakResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "snapshot set %v broken (flags %s); these LUNs are now ordinary LUNs: %s\n",
		r.SetID, r.Flags, orDash(strings.Join(r.LUNs, ", ")))
	return err
}

// WriterList is the answer of writer list.
type WriterList []WriterInfo

// WriteText implements Texter.
func (l WriterList) WriteText(w io.Writer) error {
	rows := [][]string{{"NAME", "KIND", "LEVEL", "ID", "STATE"}}
	for _, wi := range l {
		state := "subscribed"
		switch {
		case wi.Kind == "remote" && !wi.Connected:
			state = "silent"
		case wi.InstanceID.IsNull():
			state = "waiting for its set"
		}
		rows = append(rows, []string{wi.Name, wi.Kind, wi.Level, wi.ID.String(), state})
	}
	return table(w, rows)
}

// WriteText implements Texter.
func (r EventRecord) WriteText(w io.Writer) error {
	ans := "ok"
	switch {
	case r.Answer.Failure != "" && r.Answer.OK:
		ans = "veto " + r.Answer.Failure
	case r.Answer.Failure != "":
		ans = "fail " + r.Answer.Failure
	case !r.Answer.OK:
		ans = "fail"
	}
	line := fmt.Sprintf("%s %s set %v: %s in %s", r.Writer, r.Event.Kind, r.Event.SnapshotSetID, ans, short(r.Took))
	if m := r.Answer.Message; m != "" {
		line += ": " + m
	}
	if r.Error != "" {
		line += " (answer not delivered: " + r.Error + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// provisioning says what the LUNs provision against the capacity:
// "3.0 GiB of 8.0 GiB (1.0 GiB thick, 2.0 GiB thin)", and by how much it is
// overcommitted when it is.
func (s StoreInfo) provisioning() string {
	ib := func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
	total := s.ThickBytes + s.ThinBytes
	if s.CapacityBytes == 0 {
		return fmt.Sprintf("%s (%s thick, %s thin), no capacity limit", ib(total), ib(s.ThickBytes), ib(s.ThinBytes))
	}
	out := fmt.Sprintf("%s of %s capacity (%s thick, %s thin)", ib(total), ib(s.CapacityBytes), ib(s.ThickBytes), ib(s.ThinBytes))
	if s.Overcommit > 1 {
		out += fmt.Sprintf(", overcommitted %.2fx", s.Overcommit)
	}
	return out
}

// WriteText implements Texter.
func (s Status) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "shadowbench %s, up %s\n", s.Version, time.Duration(s.Uptime).Round(time.Second))
	rows := [][]string{
		{"API", orDash(strings.Join(s.API, " "))},
		{"NBD", orDash(strings.Join(s.NBD, " "))},
		{"LUNs", fmt.Sprintf("%d (%d original, %d snapshot, %d clone)", s.LUNs.Total, s.LUNs.Originals, s.LUNs.Snapshots, s.LUNs.Clones)},
		{"store", fmt.Sprintf("%s data, %s metadata", humanize.IBytes(uint64(s.Store.DataBytes)), humanize.IBytes(uint64(s.Store.MetaBytes)))},
		{"provisioned", s.Store.provisioning()},
	}
	var vols []string
	for name, luns := range s.Volumes {
		vols = append(vols, name+"="+strings.Join(luns, "+"))
	}
	slices.Sort(vols)
	rows = append(rows, []string{"volumes", orDash(strings.Join(vols, " "))})
	for _, p := range s.Providers {
		if p.Remote != "" {
			rows = append(rows, []string{"provider", fmt.Sprintf("%s (%s, priority %d, remote %s)",
				p.Name, strings.ToLower(strings.TrimPrefix(p.Type, "VSS_PROV_")), p.Priority, p.Remote)})
			continue
		}
		rows = append(rows, []string{"provider", fmt.Sprintf("%s (%s, priority %d, profile %s): %d commits, p50 %s, p99 %s",
			p.Name, strings.ToLower(strings.TrimPrefix(p.Type, "VSS_PROV_")), p.Priority, p.Profile, p.Commits, short(p.CommitP50), short(p.CommitP99))})
	}
	for _, wi := range s.Writers {
		rows = append(rows, []string{"writer", fmt.Sprintf("%s (%s, %s)", wi.Name, wi.Kind, wi.Level)})
	}
	var sets []string
	for _, k := range []string{"created", "failed", "cancelled", "abandoned", "creating"} {
		if n := s.Sets[k]; n > 0 {
			sets = append(sets, fmt.Sprintf("%d %s", n, k))
		}
	}
	rows = append(rows, []string{"sets", orDash(strings.Join(sets, ", "))}, []string{"held", fmt.Sprint(s.Held)})
	for _, name := range slices.Sorted(maps.Keys(s.Caches)) {
		rows = append(rows, []string{"write cache", name + ": " + s.Caches[name].String()})
	}
	return table(w, rows)
}

// String describes a cache's use on one line: "write-back: 12 writes,
// 48 KiB of 64 MiB since the last durable point; 3 of 100 crash points".
func (u CacheUseInfo) String() string {
	ib := func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
	out := fmt.Sprintf("%s: %d writes, %s of %s since the last durable point", u.Mode, u.Pending, ib(u.Bytes), ib(u.MaxBytes))
	if u.Mode == "write-through" || u.Mode == "write-back-battery" {
		out = u.Mode + ": nothing to lose, nothing logged"
	}
	if u.MaxPoints > 0 {
		out += fmt.Sprintf("; %d of %d crash points", u.CrashPoints, u.MaxPoints)
	}
	return out
}

// WriteText implements Texter: one line, what the set waits on, as
// snapshot create prints it while it waits.
func (p *SetProgress) WriteText(w io.Writer) error {
	var parts []string
	for _, s := range p.Running {
		what := s.Kind + " " + s.Name
		if s.Actor != "" {
			what += " of " + s.Actor
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", what, short(s.Duration)))
	}
	waits := "nothing in particular"
	if len(parts) > 0 {
		waits = strings.Join(parts, ", ")
	}
	_, err := fmt.Fprintf(w, "snapshot set %v, %s in: waiting on %s\n", p.ID, short(p.Elapsed), waits)
	return err
}

// WriteText implements Texter.
func (r PowerCutResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "LUN %s lost power: %s; %d NBD connections dropped\n", r.LUN, r.Summary, r.Dropped)
	return err
}

// CrashPointList is the answer of lun crashpoints.
type CrashPointList []CrashPointInfo

// WriteText implements Texter.
func (l CrashPointList) WriteText(w io.Writer) error {
	rows := [][]string{{"POINT", "KIND", "LABEL", "AT", "WRITES BEFORE IT"}}
	for _, p := range l {
		rows = append(rows, []string{strconv.Itoa(p.ID), p.Kind, orDash(p.Label), p.At.Format("15:04:05.000000"), strconv.Itoa(p.Writes)})
	}
	return table(w, rows)
}

// WriteText implements Texter.
func (p CrashPointInfo) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "crash point %d: %s %s, %d writes since the point before\n", p.ID, p.Kind, orDash(p.Label), p.Writes)
	return err
}
