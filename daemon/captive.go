package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// CaptiveExit is Run's error when the captive command (Options.Run)
// exited with a status other than 0: serve exits with that status, as
// nbdkit --run does, so that a test scripted with it can fail.
type CaptiveExit struct {
	Cmd  string
	Code int
}

func (e *CaptiveExit) Error() string {
	return fmt.Sprintf("--run %q exited with status %d", e.Cmd, e.Code)
}

// captiveEnv is what the captive command finds in its environment: $uri
// (and $nbd, nbdkit's older name for it) for the first NBD listener,
// $port or $unixsocket, $exportname, and SHADOWBENCH_API for the CLI.
func (d *Daemon) captiveEnv() []string {
	env := os.Environ()
	if len(d.nbdLs) > 0 {
		uri, extra := nbdURI(d.nbdLs[0].Addr())
		env = append(env, "uri="+uri, "nbd="+uri, extra)
	}
	env = append(env, "exportname="+d.defaultExport)
	if urls := d.APIURLs(); len(urls) > 0 {
		env = append(env, EnvAPI+"="+urls[0])
	}
	if f := d.cfg.API.TokenFile; f != "" {
		env = append(env, EnvAPITokenFile+"="+f)
	}
	return env
}

// nbdURI is the NBD URI of a listener's default export, and the variable
// naming its port or socket.
func nbdURI(a net.Addr) (uri, extra string) {
	if a.Network() == "unix" {
		return listenerURI(a, ""), "unixsocket=" + a.String()
	}
	_, port, _ := net.SplitHostPort(a.String())
	return listenerURI(a, ""), "port=" + port
}

// runCaptive runs the captive command under /bin/sh, then calls stop. A
// daemon stopped first (a signal) ends the command with SIGTERM, and
// SIGKILL after 5 s.
func (d *Daemon) runCaptive(ctx context.Context, stdout, stderr io.Writer, stop func()) error {
	defer stop()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", d.opts.Run)
	cmd.Env = d.captiveEnv()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	d.log.Info("running the captive command", "run", d.opts.Run)
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		d.log.Info("the captive command exited; stopping", "status", 0)
		return nil
	case ctx.Err() != nil:
		return nil
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if code < 0 { // killed by a signal: as the shell reports it
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
		d.log.Info("the captive command exited; stopping", "status", strconv.Itoa(code))
		return &CaptiveExit{Cmd: d.opts.Run, Code: code}
	}
	return fmt.Errorf("--run %q: %w", d.opts.Run, err)
}
