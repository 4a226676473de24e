package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// reqState is a BackupComponents' place in the sequence of vss-spec.md A.
type reqState uint8

const (
	reqCreated        reqState = iota // CreateVssBackupComponents
	reqInitialized                    // InitializeForBackup
	reqSetStarted                     // StartSnapshotSet
	reqPrepared                       // PrepareForBackup
	reqSnapshotting                   // DoSnapshotSet running
	reqSnapshotDone                   // DoSnapshotSet succeeded
	reqSnapshotFailed                 // DoSnapshotSet failed or was cancelled
	reqCompleted                      // BackupComplete
	reqAborted                        // AbortBackup
	reqClosed                         // Close
)

var reqStateNames = [...]string{"created", "initialized", "set-started", "prepared", "snapshotting",
	"snapshot-done", "snapshot-failed", "completed", "aborted", "closed"}

func (s reqState) String() string { return reqStateNames[s] }

// reqOp is a requester call, for the transition table.
type reqOp uint8

const (
	opInitialize reqOp = iota
	opSetContext
	opSetBackupState
	opGatherMetadata
	opAddComponent
	opStartSet
	opAddToSet
	opPrepareForBackup
	opDoSnapshotSet
	opBackupComplete
	opAbortBackup
	opImport
	opManage // Query, Delete, Break, Expose, Revert, properties, status
)

// allowed is the one transition table of the requester: the states in which
// each call is legal. Anything else answers VSS_E_BAD_STATE.
var allowed = map[reqOp][]reqState{
	opInitialize:       {reqCreated},
	opSetContext:       {reqInitialized},
	opSetBackupState:   {reqInitialized, reqSetStarted},
	opGatherMetadata:   {reqInitialized},
	opAddComponent:     {reqInitialized},
	opStartSet:         {reqInitialized},
	opAddToSet:         {reqSetStarted},
	opPrepareForBackup: {reqSetStarted},
	opDoSnapshotSet:    {reqSetStarted, reqPrepared},
	opBackupComplete:   {reqSnapshotDone},
	opAbortBackup:      {reqPrepared, reqSnapshotting, reqSnapshotDone, reqSnapshotFailed},
	opImport:           {reqInitialized},
	opManage: {reqInitialized, reqSetStarted, reqPrepared, reqSnapshotting, reqSnapshotDone,
		reqSnapshotFailed, reqCompleted, reqAborted},
}

// BackupComponents is IVssBackupComponents: one requester's conversation
// with the service. Its methods are safe for concurrent use, and each
// answers only the codes vss-spec.md E lists for it.
type BackupComponents struct {
	s *Service
	// tl records what the requester does outside a set's creation:
	// Identify, PrepareForBackup, BackupComplete, Abort, BackupShutdown and
	// the management calls (delete, break, import, expose, revert).
	tl *Timeline

	mu struct {
		sync.Mutex
		state      reqState
		ctx        vss.SnapshotContext
		ctxSet     bool
		backupType vss.BackupType
		stateSet   bool
		gathered   bool
		writers    []*writerStatus
		components []componentRef
		set        *setRun
		lastSet    vss.ID
		doc        *Document // from InitializeForBackup(doc)
		imported   bool
		async      *Async
	}
}

type componentRef struct {
	writer vss.ID
	name   string
}

// NewBackupComponents is CreateVssBackupComponents.
func (s *Service) NewBackupComponents() *BackupComponents {
	b := &BackupComponents{s: s, tl: newTimeline()}
	b.mu.ctx = vss.VSS_CTX_BACKUP
	return b
}

// errReleased is what every call answers after Close (rule A.10): the
// object is released, and one answer serves every call, whatever codes E
// lists for the call on a live object.
var errReleased = fmt.Errorf("%w: the requester is closed", vss.VSS_E_BAD_STATE)

// releasedLocked answers errReleased after Close, nil before.
func (b *BackupComponents) releasedLocked() error {
	if b.mu.state == reqClosed {
		return errReleased
	}
	return nil
}

// released is releasedLocked for callers that do not hold b.mu.
func (b *BackupComponents) released() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.releasedLocked()
}

// checkLocked answers VSS_E_BAD_STATE unless op is legal now.
func (b *BackupComponents) checkLocked(op reqOp) error {
	if err := b.releasedLocked(); err != nil {
		return err
	}
	if !slices.Contains(allowed[op], b.mu.state) {
		return fmt.Errorf("%w: not allowed in state %v", vss.VSS_E_BAD_STATE, b.mu.state)
	}
	return nil
}

// Timeline returns the requester's own timeline: its writer events and
// provider calls outside a set's creation (each set has a timeline of its
// own, from Service.Set).
func (b *BackupComponents) Timeline() *Timeline { return b.tl }

// State returns the requester's place in the sequence.
func (b *BackupComponents) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.state.String()
}

// InitializeForBackup starts a backup; doc, when not nil, is a saved Backup
// Components Document to import a transportable set from (A.11).
func (b *BackupComponents) InitializeForBackup(doc []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(opInitialize); err != nil {
		return err
	}
	if doc != nil {
		d, err := parseDocument(doc)
		if err != nil {
			return fmt.Errorf("%w: %w", vss.E_INVALIDARG, err)
		}
		b.mu.doc = d
	}
	b.mu.state = reqInitialized
	return nil
}

// SetContext sets the snapshot context, once, before StartSnapshotSet.
func (b *BackupComponents) SetContext(c vss.SnapshotContext) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(opSetContext); err != nil {
		return err
	}
	if b.mu.ctxSet {
		return fmt.Errorf("%w: SetContext may be called once", vss.VSS_E_BAD_STATE)
	}
	// VSS_CTX_ALL is a context for queries and deletion; StartSnapshotSet
	// refuses it (vss-spec.md E).
	if c != vss.VSS_CTX_ALL && !c.Valid() {
		return fmt.Errorf("%w: context %v", vss.E_INVALIDARG, c)
	}
	b.mu.ctx, b.mu.ctxSet = c, true
	return nil
}

// SetBackupState records the backup's type; it must come before
// PrepareForBackup.
func (b *BackupComponents) SetBackupState(selectComponents, bootableState bool, t vss.BackupType, partialFiles bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(opSetBackupState); err != nil {
		return err
	}
	if t > vss.VSS_BT_OTHER {
		return fmt.Errorf("%w: backup type %v", vss.E_INVALIDARG, t)
	}
	b.mu.backupType, b.mu.stateSet = t, true
	return nil
}

// GatherWriterMetadata sends Identify to every writer, once per object
// (A.2). Writers that fail are left out of the metadata.
func (b *BackupComponents) GatherWriterMetadata(ctx context.Context) error {
	b.mu.Lock()
	if err := b.checkLocked(opGatherMetadata); err != nil {
		b.mu.Unlock()
		return err
	}
	if b.mu.gathered {
		b.mu.Unlock()
		return fmt.Errorf("%w: GatherWriterMetadata may be called once", vss.VSS_E_BAD_STATE)
	}
	b.mu.gathered = true
	snapCtx, bt := b.mu.ctx, b.mu.backupType
	b.mu.Unlock()

	tl := b.tl
	var sts []*writerStatus
	for _, w := range b.s.writers() {
		st := &writerStatus{reg: w, state: vss.VSS_WS_STABLE}
		ev := &Event{Kind: vss.EventIdentify, Context: snapCtx, BackupType: bt, Metadata: &st.metadata}
		o := b.s.deliver(ctx, tl, w, ev, b.s.cfg.EventWindow)
		if st.apply(vss.EventIdentify, o) {
			st.excluded = true
		}
		sts = append(sts, st)
	}
	b.mu.Lock()
	b.mu.writers = sts
	b.mu.Unlock()
	return nil
}

// WriterMetadata is one writer's answer to Identify.
type WriterMetadata struct {
	InstanceID vss.ID
	WriterID   vss.ID
	Name       string
	Level      vss.ApplicationLevel
	Components []ComponentInfo
}

// WriterMetadata returns the metadata of the writers that answered
// Identify.
func (b *BackupComponents) WriterMetadata() []WriterMetadata {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []WriterMetadata
	for _, st := range b.mu.writers {
		if !st.excluded {
			out = append(out, WriterMetadata{InstanceID: st.reg.instance, WriterID: st.reg.id, Name: st.reg.opts.Name,
				Level: st.reg.opts.Level, Components: slices.Clone(st.metadata.Components)})
		}
	}
	return out
}

// GatherWriterStatus reports every writer's state and failure.
func (b *BackupComponents) GatherWriterStatus(ctx context.Context) ([]WriterStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.releasedLocked(); err != nil {
		return nil, err
	}
	if b.mu.state == reqCreated {
		return nil, vss.VSS_E_BAD_STATE
	}
	if !b.mu.gathered {
		return nil, fmt.Errorf("%w: GatherWriterMetadata first", vss.VSS_E_BAD_STATE)
	}
	out := make([]WriterStatus, 0, len(b.mu.writers))
	for _, st := range b.mu.writers {
		out = append(out, st.status())
	}
	return out, nil
}

// AddComponent selects a writer's component for backup, before
// StartSnapshotSet. Writerless contexts refuse it (A.13).
func (b *BackupComponents) AddComponent(writerID vss.ID, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(opAddComponent); err != nil {
		return err
	}
	if !b.mu.ctx.HasWriters() {
		return fmt.Errorf("%w: context %v has no writers", vss.VSS_E_BAD_STATE, b.mu.ctx)
	}
	for _, st := range b.mu.writers {
		if st.reg.id == writerID && !st.excluded {
			for _, c := range st.metadata.Components {
				if c.Name == name {
					b.mu.components = append(b.mu.components, componentRef{writerID, name})
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%w: writer %v has no component %q", vss.E_INVALIDARG, writerID, name)
}

// StartSnapshotSet begins a set. Only one set is created at a time in the
// whole service (B.1): a second one, from this requester or another,
// answers VSS_E_SNAPSHOT_SET_IN_PROGRESS until the first DoSnapshotSet
// completes or its requester closes.
func (b *BackupComponents) StartSnapshotSet() (vss.ID, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.s.mu.creating != nil || b.mu.state == reqSetStarted {
		return vss.ID{}, vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS
	}
	if err := b.checkLocked(opStartSet); err != nil {
		return vss.ID{}, err
	}
	if b.mu.ctx == vss.VSS_CTX_ALL {
		return vss.ID{}, fmt.Errorf("%w: VSS_CTX_ALL cannot create snapshots", vss.VSS_E_BAD_STATE)
	}
	if b.s.mu.closed {
		return vss.ID{}, fmt.Errorf("%w: %w", vss.VSS_E_UNEXPECTED, ErrClosed)
	}
	run := newSetRun(b.s, b.mu.ctx)
	b.s.mu.creating = b
	b.s.addSetLocked(run.rec)
	b.mu.set = run
	b.mu.lastSet = run.id
	b.mu.state = reqSetStarted
	return run.id, nil
}

// endCreationLocked ends this requester's hold on set creation (B.1).
// b.s.mu is held.
func (b *BackupComponents) endCreationLocked() {
	if b.s.mu.creating == b {
		b.s.mu.creating = nil
	}
}

// AddToSnapshotSet adds a volume (all its LUNs) to the set with the given
// provider, or with the first provider that supports every LUN when
// providerID is GUID_NULL (A.5): hardware by priority, then software. The
// chosen provider gets BeginPrepareSnapshot before this returns.
func (b *BackupComponents) AddToSnapshotSet(ctx context.Context, volume string, providerID vss.ID) (vss.ID, error) {
	b.mu.Lock()
	if err := b.checkLocked(opAddToSet); err != nil {
		b.mu.Unlock()
		return vss.ID{}, err
	}
	run, snapCtx := b.mu.set, b.mu.ctx
	b.mu.Unlock()

	if len(run.vols) >= MaxVolumes {
		return vss.ID{}, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED
	}
	for _, v := range run.vols {
		if v.name == volume {
			return vss.ID{}, fmt.Errorf("%w: volume %s is in the set already", vss.E_INVALIDARG, volume)
		}
	}
	names, ok := b.s.volumeLUNs(volume)
	if !ok {
		return vss.ID{}, fmt.Errorf("%w: volume %s", vss.VSS_E_OBJECT_NOT_FOUND, volume)
	}
	host := b.s.volumeHost(volume)
	infos := make([]provider.LunInfo, len(names))
	for i, n := range names {
		if host != nil {
			break
		}
		l, err := b.s.array.Get(n)
		if err != nil {
			return vss.ID{}, fmt.Errorf("%w: LUN %s of volume %s", vss.VSS_E_OBJECT_NOT_FOUND, n, volume)
		}
		infos[i] = provider.LunInfoOf(l)
	}
	if host != nil {
		var err error
		if infos, err = b.s.describe(ctx, host, volume, names); err != nil {
			return vss.ID{}, err
		}
	}

	var candidates []*Registration
	if providerID.IsNull() {
		candidates = b.s.providerList()
	} else {
		p := b.s.providerByID(providerID)
		if p == nil {
			return vss.ID{}, vss.VSS_E_PROVIDER_NOT_REGISTERED
		}
		candidates = []*Registration{p}
	}
	var chosen *Registration
	for _, p := range candidates {
		var ok bool
		hr := run.callProvider(ctx, p, vss.MethodAreLunsSupported, func(ctx context.Context) (err error) {
			ok, err = p.Provider.AreLunsSupported(ctx, snapCtx, names, slices.Clone(infos))
			return err
		}, func() string { return fmt.Sprintf("volume %s: supported=%v", volume, ok) })
		if hr.Failed() {
			return vss.ID{}, hr
		}
		if ok {
			chosen = p
			break
		}
	}
	if chosen == nil {
		if !providerID.IsNull() {
			return vss.ID{}, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER // F.1
		}
		return vss.ID{}, vss.VSS_E_VOLUME_NOT_SUPPORTED
	}
	snap := vss.NewID()
	hr := run.callProvider(ctx, chosen, vss.MethodBeginPrepareSnapshot, func(ctx context.Context) error {
		return chosen.Provider.BeginPrepareSnapshot(ctx, run.id, snap, snapCtx, names, slices.Clone(infos))
	})
	if hr.Failed() {
		return vss.ID{}, hr
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.set != run { // the requester closed meanwhile
		return vss.ID{}, vss.VSS_E_BAD_STATE
	}
	run.addVolume(&volEntry{name: volume, snapID: snap, reg: chosen, host: host, luns: names, sources: infos})
	return snap, nil
}

// PrepareForBackup sends PrepareForBackup to the writers (A.6).
// Writerless contexts refuse it (A.13).
func (b *BackupComponents) PrepareForBackup(ctx context.Context) error {
	b.mu.Lock()
	if err := b.checkLocked(opPrepareForBackup); err != nil {
		b.mu.Unlock()
		return err
	}
	if !b.mu.ctx.HasWriters() {
		b.mu.Unlock()
		return fmt.Errorf("%w: context %v has no writers", vss.VSS_E_BAD_STATE, b.mu.ctx)
	}
	if !b.mu.stateSet {
		b.mu.Unlock()
		return fmt.Errorf("%w: SetBackupState must come first", vss.VSS_E_BAD_STATE)
	}
	run := b.mu.set
	b.mu.state = reqPrepared
	sts := b.activeWritersLocked()
	b.mu.Unlock()
	b.broadcast(ctx, run, sts, vss.EventPrepareForBackup, b.s.cfg.EventWindow)
	return nil
}

// activeWritersLocked returns the writers that answered Identify.
func (b *BackupComponents) activeWritersLocked() []*writerStatus {
	var out []*writerStatus
	for _, st := range b.mu.writers {
		if !st.excluded {
			out = append(out, st)
		}
	}
	return out
}

// broadcast delivers one event to the writers in parallel and applies the
// outcomes. It returns the writers for which the event was fatal.
func (b *BackupComponents) broadcast(ctx context.Context, run *setRun, sts []*writerStatus, kind vss.WriterEvent, window time.Duration) []*writerStatus {
	outcomes := make([]outcome, len(sts))
	var wg sync.WaitGroup
	for i, st := range sts {
		ev := b.event(run, st, kind)
		wg.Go(func() { outcomes[i] = b.s.deliver(ctx, b.timeline(run), st.reg, ev, window) })
	}
	wg.Wait()
	var fatal []*writerStatus
	b.mu.Lock()
	for i, st := range sts {
		if st.apply(kind, outcomes[i]) {
			fatal = append(fatal, st)
		}
	}
	b.mu.Unlock()
	return fatal
}

// timeline returns run's timeline, or the requester's outside a set.
func (b *BackupComponents) timeline(run *setRun) *Timeline {
	if run != nil {
		return run.tl
	}
	return b.tl
}

// event builds the Event a writer is told.
func (b *BackupComponents) event(run *setRun, st *writerStatus, kind vss.WriterEvent) *Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	ev := &Event{Kind: kind, Context: b.mu.ctx, BackupType: b.mu.backupType}
	if run != nil {
		ev.SnapshotSetID = run.id
		for _, v := range run.vols {
			ev.Volumes = append(ev.Volumes, v.name)
		}
	}
	for _, c := range b.mu.components {
		if c.writer == st.reg.id {
			ev.Components = append(ev.Components, c.name)
		}
	}
	return ev
}

// DoSnapshotSet creates the set: the sequence of A.7, run asynchronously.
// Its result comes through the returned Async.
func (b *BackupComponents) DoSnapshotSet(ctx context.Context) (*Async, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkLocked(opDoSnapshotSet); err != nil {
		return nil, err
	}
	if b.mu.ctx.HasWriters() && (!b.mu.gathered || b.mu.state != reqPrepared) {
		return nil, fmt.Errorf("%w: a writer context needs GatherWriterMetadata and PrepareForBackup first", vss.VSS_E_BAD_STATE)
	}
	run := b.mu.set
	if len(run.vols) == 0 {
		return nil, fmt.Errorf("%w: no volume in the set", vss.VSS_E_BAD_STATE)
	}
	b.mu.state = reqSnapshotting
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := newAsync()
	b.mu.async = a
	var writers []*writerStatus
	if b.mu.ctx.HasWriters() {
		writers = b.activeWritersLocked()
	}
	b.s.wg.Go(func() {
		err := b.run(runCtx, run, writers, a)
		b.s.mu.Lock()
		b.mu.Lock()
		b.endCreationLocked()
		switch {
		case err == nil:
			b.mu.state = reqSnapshotDone
		default:
			b.mu.state = reqSnapshotFailed
		}
		b.mu.Unlock()
		b.s.mu.Unlock()
		cancel()
		a.finish(err)
	})
	return a, nil
}

// GetSnapshotProperties returns one snapshot's properties;
// VSS_E_OBJECT_NOT_FOUND while its set is still being created.
func (b *BackupComponents) GetSnapshotProperties(id vss.ID) (SnapshotProperties, error) {
	if err := b.released(); err != nil {
		return SnapshotProperties{}, err
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	r, ok := b.s.mu.snapshots[id]
	if !ok {
		return SnapshotProperties{}, vss.VSS_E_OBJECT_NOT_FOUND
	}
	return r.props(), nil
}

// Query returns the properties of every snapshot the service holds.
func (b *BackupComponents) Query() []SnapshotProperties { return b.s.Query() }

// SetBackupSucceeded records a component's backup result, after
// DoSnapshotSet.
func (b *BackupComponents) SetBackupSucceeded(writerID vss.ID, component string, succeeded bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.releasedLocked(); err != nil {
		return err
	}
	if b.mu.state != reqSnapshotDone {
		return vss.VSS_E_BAD_STATE
	}
	for _, c := range b.mu.components {
		if c.writer == writerID && c.name == component {
			return nil
		}
	}
	return fmt.Errorf("%w: component %q was not added", vss.VSS_E_OBJECT_NOT_FOUND, component)
}

// BackupComplete sends BackupComplete to the writers. It is refused after
// a failed DoSnapshotSet (A.9): call AbortBackup then.
func (b *BackupComponents) BackupComplete(ctx context.Context) error {
	b.mu.Lock()
	if err := b.checkLocked(opBackupComplete); err != nil {
		b.mu.Unlock()
		return err
	}
	if !b.mu.ctx.HasWriters() {
		b.mu.Unlock()
		return fmt.Errorf("%w: context %v has no writers", vss.VSS_E_BAD_STATE, b.mu.ctx)
	}
	b.mu.state = reqCompleted
	// A writer in a failed state gets no BackupComplete (rule D, failed
	// states); the requester reads its failure in GatherWriterStatus.
	var sts []*writerStatus
	for _, st := range b.activeWritersLocked() {
		if !st.state.IsFailed() {
			sts = append(sts, st)
		}
	}
	run := b.mu.set
	b.mu.Unlock()
	if fatal := b.broadcast(ctx, run, sts, vss.EventBackupComplete, b.s.cfg.EventWindow); len(fatal) > 0 {
		return vss.VSS_E_UNEXPECTED_WRITER_ERROR
	}
	return nil
}

// AbortBackup sends Abort to the writers after a failure (A.12).
func (b *BackupComponents) AbortBackup(ctx context.Context) error {
	b.mu.Lock()
	if err := b.checkLocked(opAbortBackup); err != nil {
		b.mu.Unlock()
		return err
	}
	a := b.mu.async
	b.mu.Unlock()
	if a != nil {
		a.Cancel()
		_ = a.Wait(ctx)
	}
	b.mu.Lock()
	b.mu.state = reqAborted
	run := b.mu.set
	b.mu.Unlock()
	b.abortWriters(ctx, run, true /* requested */)
	b.s.mu.Lock()
	b.endCreationLocked()
	b.s.mu.Unlock()
	return nil
}

// abortWriters sends Abort to the writers that took part in the set and may
// still get it: never after PostSnapshot (B.10). With requested, every
// writer that was prepared for backup gets it.
func (b *BackupComponents) abortWriters(ctx context.Context, run *setRun, requested bool) {
	b.mu.Lock()
	var sts []*writerStatus
	for _, st := range b.activeWritersLocked() {
		if st.postSnapshot || st.aborted || !(st.prepared || requested) {
			continue
		}
		st.aborted, st.frozen = true, false
		if st.freezeTimer != nil {
			st.freezeTimer.Stop()
		}
		sts = append(sts, st)
	}
	b.mu.Unlock()
	b.broadcast(ctx, run, sts, vss.EventAbort, b.s.cfg.EventWindow)
}

// Close releases the object (A.10): BackupShutdown goes to every writer,
// even after a failure; a set still being created is abandoned (its provider
// will see an out-of-sequence BeginPrepareSnapshot, B.8); snapshots of
// auto-release contexts are deleted.
func (b *BackupComponents) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.mu.state == reqClosed {
		b.mu.Unlock()
		return nil
	}
	a := b.mu.async
	b.mu.Unlock()
	if a != nil {
		_ = a.Wait(ctx)
	}
	b.s.mu.Lock()
	b.mu.Lock()
	b.endCreationLocked()
	sts := b.activeWritersLocked()
	run, snapCtx, lastSet := b.mu.set, b.mu.ctx, b.mu.lastSet
	b.mu.state = reqClosed
	b.mu.set = nil
	if rec, ok := b.s.mu.sets[lastSet]; ok && rec.state == "creating" {
		rec.state = "abandoned"
	}
	b.mu.Unlock()
	b.s.mu.Unlock()

	if len(sts) > 0 {
		b.broadcast(ctx, run, sts, vss.EventBackupShutdown, b.s.cfg.EventWindow)
	}
	if snapCtx.AutoRelease() && !lastSet.IsNull() {
		if _, _, err := b.s.deleteSnapshots(ctx, b.tl, lastSet, vss.VSS_OBJECT_SNAPSHOT_SET); err != nil && !errors.Is(err, vss.VSS_E_OBJECT_NOT_FOUND) {
			return err
		}
	}
	return nil
}

// lunOf returns a LUN of the array or VSS_E_OBJECT_NOT_FOUND.
func (s *Service) lunOf(name string) (*lun.LUN, error) {
	l, err := s.array.Get(name)
	if err != nil {
		return nil, fmt.Errorf("%w: LUN %s", vss.VSS_E_OBJECT_NOT_FOUND, name)
	}
	return l, nil
}
