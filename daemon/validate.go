package daemon

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// Validate checks the configuration's values, loads the firmware profiles
// it names and fills in what defaults on the whole: the default LUNs when
// none is given, and one provider, "array", with the default profile, when
// none is. It reports every problem it finds, each with its place.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error, path ...any) { errs = append(errs, c.errAt(err, path...)) }
	neg := func(d time.Duration, path ...any) {
		if d < 0 {
			add(errors.New("must not be negative"), path...)
		}
	}

	if c.NBD.MaxInFlight < 0 {
		add(errors.New("must not be negative"), "nbd", "max-in-flight")
	}
	if c.NBD.MaxConnections < 0 {
		add(errors.New("must not be negative"), "nbd", "max-connections")
	}
	if c.NBD.MaxInFlightBytes < 0 {
		add(errors.New("must not be negative"), "nbd", "max-in-flight-bytes")
	}
	neg(c.NBD.RequestTimeout, "nbd", "request-timeout")
	if n := c.NBD.MaxRequestSize; n < 0 || n > nbd.MaxPayloadLimit || (n > 0 && n < 4096) {
		add(fmt.Errorf("%s: want 4 KiB to 64 MiB", n), "nbd", "max-request-size")
	}
	switch m := c.NBD.TLS.mode(); {
	case m != TLSOff && m != TLSOn && m != TLSRequire:
		add(fmt.Errorf("%q: want off, on or require", c.NBD.TLS.Mode), "nbd", "tls", "mode")
	case m != TLSOff && c.NBD.TLS.Certificates == "":
		add(fmt.Errorf("TLS %s needs a certificates directory (server-cert.pem, server-key.pem)", m), "nbd", "tls", "certificates")
	}
	neg(c.NBD.ShutdownTimeout, "nbd", "shutdown-timeout")
	if c.API.Listen != "" {
		if err := checkLoopback(c.API.Listen); err != nil {
			add(err, "api", "listen")
		}
	}

	if a := c.API.Auth; a != "" && a != AuthToken && a != AuthNone {
		add(fmt.Errorf("%q: want token or none", a), "api", "auth")
	}
	neg(c.API.ReadTimeout, "api", "read-timeout")
	neg(c.API.WriteTimeout, "api", "write-timeout")
	neg(c.API.IdleTimeout, "api", "idle-timeout")
	if c.API.MaxConnections < 0 {
		add(errors.New("must not be negative"), "api", "max-connections")
	}
	if c.Sets.History < 0 {
		add(errors.New("must not be negative"), "sets", "history")
	}
	if c.Array.Capacity < 0 || c.Array.Grain < 0 || c.Array.MaxSnapshots < 0 {
		add(errors.New("capacity, grain and max-snapshots must not be negative"), "array")
	}
	if len(c.Array.LUNs) == 0 {
		c.Array.LUNs = DefaultLUNs()
		c.Array.defaulted = true
	}
	luns := map[string]bool{}
	for i, l := range c.Array.LUNs {
		err, path := checkLUN(l), []any{"array", "luns", i}
		if err == nil && luns[l.Name] {
			err, path = fmt.Errorf("LUN %q is defined twice", l.Name), append(path, "name")
		}
		switch {
		case err == nil:
		case l.Flag != "":
			errs = append(errs, fmt.Errorf("--lun %s: %w", l.Flag, err))
		default:
			add(err, path...)
		}
		luns[l.Name] = true
	}

	if len(c.Providers) == 0 {
		c.Providers = []ProviderConfig{{Name: "array"}}
	}
	provs := map[string]bool{}
	for i := range c.Providers {
		p := &c.Providers[i]
		switch {
		case p.Name == "":
			add(errors.New("a provider needs a name"), "providers", i)
		case provs[p.Name]:
			add(fmt.Errorf("provider %q is defined twice", p.Name), "providers", i, "name")
		}
		provs[p.Name] = true
		if _, err := providerType(p.Type); err != nil {
			add(err, "providers", i, "type")
		}
		if p.Remote != "" {
			if err := checkProviderAddr(p.Remote); err != nil {
				add(err, "providers", i, "remote")
			}
			if p.ProfileNode.Kind != 0 || p.ProfileFile != "" || p.Seed != 0 || p.Listen != "" {
				add(fmt.Errorf("remote provider %q takes no profile, seed or listen: its firmware is its own", p.Name), "providers", i)
			}
			continue
		}
		if p.Listen != "" {
			if err := checkProviderAddr(p.Listen); err != nil {
				add(err, "providers", i, "listen")
			}
		}
		if err := c.resolveProfile(p); err != nil {
			errs = append(errs, c.profileError(err, i))
		} else if m := p.profile.Cache.Mode; m != lun.CacheNone && c.Array.DataDir != "" {
			add(fmt.Errorf("profile %q sets cache %v: %w", p.profile.Name, m, lun.ErrCacheDurable), "providers", i, "profile")
		}
	}

	writers := map[string]bool{}
	for i, w := range c.Writers {
		switch {
		case w.Name == "":
			add(errors.New("a writer needs a name"), "writers", i)
		case checkWriterName(w.Name) != nil:
			add(checkWriterName(w.Name), "writers", i, "name")
		case writers[w.Name]:
			add(fmt.Errorf("writer %q is defined twice", w.Name), "writers", i, "name")
		}
		writers[w.Name] = true
		if _, err := parseLevel(w.Level); err != nil {
			add(err, "writers", i, "level")
		}
		neg(w.FreezeTimeout, "writers", i, "freeze-timeout")
		kinds := 0
		for _, set := range []bool{w.Scripted != nil, w.Exec != nil, w.Fsfreeze != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			add(errors.New("give exactly one of scripted, exec and fsfreeze"), "writers", i)
			continue
		}
		if w.Scripted != nil {
			if _, err := w.Scripted.script(); err != nil {
				add(err, "writers", i, "scripted")
			}
		}
		if w.Exec != nil {
			if _, err := w.Exec.options(); err != nil {
				add(err, "writers", i, "exec")
			}
		}
		if w.Fsfreeze != nil && w.Fsfreeze.MountPoint == "" {
			add(errors.New("mount-point is missing"), "writers", i, "fsfreeze")
		}
	}

	vols := map[string]bool{}
	for i, v := range c.Volumes {
		switch {
		case v.Name == "":
			add(errors.New("a volume needs a name"), "volumes", i)
		case vols[v.Name]:
			add(fmt.Errorf("volume %q is defined twice", v.Name), "volumes", i, "name")
		case len(v.LUNs) == 0:
			add(errors.New("a volume needs at least one LUN"), "volumes", i, "luns")
		}
		vols[v.Name] = true
		if v.Provider != "" {
			k := slices.IndexFunc(c.Providers, func(p ProviderConfig) bool { return p.Name == v.Provider })
			if k < 0 || c.Providers[k].Remote == "" {
				add(fmt.Errorf("provider %q is not a remote provider", v.Provider), "volumes", i, "provider")
			}
			continue // its LUNs are the remote array's
		}
		for j, l := range v.LUNs {
			if !luns[l] {
				add(fmt.Errorf("LUN %q is not in array.luns", l), "volumes", i, "luns", j)
			}
		}
	}

	w := c.Windows
	for _, d := range []struct {
		v    time.Duration
		name string
	}{{w.Hold, "hold"}, {w.Freeze, "freeze"}, {w.Prepare, "prepare"}, {w.Event, "event"}, {w.Provider, "provider"}, {w.RemoteWriter, "remote-writer"}} {
		neg(d.v, "windows", d.name)
	}
	return errors.Join(errs...)
}

// checkLUN checks a LUN's geometry before the array does, so the error
// names the place.
func checkLUN(l LUNConfig) error {
	switch {
	case l.Name == "":
		return errors.New("name is missing")
	case l.Size <= 0:
		return errors.New("size is missing or zero")
	case l.BlockSize != 0 && l.BlockSize != 512 && l.BlockSize != 4096:
		return fmt.Errorf("block-size %d: want 512 or 4096", l.BlockSize)
	case int64(l.Size)%int64(max(l.BlockSize, 512)) != 0:
		return fmt.Errorf("size %d is not a multiple of the block size %d", l.Size, max(l.BlockSize, 512))
	case len(l.Serial) > 64:
		return fmt.Errorf("serial %q: at most 64 characters", l.Serial)
	case l.CacheSize < 0:
		return fmt.Errorf("cache-size %d: must not be negative", l.CacheSize)
	case l.CrashPoints < 0 || l.CrashPoints > maxCrashPoints:
		return fmt.Errorf("crash-points %d: want 0 to %d", l.CrashPoints, maxCrashPoints)
	case l.CrashPoints > 0 && (l.Cache == "" || l.Cache == "none"):
		return fmt.Errorf("crash-points needs a cache mode (cache: write-back, or another)")
	}
	if _, err := lun.ParseCacheMode(l.Cache); err != nil {
		return fmt.Errorf("cache %q: want %s", l.Cache, lun.CacheModeChoices)
	}
	if _, err := parseNAA(l.NAA); err != nil {
		return err
	}
	return nil
}

// maxCrashPoints bounds the crash points a LUN keeps.
const maxCrashPoints = 100000

// maxWriterName bounds a writer's name as lun bounds a LUN's.
const maxWriterName = 255

// checkWriterName holds writer names to the rule of LUN names: 1-255
// characters of [A-Za-z0-9._:-], other than "." and "..". A name travels
// in logs, in the text tables of the CLI and in the environment of exec
// writers, so it carries no white space, no control characters and no
// path separators; a bound on its length bounds what a remote writer's
// registration makes the daemon keep.
func checkWriterName(name string) error {
	ok := name != "" && len(name) <= maxWriterName && name != "." && name != ".."
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			ok = false
		}
	}
	if !ok {
		return &codedError{msg: fmt.Sprintf("%s: %.64q", strings.TrimPrefix(ErrBadWriterName.Error(), "daemon: "), name),
			errs: []error{ErrBadWriterName, vss.E_INVALIDARG}}
	}
	return nil
}

// checkLoopback refuses an API address off loopback (D1).
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q: %w", addr, ErrNotLoopback)
}

// resolveProfile loads or decodes a provider's profile.
func (c *Config) resolveProfile(p *ProviderConfig) error {
	var prof *provider.Profile
	var err error
	switch {
	case p.ProfileFile != "":
		prof, err = provider.LoadProfile(p.ProfileFile)
	case p.ProfileNode.Kind == 0:
		prof = provider.DefaultProfile()
		prof.Name = "default"
	case p.ProfileNode.Kind == yaml.ScalarNode:
		prof, err = provider.LoadProfile(c.resolvePath(p.ProfileNode.Value))
	case p.ProfileNode.Kind == yaml.MappingNode:
		prof, err = provider.DecodeProfile(c.File, &p.ProfileNode)
		if err == nil && prof.Name == "" {
			prof.Name = p.Name + "-inline"
		}
	default:
		return errors.New("want a profile file name or an inline profile")
	}
	if err != nil {
		return err
	}
	if p.Seed != 0 {
		prof.Seed = p.Seed
	}
	p.profile = prof
	return nil
}

// profileError places a profile's error: a ProfileError carries its own
// file, line and key path, anything else is placed at the provider's
// profile key.
func (c *Config) profileError(err error, i int) error {
	var pe *provider.ProfileError
	if errors.As(err, &pe) {
		return &codedError{msg: err.Error(), errs: []error{ErrBadConfig, err}}
	}
	return c.errAt(err, "providers", i, "profile")
}

// providerType reads hardware (the default) or software.
func providerType(s string) (vss.ProviderType, error) {
	switch strings.ToLower(s) {
	case "", "hardware":
		return vss.VSS_PROV_HARDWARE, nil
	case "software":
		return vss.VSS_PROV_SOFTWARE, nil
	}
	return 0, fmt.Errorf("type %q: want hardware or software", s)
}

// parseLevel reads front-end (the default), back-end or system, or a
// VSS_APP_* name.
func parseLevel(s string) (vss.ApplicationLevel, error) {
	if s == "" {
		return vss.VSS_APP_FRONT_END, nil
	}
	l, err := vss.ParseApplicationLevel(strings.ToUpper(strings.ReplaceAll(s, "-", "_")))
	if err != nil || l == vss.VSS_APP_UNKNOWN {
		return 0, fmt.Errorf("level %q: want front-end, back-end or system", s)
	}
	return l, nil
}

// parseEvent reads a writer event name.
func parseEvent(s string) (vss.WriterEvent, error) {
	e, err := vss.ParseWriterEvent(s)
	if err != nil {
		var names []string
		for _, e := range vss.WriterEvents() {
			names = append(names, e.String())
		}
		return 0, fmt.Errorf("event %q: want one of %s", s, strings.Join(names, ", "))
	}
	return e, nil
}

// script builds the coordinator.Script.
func (s *ScriptConfig) script() (coordinator.Script, error) {
	sc := coordinator.Script{On: map[vss.WriterEvent]coordinator.Action{}}
	hr := func(v string) (vss.HRESULT, error) {
		if v == "" {
			return 0, nil
		}
		return vss.ParseHRESULT(v)
	}
	for name, a := range s.On {
		e, err := parseEvent(name)
		if err != nil {
			return sc, err
		}
		act := coordinator.Action{Delay: a.Delay, Result: coordinator.Result(a.Result), Message: a.Message}
		if act.Failure, err = hr(a.Failure); err != nil {
			return sc, fmt.Errorf("on.%s.failure: %w", name, err)
		}
		if act.Application, err = hr(a.Application); err != nil {
			return sc, fmt.Errorf("on.%s.application: %w", name, err)
		}
		sc.On[e] = act
	}
	if err := sc.Validate(); err != nil {
		return sc, err
	}
	return sc, nil
}

// options builds the coordinator.ExecOptions, checked as NewExecWriter
// checks them.
func (x *ExecConfig) options() (coordinator.ExecOptions, error) {
	o := coordinator.ExecOptions{Command: x.Command, Timeout: x.Timeout, Dir: x.Dir, Env: x.Env}
	if len(x.Commands) > 0 {
		o.Commands = map[vss.WriterEvent][]string{}
	}
	for name, argv := range x.Commands {
		e, err := parseEvent(name)
		if err != nil {
			return o, fmt.Errorf("commands: %w", err)
		}
		o.Commands[e] = argv
	}
	_, err := coordinator.NewExecWriter(o)
	return o, err
}

// checkProviderAddr checks a provider protocol address: host:port.
func checkProviderAddr(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("provider address %q: want HOST:PORT", addr)
	}
	return nil
}
