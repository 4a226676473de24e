package vss_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

func TestIDFormat(t *testing.T) {
	windows := regexp.MustCompile(`^\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}$`)
	a, b := vss.NewID(), vss.NewID()
	require.NotEqual(t, a, b)
	require.False(t, a.IsNull())
	require.Regexp(t, windows, a.String())

	require.True(t, vss.GUID_NULL.IsNull())
	require.Equal(t, "{00000000-0000-0000-0000-000000000000}", vss.GUID_NULL.String())

	// The interface IIDs of vss-spec.md C.
	require.Equal(t, "{9593A157-44E9-4344-BBEB-44FBF9B06B10}", vss.IID_IVssHardwareSnapshotProvider.String())
	require.Equal(t, "{5F894E5B-1E39-4778-8E23-9ABAD9F0E08C}", vss.IID_IVssProviderCreateSnapshotSet.String())
}

func TestParseID(t *testing.T) {
	const braced = "{5F894E5B-1E39-4778-8E23-9ABAD9F0E08C}"
	for _, in := range []string{
		braced,
		strings.ToLower(braced),
		"5f894e5b-1e39-4778-8e23-9abad9f0e08c",
		"5F894E5B1E3947788E239ABAD9F0E08C",
	} {
		id, err := vss.ParseID(in)
		require.NoError(t, err, in)
		require.Equal(t, braced, id.String(), in)
	}
	for _, in := range []string{
		"", "{}", "(5F894E5B-1E39-4778-8E23-9ABAD9F0E08C)", "{5F894E5B-1E39-4778-8E23-9ABAD9F0E08C",
		"{5F894E5B-1E39-4778-8E23-9ABAD9F0E08Cx", "{5F894E5B-1E39-4778-8E23-9ABAD9F0E08G}",
	} {
		_, err := vss.ParseID(in)
		require.Error(t, err, in)
		require.Contains(t, err.Error(), "vss: ID")
	}
	require.Panics(t, func() { vss.MustParseID("nope") })
}

func TestIDText(t *testing.T) {
	type doc struct {
		Set vss.ID `json:"set"`
	}
	in := doc{Set: vss.NewID()}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.Equal(t, `{"set":"`+in.Set.String()+`"}`, string(b))

	var out doc
	require.NoError(t, json.Unmarshal(b, &out))
	require.Equal(t, in, out)
	require.Error(t, json.Unmarshal([]byte(`{"set":"{nope}"}`), &out))
}
