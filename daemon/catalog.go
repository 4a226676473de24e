package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// What the daemon keeps of the VSS service in a durable array's catalogue,
// beside the array's own records: the snapshots the service holds, by
// snapshot ID (coordinator.SavedSnapshot), and its providers' IDs, by
// name, so that the snapshots name the same provider after a restart.
// An in-memory array keeps none of it.
//
// The snapshot records are written after every API call that may change
// them, before its answer. A snapshot set whose commit returned (its LUNs
// durable, D2) but whose record was not written yet when the daemon died
// comes back as snapshot LUNs without a snapshot record: `lun list` shows
// them, `lun delete` removes them.
//
// The fault rules of each LUN are kept too, by LUN name, written before
// the API answers the call that changed them: a test bench set up to fail
// comes back failing. A rule's count (--nth) starts again at a restart.
const (
	snapshotsBucket = "snapshots"
	providersBucket = "providers"
	faultsBucket    = "faults"
)

// catalog is the daemon's record of what it last wrote of the snapshots.
type catalog struct {
	mu    sync.Mutex
	saved map[string][]byte // by snapshot ID, as written
}

// providerID returns the provider ID the array's catalogue gives name, or
// a new one, written down, for a name it does not know yet.
func providerID(a *lun.Array, name string) (vss.ID, error) {
	if !a.Durable() {
		return vss.NewID(), nil
	}
	recs, err := a.Records(providersBucket)
	if err != nil {
		return vss.ID{}, err
	}
	if v, ok := recs[name]; ok {
		id, err := vss.ParseID(string(v))
		if err != nil {
			return vss.ID{}, fmt.Errorf("%s: provider %s: ID %q: %w", a.Dir(), name, v, err)
		}
		return id, nil
	}
	id := vss.NewID()
	return id, a.PutRecord(providersBucket, name, []byte(id.String()))
}

// savedRecord is a snapshot's record in the catalogue: the service's,
// with the name of its set.
type savedRecord struct {
	coordinator.SavedSnapshot
	Name string `json:"name,omitempty"`
}

// restoreSnapshots gives the service back the snapshots the catalogue
// holds. An auto-release snapshot's requester ended with the daemon that
// made it, so its LUNs are deleted, as the snapshot would have been when
// the requester was released (vss-spec.md A.10). A record that no longer
// matches the array (its LUNs gone, or its provider not configured) is
// dropped with a warning, and its LUNs stay.
func (d *Daemon) restoreSnapshots() error {
	if !d.array.Durable() {
		return nil
	}
	recs, err := d.array.Records(snapshotsBucket)
	if err != nil {
		return err
	}
	var keep []coordinator.SavedSnapshot
	drop := map[string][]byte{}
	released := 0
	names := map[vss.ID]string{}
	for key, v := range recs {
		var r savedRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%s: snapshot record %s: %w", d.array.Dir(), key, err)
		}
		s := r.SavedSnapshot
		if r.Name != "" {
			names[s.Properties.SnapshotSetID] = r.Name
		}
		p := s.Properties
		if p.Context.AutoRelease() {
			for _, t := range p.TargetLUNs {
				if err := d.array.Delete(t); err != nil && !errors.Is(err, lun.ErrNotFound) {
					return fmt.Errorf("auto-release snapshot %v: LUN %s: %w", p.SnapshotID, t, err)
				}
			}
			drop[key] = nil
			released++
			continue
		}
		keep = append(keep, s)
	}
	// A set's snapshots are adopted by their provider together.
	bySet := map[vss.ID][]coordinator.SavedSnapshot{}
	for _, s := range keep {
		bySet[s.Properties.SnapshotSetID] = append(bySet[s.Properties.SnapshotSetID], s)
	}
	var restored []coordinator.SavedSnapshot
	for set, snaps := range bySet {
		if err := d.adoptSet(set, snaps); err != nil {
			d.log.Warn("snapshot set not restored: its LUNs stay, without the set's record", "set", set, "err", err)
			for _, s := range snaps {
				drop[s.Properties.SnapshotID.String()] = nil
			}
			continue
		}
		restored = append(restored, snaps...)
	}
	if err := d.svc.Restore(restored); err != nil {
		return err
	}
	d.mu.Lock()
	for _, s := range restored {
		p := s.Properties
		rec := d.mu.sets[p.SnapshotSetID]
		if rec == nil {
			rec = &setRecord{context: p.Context, name: names[p.SnapshotSetID]}
			d.mu.sets[p.SnapshotSetID] = rec
		}
		rec.targets = append(rec.targets, p.OriginalVolume)
		slices.Sort(rec.targets)
	}
	d.mu.Unlock()
	if len(drop) > 0 {
		if err := d.array.PutRecords(snapshotsBucket, drop); err != nil {
			return err
		}
	}
	d.catalog.saved = map[string][]byte{}
	for _, s := range restored {
		d.catalog.saved[s.Properties.SnapshotID.String()] = recs[s.Properties.SnapshotID.String()]
	}
	if released > 0 || len(restored) > 0 {
		d.log.Info("snapshots restored", "snapshots", len(restored), "sets", len(bySet),
			"auto_release_deleted", released)
	}
	return nil
}

// adoptSet has the snapshots' provider take on their LUNs.
func (d *Daemon) adoptSet(set vss.ID, snaps []coordinator.SavedSnapshot) error {
	var e *providerEntry
	for _, p := range d.provs {
		if p.reg.ID == snaps[0].Properties.ProviderID {
			e = p
		}
	}
	if e == nil {
		return fmt.Errorf("provider %v is not configured", snaps[0].Properties.ProviderID)
	}
	var devices []string
	var infos []provider.LunInfo
	for _, s := range snaps {
		if len(s.Properties.TargetLUNs) != len(s.Targets) {
			return fmt.Errorf("snapshot %v: %d target LUNs and %d LUN records", s.Properties.SnapshotID, len(s.Properties.TargetLUNs), len(s.Targets))
		}
		devices = append(devices, s.Properties.TargetLUNs...)
		infos = append(infos, s.Targets...)
	}
	return e.prov.Adopt(set, snaps[0].Properties.Context, devices, infos)
}

// saveSnapshots writes down the snapshot records that changed since the
// last time, in one transaction. A failure is logged: the records stay as
// they were, and the next call writes them again.
func (d *Daemon) saveSnapshots() {
	if !d.array.Durable() {
		return
	}
	d.catalog.mu.Lock()
	defer d.catalog.mu.Unlock()
	now := map[string][]byte{}
	for _, s := range d.svc.Saved() {
		v, err := json.Marshal(savedRecord{SavedSnapshot: s, Name: d.setName(s.Properties.SnapshotSetID)})
		if err != nil {
			d.log.Error("snapshot record", "snapshot", s.Properties.SnapshotID, "err", err)
			continue
		}
		now[s.Properties.SnapshotID.String()] = v
	}
	changes := map[string][]byte{}
	for k, v := range now {
		if !bytes.Equal(d.catalog.saved[k], v) {
			changes[k] = v
		}
	}
	for k := range d.catalog.saved {
		if _, ok := now[k]; !ok {
			changes[k] = nil
		}
	}
	if len(changes) == 0 {
		return
	}
	if err := d.array.PutRecords(snapshotsBucket, changes); err != nil {
		d.log.Error("writing the snapshot records", "dir", d.array.Dir(), "err", err)
		return
	}
	d.catalog.saved = now
}

// saveFaults writes down a LUN's fault rules; none deletes the record.
func (d *Daemon) saveFaults(name string, rules []FaultRule) error {
	var v []byte
	if len(rules) > 0 {
		var err error
		if v, err = json.Marshal(rules); err != nil {
			return err
		}
	}
	if err := d.array.PutRecord(faultsBucket, name, v); err != nil {
		return fmt.Errorf("LUN %s: writing its fault rules: %w", name, err)
	}
	return nil
}

// restoreFaults installs the fault rules the catalogue holds. Rules of a
// LUN that is gone are dropped; a rule this daemon cannot build (written
// by another version) is an error that names it.
func (d *Daemon) restoreFaults() error {
	if !d.array.Durable() {
		return nil
	}
	recs, err := d.array.Records(faultsBucket)
	if err != nil {
		return err
	}
	drop := map[string][]byte{}
	restored := 0
	for name, v := range recs {
		l, err := d.array.Get(name)
		if err != nil {
			drop[name] = nil
			continue
		}
		var rules []FaultRule
		if err := json.Unmarshal(v, &rules); err != nil {
			return fmt.Errorf("%s: fault rules of LUN %s: %w", d.array.Dir(), name, err)
		}
		for _, r := range rules {
			if _, err := r.injector(); err != nil {
				return fmt.Errorf("%s: fault rule %s of LUN %s: %w", d.array.Dir(), r, name, err)
			}
		}
		d.mu.Lock()
		for i := range rules {
			d.mu.nextRule++
			rules[i].id = d.mu.nextRule
		}
		d.mu.faults[name] = rules
		d.installLocked(l, rules)
		d.mu.Unlock()
		restored += len(rules)
	}
	if len(drop) > 0 {
		if err := d.array.PutRecords(faultsBucket, drop); err != nil {
			return err
		}
	}
	if restored > 0 {
		d.log.Warn("fault rules restored: the LUNs fail as they were set to", "rules", restored)
	}
	return nil
}
