package scenarios

import (
	"encoding/hex"
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

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/units"
	"github.com/shadowbench/shadowbench/vss"
)

// Load reads and checks the scenario file at path. Errors name the file as
// given, the line and what is wrong (*Error).
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and checks one scenario. file is the name errors carry and
// the base that profile-file paths are relative to; without its directory
// and extension it is the scenario's name when the file gives none.
// Unknown keys, aliases, a second document and references to things the
// scenario does not declare are errors. It never panics: a panic of the
// YAML library comes back as an error.
func Parse(file string, data []byte) (sc *Scenario, err error) {
	defer func() {
		if r := recover(); r != nil {
			sc, err = nil, &Error{File: file, Err: fmt.Errorf("YAML decoder failed: %v", r)}
		}
	}()
	doc, err := provider.DecodeOneDocument(data, "scenario")
	if de := (*provider.DocumentError)(nil); errors.As(err, &de) {
		return nil, &Error{File: file, Line: de.Line, Err: errors.New(de.Msg)}
	} else if err != nil {
		return nil, yamlError(file, err)
	}
	d := &decoder{file: file, saved: map[string]savedKind{}, asyncs: map[string]bool{}, marks: map[string]bool{}}
	sc = &Scenario{File: file, Summary: leadingComment(data)}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Line: 1, Err: errors.New("empty scenario")}
	}
	if err := d.scenario(sc, doc.Content[0]); err != nil {
		return nil, err
	}
	if sc.Name == "" {
		sc.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	return sc, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError turns a syntax error of the YAML library into an *Error,
// keeping the line it names.
func yamlError(file string, err error) error {
	e := &Error{File: file, Err: err}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Err = errors.New(strings.TrimPrefix(strings.TrimPrefix(yamlLine.ReplaceAllString(err.Error(), ""), "yaml: "), ": "))
	}
	return e
}

// leadingComment returns the comment lines a file starts with, without
// their "#", joined with newlines.
func leadingComment(data []byte) string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, "#") {
			if t == "" && len(out) == 0 {
				continue
			}
			break
		}
		out = append(out, strings.TrimSpace(strings.TrimPrefix(t, "#")))
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

// savedKind says what a name given to save holds.
type savedKind uint8

const (
	savedSet savedKind = iota + 1
	savedSnapshot
	savedDocument
	savedExport
)

// decoder walks a scenario's node tree key by key, so that every error
// names the line of the offending value. Decoding into tagged structs was
// rejected for the reasons the firmware profile decoder gives: yaml.Node
// has no strict mode, and errors would name Go fields, not keys.
type decoder struct {
	file string
	sc   *Scenario
	// What the steps declared so far, to check references in order.
	saved      map[string]savedKind
	asyncs     map[string]bool
	marks      map[string]bool // store-bytes marks
	requesters []string
}

type handlers = map[string]func(v *yaml.Node, path string) error

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) error {
	return &Error{File: d.file, Line: n.Line, Column: n.Column, Path: path, Err: fmt.Errorf(format, args...)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// check refuses aliases, which let a small file expand into a huge tree,
// and nodes of the wrong kind.
func (d *decoder) check(n *yaml.Node, path string, kind yaml.Kind, what string) error {
	if n.Kind == yaml.AliasNode {
		return d.errf(n, path, "aliases are not supported in scenarios")
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
		if n.Tag == "!!null" {
			return "nothing"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("%q", v)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// fields walks a mapping, calling the handler of each key. Unknown and
// repeated keys are errors at the key's line; so are required keys left
// out, at the mapping's.
func (d *decoder) fields(n *yaml.Node, path string, h handlers, required ...string) error {
	if err := d.check(n, path, yaml.MappingNode, "a mapping"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := d.check(k, path, yaml.ScalarNode, "a key"); err != nil {
			return err
		}
		fn, ok := h[k.Value]
		if !ok {
			return d.errf(k, path, "unknown key %q (known keys: %s)", k.Value, strings.Join(sortedKeys(h), ", "))
		}
		if seen[k.Value] {
			return d.errf(k, path, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		if err := fn(v, join(path, k.Value)); err != nil {
			return err
		}
	}
	for _, r := range required {
		if !seen[r] {
			return d.errf(n, path, "%q is missing", r)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (d *decoder) list(n *yaml.Node, path string, fn func(i int, v *yaml.Node, path string) error) error {
	if err := d.check(n, path, yaml.SequenceNode, "a list"); err != nil {
		return err
	}
	for i, v := range n.Content {
		if err := fn(i, v, index(path, i)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) scalar(n *yaml.Node, path string) (string, error) {
	if err := d.check(n, path, yaml.ScalarNode, "a value"); err != nil {
		return "", err
	}
	if n.Tag == "!!null" {
		return "", d.errf(n, path, "a value is missing")
	}
	return n.Value, nil
}

func (d *decoder) str(n *yaml.Node, path string, out *string) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	*out = s
	return nil
}

// name reads a name of a LUN, provider, writer or requester: what trace
// lines and references carry.
func (d *decoder) name(n *yaml.Node, path string, out *string) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	if !validName(s) {
		return d.errf(n, path, "%q: a name is 1-64 characters of A-Z a-z 0-9 . _ - (and : for volumes)", s)
	}
	*out = s
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return false
		}
	}
	return true
}

// volumeName is a name that may also carry a colon, "D:".
func (d *decoder) volumeName(n *yaml.Node, path string, out *string) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	if !validName(strings.ReplaceAll(s, ":", "_")) {
		return d.errf(n, path, "%q: a volume name is 1-64 characters of A-Z a-z 0-9 . _ - :", s)
	}
	*out = s
	return nil
}

func (d *decoder) boolean(n *yaml.Node, path string, out *bool) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	switch s {
	case "true":
		*out = true
	case "false":
		*out = false
	default:
		return d.errf(n, path, "%q: want true or false", s)
	}
	return nil
}

func (d *decoder) integer(n *yaml.Node, path string, lo, hi int, out *int) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return d.errf(n, path, "%q: want a whole number from %d to %d", s, lo, hi)
	}
	*out = v
	return nil
}

func (d *decoder) float(n *yaml.Node, path string, lo, hi float64, out *float64) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v < lo || v > hi {
		return d.errf(n, path, "%q: want a number from %g to %g", s, lo, hi)
	}
	*out = v
	return nil
}

// maxDuration bounds every duration of a file: a day of scenario time.
const maxDuration = 24 * time.Hour

func (d *decoder) duration(n *yaml.Node, path string, out *time.Duration) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 || v > maxDuration {
		return d.errf(n, path, "%q: want a duration from 0 to 24h, like 10s or 9.9s", s)
	}
	*out = v
	return nil
}

// maxSize bounds LUN sizes and load regions: the LUNs are in memory, but
// thin, so a large size costs nothing until written.
const maxSize = 1 << 40

func (d *decoder) size(n *yaml.Node, path string, out *int64) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	v, err := units.ParseBytes(s)
	if err != nil || v == 0 || v > maxSize {
		return d.errf(n, path, "%q: want a size from 1 byte to 1TiB, like 64MiB", s)
	}
	*out = int64(v)
	return nil
}

func (d *decoder) hresult(n *yaml.Node, path string, out *vss.HRESULT) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	hr, err := vss.ParseHRESULT(s)
	if err != nil {
		return d.errf(n, path, "%q is not an HRESULT name or 0x value", s)
	}
	*out = hr
	return nil
}

func (d *decoder) names(n *yaml.Node, path string, one func(*yaml.Node, string, *string) error, out *[]string) error {
	return d.list(n, path, func(i int, v *yaml.Node, path string) error {
		var s string
		if err := one(v, path, &s); err != nil {
			return err
		}
		if slices.Contains(*out, s) {
			return d.errf(v, path, "%q given twice", s)
		}
		*out = append(*out, s)
		return nil
	})
}

// ---- the scenario ----

func (d *decoder) scenario(sc *Scenario, n *yaml.Node) error {
	d.sc = sc
	var stepsNode, expectNode, providersNode, writersNode, loadNode *yaml.Node
	err := d.fields(n, "", handlers{
		"name":        func(v *yaml.Node, p string) error { return d.name(v, p, &sc.Name) },
		"description": func(v *yaml.Node, p string) error { return d.str(v, p, &sc.Description) },
		"known-failure": func(v *yaml.Node, p string) error {
			if err := d.str(v, p, &sc.KnownFailure); err != nil {
				return err
			}
			if strings.TrimSpace(sc.KnownFailure) == "" {
				return d.errf(v, p, "say why the scenario is expected to fail")
			}
			return nil
		},
		"min-time-scale": func(v *yaml.Node, p string) error { return d.float(v, p, 1e-6, 1, &sc.MinTimeScale) },
		"timeout":        func(v *yaml.Node, p string) error { return d.duration(v, p, &sc.timeout) },
		"needs": func(v *yaml.Node, p string) error {
			return d.names(v, p, func(v *yaml.Node, p string, out *string) error {
				if err := d.str(v, p, out); err != nil {
					return err
				}
				if strings.ContainsAny(*out, "/ \t") {
					return d.errf(v, p, "%q: a program's name, found in PATH", *out)
				}
				return nil
			}, &sc.needs)
		},
		"service":   func(v *yaml.Node, p string) error { return d.service(&sc.service, v, p) },
		"array":     func(v *yaml.Node, p string) error { return d.arrayNode(&sc.array, v, p) },
		"providers": func(v *yaml.Node, p string) error { providersNode = v; return nil },
		"writers":   func(v *yaml.Node, p string) error { writersNode = v; return nil },
		"load":      func(v *yaml.Node, p string) error { loadNode = v; return nil },
		"steps":     func(v *yaml.Node, p string) error { stepsNode = v; return nil },
		"expect":    func(v *yaml.Node, p string) error { expectNode = v; return nil },
	}, "array", "steps")
	if err != nil {
		return err
	}
	// The array comes first: providers, writers, loads and steps refer to
	// its LUNs and volumes, whatever order the file gives the keys in.
	if providersNode != nil {
		if err := d.list(providersNode, "providers", d.provider); err != nil {
			return err
		}
	}
	if len(sc.providers) == 0 {
		return d.errf(n, "providers", "a scenario needs at least one provider")
	}
	d.firmwareCaches()
	if writersNode != nil {
		if err := d.list(writersNode, "writers", d.writer); err != nil {
			return err
		}
	}
	if loadNode != nil {
		if err := d.list(loadNode, "load", d.load); err != nil {
			return err
		}
	}
	if err := d.list(stepsNode, "steps", func(i int, v *yaml.Node, p string) error {
		ss, err := d.steps(v, p, false)
		sc.steps = append(sc.steps, ss...)
		return err
	}); err != nil {
		return err
	}
	if len(sc.steps) == 0 {
		return d.errf(stepsNode, "steps", "a scenario needs at least one step")
	}
	if expectNode != nil {
		return d.expect(&sc.expect, expectNode, "expect")
	}
	return nil
}

func (d *decoder) service(s *serviceSpec, n *yaml.Node, path string) error {
	pos := func(out *time.Duration) func(*yaml.Node, string) error {
		return func(v *yaml.Node, p string) error {
			if err := d.duration(v, p, out); err != nil {
				return err
			}
			if *out == 0 {
				return d.errf(v, p, "a window must be longer than 0")
			}
			return nil
		}
	}
	return d.fields(n, path, handlers{
		"hold-window":      pos(&s.hold),
		"freeze-window":    pos(&s.freeze),
		"prepare-window":   pos(&s.prepare),
		"event-window":     pos(&s.event),
		"provider-timeout": pos(&s.providerTimeout),
	})
}

// ---- the array ----

func (d *decoder) arrayNode(a *arraySpec, n *yaml.Node, path string) error {
	var volumesNode *yaml.Node
	err := d.fields(n, path, handlers{
		"max-snapshots": func(v *yaml.Node, p string) error { return d.integer(v, p, 1, 1<<20, &a.maxSnapshots) },
		"capacity":      func(v *yaml.Node, p string) error { return d.size(v, p, &a.capacity) },
		"luns": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(i int, v *yaml.Node, p string) error { return d.lun(a, v, p) })
		},
		"volumes": func(v *yaml.Node, p string) error { volumesNode = v; return nil },
	}, "luns")
	if err != nil {
		return err
	}
	if len(a.luns) == 0 {
		return d.errf(n, join(path, "luns"), "an array needs at least one LUN")
	}
	if volumesNode != nil {
		return d.list(volumesNode, join(path, "volumes"), func(i int, v *yaml.Node, p string) error { return d.volume(a, v, p) })
	}
	return nil
}

func (d *decoder) hasLUN(name string) bool {
	return slices.ContainsFunc(d.sc.array.luns, func(l lunSpec) bool { return l.name == name })
}

// lunRef reads the name of a LUN of the array into dst; lack, when not
// nil, says what that LUN lacks for the use at hand ("" for nothing).
func (d *decoder) lunRef(v *yaml.Node, p string, dst *string, lack func(lunSpec) string) error {
	if err := d.name(v, p, dst); err != nil {
		return err
	}
	for _, l := range d.sc.array.luns {
		if l.name == *dst {
			if lack != nil {
				if why := lack(l); why != "" {
					return d.errf(v, p, "%s", why)
				}
			}
			return nil
		}
	}
	return d.errf(v, p, "no LUN %q in the array", *dst)
}

func (d *decoder) hasVolume(name string) bool {
	return d.hasLUN(name) || slices.ContainsFunc(d.sc.array.volumes, func(v volumeSpec) bool { return v.name == name })
}

// lun decodes one LUN, or count LUNs whose name carries {i}.
func (d *decoder) lun(a *arraySpec, n *yaml.Node, path string) error {
	count := 1
	if v := mapValue(n, "count"); v != nil {
		if err := d.integer(v, join(path, "count"), 1, 256, &count); err != nil {
			return err
		}
	}
	for i := 1; i <= count; i++ {
		node := n
		if mapValue(n, "count") != nil {
			node = substitute(n, i)
		}
		l := lunSpec{line: n.Line, opts: lun.Options{BlockSize: 512}}
		var idNode *yaml.Node
		err := d.fields(node, path, handlers{
			"name":       func(v *yaml.Node, p string) error { return d.name(v, p, &l.name) },
			"size":       func(v *yaml.Node, p string) error { return d.size(v, p, &l.opts.Size) },
			"block-size": func(v *yaml.Node, p string) error { return d.blockSize(v, p, &l.opts.BlockSize) },
			"read-only":  func(v *yaml.Node, p string) error { return d.boolean(v, p, &l.opts.ReadOnly) },
			"thin":       func(v *yaml.Node, p string) error { return d.boolean(v, p, &l.opts.Thin) },
			"cache": func(v *yaml.Node, p string) error {
				str, err := d.scalar(v, p)
				if err != nil {
					return err
				}
				if l.opts.Cache, err = lun.ParseCacheMode(str); err != nil {
					return d.errf(v, p, "%q: want %s", str, lun.CacheModeChoices)
				}
				l.cacheSet = true
				return nil
			},
			"identity": func(v *yaml.Node, p string) error { idNode = v; return nil },
			"count":    func(v *yaml.Node, p string) error { return nil },
			"filesystem": func(v *yaml.Node, p string) error {
				s, err := d.scalar(v, p)
				if err != nil {
					return err
				}
				if s != "ext4" {
					return d.errf(v, p, "%q: the runner makes ext4 file systems", s)
				}
				l.filesystem = &fsSpec{typ: s}
				return nil
			},
			"faults": func(v *yaml.Node, p string) error {
				return d.list(v, p, func(i int, v *yaml.Node, p string) error {
					f, err := d.fault(v, p)
					l.faults = append(l.faults, f)
					return err
				})
			},
		}, "name", "size")
		if err != nil {
			return err
		}
		if count > 1 && !strings.Contains(mapValue(n, "name").Value, "{i}") {
			return d.errf(n, join(path, "name"), "with count, the name carries {i}, the LUN's number from 1")
		}
		if d.hasLUN(l.name) {
			return d.errf(node, join(path, "name"), "LUN %q declared twice", l.name)
		}
		if l.filesystem != nil && l.opts.Size < minFilesystem {
			return d.errf(node, join(path, "size"), "an ext4 file system needs a LUN of %d MiB at least", minFilesystem>>20)
		}
		if l.opts.Size%int64(l.opts.BlockSize) != 0 {
			return d.errf(node, join(path, "size"), "%d bytes is not a multiple of the %d-byte block size", l.opts.Size, l.opts.BlockSize)
		}
		if idNode != nil {
			id, err := d.identity(idNode, join(path, "identity"))
			if err != nil {
				return err
			}
			for _, o := range a.luns {
				if o.identity != nil && o.identity.NAA == id.NAA && id.NAA != [16]byte{} {
					return d.errf(idNode, join(path, "identity.naa"), "LUN %q has the same page-83 identifier", o.name)
				}
			}
			l.identity = id
		}
		a.luns = append(a.luns, l)
	}
	return nil
}

// minFilesystem is the smallest LUN the runner makes a file system on.
const minFilesystem = 8 << 20

// fault decodes one injected LUN fault.
func (d *decoder) fault(n *yaml.Node, path string) (faultSpec, error) {
	f := faultSpec{seed: 1}
	var errName string
	err := d.fields(n, path, handlers{
		"op": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			op, ok := lun.ParseOp(s)
			if !ok {
				return d.errf(v, p, "%q: want read, write, flush, trim, zero or extents", s)
			}
			f.op = op
			return nil
		},
		"delay": func(v *yaml.Node, p string) error { return d.duration(v, p, &f.delay) },
		"error": func(v *yaml.Node, p string) error {
			if err := d.str(v, p, &errName); err != nil {
				return err
			}
			switch errName {
			case "EIO":
				f.err = lun.EIO
			case "ENOSPC":
				f.err = lun.ENOSPC
			default:
				return d.errf(v, p, "%q: want EIO or ENOSPC", errName)
			}
			return nil
		},
		"nth":         func(v *yaml.Node, p string) error { return d.integer(v, p, 1, math.MaxInt32, &f.nth) },
		"probability": func(v *yaml.Node, p string) error { return d.float(v, p, 0, 1, &f.probability) },
		"seed": func(v *yaml.Node, p string) error {
			var s int
			err := d.integer(v, p, 0, math.MaxInt32, &s)
			f.seed = uint64(s)
			return err
		},
	}, "op")
	switch {
	case err != nil:
	case f.delay == 0 && f.err == nil:
		err = d.errf(n, path, "a fault needs a delay, an error or both")
	case f.nth != 0 && f.probability != 0:
		err = d.errf(n, path, "give nth or probability, not both")
	}
	return f, err
}

func (d *decoder) blockSize(n *yaml.Node, path string, out *int) error {
	var v int64
	if err := d.size(n, path, &v); err != nil {
		return err
	}
	if v != 512 && v != 4096 {
		return d.errf(n, path, "%d: want 512 or 4096", v)
	}
	*out = int(v)
	return nil
}

// identity decodes identity overrides; what is left out is generated.
func (d *decoder) identity(n *yaml.Node, path string) (*lun.Identity, error) {
	id := lun.NewIdentity(lun.ProductLUN)
	limit := func(out *string, max int) func(*yaml.Node, string) error {
		return func(v *yaml.Node, p string) error {
			if err := d.str(v, p, out); err != nil {
				return err
			}
			if len(*out) > max {
				return d.errf(v, p, "%q is longer than %d characters", *out, max)
			}
			return nil
		}
	}
	err := d.fields(n, path, handlers{
		"vendor":   limit(&id.Vendor, 8),
		"product":  limit(&id.Product, 16),
		"revision": limit(&id.Revision, 4),
		"serial":   limit(&id.Serial, 64),
		"naa": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(s), "naa."))
			if err != nil || len(b) != 16 || b[0]>>4 != 6 {
				return d.errf(v, p, "%q: want an NAA type 6 designator, 32 hex digits starting with 6", s)
			}
			copy(id.NAA[:], b)
			return nil
		},
	})
	return &id, err
}

func (d *decoder) volume(a *arraySpec, n *yaml.Node, path string) error {
	v := volumeSpec{line: n.Line}
	err := d.fields(n, path, handlers{
		"name": func(x *yaml.Node, p string) error { return d.volumeName(x, p, &v.name) },
		"luns": func(x *yaml.Node, p string) error {
			if err := d.names(x, p, d.name, &v.luns); err != nil {
				return err
			}
			for i, l := range v.luns {
				if !d.hasLUN(l) {
					return d.errf(x.Content[i], index(p, i), "no LUN %q in the array", l)
				}
			}
			if len(v.luns) == 0 {
				return d.errf(x, p, "a volume spans at least one LUN")
			}
			return nil
		},
	}, "name", "luns")
	if err != nil {
		return err
	}
	if d.hasVolume(v.name) {
		return d.errf(n, join(path, "name"), "%q is a LUN or volume already (a LUN is a volume of itself)", v.name)
	}
	a.volumes = append(a.volumes, v)
	return nil
}

// mapValue returns the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// substitute returns a deep copy of n with "{i}" replaced by i in every
// scalar, for count and repeat. Lines are kept, so errors point at the
// template.
func substitute(n *yaml.Node, i int) *yaml.Node {
	c := *n
	c.Value = strings.ReplaceAll(n.Value, "{i}", strconv.Itoa(i))
	c.Content = make([]*yaml.Node, len(n.Content))
	for j, k := range n.Content {
		c.Content[j] = substitute(k, i)
	}
	return &c
}

// ---- providers ----

func (d *decoder) provider(i int, n *yaml.Node, path string) error {
	ps := providerSpec{line: n.Line, typ: vss.VSS_PROV_HARDWARE}
	var profileNode, fileNode *yaml.Node
	err := d.fields(n, path, handlers{
		"name": func(v *yaml.Node, p string) error { return d.name(v, p, &ps.name) },
		"type": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			switch strings.ToLower(s) {
			case "hardware":
				ps.typ = vss.VSS_PROV_HARDWARE
			case "software":
				ps.typ = vss.VSS_PROV_SOFTWARE
			default:
				return d.errf(v, p, "%q: want hardware or software", s)
			}
			return nil
		},
		"priority": func(v *yaml.Node, p string) error { return d.integer(v, p, -1000, 1000, &ps.priority) },
		"luns": func(v *yaml.Node, p string) error {
			ps.luns = []string{}
			if err := d.names(v, p, d.name, &ps.luns); err != nil {
				return err
			}
			for j, l := range ps.luns {
				if !d.hasLUN(l) {
					return d.errf(v.Content[j], index(p, j), "no LUN %q in the array", l)
				}
			}
			return nil
		},
		"profile":      func(v *yaml.Node, p string) error { profileNode = v; return nil },
		"profile-file": func(v *yaml.Node, p string) error { fileNode = v; return nil },
	}, "name")
	if err != nil {
		return err
	}
	if slices.ContainsFunc(d.sc.providers, func(o providerSpec) bool { return o.name == ps.name }) {
		return d.errf(n, join(path, "name"), "provider %q declared twice", ps.name)
	}
	switch {
	case profileNode != nil && fileNode != nil:
		return d.errf(fileNode, join(path, "profile-file"), "give profile or profile-file, not both")
	case profileNode != nil:
		if profileNode.Kind == yaml.AliasNode {
			return d.errf(profileNode, join(path, "profile"), "aliases are not supported in scenarios")
		}
		p, err := provider.DecodeProfile(d.file, profileNode)
		if err != nil {
			return d.profileError(err, join(path, "profile"))
		}
		ps.profile = p
	case fileNode != nil:
		var rel string
		if err := d.str(fileNode, join(path, "profile-file"), &rel); err != nil {
			return err
		}
		file := rel
		if !filepath.IsAbs(rel) {
			file = filepath.Join(filepath.Dir(d.file), rel)
		}
		p, err := provider.LoadProfile(file)
		if err != nil {
			return d.errf(fileNode, join(path, "profile-file"), "%v", err)
		}
		ps.profile = p
	default:
		ps.profile = provider.DefaultProfile()
	}
	if ps.profile.Name == "" {
		ps.profile.Name = ps.name
	}
	d.sc.providers = append(d.sc.providers, ps)
	return nil
}

// firmwareCaches gives each LUN that sets no cache: key the write cache
// of the first provider (in the file's order) that presents it and whose
// profile sets one (provider.CacheBehavior).
func (d *decoder) firmwareCaches() {
	for i := range d.sc.array.luns {
		l := &d.sc.array.luns[i]
		if l.cacheSet {
			continue
		}
		for _, ps := range d.sc.providers {
			if ps.profile.Cache.Mode != lun.CacheNone && (ps.luns == nil || slices.Contains(ps.luns, l.name)) {
				l.opts = ps.profile.Cache.Options(l.opts)
				break
			}
		}
	}
}

// profileError re-anchors an error of an inline profile in the scenario:
// the line is already the scenario's; the key path gains the provider's.
func (d *decoder) profileError(err error, path string) error {
	var pe *provider.ProfileError
	if errors.As(err, &pe) {
		return &Error{File: d.file, Line: pe.Line, Column: pe.Column, Path: join(path, pe.Path), Err: pe.Err}
	}
	return &Error{File: d.file, Path: path, Err: err}
}

// ---- writers ----

func (d *decoder) writer(i int, n *yaml.Node, path string) error {
	ws := writerSpec{line: n.Line, level: vss.VSS_APP_FRONT_END, script: coordinator.Script{On: map[vss.WriterEvent]coordinator.Action{}}}
	var onNode *yaml.Node
	err := d.fields(n, path, handlers{
		"name": func(v *yaml.Node, p string) error { return d.name(v, p, &ws.name) },
		"level": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			l, err := vss.ParseApplicationLevel(s)
			if err != nil || l == vss.VSS_APP_UNKNOWN {
				return d.errf(v, p, "%q: want FRONT_END, BACK_END or SYSTEM", s)
			}
			ws.level = l
			return nil
		},
		"freeze-timeout": func(v *yaml.Node, p string) error {
			if err := d.duration(v, p, &ws.freezeTimeout); err != nil {
				return err
			}
			if ws.freezeTimeout == 0 {
				return d.errf(v, p, "a freeze timeout must be longer than 0")
			}
			return nil
		},
		"components": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(i int, v *yaml.Node, p string) error {
				var c coordinator.ComponentInfo
				err := d.fields(v, p, handlers{
					"name":         func(v *yaml.Node, p string) error { return d.name(v, p, &c.Name) },
					"logical-path": func(v *yaml.Node, p string) error { return d.str(v, p, &c.LogicalPath) },
					"volumes": func(x *yaml.Node, p string) error {
						if err := d.names(x, p, d.volumeName, &c.Volumes); err != nil {
							return err
						}
						for j, vol := range c.Volumes {
							if !d.hasVolume(vol) {
								return d.errf(x.Content[j], index(p, j), "no volume %q", vol)
							}
						}
						return nil
					},
				}, "name")
				ws.script.Components = append(ws.script.Components, c)
				return err
			})
		},
		"on": func(v *yaml.Node, p string) error { onNode = v; return nil },
		"exec": func(v *yaml.Node, p string) error {
			o, err := d.execWriter(v, p)
			ws.exec = o
			return err
		},
		"fsfreeze": func(v *yaml.Node, p string) error {
			f, err := d.fsfreezeWriter(v, p)
			ws.fsfreeze = f
			return err
		},
	}, "name")
	if err != nil {
		return err
	}
	kinds := 0
	for _, set := range []bool{onNode != nil, ws.exec != nil, ws.fsfreeze != nil} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		return d.errf(n, path, "a writer is scripted (on), exec or fsfreeze, one of them")
	}
	if slices.ContainsFunc(d.sc.writers, func(o writerSpec) bool { return o.name == ws.name }) {
		return d.errf(n, join(path, "name"), "writer %q declared twice", ws.name)
	}
	if len(ws.script.Components) == 0 {
		ws.script.Components = []coordinator.ComponentInfo{{Name: "data", LogicalPath: ws.name}}
	}
	if onNode != nil {
		if err := d.check(onNode, join(path, "on"), yaml.MappingNode, "a mapping of writer events"); err != nil {
			return err
		}
		for j := 0; j+1 < len(onNode.Content); j += 2 {
			k, v := onNode.Content[j], onNode.Content[j+1]
			p := join(path, "on")
			if err := d.check(k, p, yaml.ScalarNode, "an event name"); err != nil {
				return err
			}
			ev, err := vss.ParseWriterEvent(k.Value)
			if err != nil {
				var names []string
				for _, e := range vss.WriterEvents() {
					names = append(names, e.String())
				}
				return d.errf(k, p, "unknown event %q (events: %s)", k.Value, strings.Join(names, ", "))
			}
			if _, dup := ws.script.On[ev]; dup {
				return d.errf(k, p, "event %v given twice", ev)
			}
			a, err := d.action(v, join(p, k.Value))
			if err != nil {
				return err
			}
			ws.script.On[ev] = a
			if err := (coordinator.Script{On: map[vss.WriterEvent]coordinator.Action{ev: a}}).Validate(); err != nil {
				return d.errf(v, join(p, k.Value), "%v", strings.TrimPrefix(err.Error(), coordinator.ErrInvalidScript.Error()+": "))
			}
		}
	}
	if err := ws.script.Validate(); err != nil {
		return d.errf(n, path, "%v", err)
	}
	if ws.exec != nil {
		ws.exec.Components = ws.script.Components
		if _, err := coordinator.NewExecWriter(*ws.exec); err != nil {
			return d.errf(n, join(path, "exec"), "%v", strings.TrimPrefix(err.Error(), coordinator.ErrInvalidExecOptions.Error()+": "))
		}
	}
	d.sc.writers = append(d.sc.writers, ws)
	return nil
}

// execWriter decodes an exec writer as the daemon's configuration writes
// it: command (the event's name appended), commands per event, timeout,
// dir (relative to the scenario file) and env.
func (d *decoder) execWriter(n *yaml.Node, path string) (*coordinator.ExecOptions, error) {
	o := &coordinator.ExecOptions{}
	argv := func(v *yaml.Node, p string, out *[]string) error {
		return d.list(v, p, func(i int, v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			*out = append(*out, s)
			return err
		})
	}
	err := d.fields(n, path, handlers{
		"command": func(v *yaml.Node, p string) error { return argv(v, p, &o.Command) },
		"commands": func(v *yaml.Node, p string) error {
			if err := d.check(v, p, yaml.MappingNode, "a mapping of writer events to commands"); err != nil {
				return err
			}
			o.Commands = map[vss.WriterEvent][]string{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, c := v.Content[i], v.Content[i+1]
				ev, err := vss.ParseWriterEvent(k.Value)
				if err != nil {
					return d.errf(k, p, "unknown event %q", k.Value)
				}
				if _, dup := o.Commands[ev]; dup {
					return d.errf(k, p, "event %v given twice", ev)
				}
				var cmd []string
				if err := argv(c, join(p, k.Value), &cmd); err != nil {
					return err
				}
				o.Commands[ev] = cmd
			}
			return nil
		},
		"timeout": func(v *yaml.Node, p string) error { return d.duration(v, p, &o.Timeout) },
		"dir": func(v *yaml.Node, p string) error {
			if err := d.str(v, p, &o.Dir); err != nil {
				return err
			}
			if !filepath.IsAbs(o.Dir) {
				o.Dir = filepath.Join(filepath.Dir(d.file), o.Dir)
			}
			return nil
		},
		"env": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(i int, v *yaml.Node, p string) error {
				s, err := d.scalar(v, p)
				if err == nil && !strings.Contains(s, "=") {
					return d.errf(v, p, "%q: want NAME=VALUE", s)
				}
				o.Env = append(o.Env, s)
				return err
			})
		},
	})
	if err == nil && len(o.Command) == 0 && len(o.Commands) == 0 {
		err = d.errf(n, path, "an exec writer needs command or commands")
	}
	return o, err
}

// fsfreezeWriter decodes {mount-point: PATH} or {lun: NAME}, and
// max-frozen.
func (d *decoder) fsfreezeWriter(n *yaml.Node, path string) (*fsfreezeSpec, error) {
	f := &fsfreezeSpec{}
	err := d.fields(n, path, handlers{
		"mount-point": func(v *yaml.Node, p string) error { return d.str(v, p, &f.mountPoint) },
		"lun": func(v *yaml.Node, p string) error {
			return d.lunRef(v, p, &f.lun, func(l lunSpec) string {
				if l.filesystem == nil {
					return fmt.Sprintf("LUN %q has no filesystem for the runner to mount", l.name)
				}
				return ""
			})
		},
		"max-frozen": func(v *yaml.Node, p string) error { return d.duration(v, p, &f.maxFrozen) },
	})
	if err == nil && (f.mountPoint == "") == (f.lun == "") {
		err = d.errf(n, path, "an fsfreeze writer takes mount-point or lun, one of them")
	}
	return f, err
}

func (d *decoder) action(n *yaml.Node, path string) (coordinator.Action, error) {
	var a coordinator.Action
	err := d.fields(n, path, handlers{
		"delay": func(v *yaml.Node, p string) error { return d.duration(v, p, &a.Delay) },
		"result": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			r := coordinator.Result(s)
			if !slices.Contains([]coordinator.Result{coordinator.ResultOK, coordinator.ResultFail, coordinator.ResultVeto,
				coordinator.ResultPanic, coordinator.ResultHang}, r) {
				return d.errf(v, p, "%q: want ok, fail, veto, panic or hang", s)
			}
			a.Result = r
			return nil
		},
		"failure":     func(v *yaml.Node, p string) error { return d.hresult(v, p, &a.Failure) },
		"application": func(v *yaml.Node, p string) error { return d.hresult(v, p, &a.Application) },
		"message":     func(v *yaml.Node, p string) error { return d.str(v, p, &a.Message) },
		"illegal":     func(v *yaml.Node, p string) error { return d.boolean(v, p, &a.Illegal) },
	})
	return a, err
}

func (d *decoder) hasWriter(name string) bool {
	return slices.ContainsFunc(d.sc.writers, func(w writerSpec) bool { return w.name == name })
}

func (d *decoder) hasProvider(name string) bool {
	return slices.ContainsFunc(d.sc.providers, func(p providerSpec) bool { return p.name == name })
}

// ---- load ----

func (d *decoder) load(i int, n *yaml.Node, path string) error {
	l := loadSpec{line: n.Line, rate: 500, connections: 1, seed: 1, verify: true}
	var regionNode *yaml.Node
	err := d.fields(n, path, handlers{
		"lun": func(v *yaml.Node, p string) error {
			if err := d.name(v, p, &l.lun); err != nil {
				return err
			}
			if !d.hasLUN(l.lun) {
				return d.errf(v, p, "no LUN %q in the array", l.lun)
			}
			return nil
		},
		"rate": func(v *yaml.Node, p string) error { return d.float(v, p, 1, 100000, &l.rate) },
		"pattern": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			switch s {
			case "sequential":
			case "random":
				l.random = true
			default:
				return d.errf(v, p, "%q: want sequential or random", s)
			}
			return nil
		},
		"block-size": func(v *yaml.Node, p string) error {
			var b int64
			if err := d.size(v, p, &b); err != nil {
				return err
			}
			if b < 512 || b > 1<<20 || b%512 != 0 {
				return d.errf(v, p, "%d: want a multiple of 512 up to 1MiB", b)
			}
			l.blockSize = int(b)
			return nil
		},
		"region":      func(v *yaml.Node, p string) error { regionNode = v; return d.size(v, p, &l.region) },
		"connections": func(v *yaml.Node, p string) error { return d.integer(v, p, 1, 16, &l.connections) },
		"seed": func(v *yaml.Node, p string) error {
			var s int
			err := d.integer(v, p, 0, math.MaxInt32, &s)
			l.seed = uint64(s)
			return err
		},
		"verify": func(v *yaml.Node, p string) error { return d.boolean(v, p, &l.verify) },
		"point-in-time": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			switch s {
			case "commit":
			case "hold":
				l.atHold = true
			default:
				return d.errf(v, p, "%q: want commit (the default) or hold", s)
			}
			return nil
		},
		"quiesce-with": func(v *yaml.Node, p string) error {
			if err := d.name(v, p, &l.quiesceWith); err != nil {
				return err
			}
			if !d.hasWriter(l.quiesceWith) {
				return d.errf(v, p, "no writer %q", l.quiesceWith)
			}
			return nil
		},
	}, "lun")
	if err != nil {
		return err
	}
	var size int64
	bs := 512
	for _, s := range d.sc.array.luns {
		if s.name == l.lun {
			size, bs = s.opts.Size, s.opts.BlockSize
			if s.filesystem != nil {
				return d.errf(n, join(path, "lun"), "LUN %s holds a file system; a load would write over it", l.lun)
			}
		}
	}
	if l.blockSize == 0 {
		l.blockSize = bs
	}
	if l.region == 0 {
		l.region = min(size, defaultRegion)
	}
	if regionNode != nil && l.region > size {
		return d.errf(regionNode, join(path, "region"), "%d bytes is more than LUN %s holds (%d)", l.region, l.lun, size)
	}
	if l.region/int64(l.blockSize) < int64(l.connections) {
		return d.errf(n, path, "the region holds fewer %d-byte blocks than there are connections", l.blockSize)
	}
	if l.blockSize%bs != 0 {
		return d.errf(n, join(path, "block-size"), "%d is not a multiple of LUN %s's %d-byte blocks", l.blockSize, l.lun, bs)
	}
	d.sc.loads = append(d.sc.loads, l)
	return nil
}

// defaultRegion is how much of its LUN a load writes when the scenario
// does not say: enough blocks to spread over, little enough to verify fast.
const defaultRegion = 4 << 20
