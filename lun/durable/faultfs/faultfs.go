package faultfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Op is an operation on a file that rules can fail.
type Op uint8

// Operations.
const (
	// OpOpen is an open or a creation of a regular file.
	OpOpen Op = iota + 1
	// OpWrite is one FUSE write: a pwrite or pwritev is one or more, split
	// at the mount's largest request (128 KiB).
	OpWrite
	// OpFsync is an fsync.
	OpFsync
	// OpFallocate is an fallocate: growth and punched holes alike.
	OpFallocate
	// OpTruncate is a change of size: truncate or ftruncate.
	OpTruncate
	// OpFdatasync is an fdatasync.
	OpFdatasync
)

var opNames = [...]string{"", "open", "write", "fsync", "fallocate", "truncate", "fdatasync"}

func (o Op) String() string {
	if int(o) < len(opNames) && o != 0 {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Ops is every operation, in order.
var Ops = []Op{OpOpen, OpWrite, OpFsync, OpFdatasync, OpFallocate, OpTruncate}

// Forever, as a Rule's Count, hits every call from the Nth on.
const Forever = -1

// Rule fails calls of one operation on files of one name.
type Rule struct {
	// File is the base name of the files the rule applies to ("meta.db");
	// empty for every file.
	File string `json:"file,omitempty"`
	Op   Op     `json:"op"`
	// Nth is the first call the rule hits, counting from 1 (F2); 0 is 1.
	Nth int `json:"nth,omitempty"`
	// Count is how many calls from the Nth it hits: 0 for one, Forever for
	// all.
	Count int `json:"count,omitempty"`
	// Errno is what a hit call answers.
	Errno syscall.Errno `json:"errno,omitempty"`
	// Short, for OpWrite, makes a hit call write the first half of its
	// bytes and answer their count instead of failing. The caller then
	// writes the rest, which is the next call.
	Short bool `json:"short,omitempty"`
}

// Fail returns a rule that fails the nth call of op on file with errno.
func Fail(file string, op Op, nth int, errno syscall.Errno) Rule {
	return Rule{File: file, Op: op, Nth: nth, Errno: errno}
}

// FailFrom returns a rule that fails the nth call of op on file and every
// one after it with errno.
func FailFrom(file string, op Op, nth int, errno syscall.Errno) Rule {
	return Rule{File: file, Op: op, Nth: nth, Count: Forever, Errno: errno}
}

// ShortWrite returns a rule that cuts the nth write to file short.
func ShortWrite(file string, nth int) Rule {
	return Rule{File: file, Op: OpWrite, Nth: nth, Short: true}
}

func (r Rule) String() string {
	s := fmt.Sprintf("%s %s #%d", r.File, r.Op, max(r.Nth, 1))
	switch {
	case r.Count == Forever:
		s += " on"
	case r.Count > 1:
		s += fmt.Sprintf("-#%d", max(r.Nth, 1)+r.Count-1)
	}
	if r.Short {
		return s + " short"
	}
	return s + " " + unix.ErrnoName(r.Errno)
}

func (r Rule) hits(file string, op Op, n int) bool {
	if r.Op != op || (r.File != "" && r.File != file) {
		return false
	}
	first := max(r.Nth, 1)
	if n < first {
		return false
	}
	return r.Count == Forever || n < first+max(r.Count, 1)
}

func (r Rule) check() error {
	if r.Op == 0 || int(r.Op) >= len(opNames) {
		return fmt.Errorf("faultfs: rule %+v: no such operation", r)
	}
	if r.Short && r.Op != OpWrite {
		return fmt.Errorf("faultfs: rule %s: only a write can be short", r)
	}
	if !r.Short && r.Errno == 0 {
		return fmt.Errorf("faultfs: rule %s: no errno", r)
	}
	if r.Nth < 0 || r.Count < Forever {
		return fmt.Errorf("faultfs: rule %+v: negative call number or count", r)
	}
	return nil
}

// Site is an operation on files of one base name.
type Site struct {
	File string `json:"file"`
	Op   Op     `json:"op"`
}

func (s Site) String() string { return s.File + " " + s.Op.String() }

// Counts is what the calls have been since the mount or the last Reset.
type Counts struct {
	// Calls counts every call, hit or not; Hits those a rule failed or cut
	// short.
	Calls, Hits map[Site]int
}

// Injector is what a test drives: the rules, and the counts (F2, F4). Its
// methods are safe for concurrent use.
type Injector interface {
	// Set replaces the rules; none for none. A rule that is not valid
	// (no operation, no errno, a short operation other than a write) is
	// refused, and the rules are left as they were.
	Set(rules ...Rule) error
	// Counts returns the counts.
	Counts() Counts
	// Reset zeroes the counts; the rules stay.
	Reset()
}

// Faults is the rules and the counts of a file system. Its zero value has
// no rules; it is safe for concurrent use.
type Faults struct {
	mu struct {
		sync.Mutex
		rules []Rule
		calls map[Site]int
		hits  map[Site]int
	}
}

var (
	_ Injector = (*Faults)(nil)
	_ Injector = (*Mounted)(nil)
)

// Set implements Injector.
func (f *Faults) Set(rules ...Rule) error {
	for _, r := range rules {
		if err := r.check(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.mu.rules = slices.Clone(rules)
	f.mu.Unlock()
	return nil
}

// Counts implements Injector.
func (f *Faults) Counts() Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Counts{Calls: make(map[Site]int, len(f.mu.calls)), Hits: make(map[Site]int, len(f.mu.hits))}
	for k, v := range f.mu.calls {
		c.Calls[k] = v
	}
	for k, v := range f.mu.hits {
		c.Hits[k] = v
	}
	return c
}

// Reset implements Injector.
func (f *Faults) Reset() {
	f.mu.Lock()
	f.mu.calls, f.mu.hits = nil, nil
	f.mu.Unlock()
}

// call counts a call and returns what the rules make of it: an errno, a
// short write, or neither.
func (f *Faults) call(file string, op Op) (errno syscall.Errno, short bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.calls == nil {
		f.mu.calls, f.mu.hits = make(map[Site]int), make(map[Site]int)
	}
	s := Site{file, op}
	f.mu.calls[s]++
	n := f.mu.calls[s]
	for _, r := range f.mu.rules {
		if r.hits(file, op, n) {
			f.mu.hits[s]++
			return r.Errno, r.Short
		}
	}
	return 0, false
}

// FS is a fault file system served by this process (see the package doc
// for why a test must not use it on files it maps).
type FS struct {
	Faults
	dir    string
	server *fuse.Server
	opts   options
}

// Option configures New and Mount.
type Option func(*options)

type options struct {
	NoSync bool `json:"no_sync,omitempty"`
}

// NoSync makes fsync and fdatasync succeed without reaching the backing
// file, unless a rule fails them: they are counted and failed as ever.
// Nothing a test checks without a power cut depends on the backing disk's
// flushes, which cost milliseconds each on a real one.
func NoSync() Option { return func(o *options) { o.NoSync = true } }

// ErrUnavailable is returned when this machine cannot mount a FUSE file
// system: no /dev/fuse, or neither root nor fusermount.
var ErrUnavailable = errors.New("faultfs: FUSE is not available")

// Available reports whether FUSE file systems can be mounted here, and if
// not, why, wrapped in ErrUnavailable.
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %w (load the fuse module, or give the container /dev/fuse)", ErrUnavailable, err)
	}
	f.Close()
	if os.Geteuid() == 0 {
		return nil
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: not root, and no fusermount3 or fusermount in PATH (Debian package fuse3)", ErrUnavailable)
}

// New mounts a fault file system over backing at mountpoint, an empty
// directory, and serves it from this process until Unmount.
func New(backing, mountpoint string, opts ...Option) (*FS, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return newFS(backing, mountpoint, o)
}

func newFS(backing, mountpoint string, o options) (*FS, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, fmt.Errorf("faultfs: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("faultfs: %s: %w", backing, err)
	}
	f := &FS{dir: mountpoint, opts: o}
	lroot := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	ln := &fs.LoopbackNode{RootData: lroot}
	root := &node{LoopbackNode: ln, faults: &f.Faults, noSync: o.NoSync}
	lroot.RootNode = root
	// Attributes and entries are not cached: the backing directory may be
	// read or changed beside the mount, and a stale size would make a
	// mapping fault past the end.
	var zero time.Duration
	f.server, err = fs.Mount(mountpoint, root, &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:               "faultfs:" + backing,
			Name:                 "faultfs",
			DirectMount:          true,
			ExtraCapabilities:    fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
			MaxBackground:        64,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("faultfs: mount %s on %s: %w", backing, mountpoint, err)
	}
	return f, nil
}

// Dir returns the mount point.
func (f *FS) Dir() string { return f.dir }

// Unmount unmounts the file system and waits for its server to stop. A
// mount still in use (a file left open) is detached instead: it goes when
// the last file is closed, and Unmount says so.
func (f *FS) Unmount() error {
	err := f.server.Unmount()
	if err == nil {
		return nil
	}
	if os.Geteuid() == 0 {
		if derr := unix.Unmount(f.dir, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("faultfs: unmount %s: %w; detach: %w", f.dir, err, derr)
		}
	} else if out, derr := exec.Command("fusermount3", "-u", "-z", f.dir).CombinedOutput(); derr != nil {
		return fmt.Errorf("faultfs: unmount %s: %w; detach: %w: %s", f.dir, err, derr, out)
	}
	return fmt.Errorf("faultfs: %s was busy (a file left open), detached: %w", f.dir, err)
}

// node is a loopback node whose calls are counted and failed by the
// rules, and whose files are wrapped likewise.
type node struct {
	*fs.LoopbackNode
	faults *Faults
	noSync bool
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
	_ fs.NodeSetattrer   = (*node)(nil)
	_ fs.NodeGetattrer   = (*node)(nil)
	_ fs.NodeStatxer     = (*node)(nil)
)

// WrapChild wraps every node the loopback makes.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), faults: n.faults, noSync: n.noSync}
}

// name is the node's base name now: after a rename, the new one.
func (n *node) name() string { return filepath.Base(n.Path(nil)) }

func (n *node) wrap(fh fs.FileHandle) fs.FileHandle {
	return &file{lf: fh.(*fs.LoopbackFile), n: n}
}

// Open implements fs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if errno, _ := n.faults.call(n.name(), OpOpen); errno != 0 {
		return nil, 0, errno
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.wrap(fh), fl | fuse.FOPEN_DIRECT_IO, 0
}

// Create implements fs.NodeCreater.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if errno, _ := n.faults.call(name, OpOpen); errno != 0 {
		return nil, nil, 0, errno
	}
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// The new file's node, which WrapChild made: its handle names it.
	return in, in.Operations().(*node).wrap(fh), fl | fuse.FOPEN_DIRECT_IO, 0
}

// Tmpfile refuses O_TMPFILE, whose files have no name for rules to name.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// Setattr implements fs.NodeSetattrer: a change of size is OpTruncate.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok {
		if errno, _ := n.faults.call(n.name(), OpTruncate); errno != 0 {
			return errno
		}
	}
	return n.LoopbackNode.Setattr(ctx, unwrap(fh), in, out)
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.LoopbackNode.Getattr(ctx, unwrap(fh), out)
}

// Statx implements fs.NodeStatxer.
func (n *node) Statx(ctx context.Context, fh fs.FileHandle, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return n.LoopbackNode.Statx(ctx, unwrap(fh), flags, mask, out)
}

// unwrap returns the loopback file under a wrapped handle, for the
// loopback node's methods, which look for its interfaces.
func unwrap(fh fs.FileHandle) fs.FileHandle {
	if f, ok := fh.(*file); ok {
		return f.lf
	}
	return fh
}

// file is an open file whose writes, fsyncs and fallocates go through the
// rules. It does not offer fs.FilePassthroughFder, on purpose (see the
// package doc).
type file struct {
	lf *fs.LoopbackFile
	n  *node
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileWritever  = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileAllocater = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileStatxer   = (*file)(nil)
)

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	errno, short := f.n.faults.call(f.n.name(), OpWrite)
	if errno != 0 {
		return 0, errno
	}
	if short {
		data = data[:len(data)/2]
	}
	return f.lf.Write(ctx, data, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	errno, short := f.n.faults.call(f.n.name(), OpWrite)
	if errno != 0 {
		return 0, errno
	}
	if short {
		total := 0
		for _, d := range data {
			total += len(d)
		}
		data = cut(data, total/2)
	}
	return f.lf.Writev(ctx, data, off)
}

// cut returns the first n bytes of iov.
func cut(iov [][]byte, n int) [][]byte {
	var out [][]byte
	for _, d := range iov {
		if n <= 0 {
			break
		}
		d = d[:min(len(d), n)]
		out = append(out, d)
		n -= len(d)
	}
	return out
}

// fsyncData is FUSE_FSYNC_FDATASYNC, the flag of an fdatasync.
const fsyncData = 1

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	op := OpFsync
	if flags&fsyncData != 0 {
		op = OpFdatasync
	}
	if errno, _ := f.n.faults.call(f.n.name(), op); errno != 0 {
		return errno
	}
	if f.n.noSync {
		return 0
	}
	return f.lf.Fsync(ctx, flags)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if errno, _ := f.n.faults.call(f.n.name(), OpFallocate); errno != 0 {
		return errno
	}
	return f.lf.Allocate(ctx, off, size, mode)
}

func (f *file) Flush(ctx context.Context) syscall.Errno   { return f.lf.Flush(ctx) }
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *file) Statx(ctx context.Context, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return f.lf.Statx(ctx, flags, mask, out)
}
