package nbd

import "golang.org/x/sys/unix"

// DefaultMaxConnections is the default of Options.MaxConnections: the soft
// limit on open descriptors (RLIMIT_NOFILE, which the Go runtime raises to
// the hard limit at start) less 256 for the listeners, the HTTP API and the
// files a daemon opens, and at least 64. Each connection holds one
// descriptor, so a flood of connections leaves the rest of the daemon
// reachable.
func DefaultMaxConnections() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return defaultMaxConnections(1024)
	}
	return defaultMaxConnections(rl.Cur)
}

// DefaultMaxInFlightBytes is the default of Options.MaxInFlightBytes: a
// sixteenth of the machine's memory (sysinfo's total RAM), at least 64 MiB
// and at most 4 GiB; 1 GiB if the memory cannot be read.
func DefaultMaxInFlightBytes() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return fallbackInFlightBytes
	}
	return defaultMaxInFlightBytes(uint64(si.Totalram) * uint64(max(si.Unit, 1)))
}
