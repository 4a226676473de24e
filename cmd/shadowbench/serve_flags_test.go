package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/daemon"
	"github.com/shadowbench/shadowbench/nbd"
	"github.com/shadowbench/shadowbench/nbd/nbdtest"
)

// executeOut runs the command line and returns its stdout, stderr and
// error.
func executeOut(ctx context.Context, args ...string) (string, string, error) {
	var out, errb syncBuffer
	err := run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

// TestServeRun: --run runs its command once the daemon serves, with $uri,
// $port, $exportname and SHADOWBENCH_API set, stops the daemon when it
// exits, and serve exits with its status; --pid-file holds the PID while
// serving and is gone after.
func TestServeRun(t *testing.T) {
	pid := filepath.Join(t.TempDir(), "serve.pid")
	out, stderr, err := executeOut(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--lun", "name=db,size=8MiB", "--pid-file", pid,
		"--run", `echo "uri=$uri nbd=$nbd port=$port export=$exportname api=$SHADOWBENCH_API pid=$(cat `+pid+`)"; exit 7`)
	require.Equal(t, 7, exitCode(err), "%v\n%s", err, stderr)
	var uri, port, export, api, gotPid string
	for _, kv := range strings.Fields(out) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "uri":
			uri = v
		case "port":
			port = v
		case "export":
			export = v
		case "api":
			api = v
		case "pid":
			gotPid = v
		}
	}
	require.Equal(t, "nbd://127.0.0.1:"+port, uri, out)
	require.Contains(t, out, "nbd="+uri)
	require.Equal(t, "db", export)
	require.True(t, strings.HasPrefix(api, "http://127.0.0.1:"), out)
	require.Equal(t, strconv.Itoa(os.Getpid()), gotPid, "the PID file is written before the command runs")
	_, err = os.Stat(pid)
	require.ErrorIs(t, err, os.ErrNotExist, "the PID file is removed at exit")

	// A command that succeeds: serve succeeds; a real client reads the LUN
	// through $uri.
	nbdtest.NeedTool(t, "nbdinfo", "libnbd-bin")
	out, stderr, err = executeOut(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "",
		"--lun", "name=db,size=8MiB", "--run", `nbdinfo --size "$uri"`)
	require.NoError(t, err, stderr)
	require.Equal(t, "8388608\n", out)
}

// TestServeReadOnly: --read-only serves a writable LUN read-only.
func TestServeReadOnly(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := execute(ctx, "serve", "--listen", "", "--socket", sock, "--api", "", "-r", "--lun", "name=db,size=8MiB")
		done <- err
	}()
	c := dialWhenUp(t, sock, "db")
	require.True(t, c.Flags()&nbd.FlagReadOnly != 0)
	require.ErrorIs(t, c.Write(context.Background(), []byte("x"), 0, 0), syscall.EPERM)
	require.NoError(t, c.Close())
	cancel()
	require.NoError(t, <-done)
}

// writeTestCert writes a self-signed server-cert.pem and server-key.pem
// for 127.0.0.1 into dir and returns a client configuration that trusts
// it.
func writeTestCert(t *testing.T, dir string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	require.NoError(t, os.WriteFile(filepath.Join(dir, daemon.TLSServerCert), certPEM, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca-cert.pem"), certPEM, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, daemon.TLSServerKey),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// TestServeTLS: --tls require serves TLS clients (ours and nbdinfo, which
// checks the certificate against the directory's ca-cert.pem) and refuses
// plain ones; a directory without the key is refused at start, naming it.
func TestServeTLS(t *testing.T) {
	certs := t.TempDir()
	cli := writeTestCert(t, certs)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	port := freePort(t)
	go func() {
		_, err := execute(ctx, "serve", "--listen", "127.0.0.1:"+port, "--socket", sock, "--api", "",
			"--lun", "name=db,size=8MiB", "--tls", "require", "--tls-certificates", certs)
		done <- err
	}()
	var c *nbd.Client
	require.Eventually(t, func() bool {
		var err error
		c, err = nbd.Dial(context.Background(), "tcp", "127.0.0.1:"+port, &nbd.DialOptions{Export: "db", TLSConfig: cli})
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Write(context.Background(), []byte("over TLS"), 0, 0))
	require.NoError(t, c.Close())
	_, err := nbd.Dial(context.Background(), "unix", sock, &nbd.DialOptions{Export: "db"})
	var oe *nbd.OptionError
	require.ErrorAs(t, err, &oe, "a plain client is refused")

	nbdtest.NeedTool(t, "nbdinfo", "libnbd-bin")
	out, err := exec.Command("nbdinfo", "--size", "nbds://127.0.0.1:"+port+"/db?tls-certificates="+certs).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "8388608\n", string(out))
	out, err = exec.Command("nbdinfo", "--size", "nbd://127.0.0.1:"+port+"/db").CombinedOutput()
	require.Error(t, err, "nbdinfo without TLS: %s", out)
	cancel()
	require.NoError(t, <-done)

	require.NoError(t, os.Remove(filepath.Join(certs, daemon.TLSServerKey)))
	_, err = execute(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "", "--tls-certificates", certs)
	require.ErrorContains(t, err, "TLS certificates "+certs)
	require.ErrorContains(t, err, daemon.TLSServerKey)
	_, err = execute(context.Background(), "serve", "--listen", "127.0.0.1:0", "--api", "", "--tls", "require")
	require.ErrorContains(t, err, "needs a certificates directory")
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestServeSocketActivation: started as systemd starts a socket-activated
// service (the listening socket as descriptor 3, LISTEN_FDS=1 and
// LISTEN_PID its own PID), serve takes NBD clients on that socket rather
// than --listen, and sends READY=1 to NOTIFY_SOCKET once it serves.
func TestServeSocketActivation(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	lf, err := l.(*net.TCPListener).File()
	require.NoError(t, err)
	require.NoError(t, l.Close()) // the child holds the socket
	defer lf.Close()
	notifyPath := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	require.NoError(t, err)
	defer notify.Close()

	// sh sets LISTEN_PID to its own PID, which exec keeps.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, os.Args[0],
		"serve", "--listen", "127.0.0.1:1", "--api", "", "--lun", "name=db,size=8MiB")
	cmd.Env = append(os.Environ(), envRunMain+"=1", "NOTIFY_SOCKET="+notifyPath)
	cmd.ExtraFiles = []*os.File{lf}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		require.NoError(t, cmd.Wait(), stderr.String())
		require.Contains(t, stderr.String(), "socket activation")
	}()

	require.NoError(t, notify.SetReadDeadline(time.Now().Add(20*time.Second)))
	buf := make([]byte, 64)
	n, err := notify.Read(buf)
	require.NoError(t, err, stderr.String())
	require.Equal(t, "READY=1", string(buf[:n]))

	c, err := nbd.Dial(context.Background(), "tcp", l.Addr().String(), &nbd.DialOptions{Export: "db"})
	require.NoError(t, err, stderr.String())
	require.Equal(t, int64(8<<20), c.Size())
	require.NoError(t, c.Close())
}
