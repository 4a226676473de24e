package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Server. The zero value serves with the defaults.
type Options struct {
	// MaxInFlight bounds the requests one connection has in flight (read
	// but not yet answered), and so its workers and payload memory.
	// Default DefaultMaxInFlight.
	MaxInFlight int
	// MaxPayload bounds a READ or WRITE length; larger requests answer
	// EINVAL. It is advertised as the maximum block size. Default
	// DefaultMaxPayload; at most 64 MiB.
	MaxPayload int
	// MaxInFlightBytes bounds the payload memory of the whole server: the
	// buffers of READ replies not yet sent and of WRITE payloads not yet
	// written. A request past it waits for memory, it is never failed;
	// since a READ's buffer is held until its reply is sent, a client that
	// stops reading holds its share until it reads again. Default
	// DefaultMaxInFlightBytes(); at least MaxConnInFlightBytes.
	MaxInFlightBytes int64
	// MaxConnInFlightBytes bounds the same memory for one connection, so
	// that one client cannot hold all of it. Default a sixteenth of
	// MaxInFlightBytes; at least MaxPayload.
	MaxConnInFlightBytes int64
	// MaxConnections bounds the connections served at once, so that a
	// flood of them cannot take every descriptor the process has. Past
	// it, a new connection is closed as soon as it is accepted, and
	// counted in Stats. Default DefaultMaxConnections().
	MaxConnections int
	// HandshakeTimeout bounds option haggling. Default 30 s.
	HandshakeTimeout time.Duration
	// RequestTimeout bounds the time a request takes to arrive once it
	// has begun: its header, from its first byte, and a WRITE's payload,
	// from when the server reads it. A client that sends part of one and
	// stalls is disconnected. Between requests a connection may stay idle
	// for ever. Default 30 s.
	RequestTimeout time.Duration
	// IdleRelease is how long a connection with nothing in flight keeps
	// its workers and buffers before it gives them back, to wait on with
	// its socket and one goroutine only. Default 1 s.
	IdleRelease time.Duration
	// ShutdownTimeout bounds the drain of Run's graceful shutdown.
	// Default 10 s.
	ShutdownTimeout time.Duration
	// DefaultExport is the export a client selecting the empty name gets;
	// empty means the empty name is unknown.
	DefaultExport string
	// TLSConfig, when set, lets clients upgrade with NBD_OPT_STARTTLS
	// (SELECTIVETLS mode: TLS is offered, never required). When nil,
	// STARTTLS is refused with NBD_REP_ERR_POLICY.
	TLSConfig *tls.Config
	// TLSRequired, with TLSConfig, is FORCEDTLS mode (proto.md "TLS
	// support"): before STARTTLS every option but ABORT answers
	// NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME ends the session.
	TLSRequired bool
	// ReadOnly serves every export read-only, whatever its own flag.
	ReadOnly bool
	// Logger receives connection errors and handler panics. Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultRequestTimeout is the default of Options.RequestTimeout.
const DefaultRequestTimeout = 30 * time.Second

// MaxPayloadLimit is the largest Options.MaxPayload.
const MaxPayloadLimit = 1 << maxBufShift

func (o Options) withDefaults() Options {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	o.MaxPayload = min(o.MaxPayload, MaxPayloadLimit)
	if o.MaxInFlightBytes <= 0 {
		o.MaxInFlightBytes = DefaultMaxInFlightBytes()
	}
	if o.MaxConnInFlightBytes <= 0 {
		o.MaxConnInFlightBytes = o.MaxInFlightBytes / connInFlightShare
	}
	o.MaxConnInFlightBytes = max(o.MaxConnInFlightBytes, int64(o.MaxPayload))
	o.MaxInFlightBytes = max(o.MaxInFlightBytes, o.MaxConnInFlightBytes)
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections()
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.IdleRelease <= 0 {
		o.IdleRelease = time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Server serves the exports of a Catalog over NBD. Create it with NewServer;
// serve listeners with Serve or Run; stop it with Shutdown or Close.
type Server struct {
	cat  Catalog
	opts Options
	log  *slog.Logger

	// shutting is set once by Shutdown or Close, before mu is taken, so a
	// connection registering itself afterwards sees it (see track).
	shutting atomic.Bool
	// closed is closed with shutting set; it cuts Serve's pauses short.
	closed    chan struct{}
	closeOnce sync.Once
	// acceptLog and refuseLog pace the warnings of failed accepts and of
	// connections refused past MaxConnections.
	acceptLog, refuseLog logLimiter

	// open counts the connections served now: Serve adds one before it
	// serves a connection and refuses the connection when that passes
	// MaxConnections. accepted and refused count since NewServer.
	open     atomic.Int64
	accepted atomic.Uint64
	refused  atomic.Uint64

	// mem is the payload memory of every connection (MaxInFlightBytes);
	// memWaits counts the waits for it and for connections' shares.
	mem      *budget
	memWaits atomic.Uint64
	// protocolErrors counts the connections closed on a protocol
	// violation (N4), in the handshake or in transmission.
	protocolErrors atomic.Uint64

	// mu guards the listeners and connections being served.
	mu struct {
		sync.Mutex
		listeners map[net.Listener]struct{}
		conns     map[*conn]struct{}
	}
	// stats are the request counters, in shards; connection i counts into
	// shard i modulo their number (see connStats). nextShard numbers the
	// connections.
	stats     []connStats
	nextShard atomic.Uint64
	// conns counts connection goroutines; Shutdown waits for it.
	conns sync.WaitGroup
}

// NewServer returns a server of the exports in cat.
func NewServer(cat Catalog, opts Options) *Server {
	s := &Server{cat: cat, opts: opts.withDefaults(), closed: make(chan struct{})}
	s.stats = make([]connStats, 2*runtime.GOMAXPROCS(0))
	s.mem = newBudget(s.opts.MaxInFlightBytes, &s.memWaits)
	s.log = s.opts.Logger
	s.mu.listeners = make(map[net.Listener]struct{})
	s.mu.conns = make(map[*conn]struct{})
	return s
}

// Serve accepts connections on l and serves each on its own goroutines. It
// returns ErrServerClosed after Shutdown or Close, the listener's error once
// l is closed, or ctx.Err() when ctx is done, in which case it closes l and
// every connection it accepted at once. ctx is also the parent of every
// backend call of those connections. Serve returns only after the
// connections it accepted are closed and their goroutines have exited.
//
// An accept error on an open listener never ends Serve: running out of
// descriptors (EMFILE, ENFILE) or any other failure is retried after a
// pause that doubles from 5 ms to 1 s, as net/http's Server does, so the
// connections already served go on and new ones are taken as soon as
// descriptors come back. The failures are logged at most once every
// 10 s, with their count. A connection past MaxConnections is closed at
// once and counted (Stats).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if !s.addListener(l) {
		return ErrServerClosed
	}
	defer s.removeListener(l)
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()

	var mine sync.WaitGroup
	defer mine.Wait()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, minAcceptDelay), maxAcceptDelay)
			if n, ok := s.acceptLog.tick(); ok {
				s.log.Warn("nbd: accept failed; retrying", "addr", l.Addr().String(), "err", err,
					"retry_in", delay, "failures", n)
			}
			s.pause(ctx, delay) // cut short at shutdown: the next Accept says so
			continue
		}
		delay = 0
		if s.open.Add(1) > int64(s.opts.MaxConnections) {
			s.refuse(nc)
			continue
		}
		c := newConn(s, ctx, nc)
		if !s.track(c) {
			s.open.Add(-1)
			_ = nc.Close()
			continue
		}
		s.accepted.Add(1)
		mine.Add(1)
		go func() {
			defer mine.Done()
			defer s.conns.Done()
			defer s.open.Add(-1)
			defer s.untrack(c)
			c.serve()
		}()
	}
}

// The pause after a failed accept doubles from minAcceptDelay to
// maxAcceptDelay, as net/http's Server.Serve does.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// pause waits for d, or until ctx ends or the server closes.
func (s *Server) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.closed:
	}
}

// logEvery paces the warnings a flood of failures logs (failed accepts,
// refused connections): one line per interval, with the count since the
// last.
const logEvery = 10 * time.Second

// logLimiter lets one event in logEvery through and counts the others. A
// log line per failure was rejected: out of descriptors, accept fails once
// a second for as long as the flood lasts, from every listener.
type logLimiter struct {
	mu     sync.Mutex
	last   time.Time
	missed uint64
}

// tick counts an event. It returns true, with the events since the last
// line logged (this one included), when this one is to be logged.
func (l *logLimiter) tick() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.missed++
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		return 0, false
	}
	n := l.missed
	l.last, l.missed = now, 0
	return n, true
}

// refuse closes a connection accepted past MaxConnections and counts it.
// The caller has counted it in open; refuse takes it out again. Closing at
// once, before the greeting, was chosen over a queue of waiting
// connections: each waiting one would hold the descriptor the cap is
// there to keep free.
func (s *Server) refuse(nc net.Conn) {
	s.open.Add(-1)
	s.refused.Add(1)
	_ = nc.Close()
	if n, ok := s.refuseLog.tick(); ok {
		s.log.Warn("nbd: connections refused: too many open", "max_connections", s.opts.MaxConnections,
			"refused", n)
	}
}

// ServerStats are a server's connection counters, for metrics.
type ServerStats struct {
	// Open is the number of connections served now.
	Open int64
	// Accepted counts the connections served since NewServer; Refused
	// those closed at once because MaxConnections were open.
	Accepted, Refused uint64
	// MaxConnections is the cap on Open.
	MaxConnections int
	// InFlightBytes is the payload memory held now, MaxInFlightBytes its
	// cap, and InFlightWaits counts the times a request waited for it or
	// for its connection's share.
	InFlightBytes, MaxInFlightBytes int64
	InFlightWaits                   uint64
	// InFlightRequests are the requests read and not yet answered, over
	// every connection.
	InFlightRequests int64
	// ProtocolErrors counts the connections closed on a protocol
	// violation (N4): bad magic, unknown client flags, an option or a
	// WRITE too large to skip, data sent before the TLS handshake.
	ProtocolErrors uint64
	// Commands are the request counters per command, of every connection
	// served since NewServer.
	Commands []CommandStats
}

// Stats returns the server's counters. Each is read atomically; together
// they are not one snapshot.
func (s *Server) Stats() ServerStats {
	st := ServerStats{Open: s.open.Load(), Accepted: s.accepted.Load(), Refused: s.refused.Load(),
		MaxConnections: s.opts.MaxConnections, InFlightBytes: s.mem.used.Load(),
		MaxInFlightBytes: s.opts.MaxInFlightBytes, InFlightWaits: s.memWaits.Load(),
		ProtocolErrors: s.protocolErrors.Load()}
	var t requestTotals
	for i := range s.stats {
		t.add(&s.stats[i])
		st.InFlightRequests += s.stats[i].inFlight.Load()
	}
	st.Commands = t.list()
	return st
}

// Run serves on every listener until ctx is done or one of them fails, then
// shuts down gracefully, waiting at most Options.ShutdownTimeout for requests
// in flight. It returns nil after a clean shutdown on ctx.
func (s *Server) Run(ctx context.Context, ls ...net.Listener) error {
	errc := make(chan error, len(ls))
	base := context.WithoutCancel(ctx)
	for _, l := range ls {
		go func() { errc <- s.Serve(base, l) }()
	}
	pending := len(ls)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		pending--
	}
	sctx, cancel := context.WithTimeout(base, s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil && first == nil {
		first = err
	}
	for ; pending > 0; pending-- {
		if err := <-errc; first == nil && !errors.Is(err, ErrServerClosed) {
			first = err
		}
	}
	if errors.Is(first, ErrServerClosed) {
		first = nil
	}
	return first
}

// Shutdown stops the server gracefully: it closes the listeners, stops
// reading new requests, lets the requests in flight finish and their replies
// go out, flushes each writable export and closes the connections. If ctx
// ends first, the remaining connections are closed at once and ctx.Err() is
// returned; either way Shutdown returns after every connection goroutine has
// exited.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setShutting()
	s.mu.Lock()
	for l := range s.mu.listeners {
		_ = l.Close()
	}
	for c := range s.mu.conns {
		c.drain()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and connections are closed and
// requests in flight are abandoned. It returns after every connection
// goroutine has exited.
func (s *Server) Close() error {
	s.setShutting()
	s.mu.Lock()
	for l := range s.mu.listeners {
		_ = l.Close()
	}
	s.mu.Unlock()
	s.closeConns()
	s.conns.Wait()
	return nil
}

// setShutting marks the server as stopping, before mu is taken (see track),
// and wakes Serve from a pause.
func (s *Server) setShutting() {
	s.shutting.Store(true)
	s.closeOnce.Do(func() { close(s.closed) })
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.conns {
		c.abort()
	}
}

func (s *Server) addListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.mu.listeners[l] = struct{}{}
	return true
}

func (s *Server) removeListener(l net.Listener) {
	s.mu.Lock()
	delete(s.mu.listeners, l)
	s.mu.Unlock()
}

// track registers c, or refuses it once shutdown has begun. The flag is set
// before Shutdown takes mu, so a connection is either drained by Shutdown or
// refused here.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.mu.conns[c] = struct{}{}
	s.conns.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.mu.conns, c)
	s.mu.Unlock()
}

// Connections returns how many connections are in transmission on b, the
// backend an export's lookup gave, so that a caller can refuse to delete
// what clients have open.
func (s *Server) Connections(b Backend) int { return s.onBackend(b, func(*conn) {}) }

// Disconnect closes every connection in transmission on b at once, as a
// power cut or a pulled cable would: requests in flight fail, nothing more
// is answered. It returns how many it closed.
func (s *Server) Disconnect(b Backend) int { return s.onBackend(b, (*conn).abort) }

// onBackend calls fn on every connection in transmission on b, under the
// server's lock, and returns how many there were.
func (s *Server) onBackend(b Backend, fn func(*conn)) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.mu.conns {
		if v, ok := c.serving.Load().(backendOf); ok && v.b == b {
			fn(c)
			n++
		}
	}
	return n
}
