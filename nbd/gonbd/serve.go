package gonbd

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/pojntfx/go-nbd/pkg/server"

	"github.com/shadowbench/shadowbench/lun"
)

// Serve serves the LUNs with go-nbd's server on l until ctx ends, one
// goroutine per connection, as go-nbd's own examples do. It is the peer of
// the NBD benchmark: go-nbd handles one request at a time per connection
// and has no FLUSH, TRIM or structured replies (design.md). Multi-conn is
// advertised so clients such as fio and qemu-img accept the server (go-nbd
// omits NBD_FLAG_HAS_FLAGS otherwise). Serve returns after every connection
// goroutine has exited.
func Serve(ctx context.Context, l net.Listener, luns ...*lun.LUN) error {
	exports := make([]*server.Export, len(luns))
	for i, x := range luns {
		exports[i] = &server.Export{Name: x.Name(), Description: x.Description(), Backend: Backend(x)}
	}
	opts := &server.Options{SupportsMultiConn: true, MinimumBlockSize: 1, PreferredBlockSize: 4096, MaximumBlockSize: 32 << 20}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		_ = l.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return ctx.Err()
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			}()
			_ = server.Handle(c, exports, opts)
		})
	}
}
