package nbd

const (
	// reservedDescriptors are the descriptors DefaultMaxConnections leaves
	// for the listeners, the HTTP API and its clients, and the files a
	// daemon opens.
	reservedDescriptors = 256
	// minDefaultConnections is the least DefaultMaxConnections returns,
	// however low the descriptor limit.
	minDefaultConnections = 64

	// DefaultMaxInFlightBytes takes ramInFlightShare of the machine's
	// memory, within [minDefaultInFlightBytes, maxDefaultInFlightBytes].
	ramInFlightShare        = 16
	minDefaultInFlightBytes = 64 << 20
	maxDefaultInFlightBytes = 4 << 30
	// fallbackInFlightBytes is DefaultMaxInFlightBytes when the machine's
	// memory cannot be read.
	fallbackInFlightBytes = 1 << 30
	// connInFlightShare is the share of MaxInFlightBytes one connection
	// may hold by default, so that one client that stops reading stalls
	// itself, and sixteen of them are needed to stall the others.
	connInFlightShare = 16
)

// defaultMaxInFlightBytes is DefaultMaxInFlightBytes for a machine with
// ram bytes of memory.
func defaultMaxInFlightBytes(ram uint64) int64 {
	return int64(min(max(ram/ramInFlightShare, minDefaultInFlightBytes), maxDefaultInFlightBytes))
}

// defaultMaxConnections is DefaultMaxConnections for a soft descriptor
// limit of nofile.
func defaultMaxConnections(nofile uint64) int {
	if nofile > 1<<30 {
		nofile = 1 << 30
	}
	return max(int(nofile)-reservedDescriptors, minDefaultConnections)
}
