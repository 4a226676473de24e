package cow

// This file is what a durable store needs of the block map: the grains of
// an image with the blocks behind them, the grains in which two images
// differ, a second handle on an image, and a way to rebuild a volume from
// a map that was written down. The tree itself stays in memory (doc.go); a
// durable store keeps, for every tree, the map these functions report, and
// rebuilds the trees from it at start.

// Grain is one grain of a map as a durable store records it.
type Grain struct {
	// Kind is Data, Zero (allocated, reads as zeros, no block) or Hole.
	Kind ExtentKind
	// Block holds the grain's data when Kind is Data.
	Block Block
}

func grainOf(p *page, grain int64) Grain {
	switch p {
	case nil:
		return Grain{Kind: Hole}
	case zeroPage:
		return Grain{Kind: Zero}
	}
	return Grain{Kind: Data, Block: p.block(grain)}
}

// Grains calls visit for every grain of the image that is not a hole, in
// ascending order, with the block behind it. It stops at the first error
// visit returns and returns it. It costs in proportion to what is
// allocated, not to the image's size.
func (im *Image) Grains(visit func(idx uint64, g Grain) error) error {
	t, err := im.enter()
	if err != nil {
		return err
	}
	defer im.exit(t)
	// Every grain of im is one in which it differs from an empty tree.
	return im.changedGrains(nil, im.root, im.levels-1, 0, visit)
}

// ChangedGrains calls visit, in ascending order, for every grain in which
// b differs from a, two images of one family, with b's grain (a Hole where
// b has none). Subtrees the two share are skipped without being read (C7),
// so it costs in proportion to what changed between them: a durable store
// calls it with the image it last wrote down and a newer one, and writes
// only what visit is given. It stops at the first error visit returns.
func ChangedGrains(a, b *Image, visit func(idx uint64, g Grain) error) error {
	if !a.sameFamily(&b.geometry) {
		return ErrMismatch
	}
	ta, err := a.enter()
	if err != nil {
		return err
	}
	defer a.exit(ta)
	tb, err := b.enter()
	if err != nil {
		return err
	}
	defer b.exit(tb)
	return a.changedGrains(a.root, b.root, a.levels-1, 0, visit)
}

func (g *geometry) changedGrains(a, b *node, level int, base uint64, visit func(idx uint64, gr Grain) error) error {
	if a == b {
		return nil
	}
	child := uint64(1) << (uint(level) * fanoutShift)
	for i := range fanout {
		idx := base + uint64(i)*child
		if idx >= g.grains {
			return nil
		}
		if level == 0 {
			var pa, pb *page
			if a != nil {
				pa = a.pages[i].Load()
			}
			if b != nil {
				pb = b.pages[i].Load()
			}
			if pa != pb {
				if err := visit(idx, grainOf(pb, g.grain)); err != nil {
					return err
				}
			}
			continue
		}
		var ka, kb *node
		if a != nil {
			ka = a.kids[i].Load()
		}
		if b != nil {
			kb = b.kids[i].Load()
		}
		if err := g.changedGrains(ka, kb, level-1, idx, visit); err != nil {
			return err
		}
	}
	return nil
}

// Dup returns a second image of the same point in time, sharing every node
// with im, in O(1). Each is released on its own, and the blocks stay until
// both are. A durable store keeps one for every tree it has written down,
// so that no block its records name can be freed, and so reused, before
// the records that name it are gone.
func (im *Image) Dup() (*Image, error) {
	t, err := im.enter()
	if err != nil {
		return nil, err
	}
	defer im.exit(t)
	if im.root != nil {
		im.root.refs.Add(1)
	}
	return &Image{geometry: im.geometry, root: im.root, mapOnly: im.mapOnly, readers: newEpoch(nil, nil)}, nil
}

// Load installs g as grain idx of the volume, replacing what was there, for
// rebuilding a volume from a map a durable store wrote down. A Data grain's
// block becomes the grain's own, as if allocated by a write: the store must
// already count it as allocated, and it must not be loaded anywhere else.
// A Hole punches the grain. Load is not meant to race with other I/O on the
// volume.
func (v *Volume) Load(idx uint64, g Grain) error {
	if idx >= v.grains {
		return ErrOutOfRange
	}
	if g.Kind == Data && len(g.Block.Data) != int(v.grain) {
		return ErrGrainSize
	}
	e, t, err := v.enter()
	if err != nil {
		return err
	}
	defer e.inflight.Exit(t)
	switch g.Kind {
	case Hole:
		v.punch(e, nil, &e.root, &e.mu, v.levels-1, 0, idx, idx+1)
		return nil
	case Zero:
		v.setZeroPage(e, idx)
		return nil
	}
	leaf := v.ownLeaf(e, idx, true)
	p := pageOf(g.Block)
	p.gen.Store(e.pageGen)
	p.refs.Store(1)
	leaf.mu.Lock()
	old := leaf.pages[idx&fanoutMask].Swap(p)
	leaf.mu.Unlock()
	if old != nil {
		v.releasePage(old, nil)
	}
	return nil
}

// GrainCount returns the number of grains in the volume, the last one possibly
// partial.
func (v *Volume) GrainCount() uint64 { return v.grains }
