package provider_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

func TestProfilesLoad(t *testing.T) {
	files, err := filepath.Glob("profiles/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := provider.LoadProfile(f)
			require.NoError(t, err)
			require.Equal(t, strings.TrimSuffix(filepath.Base(f), ".yaml"), p.Name)
			require.NotEmpty(t, p.Description)
			require.NoError(t, p.Validate())
			a, err := lun.NewArray(p.ArrayConfig())
			require.NoError(t, err)
			pr, err := provider.NewArray(a, p)
			require.NoError(t, err)
			require.NoError(t, pr.Close())
		})
	}
}

func TestProfileContents(t *testing.T) {
	slow, err := provider.LoadProfile("profiles/slow-commit.yaml")
	require.NoError(t, err)
	require.Equal(t, provider.Fixed(9900*time.Millisecond), slow.Commit.Block)
	require.Equal(t, provider.Uniform(20*time.Millisecond, 50*time.Millisecond), slow.Prepare.Latency)
	require.Equal(t, provider.Normal(30*time.Millisecond, 5*time.Millisecond), slow.Methods[vss.MethodEndPrepareSnapshots].Latency)
	require.EqualValues(t, 42, slow.Seed)

	flaky, err := provider.LoadProfile("profiles/flaky.yaml")
	require.NoError(t, err)
	require.False(t, flaky.Capabilities.Transportable)
	require.True(t, flaky.Capabilities.Differential, "keys left out keep the default")
	require.Equal(t, 16, flaky.Capabilities.MaxSnapshotsPerLUN)
	require.Equal(t, []provider.Failure{
		provider.WithProbability(0.02, 7, vss.VSS_E_INSUFFICIENT_STORAGE),
		provider.OnNth(3, vss.E_UNEXPECTED),
	}, flaky.Methods[vss.MethodEndPrepareSnapshots].Failures)
	require.Equal(t, []provider.Failure{provider.WithProbability(0.02, 0, vss.E_FAIL)}, flaky.Methods[vss.MethodCommitSnapshots].Failures)
	require.Equal(t, provider.Exponential(2*time.Millisecond), flaky.Methods[vss.MethodAreLunsSupported].Latency)

	small, err := provider.LoadProfile("profiles/small-array.yaml")
	require.NoError(t, err)
	require.Equal(t, int64(256*mib), small.Capabilities.Capacity)
	require.Equal(t, int64(16*mib), small.Capabilities.SnapshotReserve)
	require.Equal(t, vss.VSS_PRV_CAPABILITY_COMPLIANT|vss.VSS_PRV_CAPABILITY_DIFFERENTIAL, small.Capabilities.ProviderCapabilities)
	require.Equal(t, lun.Config{Capacity: 256 * mib, MaxSnapshots: 4}, small.ArrayConfig())

	until, err := provider.LoadProfile("profiles/until-released.yaml")
	require.NoError(t, err)
	require.True(t, until.Commit.UntilReleased)
}

func TestBadProfiles(t *testing.T) {
	for _, c := range []struct {
		file string
		line int
		msg  string
	}{
		{"unknown-key.yaml", 4, `capabilities: unknown key "transportible"`},
		{"bad-duration.yaml", 4, `methods.CommitSnapshots.latency: bad duration "5 seconds"`},
		{"unitless-duration.yaml", 3, `prepare.latency.uniform.max: duration "5" has no unit`},
		{"unknown-hresult.yaml", 4, `methods.PreCommitSnapshots.failure.hresult: unknown HRESULT "VSS_E_NOT_A_CODE"`},
		{"bad-method.yaml", 5, `methods: unknown method "CommitSnapshot"`},
		{"two-triggers.yaml", 4, `exactly one of always, nth, probability`},
		{"success-code.yaml", 4, `S_FALSE is a success code`},
		{"both-blocks.yaml", 6, `commit.block: methods.CommitSnapshots.latency is the same delay`},
		{"syntax.yaml", 3, `did not find expected`},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", c.file)
			_, err := provider.LoadProfile(path)
			require.Error(t, err)
			require.ErrorIs(t, err, provider.ErrBadProfile)
			var pe *provider.ProfileError
			require.True(t, errors.As(err, &pe))
			require.Equal(t, path, pe.File)
			require.Equal(t, c.line, pe.Line, "%v", err)
			require.True(t, strings.HasPrefix(err.Error(), path+":"+strconv.Itoa(c.line)+":"), "%v", err)
			require.Contains(t, err.Error(), c.msg)
		})
	}
}

func TestParseProfileErrors(t *testing.T) {
	for _, c := range []struct {
		name, yaml, msg string
	}{
		{"empty", "", "empty profile"},
		{"scalar", "hello", `expected a mapping, found "hello"`},
		{"two documents", "name: a\n---\nname: b\n", "one YAML document"},
		{"alias", "seed: &s 3\nprepare: {latency: *s}\n", "aliases are not supported"},
		{"duplicate", "seed: 1\nseed: 2\n", `key "seed" given twice`},
		{"negative duration", "prepare: {latency: -1s}\n", "negative duration"},
		{"two distributions", "prepare: {latency: {fixed: 1s, exponential: {mean: 1s}}}\n", "one distribution"},
		{"no distribution", "prepare: {latency: {}}\n", "needs one of"},
		{"min above max", "prepare: {latency: {uniform: {min: 2s, max: 1s}}}\n", "below min"},
		{"probability", "methods: {OnLoad: {failure: {hresult: E_FAIL, probability: 1.5}}}\n", "probability must be"},
		{"nth zero", "methods: {OnLoad: {failure: {hresult: E_FAIL, nth: 0}}}\n", "nth counts calls from 1"},
		{"always false", "methods: {OnLoad: {failure: {hresult: E_FAIL, always: false}}}\n", "never fires"},
		{"seed without probability", "methods: {OnLoad: {failure: {hresult: E_FAIL, always: true, seed: 3}}}\n", "seed applies"},
		{"no hresult", "methods: {OnLoad: {failure: {always: true}}}\n", "needs hresult"},
		{"bool", "capabilities: {plex: yes}\n", "expected true or false"},
		{"capacity", "capabilities: {capacity: lots}\n", "bad size"},
		{"capability", "capabilities: {provider-capabilities: [COMPLIANT, FAST]}\n", `unknown provider capability "FAST"`},
		{"method twice", "methods: {OnLoad: {}, OnLoad: {}}\n", "given twice"},
		{"seed", "seed: -3\n", "whole number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := provider.ParseProfile("p.yaml", []byte(c.yaml))
			require.ErrorIs(t, err, provider.ErrBadProfile)
			require.Contains(t, err.Error(), c.msg)
			require.True(t, strings.HasPrefix(err.Error(), "p.yaml:"), "%v", err)
		})
	}
}

// TestDecodeProfileInline decodes a profile embedded in a larger document,
// as scenario files will, and checks that errors keep that file's lines.
func TestDecodeProfileInline(t *testing.T) {
	const scenario = `scenario: slow array
steps: []
array:
  profile:
    name: inline
    commit:
      block: until-released
    methods:
      PreCommitSnapshots:
        failure: {hresult: VSS_E_PROVIDER_VETO, nth: 2}
`
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(scenario), &doc))
	profileNode := doc.Content[0].Content[5].Content[1] // array → profile
	p, err := provider.DecodeProfile("scenario.yaml", profileNode)
	require.NoError(t, err)
	require.Equal(t, "inline", p.Name)
	require.True(t, p.Commit.UntilReleased)
	require.Equal(t, []provider.Failure{provider.OnNth(2, vss.VSS_E_PROVIDER_VETO)}, p.Methods[vss.MethodPreCommitSnapshots].Failures)

	bad := strings.Replace(scenario, "nth: 2", "nth: 2, sometimes: true", 1)
	require.NoError(t, yaml.Unmarshal([]byte(bad), &doc))
	_, err = provider.DecodeProfile("scenario.yaml", doc.Content[0].Content[5].Content[1])
	require.ErrorContains(t, err, `scenario.yaml:10:`)
	require.ErrorContains(t, err, `unknown key "sometimes"`)
}

func TestProfileFromGo(t *testing.T) {
	p := provider.DefaultProfile()
	p.Methods = map[vss.ProviderMethod]provider.MethodBehavior{
		vss.MethodCommitSnapshots: {Latency: provider.Fixed(time.Second)},
	}
	p.Commit.Block = provider.Fixed(time.Second)
	require.Error(t, p.Validate())
	_, err := provider.NewArray(mustArray(t), p)
	require.Error(t, err)

	p = provider.DefaultProfile()
	p.Methods = map[vss.ProviderMethod]provider.MethodBehavior{
		vss.MethodOnLoad: {Failures: []provider.Failure{provider.Always(vss.S_FALSE)}},
	}
	require.ErrorContains(t, p.Validate(), "success code")
	p.Methods[0] = provider.MethodBehavior{}
	require.Error(t, p.Validate())
}

func mustArray(t *testing.T) *lun.Array {
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	return a
}

// TestLatencySample checks each distribution's range with a fixed seed.
func TestLatencySample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		require.Equal(t, 5*time.Millisecond, provider.Fixed(5*time.Millisecond).Sample(r))
		u := provider.Uniform(time.Millisecond, 2*time.Millisecond).Sample(r)
		require.True(t, u >= time.Millisecond && u <= 2*time.Millisecond, "%v", u)
		require.GreaterOrEqual(t, provider.Normal(time.Millisecond, 10*time.Millisecond).Sample(r), time.Duration(0))
		require.GreaterOrEqual(t, provider.Exponential(time.Millisecond).Sample(r), time.Duration(0))
	}
	require.Zero(t, provider.Latency{}.Sample(r))
}

func FuzzParseProfile(f *testing.F) {
	for _, dir := range []string{"profiles", "testdata/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("methods: {CommitSnapshots: {failure: [{hresult: 0x8000FFFF, nth: 9223372036854775807}]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := provider.ParseProfile("fuzz.yaml", data)
		if err != nil {
			require.Nil(t, p)
			require.True(t, strings.HasPrefix(err.Error(), "fuzz.yaml"), "%v", err)
			return
		}
		require.NoError(t, p.Validate(), "a parsed profile is valid")
	})
}
