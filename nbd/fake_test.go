package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowbench/shadowbench/cow"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeGrain is the fake backend's allocation unit; small, so unaligned
// tests see partial grains.
const fakeGrain = 512

var (
	errFakeDeleted  = errors.New("fake: export deleted")
	errFakeNotFound = errors.New("fake: no such export")
)

// memBackend is an in-memory Backend and ChangeTracker: bytes plus a kind
// per grain, and a changed bit per grain since the base image.
type memBackend struct {
	ro      bool
	block   int
	desc    string
	deleted atomic.Bool
	flushes atomic.Int64

	// hook, when set, runs at the start of every I/O call with the command
	// and offset; tests block or panic in it.
	hook func(ctx context.Context, cmd Command, off int64)

	mu      sync.Mutex
	data    []byte
	kind    []cow.ExtentKind
	changed []bool
}

var (
	_ Backend       = (*memBackend)(nil)
	_ ChangeTracker = (*memBackend)(nil)
	_ Catalog       = (*memCatalog)(nil)
)

func newMem(size int64) *memBackend {
	g := (size + fakeGrain - 1) / fakeGrain
	k := make([]cow.ExtentKind, g)
	for i := range k {
		k[i] = cow.Hole
	}
	return &memBackend{block: 4096, desc: "fake LUN", data: make([]byte, size), kind: k, changed: make([]bool, g)}
}

func (m *memBackend) Size() int64         { return int64(len(m.data)) }
func (m *memBackend) BlockSize() int      { return m.block }
func (m *memBackend) ReadOnly() bool      { return m.ro }
func (m *memBackend) Description() string { return m.desc }

func (m *memBackend) enter(ctx context.Context, cmd Command, off, n int64) error {
	if m.hook != nil {
		m.hook(ctx, cmd, off)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.deleted.Load() {
		return errFakeDeleted
	}
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return cow.ErrOutOfRange
	}
	return nil
}

func (m *memBackend) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := m.enter(ctx, CmdRead, off, int64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(p, m.data[off:])
	return nil
}

// mark sets the kind of the grains [off, off+n) covers fully; partly
// covered grains become Data on a write and keep their kind on a zeroing.
func (m *memBackend) mark(off, n int64, full cow.ExtentKind, write bool) {
	for g := off / fakeGrain; g*fakeGrain < off+n; g++ {
		lo, hi := g*fakeGrain, min((g+1)*fakeGrain, int64(len(m.data)))
		if lo >= off && hi <= off+n {
			m.kind[g] = full
		} else if write {
			m.kind[g] = cow.Data
		}
		m.changed[g] = true
	}
}

func (m *memBackend) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := m.enter(ctx, CmdWrite, off, int64(len(p))); err != nil {
		return err
	}
	if m.ro {
		return cow.ErrReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.data[off:], p)
	m.mark(off, int64(len(p)), cow.Data, true)
	return nil
}

func (m *memBackend) Flush(ctx context.Context) error {
	if err := m.enter(ctx, CmdFlush, 0, 0); err != nil {
		return err
	}
	m.flushes.Add(1)
	return nil
}

func (m *memBackend) zero(ctx context.Context, cmd Command, off, n int64, full cow.ExtentKind) error {
	if err := m.enter(ctx, cmd, off, n); err != nil {
		return err
	}
	if m.ro {
		return cow.ErrReadOnly
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+n])
	m.mark(off, n, full, false)
	return nil
}

func (m *memBackend) Trim(ctx context.Context, off, n int64) error {
	return m.zero(ctx, CmdTrim, off, n, cow.Hole)
}

func (m *memBackend) WriteZeroes(ctx context.Context, off, n int64, noHole bool) error {
	if noHole {
		return m.zero(ctx, CmdWriteZeroes, off, n, cow.Zero)
	}
	return m.zero(ctx, CmdWriteZeroes, off, n, cow.Hole)
}

func (m *memBackend) Extents(ctx context.Context, off, n int64) ([]cow.Extent, error) {
	if err := m.enter(ctx, CmdBlockStatus, off, n); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []cow.Extent
	for at := off; at < off+n; {
		g := at / fakeGrain
		end := min((g+1)*fakeGrain, off+n)
		if k := len(out); k > 0 && out[k-1].Kind == m.kind[g] {
			out[k-1].Len += end - at
		} else {
			out = append(out, cow.Extent{Off: at, Len: end - at, Kind: m.kind[g]})
		}
		at = end
	}
	return out, nil
}

func (m *memBackend) Changed(ctx context.Context, off, n int64) ([]cow.Range, error) {
	if err := m.enter(ctx, CmdBlockStatus, off, n); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []cow.Range
	for at := off; at < off+n; {
		g := at / fakeGrain
		end := min((g+1)*fakeGrain, off+n)
		if m.changed[g] {
			if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == at {
				out[k-1].Len += end - at
			} else {
				out = append(out, cow.Range{Off: at, Len: end - at})
			}
		}
		at = end
	}
	return out, nil
}

// resetChanged makes the current contents the base image.
func (m *memBackend) resetChanged() {
	m.mu.Lock()
	clear(m.changed)
	m.mu.Unlock()
}

// memCatalog is a Catalog of memBackends that tests add to and delete from
// while the server runs.
type memCatalog struct {
	mu sync.Mutex
	m  map[string]*memBackend
}

func newCatalog(exports map[string]*memBackend) *memCatalog {
	c := &memCatalog{m: map[string]*memBackend{}}
	for k, v := range exports {
		c.m[k] = v
	}
	return c
}

func (c *memCatalog) Lookup(name string) (Backend, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[name]
	if !ok {
		return nil, errFakeNotFound
	}
	return b, nil
}

func (c *memCatalog) List() []ExportInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ExportInfo
	for k, v := range c.m {
		out = append(out, ExportInfo{Name: k, Description: v.desc})
	}
	slices.SortFunc(out, func(a, b ExportInfo) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
	return out
}

func (c *memCatalog) add(name string, b *memBackend) {
	c.mu.Lock()
	c.m[name] = b
	c.mu.Unlock()
}

func (c *memCatalog) remove(name string) {
	c.mu.Lock()
	if b, ok := c.m[name]; ok {
		b.deleted.Store(true)
		delete(c.m, name)
	}
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testServer is a server on an ephemeral port, or a unix socket, stopped
// when the test ends.
type testServer struct {
	*Server
	network, addr string
	served        chan error
}

func serveOn(t testing.TB, network string, cat Catalog, opts Options) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	var addr string
	switch network {
	case "tcp":
		addr = "127.0.0.1:0"
	case "unix":
		dir, err := os.MkdirTemp("", "nbd")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "nbd.sock")
	}
	l, err := net.Listen(network, addr)
	require.NoError(t, err)
	ts := &testServer{Server: NewServer(cat, opts), network: network, addr: l.Addr().String(), served: make(chan error, 1)}
	go func() { ts.served <- ts.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ts.Shutdown(ctx)
		select {
		case <-ts.served:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return ts
}

func (ts *testServer) dial(t testing.TB, opts *DialOptions) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, ts.network, ts.addr, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func allMeta(export string) *DialOptions {
	return &DialOptions{Export: export, MetaContexts: []string{MetaBaseAllocation, MetaChanged}}
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func netListen(t testing.TB, network string) (net.Listener, error) {
	t.Helper()
	if network == "unix" {
		dir, err := os.MkdirTemp("", "nbd")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(dir) })
		return net.Listen("unix", filepath.Join(dir, "nbd.sock"))
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// testTLSPair returns a server configuration with a fresh self-signed
// certificate for 127.0.0.1 and a client configuration that trusts it.
func testTLSPair(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "shadowbench test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}

func testClientTLS(t testing.TB) *tls.Config {
	_, client := testTLSPair(t)
	return client
}
