package lun

import (
	"errors"
	"fmt"

	"github.com/shadowbench/shadowbench/cow"
)

// ErrNotFamily is returned by Diff for two LUNs that share no history:
// not snapshots, clones or the source of one original.
var ErrNotFamily = errors.New("lun: the LUNs share no history")

// Diff reports the byte ranges where LUN to differs from LUN from, two
// LUNs of one family (an original, its snapshot LUNs and their clones),
// at least one of them a point in time (a snapshot LUN); an empty to
// means from's source. It reads no data, and costs in proportion to what
// changed between them (cow C7), as thin_delta does for dm-thin. A range
// is whole grains; one rewritten with the same bytes still counts.
func (a *Array) Diff(from, to string) ([]cow.Range, error) {
	fl, err := a.Get(from)
	if err != nil {
		return nil, err
	}
	var tl *LUN
	if to == "" {
		if tl = fl.parent; tl == nil {
			return nil, fmt.Errorf("%w: %s is an original LUN, with nothing to compare it to: name a snapshot of it", ErrNotSnapshot, from)
		}
	} else if tl, err = a.Get(to); err != nil {
		return nil, err
	}
	return diffLUNs(fl, tl)
}

func diffLUNs(fl, tl *LUN) ([]cow.Range, error) {
	for _, l := range []*LUN{fl, tl} {
		if l.deleted.Load() {
			return nil, fmt.Errorf("%w: %s", ErrDeleted, l.name)
		}
		if l.isPending() {
			return nil, fmt.Errorf("%w: %s is being committed", ErrNotSnapshot, l.name)
		}
	}
	if fl.size != tl.size || familyOf(fl) != familyOf(tl) {
		return nil, fmt.Errorf("%w: %s and %s", ErrNotFamily, fl.name, tl.name)
	}
	fd, td := fl.data.Load(), tl.data.Load()
	var ranges []cow.Range
	var err error
	switch {
	case fd.img != nil && td.img != nil:
		ranges, err = cow.Diff(fd.img, td.img, 0, fl.size)
	case fd.img != nil:
		ranges, err = td.vol.ChangedSince(fd.img, 0, fl.size)
	case td.img != nil:
		ranges, err = fd.vol.ChangedSince(td.img, 0, fl.size)
	default:
		return nil, fmt.Errorf("%w: %s and %s are both writable; one must be a snapshot LUN", ErrNotSnapshot, fl.name, tl.name)
	}
	if errors.Is(err, cow.ErrMismatch) {
		return nil, fmt.Errorf("%w: %s and %s", ErrNotFamily, fl.name, tl.name)
	}
	return ranges, mapErr(err)
}

// familyOf is the original LUN l descends from, through the sources of
// snapshots and the snapshots of clones.
func familyOf(l *LUN) *LUN {
	for l.parent != nil {
		l = l.parent
	}
	return l
}

// UniqueBytes is the data only snapshot LUN l holds: what deleting it
// gives back, as lvs's Data% tells it for a thin snapshot. It is the
// allocated data of l that differs from both its neighbours, the
// snapshot of its source before it and the one after it (or the source
// itself); in a chain of snapshots a block is shared only by neighbours.
func (l *LUN) UniqueBytes() (int64, error) {
	d := l.data.Load()
	if l.kind != Snapshot || d.img == nil {
		return 0, fmt.Errorf("%w: %s", ErrNotSnapshot, l.name)
	}
	ext, err := d.img.Extents(0, l.size)
	if err != nil {
		return 0, mapErr(err)
	}
	var held []cow.Range
	for _, e := range ext {
		if e.Kind != cow.Hole {
			held = append(held, cow.Range{Off: e.Off, Len: e.Len})
		}
	}
	prev := l.prev.Value()
	for prev != nil && (prev.isPending() || prev.deleted.Load()) {
		prev = prev.prev.Value()
	}
	if prev != nil {
		r, err := diffLUNs(prev, l)
		if err != nil {
			return 0, err
		}
		held = intersect(held, r)
	}
	if next := l.array.nextSnapshot(l); next != nil {
		r, err := diffLUNs(l, next)
		if err != nil {
			return 0, err
		}
		held = intersect(held, r)
	}
	var n int64
	for _, r := range held {
		n += r.Len
	}
	return n, nil
}

// nextSnapshot is the LUN after snapshot LUN l in its source's chain: the
// next snapshot of the source, else the source.
func (a *Array) nextSnapshot(l *LUN) *LUN {
	var next *LUN
	for _, o := range a.List() {
		if o.kind != Snapshot || o.parent != l.parent || o == l || o.isPending() {
			continue
		}
		// The first snapshot after l: the one whose chain of prev reaches l.
		for p := o.prev.Value(); p != nil; p = p.prev.Value() {
			if p == l {
				if next == nil || o.created.Before(next.created) {
					next = o
				}
				break
			}
		}
	}
	if next == nil && l.parent != nil && !l.parent.deleted.Load() {
		return l.parent
	}
	return next
}

// intersect returns the ranges in both a and b, each sorted and disjoint.
func intersect(a, b []cow.Range) []cow.Range {
	var out []cow.Range
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].Off, b[j].Off), min(a[i].Off+a[i].Len, b[j].Off+b[j].Len)
		if lo < hi {
			out = append(out, cow.Range{Off: lo, Len: hi - lo})
		}
		if a[i].Off+a[i].Len < b[j].Off+b[j].Len {
			i++
		} else {
			j++
		}
	}
	return out
}
