package faultfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// serveEnv is the environment variable that makes a binary importing this
// package the server of a Mount: it holds the child's config, as JSON.
const serveEnv = "SHADOWBENCH_FAULTFS_SERVE"

// requestTimeout bounds one exchange with the server process: a mount, a
// change of rules, a read of the counts, an unmount.
const requestTimeout = time.Minute

// init turns the process into the server of a Mount when its parent asked
// for it; it then never returns to main. Any test binary that imports the
// package can serve, so Mount needs no helper binary built or installed.
func init() {
	if cfg, ok := os.LookupEnv(serveEnv); ok {
		os.Exit(serveChild(cfg, os.Stdin, os.Stdout))
	}
}

// childConfig is what a Mount's server process is told.
type childConfig struct {
	Backing string  `json:"backing"`
	Mount   string  `json:"mount"`
	Options options `json:"options"`
}

// request is one message to the server process; reply its answer.
type request struct {
	Op    string `json:"op"` // "set", "counts", "reset", "unmount"
	Rules []Rule `json:"rules,omitempty"`
}

type reply struct {
	Err string `json:"err,omitempty"`
	// Unavailable says that Err is a missing FUSE, for the ready reply.
	Unavailable bool        `json:"unavailable,omitempty"`
	Calls       []siteCount `json:"calls,omitempty"`
	Hits        []siteCount `json:"hits,omitempty"`
}

type siteCount struct {
	Site
	N int `json:"n"`
}

func toList(m map[Site]int) []siteCount {
	var out []siteCount
	for s, n := range m {
		out = append(out, siteCount{s, n})
	}
	return out
}

func toMap(l []siteCount) map[Site]int {
	m := make(map[Site]int, len(l))
	for _, sc := range l {
		m[sc.Site] = sc.N
	}
	return m
}

// serveChild mounts and serves the file system cfg describes, answering
// requests read from in, until an unmount request or the end of in (the
// parent is gone). It returns the exit status.
func serveChild(cfg string, in io.Reader, out io.Writer) int {
	enc := json.NewEncoder(out)
	var c childConfig
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		_ = enc.Encode(reply{Err: fmt.Sprintf("faultfs: server config %q: %v", cfg, err)})
		return 2
	}
	f, err := newFS(c.Backing, c.Mount, c.Options)
	if err != nil {
		_ = enc.Encode(reply{Err: err.Error(), Unavailable: errors.Is(err, ErrUnavailable)})
		return 1
	}
	if err := enc.Encode(reply{}); err != nil {
		_ = f.Unmount()
		return 1
	}
	dec := json.NewDecoder(bufio.NewReader(in))
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			// The parent went away without unmounting: do it for it.
			if uerr := f.Unmount(); uerr != nil {
				fmt.Fprintln(os.Stderr, uerr)
			}
			return 1
		}
		var r reply
		switch req.Op {
		case "set":
			if err := f.Set(req.Rules...); err != nil {
				r.Err = err.Error()
			}
		case "counts":
			c := f.Counts()
			r.Calls, r.Hits = toList(c.Calls), toList(c.Hits)
		case "reset":
			f.Reset()
		case "unmount":
			if err := f.Unmount(); err != nil {
				r.Err = err.Error()
			}
			_ = enc.Encode(r)
			return 0
		default:
			r.Err = fmt.Sprintf("faultfs: unknown request %q", req.Op)
		}
		if err := enc.Encode(r); err != nil {
			_ = f.Unmount()
			return 1
		}
	}
}

// Mounted is a fault file system served by a child process, for tests: the
// process that maps the files it serves must not be the server (see the
// package doc). Its methods are safe for concurrent use; a failure to
// reach the server is reported with tb.Errorf, and the method then
// returns zero values.
type Mounted struct {
	tb  testing.TB
	dir string
	cmd *exec.Cmd

	mu struct {
		sync.Mutex
		in   *os.File // the server's stdin
		out  *os.File // its stdout
		dec  *json.Decoder
		done bool
	}
}

// Mount mounts a fault file system over backing on a new directory of the
// test's, served by a child process, and unmounts it when the test ends.
// Without FUSE (no /dev/fuse, not root and no fusermount) the test is
// skipped, or fails when the environment has CI=true.
func Mount(tb testing.TB, backing string, opts ...Option) *Mounted {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := Available(); err != nil {
		unavailable(tb, err)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatalf("faultfs: %v", err)
	}
	m := &Mounted{tb: tb, dir: tb.TempDir()}
	cfg, _ := json.Marshal(childConfig{Backing: backing, Mount: m.dir, Options: o})
	inR, inW, err := os.Pipe()
	if err != nil {
		tb.Fatalf("faultfs: %v", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		tb.Fatalf("faultfs: %v", err)
	}
	m.cmd = exec.Command(exe)
	// A race-enabled server sleeps a second at exit (so that other
	// goroutines can report their races) unless told not to.
	m.cmd.Env = append(os.Environ(), serveEnv+"="+string(cfg),
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	m.cmd.Stdin, m.cmd.Stdout, m.cmd.Stderr = inR, outW, os.Stderr
	err = m.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		tb.Fatalf("faultfs: start the server: %v", err)
	}
	m.mu.in, m.mu.out = inW, outR
	m.mu.dec = json.NewDecoder(outR)
	var ready reply
	m.mu.Lock()
	err = m.readLocked(&ready)
	m.mu.Unlock()
	if err == nil && ready.Err != "" {
		err = errors.New(ready.Err)
	}
	if err != nil {
		m.stop()
		if ready.Unavailable {
			unavailable(tb, err)
			return nil
		}
		tb.Fatalf("faultfs: mount %s: %v", backing, err)
	}
	tb.Cleanup(m.unmount)
	return m
}

// unavailable skips the test, or fails it under CI, which must run it.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v; CI must run the fault file system tests (scripts/test-deps.sh installs fuse3)", err)
	}
	tb.Skipf("%v: skipping the fault file system test", err)
}

// Dir returns the mount point.
func (m *Mounted) Dir() string { return m.dir }

// Set implements Injector.
func (m *Mounted) Set(rules ...Rule) error {
	r, err := m.do(request{Op: "set", Rules: rules})
	if err != nil {
		return err
	}
	if r.Err != "" {
		return errors.New(r.Err)
	}
	return nil
}

// Counts implements Injector.
func (m *Mounted) Counts() Counts {
	r, err := m.do(request{Op: "counts"})
	if err != nil {
		m.tb.Errorf("faultfs: counts: %v", err)
		return Counts{Calls: map[Site]int{}, Hits: map[Site]int{}}
	}
	return Counts{Calls: toMap(r.Calls), Hits: toMap(r.Hits)}
}

// Reset implements Injector.
func (m *Mounted) Reset() {
	if _, err := m.do(request{Op: "reset"}); err != nil {
		m.tb.Errorf("faultfs: reset: %v", err)
	}
}

// do sends one request and reads its reply.
func (m *Mounted) do(req request) (reply, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var r reply
	if m.mu.done {
		return r, errors.New("faultfs: unmounted")
	}
	b, _ := json.Marshal(req)
	if _, err := m.mu.in.Write(append(b, '\n')); err != nil {
		return r, fmt.Errorf("faultfs: server: %w", err)
	}
	return r, m.readLocked(&r)
}

func (m *Mounted) readLocked(r *reply) error {
	_ = m.mu.out.SetReadDeadline(time.Now().Add(requestTimeout))
	if err := m.mu.dec.Decode(r); err != nil {
		return fmt.Errorf("faultfs: server: %w", err)
	}
	return nil
}

// unmount asks the server to unmount and waits for it to exit; a server
// that does not is killed, and the mount detached.
func (m *Mounted) unmount() {
	r, err := m.do(request{Op: "unmount"})
	switch {
	case err != nil:
		m.tb.Errorf("faultfs: unmount %s: %v", m.dir, err)
	case r.Err != "":
		// Busy: a file was left open. The mount is detached and goes
		// with the last file, when the process ends.
		m.tb.Logf("%s", r.Err)
	}
	if err := m.stop(); err != nil {
		m.tb.Errorf("faultfs: server of %s: %v", m.dir, err)
	}
}

// stop closes the server's stdin, which ends it, and waits for it.
func (m *Mounted) stop() error {
	m.mu.Lock()
	m.mu.done = true
	m.mu.in.Close()
	m.mu.Unlock()
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(requestTimeout):
		_ = m.cmd.Process.Kill()
		err = fmt.Errorf("did not exit, killed: %v", <-exited)
		if os.Geteuid() == 0 {
			_ = unix.Unmount(m.dir, unix.MNT_DETACH)
		} else {
			_ = exec.Command("fusermount3", "-u", "-z", m.dir).Run()
		}
	}
	m.mu.out.Close()
	return err
}
