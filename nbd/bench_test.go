package nbd

import (
	"context"
	"testing"
)

// BenchmarkClientServer measures one 4 KiB request through the client, the
// loopback socket and the server into a LUN, from parallel goroutines on one
// connection; allocs/op covers both ends.
func BenchmarkClientServer(b *testing.B) {
	for _, tc := range []struct {
		name       string
		cmd        Command
		structured bool
	}{
		{"read4k", CmdRead, true},
		{"read4k-simple", CmdRead, false},
		{"write4k", CmdWrite, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := newArray(b, 64<<20, "lun0")
			l, _ := a.Get("lun0")
			ctx := context.Background()
			if err := l.WriteAt(ctx, make([]byte, 64<<20), 0, false); err != nil {
				b.Fatal(err)
			}
			ts := serveOn(b, "tcp", ArrayCatalog(a), Options{})
			c := ts.dial(b, &DialOptions{Export: "lun0", NoStructuredReplies: !tc.structured})
			b.SetBytes(4096)
			b.ReportAllocs()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 4096)
				var off int64
				for pb.Next() {
					off = (off + 4096*7) % (64 << 20)
					var err error
					if tc.cmd == CmdRead {
						err = c.Read(ctx, buf, off)
					} else {
						err = c.Write(ctx, buf, off, 0)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
