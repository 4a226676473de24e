package nbd

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// RequestLatencyBounds are the upper bounds of the buckets that request
// latencies are counted in, from the moment a request's header has been
// read to the moment its reply is written: 100 ns to 60 s, about three
// per decade. A request served from memory takes about a microsecond, so
// the buckets start well below that. A latency past the last bound is
// counted in one more bucket.
var RequestLatencyBounds = [...]time.Duration{
	100 * time.Nanosecond, 250 * time.Nanosecond, 500 * time.Nanosecond,
	time.Microsecond, 2500 * time.Nanosecond, 5 * time.Microsecond,
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 30 * time.Second, 60 * time.Second,
}

// cmdSlots are the commands counted apart: every command up to
// BLOCK_STATUS, and one slot for the commands the server does not know.
const cmdSlots = int(CmdBlockStatus) + 2

// cmdCounters are one command's counters in one shard. The workers and
// writers of the shard's connections add to them with atomics; Stats
// reads them without stopping anyone.
type cmdCounters struct {
	requests, errors, bytes, sum atomic.Uint64
	buckets                      [len(RequestLatencyBounds) + 1]atomic.Uint64
}

// connStats are a shard of the server's request counters, about 2 KiB.
// The server keeps two shards per core and gives each new connection the
// next, so that connections served on different cores mostly write
// different cache lines. One set for the server was rejected because every
// request of every core would write the same few lines; one set per
// connection because it added 2.3 KiB to every idle connection, whose
// whole cost TestIdleConnectionCost holds under 16 KiB (N9).
type connStats struct {
	inFlight atomic.Int64
	cmds     [cmdSlots]cmdCounters
}

// slot is the counter slot of command c.
func slot(c Command) int { return min(int(c), cmdSlots-1) }

// begin counts a request that took a slot; its header was read at start.
// conn.release undoes the in-flight count.
func (s *connStats) begin(r *request, start time.Time) {
	s.inFlight.Add(1)
	r.start = start
}

// done counts a request answered: its command, its outcome, the bytes
// it moved and how long it took.
func (s *connStats) done(r *request) {
	d := time.Since(r.start)
	c := &s.cmds[slot(r.cmd)]
	c.requests.Add(1)
	if r.errno != 0 {
		c.errors.Add(1)
	} else if r.cmd != CmdFlush && r.cmd != CmdBlockStatus {
		c.bytes.Add(uint64(r.length))
	}
	c.sum.Add(uint64(d))
	i, _ := slices.BinarySearch(RequestLatencyBounds[:], d)
	c.buckets[i].Add(1)
}

// CommandStats are the counters of one command, over every connection
// the server has served.
type CommandStats struct {
	// Command is the command's name in lower case ("read",
	// "write_zeroes"), or "other" for commands the server does not know.
	Command string
	// Requests counts the requests answered, Errors those answered with
	// an error.
	Requests, Errors uint64
	// Bytes is the length of the successful requests: the data of READ
	// and WRITE, the range of TRIM, WRITE_ZEROES and CACHE.
	Bytes uint64
	// LatencySum is the exact sum of the requests' latencies.
	LatencySum time.Duration
	// Latency counts the requests per bucket of RequestLatencyBounds (not
	// cumulative); the last entry counts those past the last bound.
	Latency [len(RequestLatencyBounds) + 1]uint64
}

// requestTotals are plain counters: the sum of the shards.
type requestTotals [cmdSlots]CommandStats

// add adds the counters of s into t.
func (t *requestTotals) add(s *connStats) {
	for i := range s.cmds {
		c, o := &s.cmds[i], &t[i]
		o.Requests += c.requests.Load()
		o.Errors += c.errors.Load()
		o.Bytes += c.bytes.Load()
		o.LatencySum += time.Duration(c.sum.Load())
		for j := range c.buckets {
			o.Latency[j] += c.buckets[j].Load()
		}
	}
}

// list names the commands' counters, leaving out DISC, which is never
// answered, and "other" while it is zero.
func (t *requestTotals) list() []CommandStats {
	out := make([]CommandStats, 0, cmdSlots)
	for i := range t {
		s := t[i]
		switch {
		case Command(i) == CmdDisc:
			continue
		case i == cmdSlots-1:
			if s.Requests == 0 {
				continue
			}
			s.Command = "other"
		default:
			s.Command = strings.ToLower(Command(i).String())
		}
		out = append(out, s)
	}
	return out
}
