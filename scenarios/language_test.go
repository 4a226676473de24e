package scenarios

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestExpectOutcomeClasses: a step's expect takes failed, succeeded, any
// and a list of codes besides one exact code; a step that ends outside
// what it accepts is a mismatch that says what was accepted.
func TestExpectOutcomeClasses(t *testing.T) {
	res := runInline(t, inlineHead+`steps:
  - call: StartSnapshotSet
    expect: failed
  - call: InitializeForBackup
    expect: succeeded
  - call: InitializeForBackup
    expect: [VSS_E_BAD_STATE, E_FAIL]
  - call: GatherWriterMetadata
    expect: any
  - call: Close
`)
	require.Equal(t, StatusPass, res.Status, res.Verdict())

	res = runInline(t, inlineHead+"steps:\n  - call: StartSnapshotSet\n    expect: succeeded\n")
	require.Equal(t, StatusFail, res.Status)
	require.Equal(t, "a success code", res.Mismatches[0].Expected)
	require.Equal(t, "VSS_E_BAD_STATE", res.Mismatches[0].Got)

	res = runInline(t, inlineHead+"steps:\n  - call: StartSnapshotSet\n    expect: [E_FAIL, VSS_E_SNAPSHOT_SET_IN_PROGRESS]\n")
	require.Equal(t, StatusFail, res.Status)
	require.Equal(t, "one of E_FAIL, VSS_E_SNAPSHOT_SET_IN_PROGRESS", res.Mismatches[0].Expected)
}

// TestTraceLinesCarrySetIDs: the lines where VSS passes a set or snapshot
// ID carry it, and patterns name a saved set with ${name}: B.8's "the
// provider got a new set ID and never AbortSnapshots for the old one" and
// A.10's "BackupShutdown with this set's ID" are lines of a file.
func TestTraceLinesCarrySetIDs(t *testing.T) {
	res := runInline(t, inlineHead+`steps:
  - call: InitializeForBackup
  - call: GatherWriterMetadata
  - call: StartSnapshotSet
    save: first
  - call: AddToSnapshotSet
    args: {volume: "D:"}
  - call: Close
  - backup: {volumes: ["D:"]}
    save: second
expect:
  subsequence:
    - provider:BeginPrepareSnapshot:array [set=${first}]
    - writer:BackupShutdown:sql [set=${first}]
    - provider:BeginPrepareSnapshot:array [set=${second}; snapshot=]
    - provider:CommitSnapshots:array -> S_OK [set=${second}]
    - writer:BackupShutdown:sql -> true [set=${second}]
  absent:
    - provider:AbortSnapshots [set=${first}]
  count:
    "provider:EndPrepareSnapshots [set=${first}]": 0
    "provider:EndPrepareSnapshots [set=${second}]": 1
`)
	require.Equal(t, StatusPass, res.Status, res.Verdict())
	for _, e := range res.Trace {
		if e.Kind == kindProvider && e.Name == "CommitSnapshots" {
			require.Contains(t, e.Detail, "set={")
		}
	}
}

// TestRepeatEveryStep: repeat works on every step, backup included, with
// the iteration in saved names.
func TestRepeatEveryStep(t *testing.T) {
	res := runInline(t, inlineHead+`steps:
  - backup: {volumes: ["D:"]}
    save: "s{i}"
    repeat: 3
  - sleep: 1ms
    repeat: 2
  - check: {snapshots: 0}
    repeat: 2
expect:
  count:
    provider:CommitSnapshots: 3
    "provider:CommitSnapshots [set=${s2}]": 1
    "writer:BackupShutdown:sql [set=${s3}]": 1
`)
	require.Equal(t, StatusPass, res.Status, res.Verdict())
}

// TestEventLogRecordsByFields: an event-log expectation selects records by
// their fields; the report prints them, and a failed match says which
// fields it compared and how near the nearest record came.
func TestEventLogRecordsByFields(t *testing.T) {
	src := strings.Replace(inlineHead, "  - name: array\n", `  - name: array
    profile:
      methods:
        PreCommitSnapshots: {failure: {hresult: E_FAIL, nth: 1}}
`, 1) + `steps:
  - backup: {volumes: ["D:"]}
    save: s
    expect: failed
expect:
`
	res := runInline(t, src+
		"  event-log: [{id: 12293, returned: E_FAIL, method: PreCommitSnapshots, level: error, set: \"${s}\"}]\n"+
		"  no-event-log: [{id: 12293, returned: E_UNEXPECTED}]\n")
	require.Equal(t, StatusPass, res.Status, res.Verdict())
	var out strings.Builder
	require.NoError(t, res.WriteText(&out))
	require.Contains(t, out.String(), "[event 12293] method=PreCommitSnapshots")
	require.Contains(t, out.String(), "returned=E_FAIL")

	res = runInline(t, src+"  event-log: [{id: 12293, returned: E_ABORT}]\n")
	require.Equal(t, StatusFail, res.Status)
	m := res.Mismatches[0]
	require.Equal(t, "a record with id=12293, returned=E_ABORT in the event log", m.Expected)
	require.Contains(t, m.Got, "no record matched on id=12293, returned=E_ABORT; the closest (1 of 2): ERROR unexpected provider error [event 12293]")
	require.Contains(t, m.Got, "returned=E_FAIL")
}

// TestAreLunsSupportedDetailOnce: the BOOL of AreLunsSupported is said
// once in its line, though both the coordinator's span and the runner's
// wrapper know it.
func TestAreLunsSupportedDetailOnce(t *testing.T) {
	src := strings.Replace(inlineHead, "  - name: array\n", "  - name: array\n    luns: [lun1]\n", 1)
	src = strings.Replace(src, "    - {name: lun0, size: 16MiB}\n", "    - {name: lun0, size: 16MiB}\n    - {name: lun1, size: 16MiB}\n", 1)
	res := runInline(t, src+`steps:
  - backup: {volumes: ["D:"]}
    expect: failed
expect:
  subsequence: ["provider:AreLunsSupported:array -> S_OK [supported=false]"]
`)
	require.Equal(t, StatusPass, res.Status, res.Verdict())
	for _, e := range res.Trace {
		if e.Name == "AreLunsSupported" {
			require.Equal(t, 1, strings.Count(e.Detail, "supported="), e.Line())
		}
	}
}

// TestSubsequenceMismatchSaysWhichLineCameWhere: a subsequence line found
// only before the line the previous expectation matched is reported as
// such, both lines named with the time they began.
func TestSubsequenceMismatchSaysWhichLineCameWhere(t *testing.T) {
	res := runInline(t, inlineHead+"steps:\n  - backup: {volumes: [\"D:\"]}\nexpect:\n  subsequence:\n    - provider:CommitSnapshots -> S_OK\n    - writer:Freeze:sql -> true\n")
	require.Equal(t, StatusFail, res.Status)
	got := res.Mismatches[0].Got
	require.Regexp(t, `^the line came too early: "writer:Freeze:sql -> true" \(at [^)]+\) is before "provider:CommitSnapshots:array -> S_OK \[set=\{[-0-9A-F]+\}\]" \(at [^)]+\), which the expected line before it matched$`, got)
}

// TestGoroutinesCountedByRun: the run's goroutines are those that carry its
// label, whatever else the process runs; a goroutine it started and left
// running fails goroutines: stable, named by where it waits.
func TestGoroutinesCountedByRun(t *testing.T) {
	r := &runner{runID: "test-" + t.Name()}
	other := &runner{runID: "other-" + t.Name()}
	stop := make(chan struct{})
	n0, _ := r.runGoroutines()
	r.baseGoroutines = n0
	r.withRunLabel(context.Background(), func(context.Context) {
		go func() { <-stop }() // inherits the label
	})
	other.withRunLabel(context.Background(), func(context.Context) { go func() { <-stop }() })
	n, stacks := r.runGoroutines()
	require.Equal(t, n0+1, n, "%v", stacks)
	var got string
	r.checkGoroutines(func(expected, g string) { got = g })
	require.Contains(t, got, "TestGoroutinesCountedByRun")
	close(stop)
	require.Eventually(t, func() bool { n, _ := r.runGoroutines(); return n == n0 }, 5*time.Second, 10*time.Millisecond)
}

// TestFilesystemSkippedWithoutToolsFailsUnderCI: a scenario with a file
// system on a machine without nbdfuse is skipped, saying what is missing;
// under CI=true, where the tools are installed, it fails instead.
func TestFilesystemSkippedWithoutToolsFailsUnderCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	const src = `array:
  luns: [{name: lun0, size: 16MiB, filesystem: ext4}]
providers: [{name: array}]
steps:
  - filesystem: {lun: lun0, path: a.txt, write: x}
`
	t.Setenv("CI", "")
	res := runInline(t, src)
	require.Equal(t, StatusSkipped, res.Status, res.Verdict())
	require.True(t, res.Passed())
	require.Contains(t, res.Verdict(), "SKIP inline: cannot run here: file systems need nbdfuse (Debian package nbdfuse)")

	t.Setenv("CI", "true")
	res = runInline(t, src)
	require.Equal(t, StatusFail, res.Status)
	require.Equal(t, "setup", res.Mismatches[0].What)
	require.Contains(t, res.Mismatches[0].Got, "nbdfuse")
}

// TestPointInTimeAtHold: the stricter point in time wants every write
// acknowledged before the release and none issued after the hold began,
// which the commit-time check would accept; and it catches a write that a
// closed gate let through.
func TestPointInTimeAtHold(t *testing.T) {
	at := time.Now()
	ms := func(n int) time.Time { return at.Add(time.Duration(n) * time.Millisecond) }
	held, commitStart, commitEnd, release := ms(5), ms(8), ms(10), ms(10)
	l := &loadGen{blocks: 2, recs: []writeRec{
		{block: 0, seq: 1, start: ms(0), ack: ms(1)},
		{block: 0, seq: 2, start: ms(2), ack: ms(3)},
		{block: 0, seq: 3, start: ms(6), ack: ms(12)}, // issued during the hold: queued
		{block: 1, seq: 4, start: ms(4), ack: ms(11)}, // in flight across the hold
	}}
	for _, tc := range []struct {
		got        []uint64
		ok, commit bool // the hold check, the commit-time check
	}{
		{[]uint64{2, 4}, true, true},
		{[]uint64{2, 0}, true, true},
		{[]uint64{3, 4}, false, true},
		{[]uint64{1, 4}, false, false},
	} {
		_, ok := l.verifyHeld(tc.got, held, release)
		require.Equal(t, tc.ok, ok, "%v", tc.got)
		_, ok = l.verifyPointInTime(tc.got, commitStart, commitEnd)
		require.Equal(t, tc.commit, ok, "%v, commit-time check", tc.got)
	}
	l.recs = append(l.recs, writeRec{block: 1, seq: 5, start: ms(6), ack: ms(7)})
	d, ok := l.verifyHeld([]uint64{2, 4}, held, release)
	require.False(t, ok)
	require.Contains(t, d, "write 5 to block 1 was issued after the hold began and acknowledged before the release: a gate let it through")
}

// TestEveryKeyDocumentedAndUsed: each key of the language a vendor needs
// for any case is in the package documentation (go doc ./scenarios), in
// the README's scenario section, and in a library file that uses it.
func TestEveryKeyDocumentedAndUsed(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	section := string(readme)
	start := strings.Index(section, "## Writing scenarios")
	require.GreaterOrEqual(t, start, 0)
	section = section[start:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	var library strings.Builder
	files, err := filepath.Glob("library/*.yaml")
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		library.Write(b)
	}
	for _, k := range []struct{ doc, readme, use string }{
		{"failed (any", "`failed`", "expect: failed"},
		{"succeeded (any", "`succeeded`", "expect: succeeded"},
		{"or any.", "`any`", "expect: any"},
		{"a\n// list of them", "a list", "expect: [VSS_E_BAD_STATE"},
		{"repeat: 50", "`repeat: N`", "repeat: 50"},
		{`save: "s{i}"`, `save: "s{i}"`, `save: "s{i}"`},
		{"set=", "[set=${", "[set=${"},
		{"${name}", "`${name}`", "${"},
		{"event-log: [{id: 12293, returned: E_FAIL", "{id: 12293, returned: E_FAIL", "{id: 12293, method: PreCommitSnapshots, returned: E_FAIL"},
		{"store-bytes", "store-bytes", "store-bytes: {mark:"},
		{"goroutines: stable", "goroutines: stable", "goroutines: stable"},
		{"lun-info", "lun-info", "lun-info:"},
		{"exec: {command:", "exec: {command:", "exec:\n      command:"},
		{"fsfreeze: {mount-point:", "fsfreeze: {mount-point:", "fsfreeze: {lun:"},
		{"filesystem: ext4", "filesystem: ext4", "filesystem: ext4"},
		{"filesystem: {snapshot:", "filesystem:\n{snapshot:", "filesystem: {snapshot:"},
		{"point-in-time: commit|hold", "point-in-time: hold", "point-in-time: hold"},
		{"CI=true", "CI=true", ""},
		{"cache: write-back", "cache: write-back", "cache: write-back"},
		{"powercut: {lun:", "powercut: {lun:", "powercut: {lun:"},
		{"fua: false", "fua: false", "fua: false"},
		{"after-writes: 3", "after-writes: N", "after-writes: 2"},
		{"profile: {cache: write-back}", "profile: {cache: write-back}", "profile: {cache: write-back}"},
		{"needs: [nbdcopy]", "needs: [nbdcopy]", "needs: [nbdcopy]"},
		{"SHADOWBENCH_NBD_SOCKET", "SHADOWBENCH_NBD_SOCKET", "$SHADOWBENCH_NBD_SOCKET"},
	} {
		require.Contains(t, string(doc), k.doc, "go doc ./scenarios")
		require.Contains(t, section, k.readme, "README, Writing scenarios")
		require.Contains(t, library.String(), k.use, "a library file")
	}
}

// TestArmedPowerCut: a powercut step with after-writes cuts right after
// the Nth write from the step on lands, the writes after it landing once
// the power is back; one with within cuts inside its window; a cut that
// never fired is disarmed at the end. The LUNs' caches come from the
// firmware profile.
func TestArmedPowerCut(t *testing.T) {
	res := runInline(t, `array:
  luns:
    - {name: wb, size: 1MiB}
    - {name: wt, size: 1MiB, cache: write-through}
providers:
  - name: array
    profile: {cache: {mode: write-back, crash-points: 4}}
steps:
  - powercut: {lun: wb, keep: none, after-writes: 3}
  - write: {lun: wb, offset: 0, data: "one", fua: false}
  - write: {lun: wb, offset: 512, data: "two"}
  - write: {lun: wb, offset: 1024, data: "three", fua: false}
  - write: {lun: wb, offset: 1536, data: "four", fua: false}
  - read: {lun: wb, offset: 0, data: "\0\0\0"}
  - read: {lun: wb, offset: 512, data: "two"}
  - read: {lun: wb, offset: 1024, data: "\0\0\0\0\0"}
  - read: {lun: wb, offset: 1536, data: "four"}
  - write: {lun: wb, offset: 0, data: "five", fua: false}
  - powercut: {lun: wb, keep: none, within: 100ms, seed: 3}
  - sleep: 200ms
  - read: {lun: wb, offset: 0, data: "\0\0\0\0"}
  - read: {lun: wb, offset: 512, data: "two"}
  - read: {lun: wb, offset: 1536, data: "\0\0\0\0"}
  - powercut: {lun: wt, keep: none, after-writes: 100}
`)
	require.True(t, res.Passed(), res.Verdict())
	var cuts []string
	for _, r := range res.EventLog {
		if r.Message == "power cut" {
			cuts = append(cuts, r.Attrs["trigger"])
		}
	}
	require.Equal(t, []string{"after write #3", "within 100ms"}, cuts, "the write-through cut never fired")
}
