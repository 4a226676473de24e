package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// session is a requester the daemon holds open: the BackupComponents of an
// auto-release set, whose release deletes the set's snapshots (A.10). The
// daemon is the requester of every set it creates, so an auto-release
// set's snapshots live until the set is deleted or the daemon stops.
type session struct {
	bc   *coordinator.BackupComponents
	once sync.Once
	err  error
}

// close releases the requester: BackupShutdown, then the deletion of the
// auto-release snapshots that remain.
func (s *session) close(ctx context.Context) error {
	s.once.Do(func() { s.err = s.bc.Close(ctx) })
	return s.err
}

// setRecord is what the daemon keeps of a set it ran, beyond the service's
// record.
type setRecord struct {
	targets  []string
	context  vss.SnapshotContext
	writers  []WriterStatusReport
	duration time.Duration
	// name is the set's name, "" for none.
	name string
	// failure is the HRESULT of an error that ended the set before the
	// service ran any of it (AddToSnapshotSet of a volume it does not
	// know): the service records such a set as abandoned, S_OK.
	failure vss.HRESULT
}

// result is the set's result as the API reports it: the service's,
// unless the set was abandoned before it ran with an error of its own.
func (r *setRecord) result(state string, svc vss.HRESULT) vss.HRESULT {
	if r != nil && r.failure != 0 && state == "abandoned" && !svc.Failed() {
		return r.failure
	}
	return svc
}

// createSet runs one complete backup (vss-spec.md A.1-A.9) as the
// requester: InitializeForBackup, SetContext, SetBackupState,
// GatherWriterMetadata, StartSnapshotSet, AddToSnapshotSet per target,
// PrepareForBackup, DoSnapshotSet, GatherWriterStatus, then BackupComplete
// or AbortBackup. The requester of a created auto-release set is held
// open; any other is released at once. A failure after StartSnapshotSet
// returns the set's report with the error.
func (d *Daemon) createSet(ctx context.Context, req CreateSetRequest) (*SetReport, error) {
	snapCtx, err := parseContextName(req.Context)
	if err != nil {
		return nil, badRequest("context %q: want backup, file-share-backup, app-rollback, nas-rollback or another VSS_CTX name, optionally with |ATTRIBUTES", req.Context)
	}
	bt := vss.VSS_BT_FULL
	if req.BackupType != "" {
		if bt, err = vss.ParseBackupType(strings.ToUpper(req.BackupType)); err != nil {
			return nil, badRequest("backup type %q: want FULL, INCREMENTAL, DIFFERENTIAL, LOG, COPY or OTHER", req.BackupType)
		}
	}
	if len(req.Targets) == 0 {
		return nil, badRequest("name at least one LUN or volume to snapshot")
	}
	if err := d.checkSetName(req.Name); err != nil {
		return nil, err
	}
	var provID vss.ID
	if req.Provider != "" {
		id, ok := d.providerID(req.Provider)
		if !ok {
			return nil, fmt.Errorf("provider %q: %w", req.Provider, vss.VSS_E_PROVIDER_NOT_REGISTERED)
		}
		provID = id
	}
	for _, id := range req.Writers {
		rw, err := d.writerInfo(id)
		if err != nil {
			return nil, err
		}
		if !rw.Ephemeral {
			return nil, badRequest("writer %s is subscribed to every set; only ephemeral writers are named in a request", rw.Name)
		}
	}

	select {
	case d.seq <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.stop:
		return nil, ErrStopping
	}
	defer func() { <-d.seq }()
	for _, id := range req.Writers {
		if err := d.subscribe(id); err != nil {
			return nil, err
		}
		defer d.unsubscribe(id)
	}

	bc := d.svc.NewBackupComponents()
	keep := false
	defer func() {
		if !keep {
			_ = bc.Close(context.WithoutCancel(ctx))
		}
	}()
	writers := snapCtx.HasWriters()
	setID, err := d.startSet(ctx, bc, snapCtx, bt, writers)
	if err != nil {
		return nil, err
	}
	rec := &setRecord{targets: slices.Clone(req.Targets), context: snapCtx, name: req.Name}
	d.mu.Lock()
	d.mu.sets[setID] = rec
	d.mu.Unlock()

	t0 := time.Now()
	err = d.doSet(ctx, bc, req.Targets, provID, snapCtx)
	d.mu.Lock()
	rec.duration = time.Since(t0)
	if hr := (vss.HRESULT)(0); errors.As(err, &hr) && hr.Failed() {
		rec.failure = hr
	} else if err != nil {
		rec.failure = vss.E_FAIL
	}
	d.mu.Unlock()
	if writers {
		if sts, serr := bc.GatherWriterStatus(context.WithoutCancel(ctx)); serr == nil {
			statuses := make([]WriterStatusReport, len(sts))
			for i, s := range sts {
				statuses[i] = writerStatusReport(s)
			}
			d.mu.Lock()
			rec.writers = statuses
			d.mu.Unlock()
		}
	}
	if err == nil && snapCtx.AutoRelease() {
		keep = true
		d.mu.Lock()
		d.mu.sessions[setID] = &session{bc: bc}
		d.mu.Unlock()
	}
	if !keep {
		_ = bc.Close(context.WithoutCancel(ctx))
		keep = true // closed already
	}
	d.metrics.observeSet(d, setID)
	rep, _ := d.setReport(setID)
	d.forgetRecords()
	return rep, err
}

// forgetRecords drops the daemon's records of the sets the service no
// longer remembers, since its history is bounded (sets.history). It runs
// under d.seq, so no set is between its start and its record.
func (d *Daemon) forgetRecords() {
	known := map[vss.ID]bool{}
	for _, s := range d.svc.Sets() {
		known[s.ID] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.mu.sets {
		if !known[id] {
			delete(d.mu.sets, id)
		}
	}
}

// startSet is A.1 to A.4: up to StartSnapshotSet.
func (d *Daemon) startSet(ctx context.Context, bc *coordinator.BackupComponents, snapCtx vss.SnapshotContext, bt vss.BackupType, writers bool) (vss.ID, error) {
	if err := bc.InitializeForBackup(nil); err != nil {
		return vss.ID{}, fmt.Errorf("InitializeForBackup: %w", err)
	}
	if err := bc.SetContext(snapCtx); err != nil {
		return vss.ID{}, fmt.Errorf("SetContext(%v): %w", snapCtx, err)
	}
	if err := bc.SetBackupState(false, false, bt, false); err != nil {
		return vss.ID{}, fmt.Errorf("SetBackupState: %w", err)
	}
	if writers {
		if err := bc.GatherWriterMetadata(ctx); err != nil {
			return vss.ID{}, fmt.Errorf("GatherWriterMetadata: %w", err)
		}
	}
	id, err := bc.StartSnapshotSet()
	if err != nil {
		return vss.ID{}, fmt.Errorf("StartSnapshotSet: %w", err)
	}
	return id, nil
}

// doSet is A.5 to A.9 of a started set. If ctx ends while the set is being
// created, the set is cancelled (it stops before the commit if it can).
func (d *Daemon) doSet(ctx context.Context, bc *coordinator.BackupComponents, targets []string, provID vss.ID, snapCtx vss.SnapshotContext) error {
	writers := snapCtx.HasWriters()
	for _, t := range targets {
		if _, err := bc.AddToSnapshotSet(ctx, t, provID); err != nil {
			err = fmt.Errorf("AddToSnapshotSet(%s): %w", t, err)
			if errors.Is(err, vss.VSS_E_VOLUME_NOT_SUPPORTED) || errors.Is(err, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER) {
				err = d.shortage(err, t, provID, snapCtx)
			}
			return err
		}
	}
	if writers {
		if err := bc.PrepareForBackup(ctx); err != nil {
			return fmt.Errorf("PrepareForBackup: %w", err)
		}
	}
	async, err := bc.DoSnapshotSet(ctx)
	if err != nil {
		return fmt.Errorf("DoSnapshotSet: %w", err)
	}
	err = async.Wait(ctx)
	if ctx.Err() != nil {
		async.Cancel()
		err = async.Wait(context.WithoutCancel(ctx))
	}
	bg := context.WithoutCancel(ctx)
	if err != nil {
		if writers {
			_ = bc.AbortBackup(bg)
		}
		return fmt.Errorf("DoSnapshotSet: %w", err)
	}
	if writers {
		if err := bc.BackupComplete(bg); err != nil {
			return fmt.Errorf("BackupComplete: %w", err)
		}
	}
	return nil
}

// shortage explains an AddToSnapshotSet that no provider took: when one
// of the daemon's array providers (provID's, or any with GUID_NULL)
// refused target's LUNs for lack of capacity, the answer is
// VSS_E_INSUFFICIENT_STORAGE, with the provider's figures, rather than
// the VSS_E_VOLUME_NOT_SUPPORTED the VSS service gives a requester. The
// service is right to (a provider answers FALSE under a shortage so that
// another may take the volume: vss-spec.md F.2, and the set's report
// keeps its answer), but to the daemon's user a full array is not an
// unsupported volume. Answering TRUE in the provider and failing
// EndPrepareSnapshots instead was rejected: no other provider would be
// tried. Remote providers cannot be asked, and keep the service's answer.
func (d *Daemon) shortage(err error, target string, provID vss.ID, snapCtx vss.SnapshotContext) error {
	luns, ok := d.svc.Volumes()[target]
	if !ok {
		luns = []string{target}
	}
	for _, p := range d.provs {
		if !provID.IsNull() && p.reg.ID != provID {
			continue
		}
		if why := p.prov.Refusal(snapCtx, luns); errors.Is(why, provider.ErrNoCapacity) {
			return &codedError{msg: fmt.Sprintf("%v: provider %s has no room for the snapshot: %v", err, p.reg.Name, why),
				errs: []error{vss.VSS_E_INSUFFICIENT_STORAGE, why}}
		}
	}
	return err
}

func writerStatusReport(s coordinator.WriterStatus) WriterStatusReport {
	r := WriterStatusReport{Name: s.Name, InstanceID: s.InstanceID, State: s.State.String(), Message: s.Message}
	if s.Failure != 0 {
		r.Failure = s.Failure.Name()
	}
	if s.ApplicationFailure != 0 {
		r.Application = s.ApplicationFailure.Name()
	}
	return r
}

func (d *Daemon) providerByName(name string) *providerEntry {
	for _, p := range d.provs {
		if p.reg.Name == name {
			return p
		}
	}
	return nil
}

// providerID returns the ID of the provider called name, an array
// provider or a remote one.
func (d *Daemon) providerID(name string) (vss.ID, bool) {
	if p := d.providerByName(name); p != nil {
		return p.reg.ID, true
	}
	for _, r := range d.remotes {
		if r.reg.Name == name {
			return r.reg.ID, true
		}
	}
	return vss.GUID_NULL, false
}

func (d *Daemon) providerName(id vss.ID) string {
	for _, p := range d.provs {
		if p.reg.ID == id {
			return p.reg.Name
		}
	}
	for _, r := range d.remotes {
		if r.reg.ID == id {
			return r.reg.Name
		}
	}
	return id.String()
}

// progress is the set being created, or ErrNoSuchObject when none is.
func (d *Daemon) progress() (*SetProgress, error) {
	sets := d.svc.Sets()
	for i := len(sets) - 1; i >= 0; i-- {
		s := sets[i]
		if s.State != "creating" || s.Timeline == nil {
			continue
		}
		p := &SetProgress{ID: s.ID, Elapsed: Duration(time.Since(s.Timeline.Origin())), Running: []SpanInfo{}}
		for _, sp := range s.Timeline.Running() {
			p.Running = append(p.Running, SpanInfo{Offset: Duration(sp.Start), Duration: Duration(sp.Duration()),
				Kind: string(sp.Kind), Name: sp.Name, Actor: sp.Actor})
		}
		return p, nil
	}
	return nil, notFound(ErrNoSuchObject, "a snapshot set being created")
}

// setReport builds the report of a set the service knows.
func (d *Daemon) setReport(id vss.ID) (*SetReport, error) {
	info, ok := d.svc.Set(id)
	if !ok {
		return nil, notFound(ErrNoSuchObject, "snapshot set "+id.String())
	}
	rep := &SetReport{ID: id, State: info.State, Started: info.Started, Snapshots: []SnapshotInfo{}}
	d.mu.Lock()
	result := d.mu.sets[id].result(info.State, info.Result)
	rep.Result, rep.Code = result.Name(), fmt.Sprintf("0x%08X", uint32(result))
	if rec, ok := d.mu.sets[id]; ok {
		rep.Name = rec.name
		rep.Targets, rep.Context, rep.Duration = rec.targets, rec.context.String(), Duration(rec.duration)
		rep.Writers = slices.Clone(rec.writers)
	}
	_, rep.Held = d.mu.sessions[id]
	d.mu.Unlock()
	for _, p := range d.svc.Query() {
		if p.SnapshotSetID == id {
			rep.Snapshots = append(rep.Snapshots, d.snapshotInfo(p))
		}
	}
	if info.Timeline != nil {
		for _, s := range info.Timeline.Spans() {
			rep.Timeline = append(rep.Timeline, SpanInfo{Offset: Duration(s.Start), Duration: Duration(s.Duration()),
				Kind: string(s.Kind), Name: s.Name, Actor: s.Actor, Result: s.Result, Detail: s.Detail})
		}
	}
	return rep, nil
}

// sets lists the sets the service ran and still knows: deleted ones are
// not listed.
func (d *Daemon) sets() []SetSummary {
	counts := map[vss.ID]int{}
	for _, p := range d.svc.Query() {
		counts[p.SnapshotSetID]++
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []SetSummary{}
	for _, s := range d.svc.Sets() {
		_, held := d.mu.sessions[s.ID]
		rec := d.mu.sets[s.ID]
		sum := SetSummary{ID: s.ID, State: s.State, Result: rec.result(s.State, s.Result).Name(), Started: s.Started,
			Snapshots: counts[s.ID], Held: held}
		if rec != nil {
			sum.Name, sum.Context = rec.name, rec.context.String()
		}
		out = append(out, sum)
	}
	return out
}

// maxSetName bounds a set's name.
const maxSetName = 64

// checkSetName refuses a name that is malformed or that a set the daemon
// knows has already.
func (d *Daemon) checkSetName(name string) error {
	if name == "" {
		return nil
	}
	if err := checkWriterName(name); err != nil || len(name) > maxSetName || isID(name) {
		return badRequest("snapshot set name %.80q: want 1-%d characters of [A-Za-z0-9._:-], not a GUID", name, maxSetName)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, rec := range d.mu.sets {
		if rec.name == name {
			return fmt.Errorf("%w: snapshot set name %s is taken by set %v (snapshot delete --set %s frees it)", ErrNameInUse, name, id, name)
		}
	}
	return nil
}

// isID reports whether s reads as a GUID, which a name may not, so that
// an argument is never both.
func isID(s string) bool {
	_, err := vss.ParseID(s)
	return err == nil
}

// setName is the name of a set, "" for none.
func (d *Daemon) setName(id vss.ID) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rec := d.mu.sets[id]; rec != nil {
		return rec.name
	}
	return ""
}

// snapshotInfo describes a snapshot with its export URLs.
func (d *Daemon) snapshotInfo(p coordinator.SnapshotProperties) SnapshotInfo {
	s := SnapshotInfo{ID: p.SnapshotID, SetID: p.SnapshotSetID, Name: d.setName(p.SnapshotSetID), Volume: p.OriginalVolume, Context: p.Context.String(),
		Attributes: p.Attributes.String(), Provider: d.providerName(p.ProviderID), Created: p.CreationTime,
		State: p.State.String(), SourceLUNs: p.SourceLUNs, TargetLUNs: p.TargetLUNs, Imported: p.Imported, Broken: p.Broken}
	for _, t := range p.TargetLUNs {
		l, err := d.array.Get(t)
		if err != nil {
			continue
		}
		if !l.Masked() {
			s.Exports = append(s.Exports, d.exportURLs(t)...)
		}
		s.Size += l.Size()
		if u, err := l.UniqueBytes(); err == nil {
			s.UniqueBytes += u
		}
	}
	return s
}

// diff is where snapshot id's target LUNs differ from against's (of the
// same volume), or, with against nil, from the source LUNs now.
func (d *Daemon) diff(id vss.ID, against *vss.ID) (*SnapshotDiff, error) {
	p, err := d.snapshot(id)
	if err != nil {
		return nil, err
	}
	others := p.SourceLUNs
	if against != nil {
		q, err := d.snapshot(*against)
		if err != nil {
			return nil, err
		}
		if q.OriginalVolume != p.OriginalVolume || len(q.TargetLUNs) != len(p.TargetLUNs) {
			return nil, badRequest("snapshots %v (volume %s) and %v (volume %s) are not of one volume", id, p.OriginalVolume, *against, q.OriginalVolume)
		}
		others = q.TargetLUNs
	}
	out := &SnapshotDiff{Snapshot: id, Against: against, LUNs: []LUNDiff{}}
	for i, t := range p.TargetLUNs {
		if t == "" || i >= len(others) || others[i] == "" {
			return nil, badRequest("snapshot %v has a target LUN that is not surfaced (transportable): nothing to compare", id)
		}
		ranges, err := d.array.Diff(others[i], t)
		if err != nil {
			return nil, fmt.Errorf("snapshot %v: %w", id, err)
		}
		ld := LUNDiff{LUN: t, Against: others[i], Extents: make([]DiffExtent, len(ranges))}
		for j, r := range ranges {
			ld.Extents[j] = DiffExtent{Offset: r.Off, Length: r.Len}
			ld.Bytes += r.Len
		}
		out.LUNs = append(out.LUNs, ld)
	}
	return out, nil
}

// snapshot finds one snapshot.
func (d *Daemon) snapshot(id vss.ID) (coordinator.SnapshotProperties, error) {
	for _, p := range d.svc.Query() {
		if p.SnapshotID == id {
			return p, nil
		}
	}
	return coordinator.SnapshotProperties{}, notFound(ErrNoSuchObject, "snapshot "+id.String())
}

// manage runs fn with a requester made for one management call, released
// afterwards.
func (d *Daemon) manage(ctx context.Context, fn func(bc *coordinator.BackupComponents) error) error {
	bc := d.svc.NewBackupComponents()
	defer func() { _ = bc.Close(context.WithoutCancel(ctx)) }()
	if err := bc.InitializeForBackup(nil); err != nil {
		return err
	}
	return fn(bc)
}

// deleteSnapshot deletes one snapshot, releasing its set's held requester
// once the set has no snapshot left.
func (d *Daemon) deleteSnapshot(ctx context.Context, id vss.ID) (DeleteResult, error) {
	p, err := d.snapshot(id)
	if err != nil {
		return DeleteResult{}, err
	}
	err = d.manage(ctx, func(bc *coordinator.BackupComponents) error {
		_, _, err := bc.DeleteSnapshots(ctx, id, vss.VSS_OBJECT_SNAPSHOT, false /* force */)
		return err
	})
	if err != nil {
		return DeleteResult{}, err
	}
	d.releaseIfEmpty(ctx, p.SnapshotSetID)
	return DeleteResult{Deleted: []string{id.String()}}, nil
}

// deleteSet deletes every snapshot of a set, by releasing its held
// requester if the daemon holds one (as Windows deletes auto-release
// snapshots) or else with DeleteSnapshots, and then the set itself: it
// leaves the listing. A set with no snapshot left (one that failed, was
// abandoned, or whose snapshots were deleted one by one) is deleted at
// once; one still being created is refused.
func (d *Daemon) deleteSet(ctx context.Context, id vss.ID) (DeleteResult, error) {
	if _, ok := d.svc.Set(id); !ok {
		return DeleteResult{}, notFound(ErrNoSuchObject, "snapshot set "+id.String())
	}
	res := DeleteResult{Deleted: []string{}}
	for _, p := range d.svc.Query() {
		if p.SnapshotSetID == id {
			res.Deleted = append(res.Deleted, p.SnapshotID.String())
		}
	}
	d.mu.Lock()
	s, held := d.mu.sessions[id]
	delete(d.mu.sessions, id)
	d.mu.Unlock()
	var err error
	switch {
	case held:
		err = s.close(ctx)
	case len(res.Deleted) > 0:
		err = d.manage(ctx, func(bc *coordinator.BackupComponents) error {
			_, _, err := bc.DeleteSnapshots(ctx, id, vss.VSS_OBJECT_SNAPSHOT_SET, false /* force */)
			return err
		})
	}
	if err != nil {
		return DeleteResult{}, err
	}
	if err := d.svc.ForgetSet(id); err != nil {
		return DeleteResult{}, fmt.Errorf("snapshot set %v: %w", id, err)
	}
	d.mu.Lock()
	delete(d.mu.sets, id)
	d.mu.Unlock()
	res.Set = &id
	return res, nil
}

// releaseIfEmpty releases a held requester whose set has no snapshot
// left.
func (d *Daemon) releaseIfEmpty(ctx context.Context, set vss.ID) {
	for _, p := range d.svc.Query() {
		if p.SnapshotSetID == set {
			return
		}
	}
	d.mu.Lock()
	s, held := d.mu.sessions[set]
	delete(d.mu.sessions, set)
	d.mu.Unlock()
	if held {
		if err := s.close(ctx); err != nil && !errors.Is(err, vss.VSS_E_OBJECT_NOT_FOUND) {
			d.log.Warn("releasing the requester of an emptied set failed", "set", set.String(), "err", err)
		}
	}
}

// expose makes a snapshot's LUNs reachable over NBD.
func (d *Daemon) expose(ctx context.Context, id vss.ID) (ExposeResult, error) {
	var export string
	err := d.manage(ctx, func(bc *coordinator.BackupComponents) (err error) {
		export, err = bc.ExposeSnapshot(ctx, id)
		return err
	})
	if err != nil {
		return ExposeResult{}, err
	}
	return ExposeResult{SnapshotID: id, Export: export, URLs: d.exportURLs(export)}, nil
}

// revert copies a snapshot back onto its volume.
func (d *Daemon) revert(ctx context.Context, id vss.ID, force bool) (RevertResult, error) {
	p, err := d.snapshot(id)
	if err != nil {
		return RevertResult{}, err
	}
	// The data changes under the clients of the source LUNs: refused while
	// they are connected, as LVM's merge waits for the origin to close,
	// unless force, which disconnects them first.
	var open []string
	var luns []*lun.LUN
	for _, name := range p.SourceLUNs {
		if l, err := d.array.Get(name); err == nil {
			luns = append(luns, l)
			if n := d.nbd.Connections(l); n > 0 {
				open = append(open, fmt.Sprintf("%s (%d NBD connections)", name, n))
			}
		}
	}
	if len(open) > 0 {
		if !force {
			return RevertResult{}, fmt.Errorf("%w: reverting changes the data under the clients of %s: disconnect them (unmount first), or --force disconnects them",
				ErrLUNInUse, strings.Join(open, ", "))
		}
		for _, l := range luns {
			if n := d.nbd.Disconnect(l); n > 0 {
				d.log.Warn("NBD clients disconnected for a revert", "lun", l.Name(), "connections", n, "snapshot", id)
			}
		}
	}
	err = d.manage(ctx, func(bc *coordinator.BackupComponents) error {
		return bc.RevertToSnapshot(ctx, id, false /* force */)
	})
	if err != nil {
		return RevertResult{}, err
	}
	return RevertResult{SnapshotID: id, Volume: p.OriginalVolume, LUNs: p.SourceLUNs}, nil
}

// breakSet makes a set's snapshot LUNs ordinary LUNs.
func (d *Daemon) breakSet(ctx context.Context, id vss.ID, req BreakRequest) (BreakResult, error) {
	var flags vss.HardwareOptions
	if req.MakeReadWrite {
		flags |= vss.VSS_BREAKEX_FLAG_MAKE_READ_WRITE
	}
	if req.Mask {
		flags |= vss.VSS_BREAKEX_FLAG_MASK_LUNS
	}
	switch req.RevertIdentity {
	case "":
	case "all":
		flags |= vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_ALL
	case "none":
		flags |= vss.VSS_BREAKEX_FLAG_REVERT_IDENTITY_NONE
	default:
		return BreakResult{}, badRequest("revert_identity %q: want all, none or nothing", req.RevertIdentity)
	}
	res := BreakResult{SetID: id, Flags: flags.String(), LUNs: []string{}}
	for _, p := range d.svc.Query() {
		if p.SnapshotSetID == id {
			res.LUNs = append(res.LUNs, p.TargetLUNs...)
		}
	}
	err := d.manage(ctx, func(bc *coordinator.BackupComponents) error {
		return bc.BreakSnapshotSetEx(ctx, id, flags)
	})
	if err != nil {
		return BreakResult{}, err
	}
	d.releaseIfEmpty(ctx, id)
	return res, nil
}
