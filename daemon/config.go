package daemon

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/provider"
)

// Default addresses.
const (
	DefaultNBDListen = "127.0.0.1:10809"
	DefaultAPIListen = "127.0.0.1:10810"
	// DefaultAPI is the API address clients use when neither --api nor
	// SHADOWBENCH_API names one.
	DefaultAPI = "http://" + DefaultAPIListen
	// EnvAPI is the environment variable clients read the API address
	// from.
	EnvAPI = "SHADOWBENCH_API"
)

// DefaultRemoteWriterTimeout is how long an attached writer may stay silent
// (no poll, no answer, no event in hand) before the daemon drops it.
const DefaultRemoteWriterTimeout = 30 * time.Second

// Config is the daemon's configuration: what a configuration file holds,
// with serve's flags applied on top. DefaultConfig gives the values of a
// serve without a file; keys a file leaves out keep them.
type Config struct {
	// File is the file the configuration was read from, "" for none.
	// Relative paths in it (profile files) are relative to its directory.
	File string `yaml:"-"`

	NBD       NBDConfig        `yaml:"nbd"`
	API       APIConfig        `yaml:"api"`
	Array     ArrayConfig      `yaml:"array"`
	Providers []ProviderConfig `yaml:"providers"`
	Writers   []WriterConfig   `yaml:"writers"`
	Volumes   []VolumeConfig   `yaml:"volumes"`
	Windows   WindowsConfig    `yaml:"windows"`
	Sets      SetsConfig       `yaml:"sets"`

	// root is the parsed file, for the lines of errors found after
	// decoding.
	root *yaml.Node
}

// NBDConfig is the NBD server's part.
type NBDConfig struct {
	// Listen is the TCP address; "" for none.
	Listen string `yaml:"listen"`
	// Socket is a unix socket to serve on as well; "" for none.
	Socket string `yaml:"socket"`
	// DefaultExport is the export for clients that name none; "" for the
	// first LUN.
	DefaultExport string `yaml:"default-export"`
	// MaxInFlight bounds the requests in flight per connection; 0 for
	// nbd.DefaultMaxInFlight.
	MaxInFlight int `yaml:"max-in-flight"`
	// MaxConnections bounds the NBD connections served at once; past it a
	// new one is closed at once and counted in /metrics. 0 for
	// nbd.DefaultMaxConnections (RLIMIT_NOFILE less 256, at least 64).
	MaxConnections int `yaml:"max-connections"`
	// MaxInFlightBytes bounds the NBD server's payload memory (replies
	// not yet sent, writes not yet done); a request past it waits. 0 for
	// nbd.DefaultMaxInFlightBytes (a sixteenth of RAM, 64 MiB to 4 GiB).
	// One connection may hold a sixteenth of it.
	MaxInFlightBytes Size `yaml:"max-in-flight-bytes"`
	// RequestTimeout bounds how long an NBD request takes to arrive once
	// begun (a header from its first byte, a WRITE's payload); a client
	// that stalls half-way is disconnected. 0 for 30 s.
	RequestTimeout time.Duration `yaml:"request-timeout"`
	// ShutdownTimeout bounds the drain of NBD and API requests at
	// shutdown; 0 for 10 s.
	ShutdownTimeout time.Duration `yaml:"shutdown-timeout"`
	// ReadOnly serves every export read-only (WRITE, TRIM and
	// WRITE_ZEROES answer EPERM), whatever the LUNs' own flags.
	ReadOnly bool `yaml:"read-only"`
	// MaxRequestSize bounds a READ or WRITE, advertised as the maximum
	// block size; 0 for 32 MiB, at most 64 MiB.
	MaxRequestSize Size `yaml:"max-request-size"`
	// TLS offers or requires TLS (NBD_OPT_STARTTLS).
	TLS TLSConfig `yaml:"tls"`
}

// TLS modes, as nbdkit spells them.
const (
	TLSOff     = "off"
	TLSOn      = "on"
	TLSRequire = "require"
)

// TLSConfig is the NBD server's TLS. Certificates is a directory holding
// server-cert.pem and server-key.pem (PEM; nbdkit's and qemu-nbd's
// layout); Mode is off, on (offered) or require. Certificates alone means
// on.
type TLSConfig struct {
	Mode         string `yaml:"mode"`
	Certificates string `yaml:"certificates"`
}

// mode is the effective mode.
func (t TLSConfig) mode() string {
	if t.Mode == "" && t.Certificates != "" {
		return TLSOn
	}
	return cmp.Or(t.Mode, TLSOff)
}

// APIConfig is the HTTP API's part. With neither address the daemon runs
// without an API.
type APIConfig struct {
	// Listen is a loopback TCP address; "" for none.
	Listen string `yaml:"listen"`
	// Socket is a unix socket, created with mode 0600; "" for none.
	Socket string `yaml:"socket"`
	// Auth is how the TCP API tells who calls it: AuthToken (the default,
	// also "") or AuthNone. The unix socket needs no token.
	Auth string `yaml:"auth"`
	// TokenFile is where the daemon writes the TCP API's token; "" for
	// DefaultTokenFile.
	TokenFile string `yaml:"token-file"`
	// ReadTimeout bounds the reading of a request, header and body; 0 for
	// DefaultAPIReadTimeout.
	ReadTimeout time.Duration `yaml:"read-timeout"`
	// WriteTimeout bounds a request from its header to its answer, and the
	// writing of the answer of the long requests (a snapshot set, the
	// management calls that reach providers, a writer's long poll), which
	// are not otherwise bounded by it; 0 for DefaultAPIWriteTimeout.
	WriteTimeout time.Duration `yaml:"write-timeout"`
	// IdleTimeout closes a keep-alive connection idle that long; 0 for
	// DefaultAPIIdleTimeout.
	IdleTimeout time.Duration `yaml:"idle-timeout"`
	// MaxConnections caps the open connections of each API listener: past
	// it a new connection is answered 503 and closed. 0 for
	// DefaultAPIMaxConnections.
	MaxConnections int `yaml:"max-connections"`
}

// The API's limits when the configuration sets none. The read timeout
// is the header timeout the API always had; a request's body is at most
// 1 MiB, which loopback carries in microseconds. 256 connections serve
// every CLI call and remote writer a machine runs, and cost at most a few
// MiB.
const (
	DefaultAPIReadTimeout    = 10 * time.Second
	DefaultAPIWriteTimeout   = 30 * time.Second
	DefaultAPIIdleTimeout    = 60 * time.Second
	DefaultAPIMaxConnections = 256
)

// ArrayConfig is the storage array.
type ArrayConfig struct {
	// DataDir keeps the array on disk: its LUNs, snapshots, clones and
	// data come back when the daemon starts on it again. Empty for an
	// array in memory, which nothing survives.
	DataDir string `yaml:"data-dir"`
	// Capacity bounds the data the array holds, and the sum of the sizes
	// of its thick LUNs (thin LUNs, snapshots and clones may overcommit
	// it). 0 for the default: in memory, half the machine's RAM; on disk,
	// the free space of DataDir's file system (with what the array
	// already holds) less 1/32 of it.
	Capacity Size `yaml:"capacity"`
	// Grain is the copy-on-write grain; 0 for the default.
	Grain Size `yaml:"grain"`
	// MaxSnapshots is the per-LUN snapshot limit; 0 for the default.
	MaxSnapshots int `yaml:"max-snapshots"`
	// LUNs are created at start. With none at all (here or from --lun),
	// the daemon creates lun0 and lun1 of 1 GiB.
	LUNs []LUNConfig `yaml:"luns"`

	defaulted bool // LUNs are DefaultLUNs, none having been configured
}

// LUNConfig describes a LUN to create.
type LUNConfig struct {
	Name      string `yaml:"name" json:"name"`
	Size      Size   `yaml:"size" json:"size"`
	BlockSize int    `yaml:"block-size" json:"block_size,omitempty"` // 512 or 4096; 0 for 512
	ReadOnly  bool   `yaml:"read-only" json:"read_only,omitempty"`
	// Flag is the --lun flag this LUN came from, "" for the file: errors
	// then name the flag rather than a path in a file it is not in.
	Flag string `yaml:"-" json:"-"`
	// Thin lets the LUN overcommit the array's capacity. A thick LUN (the
	// default) is created only when the sizes of the thick LUNs, its own
	// included, add up within the capacity.
	Thin bool `yaml:"thin" json:"thin,omitempty"`
	// Cache is the write cache the LUN emulates, which decides what
	// lun powercut leaves: write-through, write-back, write-back-battery,
	// or the defects ignore-flush, ignore-fua and reorder; "" for none
	// (power cuts refused). CacheSize bounds the writes it holds since
	// its last durable point (64 MiB when 0). In-memory arrays only.
	Cache     string `yaml:"cache" json:"cache,omitempty"`
	CacheSize Size   `yaml:"cache-size" json:"cache_size,omitempty"`
	// CrashPoints is how many crash points (FLUSHes and marks) the LUN
	// keeps for lun crashpoints, lun expose --at and crash-test; 0 for
	// none. It needs a cache mode.
	CrashPoints int `yaml:"crash-points" json:"crash_points,omitempty"`
	// Serial and NAA set the LUN's SCSI identity (page 80 serial; page 83
	// NAA 6 designator, 32 hex digits); generated when empty.
	Serial string `yaml:"serial" json:"serial,omitempty"`
	NAA    string `yaml:"naa" json:"naa,omitempty"`
}

// DefaultLUNs are the LUNs of a daemon configured with none.
func DefaultLUNs() []LUNConfig {
	return []LUNConfig{{Name: "lun0", Size: 1 << 30, BlockSize: 512}, {Name: "lun1", Size: 1 << 30, BlockSize: 512}}
}

// ProviderConfig registers a provider: the emulated array provider over
// the daemon's array, or, with Remote, a provider reached over the provider
// protocol (provider/wire).
type ProviderConfig struct {
	Name string `yaml:"name"`
	// Remote is the address (host:port) of a provider reached over the
	// provider protocol, in another process or on another host; it takes
	// no profile and no seed. "" for the daemon's own array provider.
	Remote string `yaml:"remote"`
	// Listen serves this array provider over the provider protocol on
	// the TCP address, with KernelSupport for the daemon's array, so that
	// a coordinator elsewhere can drive it (serve --provider-listen sets
	// it on the first array provider). "" for none.
	Listen string `yaml:"listen"`
	// Type is hardware (the default) or software.
	Type string `yaml:"type"`
	// Priority orders providers of one type, highest first.
	Priority int `yaml:"priority"`
	// ProfileNode is the profile key: a file name (relative to the
	// configuration file) or the profile itself, inline.
	ProfileNode yaml.Node `yaml:"profile"`
	// ProfileFile is a firmware profile file; it overrides ProfileNode.
	// serve's --profile sets it.
	ProfileFile string `yaml:"-"`
	// Seed, when not 0, overrides the profile's seed.
	Seed uint64 `yaml:"seed"`

	profile *provider.Profile // resolved by Validate
}

// WriterConfig defines a writer the daemon runs itself. Exactly one of
// Scripted, Exec and Fsfreeze is set.
type WriterConfig struct {
	Name string `yaml:"name"`
	// Level is front-end (the default), back-end or system.
	Level string `yaml:"level"`
	// FreezeTimeout is dwTimeoutFreeze; 0 for windows.freeze.
	FreezeTimeout time.Duration   `yaml:"freeze-timeout"`
	Scripted      *ScriptConfig   `yaml:"scripted"`
	Exec          *ExecConfig     `yaml:"exec"`
	Fsfreeze      *FsfreezeConfig `yaml:"fsfreeze"`
}

// ScriptConfig is a scripted writer: what it does per event.
type ScriptConfig struct {
	// On maps an event name (Freeze, Thaw...) to an action.
	On map[string]ActionConfig `yaml:"on"`
}

// ActionConfig is coordinator.Action in the configuration's notation.
type ActionConfig struct {
	Delay time.Duration `yaml:"delay"`
	// Result is ok, fail, veto, panic or hang.
	Result string `yaml:"result"`
	// Failure and Application are HRESULT names or 0x values.
	Failure     string `yaml:"failure"`
	Application string `yaml:"application"`
	Message     string `yaml:"message"`
}

// ExecConfig is coordinator.ExecOptions in the configuration's notation.
type ExecConfig struct {
	Command  []string            `yaml:"command"`
	Commands map[string][]string `yaml:"commands"`
	Timeout  time.Duration       `yaml:"timeout"`
	Dir      string              `yaml:"dir"`
	Env      []string            `yaml:"env"`
}

// FsfreezeConfig is a writer that freezes a mounted file system.
type FsfreezeConfig struct {
	MountPoint string        `yaml:"mount-point"`
	MaxFrozen  time.Duration `yaml:"max-frozen"`
}

// VolumeConfig defines a volume: a name and the LUNs it spans. A LUN is a
// volume of itself without a definition.
type VolumeConfig struct {
	Name string   `yaml:"name"`
	LUNs []string `yaml:"luns"`
	// Provider names the remote provider whose array holds the LUNs (a
	// set across arrays holds them there, through the protocol's
	// KernelSupport); "" for LUNs of this daemon's array.
	Provider string `yaml:"provider"`
}

// WindowsConfig are the coordinator's windows; 0 keeps the default.
type WindowsConfig struct {
	Hold     time.Duration `yaml:"hold"`     // flush & hold, 10 s
	Freeze   time.Duration `yaml:"freeze"`   // writers' default dwTimeoutFreeze, 60 s
	Prepare  time.Duration `yaml:"prepare"`  // PrepareForSnapshot, 120 s
	Event    time.Duration `yaml:"event"`    // every other writer event, 60 s
	Provider time.Duration `yaml:"provider"` // each provider call, 60 s
	// RemoteWriter is how long an attached writer may stay silent before
	// the daemon drops it; 0 for DefaultRemoteWriterTimeout.
	RemoteWriter time.Duration `yaml:"remote-writer"`
}

// SetsConfig is what the daemon remembers of the snapshot sets it ran.
type SetsConfig struct {
	// History is how many sets GET /v1/sets lists: past it, the oldest
	// set that holds no snapshot is forgotten (a deleted set is forgotten
	// at once). 0 for coordinator.DefaultSetHistory.
	History int `yaml:"history"`
}

// DefaultConfig is the configuration of serve without a file: NBD on
// DefaultNBDListen, the API on DefaultAPIListen, and (since it names no
// LUN) the DefaultLUNs.
func DefaultConfig() *Config {
	return &Config{
		NBD: NBDConfig{Listen: DefaultNBDListen},
		API: APIConfig{Listen: DefaultAPIListen},
	}
}

// LoadConfig reads the configuration file at path over DefaultConfig.
// Errors name the file as given.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes one YAML document over DefaultConfig. file is the
// name errors carry and the base of relative paths. Decoding is strict:
// unknown keys, a second document and values of the wrong type are errors
// with the file and line (*ConfigError). Values are checked by Validate,
// which New calls once the flags are applied.
func ParseConfig(file string, data []byte) (cfg *Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, &ConfigError{File: file, Err: fmt.Errorf("YAML decoder failed: %v", r)}
		}
	}()
	root, err := provider.DecodeOneDocument(data, "configuration")
	if de := (*provider.DocumentError)(nil); errors.As(err, &de) {
		return nil, &ConfigError{File: file, Line: de.Line, Err: errors.New(de.Msg)}
	} else if err != nil {
		return nil, yamlErrors(file, err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, &ConfigError{File: file, Line: root.Line, Err: errors.New("the configuration must be a mapping of keys (nbd, api, array, providers, writers, volumes, windows, sets)")}
	}
	cfg = DefaultConfig()
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(cfg); err != nil {
		return nil, yamlErrors(file, err)
	}
	cfg.File, cfg.root = file, root
	return cfg, nil
}

// ConfigError is a problem at one place of a configuration: the file (""
// for one built from flags), the line (0 when unknown), the key path
// ("writers[0].exec.command") and what is wrong.
type ConfigError struct {
	File string
	Line int
	Path string
	Err  error
}

// Error formats "file:line: path: problem".
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns ErrBadConfig and the cause.
func (e *ConfigError) Unwrap() []error { return []error{ErrBadConfig, e.Err} }

var (
	yamlLine     = regexp.MustCompile(`^line (\d+): `)
	yamlUnknown  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	yamlTypeName = regexp.MustCompile(`into (\[\])?(map\[string\])?(\w+\.)?(\w+)$`)
)

// yamlErrors turns the YAML library's errors into ConfigErrors with the
// line they name, joined; "field x not found in type daemon.y" becomes
// `unknown key "x"`.
func yamlErrors(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var errs []error
	for _, m := range msgs {
		ce := &ConfigError{File: file}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			ce.Line, _ = strconv.Atoi(sm[1])
			m = m[len(sm[0]):]
		}
		if sm := yamlUnknown.FindStringSubmatch(m); sm != nil {
			m = fmt.Sprintf("unknown key %q", sm[1])
		} else if strings.Contains(m, "time.Duration") {
			m = yamlTypeName.ReplaceAllString(m, "into a duration (such as 250ms, 10s, 2m)")
		}
		ce.Err = errors.New(m)
		errs = append(errs, ce)
	}
	return errors.Join(errs...)
}

// resolvePath makes a path in the configuration relative to its file.
func (c *Config) resolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// pos returns the line of the node at path ("writers", 0, "exec"), or of
// its deepest ancestor in the file; 0 without a file.
func (c *Config) pos(path ...any) int {
	if c.root == nil || len(c.root.Content) == 0 {
		return 0
	}
	n := c.root.Content[0]
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
			}
		}
		if next == nil {
			return line
		}
		n, line = next, next.Line
	}
	return line
}

// errAt builds the ConfigError for the value at path.
func (c *Config) errAt(err error, path ...any) *ConfigError {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	file := c.File
	return &ConfigError{File: file, Line: c.pos(path...), Path: b.String(), Err: err}
}

// Overrides are settings given on serve's command line. Nil fields leave
// the configuration's values; LUNs are added to its LUNs; Profile, when
// set, is the profile file of the first provider.
type Overrides struct {
	NBDListen, NBDSocket, DefaultExport, APIListen, APISocket   *string
	APIAuth, APITokenFile                                       *string
	MaxInFlight, MaxConnections, SetHistory                     *int
	MaxInFlightBytes, Capacity                                  *Size
	RequestTimeout, ShutdownTimeout, Hold, Freeze, RemoteWriter *time.Duration
	LUNs                                                        []LUNConfig
	Profile                                                     string
	DataDir                                                     *string
	ReadOnly                                                    *bool
	MaxRequestSize                                              *Size
	TLS, TLSCertificates                                        *string
	// ProviderListen is the Listen of the first array provider.
	ProviderListen *string
	// RemoteProviders are added after the configuration's providers
	// (after the default array provider when it names none).
	RemoteProviders []RemoteProvider
}

// RemoteProvider is one --remote-provider NAME=ADDR.
type RemoteProvider struct{ Name, Addr string }

// ParseRemoteProvider reads NAME=ADDR.
func ParseRemoteProvider(s string) (RemoteProvider, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok || name == "" || addr == "" {
		return RemoteProvider{}, fmt.Errorf("remote provider %q: want NAME=HOST:PORT", s)
	}
	return RemoteProvider{Name: name, Addr: addr}, nil
}

// Apply applies the overrides.
func (c *Config) Apply(o Overrides) {
	set := func(dst, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.NBD.Listen, o.NBDListen)
	set(&c.NBD.Socket, o.NBDSocket)
	set(&c.NBD.DefaultExport, o.DefaultExport)
	set(&c.API.Listen, o.APIListen)
	set(&c.API.Socket, o.APISocket)
	set(&c.Array.DataDir, o.DataDir)
	set(&c.API.Auth, o.APIAuth)
	set(&c.API.TokenFile, o.APITokenFile)
	if o.SetHistory != nil {
		c.Sets.History = *o.SetHistory
	}
	for _, d := range []struct{ dst, v *int }{{&c.NBD.MaxInFlight, o.MaxInFlight},
		{&c.NBD.MaxConnections, o.MaxConnections}} {
		if d.v != nil {
			*d.dst = *d.v
		}
	}
	for _, d := range []struct{ dst, v *time.Duration }{{&c.NBD.RequestTimeout, o.RequestTimeout},
		{&c.NBD.ShutdownTimeout, o.ShutdownTimeout},
		{&c.Windows.Hold, o.Hold}, {&c.Windows.Freeze, o.Freeze}, {&c.Windows.RemoteWriter, o.RemoteWriter}} {
		if d.v != nil {
			*d.dst = *d.v
		}
	}
	if o.MaxInFlightBytes != nil {
		c.NBD.MaxInFlightBytes = *o.MaxInFlightBytes
	}
	if o.Capacity != nil {
		c.Array.Capacity = *o.Capacity
	}
	if o.MaxRequestSize != nil {
		c.NBD.MaxRequestSize = *o.MaxRequestSize
	}
	if o.ReadOnly != nil {
		c.NBD.ReadOnly = *o.ReadOnly
	}
	set(&c.NBD.TLS.Mode, o.TLS)
	set(&c.NBD.TLS.Certificates, o.TLSCertificates)
	c.Array.LUNs = append(c.Array.LUNs, o.LUNs...)
	if o.Profile != "" {
		if len(c.Providers) == 0 {
			c.Providers = []ProviderConfig{{Name: "array"}}
		}
		c.Providers[0].ProfileFile = o.Profile
	}
	if o.ProviderListen != nil {
		if len(c.Providers) == 0 {
			c.Providers = []ProviderConfig{{Name: "array"}}
		}
		for i := range c.Providers {
			if c.Providers[i].Remote == "" {
				c.Providers[i].Listen = *o.ProviderListen
				break
			}
		}
	}
	if len(o.RemoteProviders) > 0 && len(c.Providers) == 0 {
		c.Providers = []ProviderConfig{{Name: "array"}}
	}
	for _, r := range o.RemoteProviders {
		c.Providers = append(c.Providers, ProviderConfig{Name: r.Name, Remote: r.Addr})
	}
}
