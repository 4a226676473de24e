package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testSize = 4 << 20

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

func onNetworks(t *testing.T, f func(t *testing.T, network string)) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) { f(t, network) })
	}
}

func TestGoNegotiatesExportInfo(t *testing.T) {
	rw, ro := newMem(testSize), newMem(testSize)
	ro.ro, ro.block, ro.desc = true, 512, "snapshot"
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": rw, "snap": ro}), Options{MaxPayload: 1 << 20})

	c := ts.dial(t, allMeta("lun0"))
	info := c.Info()
	require.Equal(t, "lun0", info.Name)
	require.Equal(t, "fake LUN", info.Description)
	require.Equal(t, int64(testSize), info.Size)
	require.Equal(t, FlagHasFlags|FlagSendFlush|FlagSendFUA|FlagSendTrim|FlagSendWriteZeroes|
		FlagSendDF|FlagCanMultiConn|FlagSendCache|FlagSendFastZero, info.Flags)
	require.Equal(t, [3]uint32{1, 4096, 1 << 20}, [3]uint32{info.MinBlock, info.PreferredBlock, info.MaxBlock})
	require.True(t, c.StructuredReplies())
	require.Equal(t, []string{MetaBaseAllocation, MetaChanged}, c.MetaContexts())

	s := ts.dial(t, &DialOptions{Export: "snap", NoStructuredReplies: true})
	require.Equal(t, FlagHasFlags|FlagReadOnly|FlagSendFlush|FlagCanMultiConn|FlagSendCache, s.Flags(),
		"read-only export: no write-side flags, no DF without structured replies")
	require.Equal(t, uint32(512), s.Info().PreferredBlock)
	require.Equal(t, "snapshot", s.Info().Description)
}

func TestDialUnknownExport(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(nil), Options{})
	_, err := Dial(tctx(t), ts.network, ts.addr, &DialOptions{Export: "nope"})
	require.ErrorIs(t, err, ErrUnknownExport)
}

func TestDefaultExport(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{DefaultExport: "lun0"})
	c := ts.dial(t, nil)
	require.Equal(t, int64(testSize), c.Size())
	require.Equal(t, "lun0", c.Info().Name, "NBD_INFO_NAME carries the canonical name")
}

func TestCommandsRoundTrip(t *testing.T) {
	onNetworks(t, func(t *testing.T, network string) {
		for _, structured := range []bool{true, false} {
			t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
				m := newMem(testSize)
				ts := serveOn(t, network, newCatalog(map[string]*memBackend{"lun0": m}), Options{})
				opts := allMeta("lun0")
				opts.NoStructuredReplies = !structured
				c := ts.dial(t, opts)
				ctx := tctx(t)

				// Unaligned write and read back, with and without FUA.
				p := pattern(10000, 1)
				require.NoError(t, c.Write(ctx, p, 1234, 0))
				require.NoError(t, c.Write(ctx, p[:777], 70001, CmdFlagFUA))
				got := make([]byte, len(p))
				require.NoError(t, c.Read(ctx, got, 1234))
				require.Equal(t, p, got)
				require.NoError(t, c.Read(ctx, got[:777], 70001))
				require.Equal(t, p[:777], got[:777])

				// A read that spans data and holes.
				big := make([]byte, 64<<10)
				require.NoError(t, c.Read(ctx, big, 0))
				require.Equal(t, make([]byte, 1234), big[:1234])
				require.Equal(t, p, big[1234:1234+len(p)])
				require.Equal(t, make([]byte, len(big)-1234-len(p)), big[1234+len(p):])
				if structured {
					clear(big)
					require.NoError(t, c.ReadFlags(ctx, big, 0, CmdFlagDF))
					require.Equal(t, p, big[1234:1234+len(p)])
				}

				require.NoError(t, c.Flush(ctx))
				require.Equal(t, int64(1), m.flushes.Load())
				require.NoError(t, c.Cache(ctx, 0, 1<<20))

				// Trim and both kinds of write zeroes read back as zeros.
				require.NoError(t, c.Trim(ctx, 2000, 3000, 0))
				require.NoError(t, c.WriteZeroes(ctx, 6000, 1000, CmdFlagNoHole))
				require.NoError(t, c.WriteZeroes(ctx, 8000, 1000, CmdFlagFastZero|CmdFlagFUA))
				require.NoError(t, c.Read(ctx, got, 1234))
				want := bytes.Clone(p)
				clear(want[2000-1234 : 5000-1234])
				clear(want[6000-1234 : 7000-1234])
				clear(want[8000-1234 : 9000-1234])
				require.Equal(t, want, got)

				if !structured {
					_, err := c.BlockStatus(ctx, 0, 4096, 0)
					require.ErrorIs(t, err, syscall.EINVAL, "no meta context without structured replies")
				}
				require.NoError(t, c.Disconnect(ctx))
				require.ErrorIs(t, c.Flush(ctx), ErrClosed)
			})
		}
	})
}

func TestStructuredReadSendsHoleChunks(t *testing.T) {
	m := newMem(testSize)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{})
	require.NoError(t, m.WriteAt(context.Background(), pattern(8192, 3), 16384, false))
	require.NoError(t, m.WriteAt(context.Background(), []byte{9}, 40000, false)) // a short data run

	r := rawDial(t, ts)
	r.goExport("lun0", true)
	r.request(0, CmdRead, 7, 0, 64<<10, nil)
	type seen struct {
		typ     uint16
		off, n  uint64
		payload []byte
	}
	var chunks []seen
	for {
		ch := r.chunk()
		require.Equal(t, uint64(7), ch.handle)
		s := seen{typ: ch.typ, off: be.Uint64(ch.payload)}
		switch ch.typ {
		case replyOffsetHole:
			s.n = uint64(be.Uint32(ch.payload[8:]))
		case replyOffsetData:
			s.n, s.payload = uint64(len(ch.payload)-8), ch.payload[8:]
		default:
			t.Fatalf("unexpected chunk type %d", ch.typ)
		}
		chunks = append(chunks, s)
		if ch.flags&replyFlagDone != 0 {
			break
		}
	}
	require.Len(t, chunks, 5)
	require.Equal(t, seen{typ: replyOffsetHole, off: 0, n: 16384}, chunks[0])
	require.Equal(t, uint64(16384), chunks[1].off)
	require.Equal(t, pattern(8192, 3), chunks[1].payload)
	require.Equal(t, seen{typ: replyOffsetHole, off: 24576, n: 39936 - 24576}, chunks[2])
	require.Equal(t, replyOffsetData, chunks[3].typ, "a short zero run travels as data")
	require.Equal(t, uint64(39936), chunks[3].off)
	require.Equal(t, uint64(512), chunks[3].n)
	require.Equal(t, seen{typ: replyOffsetHole, off: 40448, n: 64<<10 - 40448}, chunks[4])

	// DF: one content chunk with the zeros explicit.
	r.request(CmdFlagDF, CmdRead, 8, 0, 64<<10, nil)
	ch := r.chunk()
	require.Equal(t, replyOffsetData, ch.typ)
	require.Equal(t, replyFlagDone, ch.flags)
	require.Len(t, ch.payload, 8+64<<10)
	require.Equal(t, make([]byte, 16384), ch.payload[8:8+16384])

	// A read entirely in a hole is one hole chunk; a zero-length read is NONE.
	r.request(0, CmdRead, 9, 1<<20, 100, nil)
	ch = r.chunk()
	require.Equal(t, replyOffsetHole, ch.typ)
	require.Equal(t, uint32(100), be.Uint32(ch.payload[8:]))
	r.request(0, CmdRead, 10, 0, 0, nil)
	ch = r.chunk()
	require.Equal(t, rawChunk{flags: replyFlagDone, typ: replyNone, handle: 10, payload: []byte{}}, ch)
}

func TestBlockStatus(t *testing.T) {
	m := newMem(testSize)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{})
	ctx := tctx(t)
	require.NoError(t, m.WriteAt(ctx, pattern(4096, 1), 0, false))
	m.resetChanged() // the base image holds [0, 4096)
	c := ts.dial(t, allMeta("lun0"))
	require.NoError(t, c.Write(ctx, pattern(4096, 2), 8192, 0))
	require.NoError(t, c.WriteZeroes(ctx, 16384, 4096, CmdFlagNoHole))

	st, err := c.BlockStatus(ctx, 0, 32768, 0)
	require.NoError(t, err)
	require.Equal(t, []ContextStatus{
		{Context: MetaBaseAllocation, Descriptors: []BlockDescriptor{
			{4096, 0}, {4096, StateHole | StateZero}, {4096, 0}, {4096, StateHole | StateZero},
			{4096, StateZero}, {12288, StateHole | StateZero},
		}},
		{Context: MetaChanged, Descriptors: []BlockDescriptor{
			{8192, 0}, {4096, StateChanged}, {4096, 0}, {4096, StateChanged}, {12288, 0},
		}},
	}, st)

	st, err = c.BlockStatus(ctx, 100, 32768, CmdFlagReqOne)
	require.NoError(t, err)
	require.Equal(t, []BlockDescriptor{{3996, 0}}, st[0].Descriptors)
	require.Equal(t, []BlockDescriptor{{8092, 0}}, st[1].Descriptors)

	// Unaligned tail of the export.
	st, err = c.BlockStatus(ctx, testSize-10, 10, 0)
	require.NoError(t, err)
	require.Equal(t, []BlockDescriptor{{10, StateHole | StateZero}}, st[0].Descriptors)

	_, err = c.BlockStatus(ctx, testSize-10, 11, 0)
	require.ErrorIs(t, err, syscall.EINVAL)
	_, err = c.BlockStatus(ctx, 0, 0, 0)
	require.ErrorIs(t, err, syscall.EINVAL)

	// Only base:allocation selected.
	c2 := ts.dial(t, &DialOptions{Export: "lun0", MetaContexts: []string{MetaBaseAllocation}})
	st, err = c2.BlockStatus(ctx, 0, 4096, 0)
	require.NoError(t, err)
	require.Equal(t, []ContextStatus{{Context: MetaBaseAllocation, Descriptors: []BlockDescriptor{{4096, 0}}}}, st)
}

func TestReadOnlyExportAnswersEPERM(t *testing.T) {
	ro := newMem(testSize)
	ro.ro = true
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"snap": ro}), Options{})
	c := ts.dial(t, &DialOptions{Export: "snap"})
	ctx := tctx(t)
	require.True(t, c.Flags()&FlagReadOnly != 0)
	require.ErrorIs(t, c.Write(ctx, []byte("x"), 0, 0), syscall.EPERM)
	require.ErrorIs(t, c.Trim(ctx, 0, 4096, 0), syscall.EPERM)
	require.ErrorIs(t, c.WriteZeroes(ctx, 0, 4096, 0), syscall.EPERM)
	require.NoError(t, c.Read(ctx, make([]byte, 4096), 0))
	require.NoError(t, c.Flush(ctx))
}

func TestServerReadOnlyServesEveryExportReadOnly(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{ReadOnly: true})
	c := ts.dial(t, &DialOptions{Export: "lun0"})
	ctx := tctx(t)
	require.True(t, c.Flags()&FlagReadOnly != 0)
	require.True(t, c.Flags()&FlagSendFUA == 0)
	require.ErrorIs(t, c.Write(ctx, []byte("x"), 0, 0), syscall.EPERM)
	require.ErrorIs(t, c.WriteZeroes(ctx, 0, 4096, 0), syscall.EPERM)
	require.NoError(t, c.Read(ctx, make([]byte, 4096), 0))
}

func TestOutOfRange(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	c := ts.dial(t, allMeta("lun0"))
	ctx := tctx(t)
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"read past end", c.Read(ctx, buf, testSize-100), syscall.EINVAL},
		{"read at end", c.Read(ctx, buf[:1], testSize), syscall.EINVAL},
		{"read offset overflow", c.Read(ctx, buf, 1<<63-10), syscall.EINVAL},
		{"write past end", c.Write(ctx, buf, testSize-100, 0), syscall.ENOSPC},
		{"write zeroes past end", c.WriteZeroes(ctx, testSize, 1, 0), syscall.ENOSPC},
		{"trim past end", c.Trim(ctx, testSize-1, 2, 0), syscall.EINVAL},
		{"cache past end", c.Cache(ctx, testSize, 1), syscall.EINVAL},
		{"negative offset", c.Read(ctx, buf, -1), syscall.EINVAL},
	} {
		require.ErrorIs(t, tc.err, tc.want, tc.name)
	}
	require.NoError(t, c.Read(ctx, buf, testSize-4096), "the connection stays usable")
	require.NoError(t, c.Write(ctx, buf[:0], testSize, 0), "a zero-length write at the end is in range")
}

func TestOversizeRequestKeepsStreamInStep(t *testing.T) {
	onNetworks(t, func(t *testing.T, network string) {
		m := newMem(testSize)
		ts := serveOn(t, network, newCatalog(map[string]*memBackend{"lun0": m}), Options{MaxPayload: 64 << 10})
		for i, structured := range []bool{true, false} {
			c := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: !structured})
			ctx := tctx(t)
			off := int64(i) << 20
			big := pattern(64<<10+1, 5)
			require.ErrorIs(t, c.Write(ctx, big, off, 0), syscall.EINVAL)
			require.ErrorIs(t, c.Read(ctx, big, off), syscall.EINVAL)
			require.Equal(t, make([]byte, len(big)), m.data[off:off+int64(len(big))], "nothing of the oversize write landed")
			p := pattern(64<<10, 6)
			require.NoError(t, c.Write(ctx, p, off, 0))
			got := make([]byte, len(p))
			require.NoError(t, c.Read(ctx, got, off))
			require.Equal(t, p, got)
		}
	})
}

func TestUnknownCommandAndFlags(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	ctx := tctx(t)
	for _, structured := range []bool{true, false} {
		c := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: !structured})
		require.ErrorIs(t, c.exec(ctx, Command(42), 0, 0, 0, nil, nil, nil), syscall.EINVAL)
		require.ErrorIs(t, c.exec(ctx, CmdRead, CmdFlagReqOne, 0, 10, make([]byte, 10), nil, nil), syscall.EINVAL)
		require.ErrorIs(t, c.exec(ctx, CmdWrite, CmdFlagNoHole, 0, 3, nil, []byte("abc"), nil), syscall.EINVAL)
		require.ErrorIs(t, c.exec(ctx, CmdFlush, 0, 0, 5, nil, nil, nil), syscall.EINVAL)
		require.ErrorIs(t, c.exec(ctx, CmdTrim, 1<<15, 0, 5, nil, nil, nil), syscall.EINVAL)
		err := c.ReadFlags(ctx, make([]byte, 10), 0, CmdFlagDF)
		if structured {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, syscall.EINVAL, "DF needs structured replies")
		}
		require.NoError(t, c.Write(ctx, []byte("ok"), 0, 0), "the stream stays in step")
	}
}

func TestStructuredErrorCarriesMessage(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	c := ts.dial(t, &DialOptions{Export: "lun0"})
	err := c.Read(tctx(t), make([]byte, 10), testSize)
	var re *ReplyError
	require.ErrorAs(t, err, &re)
	require.Equal(t, EINVAL, re.Errno)
	require.Contains(t, re.Message, "beyond the end")
}

// holdAt makes m hold the one cmd at off in the backend: entered is closed
// when it arrives, and it runs on once release is closed.
func holdAt(m *memBackend, cmd Command, off int64) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	m.hook = func(_ context.Context, c Command, o int64) {
		if c == cmd && o == off {
			close(entered)
			<-release
		}
	}
	return entered, release
}

// releaseHeld checks that the request holdAt holds has not returned (done
// carries its result), then releases it and requires it to succeed.
func releaseHeld(t *testing.T, done <-chan error, release chan struct{}, what string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s returned early: %v", what, err)
	default:
	}
	close(release)
	require.NoError(t, <-done)
}

func TestRepliesGoOutOfOrder(t *testing.T) {
	m := newMem(testSize)
	entered, release := holdAt(m, CmdRead, 0)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{MaxInFlight: 4})
	c := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: true})
	ctx := tctx(t)

	slow := make(chan error, 1)
	go func() { slow <- c.Read(ctx, make([]byte, 512), 0) }()
	// The first request arrives alone, so the worker that read it runs it
	// holding the reading turn; the turn must be passed on while it waits.
	<-entered
	// Later requests on the same connection complete while the first waits.
	for i := range 20 {
		require.NoError(t, c.Write(ctx, pattern(512, byte(i)), 4096, 0))
		require.NoError(t, c.Read(ctx, make([]byte, 512), 4096))
	}
	releaseHeld(t, slow, release, "the blocked read")
}

// TestLargeWritesRunWhereRead covers WRITEs of keepWriteLen and more, which
// the worker that read them runs itself: one held in the backend must not
// stop the connection reading, and concurrent ones must all land.
func TestLargeWritesRunWhereRead(t *testing.T) {
	m := newMem(testSize)
	entered, release := holdAt(m, CmdWrite, 0)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{MaxInFlight: 4})
	c := ts.dial(t, &DialOptions{Export: "lun0", MaxInFlight: 8})
	ctx := tctx(t)

	held := make(chan error, 1)
	first := pattern(keepWriteLen, 1)
	go func() { held <- c.Write(ctx, first, 0, 0) }()
	<-entered
	// While the first large write is held, others are read and run.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Go(func() {
			off := int64(i+1) * (testSize / 4)
			p := pattern(keepWriteLen+4096*i, byte(i+2))
			if err := c.Write(ctx, p, off, 0); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(p))
			if err := c.Read(ctx, got, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(p, got) {
				errs <- fmt.Errorf("write %d: read back differs", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	releaseHeld(t, held, release, "the held write")
	got := make([]byte, len(first))
	require.NoError(t, c.Read(ctx, got, 0))
	require.Equal(t, first, got)
}

func TestConcurrentClientsAndRequests(t *testing.T) {
	m := newMem(testSize)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{MaxInFlight: 8})
	ctx := tctx(t)
	const conns, workers, ops = 3, 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, conns*workers)
	for ci := range conns {
		c := ts.dial(t, &DialOptions{Export: "lun0", MaxInFlight: 16})
		for wi := range workers {
			wg.Go(func() {
				region := int64(ci*workers+wi) * (testSize / (conns * workers))
				rng := rand.New(rand.NewPCG(uint64(ci), uint64(wi)))
				for i := range ops {
					n := 1 + rng.IntN(16<<10)
					off := region + rng.Int64N(testSize/(conns*workers)-int64(n))
					p := pattern(n, byte(i))
					if err := c.Write(ctx, p, off, 0); err != nil {
						errs <- err
						return
					}
					got := make([]byte, n)
					if err := c.Read(ctx, got, off); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(p, got) {
						errs <- fmt.Errorf("conn %d worker %d op %d: read back differs", ci, wi, i)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestBadMagicClosesOnlyThatConnection(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	good := ts.dial(t, &DialOptions{Export: "lun0"})
	ctx := tctx(t)

	r := rawDial(t, ts)
	r.goExport("lun0", true)
	r.write(bytes.Repeat([]byte{0xde, 0xad}, 14))
	r.closed()

	// A header cut short, then the client hangs up.
	r2 := rawDial(t, ts)
	r2.goExport("lun0", false)
	r2.write(be.AppendUint32(nil, magicRequest))
	require.NoError(t, r2.c.(interface{ CloseWrite() error }).CloseWrite())
	r2.closed()

	// Bad magic during the handshake.
	r3 := rawDial(t, ts)
	r3.write(bytes.Repeat([]byte{1}, 16))
	r3.closed()

	require.NoError(t, good.Write(ctx, []byte("still here"), 0, 0))
	require.NoError(t, good.Read(ctx, make([]byte, 10), 0))
}

func TestHandlerPanicAnswersEIO(t *testing.T) {
	m := newMem(testSize)
	m.hook = func(_ context.Context, cmd Command, off int64) {
		if off == 13*4096 {
			panic("injected handler panic")
		}
	}
	var logs syncBuffer
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{Logger: slogTo(&logs)})
	ctx := tctx(t)
	for _, structured := range []bool{true, false} {
		c := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: !structured})
		require.ErrorIs(t, c.Write(ctx, []byte("boom"), 13*4096, 0), syscall.EIO)
		require.ErrorIs(t, c.Read(ctx, make([]byte, 4096), 13*4096), syscall.EIO)
		require.NoError(t, c.Write(ctx, []byte("fine"), 0, 0), "the connection survives")
	}
	require.Contains(t, logs.String(), "injected handler panic")
	require.Contains(t, logs.String(), "panicked")
}

func TestExportsComeFromTheCatalogAtConnectionTime(t *testing.T) {
	cat := newCatalog(map[string]*memBackend{"lun0": newMem(testSize)})
	ts := serveOn(t, "tcp", cat, Options{})
	ctx := tctx(t)

	cat.add("late", newMem(1<<20))
	list, err := List(ctx, ts.network, ts.addr, nil)
	require.NoError(t, err)
	require.Equal(t, []ExportInfo{{"late", "fake LUN"}, {"lun0", "fake LUN"}}, list)
	late := ts.dial(t, &DialOptions{Export: "late"})
	require.Equal(t, int64(1<<20), late.Size())
	require.NoError(t, late.Write(ctx, []byte("hello"), 0, 0))

	cat.remove("late")
	list, err = List(ctx, ts.network, ts.addr, nil)
	require.NoError(t, err)
	require.Equal(t, []ExportInfo{{"lun0", "fake LUN"}}, list)
	_, err = Dial(ctx, ts.network, ts.addr, &DialOptions{Export: "late"})
	require.ErrorIs(t, err, ErrUnknownExport)

	// The open connection gets errors, not a crash, and can still leave.
	require.ErrorIs(t, late.Write(ctx, []byte("x"), 0, 0), syscall.EIO)
	require.ErrorIs(t, late.Read(ctx, make([]byte, 5), 0), syscall.EIO)
	require.NoError(t, late.Disconnect(ctx))
}

func TestGracefulShutdownDrains(t *testing.T) {
	m := newMem(testSize)
	entered, release := holdAt(m, CmdWrite, 4096)
	l, err := netListen(t, "tcp")
	require.NoError(t, err)
	s := NewServer(newCatalog(map[string]*memBackend{"lun0": m}), Options{Logger: discardLogger()})
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	ctx := tctx(t)
	c, err := Dial(ctx, "tcp", l.Addr().String(), &DialOptions{Export: "lun0"})
	require.NoError(t, err)
	defer c.Close()

	written := make(chan error, 1)
	go func() { written <- c.Write(ctx, pattern(4096, 1), 4096, 0) }()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	require.Eventually(t, func() bool {
		_, err := Dial(ctx, "tcp", l.Addr().String(), &DialOptions{Export: "lun0"})
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "listener closes")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned before the write finished: %v", err)
	default:
	}
	close(release)
	require.NoError(t, <-written, "the request in flight is answered")
	require.NoError(t, <-shut)
	require.ErrorIs(t, <-served, ErrServerClosed)
	require.Equal(t, int64(1), m.flushes.Load(), "the export is flushed at close")
	require.Equal(t, pattern(4096, 1), m.data[4096:8192])
	require.ErrorIs(t, c.Flush(ctx), ErrClosed)
}

func TestShutdownDeadlineClosesStuckConnections(t *testing.T) {
	m := newMem(testSize)
	entered := make(chan struct{})
	var once sync.Once
	m.hook = func(ctx context.Context, cmd Command, off int64) {
		if cmd == CmdFlush {
			once.Do(func() { close(entered) })
			<-ctx.Done() // a backend that stops only when cancelled
		}
	}
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{})
	c := ts.dial(t, &DialOptions{Export: "lun0"})
	done := make(chan error, 1)
	go func() { done <- c.Flush(context.Background()) }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, ts.Shutdown(ctx), context.DeadlineExceeded)
	require.Error(t, <-done)
}

func TestCancelledRequestFreesItsSlot(t *testing.T) {
	m := newMem(testSize)
	release := make(chan struct{})
	m.hook = func(_ context.Context, cmd Command, off int64) {
		if off == 8192 {
			<-release
		}
	}
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{})
	c := ts.dial(t, &DialOptions{Export: "lun0", MaxInFlight: 2})
	ctx, cancel := context.WithCancel(tctx(t))
	buf := make([]byte, 4096)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	require.ErrorIs(t, c.Read(ctx, buf, 8192), context.Canceled)
	close(release)
	// Both slots work again: the abandoned reply was read and dropped.
	for range 10 {
		require.NoError(t, c.Read(tctx(t), buf, 0))
	}
	require.NoError(t, c.Disconnect(tctx(t)))
}

func TestStartTLSRefusedWithoutConfig(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	_, err := Dial(tctx(t), ts.network, ts.addr, &DialOptions{Export: "lun0", TLSConfig: testClientTLS(t)})
	require.ErrorIs(t, err, ErrUnsupported)
	var oe *OptionError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, repErrPolicy, oe.Reply)
}

func TestTLS(t *testing.T) {
	srv, cli := testTLSPair(t)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{TLSConfig: srv})
	c := ts.dial(t, &DialOptions{Export: "lun0", TLSConfig: cli, MetaContexts: []string{MetaBaseAllocation}})
	ctx := tctx(t)
	p := pattern(100000, 9)
	require.NoError(t, c.Write(ctx, p, 777, 0))
	got := make([]byte, len(p))
	require.NoError(t, c.Read(ctx, got, 777))
	require.Equal(t, p, got)
	list, err := List(ctx, ts.network, ts.addr, &DialOptions{TLSConfig: cli})
	require.NoError(t, err)
	require.Len(t, list, 1)
	// Plain clients are still served (TLS is offered, not required).
	plain := ts.dial(t, &DialOptions{Export: "lun0"})
	require.NoError(t, plain.Read(ctx, got[:10], 777))
	require.Equal(t, p[:10], got[:10])
}

func TestTLSRequired(t *testing.T) {
	srv, cli := testTLSPair(t)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{TLSConfig: srv, TLSRequired: true})
	ctx := tctx(t)
	// A plain client is refused with TLS_REQD, and told why.
	_, err := Dial(ctx, ts.network, ts.addr, &DialOptions{Export: "lun0"})
	var oe *OptionError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, repErrTLSReqd, oe.Reply)
	r := rawDial(t, ts)
	r.option(optList, nil)
	typ, _ := r.reply(optList)
	require.Equal(t, repErrTLSReqd, typ)
	// A TLS client is served.
	c := ts.dial(t, &DialOptions{Export: "lun0", TLSConfig: cli})
	p := pattern(4096, 3)
	require.NoError(t, c.Write(ctx, p, 0, 0))
	got := make([]byte, len(p))
	require.NoError(t, c.Read(ctx, got, 0))
	require.Equal(t, p, got)
}

func TestHandshakeOptions(t *testing.T) {
	m := newMem(testSize)
	m.desc = "the description"
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m, "lun1": newMem(1 << 20)}), Options{})
	r := rawDial(t, ts)

	// LIST: one reply per export, then ACK; data is refused.
	r.option(optList, nil)
	var names []string
	for {
		typ, data := r.reply(optList)
		if typ == repAck {
			break
		}
		require.Equal(t, repServer, typ)
		n := be.Uint32(data)
		names = append(names, string(data[4:4+n]))
	}
	require.Equal(t, []string{"lun0", "lun1"}, names)
	r.option(optList, []byte{1})
	typ, _ := r.reply(optList)
	require.Equal(t, repErrInvalid, typ)

	// Unknown options and STARTTLS are refused and negotiation goes on.
	r.option(99, []byte("whatever"))
	typ, _ = r.reply(99)
	require.Equal(t, repErrUnsup, typ)
	r.option(optStartTLS, nil)
	typ, _ = r.reply(optStartTLS)
	require.Equal(t, repErrPolicy, typ)
	r.option(optExtendedHeader, nil)
	typ, _ = r.reply(optExtendedHeader)
	require.Equal(t, repErrUnsup, typ)

	// An option over the cap is skipped with TOO_BIG.
	r.option(optInfo, make([]byte, MaxOptionLen+1))
	typ, _ = r.reply(optInfo)
	require.Equal(t, repErrTooBig, typ)

	// SET_META_CONTEXT needs structured replies first.
	q := be.AppendUint32(appendString32(nil, "lun0"), 1)
	q = appendString32(q, MetaBaseAllocation)
	r.option(optSetMetaCtx, q)
	typ, _ = r.reply(optSetMetaCtx)
	require.Equal(t, repErrInvalid, typ)

	// LIST_META_CONTEXT without queries lists every context with ID 0.
	r.option(optListMetaCtx, be.AppendUint32(appendString32(nil, "lun0"), 0))
	var ctxs []string
	for {
		typ, data := r.reply(optListMetaCtx)
		if typ == repAck {
			break
		}
		require.Equal(t, repMetaContext, typ)
		require.Equal(t, uint32(0), be.Uint32(data))
		ctxs = append(ctxs, string(data[4:]))
	}
	require.Equal(t, []string{MetaBaseAllocation, MetaChanged}, ctxs)

	// A name over 4096 bytes and a malformed INFO are refused.
	r.option(optInfo, be.AppendUint16(appendString32(nil, string(make([]byte, MaxStringLen+1))), 0))
	typ, _ = r.reply(optInfo)
	require.Equal(t, repErrTooBig, typ)
	r.option(optInfo, be.AppendUint16(appendString32(nil, "lun0"), 5))
	typ, _ = r.reply(optInfo)
	require.Equal(t, repErrInvalid, typ)
	r.option(optInfo, be.AppendUint16(appendString32(nil, "nope"), 0))
	typ, _ = r.reply(optInfo)
	require.Equal(t, repErrUnknown, typ)

	// INFO honours the requested info types, once each.
	q = appendString32(nil, "lun0")
	q = be.AppendUint16(q, 4)
	for _, it := range []uint16{infoDescription, infoName, infoDescription, 77} {
		q = be.AppendUint16(q, it)
	}
	r.option(optInfo, q)
	var infos []uint16
	for {
		typ, data := r.reply(optInfo)
		if typ == repAck {
			break
		}
		require.Equal(t, repInfo, typ)
		it := be.Uint16(data)
		infos = append(infos, it)
		switch it {
		case infoExport:
			require.Equal(t, uint64(testSize), be.Uint64(data[2:]))
		case infoName:
			require.Equal(t, "lun0", string(data[2:]))
		case infoDescription:
			require.Equal(t, "the description", string(data[2:]))
		}
	}
	require.Equal(t, []uint16{infoExport, infoDescription, infoName}, infos)

	// ABORT is acknowledged and the server closes.
	r.option(optAbort, nil)
	typ, _ = r.reply(optAbort)
	require.Equal(t, repAck, typ)
	r.closed()
}

func TestExportNameOption(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{})
	r := rawDial(t, ts)
	r.option(optExportName, []byte("lun0"))
	var b [10]byte
	_, err := io.ReadFull(r.br, b[:])
	require.NoError(t, err)
	require.Equal(t, uint64(testSize), be.Uint64(b[:]))
	require.Equal(t, uint16(FlagHasFlags|FlagSendFlush|FlagSendFUA|FlagSendTrim|FlagSendWriteZeroes|
		FlagCanMultiConn|FlagSendCache|FlagSendFastZero), be.Uint16(b[8:]))
	r.request(0, CmdWrite, 1, 0, 3, []byte("abc"))
	errno, handle := r.simple()
	require.Equal(t, Errno(0), errno)
	require.Equal(t, uint64(1), handle)

	// An unknown name cannot be answered, so the server closes.
	r2 := rawDial(t, ts)
	r2.option(optExportName, []byte("nope"))
	r2.closed()
}

func TestErrnoOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Errno
	}{
		{syscall.EIO, EIO},
		{fmt.Errorf("wrapped: %w", syscall.ENOSPC), ENOSPC},
		{syscall.EDQUOT, ENOSPC},
		{syscall.EROFS, EPERM},
		{syscall.ENOENT, EIO},
		{syscall.ESHUTDOWN, ESHUTDOWN},
		{syscall.ENOTSUP, ENOTSUP},
		{EOVERFLOW, EOVERFLOW},
		{Errno(1000), EIO},
		{errors.New("anything"), EIO},
		{context.Canceled, ESHUTDOWN},
	} {
		require.Equal(t, tc.want, errnoOf(tc.err), "%v", tc.err)
	}
	require.ErrorIs(t, EINVAL, syscall.EINVAL)
	require.NotErrorIs(t, EINVAL, syscall.EIO)
	require.Equal(t, "nbd: ENOSPC", ENOSPC.Error())
}

func TestTransmissionFlagsString(t *testing.T) {
	require.Equal(t, "HAS_FLAGS|READ_ONLY|CAN_MULTI_CONN", (FlagHasFlags | FlagReadOnly | FlagCanMultiConn).String())
	require.Equal(t, "WRITE_ZEROES", CmdWriteZeroes.String())
	require.Equal(t, "CMD(42)", Command(42).String())
}

func TestRunServesEveryListenerUntilCancelled(t *testing.T) {
	lt, err := netListen(t, "tcp")
	require.NoError(t, err)
	lu, err := netListen(t, "unix")
	require.NoError(t, err)
	s := NewServer(newCatalog(map[string]*memBackend{"lun0": newMem(testSize)}), Options{Logger: discardLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx, lt, lu) }()
	for _, l := range []struct{ network, addr string }{{"tcp", lt.Addr().String()}, {"unix", lu.Addr().String()}} {
		var c *Client
		require.Eventually(t, func() bool {
			c, err = Dial(tctx(t), l.network, l.addr, &DialOptions{Export: "lun0"})
			return err == nil
		}, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, c.Write(tctx(t), []byte("x"), 0, 0))
		defer c.Close()
	}
	cancel()
	require.NoError(t, <-ran)

	// A listener that fails stops the others.
	lt, err = netListen(t, "tcp")
	require.NoError(t, err)
	lu, err = netListen(t, "unix")
	require.NoError(t, err)
	s = NewServer(newCatalog(nil), Options{Logger: discardLogger()})
	go func() { ran <- s.Run(context.Background(), lt, lu) }()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, lt.Close())
	require.ErrorIs(t, <-ran, net.ErrClosed)
}

func TestHandshakeTimeoutClosesIdleClients(t *testing.T) {
	ts := serveOn(t, "tcp", newCatalog(nil), Options{HandshakeTimeout: 100 * time.Millisecond})
	r := rawDial(t, ts)
	start := time.Now()
	r.closed()
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestClientDisconnectWaitsForRequestsInFlight(t *testing.T) {
	m := newMem(testSize)
	entered, release := holdAt(m, CmdRead, 4096)
	ts := serveOn(t, "tcp", newCatalog(map[string]*memBackend{"lun0": m}), Options{})
	c := ts.dial(t, &DialOptions{Export: "lun0", NoStructuredReplies: true})
	read := make(chan error, 1)
	go func() { read <- c.Read(context.Background(), make([]byte, 512), 4096) }()
	<-entered
	disc := make(chan error, 1)
	go func() { disc <- c.Disconnect(context.Background()) }()
	select {
	case err := <-disc:
		t.Fatalf("Disconnect returned with a request in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-read)
	require.NoError(t, <-disc)
	require.ErrorIs(t, c.Read(context.Background(), make([]byte, 1), 0), ErrClosed)
}
