package daemon

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/lun/durable"
	"github.com/shadowbench/shadowbench/provider"
)

// InMemoryNotice is the first thing a daemon on an in-memory array logs.
const InMemoryNotice = "in memory: nothing survives a restart; --data-dir keeps the array"

// BuildArray opens the configured array and creates its LUNs: in memory, or
// kept in cfg.Array.DataDir. A durable array comes back with the LUNs it
// had; of the configured LUNs only those it lacks are created, and the
// default LUNs only in a new directory. The first line logged says which
// kind of array it is.
func BuildArray(cfg *Config, log *slog.Logger) (*lun.Array, error) {
	if log == nil {
		log = slog.Default()
	}
	lc := lun.Config{Capacity: int64(cfg.Array.Capacity), Grain: int(cfg.Array.Grain),
		MaxSnapshots: cfg.Array.MaxSnapshots, HoldDeadline: cfg.Windows.Hold}
	var a *lun.Array
	var err error
	if dir := cfg.Array.DataDir; dir != "" {
		if lc.Capacity == 0 {
			if lc.Capacity, err = lun.DiskCapacity(dir); err != nil {
				return nil, cfg.errAt(err, "array", "data-dir")
			}
		}
		t0 := time.Now()
		if a, err = lun.Open(dir, lc); err != nil {
			return nil, cfg.errAt(dataDirError(dir, err), "array", "data-dir")
		}
		ss := a.StoreStats()
		log.Info("durable array", "dir", dir, "luns", len(a.List()), "data", Size(ss.DataBytes).String(),
			"capacity", Size(ss.CapacityBytes).String(), "opened_in", time.Since(t0).Round(time.Millisecond))
	} else {
		if lc.Capacity == 0 {
			lc.Capacity = memoryCapacity()
		}
		if a, err = lun.NewArray(lc); err != nil {
			return nil, cfg.errAt(err, "array")
		}
		log.Warn(InMemoryNotice, "capacity", Size(lc.Capacity).String())
	}
	fresh := len(a.List()) == 0
	for i, l := range cfg.Array.LUNs {
		if cfg.Array.defaulted && !fresh {
			break
		}
		if have, err := a.Get(l.Name); err == nil {
			if have.Size() != int64(l.Size) || have.BlockSize() != max(l.BlockSize, 512) || have.Thin() != l.Thin {
				log.Warn("LUN kept as the data directory has it, not as configured", "lun", l.Name,
					"size", Size(have.Size()).String(), "configured_size", l.Size.String(),
					"block_size", have.BlockSize(), "configured_block_size", max(l.BlockSize, 512),
					"thin", have.Thin(), "configured_thin", l.Thin)
			}
			continue
		}
		opts := cfg.lunOptions(l)
		if l.Serial != "" || l.NAA != "" {
			id := lun.NewIdentity(lun.ProductLUN)
			if l.Serial != "" {
				id.Serial = l.Serial
			}
			if l.NAA != "" {
				id.NAA, _ = parseNAA(l.NAA) // checked by Validate
			}
			opts.Identity = &id
		}
		if _, err := a.Create(l.Name, opts); err != nil {
			_ = a.Close()
			if errors.Is(err, lun.ErrCapacity) {
				return nil, cfg.errAt(fmt.Errorf("LUN %s: %w (thin: true in the configuration, thin=true in --lun)", l.Name, err), "array", "luns", i, "size")
			}
			return nil, cfg.errAt(fmt.Errorf("LUN %s: %w", l.Name, err), "array", "luns", i)
		}
	}
	return a, nil
}

// dataDirError says what to do about a data directory that cannot be
// opened.
func dataDirError(dir string, err error) error {
	switch {
	case errors.Is(err, durable.ErrLocked):
		return fmt.Errorf("data directory %s is in use by another shadowbench (one daemon per directory): %w", dir, err)
	case errors.Is(err, durable.ErrFormat):
		return fmt.Errorf("data directory %s was written by another version of shadowbench: %w", dir, err)
	case errors.Is(err, durable.ErrCorrupt):
		return fmt.Errorf("data directory %s is damaged, and was left as it is: %w", dir, err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("data directory %s cannot be opened by this user (uid %d): %w", dir, os.Geteuid(), err)
	}
	return fmt.Errorf("data directory %s: %w", dir, err)
}

// parseNAA reads an NAA 6 designator written as 32 hex digits, with or
// without "naa." before them; "" is the zero designator.
func parseNAA(s string) ([16]byte, error) {
	var naa [16]byte
	if s == "" {
		return naa, nil
	}
	b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(s), "naa."))
	if err != nil || len(b) != 16 || b[0]>>4 != 6 {
		return naa, fmt.Errorf("naa %q: want 32 hex digits starting with 6 (an NAA 6 designator)", s)
	}
	copy(naa[:], b)
	return naa, nil
}

// memoryCapacity is the default capacity of an array in memory: half the
// machine's RAM.
func memoryCapacity() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return 1 << 30
	}
	return int64(si.Totalram) * int64(si.Unit) / 2
}

// lunOptions are the array's options for a LUN configured as l (checked
// by checkLUN): a LUN that names no cache mode gets the firmware's
// (firmwareCache); "none" is none.
func (c *Config) lunOptions(l LUNConfig) lun.Options {
	mode, _ := lun.ParseCacheMode(l.Cache)
	o := lun.Options{Size: int64(l.Size), BlockSize: l.BlockSize, ReadOnly: l.ReadOnly, Thin: l.Thin,
		Cache: mode, CacheSize: int64(l.CacheSize), CrashPoints: l.CrashPoints}
	if l.Cache == "" {
		o = c.firmwareCache().Options(o)
	}
	return o
}

// firmwareCache is the write cache of the array's firmware: that of the
// first array provider whose profile sets one (provider.CacheBehavior),
// since every array provider serves every LUN of the daemon's array.
func (c *Config) firmwareCache() provider.CacheBehavior {
	for _, p := range c.Providers {
		if p.Remote == "" && p.profile != nil && p.profile.Cache.Mode != lun.CacheNone {
			return p.profile.Cache
		}
	}
	return provider.CacheBehavior{}
}
