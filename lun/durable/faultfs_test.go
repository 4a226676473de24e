package durable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/cow/filestore"
	"github.com/shadowbench/shadowbench/lun/durable/faultfs"
)

var (
	faultSeed  = flag.Uint64("durable.faultseed", 0, "seed that samples the calls TestFileSystemFaults fails (0: from the clock)")
	faultCases = flag.Int("durable.faultcases", 8, "calls TestFileSystemFaults fails per fault and file, sampled when there are more (0: every call; 3 with -short)")
)

// fCap is the capacity of the fault test's directories: the data file
// grows once, by all of it.
const fCap = 16 << 20

// fStep is one operation of the fault workload: run does it, apply makes
// the model what it must be once it succeeded.
type fStep struct {
	name  string
	run   func(w *fWorld) error
	apply func(m fModel)
	// write is the step's write, if it makes one.
	write *fWrote
}

// fWrote is a write into a tree.
type fWrote struct {
	tree string
	off  int64
	p    []byte
}

// fModel is what the trees must hold, by name (see mTree).
type fModel map[string]*mTree

func (m fModel) clone() fModel {
	out := make(fModel, len(m))
	for n, mt := range m {
		c := &mTree{live: mt.live, now: slices.Clone(mt.now), dur: slices.Clone(mt.dur)}
		for g, cs := range mt.since {
			if c.since == nil {
				c.since = make(map[int][][]byte)
			}
			c.since[g] = slices.Clone(cs)
		}
		out[n] = c
	}
	return out
}

// fWorld is a data directory under the fault file system, and its model.
type fWorld struct {
	t   *testing.T
	dir string
	db  *DB
	m   fModel
	log []string // the steps run, and how they ended
}

func (w *fWorld) tree(name string) (*Tree, error) {
	if w.db == nil {
		return nil, errors.New("not open")
	}
	recs, err := w.db.Records("names")
	if err != nil {
		return nil, err
	}
	v, ok := recs[name]
	if !ok {
		return nil, fmt.Errorf("no record for %s", name)
	}
	t := w.db.Tree(binary.BigEndian.Uint64(v))
	if t == nil {
		return nil, fmt.Errorf("no tree for %s", name)
	}
	return t, nil
}

func pattern(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i/512)
	}
	return p
}

func fWrite(name string, off int64, n int, seed byte) fStep {
	p := pattern(seed, n)
	return fStep{fmt.Sprintf("write %s %d+%d", name, off, n),
		func(w *fWorld) error {
			t, err := w.tree(name)
			if err != nil {
				return err
			}
			_, err = t.Volume().WriteAt(p, off)
			return err
		},
		func(m fModel) {
			copy(m[name].now[off:], p)
			m[name].wrote(off, int64(n))
		}, &fWrote{name, off, p}}
}

func fTrim(name string, off, n int64) fStep {
	return fStep{fmt.Sprintf("trim %s %d+%d", name, off, n),
		func(w *fWorld) error {
			t, err := w.tree(name)
			if err != nil {
				return err
			}
			return t.Volume().Trim(off, n)
		},
		func(m fModel) {
			clear(m[name].now[off : off+n])
			m[name].wrote(off, n)
		}, nil}
}

func fFlushed(m fModel) {
	for _, mt := range m {
		if mt.live && mt.since != nil { // else dur is now already
			mt.durable()
		}
	}
}

var fFlush = fStep{"flush", func(w *fWorld) error { return w.db.Flush() }, fFlushed, nil}

// fFUA is a write with FUA, as lun makes it: the write, then a flush.
func fFUA(name string, off int64, n int, seed byte) fStep {
	wr := fWrite(name, off, n, seed)
	return fStep{"fua " + strings.TrimPrefix(wr.name, "write "),
		func(w *fWorld) error {
			if err := wr.run(w); err != nil {
				return err
			}
			return w.db.Flush()
		},
		func(m fModel) { wr.apply(m); fFlushed(m) }, wr.write}
}

var (
	fOpen = fStep{"open", func(w *fWorld) error {
		db, err := Open(w.dir, Options{Capacity: fCap})
		if err == nil {
			w.db = db
		}
		return err
	}, func(fModel) {}, nil}
	fClose = fStep{"close", func(w *fWorld) error {
		err := w.db.Close()
		w.db = nil
		return err
	}, func(fModel) {}, nil}
)

func fCreate(name string, size int64) fStep {
	return fStep{"create " + name,
		func(w *fWorld) error {
			_, err := w.db.NewVolume(size, func(ids ...uint64) []Edit { return []Edit{nameEdit(name, ids[0])} })
			return err
		},
		func(m fModel) { m[name] = &mTree{live: true, now: make([]byte, size), dur: make([]byte, size)} }, nil}
}

func fSnapshot(src, name string) fStep {
	return fStep{"snapshot " + src + " as " + name,
		func(w *fWorld) error {
			t, err := w.tree(src)
			if err != nil {
				return err
			}
			img, err := t.Volume().Snapshot()
			if err != nil {
				return err
			}
			defer img.Release()
			_, err = w.db.CommitImages([]Commit{{Tree: t, Image: img}}, func(ids ...uint64) []Edit { return []Edit{nameEdit(name, ids[0])} })
			return err
		},
		func(m fModel) {
			m[src].durable()
			m[name] = &mTree{now: slices.Clone(m[src].now), dur: slices.Clone(m[src].now)}
		}, nil}
}

func fClone(src, name string) fStep {
	return fStep{"clone " + src + " as " + name,
		func(w *fWorld) error {
			t, err := w.tree(src)
			if err != nil {
				return err
			}
			_, err = w.db.Clone(t, func(ids ...uint64) []Edit { return []Edit{nameEdit(name, ids[0])} })
			return err
		},
		func(m fModel) {
			m[name] = &mTree{live: true, now: slices.Clone(m[src].now), dur: slices.Clone(m[src].now)}
		}, nil}
}

func fRevert(dst, src string) fStep {
	return fStep{"revert " + dst + " to " + src,
		func(w *fWorld) error {
			t, err := w.tree(dst)
			if err != nil {
				return err
			}
			s, err := w.tree(src)
			if err != nil {
				return err
			}
			return w.db.Revert(t, s, nil)
		},
		func(m fModel) {
			m[dst].now = slices.Clone(m[src].now)
			m[dst].durable()
		}, nil}
}

func fDelete(name string) fStep {
	return fStep{"delete " + name,
		func(w *fWorld) error {
			t, err := w.tree(name)
			if err != nil {
				return err
			}
			if err := w.db.Delete(t, Set(Edit{Bucket: "names", Key: name})); err != nil {
				return err
			}
			if t.Live() {
				return t.Volume().Release()
			}
			return nil
		},
		func(m fModel) { delete(m, name) }, nil}
}

// fWorkload is the fault test's workload: a new directory; writes at
// several offsets, aligned or not; flushes, with a map to write and with
// overwrites in place only; a FUA write; a snapshot, written after; a clone
// of it, written; a trim; a revert; a clone and a snapshot deleted (the
// clone's 256 blocks punched out, the snapshot merged into its one child);
// a close, and an open that adopts the file (cutting it, punching the
// free blocks) and writes into the punched blocks.
func fWorkload() []fStep {
	const mib = 1 << 20
	return []fStep{
		fOpen,
		fCreate("v", 2*mib),
		fWrite("v", 0, 8192, 'a'),
		fWrite("v", mib/2, 64<<10, 'b'),
		fWrite("v", 3*mib/2+512, 5000, 'c'),
		fFlush,
		fFUA("v", 64<<10, 4096, 'd'),
		fWrite("v", 0, 4096, 'e'), // in place
		fFlush,
		fSnapshot("v", "s"),
		fWrite("v", 0, 8192, 'f'), // copies what s shares
		fWrite("v", mib, 4096, 'g'),
		fFlush,
		fClone("s", "c"),
		fWrite("c", mib-4096, mib, 'h'), // 257 blocks: punched when c goes
		fWrite("c", 0, 4096, 'i'),
		fFlush,
		fTrim("v", mib/2, 64<<10),
		fFlush,
		fRevert("v", "s"),
		fDelete("c"),
		fDelete("s"),
		fWrite("v", 3*mib/2, 4096, 'j'),
		fFlush,
		fClose,
		fOpen,
		fWrite("v", 0, 4096, 'k'),
		fWrite("v", mib, 128<<10, 'l'),
		fFlush,
		fClose,
	}
}

// metaNew is meta.db while it is created (createMeta).
const metaNew = MetaFile + ".new"

// fFault is a kind of fault, made at the nth call of its operation on a
// file.
type fFault struct {
	name  string
	op    faultfs.Op
	errno syscall.Errno // what the failing operation must answer
	files []string
	rules func(file string, nth int) []faultfs.Rule
}

var fFaults = []fFault{
	{"EIO on write", faultfs.OpWrite, syscall.EIO, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.Fail(f, faultfs.OpWrite, n, syscall.EIO)}
		}},
	{"short write", faultfs.OpWrite, syscall.ENOSPC, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			// Half the bytes, then no space for the rest.
			return []faultfs.Rule{faultfs.ShortWrite(f, n), faultfs.Fail(f, faultfs.OpWrite, n+1, syscall.ENOSPC)}
		}},
	{"ENOSPC on write", faultfs.OpWrite, syscall.ENOSPC, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.FailFrom(f, faultfs.OpWrite, n, syscall.ENOSPC)}
		}},
	{"EIO on fdatasync", faultfs.OpFdatasync, syscall.EIO, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.Fail(f, faultfs.OpFdatasync, n, syscall.EIO)}
		}},
	{"EIO on fsync", faultfs.OpFsync, syscall.EIO, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.Fail(f, faultfs.OpFsync, n, syscall.EIO)}
		}},
	{"ENOSPC on fallocate", faultfs.OpFallocate, syscall.ENOSPC, []string{DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.FailFrom(f, faultfs.OpFallocate, n, syscall.ENOSPC)}
		}},
	{"EIO on truncate", faultfs.OpTruncate, syscall.EIO, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.Fail(f, faultfs.OpTruncate, n, syscall.EIO)}
		}},
	{"EIO on open", faultfs.OpOpen, syscall.EIO, []string{MetaFile, metaNew, DataFile},
		func(f string, n int) []faultfs.Rule {
			return []faultfs.Rule{faultfs.Fail(f, faultfs.OpOpen, n, syscall.EIO)}
		}},
}

// TestFileSystemFaults checks D5 with faults at the system-call level, in
// meta.db (and meta.db.new, while a directory is created) and in the data
// file, through the fault file system: the workload is run once to count
// the calls of each operation on each file, then once per call (a sample
// of them, with a printed seed), failing it. The operation that meets the
// fault must fail with an error that names the file and the errno. A
// failure the package says can be retried (a failed transaction, no space
// for the data file to grow, an open) is retried once the fault is
// lifted, must succeed, and the workload goes on. One that fails the store
// (a write or fdatasync of the data file, a transaction bbolt read as
// committed: filestore.ErrFailed, ErrFailed) must keep failing until the
// directory is opened again. Then the directory, opened again without
// faults, must hold what D1-D3 promise against the model: every write
// made before a flush that succeeded, or with FUA; every snapshot
// committed, unchanged; the catalogue agreeing with the maps, with the
// failed operation's effects all there or none (and the bytes of a failed
// write old or new, byte by byte); Check finding nothing wrong; and no
// file of the directory left open or mapped.
func TestFileSystemFaults(t *testing.T) {
	backing := t.TempDir()
	mnt := faultfs.Mount(t, backing, faultfs.NoSync())
	seed := *faultSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./lun/durable -run TestFileSystemFaults -durable.faultseed %d; -durable.faultcases 0 fails every call)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	perSite := *faultCases
	if testing.Short() && !flagSet("durable.faultcases") {
		perSite = 3
	}

	// The calls of a run without faults.
	n := 0
	newDir := func() (string, string) {
		n++
		name := fmt.Sprintf("case%d", n)
		return filepath.Join(mnt.Dir(), name), filepath.Join(backing, name)
	}
	dir, bdir := newDir()
	mnt.Reset()
	w := &fWorld{t: t, dir: dir, m: fModel{}}
	for _, st := range fWorkload() {
		require.NoError(t, st.run(w), st.name)
		st.apply(w.m)
	}
	calls := mnt.Counts().Calls
	w.verify(bdir, nil, nil)
	require.NoError(t, os.RemoveAll(bdir))
	var sites []string
	for s, c := range calls {
		if s.File == MetaFile || s.File == metaNew || s.File == DataFile {
			sites = append(sites, fmt.Sprintf("%s %d", s, c))
		}
	}
	slices.Sort(sites)
	t.Logf("calls of the workload: %s", strings.Join(sites, ", "))

	cases := 0
	outcomes := make(map[string]int)
	for _, ff := range fFaults {
		for _, file := range ff.files {
			total := calls[faultfs.Site{File: file, Op: ff.op}]
			for _, nth := range sample(rng, total, perSite) {
				name := fmt.Sprintf("%s/%s/%d", ff.name, file, nth)
				dir, bdir := newDir()
				mnt.Reset()
				require.NoError(t, mnt.Set(ff.rules(file, nth)...))
				outcome := runFaulted(t, name, mnt, dir, bdir, ff, file)
				hits := mnt.Counts().Hits[faultfs.Site{File: file, Op: ff.op}]
				require.NoError(t, mnt.Set())
				require.NotZero(t, hits, "%s: the fault was not made: the workload's calls are not the same from run to run", name)
				outcomes[ff.name+" "+file+": "+outcome]++
				cases++
				requireNothingOpen(t, name, dir)
				require.NoError(t, os.RemoveAll(bdir))
				if t.Failed() {
					return
				}
			}
		}
	}
	var lines []string
	for o, n := range outcomes {
		lines = append(lines, fmt.Sprintf("%s %d", o, n))
	}
	slices.Sort(lines)
	t.Logf("%d cases (retried: failed, then done again once the fault was lifted; failed: the store failed, and the directory was opened again; absorbed: no operation failed, as when the kernel answers a failure after some bytes of a write as a short write, which the writer completes):\n%s", cases, strings.Join(lines, "\n"))
}

// flagSet reports whether the flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// sample returns up to most of the call numbers 1..total (at least two),
// the first and the last among them; every one for most 0.
func sample(rng *rand.Rand, total, most int) []int {
	all := make([]int, total)
	for i := range all {
		all[i] = i + 1
	}
	if most == 0 || total <= max(most, 2) {
		return all
	}
	out := []int{1, total}
	rest := all[1 : total-1]
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	out = append(out, rest[:max(most, 2)-2]...)
	slices.Sort(out)
	return out
}

// runFaulted runs the workload in dir with the mount's rules set, handles
// the first failure as the package promises, and checks the directory. It
// returns what happened: "absorbed", "retried" or "failed".
func runFaulted(t *testing.T, name string, mnt *faultfs.Mounted, dir, bdir string, ff fFault, file string) string {
	w := &fWorld{t: t, dir: dir, m: fModel{}}
	var alt fModel   // the model had the failed operation taken effect
	var torn *fWrote // a write that failed the store
	failed, outcome := false, "absorbed"
	defer func() {
		if t.Failed() {
			t.Logf("case %s:\n%s", name, strings.Join(w.log, "\n"))
		}
	}()
	steps := fWorkload()
	for i := 0; i < len(steps); i++ {
		st := steps[i]
		err := st.run(w)
		w.log = append(w.log, fmt.Sprintf("%s: %v", st.name, err))
		if err == nil {
			st.apply(w.m)
			continue
		}
		if failed {
			t.Fatalf("%s: %s failed again: %v", name, st.name, err)
		}
		failed = true
		require.NoError(t, mnt.Set(), "lift the fault")
		path := filepath.Join(dir, strings.TrimSuffix(file, ".new"))
		if bboltGrow(file, ff.op) {
			// bbolt formats the errors of its growth with %s: the errno
			// is only in the text (see bboltGrow).
			require.ErrorContains(t, err, ff.errno.Error(), "%s: %s: the error's cause", name, st.name)
		} else {
			require.ErrorIs(t, err, ff.errno, "%s: %s: the error's cause", name, st.name)
		}
		require.ErrorContains(t, err, path, "%s: %s: the error names the file", name, st.name)
		if errors.Is(err, filestore.ErrFailed) || errors.Is(err, ErrFailed) {
			// The store or meta.db failed: nothing changes until the
			// directory is opened again.
			if w.db != nil {
				ferr := w.db.Flush()
				require.Error(t, ferr, "%s: a flush after %s", name, st.name)
				require.True(t, errors.Is(ferr, filestore.ErrFailed) || errors.Is(ferr, ErrFailed),
					"%s: a flush after %s: %v", name, st.name, ferr)
				_ = w.db.Close()
				w.db = nil
			}
			alt = w.m.clone()
			st.apply(alt)
			torn = st.write
			outcome = "failed"
			break
		}
		// Anything else is retried, and must then succeed (D5).
		if w.db != nil && strings.HasPrefix(st.name, "write ") && errors.Is(err, cow.ErrNoSpace) {
			w.requireUnchanged(name, st)
		}
		outcome = "retried"
		i-- // again, without the fault
	}
	if w.db != nil {
		require.NoError(t, w.db.Close(), "%s: close", name)
		w.db = nil
	}
	w.verify(bdir, alt, torn)
	return outcome
}

// mayHoldTorn is mayHold for a tree whose write tw failed the store: a
// grain may hold any content mayHold accepts with any of tw's bytes
// landed over it. It returns the first grain that does not, or -1.
func mayHoldTorn(mt *mTree, got []byte, tw *fWrote) int {
	for g := 0; g*mGrain < len(got); g++ {
		base := int64(g) * mGrain
		c := mt.grain(got, g)
		cands := [][]byte{mt.grain(mt.dur, g)}
		if mt.live {
			cands = append(cands, mt.since[g]...)
		}
		if !slices.ContainsFunc(cands, func(o []byte) bool {
			for j := range c {
				at := base + int64(j)
				if c[j] == o[j] {
					continue
				}
				if at < tw.off || at >= tw.off+int64(len(tw.p)) || c[j] != tw.p[at-tw.off] {
					return false
				}
			}
			return true
		}) {
			return g
		}
	}
	return -1
}

// bboltGrow reports whether op on file is made only by bbolt's growth of
// meta.db (DB.grow: a truncate and an fsync, where its transactions
// fdatasync). bbolt 1.4.3 returns their errors as fmt.Errorf("file resize
// error: %s") and ("file sync error: %s"), so the errno is lost, and no
// caller can test for it; durable still names meta.db.
func bboltGrow(file string, op faultfs.Op) bool {
	return (file == MetaFile || file == metaNew) && (op == faultfs.OpTruncate || op == faultfs.OpFsync)
}

// requireUnchanged checks that a write that failed for want of space
// changed nothing: the volume reads as the model says it did before.
func (w *fWorld) requireUnchanged(name string, st fStep) {
	var tn string
	var off, n int64
	_, err := fmt.Sscanf(st.name, "write %s %d+%d", &tn, &off, &n)
	require.NoError(w.t, err)
	tr, err := w.tree(tn)
	require.NoError(w.t, err)
	got := make([]byte, n)
	_, err = tr.Volume().ReadAt(got, off)
	require.NoError(w.t, err)
	require.True(w.t, bytes.Equal(w.m[tn].now[off:off+n], got), "%s: the failed %s changed the volume", name, st.name)
}

// verify opens the directory without faults and checks it against the
// model, or against alt, the model had the failed operation taken effect,
// tree by tree; then checks it offline in the backing directory bdir.
// torn is a write that failed the store: what the bytes it was to write
// hold is unknown (filestore's doc: a write that failed may have landed in
// part, in place), so each may hold its old content or the new.
func (w *fWorld) verify(bdir string, alt fModel, torn *fWrote) {
	t := w.t
	db, err := Open(w.dir, Options{Capacity: fCap})
	require.NoError(t, err, "the directory opens again")
	w.db = db
	defer func() {
		if w.db != nil {
			_ = w.db.Close()
			w.db = nil
		}
	}()
	recs, err := db.Records("names")
	require.NoError(t, err)
	known := make(map[string]bool)
	for n := range w.m {
		known[n] = true
	}
	for n := range alt {
		known[n] = true
	}
	for n := range recs {
		require.True(t, known[n], "the catalogue names %s, which the model has not", n)
	}
	for n := range known {
		cands := []*mTree{w.m[n]}
		if alt != nil {
			cands = append(cands, alt[n])
		}
		if _, ok := recs[n]; !ok {
			require.True(t, slices.Contains(cands, nil), "%s is missing", n)
			continue
		}
		tr, err := w.tree(n)
		require.NoError(t, err)
		got := make([]byte, tr.rec.Size)
		img, err := db.Image(tr)
		require.NoError(t, err)
		if tr.Live() {
			_, err = tr.Volume().ReadAt(got, 0)
		} else {
			_, err = img.ReadAt(got, 0)
		}
		require.NoError(t, err)
		require.NoError(t, img.Release())
		ok, why := false, ""
		for _, mt := range cands {
			if mt == nil {
				continue
			}
			if mt.live != tr.Live() || len(mt.now) != len(got) {
				why += fmt.Sprintf("; live %v size %d, model live %v size %d", tr.Live(), len(got), mt.live, len(mt.now))
				continue
			}
			hold := mt.mayHold
			if torn != nil && torn.tree == n {
				hold = func(got []byte) int { return mayHoldTorn(mt, got, torn) }
			}
			if g := hold(got); g >= 0 {
				why += fmt.Sprintf("; grain %d holds neither what was written down nor a write since", g)
				continue
			}
			ok = true
		}
		require.True(t, ok, "%s against the model%s", n, why)
	}
	named := requireNamedOnce(t, db)
	requireNamedHeld(t, db, named)
	requireMapsMatch(t, db)
	checkBlocks(t, db)
	require.NoError(t, db.Close())
	w.db = nil
	r, err := Check(bdir, CheckOptions{Catalogue: names})
	require.NoError(t, err)
	require.True(t, r.OK(), "check: %v", r.Problems)
}

// requireNothingOpen checks that no file under dir is open or mapped by
// this process: every Open that failed, and every Close, let go of its
// files.
func requireNothingOpen(t *testing.T, name, dir string) {
	t.Helper()
	var open []string
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(p, dir+"/") {
			open = append(open, "fd "+fd.Name()+" "+p)
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	for _, l := range strings.Split(string(maps), "\n") {
		if i := strings.Index(l, dir+"/"); i >= 0 {
			open = append(open, "mapped "+l[i:])
		}
	}
	require.Empty(t, open, "%s: files left open", name)
}
