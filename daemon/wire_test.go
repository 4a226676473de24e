package daemon

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/vss"
)

// freeAddr returns a loopback address nothing listens on (a port just
// freed).
func freeAddr(t *testing.T) string {
	t.Helper()
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ls.Addr().String()
	require.NoError(t, ls.Close())
	return addr
}

// A daemon serves its array provider over the provider protocol and
// registers a remote provider; provider selection takes the remote one by
// its priority, and the set is created through the wire with the same
// calls as in-process.
func TestRemoteProviderThroughTheDaemon(t *testing.T) {
	addr := freeAddr(t)
	cfg := testConfig()
	cfg.Apply(Overrides{ProviderListen: &addr})
	cfg.Providers = append(cfg.Providers, ProviderConfig{Name: "wire", Remote: addr, Priority: 1})
	cfg.Volumes = []VolumeConfig{{Name: "data", LUNs: []string{"lun0", "lun1"}}}
	d, c := start(t, cfg)
	require.Equal(t, addr, d.ProviderAddrs()["array"].String())
	ctx := context.Background()

	st, err := c.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st.Providers, 2)
	byName := map[string]ProviderInfo{}
	for _, p := range st.Providers {
		byName[p.Name] = p
	}
	require.Equal(t, addr, byName["array"].Listen)
	require.Equal(t, addr, byName["wire"].Remote)

	rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"data"}, Context: "app-rollback"})
	require.NoError(t, err)
	require.Equal(t, "created", rep.State)
	require.Equal(t, "wire", rep.Snapshots[0].Provider)
	require.True(t, rep.Snapshots[0].Imported)
	var commit bool
	for _, s := range rep.Timeline {
		if s.Kind == "provider" && s.Name == "CommitSnapshots" {
			require.Equal(t, "wire", s.Actor)
			require.Equal(t, "S_OK", s.Result)
			commit = true
		}
	}
	require.True(t, commit)

	// The same set through the array provider in-process, by name.
	rep2, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"data"}, Context: "app-rollback", Provider: "array"})
	require.NoError(t, err)
	require.Equal(t, "array", rep2.Snapshots[0].Provider)
}

// A remote provider that is not there is registered all the same, and a
// set that needs it fails as a provider failure, in about the provider
// timeout, not a hang.
func TestRemoteProviderUnreachable(t *testing.T) {
	cfg := testConfig()
	cfg.Windows.Provider = 300 * time.Millisecond
	cfg.Apply(Overrides{RemoteProviders: []RemoteProvider{{Name: "gone", Addr: freeAddr(t)}}})
	require.Equal(t, []string{"array", "gone"}, []string{cfg.Providers[0].Name, cfg.Providers[1].Name})
	cfg.Providers[1].Priority = 1
	_, c := start(t, cfg)
	ctx := context.Background()
	start := time.Now()
	_, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Provider: "gone"})
	require.ErrorIs(t, err, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestRemoteProviderConfig(t *testing.T) {
	var cfg Config
	require.NoError(t, yaml.Unmarshal([]byte(`
providers:
  - name: array
    listen: 127.0.0.1:0
  - name: vendor
    remote: 10.1.2.3:10811
    type: hardware
    priority: 5
`), &cfg))
	require.Equal(t, "127.0.0.1:0", cfg.Providers[0].Listen)
	require.Equal(t, "10.1.2.3:10811", cfg.Providers[1].Remote)

	for name, tc := range map[string]struct {
		p    ProviderConfig
		want string
	}{
		"bad remote":  {ProviderConfig{Name: "v", Remote: "nowhere"}, "want HOST:PORT"},
		"bad listen":  {ProviderConfig{Name: "v", Listen: "nowhere"}, "want HOST:PORT"},
		"profile too": {ProviderConfig{Name: "v", Remote: "h:1", ProfileFile: "x.yaml"}, "takes no profile"},
		"listen too":  {ProviderConfig{Name: "v", Remote: "h:1", Listen: "h:2"}, "takes no profile"},
		"seed too":    {ProviderConfig{Name: "v", Remote: "h:1", Seed: 3}, "takes no profile"},
	} {
		c := testConfig()
		c.Providers = []ProviderConfig{tc.p}
		require.ErrorContains(t, c.Validate(), tc.want, name)
	}
	for _, bad := range []string{"", "a", "=h:1", "a="} {
		_, err := ParseRemoteProvider(bad)
		require.Error(t, err, bad)
	}
	rp, err := ParseRemoteProvider("v=h:1")
	require.NoError(t, err)
	require.Equal(t, RemoteProvider{Name: "v", Addr: "h:1"}, rp)
}

// Two daemons: one serves its array provider over the protocol, the other
// names it as a remote provider with a volume on its LUNs. A set created
// on the second commits on the first's array, through its gates, and the
// snapshot LUNs are there.
func TestSetOnAnotherDaemonsArray(t *testing.T) {
	addr := freeAddr(t)
	acfg := testConfig()
	acfg.Apply(Overrides{ProviderListen: &addr})
	a, _ := start(t, acfg)

	bcfg := testConfig()
	bcfg.Array.LUNs = []LUNConfig{{Name: "local", Size: 8 << 20}}
	bcfg.Apply(Overrides{RemoteProviders: []RemoteProvider{{Name: "hostA", Addr: addr}}})
	bcfg.Volumes = []VolumeConfig{{Name: "remote-data", Provider: "hostA", LUNs: []string{"lun0", "lun1"}}}
	_, c := start(t, bcfg)
	rep, err := c.CreateSet(context.Background(), CreateSetRequest{Targets: []string{"remote-data"}, Context: "app-rollback"})
	require.NoError(t, err)
	require.Equal(t, "created", rep.State)
	require.Equal(t, "hostA", rep.Snapshots[0].Provider)
	require.True(t, rep.Snapshots[0].Imported)
	for _, target := range rep.Snapshots[0].TargetLUNs {
		_, err := a.array.Get(target)
		require.NoError(t, err, "the snapshot LUN is on the array that serves the source")
	}

	bad := testConfig()
	bad.Volumes = []VolumeConfig{{Name: "v", Provider: "array", LUNs: []string{"lun0"}}}
	require.ErrorContains(t, bad.Validate(), "not a remote provider")
}
