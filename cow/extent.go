package cow

// ExtentKind says what a run of bytes holds.
type ExtentKind uint8

// Extent kinds, as NBD's base:allocation context reports them.
const (
	// Data is allocated and may hold any bytes.
	Data ExtentKind = iota
	// Zero is allocated and reads as zeros (written with NO_HOLE).
	Zero
	// Hole is unallocated, costs nothing and reads as zeros (C6).
	Hole
)

func (k ExtentKind) String() string {
	switch k {
	case Data:
		return "data"
	case Zero:
		return "zero"
	case Hole:
		return "hole"
	}
	return "unknown"
}

// Extent is a run of bytes of one kind.
type Extent struct {
	Off, Len int64
	Kind     ExtentKind
}

// Range is a run of bytes.
type Range struct {
	Off, Len int64
}

// extents reports [off, off+n) of the tree at root as merged runs.
func (g *geometry) extents(root *node, off, n int64) []Extent {
	if n == 0 {
		return nil
	}
	var out []Extent
	end := off + n
	lo, hi := uint64(off>>g.shift), uint64((end-1)>>g.shift)+1
	g.walk(root, g.levels-1, 0, lo, hi, func(idx, count uint64, kind ExtentKind) {
		s := max(int64(idx)<<g.shift, off)
		e := min(int64(idx+count)<<g.shift, end)
		if k := len(out) - 1; k >= 0 && out[k].Kind == kind && out[k].Off+out[k].Len == s {
			out[k].Len += e - s
			return
		}
		out = append(out, Extent{Off: s, Len: e - s, Kind: kind})
	})
	return out
}

// changed reports, merged, the ranges within [off, off+n) whose grains
// differ between the trees at a and b.
func (g *geometry) changed(a, b *node, off, n int64) []Range {
	if n == 0 {
		return nil
	}
	var out []Range
	end := off + n
	lo, hi := uint64(off>>g.shift), uint64((end-1)>>g.shift)+1
	g.diff(a, b, g.levels-1, 0, lo, hi, func(idx uint64) {
		s := max(int64(idx)<<g.shift, off)
		e := min(int64(idx+1)<<g.shift, end)
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == s {
			out[k].Len += e - s
			return
		}
		out = append(out, Range{Off: s, Len: e - s})
	})
	return out
}
