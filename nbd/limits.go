package nbd

const (
	// reservedDescriptors are the descriptors DefaultMaxConnections leaves
	// for the listeners, the HTTP API and its clients, and the files a
	// daemon opens.
	reservedDescriptors = 256
	// minDefaultConnections is the least DefaultMaxConnections returns,
	// however low the descriptor limit.
	minDefaultConnections = 64
)

// defaultMaxConnections is DefaultMaxConnections for a soft descriptor
// limit of nofile.
func defaultMaxConnections(nofile uint64) int {
	if nofile > 1<<30 {
		nofile = 1 << 30
	}
	return max(int(nofile)-reservedDescriptors, minDefaultConnections)
}
