package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/nbd/gonbd"
)

// benchServeFlags are serve's flags for the NBD peer benchmark
// (make bench-nbd).
type benchServeFlags struct {
	engine           string
	snapshotInterval time.Duration
}

func (b *benchServeFlags) bind(fl *pflag.FlagSet) {
	fl.StringVar(&b.engine, "engine", "", `NBD server to run: "" for shadowbench's, "go-nbd" for github.com/pojntfx/go-nbd's over the same LUNs (a benchmark peer)`)
	fl.DurationVar(&b.snapshotInterval, "snapshot-interval", 0, "snapshot every LUN this often, keeping the newest two (a benchmark load); 0 for never")
}

// serveBench serves the configured LUNs with the chosen engine while the
// snapshot schedule, if any, runs beside it; no coordinator and no API.
func serveBench(ctx context.Context, log *slog.Logger, cfg *daemon.Config, b benchServeFlags) error {
	arr, err := daemon.BuildArray(cfg, log)
	if err != nil {
		return err
	}
	log.Warn("benchmark serve (--engine or --snapshot-interval): NBD only, no API, no metrics and no coordinator")
	ls, err := daemon.ListenNBD(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var names []string
	var luns []*lun.LUN
	for _, l := range arr.List() {
		names, luns = append(names, l.Name()), append(luns, l)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if b.snapshotInterval > 0 {
		wg.Go(func() {
			res := arr.SnapshotEvery(ctx, b.snapshotInterval, 2, names...)
			log.Info("snapshot schedule stopped", "taken", res.Taken, "errors", res.Errors)
		})
	}
	switch b.engine {
	case "":
		opts, err := daemon.NBDOptions(cfg, "", log)
		if err != nil {
			return err
		}
		return nbd.NewServer(nbd.ArrayCatalog(arr), opts).Run(ctx, ls...)
	case "go-nbd":
		if len(ls) != 1 {
			return fmt.Errorf("--engine go-nbd serves one listener; give --listen or --socket, not both")
		}
		log.Info("serving with go-nbd", "addr", ls[0].Addr().String())
		if err := gonbd.Serve(ctx, ls[0], luns...); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("--engine %q: want go-nbd or nothing", b.engine)
}
