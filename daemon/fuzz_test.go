package daemon

import (
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to the config parser: it never
// panics, and what it accepts passes its own validation again.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("array:\n  luns:\n    - {name: lun0, size: 1GiB}\n"))
	f.Add([]byte("nbd: {listen: 127.0.0.1:10809}\nwindows: {hold: 10s}\n"))
	f.Add([]byte("providers:\n  - name: a\n    profile: {commit: {block: 1s}}\nwriters:\n  - {name: w, scripted: {on: {Freeze: {result: veto, failure: VSS_E_WRITERERROR_RETRYABLE}}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseConfig("fuzz.yaml", data)
	})
}

// FuzzParseSize checks that a parsed size prints as a size that parses back
// to within the printed rounding (one decimal of the unit: under 5%). The
// printed form is for people; JSON carries the exact number.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1GiB", "64MiB", "512", "4k", "1.5GiB", "-1", "1EiB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		back, err := ParseSize(n.String())
		diff := float64(back - n)
		if err != nil || diff > 0.05*float64(n)+1 || -diff > 0.05*float64(n)+1 {
			t.Fatalf("%q parsed as %d, printed %q, parsed back as %d (%v)", s, n, n.String(), back, err)
		}
	})
}

// FuzzParseLatency: the latency parser never panics and never yields a
// distribution that samples a negative delay.
func FuzzParseLatency(f *testing.F) {
	for _, s := range []string{"5ms", "uniform:1ms-5ms", "normal:10ms,2ms", "exp:3ms", "0", "-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseLatency(s)
		if err != nil || d == nil {
			return
		}
		for range 8 {
			if v := d.Sample(); v < 0 {
				t.Fatalf("%q sampled %v", s, v)
			}
		}
	})
}
