package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// faultErrors are the errors a fault rule may inject, by errno name. They
// are syscall.Errno values, so the NBD server answers them as themselves.
var faultErrors = map[string]error{
	"EIO":    syscall.EIO,
	"ENOSPC": syscall.ENOSPC,
	"EPERM":  syscall.EPERM,
	"EINVAL": syscall.EINVAL,
	"ENOMEM": syscall.ENOMEM,
}

// lunByName returns a LUN or ErrNoSuchLUN with VSS_E_OBJECT_NOT_FOUND.
func (d *Daemon) lunByName(name string) (*lun.LUN, error) {
	l, err := d.array.Get(name)
	if err != nil {
		return nil, notFound(ErrNoSuchLUN, name)
	}
	return l, nil
}

// lunInfo describes a LUN, its faults and its statistics.
func (d *Daemon) lunInfo(l *lun.LUN) LUNInfo {
	id := l.Identity()
	info := LUNInfo{Name: l.Name(), Kind: l.Kind().String(), Size: Size(l.Size()), BlockSize: l.BlockSize(),
		ReadOnly: l.ReadOnly(), Masked: l.Masked(), Thin: l.Thin(), Created: l.Created(), Serial: id.Serial, NAA: id.NAAString()}
	if p := l.Parent(); p != nil {
		info.Parent = p.Name()
	}
	if m := l.CacheMode(); m != lun.CacheNone {
		info.Cache = m.String()
	}
	if !l.Masked() {
		info.Exports = d.exportURLs(l.Name())
	}
	if u, ok := l.CacheUse(); ok {
		info.CacheUse = new(cacheUseInfo(u))
	}
	d.mu.Lock()
	info.Faults = slices.Clone(d.mu.faults[l.Name()])
	if c, ok := d.mu.lastCut[l.Name()]; ok {
		info.LastPowerCut = &c
	}
	d.mu.Unlock()
	for _, s := range l.Stats() {
		if s.Ops == 0 {
			continue
		}
		o := OpStatsInfo{Op: s.Op.String(), Ops: s.Ops, Bytes: s.Bytes, Errors: s.Errors}
		if s.Latency != nil {
			o.P50 = Duration(time.Duration(s.Latency.ValueAtQuantile(50)))
			o.P99 = Duration(time.Duration(s.Latency.ValueAtQuantile(99)))
		}
		info.Stats = append(info.Stats, o)
	}
	return info
}

// luns lists the array's LUNs, masked ones included.
func (d *Daemon) luns() []LUNInfo {
	out := []LUNInfo{}
	for _, l := range d.array.List() {
		out = append(out, d.lunInfo(l))
	}
	return out
}

// createLUN adds an empty LUN.
func (d *Daemon) createLUN(req LUNConfig) (LUNInfo, error) {
	if err := checkLUN(req); err != nil {
		return LUNInfo{}, badRequest("%v", err)
	}
	l, err := d.array.Create(req.Name, d.cfg.lunOptions(req))
	if errors.Is(err, lun.ErrExists) {
		return LUNInfo{}, existsError(req.Name)
	}
	if err != nil {
		return LUNInfo{}, fmt.Errorf("LUN %s: %w%s", req.Name, err, thinHint(err, `(lun create --thin; "thin": true in the API)`))
	}
	d.log.Info("LUN created", "lun", req.Name, "size", req.Size.String(), "thin", l.Thin())
	return d.lunInfo(l), nil
}

// existsError is lun.ErrExists for a LUN create, said once: lun's own
// text names the LUN after the cause, which a caller's prefix repeats.
type existsError string

func (e existsError) Error() string {
	return fmt.Sprintf("LUN %s exists already (lun list shows it; another name, or lun delete %s first)", string(e), string(e))
}

func (e existsError) Unwrap() error { return lun.ErrExists }

// thinHint returns how to ask for a thin LUN, in the words of the place
// where LUNs are described, when err is a thick LUN that does not fit.
func thinHint(err error, how string) string {
	if errors.Is(err, lun.ErrCapacity) {
		return " " + how
	}
	return ""
}

// deleteLUN deletes a LUN; its I/O in flight fails with EIO. A LUN with
// snapshots or clones, with NBD clients, or that is a snapshot of a set is
// refused, naming what holds it, unless force: then its snapshots and
// clones go first (a set's snapshot through the service, which keeps the
// set's records right), and the answer lists everything deleted.
func (d *Daemon) deleteLUN(ctx context.Context, name string, force bool) (DeleteResult, error) {
	l, err := d.lunByName(name)
	if err != nil {
		return DeleteResult{}, err
	}
	// Descendants, deepest first.
	var deps []*lun.LUN
	depth := map[*lun.LUN]int{}
	for _, o := range d.array.List() {
		n := 0
		for p := o.Parent(); p != nil; p = p.Parent() {
			n++
			if p == l {
				deps, depth[o] = append(deps, o), n
				break
			}
		}
	}
	slices.SortStableFunc(deps, func(a, b *lun.LUN) int { return depth[b] - depth[a] })
	setOf := map[string]vss.ID{}
	for _, p := range d.svc.Query() {
		for _, t := range p.TargetLUNs {
			setOf[t] = p.SnapshotID
		}
	}
	conns := d.nbd.Connections(l)
	if !force {
		var why []string
		if id, ok := setOf[name]; ok {
			why = append(why, fmt.Sprintf("it is snapshot %v (delete it with snapshot delete)", id))
		}
		if len(deps) > 0 {
			names := make([]string, len(deps))
			for i, o := range deps {
				names[i] = fmt.Sprintf("%s %s", o.Kind(), o.Name())
			}
			why = append(why, "it has "+strings.Join(names, ", "))
		}
		if conns > 0 {
			why = append(why, fmt.Sprintf("%d NBD connections have it open", conns))
		}
		if len(why) > 0 {
			return DeleteResult{}, fmt.Errorf("%w: LUN %s: %s; --force deletes it and them", ErrLUNInUse, name, strings.Join(why, "; "))
		}
	}
	res := DeleteResult{Deleted: []string{}}
	for _, o := range append(deps, l) {
		if id, ok := setOf[o.Name()]; ok {
			if _, err := d.deleteSnapshot(ctx, id); err != nil {
				return res, fmt.Errorf("LUN %s: snapshot %v: %w", o.Name(), id, err)
			}
			res.Deleted = append(res.Deleted, o.Name())
			continue
		}
		r, err := d.deleteOne(o.Name())
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, r...)
	}
	return res, nil
}

// deleteOne deletes one LUN from the array, with its fault rules.
func (d *Daemon) deleteOne(name string) ([]string, error) {
	if err := d.array.Delete(name); err != nil {
		return nil, fmt.Errorf("LUN %s: %w", name, err)
	}
	d.mu.Lock()
	rules, had := d.mu.faults[name]
	d.disarmLocked(rules)
	delete(d.mu.faults, name)
	delete(d.mu.lastCut, name)
	d.mu.Unlock()
	if had {
		if err := d.saveFaults(name, nil); err != nil {
			d.log.Error("LUN deleted, its fault rules stay written down until the next start", "lun", name, "err", err)
		}
	}
	d.log.Info("LUN deleted", "lun", name)
	return []string{name}, nil
}

// faults returns a LUN's fault rules.
func (d *Daemon) faults(name string) (FaultList, error) {
	if _, err := d.lunByName(name); err != nil {
		return FaultList{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return FaultList{LUN: name, Rules: append([]FaultRule{}, d.mu.faults[name]...)}, nil
}

// addFault adds a rule to a live LUN's faults. The rules apply in order,
// the first error winning (lun.All). A power-cut rule is armed
// (powerfault.go).
func (d *Daemon) addFault(name string, r FaultRule) (FaultList, error) {
	l, err := d.lunByName(name)
	if err != nil {
		return FaultList{}, err
	}
	if r.isPowerCut() {
		if err := checkPowerCut(l, &r, time.Now()); err != nil {
			return FaultList{}, err
		}
	} else {
		r.At = time.Time{}
		if r.Probability > 0 && r.Seed == 0 {
			r.Seed = Seed(rand.Uint64() | 1)
		}
		if _, err := r.injector(); err != nil {
			return FaultList{}, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.nextRule++
	r.id = d.mu.nextRule
	rules := append(slices.Clone(d.mu.faults[name]), r)
	if !r.isPowerCut() {
		if err := d.saveFaults(name, rules); err != nil {
			return FaultList{}, err
		}
	} else {
		d.armLocked(l, r)
	}
	d.mu.faults[name] = rules
	d.installLocked(l, rules)
	d.log.Info("fault injected", "lun", name, "rule", r.String())
	return FaultList{LUN: name, Rules: slices.Clone(rules)}, nil
}

// clearFaults removes every fault of a LUN.
func (d *Daemon) clearFaults(name string) (FaultList, error) {
	l, err := d.lunByName(name)
	if err != nil {
		return FaultList{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.saveFaults(name, nil); err != nil {
		return FaultList{}, err
	}
	d.disarmLocked(d.mu.faults[name])
	delete(d.mu.faults, name)
	l.SetFaults(nil)
	d.log.Info("faults cleared", "lun", name)
	return FaultList{LUN: name, Rules: []FaultRule{}}, nil
}

// installLocked builds the LUN's injector from its rules, which were
// checked when they were added; an armed power cut's injector is the one
// it was armed with, so that its count goes on. A LUN left with no rule
// has no injector. Under d.mu.
func (d *Daemon) installLocked(l *lun.LUN, rules []FaultRule) {
	injs := make([]lun.Injector, 0, len(rules))
	for _, r := range rules {
		if a := d.mu.cuts[r.id]; a != nil {
			if a.inj != nil {
				injs = append(injs, a.inj)
			}
			continue
		}
		inj, _ := r.injector()
		injs = append(injs, inj)
	}
	if len(injs) == 0 {
		l.SetFaults(nil)
		return
	}
	l.SetFaults(lun.All(injs...))
}

// injector builds the rule's injector: the delay and the failure, then
// the probability, then the count of matching operations, then the
// operations. So "--op write --nth 3 --probability 0.5" fails the third
// write with probability one half.
func (r FaultRule) injector() (lun.Injector, error) {
	var parts []lun.Injector
	if r.Latency != "" {
		dist, err := ParseLatency(r.Latency)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		parts = append(parts, lun.Delay(dist))
	}
	if r.Error != "" {
		e, ok := faultErrors[strings.ToUpper(r.Error)]
		if !ok {
			return nil, badRequest("error %q: want EIO, ENOSPC, EPERM, EINVAL or ENOMEM", r.Error)
		}
		parts = append(parts, lun.Fail(e))
	}
	if len(parts) == 0 {
		return nil, badRequest("a fault needs a latency, an error or both")
	}
	inj := lun.All(parts...)
	switch {
	case r.Probability < 0 || r.Probability > 1:
		return nil, badRequest("probability %v: want a number in (0, 1]", r.Probability)
	case r.Probability > 0:
		inj = lun.Probability(r.Probability, uint64(r.Seed), inj)
	}
	switch {
	case r.Nth < 0:
		return nil, badRequest("nth %d: want 1 or more", r.Nth)
	case r.Nth > 0:
		inj = lun.Nth(r.Nth, inj)
	}
	if len(r.Ops) > 0 {
		ops := make([]lun.Op, len(r.Ops))
		for i, name := range r.Ops {
			op, ok := lun.ParseOp(strings.ToLower(name))
			if !ok {
				return nil, badRequest("op %q: want read, write, flush, trim, zero or extents", name)
			}
			ops[i] = op
		}
		inj = lun.Only(inj, ops...)
	}
	return inj, nil
}

// String describes the rule on one line.
func (r FaultRule) String() string {
	if r.PowerCut != nil {
		return r.powerCutString()
	}
	var parts []string
	if len(r.Ops) > 0 {
		parts = append(parts, strings.Join(r.Ops, ","))
	} else {
		parts = append(parts, "all ops")
	}
	if r.Latency != "" {
		parts = append(parts, "latency "+r.Latency)
	}
	if r.Error != "" {
		parts = append(parts, "error "+strings.ToUpper(r.Error))
	}
	if r.Nth > 0 {
		parts = append(parts, fmt.Sprintf("op #%d only", r.Nth))
	}
	if r.Probability > 0 {
		parts = append(parts, fmt.Sprintf("probability %g (seed %d)", r.Probability, r.Seed))
	}
	return strings.Join(parts, ", ")
}

// exportURLs returns the NBD URLs of an export on every NBD listener:
// nbd://HOST:PORT/NAME, and nbd+unix:///NAME?socket=PATH.
func (d *Daemon) exportURLs(name string) []string {
	var out []string
	for _, l := range d.nbdLs {
		out = append(out, listenerURI(l.Addr(), name))
	}
	return out
}

// listenerURI is the NBD URI of export name on a listener; "" names the
// default export. An unspecified address is reached on loopback.
func listenerURI(a net.Addr, name string) string {
	path := ""
	if name != "" {
		path = "/" + url.PathEscape(name)
	}
	if a.Network() == "unix" {
		return "nbd+unix://" + cmp.Or(path, "/") + "?socket=" + url.QueryEscape(a.String())
	}
	host := a.String()
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	return "nbd://" + host + path
}

// powerCut cuts the power of LUN name: its NBD connections drop, as a
// power loss drops them, and it comes back holding what its cache mode
// keeps (lun.LUN.PowerCut). A seed of 0 is drawn and reported.
func (d *Daemon) powerCut(ctx context.Context, name string, req PowerCutRequest) (PowerCutResult, error) {
	return d.powerCutBy(ctx, name, req, "")
}

// powerCutBy is powerCut fired by trigger (a fault rule; "" for lun
// powercut), which the result and the LUN's last cut name.
func (d *Daemon) powerCutBy(ctx context.Context, name string, req PowerCutRequest, trigger string) (PowerCutResult, error) {
	l, err := d.array.Get(name)
	if err != nil {
		return PowerCutResult{}, notFound(ErrNoSuchLUN, name)
	}
	keep := lun.KeepRandom
	if req.Keep != "" {
		if keep, err = lun.ParseKeep(req.Keep); err != nil {
			return PowerCutResult{}, badRequest("keep %q: want random, none, all or worst", req.Keep)
		}
	}
	seed := uint64(req.Seed)
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	dropped := d.nbd.Disconnect(l)
	res, err := l.PowerCut(ctx, lun.PowerCutOptions{Keep: keep, Seed: seed, Tear: req.Tear || keep == lun.KeepWorst})
	if err != nil {
		return PowerCutResult{}, fmt.Errorf("LUN %s: %w", name, err)
	}
	d.log.Warn("power cut", "lun", name, "cache", res.Mode.String(), "kept", res.Kept, "pending", res.Pending,
		"torn", res.Torn, "lost_bytes", res.LostBytes, "seed", strconv.FormatUint(seed, 10), "connections_dropped", dropped,
		"trigger", cmp.Or(trigger, "lun powercut"))
	out := PowerCutResult{LUN: name, Cache: res.Mode.String(), Keep: keep.String(), Pending: res.Pending, Kept: res.Kept,
		Forced: res.Forced, Torn: res.Torn, LostBytes: res.LostBytes, Seed: Seed(seed), Dropped: dropped, Summary: res.String(),
		At: time.Now(), Trigger: trigger}
	d.mu.Lock()
	d.mu.lastCut[name] = out
	d.mu.Unlock()
	return out, nil
}

// powerCutString describes a power-cut rule on one line.
func (r FaultRule) powerCutString() string {
	var b strings.Builder
	b.WriteString("power cut")
	switch {
	case r.Within > 0:
		fmt.Fprintf(&b, " at a random instant within %v: %s", time.Duration(r.Within), r.At.Format("15:04:05.000"))
	case len(r.Ops) > 0:
		fmt.Fprintf(&b, " after %s #%d", strings.Join(r.Ops, ","), r.Nth)
	default:
		fmt.Fprintf(&b, " after op #%d", r.Nth)
	}
	fmt.Fprintf(&b, ", keep %s", cmp.Or(r.PowerCut.Keep, "random"))
	if r.PowerCut.Tear {
		b.WriteString(", torn")
	}
	fmt.Fprintf(&b, " (seed %d)", r.Seed)
	return b.String()
}

// cacheUseInfo is the API's CacheUseInfo of a LUN's cache use.
func cacheUseInfo(u lun.CacheUse) CacheUseInfo {
	return CacheUseInfo{Mode: u.Mode.String(), Pending: u.Pending, Bytes: u.Bytes, MaxBytes: u.MaxBytes,
		CrashPoints: u.Points, MaxPoints: u.MaxPoints}
}

// crashPoints lists a LUN's crash points.
func (d *Daemon) crashPoints(name string) ([]CrashPointInfo, error) {
	l, err := d.array.Get(name)
	if err != nil {
		return nil, notFound(ErrNoSuchLUN, name)
	}
	out := []CrashPointInfo{}
	for _, p := range l.CrashPoints() {
		out = append(out, CrashPointInfo{ID: p.ID, Kind: p.Kind, Label: p.Label, At: p.At, Writes: p.Writes})
	}
	return out, nil
}

// mark adds a mark to a LUN's crash points.
func (d *Daemon) mark(name, label string) (CrashPointInfo, error) {
	l, err := d.array.Get(name)
	if err != nil {
		return CrashPointInfo{}, notFound(ErrNoSuchLUN, name)
	}
	p, err := l.Mark(label)
	if err != nil {
		if errors.Is(err, lun.ErrNoCache) {
			return CrashPointInfo{}, err
		}
		return CrashPointInfo{}, badRequest("%v", err)
	}
	return CrashPointInfo{ID: p.ID, Kind: p.Kind, Label: p.Label, At: p.At, Writes: p.Writes}, nil
}

// exposePoint makes a LUN of what name would hold after a power cut at
// crash point id, exported over NBD.
func (d *Daemon) exposePoint(name string, id int, req ExposePointRequest) (LUNInfo, error) {
	as := req.Name
	if as == "" {
		as = fmt.Sprintf("%s.at-%d", name, id)
	}
	l, err := d.array.ExposeCrashPoint(name, id, as, req.Writable)
	switch {
	case errors.Is(err, lun.ErrNotFound):
		return LUNInfo{}, notFound(ErrNoSuchLUN, name)
	case errors.Is(err, lun.ErrExists):
		return LUNInfo{}, existsError(as)
	case err != nil:
		return LUNInfo{}, err
	}
	d.log.Info("crash point exposed", "lun", name, "point", id, "as", as, "writable", req.Writable)
	return d.lunInfo(l), nil
}
