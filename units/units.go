// Package units reads and writes sizes as storage tools do: K, M, G, T, P
// and E (and KiB, MiB...) are powers of 1024, as qemu-img, nbdkit, fio and
// LVM read them; KB, MB, GB... are the explicit decimal spelling. Every
// size the project reads (flags, YAML, the API, scenario files, firmware
// profiles) goes through ParseBytes, so that "1G" means the same
// everywhere. It is a leaf: it imports nothing of the project.
//
// Written here rather than taken from go-humanize, whose ParseBytes reads
// "1G" as 10^9 and "4k" as 4000: the opposite of what a storage engineer
// types.
package units

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/dustin/go-humanize"
)

// ErrSize is the error of a size that cannot be read.
var ErrSize = errors.New("want a number of bytes or a size such as 4k, 64MiB, 1G or 1GB (K, M, G... and KiB, MiB, GiB... are powers of 1024; KB, MB, GB... of 1000)")

var binary = map[string]int{"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}

// ParseBytes reads a size: a whole or decimal number ("1.5G"), then
// optionally a unit, with or without a space before it, in any case. A
// size that is not a whole number of bytes is rounded down. It fails for a
// negative size, one past math.MaxInt64, or an unknown unit.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return 0, fmt.Errorf("size %q: %w", s, ErrSize)
	}
	base, exp := int64(1024), 0
	switch {
	case len(unit) == 3 && unit[1:] == "ib" && unit[0] != 'b':
		e, ok := binary[unit[:1]]
		if !ok {
			return 0, fmt.Errorf("size %q: %w", s, ErrSize)
		}
		exp = e
	case len(unit) == 2 && unit[1] == 'b' && unit[0] != 'b':
		e, ok := binary[unit[:1]]
		if !ok {
			return 0, fmt.Errorf("size %q: %w", s, ErrSize)
		}
		base, exp = 1000, e
	default:
		e, ok := binary[unit]
		if !ok {
			return 0, fmt.Errorf("size %q: %w", s, ErrSize)
		}
		exp = e
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: %w", s, ErrSize)
	}
	mul := new(big.Int).Exp(big.NewInt(base), big.NewInt(int64(exp)), nil)
	r.Mul(r, new(big.Rat).SetInt(mul))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q: past %s", s, FormatBytes(math.MaxInt64))
	}
	return n.Int64(), nil
}

// FormatBytes writes a size in binary units: "1.0 GiB", "4.0 KiB", "512 B".
func FormatBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
