package bench

import "testing"

// FuzzRate: a rate that parses prints as one that parses back to within
// rounding of the printed digits, and is never negative.
func FuzzRate(f *testing.F) {
	for _, s := range []string{"50/s", "1/m", "200ms", "every 2s", "0", "1e9/h", "-1/s", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r Rate
		if r.Set(s) != nil {
			return
		}
		if r < 0 {
			t.Fatalf("%q parsed as a negative rate %v", s, float64(r))
		}
		var back Rate
		if err := back.Set(r.String()); err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, r.String(), err)
		}
	})
}

// FuzzSize: a size that parses prints as one that parses back.
func FuzzSize(f *testing.F) {
	for _, s := range []string{"4KiB", "1MiB", "512", "64k", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var z Size
		if z.Set(s) != nil {
			return
		}
		var back Size
		if err := back.Set(z.String()); err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", s, z.String(), err)
		}
	})
}
