package provider

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/units"
	"github.com/shadowbench/shadowbench/vss"
)

// ErrBadProfile is wrapped by every error about a profile's content.
var ErrBadProfile = errors.New("provider: bad firmware profile")

// ProfileError is a problem at one place of a profile file: the file, the
// line and column (1-based; 0 when unknown), the key path
// ("methods.CommitSnapshots.latency") and what is wrong.
type ProfileError struct {
	File   string
	Line   int
	Column int
	Path   string
	Err    error
}

// Error formats "file:line:col: path: problem", the form editors jump to.
func (e *ProfileError) Error() string { return FormatPlace(e.File, e.Line, e.Column, e.Path, e.Err) }

// Unwrap returns ErrBadProfile and the cause.
func (e *ProfileError) Unwrap() []error { return []error{ErrBadProfile, e.Err} }

// LoadProfile reads and decodes the profile file at path. Errors name the
// file as given.
func LoadProfile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("provider: profile: %w", err)
	}
	return ParseProfile(path, data)
}

// ParseProfile decodes one YAML document into a profile. name is the file
// name errors carry, and, without its directory and extension, the profile's
// name when the document has none. Unknown keys, aliases and a second
// document are errors. It never panics: a panic of the YAML library comes
// back as an error.
func ParseProfile(name string, data []byte) (p *Profile, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, &ProfileError{File: name, Err: fmt.Errorf("YAML decoder failed: %v", r)}
		}
	}()
	doc, err := DecodeOneDocument(data, "profile")
	if de := (*DocumentError)(nil); errors.As(err, &de) {
		return nil, &ProfileError{File: name, Line: de.Line, Err: errors.New(de.Msg)}
	} else if err != nil {
		return nil, yamlError(name, err)
	}
	p, err = DecodeProfile(name, doc)
	if err != nil {
		return nil, err
	}
	if p.Name == "" {
		p.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	return p, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError turns a syntax error of the YAML library into a ProfileError,
// keeping the line it names.
func yamlError(file string, err error) error {
	e := &ProfileError{File: file, Err: err}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Err = errors.New(strings.TrimPrefix(yamlLine.ReplaceAllString(err.Error(), ""), "yaml: : "))
	}
	return e
}

// DecodeProfile decodes a profile from an already parsed YAML node (a
// document or a mapping), such as a profile written inline in a scenario
// file; errors carry file and the node's own line numbers. Keys left out
// keep DefaultProfile's values; the name stays empty when not given.
func DecodeProfile(file string, node *yaml.Node) (*Profile, error) {
	d := &profileDecoder{file: file}
	p := DefaultProfile()
	p.Name = ""
	p.Description = ""
	if node == nil {
		return nil, &ProfileError{File: file, Err: errors.New("no profile")}
	}
	n := node
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, d.errf(n, "", "empty profile")
		}
		n = n.Content[0]
	}
	if err := d.profile(p, n); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, d.errf(n, "", "%v", err)
	}
	return p, nil
}

// profileDecoder walks a profile's node tree, field by field, so that every
// error names the line of the offending value. Decoding into tagged structs
// with KnownFields was rejected: yaml.Node.Decode has no strict mode, and
// errors would name Go fields rather than profile keys.
type profileDecoder struct {
	file string
}

func (d *profileDecoder) errf(n *yaml.Node, path, format string, args ...any) error {
	return &ProfileError{File: d.file, Line: n.Line, Column: n.Column, Path: path, Err: fmt.Errorf(format, args...)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// check refuses aliases, which would let a small file expand into a huge
// tree, and nodes of the wrong kind.
func (d *profileDecoder) check(n *yaml.Node, path string, kind yaml.Kind, what string) error {
	if n.Kind == yaml.AliasNode {
		return d.errf(n, path, "aliases are not supported in profiles")
	}
	if n.Kind != kind {
		return d.errf(n, path, "expected %s, found %s", what, describe(n))
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// fields walks a mapping, calling the handler of each key. Unknown and
// repeated keys are errors at the key's line.
func (d *profileDecoder) fields(n *yaml.Node, path string, handlers map[string]func(v *yaml.Node, path string) error) error {
	if err := d.check(n, path, yaml.MappingNode, "a mapping"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := d.check(k, path, yaml.ScalarNode, "a key"); err != nil {
			return err
		}
		h, ok := handlers[k.Value]
		if !ok {
			known := make([]string, 0, len(handlers))
			for key := range handlers {
				known = append(known, key)
			}
			slices.Sort(known)
			return d.errf(k, path, "unknown key %q (known keys: %s)", k.Value, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return d.errf(k, path, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		if err := h(v, join(path, k.Value)); err != nil {
			return err
		}
	}
	return nil
}

func (d *profileDecoder) profile(p *Profile, n *yaml.Node) error {
	var commitNode *yaml.Node
	err := d.fields(n, "", map[string]func(*yaml.Node, string) error{
		"name":        func(v *yaml.Node, path string) error { return d.str(v, path, &p.Name) },
		"description": func(v *yaml.Node, path string) error { return d.str(v, path, &p.Description) },
		"seed":        func(v *yaml.Node, path string) error { return d.uint(v, path, &p.Seed) },
		"capabilities": func(v *yaml.Node, path string) error {
			return d.capabilities(&p.Capabilities, v, path)
		},
		"prepare": func(v *yaml.Node, path string) error {
			return d.fields(v, path, map[string]func(*yaml.Node, string) error{
				"latency": func(v *yaml.Node, path string) error { return d.latency(v, path, &p.Prepare.Latency) },
			})
		},
		"commit": func(v *yaml.Node, path string) error {
			commitNode = v
			return d.fields(v, path, map[string]func(*yaml.Node, string) error{
				"block": func(v *yaml.Node, path string) error { return d.block(v, path, &p.Commit) },
			})
		},
		"methods": func(v *yaml.Node, path string) error { return d.methods(p, v, path) },
		"cache":   func(v *yaml.Node, path string) error { return d.cache(v, path, &p.Cache) },
	})
	if err != nil {
		return err
	}
	if commitNode != nil && !p.Commit.Block.IsZero() && !p.Methods[vss.MethodCommitSnapshots].Latency.IsZero() {
		return d.errf(commitNode, "commit.block", "methods.CommitSnapshots.latency is the same delay; set one of them")
	}
	return nil
}

// maxCrashPoints bounds a profile's crash points, as the daemon bounds a
// LUN's.
const maxCrashPoints = 100000

// cache accepts a mode alone ("cache: write-back") or a mapping of mode,
// size and crash-points.
func (d *profileDecoder) cache(n *yaml.Node, path string, c *CacheBehavior) error {
	mode := func(v *yaml.Node, path string) error {
		var s string
		if err := d.str(v, path, &s); err != nil {
			return err
		}
		m, err := lun.ParseCacheMode(s)
		if err != nil {
			return d.errf(v, path, "unknown cache mode %q; want %s", s, lun.CacheModeChoices)
		}
		c.Mode = m
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return mode(n, path)
	}
	hasMode := false
	err := d.fields(n, path, map[string]func(*yaml.Node, string) error{
		"mode": func(v *yaml.Node, path string) error { hasMode = true; return mode(v, path) },
		"size": func(v *yaml.Node, path string) error {
			if err := d.bytes(v, path, &c.Size); err != nil {
				return err
			}
			if c.Size <= 0 {
				return d.errf(v, path, "a cache holds 1 byte or more; leave size out for %d MiB", lun.DefaultCacheSize>>20)
			}
			return nil
		},
		"crash-points": func(v *yaml.Node, path string) error {
			var n uint64
			if err := d.uint(v, path, &n); err != nil {
				return err
			}
			if n > maxCrashPoints {
				return d.errf(v, path, "%d crash points: want 0 to %d", n, maxCrashPoints)
			}
			c.CrashPoints = int(n)
			return nil
		},
	})
	switch {
	case err != nil:
		return err
	case !hasMode:
		return d.errf(n, path, "a cache needs a mode")
	case c.Mode == lun.CacheNone && (c.Size > 0 || c.CrashPoints > 0):
		return d.errf(n, path, "size and crash-points need a mode other than none")
	}
	return nil
}

func (d *profileDecoder) capabilities(c *Capabilities, n *yaml.Node, path string) error {
	return d.fields(n, path, map[string]func(*yaml.Node, string) error{
		"transportable": func(v *yaml.Node, path string) error { return d.bool(v, path, &c.Transportable) },
		"differential":  func(v *yaml.Node, path string) error { return d.bool(v, path, &c.Differential) },
		"plex":          func(v *yaml.Node, path string) error { return d.bool(v, path, &c.Plex) },
		"max-snapshots-per-lun": func(v *yaml.Node, path string) error {
			var n uint64
			if err := d.uint(v, path, &n); err != nil {
				return err
			}
			if n > math.MaxInt32 {
				return d.errf(v, path, "%d is too many", n)
			}
			c.MaxSnapshotsPerLUN = int(n)
			return nil
		},
		"capacity":         func(v *yaml.Node, path string) error { return d.bytes(v, path, &c.Capacity) },
		"snapshot-reserve": func(v *yaml.Node, path string) error { return d.bytes(v, path, &c.SnapshotReserve) },
		"provider-capabilities": func(v *yaml.Node, path string) error {
			return d.providerCapabilities(v, path, &c.ProviderCapabilities)
		},
	})
}

func (d *profileDecoder) methods(p *Profile, n *yaml.Node, path string) error {
	if err := d.check(n, path, yaml.MappingNode, "a mapping of method names"); err != nil {
		return err
	}
	if p.Methods == nil {
		p.Methods = map[vss.ProviderMethod]MethodBehavior{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := d.check(k, path, yaml.ScalarNode, "a method name"); err != nil {
			return err
		}
		m, err := vss.ParseProviderMethod(k.Value)
		if err != nil {
			names := make([]string, 0, 20)
			for _, m := range vss.ProviderMethods() {
				names = append(names, m.String())
			}
			return d.errf(k, path, "unknown method %q (methods: %s)", k.Value, strings.Join(names, ", "))
		}
		if _, dup := p.Methods[m]; dup {
			return d.errf(k, path, "method %v given twice", m)
		}
		var b MethodBehavior
		mpath := join(path, k.Value)
		err = d.fields(v, mpath, map[string]func(*yaml.Node, string) error{
			"latency": func(v *yaml.Node, path string) error { return d.latency(v, path, &b.Latency) },
			"failure": func(v *yaml.Node, path string) error { return d.failures(v, path, &b.Failures) },
		})
		if err != nil {
			return err
		}
		p.Methods[m] = b
	}
	return nil
}

// latency accepts a duration ("5ms", a fixed delay) or a mapping with one
// of fixed, uniform {min, max}, normal {mean, stddev}, exponential {mean}.
func (d *profileDecoder) latency(n *yaml.Node, path string, l *Latency) error {
	if n.Kind == yaml.ScalarNode {
		var v time.Duration
		if err := d.duration(n, path, &v); err != nil {
			return err
		}
		*l = Fixed(v)
		return nil
	}
	if err := d.check(n, path, yaml.MappingNode, "a duration or one of fixed, uniform, normal, exponential"); err != nil {
		return err
	}
	set := 0
	one := func(v *yaml.Node, path string, decode func() error) error {
		if set++; set > 1 {
			return d.errf(v, path, "a latency has one distribution")
		}
		return decode()
	}
	err := d.fields(n, path, map[string]func(*yaml.Node, string) error{
		"fixed": func(v *yaml.Node, path string) error {
			return one(v, path, func() error {
				var x time.Duration
				err := d.duration(v, path, &x)
				*l = Fixed(x)
				return err
			})
		},
		"uniform": func(v *yaml.Node, path string) error {
			return one(v, path, func() error {
				*l = Latency{Kind: LatencyUniform}
				err := d.fields(v, path, map[string]func(*yaml.Node, string) error{
					"min": func(v *yaml.Node, path string) error { return d.duration(v, path, &l.Min) },
					"max": func(v *yaml.Node, path string) error { return d.duration(v, path, &l.Max) },
				})
				if err == nil && l.Max < l.Min {
					err = d.errf(v, path, "max %v is below min %v", l.Max, l.Min)
				}
				return err
			})
		},
		"normal": func(v *yaml.Node, path string) error {
			return one(v, path, func() error {
				*l = Latency{Kind: LatencyNormal}
				return d.fields(v, path, map[string]func(*yaml.Node, string) error{
					"mean":   func(v *yaml.Node, path string) error { return d.duration(v, path, &l.Mean) },
					"stddev": func(v *yaml.Node, path string) error { return d.duration(v, path, &l.StdDev) },
				})
			})
		},
		"exponential": func(v *yaml.Node, path string) error {
			return one(v, path, func() error {
				*l = Latency{Kind: LatencyExponential}
				return d.fields(v, path, map[string]func(*yaml.Node, string) error{
					"mean": func(v *yaml.Node, path string) error { return d.duration(v, path, &l.Mean) },
				})
			})
		},
	})
	if err == nil && set == 0 {
		return d.errf(n, path, "a latency needs one of fixed, uniform, normal, exponential")
	}
	return err
}

// untilReleased is the block that waits for ArrayProvider.ReleaseCommit.
const untilReleased = "until-released"

// block accepts "until-released" or a latency.
func (d *profileDecoder) block(n *yaml.Node, path string, c *CommitBehavior) error {
	if n.Kind == yaml.ScalarNode && n.Value == untilReleased {
		c.UntilReleased = true
		return nil
	}
	return d.latency(n, path, &c.Block)
}

// failures accepts one failure mapping or a list of them; the first that
// fires on a call wins.
func (d *profileDecoder) failures(n *yaml.Node, path string, fs *[]Failure) error {
	if n.Kind != yaml.SequenceNode {
		var f Failure
		if err := d.failure(n, path, &f); err != nil {
			return err
		}
		*fs = append(*fs, f)
		return nil
	}
	if len(n.Content) == 0 {
		return d.errf(n, path, "empty list of failures")
	}
	for i, v := range n.Content {
		var f Failure
		if err := d.failure(v, fmt.Sprintf("%s[%d]", path, i), &f); err != nil {
			return err
		}
		*fs = append(*fs, f)
	}
	return nil
}

// failure accepts {hresult, always: true | nth: N | probability: P, seed}.
func (d *profileDecoder) failure(n *yaml.Node, path string, f *Failure) error {
	var hasCode, hasSeed bool
	triggers := 0
	trigger := func(t Trigger) { triggers++; f.Trigger = t }
	err := d.fields(n, path, map[string]func(*yaml.Node, string) error{
		"hresult": func(v *yaml.Node, path string) error {
			hasCode = true
			if err := d.check(v, path, yaml.ScalarNode, "an HRESULT name or 0x value"); err != nil {
				return err
			}
			hr, err := vss.ParseHRESULT(v.Value)
			if err != nil {
				return d.errf(v, path, "unknown HRESULT %q (a name such as VSS_E_PROVIDER_VETO, or a value such as 0x80042306)", v.Value)
			}
			if !hr.Failed() {
				return d.errf(v, path, "%v is a success code; success codes never travel as errors", hr.Name())
			}
			f.Code = hr
			return nil
		},
		"always": func(v *yaml.Node, path string) error {
			var b bool
			if err := d.bool(v, path, &b); err != nil {
				return err
			}
			if !b {
				return d.errf(v, path, "always: false never fires; remove the failure instead")
			}
			trigger(TriggerAlways)
			return nil
		},
		"nth": func(v *yaml.Node, path string) error {
			var u uint64
			if err := d.uint(v, path, &u); err != nil {
				return err
			}
			if u < 1 || u > math.MaxInt64 {
				return d.errf(v, path, "nth counts calls from 1")
			}
			f.Nth = int64(u)
			trigger(TriggerNth)
			return nil
		},
		"probability": func(v *yaml.Node, path string) error {
			if err := d.check(v, path, yaml.ScalarNode, "a probability in [0, 1]"); err != nil {
				return err
			}
			p, err := strconv.ParseFloat(v.Value, 64)
			if err != nil || !(p >= 0 && p <= 1) {
				return d.errf(v, path, "probability must be a number in [0, 1], have %q", v.Value)
			}
			f.Probability = p
			trigger(TriggerProbability)
			return nil
		},
		"seed": func(v *yaml.Node, path string) error { hasSeed = true; return d.uint(v, path, &f.Seed) },
	})
	switch {
	case err != nil:
		return err
	case !hasCode:
		return d.errf(n, path, "a failure needs hresult")
	case triggers != 1:
		return d.errf(n, path, "a failure needs exactly one of always, nth, probability")
	case hasSeed && f.Trigger != TriggerProbability:
		return d.errf(n, path, "seed applies to probability failures only")
	}
	return nil
}

func (d *profileDecoder) str(n *yaml.Node, path string, s *string) error {
	if err := d.check(n, path, yaml.ScalarNode, "a string"); err != nil {
		return err
	}
	*s = n.Value
	return nil
}

func (d *profileDecoder) bool(n *yaml.Node, path string, b *bool) error {
	if err := d.check(n, path, yaml.ScalarNode, "true or false"); err != nil {
		return err
	}
	if n.ShortTag() != "!!bool" {
		return d.errf(n, path, "expected true or false, found %q", n.Value)
	}
	if err := n.Decode(b); err != nil {
		return d.errf(n, path, "expected true or false, found %q", n.Value)
	}
	return nil
}

func (d *profileDecoder) uint(n *yaml.Node, path string, u *uint64) error {
	if err := d.check(n, path, yaml.ScalarNode, "a whole number"); err != nil {
		return err
	}
	v, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || n.ShortTag() != "!!int" {
		return d.errf(n, path, "expected a whole number of 0 or more, found %q", n.Value)
	}
	*u = v
	return nil
}

// duration accepts Go duration strings: "5ms", "9.9s", "1m30s".
func (d *profileDecoder) duration(n *yaml.Node, path string, out *time.Duration) error {
	if err := d.check(n, path, yaml.ScalarNode, "a duration such as 5ms"); err != nil {
		return err
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil && n.ShortTag() != "!!str":
		return d.errf(n, path, "duration %q has no unit; write it as a Go duration such as 5ms or 9.9s", n.Value)
	case err != nil:
		return d.errf(n, path, "bad duration %q; write a Go duration such as 5ms or 9.9s", n.Value)
	case v < 0:
		return d.errf(n, path, "negative duration %q", n.Value)
	}
	*out = v
	return nil
}

// bytes accepts a number of bytes or a size with a unit: "8GiB", "500 MB".
func (d *profileDecoder) bytes(n *yaml.Node, path string, out *int64) error {
	if err := d.check(n, path, yaml.ScalarNode, "a size such as 8GiB"); err != nil {
		return err
	}
	v, err := units.ParseBytes(n.Value)
	if err != nil {
		return d.errf(n, path, "bad size %q; write bytes or a size such as 8GiB (K, M, G are powers of 1024)", n.Value)
	}
	*out = v
	return nil
}

// providerCapabilities accepts "COMPLIANT|LUN_RESYNC" or a list of names.
func (d *profileDecoder) providerCapabilities(n *yaml.Node, path string, out *vss.ProviderCapability) error {
	var names []*yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		names = []*yaml.Node{n}
	case yaml.SequenceNode:
		names = n.Content
	default:
		return d.check(n, path, yaml.SequenceNode, "a list of VSS_PRV_CAPABILITY names")
	}
	var mask vss.ProviderCapability
	for _, v := range names {
		if err := d.check(v, path, yaml.ScalarNode, "a VSS_PRV_CAPABILITY name"); err != nil {
			return err
		}
		c, err := vss.ParseProviderCapability(v.Value)
		if err != nil {
			return d.errf(v, path, "unknown provider capability %q", v.Value)
		}
		mask |= c
	}
	*out = mask
	return nil
}
