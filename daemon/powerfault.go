package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/shadowbench/shadowbench/lun"
)

// A power-cut fault rule (FaultRule.PowerCut) cuts a LUN's power once, as
// lun powercut does (powerCut: the LUN's NBD connections drop, then
// lun.LUN.PowerCut), when its trigger fires, and is then cleared:
//
//   - nth: at the Nth operation the rule counts (of its ops, or all). That
//     operation lands; no operation admitted after it lands before the
//     cut (lun.LUN.PowerFault closes the gate first).
//   - within: at a random instant in [0, within) from the arming, drawn
//     from the rule's seed, which the rule shows with the instant.
//
// The cut runs on a goroutine the daemon owns (cuts), since the nth
// trigger fires inside an I/O; shutdown stops the timers and waits for the
// cuts under way before it closes anything. A rule cleared or a LUN
// deleted before its trigger fires cuts nothing. Power-cut rules are not
// written down: they need an emulated cache, which only in-memory arrays
// have.

// powerCutTimeout bounds a triggered cut: it holds a gate with nothing in
// flight and replays the writes since the durable point, milliseconds.
const powerCutTimeout = 30 * time.Second

// armedCut is what the daemon keeps of an armed power-cut rule: the
// injector of an nth trigger (kept across the reinstalls of the LUN's
// rules, so that its count goes on) or the timer of a within trigger.
type armedCut struct {
	inj   lun.Injector
	timer *time.Timer
}

// isPowerCut reports whether the rule cuts power rather than delaying or
// failing operations.
func (r FaultRule) isPowerCut() bool { return r.PowerCut != nil || r.Within != 0 }

// checkPowerCut checks a power-cut rule for LUN l, and fills in its seed
// (drawn when none is given, and shown) and, for a within trigger, its
// instant.
func checkPowerCut(l *lun.LUN, r *FaultRule, now time.Time) error {
	switch {
	case r.PowerCut == nil:
		return badRequest("within %v arms a power cut: add powercut (lun fault --powercut)", time.Duration(r.Within))
	case r.Latency != "" || r.Error != "" || r.Probability != 0:
		return badRequest("a power cut takes no latency, error or probability: it fires once, at the nth operation or within a window")
	case r.Nth < 0:
		return badRequest("nth %d: want 1 or more", r.Nth)
	case r.Within < 0:
		return badRequest("within %v: must not be negative", time.Duration(r.Within))
	case r.Nth > 0 && r.Within > 0:
		return badRequest("give nth or within, not both")
	case r.Nth == 0 && r.Within == 0:
		return badRequest("a power cut rule needs a trigger: nth (the Nth matching operation) or within (a random instant in that window); lun powercut cuts at once")
	case r.Within > 0 && len(r.Ops) > 0:
		return badRequest("ops count operations for nth; a power cut within a window counts none")
	case r.PowerCut.Seed != 0 && r.Seed != 0 && r.PowerCut.Seed != r.Seed:
		return badRequest("seeds %d and %d: a power cut rule has one seed, the rule's", r.Seed, r.PowerCut.Seed)
	}
	if r.PowerCut.Keep != "" {
		if _, err := lun.ParseKeep(r.PowerCut.Keep); err != nil {
			return badRequest("keep %q: want random, none, all or worst", r.PowerCut.Keep)
		}
	}
	for _, name := range r.Ops {
		if _, ok := lun.ParseOp(name); !ok {
			return badRequest("op %q: want read, write, flush, trim, zero or extents", name)
		}
	}
	if l.CacheMode() == lun.CacheNone {
		return fmt.Errorf("%w: %s", lun.ErrNoCache, l.Name())
	}
	if r.Seed == 0 {
		r.Seed = r.PowerCut.Seed
	}
	if r.Seed == 0 {
		r.Seed = Seed(rand.Uint64() | 1)
	}
	cut := *r.PowerCut
	cut.Seed = r.Seed
	r.PowerCut = &cut
	if r.Within > 0 {
		r.At = now.Add(withinDelay(r.Within, r.Seed))
	}
	return nil
}

// withinDelay is the instant of a within trigger (lun.PowerCutInstant).
func withinDelay(within Duration, seed Seed) time.Duration {
	return lun.PowerCutInstant(time.Duration(within), uint64(seed))
}

// armLocked arms power-cut rule r of LUN l: its injector or its timer.
// Under d.mu.
func (d *Daemon) armLocked(l *lun.LUN, r FaultRule) {
	name, id, req := l.Name(), r.id, *r.PowerCut
	a := &armedCut{}
	if r.Within > 0 {
		a.timer = time.AfterFunc(time.Until(r.At), func() {
			if d.startCut(id) {
				d.cut(name, id, req, nil)
			}
		})
	} else {
		var inj lun.Injector = l.PowerFault(r.Nth, func(h *lun.Hold) {
			if !d.startCut(id) {
				_ = h.Release()
				return
			}
			go d.cut(name, id, req, h)
		})
		if len(r.Ops) > 0 {
			ops := make([]lun.Op, len(r.Ops))
			for i, o := range r.Ops {
				ops[i], _ = lun.ParseOp(o) // checked by checkPowerCut
			}
			inj = lun.Only(inj, ops...)
		}
		a.inj = inj
	}
	d.mu.cuts[id] = a
}

// startCut reports whether armed rule id is to fire (it is still armed
// and the daemon is not stopping), and then counts its cut in cuts, under
// d.mu, so that shutdown's wait cannot miss it. A within trigger's cut
// runs on its timer's goroutine; an nth trigger's on one of its own.
func (d *Daemon) startCut(id uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.stopping || d.mu.cuts[id] == nil {
		return false
	}
	d.cuts.Add(1)
	return true
}

// cut fires armed rule id: the power cut as lun powercut does it, then the
// rule cleared, then the hold of the nth operation (nil for a timer)
// released, so that the I/O queued at the gate fails with its dropped
// connection rather than landing before the cut.
func (d *Daemon) cut(name string, id uint64, req PowerCutRequest, h *lun.Hold) {
	defer d.cuts.Done()
	if h != nil {
		defer func() { _ = h.Release() }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), powerCutTimeout)
	defer cancel()
	trigger := ""
	d.mu.Lock()
	for _, r := range d.mu.faults[name] {
		if r.id == id {
			trigger = "fault rule: " + r.String()
		}
	}
	d.mu.Unlock()
	if _, err := d.powerCutBy(ctx, name, req, trigger); err != nil {
		d.log.Error("power cut fault rule failed", "lun", name, "rule", trigger, "err", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rules := d.mu.faults[name]
	for i, r := range rules {
		if r.id == id {
			rules = append(rules[:i:i], rules[i+1:]...)
			break
		}
	}
	delete(d.mu.cuts, id)
	if len(rules) == 0 {
		delete(d.mu.faults, name)
	} else {
		d.mu.faults[name] = rules
	}
	if l, err := d.array.Get(name); err == nil {
		d.installLocked(l, rules)
	}
}

// disarmLocked stops the triggers of rules, which are being removed.
// Under d.mu.
func (d *Daemon) disarmLocked(rules []FaultRule) {
	for _, r := range rules {
		if a := d.mu.cuts[r.id]; a != nil {
			if a.timer != nil {
				a.timer.Stop()
			}
			delete(d.mu.cuts, r.id)
		}
	}
}

// stopCuts disarms every power-cut rule and waits for the cuts under way:
// shutdown's first step, before it closes what they use.
func (d *Daemon) stopCuts() {
	d.mu.Lock()
	for _, a := range d.mu.cuts {
		if a.timer != nil {
			a.timer.Stop()
		}
	}
	d.mu.Unlock()
	d.cuts.Wait()
}
