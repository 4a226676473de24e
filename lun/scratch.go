package lun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/lun/durable"
)

// DiskCapacity is the default capacity of a durable array in dir: what its
// data file holds already plus the free space of the file system, less
// 1/32 of that for the metadata and the file system's own needs. dir need
// not exist yet: the file system is that of its nearest existing parent.
func DiskCapacity(dir string) (int64, error) {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		return 0, fmt.Errorf("data directory %s: %w", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	var fst unix.Stat_t
	if unix.Stat(filepath.Join(dir, durable.DataFile), &fst) == nil {
		free += fst.Blocks * 512
	}
	c := free - free/32
	if c < 64<<20 {
		return 0, fmt.Errorf("data directory %s: %s free; a durable array needs at least 64 MiB", dir, humanize.IBytes(uint64(max(free, 0))))
	}
	return c, nil
}

// OpenScratch opens a new durable array in a directory of its own made
// under parent, for a run (a benchmark, a scenario) that measures or tests
// the durable array on parent's file system and keeps nothing: the
// returned function closes the array and removes the directory. A zero
// cfg.Capacity is DiskCapacity's.
func OpenScratch(parent string, cfg Config) (*Array, func() error, error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, nil, fmt.Errorf("lun: data directory: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "shadowbench-")
	if err != nil {
		return nil, nil, fmt.Errorf("lun: data directory: %w", err)
	}
	if cfg.Capacity == 0 {
		if cfg.Capacity, err = DiskCapacity(dir); err != nil {
			_ = os.RemoveAll(dir)
			return nil, nil, err
		}
	}
	a, err := Open(dir, cfg)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	done := func() error {
		return errors.Join(a.Close(), os.RemoveAll(dir))
	}
	return a, done, nil
}
