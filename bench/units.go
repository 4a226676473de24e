package bench

import (
	"fmt"
	"github.com/shadowbench/shadowbench/units"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// FormatDuration prints d with three significant digits in the unit that
// suits it: "312ns", "1.45µs", "12.3ms", "1.20s". time.Duration's own
// String gives "1.452817ms", too many digits to compare at a glance.
func FormatDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var v float64
	var unit string
	switch {
	case d < time.Microsecond:
		return sign(neg) + strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		v, unit = float64(d)/1e3, "µs"
	case d < time.Second:
		v, unit = float64(d)/1e6, "ms"
	default:
		v, unit = float64(d)/1e9, "s"
	}
	digits := 2
	switch {
	case v >= 100:
		digits = 0
	case v >= 10:
		digits = 1
	}
	return sign(neg) + strconv.FormatFloat(v, 'f', digits, 64) + unit
}

func sign(neg bool) string {
	if neg {
		return "-"
	}
	return ""
}

// FormatBytes prints a size in binary units: "4 KiB" when exact, else
// with one decimal ("1.5 MiB", "23.6 GiB").
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	n = max(n, 0)
	i := 0
	for i < len(units)-1 && n >= int64(1)<<(10*(i+1)) {
		i++
	}
	u := int64(1) << (10 * i)
	if n%u == 0 {
		return strconv.FormatInt(n/u, 10) + " " + units[i]
	}
	return strconv.FormatFloat(float64(n)/float64(u), 'f', 1, 64) + " " + units[i]
}

// FormatRate prints a byte rate ("812 MiB/s").
func FormatRate(bytesPerSec float64) string {
	return humanize.IBytes(uint64(math.Max(bytesPerSec, 0))) + "/s"
}

// FormatOps prints an operation rate with its digits ("45,213 op/s",
// "12.5 op/s"): a rate rounded to an SI prefix hides what changed.
func FormatOps(opsPerSec float64) string { return FormatCount(opsPerSec, "op/s") }

// FormatCount prints a count or rate in unit: whole and with thousands
// separators from 100 up, to three significant digits below.
func FormatCount(v float64, unit string) string {
	if math.Abs(v) >= 100 {
		return humanize.Comma(int64(math.Round(v))) + " " + unit
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " " + unit
}

// Size is a byte count that parses and prints in human units ("4KiB",
// "64k", "1G"), so a command line can bind it as a flag value.
type Size int64

// String implements the flag.Value interface.
func (s Size) String() string { return FormatBytes(int64(s)) }

// Set implements the flag.Value interface.
func (s *Size) Set(v string) error {
	n, err := units.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	*s = Size(n)
	return nil
}

// Type implements pflag's Value interface.
func (s *Size) Type() string { return "size" }

// Sizes is a comma-separated list of sizes ("4KiB,64KiB").
type Sizes []Size

// String implements the flag.Value interface.
func (s Sizes) String() string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

// Set implements the flag.Value interface: it replaces the list.
func (s *Sizes) Set(v string) error {
	var out Sizes
	for _, p := range strings.Split(v, ",") {
		var z Size
		if err := z.Set(strings.TrimSpace(p)); err != nil {
			return err
		}
		out = append(out, z)
	}
	*s = out
	return nil
}

// Type implements pflag's Value interface.
func (s *Sizes) Type() string { return "sizes" }

// Rate is a frequency of events per second. It parses "1/s", "30/m",
// "2/h", "every 500ms", "500ms" (one per interval) and plain numbers (per
// second); 0 means none.
type Rate float64

// Interval returns the time between events, or 0 for a zero rate.
func (r Rate) Interval() time.Duration {
	if r <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / float64(r))
}

// String implements the flag.Value interface.
func (r Rate) String() string {
	switch {
	case r <= 0:
		return "0"
	case r >= 1 || math.Abs(1/float64(r)-math.Round(1/float64(r))) > 1e-9:
		return strconv.FormatFloat(float64(r), 'g', 4, 64) + "/s"
	}
	return "every " + r.Interval().String()
}

// Set implements the flag.Value interface.
func (r *Rate) Set(v string) error {
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "every"))
	bad := func() error {
		return fmt.Errorf("bench: rate %q: want N/s, N/m, N/h, an interval such as 500ms, or a number per second", v)
	}
	if num, per, ok := strings.Cut(s, "/"); ok {
		n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) {
			return bad()
		}
		var unit time.Duration
		switch strings.TrimSpace(per) {
		case "s", "sec", "second":
			unit = time.Second
		case "m", "min", "minute":
			unit = time.Minute
		case "h", "hour":
			unit = time.Hour
		default:
			d, err := time.ParseDuration(strings.TrimSpace(per))
			if err != nil || d <= 0 {
				return bad()
			}
			unit = d
		}
		*r = Rate(n / unit.Seconds())
		return nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 || math.IsInf(n, 0) || math.IsNaN(n) {
			return bad()
		}
		*r = Rate(n)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return bad()
	}
	*r = Rate(1 / d.Seconds())
	return nil
}

// Type implements pflag's Value interface.
func (r *Rate) Type() string { return "rate" }
