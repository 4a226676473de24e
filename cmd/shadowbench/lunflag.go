package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/lun"
)

// lunSpecs is the repeatable --lun flag; each value is
// name=NAME,size=SIZE[,block-size=512|4096][,read-only=BOOL][,thin=BOOL][,cache=MODE][,cache-size=SIZE],
// spelled as lun create's flags and the configuration file's keys.
type lunSpecs []daemon.LUNConfig

func (s *lunSpecs) Type() string { return "spec" }

func (s *lunSpecs) String() string {
	parts := make([]string, len(*s))
	for i, l := range *s {
		parts[i] = fmt.Sprintf("name=%s,size=%s", l.Name, humanize.IBytes(uint64(l.Size)))
	}
	return strings.Join(parts, " ")
}

func (s *lunSpecs) Set(v string) error {
	spec, err := parseLUNSpec(v)
	if err != nil {
		return err
	}
	*s = append(*s, spec)
	return nil
}

// respelled are the keys --lun once took, with the spelling it takes.
var respelled = map[string]string{"blocksize": "block-size", "readonly": "read-only"}

func parseLUNSpec(v string) (daemon.LUNConfig, error) {
	spec := daemon.LUNConfig{BlockSize: 512, Flag: v}
	seen := map[string]bool{}
	for _, kv := range strings.Split(v, ",") {
		key, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" {
			return spec, fmt.Errorf("%q is not key=value (want name=NAME,size=SIZE[,block-size=512|4096][,read-only=true][,thin=true])", kv)
		}
		if seen[key] {
			return spec, fmt.Errorf("%s given twice", key)
		}
		seen[key] = true
		switch key {
		case "name":
			spec.Name = val
		case "size":
			n, err := daemon.ParseSize(val)
			if err != nil || n == 0 {
				return spec, fmt.Errorf("size %q: want a positive size such as 1G, 1GiB or 512MiB", val)
			}
			spec.Size = n
		case "blocksize", "readonly":
			return spec, fmt.Errorf("unknown key %q: spell it %s, as lun create and the configuration file do", key, respelled[key])
		case "block-size":
			if val != "512" && val != "4096" {
				return spec, fmt.Errorf("block-size %q: want 512 or 4096", val)
			}
			spec.BlockSize, _ = strconv.Atoi(val)
		case "cache":
			if _, err := lun.ParseCacheMode(val); err != nil {
				return spec, fmt.Errorf("cache %q: want %s", val, lun.CacheModeChoices)
			}
			spec.Cache = val
		case "crash-points":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return spec, fmt.Errorf("crash-points %q: want a count", val)
			}
			spec.CrashPoints = n
		case "cache-size":
			n, err := daemon.ParseSize(val)
			if err != nil || n <= 0 {
				return spec, fmt.Errorf("cache-size %q: want a positive size such as 64MiB", val)
			}
			spec.CacheSize = n
		case "read-only", "thin":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return spec, fmt.Errorf("%s %q: want true or false", key, val)
			}
			if key == "thin" {
				spec.Thin = b
			} else {
				spec.ReadOnly = b
			}
		default:
			return spec, fmt.Errorf("unknown key %q (want name, size, block-size, read-only, thin, cache, cache-size, crash-points)", key)
		}
	}
	switch {
	case spec.Name == "":
		return spec, fmt.Errorf("name is missing")
	case spec.Size == 0:
		return spec, fmt.Errorf("size is missing")
	case int64(spec.Size)%int64(spec.BlockSize) != 0:
		return spec, fmt.Errorf("size %d is not a multiple of the block size %d", spec.Size, spec.BlockSize)
	}
	return spec, nil
}
