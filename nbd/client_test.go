package nbd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// badServer negotiates like a server (structured replies, one 1 MiB
// export) and then hands each request header to reply, which writes
// whatever it likes; a false return closes the connection.
func badServer(t *testing.T, reply func(w io.Writer, cmd Command, handle, off uint64, length uint32) bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		w := func(b []byte) { _, _ = c.Write(b) }
		hello := be.AppendUint64(be.AppendUint64(nil, magicInit), magicOption)
		w(be.AppendUint16(hello, hsFlagFixedNewstyle|hsFlagNoZeroes))
		var h [28]byte
		if _, err := io.ReadFull(br, h[:4]); err != nil {
			return
		}
		optReply := func(opt, typ uint32, data []byte) {
			b := be.AppendUint64(nil, magicOptionReply)
			b = be.AppendUint32(be.AppendUint32(b, opt), typ)
			w(append(be.AppendUint32(b, uint32(len(data))), data...))
		}
		for done := false; !done; {
			if _, err := io.ReadFull(br, h[:16]); err != nil {
				return
			}
			opt := be.Uint32(h[8:])
			if _, err := br.Discard(int(be.Uint32(h[12:]))); err != nil {
				return
			}
			switch opt {
			case optStructured:
				optReply(opt, repAck, nil)
			case optGo:
				info := be.AppendUint16(be.AppendUint64(be.AppendUint16(nil, infoExport), 1<<20), uint16(FlagHasFlags))
				optReply(opt, repInfo, info)
				optReply(opt, repAck, nil)
				done = true
			default:
				optReply(opt, repErrUnsup, nil)
			}
		}
		for {
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			cmd, length := Command(be.Uint16(h[6:])), be.Uint32(h[24:])
			if cmd == CmdWrite {
				if _, err := br.Discard(int(length)); err != nil {
					return
				}
			}
			if !reply(c, cmd, be.Uint64(h[8:]), be.Uint64(h[16:]), length) {
				return
			}
		}
	}()
	return l.Addr().String()
}

func chunkBytes(flags, typ uint16, handle uint64, payload []byte) []byte {
	b := be.AppendUint32(nil, magicStructured)
	b = be.AppendUint16(be.AppendUint16(b, flags), typ)
	b = be.AppendUint32(be.AppendUint64(b, handle), uint32(len(payload)))
	return append(b, payload...)
}

func TestClientSurvivesABadServer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(w io.Writer, cmd Command, handle, off uint64, length uint32) bool
		want  error
	}{
		{"reply cut short", func(w io.Writer, _ Command, h, off uint64, n uint32) bool {
			b := chunkBytes(replyFlagDone, replyOffsetData, h, be.AppendUint64(nil, off))
			be.PutUint32(b[16:], 8+n) // claims n bytes of data, sends none
			_, _ = w.Write(b)
			return false
		}, ErrClosed},
		{"bad reply magic", func(w io.Writer, _ Command, h, _ uint64, _ uint32) bool {
			_, _ = w.Write(make([]byte, 20))
			return true
		}, ErrProtocol},
		{"data outside the request", func(w io.Writer, _ Command, h, off uint64, _ uint32) bool {
			_, _ = w.Write(chunkBytes(replyFlagDone, replyOffsetData, h, append(be.AppendUint64(nil, off+100000), 1)))
			return true
		}, ErrProtocol},
		{"unknown handle", func(w io.Writer, _ Command, h, _ uint64, _ uint32) bool {
			_, _ = w.Write(chunkBytes(replyFlagDone, replyNone, h+1, nil))
			return true
		}, ErrProtocol},
		{"read not covered", func(w io.Writer, _ Command, h, _ uint64, _ uint32) bool {
			_, _ = w.Write(chunkBytes(replyFlagDone, replyNone, h, nil))
			return true
		}, syscall.EIO},
		{"unknown error chunk", func(w io.Writer, _ Command, h, _ uint64, _ uint32) bool {
			_, _ = w.Write(chunkBytes(replyFlagDone, replyErrBit|77, h, []byte{0, 0, 0, 28, 0, 2, 'n', 'o'}))
			return true
		}, syscall.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := badServer(t, tc.reply)
			c, err := Dial(tctx(t), "tcp", addr, nil)
			require.NoError(t, err)
			defer c.Close()
			errc := make(chan error, 1)
			go func() { errc <- c.Read(context.Background(), make([]byte, 4096), 0) }()
			select {
			case err := <-errc:
				require.ErrorIs(t, err, tc.want)
			case <-time.After(5 * time.Second):
				t.Fatal("the client hung on a bad reply")
			}
			if errors.Is(tc.want, ErrProtocol) {
				require.ErrorIs(t, c.Flush(context.Background()), ErrClosed, "a protocol violation closes the client")
			}
		})
	}
}
