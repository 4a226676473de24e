package soaktest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shadowbench/shadowbench/nbd"
)

const blockSize = 4096

// opTimeout bounds one NBD request of the load: a request that takes
// longer is a hang, and counted as an error.
const opTimeout = 60 * time.Second

// fill writes version v of block b into p: the block's number and the
// version, then words drawn from both (splitmix64), so that a torn, stale
// or misplaced block shows, and says what it holds.
func fill(p []byte, b int, v uint32) {
	binary.LittleEndian.PutUint64(p, uint64(b))
	binary.LittleEndian.PutUint64(p[8:], uint64(v))
	x := uint64(b)<<32 | uint64(v)
	for j := 16; j < len(p); j += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(p[j:], z^z>>31)
	}
}

// load is the verified I/O: conns connections with depth workers each.
// Worker w owns the blocks b with b % workers == w and has one request
// in flight at a time, so a block is never read while it is written and
// version[b] is its newest acknowledged write: every read must return
// exactly that.
type load struct {
	addr    string
	blocks  int
	clients []*nbd.Client
	depth   int
	version []uint32 // per block; each element touched by its owner only

	stop   atomic.Bool
	ops    atomic.Int64
	errs   atomic.Int64
	mu     sync.Mutex
	first  []string // the first errors, for the report
	seed   uint64
	wg     sync.WaitGroup
	byConn []atomic.Int64
}

func newLoad(ctx context.Context, addr string, lunSize int64, conns, depth int, seed uint64) (*load, error) {
	l := &load{addr: addr, blocks: int(lunSize / blockSize), depth: depth, seed: seed,
		byConn: make([]atomic.Int64, conns)}
	l.version = make([]uint32, l.blocks)
	for range conns {
		c, err := nbd.Dial(ctx, "tcp", addr, &nbd.DialOptions{Export: "soak", MaxInFlight: depth})
		if err != nil {
			l.close()
			return nil, fmt.Errorf("load connection %d: %w", len(l.clients), err)
		}
		l.clients = append(l.clients, c)
	}
	return l, nil
}

func (l *load) fail(format string, args ...any) {
	l.errs.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.first) < 10 {
		l.first = append(l.first, fmt.Sprintf(format, args...))
	}
}

// span is how many blocks one request of prefill and readBack moves.
const span = 256

// prefill writes version 0 of every block, so that the store holds the
// LUN's whole size before the load starts and every read has something
// to check.
func (l *load) prefill() { l.sweep(true) }

// readBack reads every block once and checks it against version.
func (l *load) readBack() { l.sweep(false) }

func (l *load) sweep(write bool) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for ci, c := range l.clients {
		for range 4 {
			wg.Go(func() {
				p := make([]byte, span*blockSize)
				want := make([]byte, blockSize)
				for {
					first := int(next.Add(span)) - span
					if first >= l.blocks {
						return
					}
					n := min(span, l.blocks-first)
					buf := p[:n*blockSize]
					ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
					var err error
					if write {
						for i := range n {
							fill(buf[i*blockSize:(i+1)*blockSize], first+i, 0)
						}
						err = c.Write(ctx, buf, int64(first)*blockSize, 0)
					} else {
						err = c.Read(ctx, buf, int64(first)*blockSize)
					}
					cancel()
					if err != nil {
						l.fail("connection %d: %s of blocks %d-%d: %v", ci, map[bool]string{true: "write", false: "read"}[write], first, first+n-1, err)
						continue
					}
					if write {
						continue
					}
					for i := range n {
						b := first + i
						fill(want, b, l.version[b])
						if got := buf[i*blockSize : (i+1)*blockSize]; !bytes.Equal(got, want) {
							l.mismatch("read-back", b, got)
						}
					}
				}
			})
		}
	}
	wg.Wait()
}

// mismatch counts a block that does not hold its newest write and says
// what it holds instead.
func (l *load) mismatch(what string, b int, got []byte) {
	hb, hv := binary.LittleEndian.Uint64(got), binary.LittleEndian.Uint64(got[8:])
	whole := make([]byte, blockSize)
	fill(whole, int(hb), uint32(hv))
	desc := fmt.Sprintf("block %d version %d (whole)", hb, hv)
	switch {
	case bytes.Equal(got, make([]byte, blockSize)):
		desc = "zeros"
	case hb >= uint64(l.blocks) || hv > 1<<32-1 || !bytes.Equal(got, whole):
		desc = fmt.Sprintf("no whole write (header: block %d version %d)", hb, hv)
	}
	l.fail("%s: block %d: want version %d, got %s", what, b, l.version[b], desc)
}

// run starts the workers: conns x depth, each writing (half the time) or
// reading and checking a random block of its own, until halt.
func (l *load) run() {
	workers := len(l.clients) * l.depth
	for w := range workers {
		ci := w % len(l.clients)
		c := l.clients[ci]
		l.wg.Go(func() {
			r := rand.New(rand.NewPCG(l.seed, uint64(w)))
			owned := (l.blocks - w + workers - 1) / workers
			p := make([]byte, blockSize)
			want := make([]byte, blockSize)
			for !l.stop.Load() {
				b := w + workers*r.IntN(owned)
				write := r.IntN(2) == 0
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				var err error
				if write {
					fill(p, b, l.version[b]+1)
					err = c.Write(ctx, p, int64(b)*blockSize, 0)
				} else {
					err = c.Read(ctx, p, int64(b)*blockSize)
				}
				cancel()
				l.ops.Add(1)
				l.byConn[ci].Add(1)
				switch {
				case err != nil:
					l.fail("connection %d: block %d: %v", ci, b, err)
				case write:
					l.version[b]++
				default:
					fill(want, b, l.version[b])
					if !bytes.Equal(p, want) {
						l.mismatch("read", b, p)
					}
				}
			}
		})
	}
}

// halt stops the workers and waits for their last requests.
func (l *load) halt() {
	l.stop.Store(true)
	l.wg.Wait()
}

func (l *load) close() {
	for _, c := range l.clients {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.Disconnect(ctx); err != nil {
			_ = c.Close()
		}
		cancel()
	}
}

func (l *load) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.first...)
}
