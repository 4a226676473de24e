package durable

// This file is the offline check of a data directory (`shadowbench
// check`): every record read and compared with the others and with the
// data file, without changing anything unless asked to repair.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/cow/filestore"
)

// Name is a catalogue record naming a tree, as a Catalogue function
// reports it: By says which record ("LUN lun0"), Size the size the record
// gives the tree (0 for none).
type Name struct {
	Tree uint64
	By   string
	Size int64
}

// Catalogue reads the catalogue's records (every bucket but the DB's own,
// by bucket and key) and returns the trees they name and the problems it
// finds in the records themselves.
type Catalogue func(recs map[string]map[string][]byte) (names []Name, problems []string)

// CheckOptions configure Check.
type CheckOptions struct {
	// Repair removes the leftovers Check finds and punches the free blocks
	// out of the data file. It changes nothing when Check finds a problem.
	Repair bool
	// Catalogue checks the catalogue's records; nil checks the trees only.
	Catalogue Catalogue
	// LockTimeout is how long Check waits for a process that has the
	// directory open; 0 for 100 ms.
	LockTimeout time.Duration
}

// Report is what Check found.
type Report struct {
	Dir    string `json:"dir"`
	Format int    `json:"format"`
	Grain  int    `json:"grain"`
	// Live trees are volumes; the others images.
	Trees int `json:"trees"`
	Live  int `json:"volumes"`
	// Entries is the number of map entries; Blocks the blocks they name.
	Entries int64 `json:"map_entries"`
	Blocks  int64 `json:"blocks"`
	// FileBytes is the data file's size, AllocatedBytes what the file
	// system holds of it, and FreeBlocks the blocks the file backs that no
	// map names: free space a start or a repair punches out.
	FileBytes      int64 `json:"file_bytes"`
	AllocatedBytes int64 `json:"allocated_bytes"`
	FreeBlocks     int64 `json:"free_blocks"`
	// Problems are contradictions: the directory is damaged, and a repair
	// would risk data, so none is made.
	Problems []string `json:"problems"`
	// Leftovers are records no longer reachable, such as a tree no record
	// names: harmless, and removed by a repair.
	Leftovers []string `json:"leftovers"`
	// Notes are states that are allowed but unusual.
	Notes []string `json:"notes"`
	// Repaired says what a repair changed.
	Repaired []string `json:"repaired"`
}

// OK reports whether Check found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// checkTree is a tree's record as Check reads it.
type checkTree struct {
	rec      treeRec
	entries  int64
	children int
	named    []string
}

// Check reads the data directory dir and reports every contradiction
// between its records (reference counts, blocks named twice, parents,
// sizes, the catalogue against the trees) and between the maps and the
// data file. It opens meta.db read-only, so it fails with ErrLocked while
// a daemon serves dir; with opts.Repair it takes the lock as a daemon
// does. An error is returned when dir cannot be read at all; what can be
// read but is wrong is in the report.
func Check(dir string, opts CheckOptions) (*Report, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 100 * time.Millisecond
	}
	metaPath := filepath.Join(dir, MetaFile)
	if _, err := os.Stat(metaPath); err != nil {
		return nil, fmt.Errorf("durable: %s is not a data directory: %w", dir, err)
	}
	bdb, err := bolt.Open(metaPath, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: !opts.Repair})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked (stop the shadowbench serving it first)", ErrLocked, metaPath)
		}
		return nil, fmt.Errorf("durable: %s: %w", metaPath, err)
	}
	defer bdb.Close()
	r := &Report{Dir: dir}
	var trees map[uint64]*checkTree
	var orphans []uint64
	var used []uint64
	err = bdb.View(func(tx *bolt.Tx) error {
		var err error
		if err = checkMeta(tx, metaPath, r); err != nil {
			return err
		}
		trees, orphans, used, err = checkTrees(tx, r)
		if err != nil || opts.Catalogue == nil {
			return err
		}
		checkCatalogue(tx, opts.Catalogue, trees, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(used)
	checkData(filepath.Join(dir, DataFile), used, r)
	leftovers := findLeftovers(trees, orphans, r)
	if !opts.Repair {
		return r, nil
	}
	if !r.OK() {
		r.Notes = append(r.Notes, "not repaired: a repair frees blocks by what the records say, and the records contradict each other")
		return r, nil
	}
	return r, repair(bdb, filepath.Join(dir, DataFile), leftovers, trees, orphans, r)
}

// checkMeta reads the format and the grain.
func checkMeta(tx *bolt.Tx, metaPath string, r *Report) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: %s has no format record", ErrCorrupt, metaPath)
	}
	v := string(meta.Get(keyFormat))
	if v != strconv.Itoa(FormatVersion) {
		return fmt.Errorf("%w: %s is format %q, this shadowbench reads format %d", ErrFormat, metaPath, v, FormatVersion)
	}
	r.Format = FormatVersion
	g, err := strconv.Atoi(string(meta.Get(keyGrain)))
	if err != nil || g <= 0 || g&(g-1) != 0 {
		return fmt.Errorf("%w: %s: grain %q", ErrCorrupt, metaPath, meta.Get(keyGrain))
	}
	r.Grain = g
	if tx.Bucket(bucketTrees) == nil || tx.Bucket(bucketMaps) == nil {
		return fmt.Errorf("%w: %s: no trees or maps bucket", ErrCorrupt, metaPath)
	}
	return nil
}

// checkTrees reads every tree and its map: parents, sizes, entries in
// range, and no block named twice. It returns the trees, the map buckets
// no tree has, and the blocks the maps name.
func checkTrees(tx *bolt.Tx, r *Report) (map[uint64]*checkTree, []uint64, []uint64, error) {
	trees := make(map[uint64]*checkTree)
	err := tx.Bucket(bucketTrees).ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			r.problem("tree record with key %x", k)
			return nil
		}
		id := binary.BigEndian.Uint64(k)
		var rec treeRec
		if err := json.Unmarshal(v, &rec); err != nil {
			r.problem("tree %d: record %q: %v", id, v, err)
			return nil
		}
		trees[id] = &checkTree{rec: rec}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	owner := make(map[uint64]uint64) // block → tree
	byBucket := make(map[uint64]uint64)
	for _, id := range sortedIDs(trees) {
		t := trees[id]
		r.Trees++
		if t.rec.Live {
			r.Live++
		}
		if t.rec.Size <= 0 {
			r.problem("tree %d: size %d", id, t.rec.Size)
			continue
		}
		if other, ok := byBucket[t.rec.Bucket]; ok {
			r.problem("trees %d and %d share map bucket %d", other, id, t.rec.Bucket)
			continue
		}
		byBucket[t.rec.Bucket] = id
		if t.rec.Parent != 0 {
			p := trees[t.rec.Parent]
			switch {
			case p == nil:
				r.problem("tree %d: parent %d is missing", id, t.rec.Parent)
			case p.rec.Live:
				r.problem("tree %d: parent %d is a volume, not an image", id, t.rec.Parent)
			case p.rec.Size != t.rec.Size:
				r.problem("tree %d is %d bytes, its parent %d %d", id, t.rec.Size, t.rec.Parent, p.rec.Size)
			default:
				p.children++
			}
		}
		b := tx.Bucket(bucketMaps).Bucket(key(t.rec.Bucket))
		if b == nil {
			r.problem("tree %d: map bucket %d is missing", id, t.rec.Bucket)
			continue
		}
		grains := uint64((t.rec.Size + int64(r.Grain) - 1) / int64(r.Grain))
		err := b.ForEach(func(k, v []byte) error {
			if len(k) != 8 || len(v) != 8 {
				r.problem("tree %d: map entry %x=%x", id, k, v)
				return nil
			}
			t.entries++
			idx, blk := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(v)
			if idx >= grains {
				r.problem("tree %d: grain %d is past its end (%d grains)", id, idx, grains)
			}
			if blk >= zeroMark {
				return nil
			}
			if o, ok := owner[blk]; ok {
				r.problem("block %d is named by tree %d and by tree %d", blk, o, id)
				return nil
			}
			owner[blk] = id
			return nil
		})
		if err != nil {
			return nil, nil, nil, err
		}
		r.Entries += t.entries
	}
	// Cycles: every tree must reach a root by its parents.
	for _, id := range sortedIDs(trees) {
		seen := 0
		for p := trees[id].rec.Parent; p != 0 && trees[p] != nil; p = trees[p].rec.Parent {
			if seen++; seen > len(trees) {
				r.problem("tree %d lies on a cycle of parents", id)
				break
			}
		}
	}
	var orphans []uint64
	err = tx.Bucket(bucketMaps).ForEachBucket(func(k []byte) error {
		if len(k) != 8 {
			r.problem("map bucket with key %x", k)
			return nil
		}
		if n := binary.BigEndian.Uint64(k); byBucket[n] == 0 {
			orphans = append(orphans, n)
		}
		return nil
	})
	used := make([]uint64, 0, len(owner))
	for b := range owner {
		used = append(used, b)
	}
	r.Blocks = int64(len(used))
	return trees, orphans, used, err
}

// checkCatalogue has the catalogue name its trees and compares the names
// with the trees' records.
func checkCatalogue(tx *bolt.Tx, cat Catalogue, trees map[uint64]*checkTree, r *Report) {
	recs := make(map[string]map[string][]byte)
	_ = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		switch string(name) {
		case string(bucketMeta), string(bucketTrees), string(bucketMaps):
			return nil
		}
		kv := make(map[string][]byte)
		_ = b.ForEach(func(k, v []byte) error {
			if v != nil {
				kv[string(k)] = slices.Clone(v)
			}
			return nil
		})
		recs[string(name)] = kv
		return nil
	})
	names, problems := cat(recs)
	r.Problems = append(r.Problems, problems...)
	for _, n := range names {
		t := trees[n.Tree]
		switch {
		case t == nil:
			r.problem("%s names tree %d, which does not exist", n.By, n.Tree)
			continue
		case !t.rec.Named:
			r.problem("%s names tree %d, whose record says no record names it", n.By, n.Tree)
		case n.Size != 0 && n.Size != t.rec.Size:
			r.problem("%s is %d bytes, its tree %d %d", n.By, n.Size, n.Tree, t.rec.Size)
		}
		t.named = append(t.named, n.By)
	}
	for _, id := range sortedIDs(trees) {
		t := trees[id]
		switch {
		case len(t.named) > 1:
			r.problem("tree %d is named by %d records: %v", id, len(t.named), t.named)
		case t.rec.Named && len(t.named) == 0:
			r.problem("tree %d (%s) is marked named, but no record names it", id, t.kind())
		}
	}
}

func (t *checkTree) kind() string {
	if t.rec.Live {
		return "a volume"
	}
	return "an image"
}

// checkData compares the blocks the maps name with the data file.
func checkData(path string, used []uint64, r *Report) {
	f, err := os.Open(path)
	if err != nil {
		if len(used) > 0 || !errors.Is(err, os.ErrNotExist) {
			r.problem("data file: %v", err)
		}
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		r.problem("data file: %v", err)
		return
	}
	r.FileBytes = st.Size()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		r.AllocatedBytes = sys.Blocks * 512
	}
	grain := int64(r.Grain)
	if r.FileBytes%grain != 0 {
		r.problem("data file %s: size %d is not a whole number of %d-byte grains", path, r.FileBytes, grain)
	}
	if n := len(used); n > 0 && int64(used[n-1]) >= r.FileBytes/grain {
		r.problem("data file %s holds %d blocks, the maps name block %d", path, r.FileBytes/grain, used[n-1])
	}
	// Every block a map names was written, so it is allocated; the rest of
	// what the file system holds is free blocks, backed (fallocate, or kept
	// for reuse).
	r.FreeBlocks = max(0, r.AllocatedBytes/grain-int64(len(used)))
}

// findLeftovers lists what a repair removes: map buckets no tree has,
// volumes no record names, and images no record names with no children
// left. An image no record names with one child is allowed (a delete
// merges it), and noted.
func findLeftovers(trees map[uint64]*checkTree, orphans []uint64, r *Report) []uint64 {
	for _, b := range orphans {
		r.Leftovers = append(r.Leftovers, fmt.Sprintf("map bucket %d belongs to no tree", b))
	}
	var drop []uint64
	for _, id := range sortedIDs(trees) {
		t := trees[id]
		if t.rec.Named || len(t.named) > 0 {
			continue
		}
		switch {
		case t.children == 0:
			r.Leftovers = append(r.Leftovers, fmt.Sprintf("tree %d (%s, %d map entries) is named by no record and has no children", id, t.kind(), t.entries))
			drop = append(drop, id)
		case t.children == 1:
			r.Notes = append(r.Notes, fmt.Sprintf("tree %d is named by no record and has one child: it was not merged into it", id))
		}
	}
	return drop
}

// repair deletes the leftover trees and buckets in one transaction, then
// punches out of the data file every block no map names.
func repair(bdb *bolt.DB, dataPath string, drop []uint64, trees map[uint64]*checkTree, orphans []uint64, r *Report) error {
	if len(drop) > 0 || len(orphans) > 0 {
		err := bdb.Update(func(tx *bolt.Tx) error {
			maps := tx.Bucket(bucketMaps)
			for _, id := range drop {
				if err := tx.Bucket(bucketTrees).Delete(key(id)); err != nil {
					return err
				}
				if err := maps.DeleteBucket(key(trees[id].rec.Bucket)); err != nil {
					return err
				}
			}
			for _, b := range orphans {
				if err := maps.DeleteBucket(key(b)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("durable: repair: %w", err)
		}
		for _, id := range drop {
			r.Repaired = append(r.Repaired, fmt.Sprintf("tree %d deleted", id))
		}
		for _, b := range orphans {
			r.Repaired = append(r.Repaired, fmt.Sprintf("map bucket %d deleted", b))
		}
	}
	// Read the blocks named again, after the deletions, and let the store
	// punch out everything else as it does at start.
	var used []uint64
	err := bdb.View(func(tx *bolt.Tx) error {
		var err error
		_, used, err = readTrees(tx, bdb.Path(), true)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := os.Stat(dataPath); err != nil {
		return nil
	}
	before := r.AllocatedBytes
	capacity := max(r.FileBytes, int64(r.Grain))
	s, err := filestore.Open(dataPath, filestore.Options{Grain: r.Grain, Capacity: capacity, Used: used})
	if err != nil {
		return fmt.Errorf("durable: repair: %w", err)
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("durable: repair: %w", err)
	}
	var st unix.Stat_t
	if unix.Stat(dataPath, &st) == nil {
		r.AllocatedBytes = st.Blocks * 512
		r.FileBytes = st.Size
	}
	if freed := before - r.AllocatedBytes; freed > 0 {
		r.Repaired = append(r.Repaired, fmt.Sprintf("%d bytes of free blocks punched out of the data file", freed))
	}
	r.FreeBlocks = 0
	return nil
}

func sortedIDs(trees map[uint64]*checkTree) []uint64 {
	ids := make([]uint64, 0, len(trees))
	for id := range trees {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
