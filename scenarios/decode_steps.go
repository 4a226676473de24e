package scenarios

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// callDef describes one requester call a call step may make: the
// arguments it takes and the step keys that apply to it.
type callDef struct {
	args     []string
	required []string
	save     savedKind // what save keeps, 0 when the call takes no save
	async    bool      // DoSnapshotSet: async names the Async
	writers  bool      // GatherWriterStatus: writers expectations
	count    bool      // Query, DeleteSnapshots: count expectation
	props    bool      // GetSnapshotProperties: properties expectations
}

// calls are the IVssBackupComponents calls a scenario can make, by their
// Windows names.
var calls = map[string]callDef{
	"CreateVssBackupComponents": {},
	"InitializeForBackup":       {args: []string{"document"}},
	"SetContext":                {args: []string{"context"}, required: []string{"context"}},
	"SetBackupState":            {args: []string{"select-components", "bootable-state", "backup-type", "partial-file-support"}},
	"GatherWriterMetadata":      {},
	"GatherWriterStatus":        {writers: true},
	"AddComponent":              {args: []string{"writer", "component"}, required: []string{"writer", "component"}},
	"StartSnapshotSet":          {save: savedSet},
	"AddToSnapshotSet":          {args: []string{"volume", "provider"}, required: []string{"volume"}, save: savedSnapshot},
	"PrepareForBackup":          {},
	"DoSnapshotSet":             {async: true},
	"GetSnapshotProperties":     {args: []string{"snapshot"}, required: []string{"snapshot"}, props: true},
	"Query":                     {count: true},
	"SetBackupSucceeded":        {args: []string{"writer", "component", "succeeded"}, required: []string{"writer", "component"}},
	"BackupComplete":            {},
	"AbortBackup":               {},
	"DeleteSnapshots":           {args: []string{"snapshot", "set", "force"}, count: true},
	"BreakSnapshotSet":          {args: []string{"set"}},
	"BreakSnapshotSetEx":        {args: []string{"set", "flags"}, required: []string{"flags"}},
	"ImportSnapshots":           {},
	"ExposeSnapshot":            {args: []string{"snapshot"}, required: []string{"snapshot"}, save: savedExport},
	"RevertToSnapshot":          {args: []string{"snapshot", "force"}, required: []string{"snapshot"}},
	"SaveDocument":              {save: savedDocument},
	"Close":                     {},
}

// asyncCalls are the IVssAsync calls, as trace lines name them.
var asyncCalls = []string{"Async.Wait", "Async.Cancel", "Async.QueryStatus"}

// stepKeys are the keys each kind of step takes besides its own; every
// step also takes repeat.
var stepKeys = map[stepKind][]string{
	stepCall:          {"requester", "args", "expect", "save", "async", "writers", "count", "properties"},
	stepBackup:        {"requester", "expect", "writers", "save"},
	stepParallel:      {},
	stepWait:          {"expect"},
	stepCancel:        {"expect"},
	stepQueryStatus:   {"expect", "result"},
	stepSleep:         {},
	stepWaitFor:       {"timeout"},
	stepReleaseCommit: {"requester"},
	stepCheck:         {"requester"}, // lun-info resolves a volume in this requester's last set
	stepWrite:         {"requester"},
	stepRead:          {"requester"},
	stepFilesystem:    {"requester"},
	stepPowercut:      {},
}

// maxRepeat bounds repeat: a load across many sets, not a soak.
const maxRepeat = 256

// defaultRequester is the requester of steps that name none.
const defaultRequester = "r1"

// steps decodes one step; a call with repeat gives several.
func (d *decoder) steps(n *yaml.Node, path string, inParallel bool) ([]*step, error) {
	if err := d.check(n, path, yaml.MappingNode, "a step (a mapping)"); err != nil {
		return nil, err
	}
	var kind stepKind
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		for sk, name := range stepKindNames {
			if k.Value == name {
				if kind != 0 {
					return nil, d.errf(k, path, "a step does one thing; found %s and %s", kind, sk)
				}
				kind = sk
			}
		}
	}
	if kind == 0 {
		var names []string
		for _, name := range stepKindNames {
			names = append(names, name)
		}
		slices.Sort(names)
		return nil, d.errf(n, path, "a step needs one of: %s", strings.Join(names, ", "))
	}
	repeat := 1
	if v := mapValue(n, "repeat"); v != nil {
		if err := d.integer(v, join(path, "repeat"), 1, maxRepeat, &repeat); err != nil {
			return nil, err
		}
		if sv := mapValue(n, "save"); repeat > 1 && sv != nil && sv.Kind == yaml.ScalarNode && !strings.Contains(sv.Value, "{i}") {
			return nil, d.errf(sv, join(path, "save"), "a repeated step saves under a name with {i}, the iteration from 1 (%s{i})", sv.Value)
		}
	}
	var out []*step
	for i := 1; i <= repeat; i++ {
		node := n
		if repeat > 1 || mapValue(n, "repeat") != nil {
			node = substitute(n, i)
		}
		s, err := d.step(node, path, kind, inParallel)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *decoder) step(n *yaml.Node, path string, kind stepKind, inParallel bool) (*step, error) {
	s := &step{line: n.Line, kind: kind, requester: defaultRequester}
	h := handlers{}
	for _, k := range stepKeys[kind] {
		h[k] = nil
	}
	h["repeat"] = nil
	var argsNode, writersNode, asyncNode, saveNode *yaml.Node
	// Keys the step's own kind does not take are unknown keys; the
	// handlers below are installed only for the keys it does take.
	set := func(key string, fn func(v *yaml.Node, p string) error) {
		if _, ok := h[key]; ok {
			h[key] = fn
		}
	}
	set("requester", func(v *yaml.Node, p string) error { return d.name(v, p, &s.requester) })
	set("expect", func(v *yaml.Node, p string) error { return d.outcome(v, p, &s.expect) })
	set("args", func(v *yaml.Node, p string) error { argsNode = v; return nil })
	set("save", func(v *yaml.Node, p string) error { saveNode = v; return nil })
	set("async", func(v *yaml.Node, p string) error { asyncNode = v; return nil })
	set("writers", func(v *yaml.Node, p string) error { writersNode = v; return nil })
	set("repeat", func(v *yaml.Node, p string) error { return nil })
	set("count", func(v *yaml.Node, p string) error {
		var c int
		s.count = &c
		return d.integer(v, p, 0, 1<<20, s.count)
	})
	set("properties", func(v *yaml.Node, p string) error { return d.properties(s, v, p) })
	set("result", func(v *yaml.Node, p string) error {
		s.result = &outcome{}
		return d.outcome(v, p, s.result)
	})
	set("timeout", func(v *yaml.Node, p string) error { return d.duration(v, p, &s.duration) })
	switch kind {
	case stepCall:
		h["call"] = func(v *yaml.Node, p string) error {
			if err := d.str(v, p, &s.call); err != nil {
				return err
			}
			if _, ok := calls[s.call]; !ok {
				return d.errf(v, p, "unknown call %q (calls: %s)", s.call, strings.Join(sortedKeys(calls), ", "))
			}
			return nil
		}
	case stepBackup:
		h["backup"] = func(v *yaml.Node, p string) error { return d.backup(s, v, p) }
	case stepParallel:
		h["parallel"] = func(v *yaml.Node, p string) error {
			if inParallel {
				return d.errf(v, p, "parallel blocks do not nest")
			}
			err := d.list(v, p, func(i int, v *yaml.Node, p string) error {
				ss, err := d.steps(v, p, true)
				s.parallel = append(s.parallel, ss...)
				return err
			})
			if err == nil && len(s.parallel) < 2 {
				return d.errf(v, p, "a parallel block runs two steps or more")
			}
			return err
		}
	case stepWait, stepCancel, stepQueryStatus:
		h[kind.String()] = func(v *yaml.Node, p string) error {
			if err := d.name(v, p, &s.async); err != nil {
				return err
			}
			if !d.asyncs[s.async] {
				return d.errf(v, p, "no DoSnapshotSet before this step keeps an Async called %q", s.async)
			}
			return nil
		}
	case stepSleep:
		h["sleep"] = func(v *yaml.Node, p string) error { return d.duration(v, p, &s.duration) }
	case stepWaitFor:
		h["wait-for"] = func(v *yaml.Node, p string) error {
			pt, err := d.pattern(v, p)
			if err != nil {
				return err
			}
			if pt.kind != kindProvider && pt.kind != kindWriter {
				return d.errf(v, p, "wait-for waits for a provider call or a writer event to begin")
			}
			if pt.hasResult || pt.detail != "" {
				return d.errf(v, p, "wait-for waits for a call to begin, so it takes no result or detail")
			}
			s.waitFor = &pt
			return nil
		}
	case stepReleaseCommit:
		h["release-commit"] = func(v *yaml.Node, p string) error {
			if err := d.name(v, p, &s.provider); err != nil {
				return err
			}
			if !d.hasProvider(s.provider) {
				return d.errf(v, p, "no provider %q", s.provider)
			}
			return nil
		}
	case stepCheck:
		h["check"] = func(v *yaml.Node, p string) error { return d.checkStep(s, v, p) }
	case stepWrite, stepRead:
		h[kind.String()] = func(v *yaml.Node, p string) error { return d.dataStep(s, v, p) }
	case stepFilesystem:
		h["filesystem"] = func(v *yaml.Node, p string) error { return d.fsStep(s, v, p) }
	case stepPowercut:
		h["powercut"] = func(v *yaml.Node, p string) error { return d.cutStep(s, v, p) }
	}
	for k, fn := range h {
		if fn == nil {
			return nil, d.errf(n, path, "internal: no handler for %q", k)
		}
	}
	if err := d.fields(n, path, h); err != nil {
		return nil, err
	}
	if !slices.Contains(d.requesters, s.requester) {
		d.requesters = append(d.requesters, s.requester)
	}
	switch kind {
	case stepCall:
		def := calls[s.call]
		if err := d.callArgs(s, def, argsNode, n, join(path, "args")); err != nil {
			return nil, err
		}
		if asyncNode != nil {
			if !def.async {
				return nil, d.errf(asyncNode, join(path, "async"), "only DoSnapshotSet takes async")
			}
			if err := d.name(asyncNode, join(path, "async"), &s.async); err != nil {
				return nil, err
			}
			if d.asyncs[s.async] {
				return nil, d.errf(asyncNode, join(path, "async"), "an Async called %q exists already", s.async)
			}
			d.asyncs[s.async] = true
		}
		if writersNode != nil && !def.writers {
			return nil, d.errf(writersNode, join(path, "writers"), "only GatherWriterStatus (or a backup) reports writer states")
		}
		if s.count != nil && !def.count {
			return nil, d.errf(n, join(path, "count"), "only Query and DeleteSnapshots count")
		}
		if s.props != nil && !def.props {
			return nil, d.errf(n, join(path, "properties"), "only GetSnapshotProperties has properties")
		}
		if saveNode != nil && def.save == 0 {
			return nil, d.errf(saveNode, join(path, "save"), "%s returns nothing to save", s.call)
		}
		if def.save == savedDocument && saveNode == nil {
			return nil, d.errf(n, path, "SaveDocument needs save: a name for the document")
		}
		if saveNode != nil {
			if err := d.saveName(saveNode, join(path, "save"), def.save, &s.save); err != nil {
				return nil, err
			}
		}
	case stepBackup:
		if saveNode != nil {
			if err := d.saveName(saveNode, join(path, "save"), savedSet, &s.save); err != nil {
				return nil, err
			}
		}
		if writersNode != nil && s.backup.hasContext && !s.backup.context.HasWriters() {
			return nil, d.errf(writersNode, join(path, "writers"), "context %v has no writers to report", s.backup.context)
		}
	}
	if writersNode != nil {
		if err := d.writerExpects(s, writersNode, join(path, "writers")); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// saveName checks a name given to save: new, and not a volume's (snapshot
// arguments take either).
func (d *decoder) saveName(n *yaml.Node, path string, kind savedKind, out *string) error {
	if err := d.name(n, path, out); err != nil {
		return err
	}
	if _, dup := d.saved[*out]; dup {
		return d.errf(n, path, "%q is saved already", *out)
	}
	if d.hasVolume(*out) {
		return d.errf(n, path, "%q names a volume; choose another name", *out)
	}
	d.saved[*out] = kind
	return nil
}

func (d *decoder) callArgs(s *step, def callDef, argsNode, stepNode *yaml.Node, path string) error {
	a := &s.args
	a.selectComp, a.backupType, a.succeeded, a.objectType = true, vss.VSS_BT_FULL, true, vss.VSS_OBJECT_SNAPSHOT_SET
	all := handlers{
		"document": func(v *yaml.Node, p string) error { return d.ref(v, p, savedDocument, &a.document) },
		"context":  func(v *yaml.Node, p string) error { return d.context(v, p, &a.context) },
		"select-components": func(v *yaml.Node, p string) error {
			return d.boolean(v, p, &a.selectComp)
		},
		"bootable-state":       func(v *yaml.Node, p string) error { return d.boolean(v, p, &a.bootable) },
		"partial-file-support": func(v *yaml.Node, p string) error { return d.boolean(v, p, &a.partial) },
		"backup-type":          func(v *yaml.Node, p string) error { return d.backupType(v, p, &a.backupType) },
		"writer": func(v *yaml.Node, p string) error {
			if err := d.name(v, p, &a.writer); err != nil {
				return err
			}
			if !d.hasWriter(a.writer) {
				return d.errf(v, p, "no writer %q", a.writer)
			}
			return nil
		},
		"component": func(v *yaml.Node, p string) error { return d.name(v, p, &a.component) },
		"volume": func(v *yaml.Node, p string) error {
			if err := d.volumeName(v, p, &a.volume); err != nil {
				return err
			}
			if !d.hasVolume(a.volume) {
				return d.errf(v, p, "no volume or LUN %q", a.volume)
			}
			return nil
		},
		"provider": func(v *yaml.Node, p string) error { return d.providerRef(v, p, &a.provider) },
		"set": func(v *yaml.Node, p string) error {
			return d.ref(v, p, savedSet, &a.set)
		},
		"snapshot": func(v *yaml.Node, p string) error { return d.snapshotRef(v, p, &a.snapshot) },
		"force":    func(v *yaml.Node, p string) error { return d.boolean(v, p, &a.force) },
		"succeeded": func(v *yaml.Node, p string) error {
			return d.boolean(v, p, &a.succeeded)
		},
		"flags": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			f, err := vss.ParseHardwareOptions(s)
			if err != nil {
				return d.errf(v, p, "%q: want VSS_BREAKEX_FLAG_* names or numbers joined with |", s)
			}
			a.flags = f
			return nil
		},
	}
	h := handlers{}
	for _, k := range def.args {
		h[k] = all[k]
	}
	if argsNode == nil {
		if len(def.required) > 0 {
			return d.errf(stepNode, path, "%s needs args: %s", s.call, strings.Join(def.required, ", "))
		}
		return nil
	}
	if len(def.args) == 0 {
		return d.errf(argsNode, path, "%s takes no arguments", s.call)
	}
	if err := d.fields(argsNode, path, h, def.required...); err != nil {
		return err
	}
	if s.call == "DeleteSnapshots" {
		if a.snapshot != "" && a.set != "" {
			return d.errf(argsNode, path, "delete a snapshot or a set, not both")
		}
		if a.snapshot != "" {
			a.objectType = vss.VSS_OBJECT_SNAPSHOT
		}
	}
	return nil
}

// ref reads a name saved earlier, of the given kind; "last" is the
// requester's last set.
func (d *decoder) ref(n *yaml.Node, path string, kind savedKind, out *string) error {
	if err := d.name(n, path, out); err != nil {
		return err
	}
	if kind == savedSet && *out == "last" {
		return nil
	}
	if k, ok := d.saved[*out]; !ok || k != kind {
		return d.errf(n, path, "nothing saved as %q before this step", *out)
	}
	return nil
}

// snapshotRef is a volume (the requester's snapshot of it in its last set)
// or a snapshot saved from AddToSnapshotSet.
func (d *decoder) snapshotRef(n *yaml.Node, path string, out *string) error {
	if err := d.volumeName(n, path, out); err != nil {
		return err
	}
	if d.hasVolume(*out) {
		return nil
	}
	if k, ok := d.saved[*out]; !ok || k != savedSnapshot {
		return d.errf(n, path, "%q is neither a volume nor a snapshot saved before this step", *out)
	}
	return nil
}

// providerRef is a declared provider, or an ID in braces (for a provider
// that is not registered).
func (d *decoder) providerRef(n *yaml.Node, path string, out *string) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	if strings.HasPrefix(s, "{") {
		if _, err := vss.ParseID(s); err != nil {
			return d.errf(n, path, "%q is not a provider ID", s)
		}
		*out = s
		return nil
	}
	if !d.hasProvider(s) {
		return d.errf(n, path, "no provider %q", s)
	}
	*out = s
	return nil
}

func (d *decoder) context(n *yaml.Node, path string, out *vss.SnapshotContext) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	c, err := vss.ParseSnapshotContext(s)
	if err != nil {
		return d.errf(n, path, "%q is not a snapshot context: %v", s, err)
	}
	*out = c
	return nil
}

func (d *decoder) backupType(n *yaml.Node, path string, out *vss.BackupType) error {
	s, err := d.scalar(n, path)
	if err != nil {
		return err
	}
	t, err := vss.ParseBackupType(s)
	if err != nil {
		return d.errf(n, path, "%q is not a backup type (FULL, INCREMENTAL, DIFFERENTIAL, LOG, COPY, OTHER)", s)
	}
	*out = t
	return nil
}

// backupSteps are the calls of the standard backup, in order: what
// crash-after may name.
var backupSteps = []string{"InitializeForBackup", "SetContext", "GatherWriterMetadata", "SetBackupState", "AddComponent",
	"StartSnapshotSet", "AddToSnapshotSet", "PrepareForBackup", "DoSnapshotSet", "BackupComplete"}

func (d *decoder) backup(s *step, n *yaml.Node, path string) error {
	b := &backupSpec{backupType: vss.VSS_BT_FULL}
	s.backup = b
	err := d.fields(n, path, handlers{
		"volumes": func(v *yaml.Node, p string) error {
			if err := d.names(v, p, d.volumeName, &b.volumes); err != nil {
				return err
			}
			for i, vol := range b.volumes {
				if !d.hasVolume(vol) {
					return d.errf(v.Content[i], index(p, i), "no volume or LUN %q", vol)
				}
			}
			if len(b.volumes) == 0 {
				return d.errf(v, p, "a backup takes at least one volume")
			}
			return nil
		},
		"context": func(v *yaml.Node, p string) error {
			b.hasContext = true
			return d.context(v, p, &b.context)
		},
		"backup-type":       func(v *yaml.Node, p string) error { return d.backupType(v, p, &b.backupType) },
		"provider":          func(v *yaml.Node, p string) error { return d.providerRef(v, p, &b.provider) },
		"keep-open":         func(v *yaml.Node, p string) error { return d.boolean(v, p, &b.keepOpen) },
		"retry-in-progress": func(v *yaml.Node, p string) error { return d.boolean(v, p, &b.retry) },
		"crash-after": func(v *yaml.Node, p string) error {
			if err := d.str(v, p, &b.crashAfter); err != nil {
				return err
			}
			if !slices.Contains(backupSteps, b.crashAfter) {
				return d.errf(v, p, "%q is not a call of the backup (%s)", b.crashAfter, strings.Join(backupSteps, ", "))
			}
			return nil
		},
	}, "volumes")
	if err != nil {
		return err
	}
	if b.keepOpen && b.crashAfter != "" {
		return d.errf(n, path, "a crashed requester cannot keep-open")
	}
	return nil
}

func (d *decoder) writerExpects(s *step, n *yaml.Node, path string) error {
	if err := d.check(n, path, yaml.MappingNode, "a mapping of writer names"); err != nil {
		return err
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := d.check(k, path, yaml.ScalarNode, "a writer name"); err != nil {
			return err
		}
		if !d.hasWriter(k.Value) {
			return d.errf(k, path, "no writer %q", k.Value)
		}
		we := writerExpect{line: k.Line, name: k.Value}
		p := join(path, k.Value)
		state := func(v *yaml.Node, p string) error {
			str, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			st, err := vss.ParseWriterState(str)
			if err != nil {
				return d.errf(v, p, "%q is not a writer state (STABLE, FAILED_AT_FREEZE...)", str)
			}
			we.state = &st
			return nil
		}
		if v.Kind == yaml.ScalarNode {
			if err := state(v, p); err != nil {
				return err
			}
		} else {
			err := d.fields(v, p, handlers{
				"state": state,
				"failure": func(v *yaml.Node, p string) error {
					var hr vss.HRESULT
					we.failure = &hr
					return d.hresult(v, p, &hr)
				},
				"application": func(v *yaml.Node, p string) error {
					var hr vss.HRESULT
					we.application = &hr
					return d.hresult(v, p, &hr)
				},
				"message": func(v *yaml.Node, p string) error { return d.str(v, p, &we.message) },
			})
			if err != nil {
				return err
			}
		}
		s.writers = append(s.writers, we)
	}
	return nil
}

func (d *decoder) properties(s *step, n *yaml.Node, path string) error {
	pe := &propsExpect{}
	s.props = pe
	return d.fields(n, path, handlers{
		"imported": func(v *yaml.Node, p string) error {
			var b bool
			pe.imported = &b
			return d.boolean(v, p, &b)
		},
		"target-luns": func(v *yaml.Node, p string) error {
			var c int
			pe.targetLUNs = &c
			return d.integer(v, p, 0, 64, &c)
		},
		"attributes": func(v *yaml.Node, p string) error {
			str, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			a, err := vss.ParseVolSnapAttr(str)
			if err != nil {
				return d.errf(v, p, "%q: want VSS_VOLSNAP_ATTR names joined with |", str)
			}
			pe.attrs = a
			return nil
		},
	})
}

func (d *decoder) checkStep(s *step, n *yaml.Node, path string) error {
	c := &checkSpec{}
	s.check = c
	count := func(out **int) func(v *yaml.Node, p string) error {
		return func(v *yaml.Node, p string) error {
			var x int
			*out = &x
			return d.integer(v, p, 0, 1<<20, &x)
		}
	}
	return d.fields(n, path, handlers{
		"snapshots":     count(&c.snapshots),
		"snapshot-luns": count(&c.snapshotLUNs),
		"unique-naa":    func(v *yaml.Node, p string) error { return d.boolean(v, p, &c.uniqueNAA) },
		"store-bytes":   func(v *yaml.Node, p string) error { return d.storeBytes(c, v, p) },
		"goroutines": func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			if s != "stable" {
				return d.errf(v, p, "%q: goroutines takes stable (no more than when the step before began)", s)
			}
			c.goroutines = true
			return nil
		},
		"lun-info": func(v *yaml.Node, p string) error { return d.lunInfo(c, v, p) },
	})
}

// storeBytes decodes {mark: NAME} or {max: SIZE|MARK, min: SIZE|MARK}.
func (d *decoder) storeBytes(c *checkSpec, n *yaml.Node, path string) error {
	sb := &storeBytesCheck{}
	c.storeBytes = sb
	bound := func(size *int64, mark *string, has *bool) func(v *yaml.Node, p string) error {
		return func(v *yaml.Node, p string) error {
			*has = true
			s, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			if d.marks[s] {
				*mark = s
				return nil
			}
			if s == "0" {
				return nil
			}
			if err := d.size(v, p, size); err != nil {
				return d.errf(v, p, "%q: want a size (4MiB, 0) or a name marked by an earlier store-bytes check", s)
			}
			return nil
		}
	}
	err := d.fields(n, path, handlers{
		"mark": func(v *yaml.Node, p string) error {
			if err := d.name(v, p, &sb.mark); err != nil {
				return err
			}
			if d.marks[sb.mark] {
				return d.errf(v, p, "%q is marked already", sb.mark)
			}
			return nil
		},
		"max": bound(&sb.max, &sb.maxMark, &sb.hasMax),
		"min": bound(&sb.min, &sb.minMark, &sb.hasMin),
	})
	if err != nil {
		return err
	}
	if sb.mark == "" && !sb.hasMax && !sb.hasMin {
		return d.errf(n, path, "store-bytes takes mark, max or min")
	}
	if sb.mark != "" {
		d.marks[sb.mark] = true
	}
	return nil
}

// lunInfoFields are the VDS_LUN_INFORMATION fields a lun-info check may
// expect.
var lunInfoFields = []string{"vendor", "product", "revision", "serial", "bus-type", "version"}

// lunInfo decodes a snapshot reference, all, or {snapshot, vendor,
// product, revision, serial, bus-type, version}.
func (d *decoder) lunInfo(c *checkSpec, n *yaml.Node, path string) error {
	li := &lunInfoCheck{want: map[string]string{}}
	c.lunInfo = li
	if n.Kind == yaml.ScalarNode {
		s, err := d.scalar(n, path)
		if err != nil {
			return err
		}
		if s == "all" {
			return nil
		}
		return d.snapshotRef(n, path, &li.snapshot)
	}
	h := handlers{"snapshot": func(v *yaml.Node, p string) error {
		if s, _ := d.scalar(v, p); s == "all" {
			return nil
		}
		return d.snapshotRef(v, p, &li.snapshot)
	}}
	for _, f := range lunInfoFields {
		h[f] = func(v *yaml.Node, p string) error {
			s, err := d.scalar(v, p)
			li.want[f] = s
			return err
		}
	}
	return d.fields(n, path, h)
}

func (d *decoder) dataStep(s *step, n *yaml.Node, path string) error {
	ds := &dataSpec{}
	s.data = ds
	var dataNode *yaml.Node
	err := d.fields(n, path, handlers{
		"lun":        func(v *yaml.Node, p string) error { return d.lunRef(v, p, &ds.lun, nil) },
		"snapshot":   func(v *yaml.Node, p string) error { return d.snapshotRef(v, p, &ds.snapshot) },
		"export":     func(v *yaml.Node, p string) error { return d.ref(v, p, savedExport, &ds.export) },
		"source-lun": func(v *yaml.Node, p string) error { return d.name(v, p, &ds.sourceLUN) },
		"offset": func(v *yaml.Node, p string) error {
			str, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			o, err := strconv.ParseInt(str, 0, 64)
			if err != nil || o < 0 || o > maxSize {
				return d.errf(v, p, "%q: want a byte offset", str)
			}
			ds.offset = o
			return nil
		},
		"data": func(v *yaml.Node, p string) error {
			dataNode = v
			var str string
			if err := d.str(v, p, &str); err != nil {
				return err
			}
			ds.data = []byte(str)
			return nil
		},
		"fails": func(v *yaml.Node, p string) error { return d.boolean(v, p, &ds.fails) },
		"fua": func(v *yaml.Node, p string) error {
			fua := true
			err := d.boolean(v, p, &fua)
			ds.noFUA = !fua
			return err
		},
	}, "data")
	if err != nil {
		return err
	}
	given := 0
	for _, t := range []string{ds.lun, ds.snapshot, ds.export} {
		if t != "" {
			given++
		}
	}
	if given != 1 {
		return d.errf(n, path, "give one of lun, snapshot and export")
	}
	if ds.sourceLUN != "" && ds.snapshot == "" {
		return d.errf(n, path, "source-lun picks a LUN of a snapshot")
	}
	if ds.noFUA && s.kind != stepWrite {
		return d.errf(n, path, "fua is a write's")
	}
	if len(ds.data) == 0 || len(ds.data) > 1<<16 {
		return d.errf(dataNode, join(path, "data"), "data is 1 to 65536 bytes")
	}
	return nil
}

func (d *decoder) pattern(n *yaml.Node, path string) (pattern, error) {
	s, err := d.scalar(n, path)
	if err != nil {
		return pattern{}, err
	}
	p, err := parsePattern(s)
	if err != nil {
		return p, d.errf(n, path, "%v", err)
	}
	p.line = n.Line
	for _, ref := range p.refs {
		if k, ok := d.saved[ref]; !ok || k == savedDocument {
			return p, d.errf(n, path, "%q: ${%s}: no step saves a set, snapshot or export as %q", s, ref, ref)
		}
	}
	if p.actor != "" {
		ok := false
		switch p.kind {
		case kindProvider:
			ok = d.hasProvider(p.actor)
		case kindWriter:
			ok = d.hasWriter(p.actor)
		case kindWindow:
			ok = d.hasWriter(p.actor)
		case kindRequester:
			ok = true // checked once every step is read
		}
		if !ok {
			return p, d.errf(n, path, "%q: no %s called %q", s, p.kind, p.actor)
		}
	}
	return p, nil
}

func (d *decoder) patterns(n *yaml.Node, path string, out *[]pattern) error {
	return d.list(n, path, func(i int, v *yaml.Node, p string) error {
		pt, err := d.pattern(v, p)
		if err != nil {
			return err
		}
		if pt.kind == kindRequester && pt.actor != "" && !slices.Contains(d.requesters, pt.actor) {
			return d.errf(v, p, "no step uses a requester called %q", pt.actor)
		}
		*out = append(*out, pt)
		return nil
	})
}

func (d *decoder) expect(e *expectSpec, n *yaml.Node, path string) error {
	logs := func(out *[]logExpect) func(v *yaml.Node, p string) error {
		return func(v *yaml.Node, p string) error {
			return d.list(v, p, func(i int, v *yaml.Node, p string) error {
				le, err := d.logExpect(v, p)
				*out = append(*out, le)
				return err
			})
		}
	}
	return d.fields(n, path, handlers{
		"trace": func(v *yaml.Node, p string) error {
			t := &traceExpect{line: v.Line}
			e.trace = t
			if v.Kind == yaml.SequenceNode {
				return d.patterns(v, p, &t.lines)
			}
			return d.fields(v, p, handlers{
				"kinds": func(v *yaml.Node, p string) error {
					if err := d.names(v, p, func(n *yaml.Node, p string, out *string) error { return d.str(n, p, out) }, &t.kinds); err != nil {
						return err
					}
					for i, k := range t.kinds {
						if !slices.Contains(traceKinds, k) {
							return d.errf(v.Content[i], index(p, i), "%q is not a kind of trace line (%s)", k, strings.Join(traceKinds, ", "))
						}
					}
					return nil
				},
				"lines": func(v *yaml.Node, p string) error { return d.patterns(v, p, &t.lines) },
			}, "lines")
		},
		"subsequence": func(v *yaml.Node, p string) error { return d.patterns(v, p, &e.subsequence) },
		"absent":      func(v *yaml.Node, p string) error { return d.patterns(v, p, &e.absent) },
		"count": func(v *yaml.Node, p string) error {
			if err := d.check(v, p, yaml.MappingNode, "a mapping of trace lines to counts"); err != nil {
				return err
			}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, n := v.Content[i], v.Content[i+1]
				var one []pattern
				if err := d.patterns(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{k}, Line: k.Line, Column: k.Column}, p, &one); err != nil {
					return err
				}
				c := countExpect{pattern: one[0]}
				if err := d.integer(n, join(p, k.Value), 0, 1<<20, &c.n); err != nil {
					return err
				}
				e.counts = append(e.counts, c)
			}
			return nil
		},
		"event-log":    logs(&e.eventLog),
		"no-event-log": logs(&e.noEventLog),
		"timing": func(v *yaml.Node, p string) error {
			return d.list(v, p, func(i int, v *yaml.Node, p string) error {
				t, err := d.timing(v, p)
				e.timing = append(e.timing, t)
				return err
			})
		},
	})
}

// timing decodes a bound, "SELECTOR < DURATION" or a mapping with span,
// max, min, hard and unscaled.
func (d *decoder) timing(n *yaml.Node, path string) (timingSpec, error) {
	t := timingSpec{line: n.Line}
	selector := func(v *yaml.Node, p string, s string) error {
		if !strings.Contains(s, ":") {
			s = kindPhase + ":" + s // a bare name is a phase
		}
		pt, err := parsePattern(s)
		if err != nil {
			return d.errf(v, p, "%v", err)
		}
		if pt.hasResult {
			return d.errf(v, p, "a timing bound selects spans; it takes no result")
		}
		if pt.kind == kindRequester {
			return d.errf(v, p, "requester calls are not timed; bound a phase, provider call, writer event or window")
		}
		t.sel = pt
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		s, err := d.scalar(n, path)
		if err != nil {
			return t, err
		}
		t.text = s
		op := "<"
		sel, dur, ok := strings.Cut(s, "<")
		if !ok {
			op = ">"
			sel, dur, ok = strings.Cut(s, ">")
		}
		if !ok {
			return t, d.errf(n, path, "%q: want SPAN < DURATION or SPAN > DURATION", s)
		}
		v, err := time.ParseDuration(strings.TrimSpace(dur))
		if err != nil || v <= 0 || v > maxDuration {
			return t, d.errf(n, path, "%q: %q is not a duration", s, strings.TrimSpace(dur))
		}
		if op == "<" {
			t.max = v
		} else {
			t.min = v
		}
		return t, selector(n, path, strings.TrimSpace(sel))
	}
	var selNode *yaml.Node
	var sel string
	err := d.fields(n, path, handlers{
		"span":     func(v *yaml.Node, p string) error { selNode = v; return d.str(v, p, &sel) },
		"max":      func(v *yaml.Node, p string) error { return d.duration(v, p, &t.max) },
		"min":      func(v *yaml.Node, p string) error { return d.duration(v, p, &t.min) },
		"hard":     func(v *yaml.Node, p string) error { return d.boolean(v, p, &t.hard) },
		"unscaled": func(v *yaml.Node, p string) error { return d.boolean(v, p, &t.unscaled) },
	}, "span")
	if err != nil {
		return t, err
	}
	if t.max == 0 && t.min == 0 {
		return t, d.errf(n, path, "a bound needs max or min")
	}
	if t.max != 0 && t.min > t.max {
		return t, d.errf(n, path, "min %v is above max %v", t.min, t.max)
	}
	t.text = sel
	if t.max != 0 {
		t.text += " < " + t.max.String()
	}
	if t.min != 0 {
		t.text += " > " + t.min.String()
	}
	return t, selector(selNode, join(path, "span"), sel)
}

// logExpect decodes one event-log selector: an event ID, a text the
// message contains, or a mapping of id, message, level and record fields.
func (d *decoder) logExpect(v *yaml.Node, p string) (logExpect, error) {
	le := logExpect{line: v.Line}
	eventID := func(v *yaml.Node, p string, s string) error {
		id, err := strconv.Atoi(s)
		if err != nil || id < 1 || id > 65535 {
			return d.errf(v, p, "%q is not an event ID (1 to 65535)", s)
		}
		le.id = id
		return nil
	}
	if v.Kind == yaml.MappingNode {
		if err := d.check(v, p, yaml.MappingNode, "a mapping"); err != nil {
			return le, err
		}
		le.fields = map[string]string{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, val := v.Content[i], v.Content[i+1]
			if err := d.check(k, p, yaml.ScalarNode, "a field name"); err != nil {
				return le, err
			}
			kp := join(p, k.Value)
			s, err := d.scalar(val, kp)
			if err != nil {
				return le, err
			}
			if _, dup := le.fields[k.Value]; dup || (k.Value == "id" && le.id != 0) || (k.Value == "message" && le.text != "") || (k.Value == "level" && le.level != "") {
				return le, d.errf(k, p, "key %q given twice", k.Value)
			}
			switch k.Value {
			case "id", "event_id":
				if err := eventID(val, kp, s); err != nil {
					return le, err
				}
			case "message":
				le.text = s
			case "level":
				switch strings.ToUpper(s) {
				case "DEBUG", "INFO", "WARN", "ERROR":
					le.level = strings.ToUpper(s)
				default:
					return le, d.errf(val, kp, "%q: want DEBUG, INFO, WARN or ERROR", s)
				}
			default:
				if !validName(k.Value) {
					return le, d.errf(k, p, "%q is not a record field", k.Value)
				}
				if hr, err := vss.ParseHRESULT(s); err == nil && strings.HasPrefix(s, "0x") {
					s = hr.Name()
				}
				for _, m := range savedRef.FindAllStringSubmatch(s, -1) {
					if kind, ok := d.saved[m[1]]; !ok || kind == savedDocument {
						return le, d.errf(val, kp, "${%s}: no step saves a set, snapshot or export as %q", m[1], m[1])
					}
					le.refs = true
				}
				le.fields[k.Value] = s
			}
		}
		if le.id == 0 && le.text == "" && le.level == "" && len(le.fields) == 0 {
			return le, d.errf(v, p, "a record selector names at least one field")
		}
		return le, nil
	}
	s, err := d.scalar(v, p)
	if err != nil {
		return le, err
	}
	if _, err := strconv.Atoi(s); err == nil {
		return le, eventID(v, p, s)
	}
	le.text = s
	return le, nil
}

// fsStep decodes {lun | snapshot [, source-lun], path, write | read |
// absent}.
func (d *decoder) fsStep(s *step, n *yaml.Node, path string) error {
	f := &fsStep{}
	s.fs = f
	var hasRead bool
	err := d.fields(n, path, handlers{
		"lun": func(v *yaml.Node, p string) error {
			return d.lunRef(v, p, &f.lun, func(l lunSpec) string {
				if l.filesystem == nil {
					return fmt.Sprintf("LUN %q has no filesystem (give it filesystem: ext4)", l.name)
				}
				return ""
			})
		},
		"snapshot":   func(v *yaml.Node, p string) error { return d.snapshotRef(v, p, &f.snapshot) },
		"source-lun": func(v *yaml.Node, p string) error { return d.name(v, p, &f.sourceLUN) },
		"path": func(v *yaml.Node, p string) error {
			if err := d.str(v, p, &f.path); err != nil {
				return err
			}
			clean := filepath.Clean(f.path)
			if filepath.IsAbs(f.path) || clean == "." || strings.HasPrefix(clean, "..") {
				return d.errf(v, p, "%q: a path inside the file system, relative to its root", f.path)
			}
			f.path = clean
			return nil
		},
		"write": func(v *yaml.Node, p string) error {
			var str string
			err := d.str(v, p, &str)
			f.write = []byte(str)
			return err
		},
		"read": func(v *yaml.Node, p string) error {
			var str string
			err := d.str(v, p, &str)
			f.read, hasRead = []byte(str), true
			return err
		},
		"absent": func(v *yaml.Node, p string) error { return d.boolean(v, p, &f.absent) },
	}, "path")
	if err != nil {
		return err
	}
	if (f.lun == "") == (f.snapshot == "") {
		return d.errf(n, path, "give lun or snapshot, one of them")
	}
	ops := 0
	for _, set := range []bool{f.write != nil, hasRead, f.absent} {
		if set {
			ops++
		}
	}
	if ops != 1 {
		return d.errf(n, path, "give one of write, read and absent")
	}
	if f.write != nil && f.snapshot != "" {
		return d.errf(n, path, "a snapshot's file system is mounted read-only; write to a LUN's")
	}
	if f.sourceLUN != "" && f.snapshot == "" {
		return d.errf(n, path, "source-lun picks a LUN of a snapshot")
	}
	if !slices.ContainsFunc(d.sc.array.luns, func(l lunSpec) bool { return l.filesystem != nil }) {
		return d.errf(n, path, "no LUN of the array has a filesystem")
	}
	return nil
}

// cutStep reads a powercut step: {lun: NAME, keep: random|none|all|worst,
// seed: N, tear: BOOL, after-writes: N | within: DURATION}.
func (d *decoder) cutStep(s *step, n *yaml.Node, path string) error {
	c := &cutSpec{keep: lun.KeepNone, seed: 1}
	s.cut = c
	err := d.fields(n, path, handlers{
		"lun": func(v *yaml.Node, p string) error {
			return d.lunRef(v, p, &c.lun, func(l lunSpec) string {
				if l.opts.Cache == lun.CacheNone {
					if l.cacheSet {
						return fmt.Sprintf("LUN %s has no cache: it says cache: none; give it write-back (or another mode)", l.name)
					}
					return fmt.Sprintf("LUN %s has no cache: give it cache: write-back (or another mode), or its provider's profile one", l.name)
				}
				return ""
			})
		},
		"keep": func(v *yaml.Node, p string) error {
			str, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			if c.keep, err = lun.ParseKeep(str); err != nil {
				return d.errf(v, p, "%q: want random, none, all or worst", str)
			}
			return nil
		},
		"seed": func(v *yaml.Node, p string) error {
			str, err := d.scalar(v, p)
			if err != nil {
				return err
			}
			if c.seed, err = strconv.ParseUint(str, 0, 64); err != nil {
				return d.errf(v, p, "%q: want an unsigned 64-bit seed", str)
			}
			return nil
		},
		"tear":         func(v *yaml.Node, p string) error { return d.boolean(v, p, &c.tear) },
		"after-writes": func(v *yaml.Node, p string) error { return d.integer(v, p, 1, math.MaxInt32, &c.afterWrites) },
		"within": func(v *yaml.Node, p string) error {
			if err := d.duration(v, p, &c.within); err != nil {
				return err
			}
			if c.within <= 0 {
				return d.errf(v, p, "a window of 0: leave within out to cut at once")
			}
			return nil
		},
	}, "lun")
	if err == nil && c.afterWrites > 0 && c.within > 0 {
		err = d.errf(n, path, "give after-writes or within, not both")
	}
	return err
}
