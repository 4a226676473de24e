package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// Document is the Backup Components Document of a created set: for a
// transportable set, what another host needs to import it (A.7 q, A.11).
type Document struct {
	SnapshotSetID vss.ID              `json:"snapshot_set_id"`
	Context       vss.SnapshotContext `json:"context"`
	Snapshots     []DocumentSnapshot  `json:"snapshots"`
}

// DocumentSnapshot is one snapshot of a Document.
type DocumentSnapshot struct {
	SnapshotID     vss.ID             `json:"snapshot_id"`
	OriginalVolume string             `json:"original_volume"`
	ProviderID     vss.ID             `json:"provider_id"`
	SourceLUNs     []string           `json:"source_luns"`
	Sources        []provider.LunInfo `json:"sources"`
	Targets        []provider.LunInfo `json:"targets"`
}

func parseDocument(b []byte) (*Document, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("coordinator: backup components document: %w", err)
	}
	if d.SnapshotSetID.IsNull() || len(d.Snapshots) == 0 {
		return nil, errors.New("coordinator: backup components document names no snapshot set")
	}
	return &d, nil
}

// SaveDocument returns the Backup Components Document of the set this
// requester created (SaveAsXML's counterpart, in JSON).
func (b *BackupComponents) SaveDocument() ([]byte, error) {
	b.mu.Lock()
	if err := b.releasedLocked(); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	set := b.mu.lastSet
	b.mu.Unlock()
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	rec, ok := b.s.mu.sets[set]
	if !ok || rec.state != "created" {
		return nil, vss.VSS_E_BAD_STATE
	}
	d := Document{SnapshotSetID: set}
	for _, id := range rec.snaps {
		r := b.s.mu.snapshots[id]
		if r == nil {
			continue
		}
		d.Context = r.Context
		d.Snapshots = append(d.Snapshots, DocumentSnapshot{SnapshotID: id, OriginalVolume: r.OriginalVolume,
			ProviderID: r.ProviderID, SourceLUNs: r.SourceLUNs, Sources: r.sources, Targets: r.targets})
	}
	return json.MarshalIndent(d, "", "  ")
}

// DeleteSnapshots deletes one snapshot (VSS_OBJECT_SNAPSHOT) or every
// snapshot of a set (VSS_OBJECT_SNAPSHOT_SET), one by one, stopping at the
// first failure. For each target LUN the provider gets FillInLunInfo and
// then OnLunEmpty. It returns how many were deleted and the first that was
// not.
func (b *BackupComponents) DeleteSnapshots(ctx context.Context, id vss.ID, t vss.ObjectType, force bool) (int, vss.ID, error) {
	b.mu.Lock()
	err := b.checkLocked(opManage)
	b.mu.Unlock()
	if errors.Is(err, errReleased) {
		return 0, vss.ID{}, err
	}
	if err != nil {
		return 0, vss.ID{}, vss.VSS_E_UNEXPECTED
	}
	return b.s.deleteSnapshots(ctx, b.tl, id, t)
}

func (s *Service) deleteSnapshots(ctx context.Context, tl *Timeline, id vss.ID, t vss.ObjectType) (int, vss.ID, error) {
	var ids []vss.ID
	s.mu.Lock()
	switch t {
	case vss.VSS_OBJECT_SNAPSHOT:
		if _, ok := s.mu.snapshots[id]; ok {
			ids = []vss.ID{id}
		}
	case vss.VSS_OBJECT_SNAPSHOT_SET:
		if rec, ok := s.mu.sets[id]; ok {
			for _, sid := range rec.snaps {
				if _, ok := s.mu.snapshots[sid]; ok {
					ids = append(ids, sid)
				}
			}
		}
	default:
		s.mu.Unlock()
		return 0, vss.ID{}, fmt.Errorf("%w: object type %v", vss.E_INVALIDARG, t)
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return 0, vss.ID{}, vss.VSS_E_OBJECT_NOT_FOUND
	}
	for n, sid := range ids {
		if err := s.deleteOne(ctx, tl, sid); err != nil {
			return n, sid, err
		}
	}
	return len(ids), vss.ID{}, nil
}

// deleteOne reclaims one snapshot's target LUNs through its provider.
func (s *Service) deleteOne(ctx context.Context, tl *Timeline, id vss.ID) error {
	s.mu.Lock()
	r, ok := s.mu.snapshots[id]
	s.mu.Unlock()
	if !ok {
		return vss.VSS_E_OBJECT_NOT_FOUND
	}
	run := &setRun{s: s, id: r.SnapshotSetID, tl: tl}
	for i, t := range r.targets {
		dev := s.targetDevice(ctx, r, i, t)
		if dev == "" {
			continue // reclaimed already, or never surfaced and gone
		}
		info := r.targets[i]
		var known bool
		run.callProvider(ctx, r.reg, vss.MethodFillInLunInfo, func(ctx context.Context) (err error) {
			known, err = r.reg.Provider.FillInLunInfo(ctx, dev, &info)
			return err
		})
		if !known {
			continue
		}
		if hr := run.callProvider(ctx, r.reg, vss.MethodOnLunEmpty, func(ctx context.Context) error {
			return r.reg.Provider.OnLunEmpty(ctx, dev, info)
		}); hr.Failed() {
			return hr
		}
	}
	s.mu.Lock()
	delete(s.mu.snapshots, id)
	s.mu.Unlock()
	return nil
}

// targetDevice finds the i-th target LUN of a snapshot, t: in the
// service's array by its page-83 identifier, masked or not; on a host's
// array, as the snapshot surfaced it, or else by a rescan of that array
// (which finds unmasked LUNs only: a transportable snapshot never imported
// there is not found, and its provider is not told to reclaim it).
func (s *Service) targetDevice(ctx context.Context, r *snapshotRecord, i int, t provider.LunInfo) string {
	if r.host == nil {
		return s.deviceOf(t)
	}
	if i < len(r.TargetLUNs) && r.TargetLUNs[i] != "" {
		return r.TargetLUNs[i]
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProviderTimeout)
	defer cancel()
	devs, err := r.host.Host.Rescan(ctx, [][]byte{t.NAA()})
	if err == nil && len(devs) != 1 {
		err = fmt.Errorf("%d devices for 1 designator", len(devs))
	}
	if err != nil {
		s.log.Warn("rescan failed", "provider", r.host.Name, "snapshot", r.SnapshotID.String(), "err", err)
		return ""
	}
	return devs[0]
}

// deviceOf finds a target LUN by its page-83 identifier, masked or not.
func (s *Service) deviceOf(t provider.LunInfo) string {
	naa := t.NAA()
	for _, l := range s.array.List() {
		id := l.Identity().NAA
		if naa != nil && string(id[:]) == string(naa) {
			return l.Name()
		}
	}
	return ""
}

// BreakSnapshotSet makes a set's snapshot LUNs ordinary LUNs that VSS no
// longer manages. Hardware snapshots only, imported first.
func (b *BackupComponents) BreakSnapshotSet(ctx context.Context, set vss.ID) error {
	return b.BreakSnapshotSetEx(ctx, set, 0)
}

// BreakSnapshotSetEx is BreakSnapshotSet with flags: MASK_LUNS,
// MAKE_READ_WRITE, REVERT_IDENTITY_ALL or REVERT_IDENTITY_NONE. Reverting the
// identity fails with VSS_E_BREAK_REVERT_ID_FAILED while the original LUNs
// are present, as two disks cannot share one identity.
func (b *BackupComponents) BreakSnapshotSetEx(ctx context.Context, set vss.ID, flags vss.HardwareOptions) error {
	b.mu.Lock()
	err := b.checkLocked(opManage)
	b.mu.Unlock()
	if errors.Is(err, errReleased) {
		return err
	}
	if err != nil {
		return vss.VSS_E_UNEXPECTED
	}
	known := vss.VSS_BREAKEX_FLAG_MASK_LUNS | vss.VSS_BREAKEX_FLAG_MAKE_READ_WRITE |
		vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL | vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE
	both := vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL | vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE
	if flags&^known != 0 || flags&both == both {
		return fmt.Errorf("%w: flags %v", vss.E_INVALIDARG, flags)
	}
	s := b.s
	s.mu.Lock()
	rec, ok := s.mu.sets[set]
	var recs []*snapshotRecord
	if ok {
		for _, id := range rec.snaps {
			if r := s.mu.snapshots[id]; r != nil {
				recs = append(recs, r)
			}
		}
	}
	s.mu.Unlock()
	if len(recs) == 0 {
		return vss.VSS_E_OBJECT_NOT_FOUND
	}
	for _, r := range recs {
		if r.reg.Type != vss.VSS_PROV_HARDWARE {
			return vss.VSS_E_PROVIDER_VETO // software snapshots cannot be broken
		}
		if !r.Imported {
			return fmt.Errorf("%w: snapshot %v is not imported", vss.E_INVALIDARG, r.SnapshotID)
		}
	}
	if flags&vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL != 0 {
		for _, r := range recs {
			for _, src := range r.SourceLUNs {
				if _, err := s.array.Get(src); err == nil {
					return vss.VSS_E_BREAK_REVERT_ID_FAILED
				}
			}
		}
	}
	run := &setRun{s: s, id: set, tl: b.tl}
	for _, r := range recs {
		ex, isEx := r.reg.Provider.(provider.HardwareProviderEx)
		var notify vss.HardwareOptions
		if flags&vss.VSS_BREAKEX_FLAG_MAKE_READ_WRITE != 0 {
			notify |= vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE
		}
		if flags&vss.VSS_BREAKEX_FLAG_MASK_LUNS != 0 {
			notify |= vss.VSS_ONLUNSTATECHANGE_DO_MASK_LUNS
		}
		if notify != 0 {
			if !isEx {
				return vss.VSS_E_PROVIDER_VETO
			}
			if hr := run.callProvider(ctx, r.reg, vss.MethodOnLunStateChange, func(ctx context.Context) error {
				return ex.OnLunStateChange(ctx, slices.Clone(r.targets), slices.Clone(r.sources), notify)
			}); hr.Failed() {
				return hr
			}
		}
	}
	s.mu.Lock()
	for _, r := range recs {
		delete(s.mu.snapshots, r.SnapshotID)
	}
	s.mu.Unlock()
	return nil
}

// ImportSnapshots imports the transportable set of the document given to
// InitializeForBackup (A.11): LocateLuns, a rescan and FillInLunInfo for
// each LUN. It returns VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED as a value when
// some are missing or mismatched, and VSS_E_NO_SNAPSHOTS_IMPORTED when none
// arrived (B.6). A set is imported once.
func (b *BackupComponents) ImportSnapshots(ctx context.Context) (vss.HRESULT, error) {
	b.mu.Lock()
	if err := b.checkLocked(opImport); err != nil {
		b.mu.Unlock()
		return 0, err
	}
	d := b.mu.doc
	if d == nil || b.mu.imported {
		b.mu.Unlock()
		return 0, fmt.Errorf("%w: no document to import, or imported already", vss.VSS_E_BAD_STATE)
	}
	b.mu.imported = true
	b.mu.Unlock()

	s := b.s
	s.mu.Lock()
	for _, ds := range d.Snapshots {
		if r, ok := s.mu.snapshots[ds.SnapshotID]; ok && r.Imported {
			s.mu.Unlock()
			return 0, fmt.Errorf("%w: snapshot %v is imported already", vss.VSS_E_BAD_STATE, ds.SnapshotID)
		}
	}
	s.mu.Unlock()

	run := &setRun{s: s, id: d.SnapshotSetID, snapCtx: d.Context, tl: b.tl, prepared: map[*Registration]bool{}}
	run.rec = &setRecord{id: d.SnapshotSetID, started: time.Now(), timeline: b.tl, state: "importing"}
	for _, ds := range d.Snapshots {
		reg := s.providerByID(ds.ProviderID)
		if reg == nil {
			continue
		}
		run.addVolume(&volEntry{name: ds.OriginalVolume, snapID: ds.SnapshotID, reg: reg, luns: ds.SourceLUNs,
			sources: ds.Sources, targets: ds.Targets})
	}
	if len(run.vols) == 0 {
		return 0, vss.VSS_E_NO_SNAPSHOTS_IMPORTED
	}
	if hr := run.locate(ctx, run.vols); hr.Failed() {
		return 0, hr
	}
	imported := 0
	for _, v := range run.vols {
		if v.matched {
			imported++
		}
	}
	if imported == 0 {
		return 0, vss.VSS_E_NO_SNAPSHOTS_IMPORTED // VSS does not clean up after a failed import
	}
	s.mu.Lock()
	if orig, ok := s.mu.sets[run.id]; ok {
		run.rec = orig // keep the set's creation record; the import's spans are the requester's
	} else {
		s.addSetLocked(run.rec)
	}
	s.mu.Unlock()
	s.record(run)
	if imported < len(d.Snapshots) {
		return vss.VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED, nil
	}
	return vss.S_OK, nil
}

// ExposeSnapshot makes a snapshot's LUN reachable by hosts and returns its
// NBD export name: read-only, or read-write after a break with
// MAKE_READ_WRITE.
func (b *BackupComponents) ExposeSnapshot(ctx context.Context, id vss.ID) (string, error) {
	b.mu.Lock()
	err := b.checkLocked(opManage)
	b.mu.Unlock()
	if err != nil {
		return "", err
	}
	b.s.mu.Lock()
	r, ok := b.s.mu.snapshots[id]
	b.s.mu.Unlock()
	if !ok {
		return "", vss.VSS_E_OBJECT_NOT_FOUND
	}
	if !r.Imported || r.DeviceObject == "" {
		return "", fmt.Errorf("%w: snapshot %v is not surfaced; import it first", vss.VSS_E_BAD_STATE, id)
	}
	l, err := b.s.lunOf(r.DeviceObject)
	if err != nil {
		return "", err
	}
	if err := l.SetMasked(false); err != nil {
		return "", err
	}
	return l.Name(), nil
}

// RevertToSnapshot copies a snapshot back onto its volume inside the array
// (the provider's ResyncLuns), then keeps the snapshot.
func (b *BackupComponents) RevertToSnapshot(ctx context.Context, id vss.ID, force bool) error {
	b.mu.Lock()
	err := b.checkLocked(opManage)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	b.s.mu.Lock()
	r, ok := b.s.mu.snapshots[id]
	b.s.mu.Unlock()
	if !ok {
		return vss.VSS_E_OBJECT_NOT_FOUND
	}
	ex, isEx := r.reg.Provider.(provider.HardwareProviderEx)
	if !isEx {
		return vss.VSS_E_PROVIDER_VETO
	}
	run := &setRun{s: b.s, id: r.SnapshotSetID, tl: b.tl}
	var async provider.Async
	if hr := run.callProvider(ctx, r.reg, vss.MethodResyncLuns, func(ctx context.Context) (err error) {
		async, err = ex.ResyncLuns(ctx, slices.Clone(r.sources), slices.Clone(r.targets))
		return err
	}); hr.Failed() {
		return hr
	}
	if async != nil {
		if err := async.Wait(ctx); err != nil {
			return vss.MethodResyncLuns.Translate(vss.FromError(err))
		}
	}
	return nil
}
