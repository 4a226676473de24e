package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Abusive API clients, as the issue measured them: requests that send a
// header and never their body, and keep-alive connections left idle.
const (
	noBodyConns = 300
	idleConns   = 2000
)

// needFiles skips a test that needs n descriptors more than the process
// may open.
func needFiles(t *testing.T, n uint64) {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur < n+256 {
		t.Skipf("needs %d open files, RLIMIT_NOFILE is %d", n+256, lim.Cur)
	}
}

// withoutBody opens a connection to d's TCP API that sends a request
// header announcing a body, and no body.
func withoutBody(t *testing.T, d *Daemon) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", d.apiLs[0].Addr().String())
	require.NoError(t, err)
	_, err = io.WriteString(c, "POST /v1/luns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+d.token+
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	require.NoError(t, err)
	return c
}

// idle opens a keep-alive connection to d's TCP API, makes one request on
// it and leaves it idle. It returns the connection with its reader.
func idle(t *testing.T, d *Daemon) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", d.apiLs[0].Addr().String())
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET /v1/luns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+d.token+"\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return c, br
}

// closedBy waits, until deadline, for the server to close c, reading
// whatever it answers first; it returns the status of that answer (0 for
// none).
func closedBy(t *testing.T, c net.Conn, br *bufio.Reader, deadline time.Time) int {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(deadline))
	status := 0
	if resp, err := http.ReadResponse(br, nil); err == nil {
		status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	_, err := br.ReadByte()
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server left the connection open")
	require.Error(t, err, "the server closed the connection")
	require.NoError(t, c.Close())
	return status
}

// TestAPITimeouts checks D8: requests that send a header and no body are answered
// 408 and closed after the read timeout, and idle keep-alive connections
// are closed after the idle timeout. Both used to stay open for good.
func TestAPITimeouts(t *testing.T) {
	needFiles(t, 2*(noBodyConns+idleConns))
	cfg := testConfig()
	cfg.API.ReadTimeout, cfg.API.IdleTimeout = 200*time.Millisecond, 200*time.Millisecond
	cfg.API.MaxConnections = noBodyConns + idleConns + 10
	d, c := start(t, cfg)

	t0 := time.Now()
	var slow []net.Conn
	for range noBodyConns {
		slow = append(slow, withoutBody(t, d))
	}
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	var idles []conn
	for range idleConns {
		c, br := idle(t, d)
		idles = append(idles, conn{c, br})
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, s := range slow {
		require.Equal(t, http.StatusRequestTimeout, closedBy(t, s, bufio.NewReader(s), deadline))
	}
	for _, i := range idles {
		require.Zero(t, closedBy(t, i.c, i.br, deadline))
	}
	t.Logf("%d requests without a body and %d idle connections closed in %v", noBodyConns, idleConns, time.Since(t0))

	_, err := c.Status(context.Background())
	require.NoError(t, err, "the API still answers")
}

// TestAPIShutdownCutsSlowClients checks D8: requests waiting for their body and idle
// connections do not hold shutdown: it used to wait its whole timeout for
// them.
func TestAPIShutdownCutsSlowClients(t *testing.T) {
	needFiles(t, 2*(noBodyConns+idleConns))
	cfg := testConfig()
	cfg.NBD.ShutdownTimeout = 10 * time.Second
	cfg.API.MaxConnections = noBodyConns + idleConns + 10
	d, err := New(context.Background(), cfg, Options{Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var conns []net.Conn
	for range noBodyConns {
		conns = append(conns, withoutBody(t, d))
	}
	for range idleConns {
		c, _ := idle(t, d)
		conns = append(conns, c)
	}
	require.Eventually(t, func() bool { return d.apiLs[0].(*capListener).open.Load() == noBodyConns+idleConns },
		5*time.Second, time.Millisecond, "every connection is accepted")

	t0 := time.Now()
	cancel()
	require.NoError(t, <-done)
	took := time.Since(t0)
	t.Logf("shutdown took %v with %d requests without a body and %d idle connections", took, noBodyConns, idleConns)
	require.Less(t, took, 2*time.Second, "shutdown does not wait for slow clients")
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
}

// TestAPIConnectionCap checks D8: past api.max-connections a TCP connection is
// answered 503 at once and counted, and the unix socket, which has a cap
// of its own, still answers.
func TestAPIConnectionCap(t *testing.T) {
	cfg := testConfig()
	cfg.API.MaxConnections = 20
	cfg.API.Socket = filepath.Join(t.TempDir(), "api.sock")
	d, _ := start(t, cfg)
	addr := d.apiLs[0].Addr().String()
	var held []net.Conn
	for range 20 {
		c, _ := idle(t, d)
		held = append(held, c)
	}
	for range 5 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil) // answered before it asks
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.True(t, resp.Close, "Connection: close")
		require.NoError(t, c.Close())
	}
	sock, err := NewClient(d.APIURLs()[1])
	require.NoError(t, err)
	defer sock.Close()
	text, err := sock.Metrics(context.Background())
	require.NoError(t, err, "the unix socket answers while TCP is full")
	require.Contains(t, text, `shadowbench_api_connections_refused_total{listener="http://`+addr+`"} 5`)
	require.Contains(t, text, `shadowbench_api_connections{listener="http://`+addr+`"} 20`)

	require.NoError(t, held[0].Close())
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+d.token+"\r\n\r\n")
		if err != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond, "a closed connection frees its slot")
	for _, c := range held[1:] {
		require.NoError(t, c.Close())
	}
}

// TestAPILongRequestsOutlastTheTimeouts checks D8: a snapshot set and a writer's
// long poll run past the read and write timeouts, which bound only their
// body and their answer. A read deadline that passes would otherwise
// cancel them.
func TestAPILongRequestsOutlastTheTimeouts(t *testing.T) {
	cfg := testConfig()
	prof, err := ParseConfig("c.yaml", []byte("providers:\n  - name: slow\n    profile:\n      commit: {block: 400ms}\n"))
	require.NoError(t, err)
	cfg.Providers, cfg.File, cfg.root = prof.Providers, prof.File, prof.root
	cfg.API.ReadTimeout, cfg.API.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond
	_, c := start(t, cfg)
	ctx := context.Background()

	t0 := time.Now()
	rep, err := c.CreateSet(ctx, CreateSetRequest{Targets: []string{"lun0"}, Context: "nas-rollback"})
	require.NoError(t, err)
	require.Equal(t, "created", rep.State)
	require.Greater(t, time.Since(t0), 400*time.Millisecond)

	w, err := c.RegisterWriter(ctx, WriterRegistration{Name: "w", Ephemeral: true})
	require.NoError(t, err)
	t0 = time.Now()
	ev, err := c.NextEvent(ctx, w.ID, 400*time.Millisecond)
	require.NoError(t, err)
	require.Nil(t, ev, "no event: 204 once the wait is over")
	require.Greater(t, time.Since(t0), 400*time.Millisecond)
	_, err = c.UnregisterWriter(ctx, w.ID)
	require.NoError(t, err)
}
