package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/lun/durable"
)

// CheckReport is what `shadowbench check` found in a data directory.
type CheckReport struct {
	*durable.Report
	// LUNs and Snapshots are the catalogue's records of each.
	LUNs      int `json:"luns"`
	Snapshots int `json:"snapshots"`
}

// Check reads the data directory of a durable array that no daemon is
// serving and reports what contradicts what: the block maps against each
// other and the data file (durable.Check), the LUN records against the
// trees (lun.CheckCatalogue), and the snapshot records against the LUNs.
// With repair it removes the leftovers it finds and punches the free
// blocks out of the data file, unless it finds a problem. The error is nil
// when the directory was read, whatever it holds: see Report.OK.
func Check(dir string, repair bool) (*CheckReport, error) {
	out := &CheckReport{}
	cat := func(recs map[string]map[string][]byte) ([]durable.Name, []string) {
		names, problems := lun.CheckCatalogue(recs)
		out.LUNs = len(recs["luns"])
		luns := recs["luns"]
		snaps := recs[snapshotsBucket]
		out.Snapshots = len(snaps)
		for _, key := range slices.Sorted(maps.Keys(snaps)) {
			var s coordinator.SavedSnapshot
			if err := json.Unmarshal(snaps[key], &s); err != nil {
				problems = append(problems, fmt.Sprintf("snapshot %s: record: %v", key, err))
				continue
			}
			for _, t := range s.Properties.TargetLUNs {
				if _, ok := luns[t]; !ok {
					problems = append(problems, fmt.Sprintf("snapshot %s names LUN %s, which has no record", key, t))
				}
			}
		}
		return names, problems
	}
	r, err := durable.Check(dir, durable.CheckOptions{Repair: repair, Catalogue: cat})
	if err != nil {
		return nil, err
	}
	out.Report = r
	return out, nil
}

// WriteText implements Texter.
func (c *CheckReport) WriteText(w io.Writer) error {
	r := c.Report
	grain := int64(r.Grain)
	fmt.Fprintf(w, "%s: format %d, grain %s\n", r.Dir, r.Format, humanize.IBytes(uint64(r.Grain)))
	fmt.Fprintf(w, "  %d LUNs, %d snapshot records\n", c.LUNs, c.Snapshots)
	fmt.Fprintf(w, "  %d trees (%d volumes, %d images), %d map entries naming %d blocks (%s)\n",
		r.Trees, r.Live, r.Trees-r.Live, r.Entries, r.Blocks, humanize.IBytes(uint64(r.Blocks*grain)))
	fmt.Fprintf(w, "  data file %s, %s allocated", humanize.IBytes(uint64(r.FileBytes)), humanize.IBytes(uint64(r.AllocatedBytes)))
	if r.FreeBlocks > 0 {
		fmt.Fprintf(w, ", of which %d free blocks (%s) the next start or --repair punches out", r.FreeBlocks, humanize.IBytes(uint64(r.FreeBlocks*grain)))
	}
	fmt.Fprintln(w)
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, s := range items {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	list("problems", r.Problems)
	list("leftovers (--repair removes them)", r.Leftovers)
	list("notes", r.Notes)
	list("repaired", r.Repaired)
	switch {
	case !r.OK():
		fmt.Fprintf(w, "%d problems: the directory is damaged\n", len(r.Problems))
	case len(r.Leftovers) > 0 && len(r.Repaired) == 0:
		fmt.Fprintln(w, "consistent, with leftovers")
	default:
		fmt.Fprintln(w, "consistent")
	}
	return nil
}

// Err returns an error when the check found problems, for an exit code.
func (c *CheckReport) Err() error {
	if c.OK() {
		return nil
	}
	return fmt.Errorf("%s: %d problems (first: %s)", c.Dir, len(c.Problems), strings.TrimSpace(c.Problems[0]))
}
