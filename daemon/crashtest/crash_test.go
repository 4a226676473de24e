// Package crashtest kills a durable shadowbench serve with SIGKILL under NBD
// load, again and again, and after each restart checks every block against
// a model of what design.md's D1-D3 promise survived: every write a
// completed FLUSH covered or that carried FUA, or a later one; nothing torn
// within a block; nothing that was never written; the LUNs, snapshot LUNs
// and identities as they were. Before each restart, shadowbench check must
// find the directory the kill left consistent.
//
// It runs the real binary, built once per test run. go test ./daemon/crashtest
// runs a few rounds; -crash.rounds (make crash) runs many.
package crashtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon/daemontest"
	"github.com/shadowbench/shadowbench/nbd"
)

var (
	roundsFlag = flag.Int("crash.rounds", 4, "kills per test")
	seedFlag   = flag.Uint64("crash.seed", 0, "seed (0: from the clock)")
)

const (
	blockSize = 4096
	lunSize   = 8 << 20
	blocks    = lunSize / blockSize
	workers   = 4
)

var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	daemontest.Main(m, "crashtest", &binPath)
}

// block is the model of one 4 KiB block. Its writes are numbered 1, 2, ...
// (0 is the never-written block, all zeros) and issued one at a time.
type block struct {
	possible []uint64 // numbers it may hold after a crash, ascending
	acked    uint64   // the newest acknowledged write
	floor    uint64   // a crash keeps this write or a later one
	next     uint64
}

type model struct {
	mu     sync.Mutex
	blocks [blocks]block
}

// content is write n of block i: its number, the write's, and a pattern
// derived from both, so a torn or misplaced block shows.
func content(i int, n uint64) []byte {
	p := make([]byte, blockSize)
	if n == 0 {
		return p
	}
	binary.LittleEndian.PutUint64(p, uint64(i))
	binary.LittleEndian.PutUint64(p[8:], n)
	r := rand.New(rand.NewPCG(uint64(i), n))
	for j := 16; j < len(p); j += 8 {
		binary.LittleEndian.PutUint64(p[j:], r.Uint64())
	}
	return p
}

type daemon struct {
	cmd    *exec.Cmd
	nbd    string
	api    string
	logf   *os.File
	killed bool
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// start runs serve on dir with one LUN, c0, of size bytes, and waits until
// it serves NBD. A daemon the test has not killed is killed when it ends.
func start(t *testing.T, dir, run string, round int, size int64) *daemon {
	t.Helper()
	return startWith(t, run, round, "--data-dir", dir, "--lun", fmt.Sprintf("name=c0,size=%d", size))
}

// startWith runs serve with args (its LUNs, where it keeps them) and
// waits until it serves NBD, as start does.
func startWith(t *testing.T, run string, round int, args ...string) *daemon {
	t.Helper()
	d := &daemon{nbd: freePort(t), api: filepath.Join(run, "api.sock")}
	var err error
	d.logf, err = os.Create(filepath.Join(run, fmt.Sprintf("serve-%d.log", round)))
	require.NoError(t, err)
	d.cmd = exec.Command(binPath, append([]string{"serve", "--listen", d.nbd, "--api", "", "--api-socket", d.api,
		"--shutdown-timeout", "1s"}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.logf, d.logf
	require.NoError(t, d.cmd.Start())
	t.Cleanup(func() {
		if !d.killed {
			d.kill(t)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.nbd, time.Second)
		if err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(d.logf.Name())
			t.Fatalf("serve did not come up: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) kill(t *testing.T) {
	d.killed = true
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	_ = d.cmd.Wait()
	d.logf.Close()
}

func (d *daemon) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.api)
		}}}
}

type lunInfo struct {
	Name, Kind, Serial, NAA string
}

func (d *daemon) luns(t *testing.T) []lunInfo {
	t.Helper()
	resp, err := d.client().Get("http://api/v1/luns")
	require.NoError(t, err)
	defer resp.Body.Close()
	var out []lunInfo
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	slices.SortFunc(out, func(a, b lunInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// snapshot takes an APP_ROLLBACK set of c0 through the API.
func (d *daemon) snapshot(t *testing.T) error { return d.set("app-rollback") }

// set takes a set of c0 in the context through the API.
func (d *daemon) set(context string) error {
	body := strings.NewReader(fmt.Sprintf(`{"targets":["c0"],"context":%q}`, context))
	resp, err := d.client().Post("http://api/v1/sets", "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("create set: %s: %s", resp.Status, b.String())
	}
	return nil
}

// load writes, flushes and snapshots until ctx ends, updating the model.
// Errors once the daemon is killed are expected and end the load.
func load(ctx context.Context, t *testing.T, d *daemon, m *model, seeds []uint64, snaps *int) {
	c, err := nbd.Dial(ctx, "tcp", d.nbd, &nbd.DialOptions{Export: "c0"})
	require.NoError(t, err)
	defer c.Close()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seeds[w], 1))
			for ctx.Err() == nil {
				i := w + workers*r.IntN(blocks/workers)
				fua := r.IntN(64) == 0
				m.mu.Lock()
				b := &m.blocks[i]
				b.next++
				n := b.next
				b.possible = append(b.possible, n)
				m.mu.Unlock()
				var flags nbd.CmdFlags
				if fua {
					flags = nbd.CmdFlagFUA
				}
				if err := c.Write(ctx, content(i, n), int64(i)*blockSize, flags); err != nil {
					return
				}
				m.mu.Lock()
				b.acked = n
				if fua {
					b.floor = max(b.floor, n)
				}
				m.mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		r := rand.New(rand.NewPCG(seeds[4], 2))
		for ctx.Err() == nil {
			time.Sleep(time.Duration(r.IntN(30)) * time.Millisecond)
			var acked [blocks]uint64
			m.mu.Lock()
			for i := range m.blocks {
				acked[i] = m.blocks[i].acked
			}
			m.mu.Unlock()
			if err := c.Flush(ctx); err != nil {
				return
			}
			m.mu.Lock()
			for i := range m.blocks {
				m.blocks[i].floor = max(m.blocks[i].floor, acked[i])
			}
			m.mu.Unlock()
			if r.IntN(10) == 0 {
				if err := d.snapshot(t); err == nil {
					*snaps++
				}
			}
		}
	})
	wg.Wait()
}

// check reads every block after a restart and checks it against the model,
// which it then resets to what the disk holds.
func check(t *testing.T, d *daemon, m *model) (kept, lost int) {
	t.Helper()
	ctx := context.Background()
	c, err := nbd.Dial(ctx, "tcp", d.nbd, &nbd.DialOptions{Export: "c0"})
	require.NoError(t, err)
	defer c.Close()
	p := make([]byte, lunSize)
	for off := 0; off < lunSize; off += 1 << 20 {
		require.NoError(t, c.Read(ctx, p[off:off+1<<20], int64(off)))
	}
	for i := range m.blocks {
		b := &m.blocks[i]
		got := p[i*blockSize : (i+1)*blockSize]
		n := binary.LittleEndian.Uint64(got[8:])
		if bytes.Equal(got, make([]byte, blockSize)) {
			n = 0
		}
		if !bytes.Equal(got, content(i, n)) {
			t.Fatalf("block %d holds no write of it whole (torn or misplaced; header says block %d write %d)", i, binary.LittleEndian.Uint64(got), n)
		}
		if !slices.Contains(b.possible, n) {
			t.Fatalf("block %d holds write %d, never issued since the last restart (possible %v)", i, n, b.possible)
		}
		if n < b.floor {
			t.Fatalf("block %d holds write %d, older than write %d, which a completed FLUSH or FUA made durable (D1)", i, n, b.floor)
		}
		if n == b.acked {
			kept++
		} else {
			lost++
		}
		b.possible, b.floor, b.acked = []uint64{n}, n, n
	}
	return kept, lost
}

func TestKillUnderLoad(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./daemon/crashtest -crash.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir, run := t.TempDir(), t.TempDir()
	m := &model{}
	for i := range m.blocks {
		m.blocks[i].possible = []uint64{0}
	}
	d := start(t, dir, run, 0, lunSize)
	want := d.luns(t)
	require.Len(t, want, 1)
	snaps := 0
	var restarts []time.Duration
	for round := 1; round <= *roundsFlag; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		seeds := []uint64{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}
		go func() {
			defer close(done)
			load(ctx, t, d, m, seeds, &snaps)
		}()
		time.Sleep(time.Duration(150+rng.IntN(600)) * time.Millisecond)
		d.kill(t)
		cancel()
		<-done
		// What the kill left is consistent: no block named twice, no
		// record without its tree (shadowbench check, offline).
		out, err := exec.Command(binPath, "check", dir).CombinedOutput()
		require.NoError(t, err, "round %d: shadowbench check after the kill:\n%s", round, out)
		// A set whose request was cut by the kill may or may not have
		// committed: the snapshot LUNs are what counts.
		t0 := time.Now()
		d = start(t, dir, run, round, lunSize)
		restarts = append(restarts, time.Since(t0))
		kept, lost := check(t, d, m)
		got := d.luns(t)
		var originals, snapLUNs []lunInfo
		for _, l := range got {
			if l.Kind == "snapshot" {
				snapLUNs = append(snapLUNs, l)
			} else {
				originals = append(originals, l)
			}
		}
		require.Equal(t, want, originals, "round %d: LUNs and identities", round)
		require.GreaterOrEqual(t, len(snapLUNs), snaps, "round %d: every committed snapshot survives (D2)", round)
		snaps = len(snapLUNs)
		t.Logf("round %d: %d blocks as last acknowledged, %d older (unflushed writes lost); %d snapshot LUNs; restart %v",
			round, kept, lost, len(snapLUNs), restarts[len(restarts)-1].Round(time.Millisecond))
	}
	d.kill(t)
}

// TestKillDropsAutoRelease: a kill ends the requesters of the sets it
// found, so the auto-release sets' snapshot LUNs are deleted at the next
// start (vss-spec.md A.10), and the persistent ones stay, in the API's
// lists as in the catalogue.
func TestKillDropsAutoRelease(t *testing.T) {
	dir, run := t.TempDir(), t.TempDir()
	d := start(t, dir, run, 0, lunSize)
	require.NoError(t, d.set("backup"))
	require.NoError(t, d.set("app-rollback"))
	require.Len(t, d.luns(t), 3)
	d.kill(t)

	d = start(t, dir, run, 1, lunSize)
	defer d.kill(t)
	luns := d.luns(t)
	require.Len(t, luns, 2, "c0 and the app-rollback set's snapshot: %v", luns)
	resp, err := d.client().Get("http://api/v1/snapshots")
	require.NoError(t, err)
	defer resp.Body.Close()
	var snaps []struct {
		TargetLUNs []string `json:"target_luns"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&snaps))
	require.Len(t, snaps, 1)
	require.Equal(t, []string{luns[1].Name}, snaps[0].TargetLUNs)
}
