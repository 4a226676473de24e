package daemon

import (
	"encoding/json"
	"testing"
)

// FuzzJSONDurationAndSeed: the API's duration and seed fields never
// panic, and what they accept they write back and read again unchanged.
func FuzzJSONDurationAndSeed(f *testing.F) {
	for _, s := range []string{`250000000`, `"250ms"`, `"1h2m"`, `0`, `-5`, `"8717197885847990789"`, `8717197885847990789`, `""`, `null`, `1e9`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Duration
		if json.Unmarshal(b, &d) == nil {
			out, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var back Duration
			if err := json.Unmarshal(out, &back); err != nil || back != d {
				t.Fatalf("duration %s wrote %s, read back %v (%v)", b, out, back, err)
			}
		}
		var s Seed
		if json.Unmarshal(b, &s) == nil {
			out, _ := json.Marshal(s)
			var back Seed
			if err := json.Unmarshal(out, &back); err != nil || back != s {
				t.Fatalf("seed %s wrote %s, read back %v (%v)", b, out, back, err)
			}
		}
	})
}
