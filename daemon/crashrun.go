package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CrashTestOptions describe a crash test (shadowbench crash-test): a
// workload run against a LUN that keeps crash points, then a check run
// against the LUN as a power cut at each point (or a seeded sample of
// them) would have left it. CrashMonkey's loop, for any software that
// runs on Linux.
type CrashTestOptions struct {
	// LUN is the LUN under test; it needs a cache mode and crash points.
	LUN string
	// Workload and Check are /bin/sh commands. Both find $uri (the NBD URI
	// of the LUN they are given: the LUN under test for the workload, the
	// exposed crash point for the check), $lun and SHADOWBENCH_API in
	// their environment; Check finds $point, $kind and $label too. A check
	// passes when it exits 0.
	Workload, Check string
	// Sample checks that many points drawn with Seed; 0 checks them all.
	Sample int
	Seed   uint64
	// Timeout bounds each check (default 5 minutes).
	Timeout time.Duration
	// Stdout and Stderr receive the workload's output; a check's goes to
	// its result.
	Stdout, Stderr io.Writer
	// Progress, when set, is told of each check as it ends.
	Progress func(done, total int, r CrashPointCheck)
}

// CrashTestResult is a crash test's outcome.
type CrashTestResult struct {
	LUN     string            `json:"lun"`
	Cache   string            `json:"cache"`
	Points  int               `json:"points"`  // kept after the workload
	Checked int               `json:"checked"` // of them
	Passed  int               `json:"passed"`
	Failed  int               `json:"failed"`
	Seed    Seed              `json:"seed"`
	Elapsed Duration          `json:"elapsed_ns"`
	Checks  []CrashPointCheck `json:"checks"`
}

// CrashPointCheck is the check of one crash point.
type CrashPointCheck struct {
	Point  CrashPointInfo `json:"point"`
	Passed bool           `json:"passed"`
	Exit   int            `json:"exit"`
	// Output is the check's output, its last 4 KiB, for a failure.
	Output  string   `json:"output,omitempty"`
	Elapsed Duration `json:"elapsed_ns"`
}

// CrashTest runs a crash test through the daemon c reaches (see
// CrashTestOptions). Each point is exposed as a writable clone, checked
// and deleted before the next, so the test costs one clone at a time.
func (c *Client) CrashTest(ctx context.Context, o CrashTestOptions) (*CrashTestResult, error) {
	t0 := time.Now()
	info, err := c.LUN(ctx, o.LUN)
	if err != nil {
		return nil, err
	}
	if info.Cache == "" {
		return nil, fmt.Errorf("LUN %s emulates no write cache: create it with --cache MODE --crash-points N", o.LUN)
	}
	if len(info.Exports) == 0 {
		return nil, fmt.Errorf("LUN %s is not exported (masked)", o.LUN)
	}
	before, err := c.CrashPoints(ctx, o.LUN)
	if err != nil {
		return nil, err
	}
	wl := c.shell(ctx, o.Workload, info.Exports[0], o.LUN, nil)
	wl.Stdout, wl.Stderr = orDiscard(o.Stdout), orDiscard(o.Stderr)
	if err := wl.Run(); err != nil {
		return nil, fmt.Errorf("the workload %q: %w", o.Workload, err)
	}
	pts, err := c.CrashPoints(ctx, o.LUN)
	if err != nil {
		return nil, err
	}
	// Only the points the workload made are its crash points.
	if len(before) > 0 {
		last := before[len(before)-1].ID
		pts = slices.DeleteFunc(pts, func(p CrashPointInfo) bool { return p.ID <= last })
	}
	res := &CrashTestResult{LUN: o.LUN, Cache: info.Cache, Points: len(pts), Seed: Seed(o.Seed), Checks: []CrashPointCheck{}}
	if len(pts) == 0 {
		return nil, fmt.Errorf("the workload left no crash points on LUN %s (it sent no FLUSH, and made no mark)", o.LUN)
	}
	if o.Sample > 0 && o.Sample < len(pts) {
		rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5851f42d4c957f2d))
		rng.Shuffle(len(pts), func(i, j int) { pts[i], pts[j] = pts[j], pts[i] })
		pts = pts[:o.Sample]
		slices.SortFunc(pts, func(a, b CrashPointInfo) int { return a.ID - b.ID })
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	for i, p := range pts {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		chk, err := c.checkPoint(ctx, o, p, timeout)
		if err != nil {
			return res, err
		}
		res.Checks = append(res.Checks, chk)
		res.Checked++
		if chk.Passed {
			res.Passed++
		} else {
			res.Failed++
		}
		if o.Progress != nil {
			o.Progress(i+1, len(pts), chk)
		}
	}
	res.Elapsed = Duration(time.Since(t0))
	return res, nil
}

// checkPoint exposes one crash point, runs the check on it and deletes it.
func (c *Client) checkPoint(ctx context.Context, o CrashTestOptions, p CrashPointInfo, timeout time.Duration) (CrashPointCheck, error) {
	chk := CrashPointCheck{Point: p}
	name := fmt.Sprintf("%s.crash-test-%d", o.LUN, p.ID)
	exp, err := c.ExposeCrashPoint(ctx, o.LUN, p.ID, ExposePointRequest{Name: name, Writable: true})
	if err != nil {
		return chk, fmt.Errorf("crash point %d: %w", p.ID, err)
	}
	defer func() { _, _ = c.DeleteLUN(context.WithoutCancel(ctx), name, true) }()
	if len(exp.Exports) == 0 {
		return chk, fmt.Errorf("crash point %d: LUN %s is not exported", p.ID, name)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := c.shell(cctx, o.Check, exp.Exports[0], name, []string{
		"point=" + strconv.Itoa(p.ID), "kind=" + p.Kind, "label=" + p.Label})
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err = cmd.Run()
	chk.Elapsed = Duration(time.Since(t0))
	var ee *exec.ExitError
	switch {
	case err == nil:
		chk.Passed = true
	case errors.As(err, &ee):
		chk.Exit = ee.ExitCode()
		chk.Output = out.String()
		if cctx.Err() != nil && ctx.Err() == nil {
			chk.Output += fmt.Sprintf("\n(killed: the check outlived %v)", timeout)
		}
	default:
		return chk, fmt.Errorf("the check %q: %w", o.Check, err)
	}
	return chk, nil
}

// shell is a /bin/sh command with a LUN's URI and the API's address in
// its environment.
func (c *Client) shell(ctx context.Context, script, uri, lunName string, extra []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), append([]string{"uri=" + uri, "lun=" + lunName, EnvAPI + "=" + c.addr}, extra...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// tail keeps the last 4 KiB written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if n := len(t.b) - 4096; n > 0 {
		t.b = t.b[n:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.b)) }
