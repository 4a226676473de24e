package scenarios

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// LoadAll loads every file and returns the scenarios that loaded, with
// every error joined: one bad file does not hide the next.
func LoadAll(paths []string) ([]*Scenario, error) {
	var out []*Scenario
	var errs []error
	for _, p := range paths {
		sc, err := Load(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, sc)
	}
	return out, errors.Join(errs...)
}

// LoadDir loads every .yaml file of dir, in name order.
func LoadDir(dir string) ([]*Scenario, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("scenarios: no .yaml file in %s", dir)
	}
	slices.Sort(paths)
	return LoadAll(paths)
}

// RunAll runs the scenarios one after another, each report going to
// opts.Out as its run ends. It stops early only if ctx ends.
func RunAll(ctx context.Context, scs []*Scenario, opts Options) []*Result {
	var out []*Result
	for _, sc := range scs {
		if ctx.Err() != nil {
			break
		}
		out = append(out, Run(ctx, sc, opts))
	}
	return out
}

// Tally summarizes results in one line, "5 passed, 1 failed, 2 known
// failures", and reports whether none fails a run (see Result.Passed).
func Tally(results []*Result) (string, bool) {
	count := map[Status]int{}
	for _, r := range results {
		count[r.Status]++
	}
	var parts []string
	for _, s := range []struct {
		st   Status
		word string
	}{{StatusPass, "passed"}, {StatusFail, "failed"}, {StatusKnownFailure, "known failures"}, {StatusSkipped, "skipped"}, {StatusFixed, "fixed (remove their known-failure mark)"}} {
		if n := count[s.st]; n > 0 || s.st == StatusPass {
			parts = append(parts, fmt.Sprintf("%d %s", n, s.word))
		}
	}
	return strings.Join(parts, ", "), count[StatusFail]+count[StatusFixed] == 0
}
