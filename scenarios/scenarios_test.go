package scenarios

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/vss"
)

// timeScale is the library's time scale: 0.01 runs the 10 s hold window
// in 100 ms and the 60 s freeze window in 600 ms.
var timeScale = flag.Float64("time-scale", 0.01, "time scale of the library run")

// verbose prints every scenario's report, passing or not.
var verbose = flag.Bool("report", false, "print every scenario's report")

// knownFailures collects the library's known failures, printed after the
// run whatever the verbosity: a known failure is a defect someone owes a
// fix, not a skipped test.
var knownFailures struct {
	sync.Mutex
	lines []string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if len(knownFailures.lines) > 0 {
		slices.Sort(knownFailures.lines)
		fmt.Fprintf(os.Stderr, "\nKNOWN FAILURES in the scenario library (%d):\n", len(knownFailures.lines))
		for _, l := range knownFailures.lines {
			fmt.Fprintln(os.Stderr, "  "+l)
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func libraryFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("library/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 30, "the library holds at least 30 scenarios")
	return files
}

// TestLibrary runs every scenario of the library at a small time scale, in
// parallel. A scenario marked known-failure that fails is reported (see
// TestMain) and does not fail the test; one that passes does, so the mark
// goes when the defect does.
func TestLibrary(t *testing.T) { runLibrary(t, "", *timeScale) }

// TestLibraryOverWire runs the library with every provider reached over
// the provider protocol on loopback (ProviderLoopback): the protocol
// carries every call, argument, code and cancel of the library's
// scenarios, so each must give the verdict it gives in-process (they all
// pass, or are known failures, in TestLibrary).
func TestLibraryOverWire(t *testing.T) {
	runLibraryWith(t, func(*testing.T, *Scenario) Options {
		return Options{TimeScale: *timeScale, Provider: ProviderLoopback}
	})
}

// TestLibraryAgainstServedProvider is scenario run --provider ADDR against
// our own array provider served elsewhere (as serve --provider-listen
// serves it), a fresh array for each file with the file's LUNs: every
// provider-facing scenario passes; the others are not applicable, and
// say why.
func TestLibraryAgainstServedProvider(t *testing.T) {
	var mu sync.Mutex
	var ran []string
	notFacing := 0
	runLibraryWith(t, func(t *testing.T, sc *Scenario) Options {
		mu.Lock()
		defer mu.Unlock()
		if err := sc.providerFacing(); err != nil {
			notFacing++
			return Options{TimeScale: *timeScale, Provider: "127.0.0.1:1"} // refused before it dials
		}
		ran = append(ran, sc.Name)
		return Options{TimeScale: *timeScale, Provider: serveArray(t, sc)}
	})
	t.Cleanup(func() {
		slices.Sort(ran)
		t.Logf("%d provider-facing scenarios ran against the served provider (%s); %d are not provider-facing",
			len(ran), strings.Join(ran, ", "), notFacing)
		require.GreaterOrEqual(t, len(ran), 5, "the library has provider-facing scenarios")
	})
}

// TestServedProviderBreaksARule: a provider served elsewhere that answers
// PostCommitSnapshots with a code VSS does not list fails the scenario,
// and the verdict names the call.
func TestServedProviderBreaksARule(t *testing.T) {
	sc, err := Load("library/a-call-order.yaml")
	require.NoError(t, err)
	addr := serveArray(t, sc, func(p *provider.ArrayProvider) provider.Provider { return badPostCommit{p} })
	var out bytes.Buffer
	res := Run(context.Background(), sc, Options{TimeScale: *timeScale, Provider: addr, Out: &out})
	require.Equal(t, StatusFail, res.Status, res.Verdict())
	require.Contains(t, res.Verdict(), "got VSS_E_UNEXPECTED_PROVIDER_ERROR")
	require.Contains(t, out.String(), "provider:PostCommitSnapshots:array -> VSS_E_UNEXPECTED_PROVIDER_ERROR [provider returned E_UNEXPECTED",
		"the report's trace shows the call and what the provider answered")
}

type badPostCommit struct{ *provider.ArrayProvider }

func (badPostCommit) PostCommitSnapshots(context.Context, vss.ID, int) error { return vss.E_UNEXPECTED }

// serveArray serves the emulated array provider over the provider
// protocol on 127.0.0.1, over a new array with sc's LUNs, until the test
// ends, and returns its address.
func serveArray(t *testing.T, sc *Scenario, wrap ...func(*provider.ArrayProvider) provider.Provider) string {
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	for _, l := range sc.array.luns {
		_, err := a.Create(l.name, l.opts)
		require.NoError(t, err)
	}
	p, err := provider.NewArray(a, nil, provider.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var served provider.Provider = p
	for _, w := range wrap {
		served = w(p)
	}
	srv := wire.NewServer(served, wire.WithArray(a), wire.WithServerLogger(slog.New(slog.DiscardHandler)))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ls) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-done)
		require.NoError(t, p.Close())
	})
	return ls.Addr().String()
}

// TestLibraryDurable runs the library again on durable arrays, whose
// flushes and commits write their records down (Options.DataDir): the
// sequences, the verdicts and the data checks are the same. It runs at
// five times the time scale, because a hold window of 100 ms (10 s at
// 0.01) is shorter than the fdatasyncs of many scenarios at once on a
// loaded disk, and leaves out the f3 files, whose point is the
// coordinator's windows and timers with margins of 1-2%: a durable
// array changes what is kept, not how the windows are timed.
func TestLibraryDurable(t *testing.T) { runLibrary(t, t.TempDir(), *timeScale*5, "f3-") }

// runLibrary runs every file of the library but those whose names start
// with one of skip.
func runLibrary(t *testing.T, dataDir string, scale float64, skip ...string) {
	runLibraryWith(t, func(*testing.T, *Scenario) Options {
		return Options{TimeScale: scale, DataDir: dataDir}
	}, skip...)
}

// runLibraryWith runs every file of the library but those whose names
// start with one of skip, each with the options opts gives it.
func runLibraryWith(t *testing.T, opts func(*testing.T, *Scenario) Options, skip ...string) {
	for _, file := range libraryFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		if slices.ContainsFunc(skip, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sc, err := Load(file)
			require.NoError(t, err)
			var out bytes.Buffer
			o := opts(t, sc)
			o.Out = &out
			res := Run(context.Background(), sc, o)
			if *verbose || !res.Passed() {
				t.Log("\n" + out.String())
			}
			switch res.Status {
			case StatusKnownFailure:
				knownFailures.Lock()
				knownFailures.lines = append(knownFailures.lines, res.Verdict())
				knownFailures.Unlock()
			case StatusPass:
			case StatusSkipped:
				t.Skip(res.Verdict())
			default:
				t.Fatal(res.Verdict())
			}
		})
	}
}

var sectionRef = regexp.MustCompile(`\b([A-F])\.(\d+)`)

// TestLibraryComments checks that every file starts with a comment saying
// what it shows and which sections of vss-spec.md it covers, and that the
// library covers every point of section F.
func TestLibraryComments(t *testing.T) {
	covered := map[string]bool{}
	for _, file := range libraryFiles(t) {
		sc, err := Load(file)
		require.NoError(t, err)
		require.NotEmpty(t, sc.Summary, "%s starts with a comment", file)
		require.Contains(t, sc.Summary, "vss-spec.md", "%s names the spec sections it covers", file)
		refs := sectionRef.FindAllStringSubmatch(sc.Summary, -1)
		require.NotEmpty(t, refs, "%s names a section, like F.3", file)
		for _, r := range refs {
			covered[r[1]+"."+r[2]] = true
		}
		require.NotEmpty(t, sc.Description, "%s has a description", file)
	}
	for i := 1; i <= 10; i++ {
		require.True(t, covered[fmt.Sprintf("F.%d", i)], "no scenario covers F.%d", i)
	}
	for _, s := range []string{"A.7", "A.10", "A.13", "B.1", "B.2", "B.3", "B.7", "B.8", "B.10", "C", "D"} {
		if strings.Contains(s, ".") {
			require.True(t, covered[s], "no scenario covers %s", s)
		}
	}
}

// TestBadFiles: every mistake is an error that names the file, the line
// and what is wrong; unknown keys are errors, never ignored.
func TestBadFiles(t *testing.T) {
	const head = "array:\n  luns:\n    - {name: lun0, size: 64MiB}\n  volumes:\n    - {name: \"D:\", luns: [lun0]}\nproviders:\n  - name: array\n"
	for _, tc := range []struct {
		name string
		yaml string
		want string // "line: text"
	}{
		{"empty", "", "1: empty scenario"},
		{"not a mapping", "- a\n", "1:1: expected a mapping, found a list"},
		{"syntax", "array: [\n", "1: did not find expected node content"},
		{"two documents", head + "steps: [{call: Close}]\n---\nx: 1\n", "9: a scenario file holds one YAML document"},
		{"unknown top key", head + "steps: [{call: Close}]\nstpes: []\n", `9:1: unknown key "stpes"`},
		{"no steps", head, `1:1: "steps" is missing`},
		{"no array", "steps: [{call: Close}]\n", `1:1: "array" is missing`},
		{"no providers", "array:\n  luns: [{name: l, size: 1MiB}]\nsteps: [{call: Close}]\n", "1:1: providers: a scenario needs at least one provider"},
		{"alias", head + "x: &a 1\nsteps: [{call: Close}]\n", `8:1: unknown key "x"`},
		{"alias value", "array: &a\n  luns: [{name: l, size: 1MiB}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\nexpect: *a\n", "5:9: expect: aliases are not supported"},
		{"lun size", "array:\n  luns: [{name: l, size: lots}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:26: array.luns[0].size: "lots": want a size`},
		{"lun unknown key", "array:\n  luns: [{name: l, size: 1MiB, colour: red}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:32: array.luns[0]: unknown key "colour"`},
		{"block size", "array:\n  luns: [{name: l, size: 1MiB, block-size: 1024}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", "2:44: array.luns[0].block-size: 1024: want 512 or 4096"},
		{"duplicate lun", "array:\n  luns: [{name: l, size: 1MiB}, {name: l, size: 1MiB}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:33: array.luns[1].name: LUN "l" declared twice`},
		{"volume of unknown lun", "array:\n  luns: [{name: l, size: 1MiB}]\n  volumes: [{name: \"D:\", luns: [m]}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `3:33: array.volumes[0].luns[0]: no LUN "m" in the array`},
		{"fault without effect", "array:\n  luns: [{name: l, size: 1MiB, faults: [{op: flush}]}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", "2:41: array.luns[0].faults[0]: a fault needs a delay, an error or both"},
		{"fault op", "array:\n  luns: [{name: l, size: 1MiB, faults: [{op: erase, delay: 1s}]}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:46: array.luns[0].faults[0].op: "erase": want read, write, flush`},
		{"naa", "array:\n  luns: [{name: l, size: 1MiB, identity: {naa: 1234}}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:48: array.luns[0].identity.naa: "1234": want an NAA type 6 designator`},
		{"provider type", head + "  - {name: p2, type: firmware}\nsteps: [{call: Close}]\n", `8:22: providers[1].type: "firmware": want hardware or software`},
		{"inline profile", head + "    profile: {commit: {blokc: 1s}}\nsteps: [{call: Close}]\n", `8:24: providers[0].profile.commit: unknown key "blokc"`},
		{"inline profile method", head + "    profile:\n      methods:\n        CommitSnapshot: {latency: 1s}\nsteps: [{call: Close}]\n", `10:9: providers[0].profile.methods: unknown method "CommitSnapshot"`},
		{"profile file", head + "    profile-file: nowhere.yaml\nsteps: [{call: Close}]\n", "8:19: providers[0].profile-file: provider: profile: open"},
		{"writer event", head + "writers:\n  - name: w\n    on: {Frieze: {result: fail}}\nsteps: [{call: Close}]\n", `10:10: writers[0].on: unknown event "Frieze"`},
		{"writer veto without code", head + "writers:\n  - name: w\n    on: {Freeze: {result: veto}}\nsteps: [{call: Close}]\n", "10:18: writers[0].on.Freeze: Freeze: result \"veto\" needs a Failure code"},
		{"writer illegal code", head + "writers:\n  - name: w\n    on: {Freeze: {result: veto, failure: E_FAIL}}\nsteps: [{call: Close}]\n", "10:18: writers[0].on.Freeze: Freeze: SetWriterFailure refuses E_FAIL"},
		{"writer result", head + "writers:\n  - name: w\n    on: {Freeze: {result: maybe}}\nsteps: [{call: Close}]\n", `10:27: writers[0].on.Freeze.result: "maybe": want ok, fail, veto, panic or hang`},
		{"load lun", head + "load: [{lun: nope}]\nsteps: [{call: Close}]\n", `8:14: load[0].lun: no LUN "nope" in the array`},
		{"load region", head + "load: [{lun: lun0, region: 1GiB}]\nsteps: [{call: Close}]\n", "8:28: load[0].region: 1073741824 bytes is more than LUN lun0 holds"},
		{"step without action", head + "steps:\n  - {requester: r1}\n", "9:5: steps[0]: a step needs one of:"},
		{"step with two actions", head + "steps:\n  - {call: Close, sleep: 1s}\n", "9:19: steps[0]: a step does one thing; found call and sleep"},
		{"unknown call", head + "steps:\n  - call: StartSnapshot\n", `9:11: steps[0].call: unknown call "StartSnapshot"`},
		{"unknown step key", head + "steps:\n  - call: Close\n    expcet: S_OK\n", `10:5: steps[0]: unknown key "expcet"`},
		{"key of another kind", head + "steps:\n  - sleep: 1s\n    expect: S_OK\n", `10:5: steps[0]: unknown key "expect"`},
		{"bad hresult", head + "steps:\n  - call: Close\n    expect: VSS_E_NO_SUCH_THING\n", `10:13: steps[0].expect: "VSS_E_NO_SUCH_THING" is not an HRESULT`},
		{"missing arg", head + "steps:\n  - call: SetContext\n", "9:5: steps[0].args: SetContext needs args: context"},
		{"unknown arg", head + "steps:\n  - call: AddToSnapshotSet\n    args: {volum: \"D:\"}\n", `10:12: steps[0].args: unknown key "volum"`},
		{"bad context", head + "steps:\n  - call: SetContext\n    args: {context: VSS_CTX_EVERYTHING}\n", `10:21: steps[0].args.context: "VSS_CTX_EVERYTHING" is not a snapshot context`},
		{"unknown volume", head + "steps:\n  - backup: {volumes: [\"Z:\"]}\n", `9:24: steps[0].backup.volumes[0]: no volume or LUN "Z:"`},
		{"unknown provider", head + "steps:\n  - call: AddToSnapshotSet\n    args: {volume: \"D:\", provider: hw}\n", `10:36: steps[0].args.provider: no provider "hw"`},
		{"wait before async", head + "steps:\n  - wait: ds\n", `9:11: steps[0].wait: no DoSnapshotSet before this step keeps an Async called "ds"`},
		{"async on another call", head + "steps:\n  - call: Close\n    async: ds\n", "10:12: steps[0].async: only DoSnapshotSet takes async"},
		{"saved name used before", head + "steps:\n  - call: DeleteSnapshots\n    args: {set: s1}\n", `10:17: steps[0].args.set: nothing saved as "s1" before this step`},
		{"save a volume name", head + "steps:\n  - call: StartSnapshotSet\n    save: lun0\n", `10:11: steps[0].save: "lun0" names a volume`},
		{"writers on another call", head + "steps:\n  - call: Close\n    writers: {w: STABLE}\n", "10:14: steps[0].writers: only GatherWriterStatus"},
		{"unknown writer state", head + "writers: [{name: w}]\nsteps:\n  - call: GatherWriterStatus\n    writers: {w: FROZEN}\n", `11:18: steps[0].writers.w: "FROZEN" is not a writer state`},
		{"parallel of one", head + "steps:\n  - parallel:\n      - sleep: 1s\n", "10:7: steps[0].parallel: a parallel block runs two steps or more"},
		{"nested parallel", head + "steps:\n  - parallel:\n      - sleep: 1s\n      - parallel: [{sleep: 1s}, {sleep: 1s}]\n", "11:19: steps[0].parallel[1].parallel: parallel blocks do not nest"},
		{"crash after", head + "steps:\n  - backup: {volumes: [\"D:\"], crash-after: Freeze}\n", `9:44: steps[0].backup.crash-after: "Freeze" is not a call of the backup`},
		{"duration", head + "steps:\n  - sleep: forever\n", `9:12: steps[0].sleep: "forever": want a duration`},
		{"trace kind", head + "steps: [{call: Close}]\nexpect:\n  subsequence: [\"disk:Write -> S_OK\"]\n", `10:17: expect.subsequence[0]: bad trace line "disk:Write -> S_OK": kind "disk" is not one of`},
		{"trace method", head + "steps: [{call: Close}]\nexpect:\n  absent: [\"provider:Commit\"]\n", `10:12: expect.absent[0]: bad trace line "provider:Commit": "Commit" is not a provider method`},
		{"trace actor", head + "steps: [{call: Close}]\nexpect:\n  absent: [\"provider:CommitSnapshots:hw\"]\n", `10:12: expect.absent[0]: "provider:CommitSnapshots:hw": no provider called "hw"`},
		{"trace requester", head + "steps: [{call: Close}]\nexpect:\n  absent: [\"requester:Close:r9\"]\n", `10:12: expect.absent[0]: no step uses a requester called "r9"`},
		{"trace result", head + "steps: [{call: Close}]\nexpect:\n  absent: [\"writer:Freeze -> yes\"]\n", `10:12: expect.absent[0]: bad trace line "writer:Freeze -> yes": a writer event comes to`},
		{"count", head + "steps: [{call: Close}]\nexpect:\n  count: {\"provider:CommitSnapshots\": once}\n", `10:39: expect.count.provider:CommitSnapshots: "once": want a whole number`},
		{"count line", head + "steps: [{call: Close}]\nexpect:\n  count: {\"provider:Commit\": 1}\n", `10:11: expect.count[0]: bad trace line "provider:Commit"`},
		{"timing", head + "steps: [{call: Close}]\nexpect:\n  timing: [\"CommitSnapshots = 1s\"]\n", `10:12: expect.timing[0]: "CommitSnapshots = 1s": want SPAN < DURATION`},
		{"timing without bound", head + "steps: [{call: Close}]\nexpect:\n  timing: [{span: CommitSnapshots, hard: true}]\n", "10:12: expect.timing[0]: a bound needs max or min"},
		{"known failure without reason", head + "known-failure: \"\"\nsteps: [{call: Close}]\n", "8:16: known-failure: say why"},
		{"data step", head + "steps:\n  - read: {data: x}\n", "9:11: steps[0].read: give one of lun, snapshot and export"},
		{"powercut without cache", head + "steps:\n  - powercut: {lun: lun0}\n", "9:21: steps[0].powercut.lun: LUN lun0 has no cache: give it cache: write-back (or another mode), or its provider's profile one"},
		{"powercut opted out", "array:\n  luns: [{name: w, size: 1MiB, cache: none}]\nproviders: [{name: p, profile: {cache: write-back}}]\nsteps:\n  - powercut: {lun: w}\n", "5:21: steps[0].powercut.lun: LUN w has no cache: it says cache: none"},
		{"powercut masked from the profile", "array:\n  luns: [{name: w, size: 1MiB}, {name: x, size: 1MiB}]\nproviders: [{name: p, luns: [x], profile: {cache: write-back}}]\nsteps:\n  - powercut: {lun: w}\n", "5:21: steps[0].powercut.lun: LUN w has no cache"},
		{"powercut triggers", "array:\n  luns: [{name: w, size: 1MiB, cache: write-back}]\nproviders: [{name: p}]\nsteps:\n  - powercut: {lun: w, after-writes: 2, within: 1s}\n", "5:15: steps[0].powercut: give after-writes or within, not both"},
		{"powercut within", "array:\n  luns: [{name: w, size: 1MiB, cache: write-back}]\nproviders: [{name: p}]\nsteps:\n  - powercut: {lun: w, within: 0s}\n", "5:32: steps[0].powercut.within: a window of 0"},
		{"powercut after-writes", "array:\n  luns: [{name: w, size: 1MiB, cache: write-back}]\nproviders: [{name: p}]\nsteps:\n  - powercut: {lun: w, after-writes: 0}\n", `5:38: steps[0].powercut.after-writes: "0": want a whole number from 1`},
		{"profile cache mode", "array:\n  luns: [{name: w, size: 1MiB}]\nproviders: [{name: p, profile: {cache: sometimes}}]\nsteps: [{call: Close}]\n", `3:40: providers[0].profile.cache: unknown cache mode "sometimes"`},
		{"needs", head + "needs: [/bin/sh]\nsteps: [{call: Close}]\n", `8:9: needs[0]: "/bin/sh": a program's name`},
		{"powercut keep", "array:\n  luns: [{name: w, size: 1MiB, cache: write-back}]\nproviders: [{name: p}]\nsteps:\n  - powercut: {lun: w, keep: some}\n", `5:30: steps[0].powercut.keep: "some": want random, none, all or worst`},
		{"cache mode", "array:\n  luns: [{name: w, size: 1MiB, cache: sometimes}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:39: array.luns[0].cache: "sometimes": want none, write-through`},
		{"fua on a read", head + "steps:\n  - read: {lun: lun0, data: x, fua: false}\n", "9:11: steps[0].read: fua is a write's"},
		{"repeat", head + "steps:\n  - sleep: 1s\n    repeat: 0\n", `10:13: steps[0].repeat: "0": want a whole number from 1 to 256`},
		{"repeat save", head + "steps:\n  - backup: {volumes: [\"D:\"]}\n    save: s\n    repeat: 2\n", "10:11: steps[0].save: a repeated step saves under a name with {i}"},
		{"expect class", head + "steps:\n  - call: Close\n    expect: failing\n", `10:13: steps[0].expect: "failing" is not an HRESULT name or 0x value, nor failed, succeeded or any`},
		{"expect list", head + "steps:\n  - call: Close\n    expect: [E_FAIL, E_FAIL]\n", "10:22: steps[0].expect[1]: E_FAIL given twice"},
		{"saved name in pattern", head + "steps: [{call: Close}]\nexpect:\n  absent: [\"provider:AbortSnapshots [set=${first}]\"]\n", `10:12: expect.absent[0]: "provider:AbortSnapshots [set=${first}]": ${first}: no step saves a set, snapshot or export as "first"`},
		{"store-bytes", head + "steps:\n  - check: {store-bytes: {max: before}}\n", `9:32: steps[0].check.store-bytes.max: "before": want a size (4MiB, 0) or a name marked by an earlier store-bytes check`},
		{"store-bytes empty", head + "steps:\n  - check: {store-bytes: {}}\n", "9:26: steps[0].check.store-bytes: store-bytes takes mark, max or min"},
		{"goroutines", head + "steps:\n  - check: {goroutines: few}\n", `9:25: steps[0].check.goroutines: "few": goroutines takes stable`},
		{"lun-info", head + "steps:\n  - check: {lun-info: {snapshot: \"D:\", colour: red}}\n", `9:40: steps[0].check.lun-info: unknown key "colour"`},
		{"fs step without fs", head + "steps:\n  - filesystem: {lun: lun0, path: a, write: x}\n", `9:23: steps[0].filesystem.lun: LUN "lun0" has no filesystem`},
		{"fs path", "array:\n  luns: [{name: l, size: 16MiB, filesystem: ext4}]\nproviders: [{name: p}]\nsteps:\n  - filesystem: {lun: l, path: ../x, read: y}\n", `5:32: steps[0].filesystem.path: "../x": a path inside the file system`},
		{"fs type", "array:\n  luns: [{name: l, size: 16MiB, filesystem: xfs}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", `2:45: array.luns[0].filesystem: "xfs": the runner makes ext4 file systems`},
		{"fs load", "array:\n  luns: [{name: l, size: 16MiB, filesystem: ext4}]\nproviders: [{name: p}]\nload: [{lun: l}]\nsteps: [{call: Close}]\n", "4:8: load[0].lun: LUN l holds a file system"},
		{"writer kinds", head + "writers:\n  - {name: w, exec: {command: [true]}, on: {Freeze: {result: fail}}}\nsteps: [{call: Close}]\n", "9:5: writers[0]: a writer is scripted (on), exec or fsfreeze"},
		{"exec empty", head + "writers:\n  - {name: w, exec: {timeout: 1s}}\nsteps: [{call: Close}]\n", "9:21: writers[0].exec: an exec writer needs command or commands"},
		{"fsfreeze lun", head + "writers:\n  - {name: w, fsfreeze: {lun: lun0}}\nsteps: [{call: Close}]\n", `9:31: writers[0].fsfreeze.lun: LUN "lun0" has no filesystem`},
		{"wait-for detail", head + "steps:\n  - wait-for: \"provider:CommitSnapshots [set=x]\"\n", "9:15: steps[0].wait-for: wait-for waits for a call to begin, so it takes no result or detail"},
		{"event-log field", head + "steps: [{call: Close}]\nexpect:\n  event-log: [{id: 99999}]\n", `10:20: expect.event-log[0].id: "99999" is not an event ID`},
		{"event-log level", head + "steps: [{call: Close}]\nexpect:\n  event-log: [{level: loud}]\n", `10:23: expect.event-log[0].level: "loud": want DEBUG, INFO, WARN or ERROR`},
		{"event-log saved name", head + "steps: [{call: Close}]\nexpect:\n  event-log: [{set: \"${s}\"}]\n", "10:21: expect.event-log[0].set: ${s}: no step saves"},
		{"lun count without {i}", "array:\n  luns: [{name: l, size: 1MiB, count: 2}]\nproviders: [{name: p}]\nsteps: [{call: Close}]\n", "2:10: array.luns[0].name: with count, the name carries {i}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := Parse("bad.yaml", []byte(tc.yaml))
			require.Nil(t, sc)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrBadScenario)
			var se *Error
			require.True(t, errors.As(err, &se))
			require.Equal(t, "bad.yaml", se.File)
			require.Contains(t, err.Error(), "bad.yaml:"+tc.want)
		})
	}
}

// TestParseKeepsWhatItReads checks defaults and a few values that reach
// the runner.
func TestParseKeepsWhatItReads(t *testing.T) {
	sc, err := Parse("dir/good.yaml", []byte(`# Shows nothing in particular.
# Covers vss-spec.md F.1.
description: a test
min-time-scale: 0.5
array:
  luns:
    - {name: "l{i}", size: 1MiB, count: 3}
providers:
  - name: p
writers:
  - name: w
steps:
  - call: AddToSnapshotSet
    args: {volume: "l{i}"}
    repeat: 3
`))
	require.NoError(t, err)
	require.Equal(t, "good", sc.Name)
	require.Equal(t, "Shows nothing in particular.\nCovers vss-spec.md F.1.", sc.Summary)
	require.Equal(t, 0.5, sc.MinTimeScale)
	require.Len(t, sc.array.luns, 3)
	require.Equal(t, "l3", sc.array.luns[2].name)
	require.Len(t, sc.steps, 3)
	require.Equal(t, "l2", sc.steps[1].args.volume)
	require.Equal(t, defaultRequester, sc.steps[0].requester)
	require.Equal(t, "data", sc.writers[0].script.Components[0].Name, "a writer without components declares one")
}

// runInline runs a scenario written here at a small time scale.
func runInline(t *testing.T, src string) *Result {
	t.Helper()
	sc, err := Parse("inline.yaml", []byte(src))
	require.NoError(t, err)
	var out bytes.Buffer
	res := Run(context.Background(), sc, Options{TimeScale: 0.01, Out: &out})
	t.Log("\n" + out.String())
	return res
}

const inlineHead = `array:
  luns:
    - {name: lun0, size: 16MiB}
  volumes:
    - {name: "D:", luns: [lun0]}
providers:
  - name: array
writers:
  - name: sql
`

// TestFirstMismatchExplained: a scenario whose expectations do not hold
// fails, and the first mismatch names the line, what was expected and what
// came, with the trace around it.
func TestFirstMismatchExplained(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		line     int
		what     string
		expected string
		got      string
		context  string
	}{
		{
			name: "step result",
			body: "steps:\n  - call: StartSnapshotSet\n    expect: VSS_E_SNAPSHOT_SET_IN_PROGRESS\n",
			line: 11, what: "step at line 11 (call StartSnapshotSet, requester r1)",
			expected: "VSS_E_SNAPSHOT_SET_IN_PROGRESS", got: "VSS_E_BAD_STATE",
			context: "> requester:StartSnapshotSet:r1 -> VSS_E_BAD_STATE",
		},
		{
			name: "writer state",
			body: "steps:\n  - backup: {volumes: [\"D:\"]}\n    writers: {sql: FAILED_AT_FREEZE}\n",
			line: 11, what: "step at line 11 (backup, requester r1)",
			expected: "writer sql in VSS_WS_FAILED_AT_FREEZE", got: "sql VSS_WS_STABLE, failure S_OK",
			context: "requester:GatherWriterStatus:r1 -> S_OK",
		},
		{
			name: "subsequence",
			body: "steps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  subsequence:\n    - provider:CommitSnapshots -> S_OK\n    - writer:Freeze:sql -> true\n",
			line: 15, what: "expect.subsequence",
			expected: "writer:Freeze:sql -> true", got: `the line came too early: "writer:Freeze:sql -> true" (at `,
			context: "> provider:CommitSnapshots:array -> S_OK",
		},
		{
			name: "whole trace",
			body: "steps:\n  - backup: {volumes: [\"D:\"], context: VSS_CTX_FILE_SHARE_BACKUP}\nexpect:\n  trace:\n    kinds: [writer]\n    lines: [writer:Freeze:sql -> true]\n",
			line: 15, what: "expect.trace",
			expected: "writer:Freeze:sql -> true", got: "the end of the trace",
		},
		{
			name: "absent",
			body: "steps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  absent: [writer:Thaw]\n",
			line: 13, what: "expect.absent",
			expected: "no writer:Thaw", got: "writer:Thaw:sql -> true",
			context: "> writer:Thaw:sql -> true",
		},
		{
			name: "hard timing",
			body: "steps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  timing: [{span: window:hold, min: 1s, hard: true}]\n",
			line: 13, what: "expect.timing (hard)",
			expected: "window:hold > 1s",
		},
		{
			name:     "wait on an Async that never ran",
			body:     "steps:\n  - call: DoSnapshotSet\n    async: ds\n    expect: VSS_E_BAD_STATE\n  - wait: ds\n",
			line:     14,
			what:     "step at line 14 (wait ds)",
			expected: "the Async ds", got: "none: its DoSnapshotSet failed or never ran",
		},
		{
			name:     "count",
			body:     "steps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  count: {writer:Freeze: 2}\n",
			line:     13,
			what:     "expect.count",
			expected: "2 of writer:Freeze", got: "1",
			context: "> writer:Freeze:sql -> true",
		},
		{
			name: "event log",
			body: "steps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  event-log: [12298]\n",
			line: 13, what: "expect.event-log",
			expected: "event 12298 in the event log", got: "none",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runInline(t, inlineHead+tc.body)
			require.Equal(t, StatusFail, res.Status)
			require.False(t, res.Passed())
			m := res.Mismatches[0]
			require.Equal(t, "inline.yaml", m.File)
			require.Equal(t, tc.line, m.Line)
			require.Equal(t, tc.what, m.What)
			require.Equal(t, tc.expected, m.Expected)
			if tc.got != "" {
				require.True(t, strings.HasPrefix(m.Got, tc.got), "got %q", m.Got)
			}
			if tc.context != "" {
				require.Contains(t, strings.Join(m.Context, "\n"), tc.context)
			}
			require.Contains(t, res.Verdict(), fmt.Sprintf("FAIL inline (%v): inline.yaml:%d: %s: expected %s", res.Elapsed.Round(time.Millisecond), tc.line, tc.what, tc.expected))
		})
	}
}

// TestKnownFailure: a failing scenario marked known-failure is reported as
// such and does not fail a run; one that passes is "fixed" and does.
func TestKnownFailure(t *testing.T) {
	res := runInline(t, "known-failure: the coordinator is fine here\n"+inlineHead+"steps:\n  - call: Close\n    expect: E_FAIL\n")
	require.Equal(t, StatusKnownFailure, res.Status)
	require.True(t, res.Passed())
	require.Contains(t, res.Verdict(), "KNOWN FAILURE inline")
	require.Contains(t, res.Verdict(), "known failure: the coordinator is fine here")

	res = runInline(t, "known-failure: it used to fail\n"+inlineHead+"steps:\n  - call: Close\n")
	require.Equal(t, StatusFixed, res.Status)
	require.False(t, res.Passed())
	require.Contains(t, res.Verdict(), "remove the mark")
}

// TestTimeScale: the scale reaches the coordinator's windows, the profile,
// the writers and the bounds, and details read in scenario time.
func TestTimeScale(t *testing.T) {
	sc, err := Parse("scale.yaml", []byte(`array:
  luns: [{name: lun0, size: 1MiB}]
service: {hold-window: 20s}
providers:
  - name: array
    profile:
      prepare: {latency: {uniform: {min: 1s, max: 3s}}}
      commit: {block: 9.9s}
      methods:
        EndPrepareSnapshots: {latency: {normal: {mean: 2s, stddev: 1s}}}
writers:
  - name: w
    freeze-timeout: 20s
    on: {Freeze: {delay: 5s}}
steps: [{call: Close}]
`))
	require.NoError(t, err)
	r := &runner{sc: sc, scale: 0.01}
	cfg := r.serviceConfig()
	require.Equal(t, 200*time.Millisecond, cfg.HoldWindow, "given, then scaled")
	require.Equal(t, 600*time.Millisecond, cfg.FreezeWindow, "the coordinator's 60 s default, scaled")
	require.Equal(t, 1200*time.Millisecond, cfg.PrepareWindow)
	p := r.scaleProfile(sc.providers[0].profile)
	require.Equal(t, 99*time.Millisecond, p.Commit.Block.Mean)
	require.Equal(t, 10*time.Millisecond, p.Prepare.Latency.Min)
	require.Equal(t, 30*time.Millisecond, p.Prepare.Latency.Max)
	require.Equal(t, 9900*time.Millisecond, sc.providers[0].profile.Commit.Block.Mean, "the scenario itself is not changed")
	s := r.scaleScript(sc.writers[0].script)
	for e, a := range s.On {
		require.Equal(t, 50*time.Millisecond, a.Delay, "%v", e)
	}
	require.Equal(t, "no answer within 1m0s", r.unscaleDetail("no answer within 600ms"))
	require.Equal(t, "freeze window 20s passed", r.unscaleDetail("freeze window 200ms passed"))

	sc.MinTimeScale = 0.5
	res := Run(context.Background(), sc, Options{TimeScale: 0.01})
	require.Equal(t, 0.5, res.TimeScale, "min-time-scale raises the scale")
}

// TestResultJSONAndText: the result reads as text and as JSON.
func TestResultText(t *testing.T) {
	res := runInline(t, inlineHead+"load: [{lun: lun0, rate: 500}]\nsteps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  timing: [\"CommitSnapshots < 1s\"]\n")
	require.Equal(t, StatusPass, res.Status, res.Verdict())
	var out bytes.Buffer
	require.NoError(t, res.WriteText(&out))
	text := out.String()
	for _, s := range []string{"=== inline (inline.yaml), time scale 0.01", "provider:CommitSnapshots:array -> S_OK",
		"timing bounds:", "CommitSnapshots < 1s (soft)", "checks:", "ok   invariant B.1", "no write lost", "--- PASS inline ("} {
		require.Contains(t, text, s)
	}
	var phases int
	for _, m := range res.Measurements {
		if strings.HasPrefix(m.Span, "phase:") && m.Limit == 0 {
			phases++
		}
	}
	require.Equal(t, len(phaseNames), phases, "every phase of the sequence is measured")
}

// FuzzLoad: Parse never panics, and what it accepts has a name and steps.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("library/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("array: &a {luns: *a}\n"))
	f.Add([]byte("steps: [{parallel: [{parallel: []}]}]\n"))
	// The language's newer keys, each with a twist a fuzzer can grow.
	const head = "array: {luns: [{name: l, size: 1MiB}]}\nproviders: [{name: p}]\nwriters: [{name: w}]\n"
	for _, body := range []string{
		"steps: [{call: Close, expect: [E_FAIL, failed]}]\n",
		"steps: [{call: Close, expect: any}, {sleep: 1ms, repeat: 3}]\n",
		"steps: [{backup: {volumes: [l]}, save: \"s{i}\", repeat: 2}]\nexpect: {subsequence: [\"provider:CommitSnapshots [set=${s2}]\"]}\n",
		"steps: [{backup: {volumes: [l]}, save: s}]\nexpect: {event-log: [{id: 12293, returned: E_FAIL, set: \"${s}\"}], no-event-log: [{level: error}]}\n",
		"steps: [{call: Close}]\nexpect: {absent: [\"provider:AbortSnapshots [set=${}]\"]}\n",
		"steps: [{check: {store-bytes: {mark: m}}}, {check: {store-bytes: {max: m, min: 0}, goroutines: stable, lun-info: all}}]\n",
		"steps: [{check: {lun-info: {snapshot: l, vendor: V, bus-type: 1}}}]\n",
		"writers: [{name: x, exec: {command: [sh, -c, 'exit 0'], commands: {Freeze: [\"true\"]}, timeout: 1s, env: [A=1]}}]\nsteps: [{call: Close}]\n",
	} {
		f.Add([]byte(head + body))
	}
	f.Add([]byte("array: {luns: [{name: l, size: 16MiB, filesystem: ext4}]}\nproviders: [{name: p}]\n" +
		"writers: [{name: f, fsfreeze: {lun: l, max-frozen: 1s}}]\n" +
		"steps: [{filesystem: {lun: l, path: a/b, write: x}}, {backup: {volumes: [l]}}, {filesystem: {snapshot: l, path: a/b, read: x}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := Parse("fuzz.yaml", data)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if sc.Name == "" || len(sc.steps) == 0 {
			t.Fatalf("accepted a scenario without name or steps")
		}
	})
}

// TestCanonicalTrace: one event broadcast to several writers reads the same
// whatever order the scheduler chose; Freeze keeps its level order, each
// writer's freeze window before its event.
func TestCanonicalTrace(t *testing.T) {
	at := time.Now()
	e := func(kind, name, actor string, ms int) *timedEntry {
		return &timedEntry{Entry: Entry{Kind: kind, Name: name, Actor: actor}, start: at.Add(time.Duration(ms) * time.Millisecond)}
	}
	level := map[string]int{"web": 0, "sql": 1, "exch": 1, "sys": 2}
	es := []*timedEntry{
		e(kindPhase, "Freeze", "", 0),
		e(kindWindow, "freeze-window", "web", 1), e(kindWriter, "Freeze", "web", 2),
		e(kindWindow, "freeze-window", "sql", 3), e(kindWriter, "Freeze", "sql", 4), e(kindWindow, "freeze-window", "exch", 5),
		e(kindWriter, "Freeze", "exch", 6),
		e(kindWindow, "freeze-window", "sys", 7), e(kindWriter, "Freeze", "sys", 8),
		e(kindWriter, "Abort", "sys", 9), e(kindWriter, "Abort", "exch", 10),
		e(kindProvider, "PreCommitSnapshots", "array", 11),
		e(kindWriter, "Thaw", "web", 12), e(kindWriter, "Thaw", "exch", 13),
	}
	canonicalize(es, level)
	var got []string
	for _, x := range es {
		got = append(got, x.Kind+":"+x.Name+":"+x.Actor)
	}
	require.Equal(t, []string{
		"phase:Freeze:",
		"window:freeze-window:web", "writer:Freeze:web",
		"window:freeze-window:exch", "window:freeze-window:sql", "writer:Freeze:exch", "writer:Freeze:sql",
		"window:freeze-window:sys", "writer:Freeze:sys",
		"writer:Abort:exch", "writer:Abort:sys",
		"provider:PreCommitSnapshots:array",
		"writer:Thaw:exch", "writer:Thaw:web",
	}, got)
}
