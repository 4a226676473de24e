//go:build !linux

package nbd

// DefaultMaxConnections is the default of Options.MaxConnections. Off Linux
// it assumes the common soft descriptor limit of 1024, less the descriptors
// kept for the rest of the daemon.
func DefaultMaxConnections() int { return defaultMaxConnections(1024) }

// DefaultMaxInFlightBytes is the default of Options.MaxInFlightBytes; off
// Linux, where the machine's memory is not read, 1 GiB.
func DefaultMaxInFlightBytes() int64 { return fallbackInFlightBytes }
