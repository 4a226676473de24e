package durable

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/shadowbench/shadowbench/cow"
)

var (
	seedFlag  = flag.Uint64("durable.seed", 0, "seed of TestModel (0: from the clock)")
	stepsFlag = flag.Int("durable.steps", 250, "operations per run of TestModel")
	runsFlag  = flag.Int("durable.runs", 2, "runs of TestModel, each from its own seed")
	crashAll  = flag.Bool("durable.crashall", false, "crash after every operation of TestModel (slow; it finds the operation that broke a promise)")
)

const (
	mGrain = 4096
	mCap   = 256 << 20
)

// mTree is the model of one named tree: what it must hold now, and what it
// may hold after a crash. That is its content at the last checkpoint or
// commit (dur), except that a live tree's grain written since may hold any
// of the contents it had since (since, by grain): writes after a
// checkpoint go in place into the blocks its map names (C8), as a disk's
// cache may have written any of them back.
type mTree struct {
	live     bool
	now, dur []byte
	since    map[int][][]byte
}

// wrote records that [off, off+n) of a live tree changed: each grain's new
// content becomes one it may hold after a crash.
func (mt *mTree) wrote(off, n int64) {
	if mt.since == nil {
		mt.since = make(map[int][][]byte)
	}
	for g := int(off / mGrain); int64(g)*mGrain < off+n; g++ {
		c := mt.grain(mt.now, g)
		if !slices.ContainsFunc(mt.since[g], func(o []byte) bool { return bytes.Equal(o, c) }) {
			mt.since[g] = append(mt.since[g], slices.Clone(c))
		}
	}
}

func (mt *mTree) grain(b []byte, g int) []byte {
	return b[g*mGrain : min((g+1)*mGrain, len(b))]
}

// durable marks the tree's content as written down.
func (mt *mTree) durable() {
	mt.dur = slices.Clone(mt.now)
	mt.since = nil
}

// mayHold returns the first grain at which got is not a content the tree
// may hold after a crash, or -1.
func (mt *mTree) mayHold(got []byte) int {
	for g := 0; g*mGrain < len(got); g++ {
		c := mt.grain(got, g)
		if bytes.Equal(c, mt.grain(mt.dur, g)) {
			continue
		}
		if !mt.live || !slices.ContainsFunc(mt.since[g], func(o []byte) bool { return bytes.Equal(o, c) }) {
			return g
		}
	}
	return -1
}

// model is what the DB must hold, by name: the catalogue bucket "names"
// maps each name to its tree's number, written in the transactions that
// create and drop the trees.
type model struct {
	t     *testing.T
	rng   *rand.Rand
	dir   string
	db    *DB
	trees map[string]*mTree
	seq   int
	log   []string
	// kept counts the grains that came back from a crash with a write
	// made after the last checkpoint (C8's in-place writes).
	kept int
}

func nameEdit(name string, id uint64) Edit {
	return Edit{Bucket: "names", Key: name, Value: binary.BigEndian.AppendUint64(nil, id)}
}

func (m *model) tree(name string) *Tree {
	recs, err := m.db.Records("names")
	require.NoError(m.t, err)
	v, ok := recs[name]
	require.True(m.t, ok, "no record for %s", name)
	t := m.db.Tree(binary.BigEndian.Uint64(v))
	require.NotNil(m.t, t, "no tree for %s", name)
	return t
}

func (m *model) names(live bool) []string {
	var out []string
	for n, t := range m.trees {
		if t.live == live {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (m *model) pick(live bool) (string, bool) {
	ns := m.names(live)
	if len(ns) == 0 {
		return "", false
	}
	return ns[m.rng.IntN(len(ns))], true
}

func (m *model) logf(format string, args ...any) {
	m.log = append(m.log, fmt.Sprintf(format, args...))
}

func (m *model) step() {
	r := m.rng.IntN(100)
	switch {
	case r < 6 || len(m.trees) == 0:
		m.seq++
		name := "v" + strconv.Itoa(m.seq)
		size := int64(1+m.rng.IntN(3)) << 20
		m.logf("create %s %d", name, size)
		_, err := m.db.NewVolume(size, func(ids ...uint64) []Edit { return []Edit{nameEdit(name, ids[0])} })
		require.NoError(m.t, err)
		m.trees[name] = &mTree{live: true, now: make([]byte, size), dur: make([]byte, size)}
	case r < 45:
		name, ok := m.pick(true)
		if !ok {
			return
		}
		mt, vol := m.trees[name], m.tree(name).Volume()
		off := m.rng.Int64N(int64(len(mt.now)))
		if m.rng.IntN(2) == 0 {
			// Half the operations go to the first grains, so that most of
			// them overwrite what a checkpoint wrote down (C8).
			off = m.rng.Int64N(min(int64(len(mt.now)), 16*mGrain))
		}
		n := min(int64(1+m.rng.IntN(3*mGrain)), int64(len(mt.now))-off)
		switch m.rng.IntN(5) {
		case 0:
			m.logf("trim %s %d %d", name, off, n)
			require.NoError(m.t, vol.Trim(off, n))
			clear(mt.now[off : off+n])
			mt.wrote(off, n)
		case 1:
			m.logf("zero %s %d %d", name, off, n)
			require.NoError(m.t, vol.WriteZeroes(off, n, m.rng.IntN(2) == 0))
			clear(mt.now[off : off+n])
			mt.wrote(off, n)
		default:
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(m.rng.Uint32())
			}
			m.logf("write %s %d %d", name, off, n)
			_, err := vol.WriteAt(p, off)
			require.NoError(m.t, err)
			copy(mt.now[off:], p)
			mt.wrote(off, n)
		}
	case r < 55:
		m.flush()
	case r < 65:
		// A set of one to three volumes, committed at one instant.
		var cs []Commit
		var srcs []string
		for range 1 + m.rng.IntN(3) {
			name, ok := m.pick(true)
			if !ok || slices.Contains(srcs, name) {
				continue
			}
			img, err := m.tree(name).Volume().Snapshot()
			require.NoError(m.t, err)
			cs = append(cs, Commit{Tree: m.tree(name), Image: img})
			srcs = append(srcs, name)
		}
		if len(cs) == 0 {
			return
		}
		var snaps []string
		for range srcs {
			m.seq++
			snaps = append(snaps, "s"+strconv.Itoa(m.seq))
		}
		m.logf("commit %v as %v", srcs, snaps)
		_, err := m.db.CommitImages(cs, func(ids ...uint64) []Edit {
			var out []Edit
			for i, id := range ids {
				out = append(out, nameEdit(snaps[i], id))
			}
			return out
		})
		require.NoError(m.t, err)
		for i, s := range srcs {
			require.NoError(m.t, cs[i].Image.Release())
			mt := m.trees[s]
			// The image is durable, and so is its volume up to the
			// commit: the volume goes on from it.
			mt.durable()
			m.trees[snaps[i]] = &mTree{now: slices.Clone(mt.now), dur: slices.Clone(mt.now)}
		}
	case r < 71:
		src, ok := m.pick(false)
		if !ok {
			return
		}
		m.seq++
		name := "c" + strconv.Itoa(m.seq)
		m.logf("clone %s as %s", src, name)
		_, err := m.db.Clone(m.tree(src), func(ids ...uint64) []Edit { return []Edit{nameEdit(name, ids[0])} })
		require.NoError(m.t, err)
		c := slices.Clone(m.trees[src].now)
		m.trees[name] = &mTree{live: true, now: c, dur: slices.Clone(c)}
	case r < 76:
		src, ok := m.pick(false)
		if !ok {
			return
		}
		m.logf("make-writable %s", src)
		_, err := m.db.MakeWritable(m.tree(src), func(ids ...uint64) []Edit { return []Edit{nameEdit(src, ids[0])} })
		require.NoError(m.t, err)
		m.trees[src].live = true
	case r < 82:
		src, ok := m.pick(false)
		if !ok {
			return
		}
		var dsts []string
		for _, n := range m.names(true) {
			if len(m.trees[n].now) == len(m.trees[src].now) {
				dsts = append(dsts, n)
			}
		}
		if len(dsts) == 0 {
			return
		}
		dst := dsts[m.rng.IntN(len(dsts))]
		m.logf("revert %s to %s", dst, src)
		require.NoError(m.t, m.db.Revert(m.tree(dst), m.tree(src), nil))
		mt := m.trees[dst]
		mt.now = slices.Clone(m.trees[src].now)
		mt.durable()
	case r < 92:
		name, ok := m.pick(m.rng.IntN(3) == 0)
		if !ok {
			return
		}
		m.logf("delete %s", name)
		t := m.tree(name)
		require.NoError(m.t, m.db.Delete(t, Set(Edit{Bucket: "names", Key: name})))
		if t.Live() {
			require.NoError(m.t, t.Volume().Release())
		}
		delete(m.trees, name)
	default:
		m.crash()
	}
}

// flush flushes the DB: every live tree's content is durable.
func (m *model) flush() {
	m.logf("flush")
	require.NoError(m.t, m.db.Flush())
	for _, mt := range m.trees {
		if mt.live {
			mt.durable()
		}
	}
}

// checkDurable checks that every tree's durable image holds what the model
// says it may hold after a crash: nothing wrote into a block a map names
// but the tree's own writes since (D3, C8).
func (m *model) checkDurable() {
	for name, mt := range m.trees {
		if g := mt.mayHold(m.read(name, true)); g >= 0 {
			m.t.Fatalf("%s's durable image differs from the model at grain %d", name, g)
		}
	}
}

// read returns a tree's content: its volume's, or with durable its
// durable image's, for an image tree always the image's.
func (m *model) read(name string, durable bool) []byte {
	t := m.tree(name)
	got := make([]byte, len(m.trees[name].now))
	var err error
	if t.Live() && !durable {
		_, err = t.Volume().ReadAt(got, 0)
	} else {
		var img *cow.Image
		img, err = m.db.Image(t)
		require.NoError(m.t, err)
		_, err = img.ReadAt(got, 0)
		require.NoError(m.t, img.Release())
	}
	require.NoError(m.t, err)
	return got
}

// crash closes the DB without a flush, as a kill would leave it, opens it
// again, and checks every tree against what it may hold.
func (m *model) crash() {
	m.logf("crash")
	require.NoError(m.t, m.db.Close())
	db, err := Open(m.dir, Options{Capacity: mCap})
	require.NoError(m.t, err)
	m.db = db
	for name, mt := range m.trees {
		if mt.live {
			got := m.read(name, false)
			if g := mt.mayHold(got); g >= 0 {
				m.t.Fatalf("%s after the crash: grain %d holds neither what was written down nor a write since", name, g)
			}
			for g := 0; g*mGrain < len(got); g++ {
				if !bytes.Equal(mt.grain(got, g), mt.grain(mt.dur, g)) {
					m.kept++
				}
			}
			mt.now = got
		} else {
			mt.now = slices.Clone(mt.dur)
		}
		mt.durable()
	}
	m.check()
}

// check compares every tree's content with the model's, and the catalogue
// with the trees.
func (m *model) check() {
	recs, err := m.db.Records("names")
	require.NoError(m.t, err)
	require.Len(m.t, recs, len(m.trees), "catalogue against model")
	for name, mt := range m.trees {
		require.Equal(m.t, mt.live, m.tree(name).Live(), "%s live", name)
		got := m.read(name, false)
		if !bytes.Equal(got, mt.now) {
			i := 0
			for got[i] == mt.now[i] {
				i++
			}
			m.t.Fatalf("%s differs from the model at byte %d (grain %d)", name, i, i/mGrain)
		}
	}
}

// TestModel checks D1-D3 against a model: random operations on random
// volumes, images and clones, with crashes (a close without flush) in
// between, after which every tree must hold what its last checkpoint or
// commit wrote down, each grain of a live tree written since possibly
// with one of the contents it had since (C8). A failure prints its seed; replay it
// with -durable.seed.
func TestModel(t *testing.T) {
	runs, steps := *runsFlag, *stepsFlag
	if testing.Short() {
		runs, steps = 1, 150
	}
	for run := range runs {
		seed := *seedFlag
		if seed == 0 {
			seed = uint64(time.Now().UnixNano())
		} else if run > 0 {
			break
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			m := &model{t: t, rng: rand.New(rand.NewPCG(seed, seed)), dir: t.TempDir(), trees: make(map[string]*mTree)}
			t.Logf("seed %d (replay: go test ./lun/durable -run TestModel -durable.seed %d)", seed, seed)
			defer func() {
				if t.Failed() {
					tail := m.log[max(0, len(m.log)-30):]
					t.Logf("last operations:\n%s", fmt.Sprint(tail))
				}
			}()
			db, err := Open(m.dir, Options{Capacity: mCap})
			require.NoError(t, err)
			m.db = db
			for range steps {
				m.step()
				if *crashAll {
					m.crash()
				}
				named := requireNamedOnce(t, m.db)
				m.checkDurable()
				requireNamedHeld(t, m.db, named)
				requireMapsMatch(t, m.db)
			}
			m.check()
			m.flush()
			checkBlocks(t, m.db)
			m.crash()
			checkBlocks(t, m.db)
			require.NoError(t, m.db.Close())
			t.Logf("%d grains came back from crashes with a write made after the last checkpoint", m.kept)
		})
	}
}

// requireNamedOnce checks that no block is named by two map entries (D3)
// and returns the blocks named.
func requireNamedOnce(t *testing.T, db *DB) map[uint64]bool {
	t.Helper()
	named := make(map[uint64]string)
	err := db.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMaps).ForEachBucket(func(bk []byte) error {
			return tx.Bucket(bucketMaps).Bucket(bk).ForEach(func(k, v []byte) error {
				if b := binary.BigEndian.Uint64(v); b < zeroMark {
					at := fmt.Sprintf("bucket %d grain %d", binary.BigEndian.Uint64(bk), binary.BigEndian.Uint64(k))
					if prev, ok := named[b]; ok {
						t.Fatalf("block %d named twice: %s and %s", b, prev, at)
					}
					named[b] = at
				}
				return nil
			})
		})
	})
	require.NoError(t, err)
	out := make(map[uint64]bool, len(named))
	for b := range named {
		out[b] = true
	}
	return out
}

// requireNamedHeld checks that the blocks the maps name are exactly those
// the durable images hold (D3).
func requireNamedHeld(t *testing.T, db *DB, named map[uint64]bool) {
	t.Helper()
	held := make(map[uint64]uint64)
	db.mu.Lock()
	for _, tr := range db.trees {
		require.NoError(t, tr.img.Grains(func(idx uint64, g cow.Grain) error {
			if g.Kind == cow.Data {
				held[g.Block.ID] = tr.id
			}
			return nil
		}))
	}
	db.mu.Unlock()
	for b := range named {
		if _, ok := held[b]; !ok {
			t.Fatalf("block %d is named by a map but no durable image holds it", b)
		}
	}
	for b, id := range held {
		if !named[b] {
			t.Fatalf("block %d is held by tree %d's durable image but no map names it", b, id)
		}
	}
}

// requireMapsMatch checks that every tree's maps, resolved from the records
// through its parents as Open would, read as its durable image does.
func requireMapsMatch(t *testing.T, db *DB) {
	t.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	err := db.db.View(func(tx *bolt.Tx) error {
		maps := tx.Bucket(bucketMaps)
		for _, tr := range db.trees {
			var rec treeRec
			require.NoError(t, json.Unmarshal(tx.Bucket(bucketTrees).Get(key(tr.id)), &rec))
			require.Equal(t, tr.rec, rec, "tree %d record", tr.id)
			if tr.parent != nil {
				require.Equal(t, tr.parent.id, tr.rec.Parent, "tree %d parent", tr.id)
			}
			var img *cow.Image = tr.img
			ids := map[uint64]uint64{}
			require.NoError(t, img.Grains(func(idx uint64, g cow.Grain) error {
				switch g.Kind {
				case cow.Data:
					ids[idx] = g.Block.ID + 1
				case cow.Zero:
					ids[idx] = zeroMark
				}
				return nil
			}))
			for g := uint64(0); int64(g)*mGrain < tr.rec.Size; g++ {
				r := uint64(0)
				for at := tr; at != nil; at = db.trees[at.rec.Parent] {
					if v := maps.Bucket(key(at.rec.Bucket)).Get(key(g)); v != nil {
						if r = binary.BigEndian.Uint64(v); r == holeMark {
							r = 0
						} else if r != zeroMark {
							r++
						}
						break
					}
				}
				if r != ids[g] {
					t.Fatalf("tree %d grain %d: maps name %x, image %x", tr.id, g, r, ids[g])
				}
			}
			got := make([]byte, tr.rec.Size)
			_, err := img.ReadAt(got, 0)
			require.NoError(t, err)
			want := make([]byte, tr.rec.Size)
			for g := int64(0); g*mGrain < tr.rec.Size; g++ {
				for at := tr; at != nil; at = db.trees[at.rec.Parent] {
					v := maps.Bucket(key(at.rec.Bucket)).Get(key(uint64(g)))
					if v == nil {
						continue
					}
					if b := binary.BigEndian.Uint64(v); b < zeroMark {
						copy(want[g*mGrain:], db.store.Block(b).Data)
					}
					break
				}
			}
			if !bytes.Equal(got, want) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				chain := []uint64{}
				for at := tr; at != nil; at = db.trees[at.rec.Parent] {
					chain = append(chain, at.id)
				}
				t.Fatalf("tree %d (chain %v) maps differ from its durable image at grain %d", tr.id, chain, i/mGrain)
			}
		}
		return nil
	})
	require.NoError(t, err)
}

// checkBlocks checks, after a flush, that the store counts exactly the
// blocks the maps name, each once: nothing leaked (C5 with D3).
func checkBlocks(t *testing.T, db *DB) {
	t.Helper()
	named := requireNamedOnce(t, db)
	require.Equal(t, int64(len(named))*mGrain, db.Store().Stats().DataBytes, "blocks allocated against blocks named")
}
