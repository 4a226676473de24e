//go:build race

package cow

// raceEnabled is true in race builds, where a test whose reads and writes
// of the same bytes race by design cannot run.
const raceEnabled = true
