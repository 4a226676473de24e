package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// activatedListeners are the listeners of socket activation: LISTEN_FDS
// descriptors from 3, when LISTEN_PID names this process, as
// sd_listen_fds(3) reads them. The variables are then unset, so that a
// captive command does not take the descriptors for its own. nil when
// the daemon was not activated. Written here rather than taken from a
// library: it is three environment variables and a loop.
func activatedListeners() ([]net.Listener, error) {
	pid, nfds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if nfds == "" || pid != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		_ = os.Unsetenv(v)
	}
	n, err := strconv.Atoi(nfds)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q: want a count of descriptors", nfds)
	}
	var ls []net.Listener
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		l, err := net.FileListener(f)
		_ = f.Close() // FileListener holds its own descriptor
		if err != nil {
			closeAll(ls)
			return nil, fmt.Errorf("socket activation: descriptor %d is not a listening socket: %w", fd, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// notify sends state to the service manager (sd_notify(3)) when
// NOTIFY_SOCKET names one: READY=1 once serving, STOPPING=1 at shutdown,
// for a unit of Type=notify.
func notify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}

// ready is called once every listener serves: it writes the PID file and
// tells the service manager.
func (d *Daemon) ready() error {
	if p := d.opts.PIDFile; p != "" {
		if err := writeFileAtomic(p, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("--pid-file: %w", err)
		}
	}
	notify("READY=1")
	return nil
}

// unready removes the PID file at exit.
func (d *Daemon) unready() {
	if p := d.opts.PIDFile; p != "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("removing the PID file", "file", p, "err", err)
		}
	}
}
