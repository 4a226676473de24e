package scenarios

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/lun"
)

// A powercut step with after-writes or within arms the cut rather than
// cutting at once, as the daemon's power-cut fault rules do: right after
// the Nth write to the LUN from the step on lands (lun.LUN.PowerFault:
// nothing admitted after it lands before the cut), or at a random instant
// of the window, drawn from the step's seed (lun.PowerCutInstant, scenario
// time). The cut itself is the powercut step's. Each step ends by waiting
// for the cuts under way, so that the step after an armed cut fired sees
// the LUN as the cut left it: a scenario reads the same from run to run.
// finish disarms what never fired.

// armedCut is a cut a powercut step armed.
type armedCut struct {
	spec  *cutSpec
	line  int
	inj   lun.Injector // after-writes; nil for within
	timer *time.Timer  // within

	mu    sync.Mutex
	state cutState
	done  chan struct{} // closed when the cut is over
}

// cutState is an armed cut's state: armed, firing, fired or disarmed.
type cutState uint8

const (
	cutArmed cutState = iota
	cutFiring
	cutFired
	cutDisarmed
)

// start moves an armed cut to firing, and reports whether it was armed.
func (a *armedCut) start() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != cutArmed {
		return false
	}
	a.state = cutFiring
	return true
}

// wait waits for the cut if it is under way.
func (a *armedCut) wait() {
	a.mu.Lock()
	firing := a.state == cutFiring
	a.mu.Unlock()
	if firing {
		<-a.done
	}
}

// arm arms step s's cut.
func (r *runner) arm(s *step, fail func(expected, got string)) {
	l, err := r.array.Get(s.cut.lun)
	if err != nil {
		fail("the power cut of "+s.cut.lun+" armed", err.Error())
		return
	}
	a := &armedCut{spec: s.cut, line: s.line, done: make(chan struct{})}
	if s.cut.within > 0 {
		delay := lun.PowerCutInstant(r.scaled(s.cut.within), s.cut.seed)
		a.timer = time.AfterFunc(delay, func() {
			if a.start() {
				r.fire(l, a, nil)
			}
		})
	} else {
		a.inj = lun.Only(l.PowerFault(int64(s.cut.afterWrites), func(h *lun.Hold) {
			if !a.start() {
				_ = h.Release()
				return
			}
			go r.fire(l, a, h)
		}), lun.OpWrite)
	}
	r.cutMu.Lock()
	r.cuts = append(r.cuts, a)
	r.installFaultsLocked(l)
	r.cutMu.Unlock()
}

// fire cuts the power as the powercut step does, removes the cut's
// injector, then releases the hold of the Nth write (nil for a timer).
func (r *runner) fire(l *lun.LUN, a *armedCut, h *lun.Hold) {
	defer close(a.done)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	res, err := l.PowerCut(ctx, lun.PowerCutOptions{Keep: a.spec.keep, Seed: a.spec.seed, Tear: a.spec.tear})
	trigger := fmt.Sprintf("after write #%d", a.spec.afterWrites)
	if a.spec.within > 0 {
		trigger = fmt.Sprintf("within %v", a.spec.within)
	}
	log := slog.New(r.logs.with("component", "array"))
	if err != nil {
		log.Error("armed power cut failed", "lun", l.Name(), "step_line", a.line, "err", err)
	} else {
		log.Warn("power cut", "lun", l.Name(), "trigger", trigger, "step_line", a.line, "result", res.String())
	}
	a.mu.Lock()
	a.state = cutFired
	a.mu.Unlock()
	r.cutMu.Lock()
	r.installFaultsLocked(l)
	r.cutMu.Unlock()
	if h != nil {
		_ = h.Release()
	}
}

// installFaultsLocked installs LUN l's faults: the file's, then the
// injectors of its cuts still armed. Under r.cutMu.
func (r *runner) installFaultsLocked(l *lun.LUN) {
	var injs []lun.Injector
	if inj := r.faultInjs[l.Name()]; inj != nil {
		injs = append(injs, inj)
	}
	for _, a := range r.cuts {
		a.mu.Lock()
		armed := a.state == cutArmed
		a.mu.Unlock()
		if a.inj != nil && armed && a.spec.lun == l.Name() {
			injs = append(injs, a.inj)
		}
	}
	switch len(injs) {
	case 0:
		l.SetFaults(nil)
	case 1:
		l.SetFaults(injs[0])
	default:
		l.SetFaults(lun.All(injs...))
	}
}

// waitCuts waits for the armed cuts under way.
func (r *runner) waitCuts() {
	r.cutMu.Lock()
	cuts := append([]*armedCut(nil), r.cuts...)
	r.cutMu.Unlock()
	for _, a := range cuts {
		a.wait()
	}
}

// disarmCuts disarms the cuts that never fired and waits for those under
// way (R2).
func (r *runner) disarmCuts() {
	r.cutMu.Lock()
	cuts := append([]*armedCut(nil), r.cuts...)
	r.cutMu.Unlock()
	for _, a := range cuts {
		if a.timer != nil {
			a.timer.Stop()
		}
		a.mu.Lock()
		if a.state == cutArmed {
			a.state = cutDisarmed
		}
		a.mu.Unlock()
		a.wait()
	}
}
