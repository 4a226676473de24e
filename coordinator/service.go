package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// Default windows. Windows publishes only the first two (vss-spec.md B.2,
// B.3); the others are configurable with these defaults (B.4).
const (
	DefaultHoldWindow      = 10 * time.Second
	DefaultFreezeWindow    = 60 * time.Second
	DefaultPrepareWindow   = 120 * time.Second
	DefaultEventWindow     = 60 * time.Second
	DefaultProviderTimeout = 60 * time.Second
	// MaxVolumes is the most volumes one set can hold (vss-spec.md F.9).
	MaxVolumes = 64
	// DefaultSetHistory is how many snapshot sets the service remembers
	// when Config sets no SetHistory.
	DefaultSetHistory = 1000
)

// Event-log IDs the coordinator writes, as Windows' VSS source does.
const (
	// EventProviderError is VSS event 12293: a provider returned an
	// unexpected error.
	EventProviderError = 12293
	// EventHoldTimeout is VSS event 12298: writes could not be held for
	// the whole commit.
	EventHoldTimeout = 12298
	// EventWriterError is VSS event 8229: a writer failed an event.
	EventWriterError = 8229
)

// Config sets the service's windows. Zero values take the defaults, so
// tests can run the 10 s and 60 s windows in milliseconds.
type Config struct {
	// HoldWindow is the flush & hold window (B.2).
	HoldWindow time.Duration
	// FreezeWindow is the default dwTimeoutFreeze of writers that set
	// none (B.3).
	FreezeWindow time.Duration
	// PrepareWindow bounds OnPrepareSnapshot (B.4).
	PrepareWindow time.Duration
	// EventWindow bounds every other writer event (B.4).
	EventWindow time.Duration
	// ProviderTimeout bounds each provider call outside the hold window.
	ProviderTimeout time.Duration
	// SetHistory bounds the sets Set and Sets know: past it, starting a
	// set forgets the oldest one that holds no snapshot and is not being
	// created. A set that holds snapshots is never forgotten, so the
	// history exceeds the bound only by sets the snapshot limits bound.
	// 0 for DefaultSetHistory.
	SetHistory int
	// Logger receives the structured event log; slog.Default when nil.
	Logger *slog.Logger
}

func (c *Config) fill() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HoldWindow, DefaultHoldWindow)
	def(&c.FreezeWindow, DefaultFreezeWindow)
	def(&c.PrepareWindow, DefaultPrepareWindow)
	def(&c.EventWindow, DefaultEventWindow)
	def(&c.ProviderTimeout, DefaultProviderTimeout)
	if c.SetHistory <= 0 {
		c.SetHistory = DefaultSetHistory
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Registration registers a provider with the service.
type Registration struct {
	ID   vss.ID
	Name string
	// Type is VSS_PROV_HARDWARE or VSS_PROV_SOFTWARE; hardware providers
	// are tried first (vss-spec.md A.5).
	Type vss.ProviderType
	// Priority orders providers of one type, highest first. Windows leaves
	// the order among hardware providers undefined.
	Priority int
	Provider provider.Provider
	// Host is the array behind the provider when its LUNs are not in the
	// service's array (AddVolumeOn); nil otherwise.
	Host LunHost
}

// Errors of the service's configuration.
var (
	ErrDuplicate  = errors.New("coordinator: already registered")
	ErrNoSuchLUN  = errors.New("coordinator: volume names a LUN the array does not hold")
	ErrBadVolume  = errors.New("coordinator: a volume needs a name and at least one LUN")
	ErrClosed     = errors.New("coordinator: service closed")
	errWriterName = errors.New("coordinator: writer needs a unique name")
)

// Service is the VSS service: it holds the registered providers, writers and
// volumes, serializes snapshot-set creation (B.1), runs the sequence of A.7
// and keeps the snapshots it created. Requesters talk to it through
// BackupComponents.
type Service struct {
	array *lun.Array
	cfg   Config
	log   *slog.Logger
	host  string

	// wg owns every goroutine the service starts: DoSnapshotSet runs,
	// writer callbacks, freeze-window timers.
	wg sync.WaitGroup

	mu struct {
		sync.Mutex
		providers []*Registration
		writers   []*writerReg
		volumes   map[string][]string // volume -> LUN names
		snapshots map[vss.ID]*snapshotRecord
		sets      map[vss.ID]*setRecord
		// creating is the requester whose set is being created, from
		// StartSnapshotSet until DoSnapshotSet completes or it closes.
		creating *BackupComponents
		closed   bool

		// volumeHosts maps a volume on a host's array to that host's
		// registration (AddVolumeOn); other volumes are the array's.
		volumeHosts map[string]*Registration
	}
}

// New returns a service over array.
func New(array *lun.Array, cfg Config) *Service {
	cfg.fill()
	host, _ := os.Hostname()
	s := &Service{array: array, cfg: cfg, log: cfg.Logger, host: host}
	s.mu.volumes = make(map[string][]string)
	s.mu.snapshots = make(map[vss.ID]*snapshotRecord)
	s.mu.sets = make(map[vss.ID]*setRecord)
	return s
}

// Array returns the array the service snapshots.
func (s *Service) Array() *lun.Array { return s.array }

// Config returns the configuration with defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// RegisterProvider adds a provider and, if it takes notifications, calls
// OnLoad.
func (s *Service) RegisterProvider(ctx context.Context, r Registration) error {
	if r.Provider == nil || r.Name == "" {
		return fmt.Errorf("%w: a provider needs a name and an implementation", vss.E_INVALIDARG)
	}
	if r.ID.IsNull() {
		r.ID = vss.NewID()
	}
	if r.Type == 0 {
		r.Type = vss.VSS_PROV_HARDWARE
	}
	s.mu.Lock()
	for _, p := range s.mu.providers {
		if p.ID == r.ID || p.Name == r.Name {
			s.mu.Unlock()
			return fmt.Errorf("%w: provider %s", ErrDuplicate, r.Name)
		}
	}
	s.mu.providers = append(s.mu.providers, &r)
	// Hardware first, then software, then system; by priority within a type.
	rank := func(t vss.ProviderType) int {
		switch t {
		case vss.VSS_PROV_HARDWARE:
			return 0
		case vss.VSS_PROV_SOFTWARE:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(s.mu.providers, func(a, b *Registration) int {
		return cmp.Or(cmp.Compare(rank(a.Type), rank(b.Type)), cmp.Compare(b.Priority, a.Priority))
	})
	s.mu.Unlock()
	if n, ok := r.Provider.(provider.Notifications); ok {
		return n.OnLoad(ctx)
	}
	return nil
}

// Providers returns the registrations in selection order.
func (s *Service) Providers() []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Registration, len(s.mu.providers))
	for i, p := range s.mu.providers {
		out[i] = *p
	}
	return out
}

// providerList returns the registrations themselves, in selection order:
// a set tells its providers apart by these pointers.
func (s *Service) providerList() []*Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.providers)
}

func (s *Service) providerByID(id vss.ID) *Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.mu.providers {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// AddVolume defines a volume: a name and the LUNs it spans. One LUN may
// belong to several volumes.
func (s *Service) AddVolume(name string, luns ...string) error {
	if name == "" || len(luns) == 0 {
		return ErrBadVolume
	}
	for _, l := range luns {
		if _, err := s.array.Get(l); err != nil {
			return fmt.Errorf("%w: %s", ErrNoSuchLUN, l)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.volumes[name]; ok {
		return fmt.Errorf("%w: volume %s", ErrDuplicate, name)
	}
	s.mu.volumes[name] = slices.Clone(luns)
	return nil
}

// Volumes returns each volume's LUNs.
func (s *Service) Volumes() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.mu.volumes))
	for k, v := range s.mu.volumes {
		out[k] = slices.Clone(v)
	}
	return out
}

func (s *Service) volumeLUNs(name string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.mu.volumes[name]
	if !ok {
		// A LUN is a volume of itself, so a single-LUN volume needs no
		// definition.
		if _, err := s.array.Get(name); err == nil {
			return []string{name}, true
		}
	}
	return slices.Clone(l), ok
}

// writerReg is a registered writer. mu serializes its callbacks.
type writerReg struct {
	id       vss.ID
	instance vss.ID
	opts     WriterOptions
	w        Writer
	mu       sync.Mutex
}

// AddWriter subscribes a writer and returns its instance ID.
func (s *Service) AddWriter(w Writer, opts WriterOptions) (vss.ID, error) {
	if opts.Name == "" || w == nil {
		return vss.ID{}, errWriterName
	}
	if opts.ID.IsNull() {
		opts.ID = vss.NewID()
	}
	if opts.Level == vss.VSS_APP_UNKNOWN {
		opts.Level = vss.VSS_APP_FRONT_END
	}
	if opts.FreezeTimeout <= 0 {
		opts.FreezeTimeout = s.cfg.FreezeWindow
	}
	r := &writerReg{id: opts.ID, instance: vss.NewID(), opts: opts, w: w}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.mu.writers {
		if o.opts.Name == opts.Name {
			return vss.ID{}, fmt.Errorf("%w: writer %s", ErrDuplicate, opts.Name)
		}
	}
	s.mu.writers = append(s.mu.writers, r)
	return r.instance, nil
}

// RemoveWriter unsubscribes a writer by instance ID.
func (s *Service) RemoveWriter(instance vss.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range s.mu.writers {
		if w.instance == instance {
			s.mu.writers = slices.Delete(s.mu.writers, i, i+1)
			return nil
		}
	}
	return vss.VSS_E_OBJECT_NOT_FOUND
}

func (s *Service) writers() []*writerReg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.writers)
}

// Query returns the properties of every snapshot the service holds,
// ordered by creation.
func (s *Service) Query() []SnapshotProperties {
	s.mu.Lock()
	out := make([]SnapshotProperties, 0, len(s.mu.snapshots))
	for _, r := range s.mu.snapshots {
		out = append(out, r.props())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SnapshotProperties) int {
		return cmp.Or(a.CreationTime.Compare(b.CreationTime), cmp.Compare(a.OriginalVolume, b.OriginalVolume))
	})
	return out
}

// Set returns the record of a snapshot set: its state, result and
// timeline.
func (s *Service) Set(id vss.ID) (SetInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.mu.sets[id]
	if !ok {
		return SetInfo{}, false
	}
	return r.info(), true
}

// Sets lists the snapshot sets the service remembers (Config.SetHistory),
// newest last.
func (s *Service) Sets() []SetInfo {
	s.mu.Lock()
	out := make([]SetInfo, 0, len(s.mu.sets))
	for _, r := range s.mu.sets {
		out = append(out, r.info())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SetInfo) int { return a.Started.Compare(b.Started) })
	return out
}

// ForgetSet removes a snapshot set's record (its state, result and
// timeline) once nothing of the set is left: Set and Sets no longer know
// it. It fails with VSS_E_OBJECT_NOT_FOUND for a set the service does not
// know, with VSS_E_SNAPSHOT_SET_IN_PROGRESS for one still being created,
// and with VSS_E_BAD_STATE while the set still holds snapshots (delete
// them first). A set that failed or was abandoned holds none, and can be
// forgotten at once.
func (s *Service) ForgetSet(id vss.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.mu.sets[id]
	switch {
	case !ok:
		return vss.VSS_E_OBJECT_NOT_FOUND
	case r.state == "creating" || r.state == "importing":
		return vss.VSS_E_SNAPSHOT_SET_IN_PROGRESS
	case s.holdsSnapshotsLocked(r):
		return fmt.Errorf("%w: snapshot set %v still holds snapshots", vss.VSS_E_BAD_STATE, id)
	}
	delete(s.mu.sets, id)
	return nil
}

// addSetLocked records a set and forgets the oldest sets past the
// history's bound (Config.SetHistory). Usually one is forgotten, so a
// scan for the oldest beats keeping the records ordered. s.mu is held.
func (s *Service) addSetLocked(r *setRecord) {
	s.mu.sets[r.id] = r
	for len(s.mu.sets) > s.cfg.SetHistory {
		var oldest *setRecord
		for _, o := range s.mu.sets {
			if o.state == "creating" || o.state == "importing" || s.holdsSnapshotsLocked(o) {
				continue
			}
			if oldest == nil || o.started.Before(oldest.started) {
				oldest = o
			}
		}
		if oldest == nil {
			return // every set is in use
		}
		delete(s.mu.sets, oldest.id)
	}
}

// holdsSnapshotsLocked reports whether a snapshot of the set is still
// held. s.mu is held.
func (s *Service) holdsSnapshotsLocked(r *setRecord) bool {
	for _, id := range r.snaps {
		if _, ok := s.mu.snapshots[id]; ok {
			return true
		}
	}
	return false
}

// Close waits for the goroutines the service started (running sequences,
// writer callbacks) to end, or ctx to.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapshotRecord is one snapshot (one volume of a set) the service holds.
type snapshotRecord struct {
	SnapshotProperties
	reg     *Registration
	host    *Registration // the array holding the target LUNs; nil for the service's
	sources []provider.LunInfo
	targets []provider.LunInfo
}

func (r *snapshotRecord) props() SnapshotProperties {
	p := r.SnapshotProperties
	p.SourceLUNs = slices.Clone(p.SourceLUNs)
	p.TargetLUNs = slices.Clone(p.TargetLUNs)
	return p
}

// SnapshotProperties is VSS_SNAPSHOT_PROP, with the LUNs behind it.
type SnapshotProperties struct {
	SnapshotID         vss.ID              `json:"snapshot_id"`
	SnapshotSetID      vss.ID              `json:"snapshot_set_id"`
	SnapshotsCount     int                 `json:"snapshots_count"`
	DeviceObject       string              `json:"device_object"` // the first target LUN's export name, once surfaced
	OriginalVolume     string              `json:"original_volume"`
	OriginatingMachine string              `json:"originating_machine"`
	ServiceMachine     string              `json:"service_machine"`
	ProviderID         vss.ID              `json:"provider_id"`
	Context            vss.SnapshotContext `json:"context"`
	Attributes         vss.VolSnapAttr     `json:"attributes"`
	CreationTime       time.Time           `json:"creation_time"`
	State              vss.SnapshotState   `json:"state"`
	// SourceLUNs and TargetLUNs are the volume's LUNs and their snapshot
	// LUNs, 1:1; a target is empty until surfaced.
	SourceLUNs []string `json:"source_luns"`
	TargetLUNs []string `json:"target_luns"`
	// Imported is true once the snapshot LUNs were located and matched
	// (auto-import or ImportSnapshots).
	Imported bool `json:"imported"`
	// Broken is true after BreakSnapshotSet made the LUNs independent.
	Broken bool `json:"broken"`
}

// setRecord is one snapshot set's creation.
type setRecord struct {
	id       vss.ID
	started  time.Time
	timeline *Timeline
	state    string
	result   vss.HRESULT
	snaps    []vss.ID
}

// SetInfo describes a snapshot set's creation.
type SetInfo struct {
	ID        vss.ID      `json:"id"`
	Started   time.Time   `json:"started"`
	State     string      `json:"state"` // creating, created, failed, aborted, cancelled
	Result    vss.HRESULT `json:"result"`
	Snapshots []vss.ID    `json:"snapshots"`
	Timeline  *Timeline   `json:"-"`
}

func (r *setRecord) info() SetInfo {
	return SetInfo{ID: r.id, Started: r.started, State: r.state, Result: r.result, Snapshots: slices.Clone(r.snaps), Timeline: r.timeline}
}

// SavedSnapshot is a snapshot's record as it outlives the service: kept in
// a durable array's catalogue by the daemon, and given back to a new
// service with Restore.
type SavedSnapshot struct {
	Properties SnapshotProperties `json:"properties"`
	// Sources and Targets are the LUN records the provider gave for the
	// snapshot's LUNs, which its later calls (OnLunEmpty, ResyncLuns)
	// are given again.
	Sources []provider.LunInfo `json:"sources"`
	Targets []provider.LunInfo `json:"targets"`
}

// Saved returns every snapshot the service holds as a SavedSnapshot,
// ordered as Query orders them.
func (s *Service) Saved() []SavedSnapshot {
	s.mu.Lock()
	out := make([]SavedSnapshot, 0, len(s.mu.snapshots))
	for _, r := range s.mu.snapshots {
		out = append(out, SavedSnapshot{Properties: r.props(), Sources: cloneInfos(r.sources), Targets: cloneInfos(r.targets)})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SavedSnapshot) int {
		return cmp.Or(a.Properties.CreationTime.Compare(b.Properties.CreationTime), cmp.Compare(a.Properties.OriginalVolume, b.Properties.OriginalVolume))
	})
	return out
}

func cloneInfos(in []provider.LunInfo) []provider.LunInfo {
	out := make([]provider.LunInfo, len(in))
	for i, l := range in {
		out[i] = l.Clone()
	}
	return out
}

// Restore gives the service back snapshots an earlier one held (Saved):
// each is held again, for the provider registered under its provider ID,
// and each set they belong to is known again as created, from its first
// snapshot's creation time, without the timeline of its creation. A
// snapshot whose provider is not registered, or that the service holds
// already, is refused with VSS_E_PROVIDER_NOT_REGISTERED or
// VSS_E_BAD_STATE, and nothing is restored.
func (s *Service) Restore(saved []SavedSnapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := make([]*snapshotRecord, 0, len(saved))
	for _, sv := range saved {
		p := sv.Properties
		var reg *Registration
		for _, r := range s.mu.providers {
			if r.ID == p.ProviderID {
				reg = r
			}
		}
		if reg == nil {
			return fmt.Errorf("%w: snapshot %v: provider %v", vss.VSS_E_PROVIDER_NOT_REGISTERED, p.SnapshotID, p.ProviderID)
		}
		if _, ok := s.mu.snapshots[p.SnapshotID]; ok {
			return fmt.Errorf("%w: snapshot %v", vss.VSS_E_BAD_STATE, p.SnapshotID)
		}
		recs = append(recs, &snapshotRecord{SnapshotProperties: p, reg: reg, sources: cloneInfos(sv.Sources), targets: cloneInfos(sv.Targets)})
	}
	for _, r := range recs {
		r.SnapshotProperties = r.props()
		s.mu.snapshots[r.SnapshotID] = r
		set := s.mu.sets[r.SnapshotSetID]
		if set == nil {
			set = &setRecord{id: r.SnapshotSetID, started: r.CreationTime, state: "created", result: vss.S_OK}
			s.addSetLocked(set)
		}
		if r.CreationTime.Before(set.started) {
			set.started = r.CreationTime
		}
		set.snaps = append(set.snaps, r.SnapshotID)
	}
	return nil
}
