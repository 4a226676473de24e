package daemon

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/vss"
)

// addConfigWriter builds a writer of the configuration and subscribes it.
func (d *Daemon) addConfigWriter(wc WriterConfig) error {
	level, _ := parseLevel(wc.Level)
	info := WriterInfo{ID: vss.NewID(), Name: wc.Name, Level: levelName(level), FreezeTimeout: Duration(wc.FreezeTimeout)}
	var w coordinator.Writer
	switch {
	case wc.Scripted != nil:
		sc, err := wc.Scripted.script()
		if err != nil {
			return err
		}
		if w, err = coordinator.NewScriptedWriter(sc); err != nil {
			return err
		}
		info.Kind = "scripted"
	case wc.Exec != nil:
		o, err := wc.Exec.options()
		if err != nil {
			return err
		}
		o.Logger = d.log.With("writer", wc.Name)
		if w, err = coordinator.NewExecWriter(o); err != nil {
			return err
		}
		info.Kind = "exec"
	case wc.Fsfreeze != nil:
		fw, err := coordinator.NewFsfreezeWriter(wc.Fsfreeze.MountPoint, coordinator.FsfreezeOptions{
			MaxFrozen: wc.Fsfreeze.MaxFrozen, Logger: d.log.With("writer", wc.Name)})
		if err != nil {
			return err
		}
		d.closers = append(d.closers, fw.Close)
		w, info.Kind = fw, "fsfreeze"
	}
	inst, err := d.svc.AddWriter(w, coordinator.WriterOptions{Name: wc.Name, ID: info.ID, Level: level, FreezeTimeout: wc.FreezeTimeout})
	if err != nil {
		return err
	}
	info.InstanceID = inst
	d.mu.Lock()
	d.mu.writers[info.ID] = &writerEntry{info: info}
	d.mu.Unlock()
	return nil
}

// levelName is the API's spelling of a level: front-end, back-end, system.
func levelName(l vss.ApplicationLevel) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(l.String(), "VSS_APP_")), "_", "-")
}

// registerRemote adds a remote writer. A writer that is not ephemeral is
// subscribed at once.
func (d *Daemon) registerRemote(reg WriterRegistration) (WriterInfo, error) {
	if reg.Name == "" {
		return WriterInfo{}, badRequest("a writer needs a name")
	}
	if err := checkWriterName(reg.Name); err != nil {
		return WriterInfo{}, err
	}
	level, err := parseLevel(reg.Level)
	if err != nil {
		return WriterInfo{}, badRequest("%v", err)
	}
	if reg.FreezeTimeout < 0 {
		return WriterInfo{}, badRequest("freeze_timeout must not be negative")
	}
	info := WriterInfo{ID: vss.NewID(), Name: reg.Name, Kind: "remote", Level: levelName(level),
		FreezeTimeout: reg.FreezeTimeout, Ephemeral: reg.Ephemeral, Connected: true, LastSeen: time.Now()}
	rw := newRemoteWriter(d, info.ID, reg.Name)
	d.mu.Lock()
	if d.mu.stopping {
		d.mu.Unlock()
		return WriterInfo{}, ErrStopping
	}
	for _, e := range d.mu.writers {
		if e.info.Name == reg.Name {
			d.mu.Unlock()
			return WriterInfo{}, fmt.Errorf("writer %q: %w", reg.Name, coordinator.ErrDuplicate)
		}
	}
	d.mu.writers[info.ID] = &writerEntry{info: info, remote: rw}
	d.mu.Unlock()
	if !reg.Ephemeral {
		if err := d.subscribe(info.ID); err != nil {
			d.dropWriter(info.ID, "")
			return WriterInfo{}, err
		}
	}
	return d.writerInfo(info.ID)
}

// subscribe adds a known remote writer to the service.
func (d *Daemon) subscribe(id vss.ID) error {
	d.mu.Lock()
	e, ok := d.mu.writers[id]
	if !ok || e.remote == nil {
		d.mu.Unlock()
		return notFound(ErrNoSuchWriter, id.String())
	}
	if !e.info.InstanceID.IsNull() {
		d.mu.Unlock()
		return fmt.Errorf("writer %s: %w", e.info.Name, ErrWriterInUse)
	}
	level, _ := parseLevel(e.info.Level)
	opts := coordinator.WriterOptions{Name: e.info.Name, ID: e.info.ID, Level: level, FreezeTimeout: time.Duration(e.info.FreezeTimeout)}
	rw := e.remote
	d.mu.Unlock()
	// No second subscriber races this one: a writer that is not ephemeral
	// is subscribed once, at registration, and ephemeral ones only under
	// d.seq.
	inst, err := d.svc.AddWriter(rw, opts)
	if err != nil {
		return err
	}
	d.mu.Lock()
	_, still := d.mu.writers[id]
	if still {
		e.info.InstanceID = inst
	}
	d.mu.Unlock()
	if !still { // dropped meanwhile
		_ = d.svc.RemoveWriter(inst)
		return notFound(ErrNoSuchWriter, id.String())
	}
	return nil
}

// unsubscribe removes a remote writer from the service, keeping it known.
func (d *Daemon) unsubscribe(id vss.ID) {
	d.mu.Lock()
	e, ok := d.mu.writers[id]
	var inst vss.ID
	if ok {
		inst, e.info.InstanceID = e.info.InstanceID, vss.ID{}
	}
	d.mu.Unlock()
	if !inst.IsNull() {
		_ = d.svc.RemoveWriter(inst)
	}
}

// dropWriter forgets a remote writer: it leaves the service and its
// pending event, if any, is answered as a detached writer answers.
func (d *Daemon) dropWriter(id vss.ID, why string) (WriterInfo, error) {
	d.mu.Lock()
	e, ok := d.mu.writers[id]
	if !ok || e.remote == nil {
		d.mu.Unlock()
		return WriterInfo{}, notFound(ErrNoSuchWriter, id.String())
	}
	delete(d.mu.writers, id)
	info := e.info
	d.mu.Unlock()
	if !info.InstanceID.IsNull() {
		_ = d.svc.RemoveWriter(info.InstanceID)
	}
	e.remote.close()
	if why != "" {
		d.log.Warn("remote writer dropped", "writer", info.Name, "id", id.String(), "why", why)
	} else {
		d.log.Info("remote writer detached", "writer", info.Name, "id", id.String())
	}
	info.Connected = false
	return info, nil
}

// remote returns a remote writer by ID.
func (d *Daemon) remote(id vss.ID) (*remoteWriter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.mu.writers[id]
	if !ok || e.remote == nil {
		return nil, notFound(ErrNoSuchWriter, id.String())
	}
	return e.remote, nil
}

// writerInfo describes one writer, with a remote writer's liveness.
func (d *Daemon) writerInfo(id vss.ID) (WriterInfo, error) {
	d.mu.Lock()
	e, ok := d.mu.writers[id]
	d.mu.Unlock()
	if !ok {
		return WriterInfo{}, notFound(ErrNoSuchWriter, id.String())
	}
	return d.describe(e), nil
}

func (d *Daemon) describe(e *writerEntry) WriterInfo {
	d.mu.Lock()
	info := e.info
	d.mu.Unlock()
	if e.remote != nil {
		idle, last := e.remote.idle()
		info.Connected, info.LastSeen = idle < d.remoteTimeout(), last
	}
	return info
}

// writers lists every writer, by name.
func (d *Daemon) writers() []WriterInfo {
	d.mu.Lock()
	es := make([]*writerEntry, 0, len(d.mu.writers))
	for _, e := range d.mu.writers {
		es = append(es, e)
	}
	d.mu.Unlock()
	out := make([]WriterInfo, len(es))
	for i, e := range es {
		out[i] = d.describe(e)
	}
	slices.SortFunc(out, func(a, b WriterInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// reap drops remote writers whose client went silent: no poll, no answer
// and no event in hand for the remote-writer timeout (D3).
func (d *Daemon) reap(ctx context.Context) {
	timeout := d.remoteTimeout()
	t := time.NewTicker(max(timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		var silent []*writerEntry
		for _, e := range d.mu.writers {
			if e.remote != nil {
				silent = append(silent, e)
			}
		}
		d.mu.Unlock()
		for _, e := range silent {
			if idle, _ := e.remote.idle(); idle > timeout {
				_, _ = d.dropWriter(e.info.ID, fmt.Sprintf("its client was silent for %v", idle.Round(time.Millisecond)))
			}
		}
	}
}
