package lun

// This file is the durable array: LUN records in the catalogue of a
// lun/durable DB, written in the transaction that changes the trees they
// name, and the array rebuilt from them at Open.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"weak"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/lun/durable"
)

// lunsBucket is the catalogue bucket of LUN records, by name.
const lunsBucket = "luns"

// record is a LUN as the catalogue keeps it. Parent names the parent LUN
// by its NAA designator, which no other LUN ever has (a name may be
// reused once the parent is deleted).
//
// Thick is written for a thick Original only, so that a record without
// it is thin: the LUNs of a directory written before LUNs could be thick
// were all thin (the array set no size against its capacity), and reading
// them as thick would make an array whose sizes add up past its capacity
// refuse every new thick LUN and report thick LUNs it never promised.
// A field "thin" that old records lack would have read them as thick.
type record struct {
	Kind      string    `json:"kind"`
	Thick     bool      `json:"thick,omitempty"`
	Tree      uint64    `json:"tree"`
	Size      int64     `json:"size"`
	BlockSize int       `json:"block_size"`
	ReadOnly  bool      `json:"read_only,omitempty"`
	Masked    bool      `json:"masked,omitempty"`
	Created   time.Time `json:"created"`
	Parent    string    `json:"parent_naa,omitempty"`
	Vendor    string    `json:"vendor"`
	Product   string    `json:"product"`
	Revision  string    `json:"revision"`
	Serial    string    `json:"serial"`
	NAA       string    `json:"naa"`
}

// Open returns the durable array kept in dir, creating it when dir holds
// none: its LUNs, snapshot LUNs and clones, with their identities, flags
// and data, as the last flush or commit left them (design.md D1-D3).
// cfg.Grain applies to a new directory only; cfg.Capacity is the most data
// the data file may hold. It fails with durable.ErrLocked when another
// process has dir open, and durable.ErrFormat or durable.ErrCorrupt when
// dir cannot be read.
func Open(dir string, cfg Config) (*Array, error) {
	cfg = cfg.withDefaults()
	if cfg.Capacity <= 0 {
		return nil, fmt.Errorf("lun: %s: a durable array needs a capacity", dir)
	}
	db, err := durable.Open(dir, durable.Options{Grain: cfg.Grain, Capacity: cfg.Capacity})
	if err != nil {
		return nil, err
	}
	cfg.Grain = db.Store().GrainSize()
	a := &Array{cfg: cfg, store: db.Store(), db: db}
	a.mu.luns = make(map[string]*LUN)
	if err := a.rebuild(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return a, nil
}

// rebuild makes a LUN of every record.
func (a *Array) rebuild() error {
	recs, err := a.db.Records(lunsBucket)
	if err != nil {
		return err
	}
	byNAA := make(map[string]*LUN, len(recs))
	parents := make(map[*LUN]string, len(recs))
	for name, v := range recs {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: %s: LUN %s: %v", durable.ErrCorrupt, a.db.Dir(), name, err)
		}
		l, err := a.fromRecord(name, r)
		if err != nil {
			return fmt.Errorf("%w: %s: LUN %s: %w", durable.ErrCorrupt, a.db.Dir(), name, err)
		}
		a.mu.luns[name] = l
		byNAA[r.NAA] = l
		if r.Parent != "" {
			parents[l] = r.Parent
		}
	}
	// Parents, and each source's snapshots in the order they were taken,
	// newest last: the chain of bases of changed-block tracking.
	snaps := make(map[*LUN][]*LUN)
	for l, naa := range parents {
		if p := byNAA[naa]; p != nil {
			l.parent = p
			if l.kind == Snapshot {
				snaps[p] = append(snaps[p], l)
			}
		}
	}
	for src, ss := range snaps {
		slices.SortFunc(ss, func(x, y *LUN) int { return x.created.Compare(y.created) })
		for i, s := range ss {
			if i > 0 {
				s.prev = weak.Make(ss[i-1])
			}
		}
		src.lastSnap.Store(ss[len(ss)-1])
		src.snapshots.Store(int32(len(ss)))
	}
	return nil
}

func (a *Array) fromRecord(name string, r record) (*LUN, error) {
	var kind Kind
	switch r.Kind {
	case "original":
		kind = Original
	case "snapshot":
		kind = Snapshot
	case "clone":
		kind = Clone
	default:
		return nil, fmt.Errorf("kind %q", r.Kind)
	}
	id := Identity{Vendor: r.Vendor, Product: r.Product, Revision: r.Revision, Serial: r.Serial}
	naa, err := hex.DecodeString(r.NAA)
	if err != nil || len(naa) != len(id.NAA) {
		return nil, fmt.Errorf("NAA %q", r.NAA)
	}
	copy(id.NAA[:], naa)
	t := a.db.Tree(r.Tree)
	if t == nil {
		return nil, fmt.Errorf("tree %d is missing", r.Tree)
	}
	l := a.newLUN(name, kind, id, r.Size, r.BlockSize)
	l.thin = !r.Thick
	l.created = r.Created
	l.tree = t
	if t.Live() {
		l.data.Store(&data{vol: t.Volume()})
	} else {
		img, err := a.db.Image(t)
		if err != nil {
			return nil, err
		}
		l.data.Store(&data{img: img})
	}
	l.readOnly.Store(r.ReadOnly)
	l.masked.Store(r.Masked)
	return l, nil
}

// Durable reports whether the array is kept on disk (Open) rather than in
// memory (NewArray).
func (a *Array) Durable() bool { return a.db != nil }

// Dir returns the data directory of a durable array, or "".
func (a *Array) Dir() string {
	if a.db == nil {
		return ""
	}
	return a.db.Dir()
}

// Flush makes every write completed before it durable, on every LUN of the
// array at once (one checkpoint). An in-memory array has nothing to do.
func (a *Array) Flush() error {
	if a.db == nil {
		return nil
	}
	return a.db.Flush()
}

// Close flushes a durable array and closes its data directory. The array
// must not be used afterwards. An in-memory array has nothing to do.
func (a *Array) Close() error {
	if a.db == nil {
		return nil
	}
	err := a.db.Flush()
	if cerr := a.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// PutRecord writes, or with value nil deletes, a record of the array's
// catalogue in bucket (one the array does not use itself, such as the
// daemon's snapshot sets), durably. An in-memory array keeps nothing.
func (a *Array) PutRecord(bucket, key string, value []byte) error {
	if a.db == nil {
		return nil
	}
	if bucket == lunsBucket {
		return fmt.Errorf("lun: bucket %q is the array's own", bucket)
	}
	return a.db.Put(durable.Edit{Bucket: bucket, Key: key, Value: value})
}

// PutRecords writes, or with a nil value deletes, records of the array's
// catalogue in bucket, by key, in one transaction (see PutRecord).
func (a *Array) PutRecords(bucket string, kv map[string][]byte) error {
	if a.db == nil {
		return nil
	}
	if bucket == lunsBucket {
		return fmt.Errorf("lun: bucket %q is the array's own", bucket)
	}
	edits := make([]durable.Edit, 0, len(kv))
	for k, v := range kv {
		edits = append(edits, durable.Edit{Bucket: bucket, Key: k, Value: v})
	}
	return a.db.Put(edits...)
}

// Records returns the records of a catalogue bucket written with
// PutRecord, by key; none for an in-memory array.
func (a *Array) Records(bucket string) (map[string][]byte, error) {
	if a.db == nil {
		return nil, nil
	}
	return a.db.Records(bucket)
}

// record returns l's catalogue record naming tree, with its current flags.
func (l *LUN) record(tree uint64) durable.Edit {
	r := record{
		Kind: l.kind.String(), Thick: !l.Thin(), Tree: tree, Size: l.size, BlockSize: l.blockSize,
		ReadOnly: l.readOnly.Load(), Masked: l.masked.Load(), Created: l.created.UTC(),
		Vendor: l.id.Vendor, Product: l.id.Product, Revision: l.id.Revision, Serial: l.id.Serial,
		NAA: hex.EncodeToString(l.id.NAA[:]),
	}
	if l.parent != nil {
		r.Parent = hex.EncodeToString(l.parent.id.NAA[:])
	}
	v, err := json.Marshal(r)
	if err != nil {
		panic(err) // a record of plain fields always marshals
	}
	return durable.Edit{Bucket: lunsBucket, Key: l.name, Value: v}
}

// edits returns the edit that writes l's record naming the first new tree.
func (l *LUN) edits() durable.Edits {
	return func(ids ...uint64) []durable.Edit { return []durable.Edit{l.record(ids[0])} }
}

// durableTree returns l's tree, read under l.mu.
func (l *LUN) durableTree() *durable.Tree {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree
}

// rewrite writes l's record again after a change of its flags.
func (l *LUN) rewrite() error {
	if l.array.db == nil || l.tree == nil {
		return nil
	}
	return l.array.db.Put(l.record(l.tree.ID()))
}

// forget removes l's record and lets go of its tree in the DB.
func (a *Array) forget(l *LUN) error {
	t := l.durableTree()
	if a.db == nil || t == nil {
		return nil
	}
	return a.db.Delete(t, durable.Set(durable.Edit{Bucket: lunsBucket, Key: l.name}))
}

// persistCommit writes down the images of snapshot LUNs just committed by
// cow, in one transaction (D2): imgs[i] is snaps[i]'s.
func (a *Array) persistCommit(snaps []*LUN, imgs []*cow.Image) error {
	if a.db == nil || len(snaps) == 0 {
		return nil
	}
	cs := make([]durable.Commit, len(snaps))
	for i, s := range snaps {
		t := s.parent.durableTree()
		if t == nil {
			return errors.New("lun: a durable snapshot's source has no tree")
		}
		cs[i] = durable.Commit{Tree: t, Image: imgs[i]}
	}
	trees, err := a.db.CommitImages(cs, func(ids ...uint64) []durable.Edit {
		out := make([]durable.Edit, len(ids))
		for i, id := range ids {
			out[i] = snaps[i].record(id)
		}
		return out
	})
	if err != nil {
		return err
	}
	for i, s := range snaps {
		s.mu.Lock()
		s.tree = trees[i]
		s.mu.Unlock()
	}
	return nil
}

// CheckCatalogue is the durable.Catalogue of an array's LUN records: each
// must parse, name its tree and its own NAA designator, which no other
// LUN has. durable.Check compares the trees they name with the trees.
func CheckCatalogue(recs map[string]map[string][]byte) ([]durable.Name, []string) {
	var names []durable.Name
	var problems []string
	byNAA := make(map[string]string)
	for _, name := range slices.Sorted(maps.Keys(recs[lunsBucket])) {
		var r record
		if err := json.Unmarshal(recs[lunsBucket][name], &r); err != nil {
			problems = append(problems, fmt.Sprintf("LUN %s: record: %v", name, err))
			continue
		}
		l := durable.Name{Tree: r.Tree, By: "LUN " + name, Size: r.Size}
		switch r.Kind {
		case "original", "snapshot", "clone":
		default:
			problems = append(problems, fmt.Sprintf("%s: kind %q", l.By, r.Kind))
		}
		if naa, err := hex.DecodeString(r.NAA); err != nil || len(naa) != len(Identity{}.NAA) {
			problems = append(problems, fmt.Sprintf("%s: NAA %q", l.By, r.NAA))
		} else if other, ok := byNAA[r.NAA]; ok {
			problems = append(problems, fmt.Sprintf("%s has the NAA of LUN %s, %s", l.By, other, r.NAA))
		}
		byNAA[r.NAA] = name
		names = append(names, l)
	}
	return names, problems
}
