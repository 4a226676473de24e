package main

import (
	"github.com/spf13/pflag"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/daemon"
)

// apiServeFlags are serve's flags for the HTTP API and for what it
// remembers.
type apiServeFlags struct {
	listen, socket, auth, tokenFile string
	setHistory                      int
}

func (f *apiServeFlags) bind(fl *pflag.FlagSet) {
	fl.StringVar(&f.listen, "api", daemon.DefaultAPIListen, "loopback address of the HTTP API; empty for none")
	fl.StringVar(&f.socket, "api-socket", "", "unix socket (mode 0600) to serve the HTTP API on as well; it needs no token")
	fl.StringVar(&f.auth, "api-auth", daemon.AuthToken, `who may call the TCP API: "token", whoever has the bearer token in --api-token-file (the CLI reads it by itself), or "none", any local user`)
	fl.StringVar(&f.tokenFile, "api-token-file", "", "`FILE` the TCP API's token is written to, mode 0600 (default $XDG_RUNTIME_DIR/shadowbench/api-token)")
	fl.IntVar(&f.setHistory, "set-history", coordinator.DefaultSetHistory, "snapshot sets the API lists: past it the oldest set without snapshots is forgotten")
}

// apply sets the overrides of the flags given on the command line.
func (f *apiServeFlags) apply(fl *pflag.FlagSet, o *daemon.Overrides) {
	o.APIListen, o.APISocket = given(fl, "api", f.listen), given(fl, "api-socket", f.socket)
	o.APIAuth, o.APITokenFile = given(fl, "api-auth", f.auth), given(fl, "api-token-file", f.tokenFile)
	o.SetHistory = given(fl, "set-history", f.setHistory)
}
