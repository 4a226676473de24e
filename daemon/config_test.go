package daemon

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/vss"
)

func TestParseConfigExample(t *testing.T) {
	cfg, err := LoadConfig("testdata/daemon.yaml")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Equal(t, "127.0.0.1:10809", cfg.NBD.Listen)
	require.Equal(t, 64, cfg.NBD.MaxInFlight)
	require.Equal(t, 1000, cfg.NBD.MaxConnections)
	require.Equal(t, Size(512<<20), cfg.NBD.MaxInFlightBytes)
	require.Equal(t, 5*time.Second, cfg.NBD.ShutdownTimeout)
	require.Equal(t, 10*time.Second, cfg.NBD.RequestTimeout)
	require.Equal(t, Size(8<<30), cfg.Array.Capacity)
	require.Equal(t, Size(64<<10), cfg.Array.Grain)
	require.Equal(t, []LUNConfig{{Name: "lun0", Size: 1 << 30}, {Name: "db", Size: 256 << 20, BlockSize: 4096},
		{Name: "logs", Size: 64 << 20}, {Name: "scratch", Size: 1 << 40, Thin: true}}, cfg.Array.LUNs)
	require.Len(t, cfg.Providers, 2)
	require.Equal(t, "default", cfg.Providers[0].profile.Name, "the profile file is found relative to the configuration")
	require.Equal(t, "slow-inline", cfg.Providers[1].profile.Name)
	require.Equal(t, 20*time.Millisecond, cfg.Providers[1].profile.Commit.Block.Mean)
	require.Equal(t, "back-end", cfg.Writers[0].Level)
	sc, err := cfg.Writers[0].Scripted.script()
	require.NoError(t, err)
	require.Equal(t, vss.VSS_E_WRITERERROR_RETRYABLE, sc.On[vss.EventPostSnapshot].Failure)
	require.Equal(t, []string{"/bin/true"}, cfg.Writers[1].Exec.Command)
	require.Equal(t, []VolumeConfig{{Name: "data", LUNs: []string{"db", "logs"}}}, cfg.Volumes)
	require.Equal(t, 2*time.Minute, cfg.Windows.Prepare)
	require.Equal(t, 1000, cfg.Sets.History)
	require.Equal(t, APIConfig{Listen: "127.0.0.1:10810", Auth: AuthToken, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: time.Minute, MaxConnections: 256}, cfg.API)
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("c.yaml", []byte("windows: {hold: 5s}\n"))
	require.NoError(t, err)
	require.Equal(t, DefaultNBDListen, cfg.NBD.Listen, "keys left out keep the defaults")
	require.Equal(t, DefaultAPIListen, cfg.API.Listen)
	require.NoError(t, cfg.Validate())
	require.Equal(t, DefaultLUNs(), cfg.Array.LUNs)
	require.Equal(t, "array", cfg.Providers[0].Name)

	cfg, err = ParseConfig("c.yaml", []byte("nbd: {listen: \"\"}\napi: {listen: \"\"}\n"))
	require.NoError(t, err)
	require.Empty(t, cfg.NBD.Listen, "an explicit empty value overrides the default")
	require.Empty(t, cfg.API.Listen)
}

// TestConfigErrors checks that every bad configuration is refused with the
// file, the line and what is wrong (strict decoding).
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	badProfile := filepath.Join(dir, "bad-profile.yaml")
	require.NoError(t, os.WriteFile(badProfile, []byte("commit:\n  block: soon\n"), 0o644))
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"unknown top key", "nbd: {listen: x}\ncolour: red\n", `c.yaml:2: unknown key "colour"`},
		{"unknown nested key", "array:\n  luns:\n    - {name: a, size: 1GiB, sise: 2}\n", `c.yaml:3: unknown key "sise"`},
		{"bad size", "array:\n  capacity: lots\n", `c.yaml:2: size "lots"`},
		{"bad duration", "windows:\n  hold: 10 seconds\n", "c.yaml:2: cannot unmarshal !!str `10 seconds` into a duration (such as 250ms, 10s, 2m)"},
		{"bad int", "nbd:\n  max-in-flight: many\n", "c.yaml:2: cannot unmarshal"},
		{"syntax", "nbd: [\n", "c.yaml:"},
		{"not a mapping", "- a\n- b\n", "c.yaml:1: the configuration must be a mapping"},
		{"two documents", "nbd: {}\n---\napi: {}\n", "c.yaml:2: a configuration file holds one YAML document"},
		{"empty", "", "c.yaml:1: empty configuration"},
		{"LUN twice", "array:\n  luns:\n    - {name: a, size: 1MiB}\n    - {name: a, size: 1MiB}\n", `c.yaml:4: array.luns[1].name: LUN "a" is defined twice`},
		{"LUN geometry", "array:\n  luns:\n    - {name: a, size: 1MiB, block-size: 1000}\n", "c.yaml:3: array.luns[0]: block-size 1000: want 512 or 4096"},
		{"LUN no size", "array:\n  luns:\n    - {name: a}\n", "c.yaml:3: array.luns[0]: size is missing"},
		{"API off loopback", "api: {listen: 0.0.0.0:10810}\n", "c.yaml:1: api.listen: \"0.0.0.0:10810\": daemon: the API listens on loopback only"},
		{"provider type", "providers:\n  - {name: p, type: firmware}\n", `c.yaml:2: providers[0].type: type "firmware": want hardware or software`},
		{"provider twice", "providers:\n  - {name: p}\n  - {name: p}\n", `c.yaml:3: providers[1].name: provider "p" is defined twice`},
		{"profile file missing", "providers:\n  - {name: p, profile: nope.yaml}\n", "c.yaml:2: providers[0].profile: provider:"},
		{"profile file bad", "providers:\n  - {name: p, profile: " + badProfile + "}\n", "bad-profile.yaml:2:10: commit.block"},
		{"inline profile bad", "providers:\n  - name: p\n    profile:\n      comit: {}\n", `c.yaml:4:7: unknown key "comit"`},
		{"writer kinds", "writers:\n  - {name: w}\n", "c.yaml:2: writers[0]: give exactly one of scripted, exec and fsfreeze"},
		{"writer name", "writers:\n  - {name: my writer, exec: {command: [x]}}\n", `c.yaml:2: writers[0].name: writer names are 1-255 characters`},
		{"writer name dots", "writers:\n  - {name: '..', exec: {command: [x]}}\n", `writers[0].name: writer names are 1-255 characters of [A-Za-z0-9._:-], other than . and ..: ".."`},
		{"writer level", "writers:\n  - {name: w, level: middle, exec: {command: [x]}}\n", `writers[0].level: level "middle"`},
		{"writer event", "writers:\n  - name: w\n    scripted:\n      on: {Freze: {}}\n", `c.yaml:4: writers[0].scripted: event "Freze": want one of Identify`},
		{"writer veto without code", "writers:\n  - name: w\n    scripted:\n      on: {Freeze: {result: veto}}\n", "writers[0].scripted: coordinator: invalid writer script"},
		{"writer hresult", "writers:\n  - name: w\n    scripted:\n      on: {Freeze: {result: fail, failure: VSS_E_NOPE}}\n", "on.Freeze.failure: vss: unknown name"},
		{"exec without command", "writers:\n  - {name: w, exec: {timeout: 1s}}\n", "writers[0].exec: coordinator: invalid exec writer options"},
		{"fsfreeze without mount", "writers:\n  - {name: w, fsfreeze: {}}\n", "writers[0].fsfreeze: mount-point is missing"},
		{"volume LUN", "volumes:\n  - {name: v, luns: [lun0, nope]}\n", `c.yaml:2: volumes[0].luns[1]: LUN "nope" is not in array.luns`},
		{"volume empty", "volumes:\n  - {name: v}\n", "volumes[0].luns: a volume needs at least one LUN"},
		{"negative window", "windows:\n  freeze: -1s\n", "c.yaml:2: windows.freeze: must not be negative"},
		{"negative history", "sets:\n  history: -1\n", "c.yaml:2: sets.history: must not be negative"},
		{"negative API timeout", "api:\n  idle-timeout: -1s\n", "c.yaml:2: api.idle-timeout: must not be negative"},
		{"negative connection cap", "api:\n  max-connections: -1\n", "c.yaml:2: api.max-connections: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("c.yaml", []byte(tc.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			require.ErrorContains(t, err, tc.err)
			require.True(t, errors.Is(err, ErrBadConfig), "%v wraps ErrBadConfig", err)
		})
	}
}

func TestParseLatency(t *testing.T) {
	for in, ok := range map[string]bool{"5ms": true, "1ms..5ms": true, "exp:5ms": true, "normal:5ms/1ms": true,
		"5": false, "5ms..1ms": false, "exp:": false, "gamma:5ms": false, "normal:5ms": false, "-1ms": false, "2h": false} {
		_, err := ParseLatency(in)
		require.Equal(t, ok, err == nil, "%q: %v", in, err)
	}
}

// TestSizesAreBinary: a size in the configuration, the API and --lun means
// what it means to qemu-img and fio: 1G is 1 GiB, 4k is 4 KiB, and the
// decimal units are spelt KB, MB, GB.
func TestSizesAreBinary(t *testing.T) {
	for in, want := range map[string]Size{"1G": 1 << 30, "4k": 4 << 10, "512M": 512 << 20, "1GB": 1e9, "1GiB": 1 << 30} {
		var s Size
		require.NoError(t, yaml.Unmarshal([]byte(in), &s), in)
		require.Equal(t, want, s, "YAML %s", in)
		require.NoError(t, json.Unmarshal([]byte(`"`+in+`"`), &s), in)
		require.Equal(t, want, s, "JSON %s", in)
	}
}

// TestContribConfig: the commented example configuration the README
// points to loads and validates, so that it stays true to the keys.
func TestContribConfig(t *testing.T) {
	cfg, err := LoadConfig("../contrib/serve.yaml")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Len(t, cfg.Array.LUNs, 3)
	require.Equal(t, 4096, cfg.Array.LUNs[0].BlockSize)
	require.Equal(t, []string{"db", "logs"}, cfg.Volumes[0].LUNs)
}
