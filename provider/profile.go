package provider

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// Profile is an emulated array's firmware behaviour: what it supports, how
// long each provider method takes and when it fails. Profiles are usually
// read from YAML (LoadProfile, ParseProfile, DecodeProfile) but are plain
// data that Go code and scenario files may build directly; NewArray checks
// one with Validate.
type Profile struct {
	// Name names the profile in logs and reports.
	Name string
	// Description says what the profile emulates.
	Description string
	// Seed seeds every random draw of the profile (latencies, failure
	// probabilities) so a run can be replayed. A Failure's own Seed, when
	// not 0, overrides it for that failure.
	Seed uint64
	// Capabilities is what the array can do.
	Capabilities Capabilities
	// Prepare is the asynchronous preparation BeginPrepareSnapshot starts.
	Prepare PrepareBehavior
	// Commit is the behaviour inside CommitSnapshots.
	Commit CommitBehavior
	// Methods holds the latency and failures injected around each
	// provider method's real work. A method that is absent runs as fast as
	// the array does.
	Methods map[vss.ProviderMethod]MethodBehavior
	// Cache is the write cache of the array's firmware, which decides
	// what a power cut leaves (lun.LUN.SetCache).
	Cache CacheBehavior
}

// CacheBehavior is the write cache an array's firmware has: one for all
// its LUNs, as an array's controller cache is. It applies to the LUNs
// created on the array without a cache mode of their own (the daemon's,
// from its configuration and lun create; a scenario's): LUNs inherit the
// firmware's cache, and one that names a mode ("none" included) keeps
// its own. The first provider serving a LUN whose profile sets a cache
// gives it. It also applies to the snapshot LUNs the provider makes
// read-write (a break with VSS_BREAKEX_FLAG_MAKE_READ_WRITE, through
// OnLunStateChange): they become LUNs of the array like the others, with
// their content at the break as the durable point. Read-only snapshot
// LUNs take no writes and need none. Applying it to snapshot LUNs alone
// was rejected: a vendor prototyping a write-back firmware expects the
// array's own LUNs to behave so, and the source LUNs are where a power
// cut matters to a backup.
type CacheBehavior struct {
	// Mode is the cache's mode; lun.CacheNone for a firmware that
	// emulates none (the default).
	Mode lun.CacheMode
	// Size bounds the writes it holds since the last durable point;
	// 0 for lun.DefaultCacheSize.
	Size int64
	// CrashPoints is how many crash points (FLUSHes and marks) each LUN
	// keeps; 0 for none.
	CrashPoints int
}

// Options returns o with the cache's mode, size and crash points when o
// names no cache mode of its own.
func (c CacheBehavior) Options(o lun.Options) lun.Options {
	if o.Cache == lun.CacheNone && c.Mode != lun.CacheNone {
		o.Cache, o.CacheSize, o.CrashPoints = c.Mode, c.Size, c.CrashPoints
	}
	return o
}

// String describes the cache as a profile writes it.
func (c CacheBehavior) String() string {
	if c.Mode == lun.CacheNone {
		return "none"
	}
	s := c.Mode.String()
	if c.Size > 0 {
		s += fmt.Sprintf(", size %d", c.Size)
	}
	if c.CrashPoints > 0 {
		s += fmt.Sprintf(", %d crash points", c.CrashPoints)
	}
	return s
}

// Capabilities is what the emulated array supports.
type Capabilities struct {
	// Transportable, Differential and Plex say whether contexts carrying
	// VSS_VOLSNAP_ATTR_TRANSPORTABLE, _DIFFERENTIAL or _PLEX are accepted.
	// AreLunsSupported answers false for the others (vss-spec.md F.2).
	Transportable bool
	Differential  bool
	Plex          bool
	// MaxSnapshotsPerLUN is the number of snapshots a LUN may have; 0
	// leaves the limit to the array (lun.Config.MaxSnapshots). At it,
	// BeginPrepareSnapshot (so the requester's AddToSnapshotSet) answers
	// VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED (F.9).
	MaxSnapshotsPerLUN int
	// Capacity is the array's usable capacity in bytes; 0 leaves it to
	// the array (lun.Config.Capacity). When both are set the smaller wins.
	Capacity int64
	// SnapshotReserve is the free capacity, in bytes, each snapshot needs
	// when it is prepared; a LUN that does not find it fails with
	// VSS_E_INSUFFICIENT_STORAGE. With 0, a snapshot fails only when the
	// array is full.
	SnapshotReserve int64
	// ProviderCapabilities is GetProviderCapabilities' answer; 0 derives
	// it: COMPLIANT|LUN_RESYNC, plus DIFFERENTIAL and PLEX when supported.
	ProviderCapabilities vss.ProviderCapability
}

// PrepareBehavior is the array's asynchronous preparation of snapshots.
type PrepareBehavior struct {
	// Latency is the time the array takes to prepare each LUN, after
	// BeginPrepareSnapshot has returned; EndPrepareSnapshots waits for it.
	Latency Latency
}

// CommitBehavior is what happens inside CommitSnapshots, before the
// pointer swaps that take the snapshots (the array "takes the snapshot" when
// its firmware is done).
type CommitBehavior struct {
	// Block is how long CommitSnapshots blocks: a slow array, or, past the
	// 10 s flush & hold window, one that makes the coordinator fail with
	// VSS_E_HOLD_WRITES_TIMEOUT (vss-spec.md F.3). It is the
	// CommitSnapshots latency of Methods under another name; a profile
	// sets one or the other.
	Block Latency
	// UntilReleased blocks CommitSnapshots, after Block, until
	// ArrayProvider.ReleaseCommit is called for the set, as qemu's provider
	// waits for an external "snapshot taken" signal. AbortSnapshots and
	// the caller's context end the wait too.
	UntilReleased bool
}

// MethodBehavior is injected around one provider method: its latency first,
// then its failures, then (if none fired) the method's real work.
type MethodBehavior struct {
	Latency  Latency
	Failures []Failure
}

// LatencyKind is the distribution a Latency draws from.
type LatencyKind uint8

// The latency distributions.
const (
	LatencyNone        LatencyKind = iota // no delay
	LatencyFixed                          // always Mean
	LatencyUniform                        // uniform in [Min, Max]
	LatencyNormal                         // normal(Mean, StdDev), clipped at 0
	LatencyExponential                    // exponential with mean Mean
)

var latencyKinds = [...]string{"none", "fixed", "uniform", "normal", "exponential"}

// String returns the name profiles use: "fixed", "uniform"...
func (k LatencyKind) String() string {
	if int(k) < len(latencyKinds) {
		return latencyKinds[k]
	}
	return fmt.Sprintf("LatencyKind(%d)", uint8(k))
}

// Latency is a distribution of delays. The zero value is no delay.
type Latency struct {
	Kind LatencyKind
	// Mean is the fixed delay, or the mean of the normal and exponential
	// distributions.
	Mean time.Duration
	// StdDev is the normal distribution's standard deviation.
	StdDev time.Duration
	// Min and Max bound the uniform distribution.
	Min, Max time.Duration
}

// Fixed returns a latency of exactly d.
func Fixed(d time.Duration) Latency { return Latency{Kind: LatencyFixed, Mean: d} }

// Uniform returns a latency drawn uniformly from [min, max].
func Uniform(min, max time.Duration) Latency {
	return Latency{Kind: LatencyUniform, Min: min, Max: max}
}

// Normal returns a latency drawn from a normal distribution, clipped at 0.
func Normal(mean, stddev time.Duration) Latency {
	return Latency{Kind: LatencyNormal, Mean: mean, StdDev: stddev}
}

// Exponential returns a latency drawn from an exponential distribution: a
// long tail, as real devices have.
func Exponential(mean time.Duration) Latency {
	return Latency{Kind: LatencyExponential, Mean: mean}
}

// IsZero reports whether l never delays.
func (l Latency) IsZero() bool { return l.Kind == LatencyNone }

// Sample draws one delay using r.
func (l Latency) Sample(r *rand.Rand) time.Duration {
	switch l.Kind {
	case LatencyFixed:
		return l.Mean
	case LatencyUniform:
		if l.Max <= l.Min {
			return l.Min
		}
		return l.Min + time.Duration(r.Int64N(int64(l.Max-l.Min)+1))
	case LatencyNormal:
		return max(0, l.Mean+time.Duration(r.NormFloat64()*float64(l.StdDev)))
	case LatencyExponential:
		return time.Duration(min(r.ExpFloat64()*float64(l.Mean), math.MaxInt64/2))
	}
	return 0
}

// String is the profile notation: "5ms", "uniform(1ms, 5ms)".
func (l Latency) String() string {
	switch l.Kind {
	case LatencyNone:
		return "0s"
	case LatencyFixed:
		return l.Mean.String()
	case LatencyUniform:
		return fmt.Sprintf("uniform(%v, %v)", l.Min, l.Max)
	case LatencyNormal:
		return fmt.Sprintf("normal(%v, %v)", l.Mean, l.StdDev)
	case LatencyExponential:
		return fmt.Sprintf("exponential(%v)", l.Mean)
	}
	return l.Kind.String()
}

// validate checks the parameters of the distribution.
func (l Latency) validate() error {
	switch l.Kind {
	case LatencyNone:
		return nil
	case LatencyFixed, LatencyExponential:
		if l.Mean < 0 {
			return fmt.Errorf("%v: negative duration", l.Kind)
		}
	case LatencyUniform:
		if l.Min < 0 || l.Max < l.Min {
			return fmt.Errorf("uniform: need 0 <= min <= max, have min %v, max %v", l.Min, l.Max)
		}
	case LatencyNormal:
		if l.Mean < 0 || l.StdDev < 0 {
			return fmt.Errorf("normal: negative mean or stddev")
		}
	default:
		return fmt.Errorf("unknown latency kind %d", l.Kind)
	}
	return nil
}

// Trigger says when a Failure fires.
type Trigger uint8

// The failure triggers.
const (
	TriggerAlways      Trigger = iota + 1 // every call
	TriggerNth                            // the Nth call of the method, counting from 1, and no other
	TriggerProbability                    // each call with probability Probability
)

var triggerNames = [...]string{"", "always", "nth", "probability"}

// String returns the profile key of the trigger: "always", "nth",
// "probability".
func (t Trigger) String() string {
	if int(t) < len(triggerNames) && t != 0 {
		return triggerNames[t]
	}
	return fmt.Sprintf("Trigger(%d)", uint8(t))
}

// Failure makes a method fail with Code. Code may be any failure HRESULT,
// including ones the method may not return: the coordinator translates
// those to VSS_E_UNEXPECTED_PROVIDER_ERROR as VSS does (vss-spec.md C, F.5).
// Success codes (S_FALSE...) cannot be injected: they never travel as
// errors (vss V2).
type Failure struct {
	Code        vss.HRESULT
	Trigger     Trigger
	Nth         int64   // TriggerNth
	Probability float64 // TriggerProbability, in [0, 1]
	// Seed seeds the draws of TriggerProbability; 0 derives a seed from
	// the profile's Seed, the method and the failure's position.
	Seed uint64
}

// Always returns a failure with code on every call.
func Always(code vss.HRESULT) Failure { return Failure{Code: code, Trigger: TriggerAlways} }

// OnNth returns a failure with code on the nth call (from 1).
func OnNth(n int64, code vss.HRESULT) Failure {
	return Failure{Code: code, Trigger: TriggerNth, Nth: n}
}

// WithProbability returns a failure with code on each call with
// probability p, drawn from a generator seeded with seed.
func WithProbability(p float64, seed uint64, code vss.HRESULT) Failure {
	return Failure{Code: code, Trigger: TriggerProbability, Probability: p, Seed: seed}
}

func (f Failure) validate() error {
	if !f.Code.Failed() {
		return fmt.Errorf("%v is a success code; success codes never travel as errors", f.Code.Name())
	}
	switch f.Trigger {
	case TriggerAlways:
	case TriggerNth:
		if f.Nth < 1 {
			return fmt.Errorf("nth must be 1 or more, have %d", f.Nth)
		}
	case TriggerProbability:
		if !(f.Probability >= 0 && f.Probability <= 1) {
			return fmt.Errorf("probability must be in [0, 1], have %v", f.Probability)
		}
	default:
		return errors.New("a failure needs one of always, nth or probability")
	}
	return nil
}

// DefaultProfile is an array that supports every context and attribute,
// leaves limits and capacity to the lun.Array, and injects nothing.
func DefaultProfile() *Profile {
	return &Profile{
		Name:        "default",
		Description: "An array that supports every context and injects no latency or failure.",
		Seed:        1,
		Capabilities: Capabilities{
			Transportable: true,
			Differential:  true,
			Plex:          true,
		},
	}
}

// Validate checks the profile's values: distributions, failures, limits,
// and that CommitSnapshots' latency is given once.
func (p *Profile) Validate() error {
	if p == nil {
		return errors.New("provider: nil profile")
	}
	c := p.Capabilities
	if c.MaxSnapshotsPerLUN < 0 || c.Capacity < 0 || c.SnapshotReserve < 0 {
		return fmt.Errorf("provider: profile %q: negative limit in capabilities", p.Name)
	}
	if err := p.Prepare.Latency.validate(); err != nil {
		return fmt.Errorf("provider: profile %q: prepare latency: %w", p.Name, err)
	}
	if err := p.Commit.Block.validate(); err != nil {
		return fmt.Errorf("provider: profile %q: commit block: %w", p.Name, err)
	}
	for m, b := range p.Methods {
		if !slices.Contains(vss.ProviderMethods(), m) {
			return fmt.Errorf("provider: profile %q: unknown method %d", p.Name, uint32(m))
		}
		if err := b.Latency.validate(); err != nil {
			return fmt.Errorf("provider: profile %q: %v latency: %w", p.Name, m, err)
		}
		for i, f := range b.Failures {
			if err := f.validate(); err != nil {
				return fmt.Errorf("provider: profile %q: %v failure %d: %w", p.Name, m, i+1, err)
			}
		}
	}
	switch cc := p.Cache; {
	case cc.Mode > lun.CacheReorder:
		return fmt.Errorf("provider: profile %q: cache: %w", p.Name, lun.ErrCacheMode)
	case cc.Size < 0 || cc.CrashPoints < 0:
		return fmt.Errorf("provider: profile %q: cache: negative size or crash points", p.Name)
	case cc.Mode == lun.CacheNone && (cc.Size > 0 || cc.CrashPoints > 0):
		return fmt.Errorf("provider: profile %q: cache: a size or crash points need a mode", p.Name)
	}
	if !p.Commit.Block.IsZero() && !p.Methods[vss.MethodCommitSnapshots].Latency.IsZero() {
		return fmt.Errorf("provider: profile %q: CommitSnapshots latency and commit block are the same delay; set one", p.Name)
	}
	return nil
}

// ArrayConfig returns the lun.Config that makes an array match the profile's
// capacity and snapshot limit.
func (p *Profile) ArrayConfig() lun.Config {
	return lun.Config{Capacity: p.Capabilities.Capacity, MaxSnapshots: p.Capabilities.MaxSnapshotsPerLUN}
}

// providerCapabilities is GetProviderCapabilities' answer.
func (c Capabilities) providerCapabilities() vss.ProviderCapability {
	if c.ProviderCapabilities != 0 {
		return c.ProviderCapabilities
	}
	mask := vss.VSS_PRV_CAPABILITY_COMPLIANT | vss.VSS_PRV_CAPABILITY_LUN_RESYNC
	if c.Differential {
		mask |= vss.VSS_PRV_CAPABILITY_DIFFERENTIAL
	}
	if c.Plex {
		mask |= vss.VSS_PRV_CAPABILITY_PLEX
	}
	return mask
}

// supports reports whether the array can honour snapshots in snapCtx: a
// valid context other than VSS_CTX_ALL and the client-accessible ones (the
// system provider's alone), whose TRANSPORTABLE, DIFFERENTIAL and PLEX bits
// the profile supports, and not DIFFERENTIAL and PLEX together.
func (c Capabilities) supports(snapCtx vss.SnapshotContext) bool {
	if !snapCtx.Valid() {
		return false
	}
	switch snapCtx.Base() {
	case vss.VSS_CTX_ALL, vss.VSS_CTX_CLIENT_ACCESSIBLE, vss.VSS_CTX_CLIENT_ACCESSIBLE_WRITERS:
		return false
	}
	diff, plex := snapCtx.Has(vss.VSS_VOLSNAP_ATTR_DIFFERENTIAL), snapCtx.Has(vss.VSS_VOLSNAP_ATTR_PLEX)
	switch {
	case snapCtx.Has(vss.VSS_VOLSNAP_ATTR_TRANSPORTABLE) && !c.Transportable,
		diff && !c.Differential,
		plex && !c.Plex,
		diff && plex:
		return false
	}
	return true
}
