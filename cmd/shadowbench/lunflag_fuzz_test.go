package main

import "testing"

// FuzzLUNSpec: the --lun parser never panics, and what it accepts has a
// name and a positive size.
func FuzzLUNSpec(f *testing.F) {
	for _, s := range []string{"name=lun0,size=1GiB", "name=a,size=4MiB,block-size=4096,read-only=true", "name=w,size=1MiB,cache=write-back,cache-size=8MiB,crash-points=100", "size=1", "name=,size=", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseLUNSpec(s)
		if err != nil {
			return
		}
		if c.Name == "" || c.Size <= 0 {
			t.Fatalf("%q accepted as %+v", s, c)
		}
	})
}
