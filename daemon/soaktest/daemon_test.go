package soaktest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is a running shadowbench serve.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returned
	err    error         // cmd.Wait's, once exited is closed
	nbd    string
	api    string
	log    string
	// http keeps its connections (the set loop); probe opens one per
	// request, so that a sample finds no connection of its own left open
	// in the daemon's descriptors.
	http, probe *http.Client
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs serve with one in-memory LUN, the API on a unix socket only
// (it needs no token), the NBD cap at maxConns and room for depth
// requests per connection.
func start(t *testing.T, lunSize int64, maxConns, depth int) *daemon {
	t.Helper()
	run := t.TempDir()
	d := &daemon{nbd: freePort(t), api: filepath.Join(run, "api.sock"), log: filepath.Join(run, "serve.log"),
		exited: make(chan struct{})}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(binPath, "serve", "--listen", d.nbd, "--api", "", "--api-socket", d.api,
		"--lun", fmt.Sprintf("name=soak,size=%d", lunSize),
		"--max-connections", strconv.Itoa(maxConns), "--max-in-flight", strconv.Itoa(depth),
		"--shutdown-timeout", "10s")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if d.alive() {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.api)
	}
	d.http = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: dial}}
	d.probe = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := d.status(); err == nil {
			return d
		} else if !d.alive() || time.Now().After(deadline) {
			t.Fatalf("serve did not come up: %v\n%s", err, d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// logTail is the end of the daemon's log, for failure messages.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// call sends an API request and decodes a 2xx answer into out.
func (d *daemon) call(c *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://api"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type status struct {
	Store struct {
		DataBytes int64 `json:"data_bytes"`
		MetaBytes int64 `json:"meta_bytes"`
	} `json:"store"`
}

func (d *daemon) status() (status, error) {
	var st status
	err := d.call(d.probe, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// createSet takes a VSS_CTX_BACKUP set of the LUN and returns its ID.
func (d *daemon) createSet() (string, error) {
	var rep struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	err := d.call(d.http, http.MethodPost, "/v1/sets", map[string]any{"targets": []string{"soak"}}, &rep)
	if err == nil && rep.State != "created" {
		err = fmt.Errorf("set %s: state %s", rep.ID, rep.State)
	}
	return rep.ID, err
}

func (d *daemon) deleteSet(id string) error {
	return d.call(d.http, http.MethodDelete, "/v1/sets/"+url.PathEscape(id), nil, nil)
}

// sets lists the IDs of the sets the API keeps.
func (d *daemon) sets() ([]string, error) {
	var out []struct {
		ID string `json:"id"`
	}
	if err := d.call(d.probe, http.MethodGet, "/v1/sets", nil, &out); err != nil {
		return nil, err
	}
	ids := make([]string, len(out))
	for i, s := range out {
		ids[i] = s.ID
	}
	return ids, nil
}

// metrics scrapes /metrics and returns the samples without labels, and
// those with, by their whole name ("name{labels}").
func (d *daemon) metrics() (map[string]float64, error) {
	resp, err := d.probe.Get("http://api/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// rss is the daemon's VmRSS in bytes.
func (d *daemon) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid()))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// fds counts the daemon's open descriptors.
func (d *daemon) fds() (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", d.pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// sample is one second's figures of the daemon.
type sample struct {
	at         time.Duration
	rss        int64
	data       int64 // shadowbench_store_data_bytes
	heap       int64 // go_memstats_heap_alloc_bytes: live objects and garbage not yet swept
	nextGC     int64 // go_memstats_next_gc_bytes: the heap size the next collection starts at
	gcs        int   // collections so far (go_gc_duration_seconds_count)
	goroutines int
	fds        int
	nbdConns   int
	refused    int
	inFlight   int64 // shadowbench_nbd_in_flight_bytes
}

func (d *daemon) sample(at time.Duration) (sample, error) {
	s := sample{at: at}
	var err error
	// Descriptors first: the scrape's own connection is then not open.
	if s.fds, err = d.fds(); err != nil {
		return s, err
	}
	if s.rss, err = d.rss(); err != nil {
		return s, err
	}
	m, err := d.metrics()
	if err != nil {
		return s, err
	}
	s.goroutines = int(m["go_goroutines"])
	s.data = int64(m["shadowbench_store_data_bytes"])
	s.heap = int64(m["go_memstats_heap_alloc_bytes"])
	s.nextGC = int64(m["go_memstats_next_gc_bytes"])
	s.gcs = int(m["go_gc_duration_seconds_count"])
	s.nbdConns = int(m["shadowbench_nbd_connections"])
	s.refused = int(m["shadowbench_nbd_connections_refused_total"])
	s.inFlight = int64(m["shadowbench_nbd_in_flight_bytes"])
	return s, nil
}

// stop sends SIGTERM and waits for the daemon to exit.
func (d *daemon) stop(timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-d.exited:
		return time.Since(t0), d.err
	case <-time.After(timeout):
		return time.Since(t0), fmt.Errorf("serve still running %v after SIGTERM", timeout)
	}
}

const mib = 1 << 20

func mb(n int64) float64 { return float64(n) / mib }
