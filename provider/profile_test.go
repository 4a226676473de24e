package provider_test

import (
	"bytes"
	"context"
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
	require.Equal(t, provider.CacheBehavior{}, until.Cache, "no cache unless the profile sets one")

	bad, err := provider.LoadProfile("profiles/ignore-flush.yaml")
	require.NoError(t, err)
	require.Equal(t, provider.CacheBehavior{Mode: lun.CacheIgnoreFlush, Size: 64 * mib, CrashPoints: 64}, bad.Cache)
}

// TestProfileCache: a profile's write cache, as a mode alone or a
// mapping, gives LUNs without a cache of their own its mode, size and
// crash points; a LUN that names one keeps it.
func TestProfileCache(t *testing.T) {
	p, err := provider.ParseProfile("p.yaml", []byte("cache: write-back\n"))
	require.NoError(t, err)
	require.Equal(t, provider.CacheBehavior{Mode: lun.CacheWriteBack}, p.Cache)
	p, err = provider.ParseProfile("p.yaml", []byte("cache: {mode: reorder, size: 1MiB, crash-points: 5}\n"))
	require.NoError(t, err)
	c := p.Cache
	require.Equal(t, provider.CacheBehavior{Mode: lun.CacheReorder, Size: mib, CrashPoints: 5}, c)
	require.Equal(t, "reorder, size 1048576, 5 crash points", c.String())
	require.Equal(t, lun.Options{Size: mib, Cache: lun.CacheReorder, CacheSize: mib, CrashPoints: 5}, c.Options(lun.Options{Size: mib}))
	own := lun.Options{Size: mib, Cache: lun.CacheWriteThrough}
	require.Equal(t, own, c.Options(own), "a LUN's own mode wins")
	p, err = provider.ParseProfile("p.yaml", []byte("cache: none\n"))
	require.NoError(t, err)
	require.Equal(t, lun.Options{Size: mib}, p.Cache.Options(lun.Options{Size: mib}))

	bad := provider.DefaultProfile()
	bad.Cache = provider.CacheBehavior{CrashPoints: 3}
	require.ErrorContains(t, bad.Validate(), "need a mode")
	bad.Cache = provider.CacheBehavior{Mode: lun.CacheReorder + 1}
	require.ErrorIs(t, bad.Validate(), lun.ErrCacheMode)

	// A durable array has no emulated cache: its daemon's crash is the
	// power cut.
	dir := t.TempDir()
	a, closeArray, err := lun.OpenScratch(dir, lun.Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, closeArray()) }()
	_, err = provider.NewArray(a, p)
	require.NoError(t, err, "cache: none is no cache")
	p.Cache.Mode = lun.CacheWriteBack
	_, err = provider.NewArray(a, p)
	require.ErrorIs(t, err, lun.ErrCacheDurable)
}

// TestProfileCacheOnBreak: a snapshot LUN made read-write gets the
// firmware's cache, with its content at the break as the durable point.
func TestProfileCacheOnBreak(t *testing.T) {
	ctx := context.Background()
	prof := provider.DefaultProfile()
	prof.Cache = provider.CacheBehavior{Mode: lun.CacheWriteBack, CrashPoints: 4}
	b := newBench(t, lun.Config{}, prof, 1)
	require.NoError(t, b.luns[0].WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, false))
	set := b.create()
	targets, err := b.p.GetTargetLuns(ctx, b.devices, b.infos)
	require.NoError(t, err)
	tl, err := b.a.Get(provider.TargetName(b.devices[0], set))
	require.NoError(t, err)
	require.Equal(t, lun.CacheNone, tl.CacheMode(), "a read-only snapshot LUN takes no writes")
	ex := provider.HardwareProviderEx(b.p)
	require.NoError(t, ex.OnLunStateChange(ctx, targets, b.infos, vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE))
	require.Equal(t, lun.CacheWriteBack, tl.CacheMode())
	u, _ := tl.CacheUse()
	require.Equal(t, 4, u.MaxPoints)
	require.NoError(t, tl.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 0, false))
	_, err = tl.PowerCut(ctx, lun.PowerCutOptions{Keep: lun.KeepNone})
	require.NoError(t, err)
	got := make([]byte, 4096)
	require.NoError(t, tl.ReadAt(ctx, got, 0))
	require.Equal(t, bytes.Repeat([]byte{1}, 4096), got, "the cut goes back to the content at the break")
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
		{"unknown-cache-mode.yaml", 4, `cache.mode: unknown cache mode "sometimes-back"; want none, write-through`},
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
		{"cache mode", "cache: write-behind\n", `cache: unknown cache mode "write-behind"`},
		{"cache without mode", "cache: {size: 1MiB}\n", "a cache needs a mode"},
		{"cache none with points", "cache: {mode: none, crash-points: 3}\n", "need a mode other than none"},
		{"cache size", "cache: {mode: write-back, size: 0}\n", "a cache holds 1 byte or more"},
		{"cache points", "cache: {mode: write-back, crash-points: 100001}\n", "want 0 to 100000"},
		{"cache key", "cache: {mode: write-back, points: 3}\n", `cache: unknown key "points"`},
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
