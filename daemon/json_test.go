package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestJSONDurationsAreNanoseconds: every duration the API writes is an
// integer of nanoseconds under a key ending in _ns, as bench writes them;
// requests may give either that or a Go duration string.
func TestJSONDurationsAreNanoseconds(t *testing.T) {
	b, err := json.Marshal(Status{Uptime: Duration(1500 * time.Millisecond)})
	require.NoError(t, err)
	require.Contains(t, string(b), `"uptime_ns":1500000000`)
	var keys map[string]any
	require.NoError(t, json.Unmarshal(b, &keys))
	for k := range keys {
		require.NotEqual(t, "uptime", k)
	}
	for in, want := range map[string]time.Duration{`250000000`: 250 * time.Millisecond, `"250ms"`: 250 * time.Millisecond, `0`: 0} {
		var d Duration
		require.NoError(t, json.Unmarshal([]byte(in), &d), in)
		require.Equal(t, want, time.Duration(d), in)
	}
	var d Duration
	require.ErrorContains(t, json.Unmarshal([]byte(`"soon"`), &d), `duration "soon"`)
	require.ErrorContains(t, json.Unmarshal([]byte(`1.5`), &d), "integer nanoseconds")
}

// TestJSONSeedsAreStrings: a 64-bit seed survives jq and JavaScript,
// which read JSON numbers as float64; the numbers of older fault rules
// still read.
func TestJSONSeedsAreStrings(t *testing.T) {
	r := FaultRule{Ops: []string{"write"}, Error: "EIO", Probability: 0.5, Seed: 8717197885847990789}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.Contains(t, string(b), `"seed":"8717197885847990789"`)
	var back FaultRule
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r.Seed, back.Seed)
	require.NoError(t, json.Unmarshal([]byte(`{"seed":8717197885847990789}`), &back))
	require.Equal(t, Seed(8717197885847990789), back.Seed)
	require.ErrorContains(t, json.Unmarshal([]byte(`{"seed":"-1"}`), &back), "unsigned 64-bit")
}
