package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd"
)

// serveFlags are the flags of shadowbench serve.
type serveFlags struct {
	config, profile, listen, socket, defaultExport, dataDir     string
	pidFile, run, tls, tlsCertificates, providerListen          string
	remoteProviders                                             []string
	readOnly                                                    bool
	luns                                                        lunSpecs
	maxInFlightBytes, capacity, maxRequestSize                  sizeFlag
	maxInFlight, maxConnections                                 int
	requestTimeout, shutdownTimeout, hold, freeze, remoteWriter time.Duration
	api                                                         apiServeFlags
	bench                                                       benchServeFlags
}

func newServeCmd(a *app) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: LUNs over NBD, the VSS coordinator and the HTTP API, until SIGINT or SIGTERM",
		Long: `Run the array, the NBD server, the coordinator with the emulated array
provider, and the HTTP API (JSON; Prometheus metrics at /metrics) until
SIGINT or SIGTERM; then stop accepting, drain and flush. Without --config:
LUNs lun0 and lun1 of 1 GiB on nbd://127.0.0.1:10809, the API on
http://127.0.0.1:10810, whose bearer token is written to --api-token-file
for the CLI to read.

Without --data-dir the array is in memory (capacity: half the RAM) and
nothing survives the process. The sizes of the thick LUNs (all but those
with thin=true, snapshots and clones) must add up within the capacity. With --data-dir DIR it is kept in DIR (a
bbolt catalogue, meta.db, and a sparse data file, data): it behaves as a
disk with a volatile write cache, and after a restart or a kill holds every
write a completed FLUSH covered or that carried FUA, every committed
snapshot, and the LUNs' identities. One daemon per DIR. --lun then creates
only the LUNs DIR does not have; the default LUNs are made in a new DIR
only. --config reads a YAML file (array, providers and
profiles, writers, volumes, windows); flags given override it and --lun
adds to its LUNs. lun, snapshot, writer and status are the API's clients.

Started by systemd socket activation (LISTEN_FDS), the daemon serves NBD on
the sockets it was passed instead of --listen and --socket, and tells a
Type=notify unit when it is ready (contrib/ has the units). --run 'CMD'
is nbdkit's captive mode, the shortest way to script a test:

  shadowbench serve --listen 127.0.0.1:0 --run 'nbdinfo "$uri"'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), a.log, cmd.Flags(), &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration `FILE`")
	fl.StringVar(&f.dataDir, "data-dir", "", "keep the array in `DIR`: LUNs, snapshots, clones and data survive restarts and crashes (a write is durable once a FLUSH after it completes, or at once with FUA); default: in memory, nothing survives")
	fl.StringVar(&f.listen, "listen", daemon.DefaultNBDListen, "TCP address to serve NBD on; empty for none")
	fl.StringVar(&f.socket, "socket", "", "unix socket to serve NBD on as well")
	f.api.bind(fl)
	fl.Var(&f.luns, "lun", "a LUN, name=NAME,size=SIZE[,block-size=512|4096][,read-only=true][,thin=true][,cache=write-back]; repeatable (default: lun0 and lun1 of 1 GiB); thick unless thin, and thick LUNs' sizes must add up within the capacity")
	fl.StringVar(&f.profile, "profile", "", "firmware profile `FILE` of the (first) array provider")
	fl.StringVar(&f.defaultExport, "default-export", "", "export for clients that name none (default: the first LUN)")
	fl.BoolVarP(&f.readOnly, "read-only", "r", false, "serve every export read-only (writes, trims and zeroes answer EPERM)")
	fl.Var(&f.maxRequestSize, "max-request-size", "the largest READ or WRITE a client may send, advertised as the maximum block size (default 32 MiB; at most 64 MiB)")
	fl.StringVar(&f.tls, "tls", "", "NBD TLS: off, on (offered to clients that ask) or require (every option but STARTTLS refused); default off, or on with --tls-certificates")
	fl.StringVar(&f.tlsCertificates, "tls-certificates", "", "`DIR` holding server-cert.pem and server-key.pem (PEM), as nbdkit and qemu-nbd read them")
	fl.StringVar(&f.pidFile, "pid-file", "", "write the process ID to `FILE` once serving; removed at exit")
	fl.StringVar(&f.run, "run", "", "captive mode: once serving, run `CMD` with /bin/sh, $uri (and $nbd) set to the NBD URI, $port or $unixsocket, $exportname and SHADOWBENCH_API; stop when it exits, with its exit status")
	fl.IntVar(&f.maxInFlight, "max-in-flight", nbd.DefaultMaxInFlight, "requests in flight per connection")
	fl.IntVar(&f.maxConnections, "max-connections", 0, "NBD connections served at once; past it a new one is closed at once (default: RLIMIT_NOFILE less 256, at least 64)")
	fl.Var(&f.capacity, "capacity", "the most data the array holds, and what thick LUNs' sizes must fit in (default: in memory, half the RAM; with --data-dir, the free space of DIR's file system less 1/32)")
	fl.Var(&f.maxInFlightBytes, "max-in-flight-bytes", "payload memory of the NBD server (replies unsent, writes undone); past it a request waits, and one connection holds at most a sixteenth (default: a sixteenth of RAM, 64 MiB to 4 GiB)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", nbd.DefaultRequestTimeout, "how long an NBD request may take to arrive once begun; an idle connection waits for ever")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
	fl.StringVar(&f.providerListen, "provider-listen", "", "serve the (first) array provider over the provider protocol (gRPC) on the TCP `ADDR`, with flush & hold of this array's LUNs, for a coordinator elsewhere")
	fl.StringArrayVar(&f.remoteProviders, "remote-provider", nil, "register a provider reached over the provider protocol, `NAME=HOST:PORT` (a vendor's own provider, or another daemon's --provider-listen); repeatable")
	fl.DurationVar(&f.hold, "hold-window", 10*time.Second, "the flush & hold window")
	fl.DurationVar(&f.freeze, "freeze-window", 60*time.Second, "writers' default freeze window")
	fl.DurationVar(&f.remoteWriter, "remote-writer-timeout", daemon.DefaultRemoteWriterTimeout, "how long an attached writer may stay silent before it is dropped")
	f.bench.bind(fl)
	return cmd
}

// sizeFlag is a size flag, "64MiB" or "1GiB"; it shows no default, as
// its zero value means a default computed at start.
type sizeFlag struct{ v daemon.Size }

func (s *sizeFlag) String() string {
	if s.v == 0 {
		return ""
	}
	return s.v.String()
}

func (s *sizeFlag) Set(v string) (err error) {
	s.v, err = daemon.ParseSize(v)
	return err
}

func (s *sizeFlag) Type() string { return "size" }

// given returns &v when the flag was set on the command line, else nil.
func given[T any](fl *pflag.FlagSet, name string, v T) *T {
	if fl.Changed(name) {
		return &v
	}
	return nil
}

func serve(ctx context.Context, log *slog.Logger, fl *pflag.FlagSet, f *serveFlags, stdout, stderr io.Writer) error {
	cfg := daemon.DefaultConfig()
	if f.config != "" {
		var err error
		if cfg, err = daemon.LoadConfig(f.config); err != nil {
			return err
		}
	}
	o := daemon.Overrides{NBDListen: given(fl, "listen", f.listen), NBDSocket: given(fl, "socket", f.socket),
		DefaultExport: given(fl, "default-export", f.defaultExport), MaxInFlight: given(fl, "max-in-flight", f.maxInFlight),
		MaxConnections:   given(fl, "max-connections", f.maxConnections),
		MaxInFlightBytes: given(fl, "max-in-flight-bytes", f.maxInFlightBytes.v),
		Capacity:         given(fl, "capacity", f.capacity.v),
		RequestTimeout:   given(fl, "request-timeout", f.requestTimeout),
		ShutdownTimeout:  given(fl, "shutdown-timeout", f.shutdownTimeout), Hold: given(fl, "hold-window", f.hold),
		Freeze: given(fl, "freeze-window", f.freeze), RemoteWriter: given(fl, "remote-writer-timeout", f.remoteWriter),
		LUNs: f.luns, Profile: f.profile, DataDir: given(fl, "data-dir", f.dataDir),
		ReadOnly: given(fl, "read-only", f.readOnly), MaxRequestSize: given(fl, "max-request-size", f.maxRequestSize.v),
		TLS: given(fl, "tls", f.tls), TLSCertificates: given(fl, "tls-certificates", f.tlsCertificates)}
	o.ProviderListen = given(fl, "provider-listen", f.providerListen)
	for _, r := range f.remoteProviders {
		rp, err := daemon.ParseRemoteProvider(r)
		if err != nil {
			return fmt.Errorf("--remote-provider: %w", err)
		}
		o.RemoteProviders = append(o.RemoteProviders, rp)
	}
	f.api.apply(fl, &o)
	cfg.Apply(o)
	if err := cfg.Validate(); err != nil {
		return err
	}
	if f.bench.engine != "" || f.bench.snapshotInterval > 0 {
		return serveBench(ctx, log, cfg, f.bench)
	}
	d, err := daemon.New(ctx, cfg, daemon.Options{Logger: log, PIDFile: f.pidFile, Run: f.run, RunStdout: stdout, RunStderr: stderr})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}
