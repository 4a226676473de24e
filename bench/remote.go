package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// remoteArray is one array of the remote rig: its LUNs, its emulated
// provider, and the provider protocol's server over both on a loopback
// port, as serve --provider-listen serves a daemon's.
type remoteArray struct {
	name   string
	array  *lun.Array
	prov   *provider.ArrayProvider
	srv    *wire.Server
	served chan error
	client *wire.Client
}

// newRemoteRig builds the sequence workload's system across arrays: cfg.LUNs
// LUNs spread over arrays arrays (lun0... in turn, so names stay unique),
// each array with its provider served over the provider protocol on
// 127.0.0.1, and a coordinator over an empty local array that registers
// each as a provider with its array (Registration.Host) and makes one
// volume per LUN on it. Every call the coordinator makes to an array's
// KernelSupport (flush & hold, release, rescan) is timed into calls.
func newRemoteRig(ctx context.Context, cfg rigConfig, arrays int, calls *callLog) (_ *rig, err error) {
	local, err := lun.NewArray(lun.Config{})
	if err != nil {
		return nil, err
	}
	r := &rig{array: local}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	r.svc = coordinator.New(local, coordinator.Config{Logger: slog.New(slog.DiscardHandler)})
	ras := make([]*remoteArray, arrays)
	for i := range ras {
		ra := &remoteArray{name: fmt.Sprintf("array%d", i), served: make(chan error, 1)}
		if ra.array, err = lun.NewArray(lun.Config{Grain: cfg.Grain}); err != nil {
			return nil, err
		}
		if ra.prov, err = provider.NewArray(ra.array, nil, provider.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
			return nil, err
		}
		ras[i] = ra
		r.extra = append(r.extra, ra.close)
		ls, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ra.srv = wire.NewServer(ra.prov, wire.WithArray(ra.array), wire.WithServerLogger(slog.New(slog.DiscardHandler)))
		go func() { ra.served <- ra.srv.Serve(ls) }()
		if ra.client, err = wire.Dial(ls.Addr().String()); err != nil {
			return nil, err
		}
	}
	for i := range cfg.LUNs {
		name := fmt.Sprintf("lun%d", i)
		if _, err := ras[i%arrays].array.Create(name, lun.Options{Size: cfg.LUNSize, BlockSize: 4096}); err != nil {
			return nil, err
		}
		r.luns = append(r.luns, name)
	}
	for _, ra := range ras {
		if err := r.svc.RegisterProvider(ctx, coordinator.Registration{Name: ra.name, Type: vss.VSS_PROV_HARDWARE,
			Provider: ra.client, Host: &timedHost{c: ra.client, log: calls}}); err != nil {
			return nil, err
		}
	}
	if err := addWriters(r.svc, cfg); err != nil {
		return nil, err
	}
	// One volume per LUN, as in-process; past 64 LUNs, volumes span
	// several LUNs of one array.
	for i, ra := range ras {
		var mine []string
		for j := i; j < len(r.luns); j += arrays {
			mine = append(mine, r.luns[j])
		}
		per := (len(r.luns) + coordinator.MaxVolumes - 1) / coordinator.MaxVolumes
		for j := 0; j < len(mine); j += per {
			name := fmt.Sprintf("vol%d", len(r.volumes))
			if err := r.svc.AddVolumeOn(name, ra.name, mine[j:min(j+per, len(mine))]...); err != nil {
				return nil, err
			}
			r.volumes = append(r.volumes, name)
		}
	}
	return r, nil
}

// close stops the array's server and closes its client and provider.
func (ra *remoteArray) close() error {
	var errs []error
	if ra.client != nil {
		errs = append(errs, ra.client.Close())
	}
	if ra.srv != nil {
		ra.srv.Stop()
		errs = append(errs, <-ra.served)
	}
	if ra.prov != nil {
		errs = append(errs, ra.prov.Close())
	}
	return errors.Join(errs...)
}

// addWriters registers cfg.Writers bench writers.
func addWriters(svc *coordinator.Service, cfg rigConfig) error {
	for i := range cfg.Writers {
		if _, err := svc.AddWriter(benchWriter{delay: cfg.WriterDelay}, coordinator.WriterOptions{
			Name: fmt.Sprintf("writer%d", i), Level: vss.VSS_APP_FRONT_END,
		}); err != nil {
			return err
		}
	}
	return nil
}

// timedHost is a remote array's KernelSupport that times every call into
// a callLog; the provider calls are timed by the coordinator's timeline.
type timedHost struct {
	c   *wire.Client
	log *callLog
}

var _ coordinator.LunHost = (*timedHost)(nil)

func (h *timedHost) DescribeLuns(ctx context.Context, devices []string) ([]provider.LunInfo, error) {
	defer h.log.time("DescribeLuns", time.Now())
	return h.c.DescribeLuns(ctx, devices)
}

func (h *timedHost) FlushAndHold(ctx context.Context, set vss.ID, devices []string, window time.Duration) error {
	defer h.log.time("FlushAndHold", time.Now())
	return h.c.FlushAndHold(ctx, set, devices, window)
}

func (h *timedHost) ReleaseWrites(ctx context.Context, set vss.ID) error {
	defer h.log.time("ReleaseWrites", time.Now())
	return h.c.ReleaseWrites(ctx, set)
}

func (h *timedHost) Rescan(ctx context.Context, naas [][]byte) ([]string, error) {
	defer h.log.time("Rescan", time.Now())
	return h.c.Rescan(ctx, naas)
}

// callLog keeps the KernelSupport calls made since it was last taken.
type callLog struct {
	mu    sync.Mutex
	calls []call
}

// call is one call to a remote array: its method, start and duration.
type call struct {
	method string
	start  time.Time
	d      time.Duration
}

func (l *callLog) time(method string, start time.Time) {
	d := time.Since(start)
	l.mu.Lock()
	l.calls = append(l.calls, call{method, start, d})
	l.mu.Unlock()
}

// take returns the calls logged since the last take and forgets them.
func (l *callLog) take() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	return out
}

// callStats counts and times the calls to remote arrays inside each
// DoSnapshotSet: the provider calls (from the set's timeline) and the
// KernelSupport calls (from the callLog), by method.
type callStats struct {
	sets    int
	byName  map[string]*Histogram
	order   []string
	perSet  *Histogram // calls per set, recorded as a count in ns units
	inHold  *Histogram // calls inside the hold window, per set
	serials *Histogram // calls on the set's critical path, per set
}

func newCallStats() *callStats {
	return &callStats{byName: map[string]*Histogram{}, perSet: NewHistogram(), inHold: NewHistogram(), serials: NewHistogram()}
}

// add counts the calls of one set: those of its timeline's provider spans
// and of kernel inside DoSnapshotSet's bracket.
func (cs *callStats) add(s setSample, kernel []call) {
	cs.sets++
	type iv struct {
		name string
		a, b time.Duration
	}
	var ivs []iv
	for _, sp := range s.tl.Spans() {
		if sp.Kind == coordinator.KindProvider && sp.Start >= s.start && sp.End <= s.end {
			ivs = append(ivs, iv{sp.Name, sp.Start, sp.End})
		}
	}
	origin := s.tl.Origin()
	for _, c := range kernel {
		a := c.start.Sub(origin)
		if a >= s.start && a <= s.end {
			ivs = append(ivs, iv{c.method, a, a + c.d})
		}
	}
	var hold coordinator.Span
	for _, sp := range s.tl.Spans() {
		if sp.Kind == coordinator.KindWindow && sp.Name == "hold" {
			hold = sp
		}
	}
	slices.SortFunc(ivs, func(x, y iv) int { return int(x.a - y.a) })
	var held, serial int
	var end time.Duration
	for _, v := range ivs {
		h := cs.byName[v.name]
		if h == nil {
			h = NewHistogram()
			cs.byName[v.name] = h
			cs.order = append(cs.order, v.name)
		}
		h.Record(v.b - v.a)
		if v.a >= hold.Start && v.b <= hold.End {
			held++
		}
		// A call that starts after the previous ones ended waits for
		// them: one more round trip on the critical path. Calls made at
		// once (the holds and releases of the arrays) count once.
		if v.a >= end {
			serial++
		}
		end = max(end, v.b)
	}
	cs.perSet.Record(time.Duration(len(ivs)))
	cs.inHold.Record(time.Duration(held))
	cs.serials.Record(time.Duration(serial))
}

// report adds the calls' latencies under prefix "call/" and the counts
// per set as metrics.
func (cs *callStats) report(r *Result, prefix string) {
	if cs.sets == 0 {
		return
	}
	for _, n := range cs.order {
		r.addLatency(prefix+"call/"+n, cs.byName[n])
	}
	r.addMetric(prefix+"calls per set (median)", float64(cs.perSet.Quantile(50)), "")
	r.addMetric(prefix+"sequential round trips per set (median)", float64(cs.serials.Quantile(50)), "")
	r.addMetric(prefix+"calls inside the hold window per set (median)", float64(cs.inHold.Quantile(50)), "")
}
