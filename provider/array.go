package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/dustin/go-humanize"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// maxVolumes is the most volumes (snapshot IDs) in one set (vss-spec.md
// F.9).
const maxVolumes = 64

// historySize is how many finished (created or aborted) sets the provider
// remembers for State and CommitDuration.
const historySize = 64

// ArrayProvider is the emulated hardware provider of a lun.Array, driven by
// a firmware Profile. Its methods are safe for concurrent use.
type ArrayProvider struct {
	array   *lun.Array
	profile *Profile
	log     *slog.Logger

	// inject holds each method's injector, indexed by vss.ProviderMethod;
	// nil entries inject nothing. prepare draws the per-LUN preparation
	// latency. Both are built once in NewArray.
	inject  []*injector
	prepare *injector

	// base is the parent of every set's context; Close cancels it. wg
	// counts every goroutine the provider or its sets own.
	base context.Context
	stop context.CancelCauseFunc
	wg   sync.WaitGroup

	commits struct {
		sync.Mutex
		hist *hdrhistogram.Histogram // CommitSnapshots' pointer swaps, in ns
		sum  time.Duration           // their exact total, which hist rounds
	}

	// mu guards the sets, their states and fields marked "guarded by
	// ArrayProvider.mu", and the target registry. It is never held while
	// a LUN is prepared, committed or deleted (set.work is), nor while a
	// call sleeps.
	mu struct {
		sync.Mutex
		sets    map[vss.ID]*snapshotSet
		history []vss.ID     // finished sets, oldest first
		live    *snapshotSet // the set neither created nor aborted, or nil (P2)
		current *snapshotSet // the set begun last: GetTargetLuns answers for it
		// targets are the prepared snapshot LUNs of every set not
		// aborted or discarded, until OnLunEmpty; a target is visible
		// only once its set is committed.
		targets  map[string]*target
		byNAA    map[[16]byte]*target
		deferred []logRecord // failures inside the freeze window, logged after it (P7)
		closed   bool
	}
}

var (
	_ Provider           = (*ArrayProvider)(nil)
	_ HardwareProviderEx = (*ArrayProvider)(nil)
	_ Notifications      = (*ArrayProvider)(nil)
)

// snapshotSet is one snapshot set: its state, its volumes and the LUNs
// being snapshotted.
type snapshotSet struct {
	id      vss.ID
	snapCtx vss.SnapshotContext
	// ctx ends when the set is aborted or discarded (Close discards the
	// live set), its cause saying which: sleeps and the preparer stop at
	// once. A created set's ctx never ends.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// released is closed by ReleaseCommit.
	released    chan struct{}
	releaseOnce sync.Once

	// Guarded by ArrayProvider.mu.
	state     vss.SnapshotState
	gone      error // ErrAborted, ErrDiscarded or ErrClosed once the set is
	snaps     []vss.ID
	members   []*member // one per distinct source LUN, in order of first appearance
	bySource  map[string]*member
	queue     []*member // members the preparer has not taken yet
	sealed    bool      // EndPrepareSnapshots was called: no more members
	kick      chan struct{}
	prepDone  chan struct{} // closed when the preparer exits; nil until it starts
	prepErr   error
	committed bool
	commitDur time.Duration

	// work serialises the set's LUN work, the preparer's, CommitSnapshots'
	// and the clean-up's, because lun.SnapshotGroup is not safe for
	// concurrent use. It guards group, prepared and each member's pending
	// and info.
	work     sync.Mutex
	group    *lun.SnapshotGroup // the set's LUNs, committed at one instant
	prepared int                // members prepared, each holding SnapshotReserve
}

// member is one source LUN of a set and its snapshot LUN.
type member struct {
	source *lun.LUN
	name   string // the target's name, TargetName(source, set)
	// Guarded by snapshotSet.work; fixed once the preparer is done.
	pending *lun.PendingSnapshot
	info    LunInfo // the target's information, fixed at prepare (P5)
}

// target is a snapshot LUN the provider made, in the registry.
type target struct {
	lun    *lun.LUN
	source *lun.LUN
	info   LunInfo
	set    *snapshotSet
}

// logRecord is a failure waiting to be logged.
type logRecord struct {
	method vss.ProviderMethod
	set    vss.ID
	err    error
}

// Option configures an ArrayProvider.
type Option func(*ArrayProvider)

// WithLogger sets the logger that receives vetoes and other failures
// (vss-spec.md C: a veto is also logged, but not while volumes are frozen).
// The default discards them.
func WithLogger(l *slog.Logger) Option { return func(p *ArrayProvider) { p.log = l } }

// WithSeed overrides the profile's seed, to replay or vary a run.
func WithSeed(seed uint64) Option { return func(p *ArrayProvider) { p.profile.Seed = seed } }

// NewArray returns the provider of array a behaving as profile says (nil
// for DefaultProfile). The profile is copied; it must pass Validate.
func NewArray(a *lun.Array, profile *Profile, opts ...Option) (*ArrayProvider, error) {
	if a == nil {
		return nil, errors.New("provider: nil array")
	}
	if profile == nil {
		profile = DefaultProfile()
	}
	if err := profile.Validate(); err != nil {
		return nil, err
	}
	if profile.Cache.Mode != lun.CacheNone && a.Durable() {
		return nil, fmt.Errorf("provider: profile %q: cache %v: %w", profile.Name, profile.Cache.Mode, lun.ErrCacheDurable)
	}
	p := &ArrayProvider{array: a, profile: cloneProfile(profile), log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(p)
	}
	p.base, p.stop = context.WithCancelCause(context.Background())
	p.inject = make([]*injector, len(vss.ProviderMethods())+1)
	for _, m := range vss.ProviderMethods() {
		b := p.profile.Methods[m]
		latency := b.Latency
		if m == vss.MethodCommitSnapshots && !p.profile.Commit.Block.IsZero() {
			latency = p.profile.Commit.Block
		}
		p.inject[m] = newInjector(p.profile.Seed, uint64(m), latency, b.Failures)
	}
	p.prepare = newInjector(p.profile.Seed, 0, p.profile.Prepare.Latency, nil)
	p.commits.hist = hdrhistogram.New(1, int64(100*time.Second), 2)
	p.mu.sets = map[vss.ID]*snapshotSet{}
	p.mu.targets = map[string]*target{}
	p.mu.byNAA = map[[16]byte]*target{}
	return p, nil
}

func cloneProfile(p *Profile) *Profile {
	c := *p
	c.Methods = maps.Clone(p.Methods)
	for m, b := range c.Methods {
		b.Failures = slices.Clone(b.Failures)
		c.Methods[m] = b
	}
	return &c
}

// Profile returns the provider's profile. It must not be modified.
func (p *ArrayProvider) Profile() *Profile { return p.profile }

// Array returns the provider's array.
func (p *ArrayProvider) Array() *lun.Array { return p.array }

// Close discards the live set, as an out-of-sequence BeginPrepareSnapshot
// would, stops every goroutine the provider owns and waits for them. Later
// calls fail with ErrClosed. Committed snapshot LUNs stay in the array.
func (p *ArrayProvider) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	live := p.mu.live
	var members []*member
	if live != nil {
		members = p.discardLocked(live, ErrClosed)
	}
	p.mu.Unlock()
	if live != nil {
		p.cleanup(live, members)
	}
	p.stop(ErrClosed)
	p.wg.Wait()
	p.flushLog()
	return nil
}

// State returns the state of set, and false for a set the provider does not
// know (never begun, discarded, or forgotten after historySize newer sets).
func (p *ArrayProvider) State(set vss.ID) (vss.SnapshotState, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.mu.sets[set]
	if !ok {
		return vss.VSS_SS_UNKNOWN, false
	}
	return s.state, true
}

// Prepared returns how many LUNs of set the preparer has prepared so far,
// and how many the set has; ok is false for an unknown set.
func (p *ArrayProvider) Prepared(set vss.ID) (done, total int, ok bool) {
	p.mu.Lock()
	s, ok := p.mu.sets[set]
	if ok {
		total = len(s.members)
	}
	p.mu.Unlock()
	if !ok {
		return 0, 0, false
	}
	s.work.Lock()
	done = s.prepared
	s.work.Unlock()
	return done, total, true
}

// CommitDuration returns how long set's commit took: the pointer swaps of
// all its LUNs, without the profile's block. ok is false until the set is
// committed.
func (p *ArrayProvider) CommitDuration(set vss.ID) (d time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, found := p.mu.sets[set]
	if !found || !s.committed {
		return 0, false
	}
	return s.commitDur, true
}

// CommitStats summarises the commit durations of every set this provider
// committed.
type CommitStats struct {
	Count              int64
	Min, P50, P99, Max time.Duration
	Mean               time.Duration
	// Sum is the exact total of the commit durations.
	Sum time.Duration
}

// CommitStats returns the distribution of commit durations so far.
func (p *ArrayProvider) CommitStats() CommitStats {
	p.commits.Lock()
	defer p.commits.Unlock()
	h := p.commits.hist
	if h.TotalCount() == 0 {
		return CommitStats{}
	}
	return CommitStats{
		Count: h.TotalCount(),
		Min:   time.Duration(h.Min()),
		P50:   time.Duration(h.ValueAtQuantile(50)),
		P99:   time.Duration(h.ValueAtQuantile(99)),
		Max:   time.Duration(h.Max()),
		Mean:  time.Duration(h.Mean()),
		Sum:   p.commits.sum,
	}
}

// CommitHistogram returns a copy of the commit-duration histogram, in
// nanoseconds.
func (p *ArrayProvider) CommitHistogram() *hdrhistogram.Histogram {
	p.commits.Lock()
	defer p.commits.Unlock()
	return hdrhistogram.Import(p.commits.hist.Export())
}

// CommitHistogramSum returns a copy of the commit-duration histogram, in
// nanoseconds, and the exact sum of its values, read together.
func (p *ArrayProvider) CommitHistogramSum() (*hdrhistogram.Histogram, time.Duration) {
	p.commits.Lock()
	defer p.commits.Unlock()
	return hdrhistogram.Import(p.commits.hist.Export()), p.commits.sum
}

// ReleaseCommit ends the wait of set's CommitSnapshots under a profile whose
// commit block is until-released: the "snapshot taken" signal. It may come
// before CommitSnapshots starts waiting, and a second call does nothing.
func (p *ArrayProvider) ReleaseCommit(set vss.ID) error {
	p.mu.Lock()
	s, ok := p.mu.sets[set]
	p.mu.Unlock()
	if !ok {
		return newError(vss.MethodCommitSnapshots, set, vss.VSS_E_OBJECT_NOT_FOUND, ErrUnknownSet)
	}
	s.releaseOnce.Do(func() { close(s.released) })
	return nil
}

// ---- the state machine ----

// enter checks the transition of method m for set id against the table and
// applies it. check, when not nil, validates the call against the set first
// (under the lock); its error leaves the state unchanged. A signalled
// transition (AbortSnapshots) also stops the set's running work at once and
// returns the members to clean up.
func (p *ArrayProvider) enter(m vss.ProviderMethod, id vss.ID, check func(s *snapshotSet) error) (*snapshotSet, transition, []*member, error) {
	if id.IsNull() {
		return nil, transition{}, nil, badArgs(m, id, "GUID_NULL set ID")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, transition{}, nil, newError(m, id, vss.E_ABORT, ErrClosed)
	}
	s, ok := p.mu.sets[id]
	if !ok {
		return nil, transition{}, nil, newError(m, id, vss.VSS_E_OBJECT_NOT_FOUND, ErrUnknownSet)
	}
	t, ok := lookupTransition(m, s.state)
	if !ok {
		return nil, transition{}, nil, newError(m, id, vss.VSS_E_BAD_STATE, fmt.Errorf("%w: %v in %v", ErrBadTransition, m, s.state))
	}
	if check != nil {
		if err := check(s); err != nil {
			return nil, transition{}, nil, err
		}
	}
	var members []*member
	if t.signaled && s.gone == nil {
		s.gone = ErrAborted
		s.cancel(ErrAborted)
		members = s.members
		if p.mu.live == s {
			p.mu.live = nil
		}
		p.retireLocked(s)
	}
	s.state = t.during
	return s, t, members, nil
}

// leave ends a call that entered with t. If an abort, discard or Close
// overtook the call, it returns that; otherwise a failed call leaves the set
// in t.during and returns err, and a successful one moves it to t.to.
func (p *ArrayProvider) leave(m vss.ProviderMethod, s *snapshotSet, t transition, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.gone != nil && !t.signaled {
		return newError(m, s.id, vss.E_ABORT, s.gone)
	}
	if err != nil {
		return err
	}
	if s.state == t.during {
		s.state = t.to
	}
	if s.state == vss.VSS_SS_CREATED {
		if p.mu.live == s {
			p.mu.live = nil
		}
		p.retireLocked(s)
	}
	return nil
}

// retireLocked records s among the finished sets and forgets the oldest
// beyond historySize.
func (p *ArrayProvider) retireLocked(s *snapshotSet) {
	p.mu.history = append(p.mu.history, s.id)
	for len(p.mu.history) > historySize {
		old := p.mu.history[0]
		p.mu.history = p.mu.history[1:]
		if o := p.mu.sets[old]; o != nil && o != p.mu.current && terminal(o.state) {
			delete(p.mu.sets, old)
		}
	}
}

// discardLocked takes s out of the provider (B.8): later calls for it find
// no set, running calls return cause, and its preparer stops. The caller
// then calls cleanup without the lock.
func (p *ArrayProvider) discardLocked(s *snapshotSet, cause error) []*member {
	s.gone = cause
	s.cancel(cause)
	delete(p.mu.sets, s.id)
	if p.mu.live == s {
		p.mu.live = nil
	}
	if p.mu.current == s {
		p.mu.current = nil
	}
	return s.members
}

// cleanup waits for the preparer of a set that was aborted or discarded,
// then aborts every snapshot it prepared or committed, which frees their
// names and snapshot counts, and removes them from the registry (P2, P3).
func (p *ArrayProvider) cleanup(s *snapshotSet, members []*member) {
	p.mu.Lock()
	done := s.prepDone
	p.mu.Unlock()
	if done != nil {
		<-done // prompt: the preparer's sleeps and loop watch s.ctx
	}
	s.work.Lock()
	s.group.Abort() // every snapshot prepared or committed
	s.work.Unlock()
	p.mu.Lock()
	for _, m := range members {
		if t := p.mu.targets[m.name]; t != nil && t.set == s {
			delete(p.mu.targets, m.name)
			if k, ok := naaKey(t.info); ok {
				delete(p.mu.byNAA, k)
			}
		}
	}
	p.mu.Unlock()
}

// injectAround runs method m's latency (watching ctx and stop) and failure.
func (p *ArrayProvider) injectAround(ctx, stop context.Context, m vss.ProviderMethod, set vss.ID) error {
	delay, code := p.inject[m].next()
	if err := sleep(ctx, stop, delay); err != nil {
		return newError(m, set, vss.E_ABORT, err)
	}
	if code.Failed() {
		return newError(m, set, code, ErrInjected)
	}
	return nil
}

// finish logs a failed call and returns err. Inside the freeze window
// (PreCommit, Commit, PostCommit) the record waits for the next call outside
// it (P7): no logging while volumes are frozen.
func (p *ArrayProvider) finish(m vss.ProviderMethod, set vss.ID, err error) error {
	frozen := m == vss.MethodPreCommitSnapshots || m == vss.MethodCommitSnapshots || m == vss.MethodPostCommitSnapshots
	if err != nil && frozen {
		p.mu.Lock()
		p.mu.deferred = append(p.mu.deferred, logRecord{m, set, err})
		p.mu.Unlock()
		return err
	}
	if !frozen {
		p.flushLog()
	}
	if err != nil {
		p.logFailure(logRecord{m, set, err})
	}
	return err
}

func (p *ArrayProvider) flushLog() {
	p.mu.Lock()
	recs := p.mu.deferred
	p.mu.deferred = nil
	p.mu.Unlock()
	for _, r := range recs {
		p.logFailure(r)
	}
}

func (p *ArrayProvider) logFailure(r logRecord) {
	level := slog.LevelDebug
	if errors.Is(r.err, vss.VSS_E_PROVIDER_VETO) {
		level = slog.LevelWarn
	}
	p.log.Log(context.Background(), level, "provider call failed",
		"method", r.method.String(), "set", r.set.String(), "hresult", vss.FromError(r.err).Name(), "err", r.err)
}

// codeOf maps an error of the array to the HRESULT the provider returns.
func codeOf(err error) vss.HRESULT {
	var hr vss.HRESULT
	switch {
	case errors.As(err, &hr):
		return vss.FromError(err)
	case errors.Is(err, ErrNoCapacity), errors.Is(err, lun.ErrCapacity), errors.Is(err, cow.ErrNoSpace),
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// A durable commit the file system cannot hold (its catalogue or
		// data file) is a full array too.
		return vss.VSS_E_INSUFFICIENT_STORAGE
	case errors.Is(err, lun.ErrNotFound), errors.Is(err, lun.ErrDeleted):
		return vss.VSS_E_OBJECT_NOT_FOUND
	case errors.Is(err, lun.ErrReadOnly), errors.Is(err, lun.ErrNotSnapshot):
		return vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER
	case errors.Is(err, lun.ErrBadName):
		return vss.E_INVALIDARG
	case errors.Is(err, lun.ErrInSet):
		return vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS
	}
	return vss.FromError(err) // context errors are E_ABORT, the rest E_FAIL
}

// ---- the array's resources ----

// capacity returns the usable capacity in bytes, 0 for unlimited.
func (p *ArrayProvider) capacity() int64 {
	c, a := p.profile.Capabilities.Capacity, p.array.StoreStats().CapacityBytes
	switch {
	case c == 0:
		return a
	case a == 0:
		return c
	}
	return min(c, a)
}

// room reports whether the array has free capacity for n more snapshots
// beyond reserved ones already promised: nil, or an error wrapping
// ErrNoCapacity that gives the figures.
func (p *ArrayProvider) room(n, promised int) error {
	c := p.capacity()
	if c == 0 {
		return nil
	}
	reserve := p.profile.Capabilities.SnapshotReserve
	used := p.array.StoreStats().ReservedBytes
	free := c - used - reserve*int64(promised)
	need := max(reserve*int64(n), 1)
	if free >= need {
		return nil
	}
	if reserve == 0 {
		return fmt.Errorf("%w: %s of %s in use, none free", ErrNoCapacity, iBytes(used), iBytes(c))
	}
	return fmt.Errorf("%w: %d snapshots need %s free (snapshot-reserve %s each), %s is (%s of %s in use, %d snapshots promised)",
		ErrNoCapacity, n, iBytes(need), iBytes(reserve), iBytes(max(free, 0)), iBytes(used), iBytes(c), promised)
}

// iBytes formats n bytes in binary units.
func iBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// snapshotLimit returns the per-LUN snapshot limit in force: the profile's
// when it is lower than the array's, else the array's. enforced reports
// whether the array itself enforces it (lun.ErrMaxSnapshots).
func (p *ArrayProvider) snapshotLimit() (limit int, enforced bool) {
	arrayLimit := p.array.Config().MaxSnapshots
	if l := p.profile.Capabilities.MaxSnapshotsPerLUN; l > 0 && l < arrayLimit {
		return l, false
	}
	return arrayLimit, true
}

// atSnapshotLimit reports whether src has limit snapshots. lun.Array has no
// per-LUN count query, so this scans the array's LUNs; it runs while
// preparing, never while committing.
func (p *ArrayProvider) atSnapshotLimit(src *lun.LUN, limit int) bool {
	n := 0
	for _, l := range p.array.List() {
		if l.Kind() == lun.Snapshot && l.Parent() == src {
			n++
		}
	}
	return n >= limit
}

// resolve checks devices and luns of one call: both non-empty, of one
// length, no device twice. It returns the array's LUNs, or an error for a
// device the array lacks (E_INVALIDARG) or a LUN it does not own
// (VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER).
func (p *ArrayProvider) resolve(m vss.ProviderMethod, set vss.ID, devices []string, luns []LunInfo) ([]*lun.LUN, error) {
	if len(devices) == 0 || len(devices) != len(luns) {
		return nil, badArgs(m, set, "%d devices and %d LUN informations", len(devices), len(luns))
	}
	out := make([]*lun.LUN, len(devices))
	for i, dev := range devices {
		if slices.Contains(devices[:i], dev) {
			return nil, badArgs(m, set, "device %q given twice", dev)
		}
		l, err := p.array.Get(dev)
		if err != nil {
			return nil, newError(m, set, vss.E_INVALIDARG, fmt.Errorf("%w: %q", ErrUnknownDevice, dev))
		}
		if !owns(l, luns[i]) {
			return nil, newError(m, set, vss.VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER, fmt.Errorf("%w: %q", ErrNotOwned, dev))
		}
		out[i] = l
	}
	return out, nil
}

// owns reports whether info describes l, by its NAA designator, and l is a
// LUN that can be snapshotted (not itself a snapshot LUN).
func owns(l *lun.LUN, info LunInfo) bool {
	k, ok := naaKey(info)
	return ok && k == l.Identity().NAA && l.Kind() != lun.Snapshot
}

// ---- IVssHardwareSnapshotProvider ----

// AreLunsSupported answers whether the array can snapshot all the LUNs in
// snapCtx: false, without error, for a context the profile cannot honour, a
// device the array does not hold, a LUN it does not own (its NAA is not the
// array LUN's, or it is a snapshot LUN), or a transient shortage (capacity
// for fewer snapshots than LUNs). A LUN at its snapshot limit is supported:
// the limit is the provider's to report, as
// VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED from BeginPrepareSnapshot
// (vss-spec.md F.9), not a reason to send the volume to another provider.
// It reads only the NAA of luns and never touches their Interconnects.
func (p *ArrayProvider) AreLunsSupported(ctx context.Context, snapCtx vss.SnapshotContext, devices []string, luns []LunInfo) (bool, error) {
	const m = vss.MethodAreLunsSupported
	if len(devices) == 0 || len(devices) != len(luns) {
		return false, p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "%d devices and %d LUN informations", len(devices), len(luns)))
	}
	for i, dev := range devices {
		if slices.Contains(devices[:i], dev) {
			return false, p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "device %q given twice", dev))
		}
	}
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return false, p.finish(m, vss.GUID_NULL, err)
	}
	return p.refusal(snapCtx, devices, luns) == nil, p.finish(m, vss.GUID_NULL, nil)
}

// Refusal says why AreLunsSupported answers FALSE for devices of the
// provider's own array, described as the array describes them: nil when
// it answers TRUE; else an error wrapping ErrUnsupportedContext,
// ErrUnknownDevice, ErrNotOwned or ErrNoCapacity (with the figures). VSS
// hears only FALSE, and a requester whose volume no provider took only
// VSS_E_VOLUME_NOT_SUPPORTED (vss-spec.md F.2); Refusal lets a requester
// that has the provider at hand, as the daemon does, tell a full array
// from a volume the array cannot snapshot. The answer is the check's at
// the time of the call, which may differ from the earlier answer's.
func (p *ArrayProvider) Refusal(snapCtx vss.SnapshotContext, devices []string) error {
	infos := make([]LunInfo, len(devices))
	for i, dev := range devices {
		if l, err := p.array.Get(dev); err == nil {
			infos[i] = LunInfoOf(l)
		}
	}
	return p.refusal(snapCtx, devices, infos)
}

// refusal is AreLunsSupported's check of valid arguments: nil to support
// them, else why not.
func (p *ArrayProvider) refusal(snapCtx vss.SnapshotContext, devices []string, luns []LunInfo) error {
	if !p.profile.Capabilities.supports(snapCtx) {
		return fmt.Errorf("%w: %v", ErrUnsupportedContext, snapCtx)
	}
	for i, dev := range devices {
		l, err := p.array.Get(dev)
		if err != nil {
			return fmt.Errorf("%w: %q", ErrUnknownDevice, dev)
		}
		if !owns(l, luns[i]) {
			return fmt.Errorf("%w: %q", ErrNotOwned, dev)
		}
	}
	return p.room(len(devices), 0)
}

// BeginPrepareSnapshot adds volume snap (its LUNs) to set and starts
// preparing its snapshot LUNs in the set's preparer goroutine; it returns at
// once. A LUN already in the set (another volume on it) is snapshotted once.
// A set ID other than the live set's discards the live set first (B.8).
func (p *ArrayProvider) BeginPrepareSnapshot(ctx context.Context, set, snap vss.ID, snapCtx vss.SnapshotContext, devices []string, luns []LunInfo) error {
	const m = vss.MethodBeginPrepareSnapshot
	if set.IsNull() || snap.IsNull() {
		return p.finish(m, set, badArgs(m, set, "GUID_NULL set or snapshot ID"))
	}
	sources, err := p.resolve(m, set, devices, luns)
	if err != nil {
		return p.finish(m, set, err)
	}
	if !p.profile.Capabilities.supports(snapCtx) {
		return p.finish(m, set, newError(m, set, vss.VSS_E_UNSUPPORTED_CONTEXT, fmt.Errorf("%w: %v", ErrUnsupportedContext, snapCtx)))
	}

	s, t, err := p.beginSet(set, snap, snapCtx)
	if err != nil {
		return p.finish(m, set, err)
	}
	if err := p.injectAround(ctx, s.ctx, m, set); err != nil {
		return p.finish(m, set, p.leave(m, s, t, err))
	}

	p.mu.Lock()
	switch {
	case s.gone != nil:
		p.mu.Unlock()
		return p.finish(m, set, p.leave(m, s, t, nil))
	case s.sealed: // EndPrepareSnapshots overtook this call
		p.mu.Unlock()
		return p.finish(m, set, newError(m, set, vss.VSS_E_BAD_STATE, fmt.Errorf("%w: %v after EndPrepareSnapshots", ErrBadTransition, m)))
	case slices.Contains(s.snaps, snap):
		p.mu.Unlock()
		return p.finish(m, set, badArgs(m, set, "snapshot %v given twice", snap))
	case len(s.snaps) >= maxVolumes:
		p.mu.Unlock()
		return p.finish(m, set, newError(m, set, vss.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED, ErrTooManyVolumes))
	}
	// The per-LUN snapshot limit is the provider's to report, here, inside
	// AddToSnapshotSet (vss-spec.md F.9), counted after a stale set was
	// discarded; a LUN already in the set is not counted twice.
	limit, _ := p.snapshotLimit()
	for _, src := range sources {
		if s.bySource[src.Name()] == nil && p.atSnapshotLimit(src, limit) {
			p.mu.Unlock()
			return p.finish(m, set, newError(m, set, vss.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED, fmt.Errorf("%s: %w", src.Name(), lun.ErrMaxSnapshots)))
		}
	}
	s.snaps = append(s.snaps, snap)
	for _, src := range sources {
		if s.bySource[src.Name()] != nil {
			continue // the same LUN under another volume of the set
		}
		mb := &member{source: src, name: TargetName(src.Name(), set)}
		s.members = append(s.members, mb)
		s.bySource[src.Name()] = mb
		s.queue = append(s.queue, mb)
	}
	if s.prepDone == nil {
		s.prepDone = make(chan struct{})
		p.wg.Go(func() { p.runPreparer(s) })
	}
	p.mu.Unlock()
	kick(s)
	return p.finish(m, set, p.leave(m, s, t, nil))
}

// beginSet applies BeginPrepareSnapshot's transition: for a new set ID it
// discards the live set, completely, and creates the new set.
func (p *ArrayProvider) beginSet(id, snap vss.ID, snapCtx vss.SnapshotContext) (*snapshotSet, transition, error) {
	const m = vss.MethodBeginPrepareSnapshot
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, transition{}, newError(m, id, vss.E_ABORT, ErrClosed)
	}
	s := p.mu.sets[id]
	from := vss.VSS_SS_UNKNOWN
	if s != nil {
		from = s.state
	}
	t, ok := lookupTransition(m, from)
	if !ok {
		p.mu.Unlock()
		return nil, transition{}, newError(m, id, vss.VSS_E_BAD_STATE, fmt.Errorf("%w: %v in %v", ErrBadTransition, m, from))
	}
	if s != nil && s.snapCtx != snapCtx {
		p.mu.Unlock()
		return nil, transition{}, badArgs(m, id, "context %v differs from the set's %v", snapCtx, s.snapCtx)
	}
	var stale *snapshotSet
	var staleMembers []*member
	if s == nil {
		if stale = p.mu.live; stale != nil {
			staleMembers = p.discardLocked(stale, ErrDiscarded)
		}
		s = &snapshotSet{id: id, snapCtx: snapCtx, released: make(chan struct{}),
			bySource: map[string]*member{}, kick: make(chan struct{}, 1), group: p.array.NewSnapshotGroup()}
		// Not a child of p.base: a finished set is never cancelled, and a
		// child would stay registered with its parent until Close. Close
		// discards the live set instead.
		s.ctx, s.cancel = context.WithCancelCause(context.Background())
		p.mu.sets[id] = s
		p.mu.live = s
		p.mu.current = s
	}
	s.state = t.during
	p.mu.Unlock()
	if stale != nil {
		p.cleanup(stale, staleMembers)
	}
	return s, t, nil
}

func kick(s *snapshotSet) {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// runPreparer is the set's preparer goroutine: it prepares the queued
// members one by one, each after the profile's preparation latency, until
// EndPrepareSnapshots has sealed the set and the queue is empty, a member
// fails, or the set's context ends (abort, discard, Close).
func (p *ArrayProvider) runPreparer(s *snapshotSet) {
	defer close(s.prepDone)
	for {
		p.mu.Lock()
		var mb *member
		if len(s.queue) > 0 {
			mb = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		sealed := s.sealed
		p.mu.Unlock()
		if mb == nil {
			if sealed {
				return
			}
			select {
			case <-s.kick:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		delay, _ := p.prepare.next()
		if sleep(s.ctx, s.ctx, delay) != nil {
			return
		}
		if err := p.prepareMember(s, mb); err != nil {
			p.mu.Lock()
			if s.prepErr == nil {
				s.prepErr = err
			}
			p.mu.Unlock()
			return
		}
	}
}

// prepareMember reserves mb's snapshot LUN: limit, capacity, name, identity
// and the source's snapshot count, so that the commit is a pointer swap.
func (p *ArrayProvider) prepareMember(s *snapshotSet, mb *member) error {
	s.work.Lock()
	defer s.work.Unlock()
	if err := s.ctx.Err(); err != nil {
		return context.Cause(s.ctx)
	}
	if limit, enforced := p.snapshotLimit(); !enforced && p.atSnapshotLimit(mb.source, limit) {
		return fmt.Errorf("%s: %w", mb.source.Name(), lun.ErrMaxSnapshots)
	}
	if err := p.room(1, s.prepared); err != nil {
		return fmt.Errorf("%s: %w", mb.source.Name(), err)
	}
	ps, err := s.group.Prepare(mb.source.Name(), mb.name)
	if err != nil {
		return fmt.Errorf("%s: %w", mb.source.Name(), err)
	}
	mb.pending = ps
	mb.info = LunInfoOf(ps.LUN())
	s.prepared++
	return nil
}

// GetTargetLuns returns, 1:1 with devices, the information of their
// snapshot LUNs in the current set, fixed when they were prepared: it reads
// no LUN (P5). A device not in the set, or a source whose NAA is not the
// device's, is E_INVALIDARG.
func (p *ArrayProvider) GetTargetLuns(ctx context.Context, devices []string, sources []LunInfo) ([]LunInfo, error) {
	const m = vss.MethodGetTargetLuns
	if len(devices) == 0 || len(devices) != len(sources) {
		return nil, p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "%d devices and %d sources", len(devices), len(sources)))
	}
	p.mu.Lock()
	s := p.mu.current
	state := vss.VSS_SS_UNKNOWN
	if s != nil {
		state = s.state
	}
	p.mu.Unlock()
	if _, ok := lookupTransition(m, state); !ok {
		return nil, p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, vss.VSS_E_BAD_STATE, fmt.Errorf("%w: %v in %v", ErrBadTransition, m, state)))
	}
	if err := p.injectAround(ctx, s.ctx, m, s.id); err != nil {
		return nil, p.finish(m, s.id, err)
	}
	out, err := p.targetInfos(s, devices, sources)
	return out, p.finish(m, s.id, err)
}

// targetInfos looks up GetTargetLuns' answer in set s.
func (p *ArrayProvider) targetInfos(s *snapshotSet, devices []string, sources []LunInfo) ([]LunInfo, error) {
	const m = vss.MethodGetTargetLuns
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.gone != nil {
		return nil, newError(m, s.id, vss.E_ABORT, s.gone)
	}
	out := make([]LunInfo, len(devices))
	for i, dev := range devices {
		mb := s.bySource[dev]
		if mb == nil {
			return nil, newError(m, s.id, vss.E_INVALIDARG, fmt.Errorf("%w: %q is not in set %v", ErrUnknownDevice, dev, s.id))
		}
		k, ok := naaKey(sources[i])
		if ok && k != mb.source.Identity().NAA || !ok && sources[i].NAA() != nil {
			return nil, badArgs(m, s.id, "source %d is not the LUN of device %q", i, dev)
		}
		out[i] = mb.info.Clone()
	}
	return out, nil
}

// visibleLocked returns the registry's target of naa once its set has
// committed.
func (p *ArrayProvider) visibleLocked(info LunInfo) *target {
	k, ok := naaKey(info)
	if !ok {
		return nil
	}
	t := p.mu.byNAA[k]
	if t == nil || !t.set.committed {
		return nil
	}
	return t
}

// targetsOf returns the committed targets luns describe, all or none.
func (p *ArrayProvider) targetsOf(m vss.ProviderMethod, luns []LunInfo) ([]*target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*target, len(luns))
	for i, info := range luns {
		t := p.visibleLocked(info)
		if t == nil {
			return nil, newError(m, vss.GUID_NULL, vss.E_INVALIDARG, fmt.Errorf("%w: LUN %d (serial %q) is no snapshot LUN of this provider", ErrUnknownDevice, i, info.SerialNumber))
		}
		out[i] = t
	}
	return out, nil
}

// LocateLuns unmasks the snapshot LUNs luns describe, so the NBD server
// exports them. It does not rescan, and leaves them read-only.
func (p *ArrayProvider) LocateLuns(ctx context.Context, luns []LunInfo) error {
	const m = vss.MethodLocateLuns
	if len(luns) == 0 {
		return p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "no LUNs"))
	}
	targets, err := p.targetsOf(m, luns)
	if err != nil {
		return p.finish(m, vss.GUID_NULL, err)
	}
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return p.finish(m, vss.GUID_NULL, err)
	}
	for _, t := range targets {
		if err := t.lun.SetMasked(false); err != nil {
			return p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, codeOf(err), err))
		}
	}
	return p.finish(m, vss.GUID_NULL, nil)
}

// FillInLunInfo fills info for device: for a committed snapshot LUN of this
// provider exactly what GetTargetLuns returned, for another LUN of the array
// LunInfoOf. info's Interconnects are kept. An unknown device (or a snapshot
// LUN not committed yet) answers false and no error.
func (p *ArrayProvider) FillInLunInfo(ctx context.Context, device string, info *LunInfo) (bool, error) {
	const m = vss.MethodFillInLunInfo
	if info == nil {
		return false, p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "nil LUN information"))
	}
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return false, p.finish(m, vss.GUID_NULL, err)
	}
	var filled LunInfo
	p.mu.Lock()
	t := p.mu.targets[device]
	known := t != nil && t.set.committed
	if known {
		filled = t.info.Clone()
	}
	p.mu.Unlock()
	if !known {
		l, err := p.array.Get(device)
		if err != nil {
			return false, p.finish(m, vss.GUID_NULL, nil)
		}
		filled = LunInfoOf(l)
	}
	filled.Interconnects = info.Interconnects
	*info = filled
	return true, p.finish(m, vss.GUID_NULL, nil)
}

// OnLunEmpty deletes device, a snapshot LUN of this provider nobody uses
// any more: the only point where the provider reclaims one (F.8). A LUN
// deleted already is no error (best effort); a device that is not a
// snapshot LUN of this provider is E_INVALIDARG, and nothing is deleted.
func (p *ArrayProvider) OnLunEmpty(ctx context.Context, device string, info LunInfo) error {
	const m = vss.MethodOnLunEmpty
	p.mu.Lock()
	t := p.mu.targets[device]
	if t != nil && !t.set.committed {
		t = nil
	}
	p.mu.Unlock()
	if t == nil {
		return p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, vss.E_INVALIDARG, fmt.Errorf("%w: %q is no snapshot LUN of this provider", ErrUnknownDevice, device)))
	}
	if k, ok := naaKey(info); ok && k != t.lun.Identity().NAA {
		return p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "LUN information does not describe %q", device))
	}
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return p.finish(m, vss.GUID_NULL, err)
	}
	p.mu.Lock()
	if p.mu.targets[device] == t {
		delete(p.mu.targets, device)
		if k, ok := naaKey(t.info); ok {
			delete(p.mu.byNAA, k)
		}
	}
	p.mu.Unlock()
	if err := p.array.Delete(device); err != nil && !errors.Is(err, lun.ErrNotFound) {
		return p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, codeOf(err), err))
	}
	return p.finish(m, vss.GUID_NULL, nil)
}

// ---- IVssHardwareSnapshotProviderEx ----

// GetProviderCapabilities returns the profile's capability mask.
func (p *ArrayProvider) GetProviderCapabilities(ctx context.Context) (vss.ProviderCapability, error) {
	const m = vss.MethodGetProviderCapabilities
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return 0, p.finish(m, vss.GUID_NULL, err)
	}
	return p.profile.Capabilities.providerCapabilities(), p.finish(m, vss.GUID_NULL, nil)
}

// onLunStateChangeFlags are the flags OnLunStateChange accepts.
const onLunStateChangeFlags = vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE | vss.VSS_ONLUNSTATECHANGE_NOTIFY_LUN_PRE_RECOVERY |
	vss.VSS_ONLUNSTATECHANGE_NOTIFY_LUN_POST_RECOVERY | vss.VSS_ONLUNSTATECHANGE_DO_MASK_LUNS

// OnLunStateChange applies a break's changes to snapshot LUNs of this
// provider: NOTIFY_READ_WRITE makes them writable (an O(1) clone of the
// image), DO_MASK_LUNS masks them. The recovery notifications need nothing.
func (p *ArrayProvider) OnLunStateChange(ctx context.Context, snapshotLuns, originalLuns []LunInfo, flags vss.HardwareOptions) error {
	const m = vss.MethodOnLunStateChange
	if len(snapshotLuns) == 0 || len(snapshotLuns) != len(originalLuns) {
		return p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "%d snapshot and %d original LUNs", len(snapshotLuns), len(originalLuns)))
	}
	if flags&^onLunStateChangeFlags != 0 {
		return p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "flags %v", flags&^onLunStateChangeFlags))
	}
	targets, err := p.targetsOf(m, snapshotLuns)
	if err != nil {
		return p.finish(m, vss.GUID_NULL, err)
	}
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return p.finish(m, vss.GUID_NULL, err)
	}
	for _, t := range targets {
		if flags&vss.VSS_ONLUNSTATECHANGE_NOTIFY_READ_WRITE != 0 {
			if err := t.lun.MakeWritable(); err != nil {
				return p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, codeOf(err), err))
			}
			// The firmware's cache, from the content at the break on
			// (CacheBehavior).
			if c := p.profile.Cache; c.Mode != lun.CacheNone && t.lun.CacheMode() == lun.CacheNone {
				if err := t.lun.SetCache(ctx, c.Mode, c.Size, c.CrashPoints); err != nil {
					return p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, codeOf(err), err))
				}
			}
		}
		if flags&vss.VSS_ONLUNSTATECHANGE_DO_MASK_LUNS != 0 {
			if err := t.lun.SetMasked(true); err != nil {
				return p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, codeOf(err), err))
			}
		}
	}
	return p.finish(m, vss.GUID_NULL, nil)
}

// ResyncLuns makes each source's content that of its target, inside the
// array (lun.Array.Revert, O(1)). The arguments are checked at once; the
// profile's latency and failure and the reverts run in the returned Async.
// Each target must be a snapshot LUN of this provider taken of its source.
func (p *ArrayProvider) ResyncLuns(ctx context.Context, sources, targets []LunInfo) (Async, error) {
	const m = vss.MethodResyncLuns
	if len(sources) == 0 || len(sources) != len(targets) {
		return nil, p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "%d sources and %d targets", len(sources), len(targets)))
	}
	ts, err := p.targetsOf(m, targets)
	if err != nil {
		return nil, p.finish(m, vss.GUID_NULL, err)
	}
	for i, t := range ts {
		if k, ok := naaKey(sources[i]); !ok || k != t.source.Identity().NAA {
			return nil, p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "target %d is not a snapshot of source %d", i, i))
		}
	}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, vss.E_ABORT, ErrClosed))
	}
	f := &future{done: make(chan struct{})}
	p.wg.Go(func() {
		defer close(f.done)
		if err := p.injectAround(p.base, p.base, m, vss.GUID_NULL); err != nil {
			f.err = p.finish(m, vss.GUID_NULL, err)
			return
		}
		for _, t := range ts {
			if err := p.array.Revert(t.source.Name(), t.lun.Name()); err != nil {
				f.err = p.finish(m, vss.GUID_NULL, newError(m, vss.GUID_NULL, codeOf(err), err))
				return
			}
		}
	})
	p.mu.Unlock()
	return f, nil
}

// future is the Async of ResyncLuns.
type future struct {
	done chan struct{}
	err  error // written before done is closed
}

var _ Async = (*future)(nil)

// Wait blocks until the operation ends and returns its error, or returns
// ctx's error if ctx ends first (the operation goes on).
func (f *future) Wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OnReuseLuns is reserved by Windows; it checks its arguments and runs the
// profile's behaviour only.
func (p *ArrayProvider) OnReuseLuns(ctx context.Context, snapshotLuns, originalLuns []LunInfo) error {
	const m = vss.MethodOnReuseLuns
	if len(snapshotLuns) != len(originalLuns) {
		return p.finish(m, vss.GUID_NULL, badArgs(m, vss.GUID_NULL, "%d snapshot and %d original LUNs", len(snapshotLuns), len(originalLuns)))
	}
	return p.finish(m, vss.GUID_NULL, p.injectAround(ctx, p.base, m, vss.GUID_NULL))
}

// ---- IVssProviderCreateSnapshotSet ----

// EndPrepareSnapshots is the rendezvous of preparation: it waits until every
// LUN of the set is prepared and reports the first failure
// (VSS_E_INSUFFICIENT_STORAGE, VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED...).
// An AbortSnapshots while it waits ends the wait at once with ErrAborted.
func (p *ArrayProvider) EndPrepareSnapshots(ctx context.Context, set vss.ID) error {
	const m = vss.MethodEndPrepareSnapshots
	s, t, _, err := p.enter(m, set, nil)
	if err != nil {
		return p.finish(m, set, err)
	}
	if err := p.injectAround(ctx, s.ctx, m, set); err != nil {
		return p.finish(m, set, p.leave(m, s, t, err))
	}
	p.mu.Lock()
	s.sealed = true
	done := s.prepDone
	p.mu.Unlock()
	kick(s)
	if done != nil {
		select {
		case <-done:
		case <-s.ctx.Done():
			return p.finish(m, set, p.leave(m, s, t, nil)) // leave reports the abort
		case <-ctx.Done():
			return p.finish(m, set, p.leave(m, s, t, newError(m, set, vss.E_ABORT, ctx.Err())))
		}
	}
	p.mu.Lock()
	perr := s.prepErr
	for _, mb := range s.members {
		if perr == nil && mb.pending == nil {
			perr = fmt.Errorf("%s: preparation did not run", mb.source.Name())
		}
	}
	if perr == nil && s.gone == nil {
		for _, mb := range s.members {
			t := &target{lun: mb.pending.LUN(), source: mb.source, info: mb.info, set: s}
			p.mu.targets[mb.name] = t
			if k, ok := naaKey(mb.info); ok {
				p.mu.byNAA[k] = t
			}
		}
	}
	p.mu.Unlock()
	if perr != nil {
		return p.finish(m, set, p.leave(m, s, t, newError(m, set, codeOf(perr), perr)))
	}
	return p.finish(m, set, p.leave(m, s, t, nil))
}

// PreCommitSnapshots has no work of its own: preparation did it all.
func (p *ArrayProvider) PreCommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.step(ctx, vss.MethodPreCommitSnapshots, set, nil)
}

// step runs a method whose only work is its transition (and check).
func (p *ArrayProvider) step(ctx context.Context, m vss.ProviderMethod, set vss.ID, check func(*snapshotSet) error) error {
	s, t, _, err := p.enter(m, set, check)
	if err != nil {
		return p.finish(m, set, err)
	}
	return p.finish(m, set, p.leave(m, s, t, p.injectAround(ctx, s.ctx, m, set)))
}

// CommitSnapshots commits every prepared LUN of the set: after the
// profile's block (and, with until-released, ReleaseCommit), one commit of
// the set's lun.SnapshotGroup, a single atomic swap for every LUN (a
// consistency group). Nothing in it does I/O, logs, or allocates; the
// snapshots are complete, and of one instant, when it returns. If a LUN
// was deleted meanwhile, nothing is committed and the set stays
// uncommitted (P4, B.9).
func (p *ArrayProvider) CommitSnapshots(ctx context.Context, set vss.ID) error {
	const m = vss.MethodCommitSnapshots
	s, t, _, err := p.enter(m, set, nil)
	if err != nil {
		return p.finish(m, set, err)
	}
	if err := p.injectAround(ctx, s.ctx, m, set); err != nil {
		return p.finish(m, set, p.leave(m, s, t, err))
	}
	if p.profile.Commit.UntilReleased {
		select {
		case <-s.released:
		case <-s.ctx.Done():
			return p.finish(m, set, p.leave(m, s, t, nil))
		case <-ctx.Done():
			return p.finish(m, set, p.leave(m, s, t, newError(m, set, vss.E_ABORT, ctx.Err())))
		}
	}

	s.work.Lock()
	if s.ctx.Err() != nil { // aborted before the swaps: nothing to undo
		s.work.Unlock()
		return p.finish(m, set, p.leave(m, s, t, nil))
	}
	start := time.Now()
	var failed error
	if err := s.group.CommitAt(start); err != nil { // all or none
		failed = fmt.Errorf("committing %d LUNs: %w", len(s.members), err)
	}
	d := time.Since(start)
	s.work.Unlock()

	if failed != nil {
		return p.finish(m, set, p.leave(m, s, t, newError(m, set, codeOf(failed), failed)))
	}
	p.commits.Lock()
	_ = p.commits.hist.RecordValue(max(1, int64(d)))
	p.commits.sum += d
	p.commits.Unlock()
	p.mu.Lock()
	if s.gone == nil {
		s.committed = true
		s.commitDur = d
	}
	p.mu.Unlock()
	return p.finish(m, set, p.leave(m, s, t, nil))
}

// PostCommitSnapshots checks that count is the number of snapshots
// (volumes) in the set.
func (p *ArrayProvider) PostCommitSnapshots(ctx context.Context, set vss.ID, count int) error {
	const m = vss.MethodPostCommitSnapshots
	return p.step(ctx, m, set, func(s *snapshotSet) error {
		if count != len(s.snaps) {
			return badArgs(m, set, "count %d, the set has %d snapshots", count, len(s.snaps))
		}
		return nil
	})
}

// PreFinalCommitSnapshots has no work of its own.
func (p *ArrayProvider) PreFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.step(ctx, vss.MethodPreFinalCommitSnapshots, set, nil)
}

// PostFinalCommitSnapshots creates the set: its snapshot LUNs now belong to
// the registry until OnLunEmpty.
func (p *ArrayProvider) PostFinalCommitSnapshots(ctx context.Context, set vss.ID) error {
	return p.step(ctx, vss.MethodPostFinalCommitSnapshots, set, nil)
}

// AbortSnapshots aborts a set after EndPrepareSnapshots has been called
// (possibly while it still runs): running calls and preparation stop at
// once, and every snapshot LUN the set prepared or committed is removed,
// with its name and snapshot count (P3, B.7). Before EndPrepareSnapshots it
// is VSS_E_BAD_STATE; a second call does nothing. The profile's failure,
// if any, is returned after the clean-up: VSS ignores this method's result,
// and an array that failed to clean up would leak LUNs no one can reclaim.
func (p *ArrayProvider) AbortSnapshots(ctx context.Context, set vss.ID) error {
	const m = vss.MethodAbortSnapshots
	s, t, members, err := p.enter(m, set, nil)
	if err != nil {
		return p.finish(m, set, err)
	}
	injected := p.injectAround(ctx, p.base, m, set)
	if members != nil {
		p.cleanup(s, members)
	}
	return p.finish(m, set, p.leave(m, s, t, injected))
}

// ---- IVssProviderNotifications ----

// OnLoad runs the profile's behaviour only.
func (p *ArrayProvider) OnLoad(ctx context.Context) error {
	const m = vss.MethodOnLoad
	return p.finish(m, vss.GUID_NULL, p.injectAround(ctx, p.base, m, vss.GUID_NULL))
}

// OnUnload with force discards the live set, as a provider being unloaded
// loses its state; without force it keeps it. The provider stays usable.
func (p *ArrayProvider) OnUnload(ctx context.Context, force bool) error {
	const m = vss.MethodOnUnload
	if err := p.injectAround(ctx, p.base, m, vss.GUID_NULL); err != nil {
		return p.finish(m, vss.GUID_NULL, err)
	}
	if force {
		p.mu.Lock()
		live := p.mu.live
		var members []*member
		if live != nil {
			members = p.discardLocked(live, ErrDiscarded)
		}
		p.mu.Unlock()
		if live != nil {
			p.cleanup(live, members)
		}
	}
	return p.finish(m, vss.GUID_NULL, nil)
}

// Adopt takes on the snapshot LUNs of a set that an earlier provider over
// the same array committed (a durable array's, at the daemon's start), so
// that this provider answers for them as for its own: FillInLunInfo,
// OnLunEmpty, OnLunStateChange and ResyncLuns. devices are the snapshot
// LUNs' names and infos what GetTargetLuns returned for them, one for one;
// each must name a snapshot LUN of the array by name and NAA identifier.
// The set is recorded as created. Nothing is adopted when one does not
// match.
func (p *ArrayProvider) Adopt(set vss.ID, snapCtx vss.SnapshotContext, devices []string, infos []LunInfo) error {
	if len(devices) != len(infos) {
		return fmt.Errorf("provider: adopt set %v: %d devices and %d LUN records", set, len(devices), len(infos))
	}
	s := &snapshotSet{id: set, snapCtx: snapCtx, released: make(chan struct{}), bySource: map[string]*member{},
		kick: make(chan struct{}, 1), state: vss.VSS_SS_CREATED, committed: true}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	close(s.released)
	var ts []*target
	for i, dev := range devices {
		l, err := p.array.Get(dev)
		if err != nil {
			return fmt.Errorf("provider: adopt set %v: %w", set, err)
		}
		k, ok := naaKey(infos[i])
		if l.Kind() != lun.Snapshot || l.Parent() == nil || !ok || k != l.Identity().NAA {
			return fmt.Errorf("provider: adopt set %v: %w: %q is not the snapshot LUN its record describes", set, ErrUnknownDevice, dev)
		}
		ts = append(ts, &target{lun: l, source: l.Parent(), info: infos[i].Clone(), set: s})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.mu.sets[set]; ok {
		return fmt.Errorf("provider: adopt set %v: the provider knows it already", set)
	}
	for i, t := range ts {
		p.mu.targets[devices[i]] = t
		if k, ok := naaKey(t.info); ok {
			p.mu.byNAA[k] = t
		}
	}
	p.mu.sets[set] = s
	p.retireLocked(s)
	return nil
}
