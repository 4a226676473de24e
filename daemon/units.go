package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/units"
)

// maxSize bounds every size the daemon accepts: 1 EiB, far past any memory,
// and far from int64's overflow.
const maxSize = 1 << 60

// Size is a number of bytes. YAML and JSON give it as a number or as a
// string with a unit ("1GiB", "512MiB", "64k"); JSON writes it as a number.
type Size int64

// ParseSize reads a size as units.ParseBytes does: K, M, G and KiB, MiB,
// GiB are powers of 1024, KB, MB, GB powers of 1000.
func ParseSize(s string) (Size, error) {
	n, err := units.ParseBytes(s)
	if err != nil || n > maxSize {
		return 0, fmt.Errorf("size %q: want a number of bytes or a size such as 64M, 64MiB or 1G (K, M, G are powers of 1024; KB, MB, GB of 1000)", s)
	}
	return Size(n), nil
}

// String formats the size in IEC units.
func (s Size) String() string { return humanize.IBytes(uint64(max(s, 0))) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a size such as 1GiB", n.Line)}}
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*s = v
	return nil
}

// UnmarshalJSON implements json.Unmarshaler: a number or a string.
func (s *Size) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || v < 0 || v > maxSize {
			return fmt.Errorf("size %s: want a whole number of bytes", n)
		}
		*s = Size(v)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New("size: want a number of bytes or a string such as \"1GiB\"")
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Duration is a time.Duration that JSON writes as integer nanoseconds,
// under a key ending in _ns, as every JSON the project writes gives a
// duration (bench's results too). It reads integer nanoseconds, or a Go
// duration string ("250ms") for whoever writes a request by hand.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return strconv.AppendInt(nil, int64(d), 10), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		s, err := strconv.Unquote(string(b))
		if err != nil {
			return fmt.Errorf("duration %s: want integer nanoseconds or a duration such as \"250ms\"", b)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want integer nanoseconds or a duration such as \"250ms\"", s)
		}
		*d = Duration(v)
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: want integer nanoseconds or a duration such as \"250ms\"", b)
	}
	*d = Duration(v)
	return nil
}

// Seed is a 64-bit seed, which JSON writes as a decimal string: as a
// number, jq and JavaScript would read it rounded to a float64's 53 bits,
// and a replay from it would draw other values. It reads a string or a
// number (the fault rules that older data directories hold).
type Seed uint64

// MarshalJSON implements json.Marshaler.
func (s Seed) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, strconv.FormatUint(uint64(s), 10)), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *Seed) UnmarshalJSON(b []byte) error {
	str := string(b)
	if u, err := strconv.Unquote(str); err == nil {
		str = u
	}
	v, err := strconv.ParseUint(str, 10, 64)
	if err != nil {
		return fmt.Errorf("seed %s: want an unsigned 64-bit integer, as a string", b)
	}
	*s = Seed(v)
	return nil
}

// ParseLatency reads a latency distribution in the notation of
// `lun fault --latency`:
//
//	5ms              fixed
//	1ms..5ms         uniform between the two
//	exp:5ms          exponential with mean 5ms (a long tail)
//	normal:5ms/1ms   normal with mean 5ms and standard deviation 1ms
func ParseLatency(s string) (lun.Dist, error) {
	bad := fmt.Errorf("latency %q: want 5ms, 1ms..5ms, exp:5ms or normal:5ms/1ms", s)
	dur := func(v string) (time.Duration, bool) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		return d, err == nil && d >= 0 && d <= time.Hour
	}
	kind, rest, hasKind := strings.Cut(s, ":")
	if !hasKind {
		if lo, hi, ok := strings.Cut(s, ".."); ok {
			a, ok1 := dur(lo)
			b, ok2 := dur(hi)
			if !ok1 || !ok2 || b < a {
				return nil, bad
			}
			return lun.Uniform{Min: a, Max: b}, nil
		}
		d, ok := dur(s)
		if !ok {
			return nil, bad
		}
		return lun.Fixed(d), nil
	}
	switch kind {
	case "exp":
		d, ok := dur(rest)
		if !ok {
			return nil, bad
		}
		return lun.Exponential{Mean: d}, nil
	case "normal":
		m, sd, ok := strings.Cut(rest, "/")
		a, ok1 := dur(m)
		b, ok2 := dur(sd)
		if !ok || !ok1 || !ok2 {
			return nil, bad
		}
		return lun.Normal{Mean: a, StdDev: b}, nil
	}
	return nil, bad
}
