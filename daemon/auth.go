package daemon

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// The TCP API's modes of authentication (api.auth, serve --api-auth).
const (
	// AuthToken, the default, asks every request over TCP but those for
	// /metrics for the bearer token the daemon writes to its token file
	// at start.
	AuthToken = "token"
	// AuthNone lets any local user call the TCP API, as it was before
	// tokens. The daemon says so in its log.
	AuthNone = "none"
)

// EnvAPITokenFile is the environment variable clients read the token
// file's path from when no flag names one.
const EnvAPITokenFile = "SHADOWBENCH_API_TOKEN_FILE"

// DefaultTokenFile is where the daemon writes the TCP API's token, and
// clients read it, when nothing names another file:
// $XDG_RUNTIME_DIR/shadowbench/api-token, in the runtime directory only
// its user may enter, or without one under the user's cache directory.
func DefaultTokenFile() (string, error) {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		var err error
		if dir, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("daemon: no place for the API token (neither $XDG_RUNTIME_DIR nor a cache directory): %w", err)
		}
	}
	return filepath.Join(dir, "shadowbench", "api-token"), nil
}

// ResolveTokenFile returns the token file a client reads: flag when it is
// set, else $SHADOWBENCH_API_TOKEN_FILE, else DefaultTokenFile.
func ResolveTokenFile(flag string) (string, error) {
	if p := cmp.Or(flag, os.Getenv(EnvAPITokenFile)); p != "" {
		return p, nil
	}
	return DefaultTokenFile()
}

// ReadToken reads the token in a token file.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("daemon: reading the API token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeToken writes a new random token to path, readable by the daemon's
// user alone (0600, in a directory created 0700), and returns it. The
// file is written aside and renamed over path, so that a client never
// reads half a token, and a file or link planted at path is replaced,
// never written through.
func writeToken(path string) (string, error) {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	return token, nil
}

// writeFileAtomic writes b to a file beside path (of the mode given) and renames
// it over path: a reader sees the old file or the new one, never half of
// one, and a file or link planted at path is replaced, not written
// through.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Chmod(mode), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// setUpAuth prepares the TCP API's authentication: a token written to the
// token file, or (api.auth none) a warning that there is none. The unix
// socket needs no token: its mode, 0600, admits its owner alone.
func (d *Daemon) setUpAuth() error {
	if d.cfg.API.Listen == "" {
		return nil
	}
	if d.cfg.API.Auth == AuthNone {
		d.log.Warn("the TCP API takes no token (api auth none): any local user can create and delete LUNs and snapshots through it",
			"addr", d.apiLs[0].Addr().String())
		return nil
	}
	path := d.cfg.API.TokenFile
	if path == "" {
		var err error
		if path, err = DefaultTokenFile(); err != nil {
			return err
		}
	}
	token, err := writeToken(path)
	if err != nil {
		return fmt.Errorf("api token file %s: %w", path, err)
	}
	d.token, d.tokenFile = token, path
	d.log.Info("the TCP API takes the bearer token in the token file", "file", path)
	return nil
}

// removeToken removes the token file, unless another daemon has written
// its own there since.
func (d *Daemon) removeToken() {
	if d.tokenFile == "" {
		return
	}
	if t, err := ReadToken(d.tokenFile); err == nil && t == d.token {
		_ = os.Remove(d.tokenFile)
	}
}

// connNetwork is the context key of the network ("tcp" or "unix") a
// request came in on.
type connNetwork struct{}

// withConnNetwork is the server's ConnContext: it notes each connection's
// network for authorize.
func withConnNetwork(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connNetwork{}, c.LocalAddr().Network())
}

// authorize lets through the requests that need no token (over the unix
// socket, for /metrics, or with api.auth none) and those over TCP that
// carry the daemon's token; any other is answered 401 before its route
// is looked at. The token is compared in constant time.
func (d *Daemon) authorize(next http.Handler) http.Handler {
	want := []byte("Bearer " + d.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.token == "" || r.URL.Path == "/metrics" || r.Context().Value(connNetwork{}) != "tcp" ||
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="shadowbench"`)
		writeJSON(w, http.StatusUnauthorized, errorBody(fmt.Errorf("%w; the daemon wrote it to %s", ErrUnauthorized, d.tokenFile)))
	})
}
