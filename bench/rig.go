package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/vss"
)

// rigConfig describes the system a workload runs against: an array of
// LUNs, the emulated array provider, the coordinator with its writers and
// volumes, and optionally the NBD server.
type rigConfig struct {
	LUNs        int
	LUNSize     int64
	Grain       int
	Writers     int
	WriterDelay time.Duration
	// NBD starts the server on Network ("tcp": 127.0.0.1, "unix": a
	// socket in a temporary directory); MaxInFlight is its per-connection
	// request bound.
	NBD         bool
	Network     string
	MaxInFlight int
	// DataDir, when set, puts the array on disk: a durable array in a new
	// directory under it, removed by Close (lun.OpenScratch).
	DataDir string
}

// rig is a running system under test. Close stops everything it started.
type rig struct {
	array   *lun.Array
	prov    *provider.ArrayProvider
	svc     *coordinator.Service
	luns    []string
	volumes []string

	srv      *nbd.Server
	network  string
	addr     string
	dir      string
	serveWG  sync.WaitGroup
	serveErr error

	closeArray func() error // a durable array's: close and remove it
	// extra are closed after the coordinator: a remote rig's arrays.
	extra []func() error

	closeOnce sync.Once
	closeErr  error
}

func newRig(ctx context.Context, cfg rigConfig) (_ *rig, err error) {
	var a *lun.Array
	var closeArray func() error
	if cfg.DataDir != "" {
		a, closeArray, err = lun.OpenScratch(cfg.DataDir, lun.Config{Grain: cfg.Grain})
	} else {
		a, err = lun.NewArray(lun.Config{Grain: cfg.Grain})
	}
	if err != nil {
		return nil, err
	}
	r := &rig{array: a, closeArray: closeArray}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	for i := range cfg.LUNs {
		name := fmt.Sprintf("lun%d", i)
		if _, err := a.Create(name, lun.Options{Size: cfg.LUNSize, BlockSize: 4096}); err != nil {
			return nil, err
		}
		r.luns = append(r.luns, name)
	}
	if r.prov, err = provider.NewArray(a, nil); err != nil {
		return nil, err
	}
	r.svc = coordinator.New(a, coordinator.Config{Logger: slog.New(slog.DiscardHandler)})
	if err := r.svc.RegisterProvider(ctx, coordinator.Registration{
		Name: "array", Type: vss.VSS_PROV_HARDWARE, Provider: r.prov,
	}); err != nil {
		return nil, err
	}
	if err := addWriters(r.svc, cfg); err != nil {
		return nil, err
	}
	// A set holds at most 64 volumes: past 64 LUNs, volumes span several.
	per := (len(r.luns) + coordinator.MaxVolumes - 1) / coordinator.MaxVolumes
	for i := 0; i < len(r.luns); i += per {
		name := fmt.Sprintf("vol%d", len(r.volumes))
		if err := r.svc.AddVolume(name, r.luns[i:min(i+per, len(r.luns))]...); err != nil {
			return nil, err
		}
		r.volumes = append(r.volumes, name)
	}
	if cfg.NBD {
		if err := r.serve(ctx, cfg.Network, cfg.MaxInFlight); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// serve starts the NBD server over the array on a loopback address.
func (r *rig) serve(ctx context.Context, network string, maxInFlight int) error {
	var l net.Listener
	var err error
	switch network {
	case "", "tcp":
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case "unix":
		if r.dir, err = os.MkdirTemp("", "shadowbench-bench-"); err != nil {
			return err
		}
		l, err = net.Listen("unix", filepath.Join(r.dir, "nbd.sock"))
	default:
		return fmt.Errorf("bench: network %q: want tcp or unix", network)
	}
	if err != nil {
		return err
	}
	r.network, r.addr = l.Addr().Network(), l.Addr().String()
	r.srv = nbd.NewServer(nbd.ArrayCatalog(r.array), nbd.Options{
		MaxInFlight: max(maxInFlight, nbd.DefaultMaxInFlight),
		Logger:      slog.New(slog.DiscardHandler),
	})
	r.serveWG.Go(func() {
		if err := r.srv.Serve(context.WithoutCancel(ctx), l); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
			r.serveErr = err
		}
	})
	return nil
}

// dial connects an NBD client to one export.
func (r *rig) dial(ctx context.Context, export string, inFlight int) (*nbd.Client, error) {
	return nbd.Dial(ctx, r.network, r.addr, &nbd.DialOptions{Export: export, MaxInFlight: max(inFlight, 1)})
}

// Close stops the server, the coordinator and the provider. Later calls
// return the first call's result.
func (r *rig) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *rig) close() error {
	var errs []error
	if r.srv != nil {
		errs = append(errs, r.srv.Close())
		r.serveWG.Wait()
		errs = append(errs, r.serveErr)
	}
	if r.svc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, r.svc.Close(ctx))
		cancel()
	}
	if r.prov != nil {
		errs = append(errs, r.prov.Close())
	}
	for _, c := range r.extra {
		errs = append(errs, c())
	}
	if r.dir != "" {
		errs = append(errs, os.RemoveAll(r.dir))
	}
	if r.closeArray != nil {
		errs = append(errs, r.closeArray())
	}
	return errors.Join(errs...)
}

// setSample is one snapshot set created by the requester conversation of
// vss-spec.md A.1-A.10. Start and End bracket DoSnapshotSet, from the call
// to the return of Async.Wait, on the timeline's monotonic clock.
type setSample struct {
	id         vss.ID
	tl         *coordinator.Timeline
	start, end time.Duration
	// setup is InitializeForBackup to PrepareForBackup; teardown is
	// BackupComplete and Close, which deletes the snapshots.
	setup, teardown time.Duration
}

// total is the duration of DoSnapshotSet.
func (s setSample) total() time.Duration { return s.end - s.start }

// snapshotSet runs one backup over every volume: the whole requester
// conversation, with DoSnapshotSet timed apart from the rest.
func (r *rig) snapshotSet(ctx context.Context) (s setSample, err error) {
	t0 := time.Now()
	bc := r.svc.NewBackupComponents()
	defer func() {
		if err != nil {
			_ = bc.Close(context.WithoutCancel(ctx))
		}
	}()
	if err := bc.InitializeForBackup(nil); err != nil {
		return s, err
	}
	if err := bc.SetBackupState(false, false, vss.VSS_BT_FULL, false); err != nil {
		return s, err
	}
	if err := bc.GatherWriterMetadata(ctx); err != nil {
		return s, err
	}
	if s.id, err = bc.StartSnapshotSet(); err != nil {
		return s, err
	}
	info, ok := r.svc.Set(s.id)
	if !ok || info.Timeline == nil {
		return s, fmt.Errorf("bench: the service has no record of set %v", s.id)
	}
	s.tl = info.Timeline
	for _, v := range r.volumes {
		if _, err := bc.AddToSnapshotSet(ctx, v, vss.GUID_NULL); err != nil {
			return s, err
		}
	}
	if err := bc.PrepareForBackup(ctx); err != nil {
		return s, err
	}
	s.setup = time.Since(t0)
	s.start = time.Since(s.tl.Origin())
	async, err := bc.DoSnapshotSet(ctx)
	if err != nil {
		return s, err
	}
	err = async.Wait(ctx)
	s.end = time.Since(s.tl.Origin())
	if err != nil {
		return s, fmt.Errorf("bench: DoSnapshotSet: %w", err)
	}
	t1 := time.Now()
	if err := bc.BackupComplete(ctx); err != nil {
		return s, err
	}
	if err := bc.Close(ctx); err != nil {
		return s, err
	}
	s.teardown = time.Since(t1)
	return s, nil
}

// benchWriter is a VSS writer that answers true to everything, after an
// optional delay in the events of the snapshot itself.
type benchWriter struct {
	coordinator.BaseWriter
	delay time.Duration
}

var _ coordinator.Writer = benchWriter{}

func (w benchWriter) work(ev *coordinator.Event) bool {
	if w.delay <= 0 {
		return true
	}
	t := time.NewTimer(w.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ev.Ctx.Done():
		return false
	}
}

// OnPrepareSnapshot implements coordinator.Writer.
func (w benchWriter) OnPrepareSnapshot(ev *coordinator.Event) bool { return w.work(ev) }

// OnFreeze implements coordinator.Writer.
func (w benchWriter) OnFreeze(ev *coordinator.Event) bool { return w.work(ev) }

// OnThaw implements coordinator.Writer.
func (w benchWriter) OnThaw(ev *coordinator.Event) bool { return w.work(ev) }

// OnPostSnapshot implements coordinator.Writer.
func (w benchWriter) OnPostSnapshot(ev *coordinator.Event) bool { return w.work(ev) }
