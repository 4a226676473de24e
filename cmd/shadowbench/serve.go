package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/spf13/cobra"
)

// serveFlags are the flags of shadowbench serve.
type serveFlags struct {
	listen, socket, defaultExport string
	luns                          lunSpecs
	maxInFlight                   int
	shutdownTimeout               time.Duration
	bench                         benchServeFlags
}

func newServeCmd(a *app) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve in-memory LUNs over NBD until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return serve(cmd.Context(), a.log, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:10809", "TCP address to serve NBD on; empty for none")
	fl.StringVar(&f.socket, "socket", "", "unix socket to serve NBD on as well")
	fl.Var(&f.luns, "lun", "a LUN, name=NAME,size=SIZE[,blocksize=512|4096][,readonly=true]; repeatable (default: lun0 and lun1 of 1 GiB)")
	fl.StringVar(&f.defaultExport, "default-export", "", "export for clients that name none (default: the first LUN)")
	fl.IntVar(&f.maxInFlight, "max-in-flight", nbd.DefaultMaxInFlight, "requests in flight per connection")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
	f.bench.bind(fl)
	return cmd
}

func serve(ctx context.Context, log *slog.Logger, f serveFlags) error {
	luns := f.luns
	if len(luns) == 0 {
		def := lun.Options{Size: 1 << 30, BlockSize: 512}
		luns = lunSpecs{{"lun0", def}, {"lun1", def}}
	}
	arr, err := lun.NewArray(lun.Config{})
	if err != nil {
		return err
	}
	for _, s := range luns {
		if _, err := arr.Create(s.name, s.opts); err != nil {
			return fmt.Errorf("--lun %s: %w", s.name, err)
		}
	}
	if f.defaultExport == "" {
		f.defaultExport = luns[0].name
	}

	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for _, a := range [...]struct{ network, addr, flag string }{{"tcp", f.listen, "--listen"}, {"unix", f.socket, "--socket"}} {
		if a.addr == "" {
			continue
		}
		l, err := net.Listen(a.network, a.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", a.flag, err)
		}
		ls = append(ls, l)
		log.Info("serving NBD", "network", a.network, "addr", l.Addr().String())
	}
	if len(ls) == 0 {
		return errors.New("nothing to serve on: give --listen or --socket")
	}
	if f.bench.engine != "" || f.bench.snapshotInterval > 0 {
		return serveBench(ctx, log, arr, ls, f.bench)
	}
	srv := nbd.NewServer(nbd.ArrayCatalog(arr), nbd.Options{
		MaxInFlight: f.maxInFlight, DefaultExport: f.defaultExport,
		ShutdownTimeout: f.shutdownTimeout, Logger: log,
	})
	log.Info("LUNs ready", "luns", luns.String(), "default", f.defaultExport)
	err = srv.Run(ctx, ls...)
	log.Info("NBD server stopped", "err", err)
	return err
}
