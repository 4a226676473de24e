package daemon

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/shadowbench/shadowbench/nbd"
)

// TLS certificate files in NBDConfig.TLS.Certificates, named as nbdkit
// and qemu-nbd name them.
const (
	TLSServerCert = "server-cert.pem"
	TLSServerKey  = "server-key.pem"
)

// loadTLS reads the server's certificate and key; nil when TLS is off.
func loadTLS(c TLSConfig) (*tls.Config, error) {
	if c.mode() == TLSOff {
		return nil, nil
	}
	cert, key := filepath.Join(c.Certificates, TLSServerCert), filepath.Join(c.Certificates, TLSServerKey)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificates %s (%s and %s): %w", c.Certificates, TLSServerCert, TLSServerKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// NBDOptions are the NBD server's options for cfg: its limits, timeouts,
// read-only flag and TLS, with the export of clients that name none.
func NBDOptions(cfg *Config, defaultExport string, log *slog.Logger) (nbd.Options, error) {
	tc, err := loadTLS(cfg.NBD.TLS)
	if err != nil {
		return nbd.Options{}, err
	}
	return nbd.Options{MaxInFlight: cfg.NBD.MaxInFlight,
		MaxConnections: cfg.NBD.MaxConnections, RequestTimeout: cfg.NBD.RequestTimeout,
		MaxInFlightBytes: int64(cfg.NBD.MaxInFlightBytes), MaxPayload: int(cfg.NBD.MaxRequestSize),
		ReadOnly: cfg.NBD.ReadOnly, TLSConfig: tc, TLSRequired: cfg.NBD.TLS.mode() == TLSRequire,
		DefaultExport: defaultExport, ShutdownTimeout: cmp.Or(cfg.NBD.ShutdownTimeout, defaultShutdownTimeout),
		Logger: log}, nil
}
