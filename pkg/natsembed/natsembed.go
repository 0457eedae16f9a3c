// Package natsembed runs a nats-server with JetStream inside the current
// process: the broker of `keyward dev` and of every test. It is the real
// server (github.com/nats-io/nats-server/v2), not a fake.
package natsembed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// Host to listen on; default 127.0.0.1 (never all interfaces by default).
	Host string
	// Port to listen on; 0 picks a free port, default 4222 is NOT implied:
	// callers pass it explicitly.
	Port int
	// StoreDir holds JetStream data; required (a temp dir in tests).
	StoreDir string
	// ServerName names the server in logs and cluster metadata.
	ServerName string
	// MaxStore bounds JetStream file storage (bytes); 0 means the server's
	// default (a share of the disk).
	MaxStore int64
	// Logs routes the server's own log lines; nil keeps it quiet.
	Logs server.Logger
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections; default 10s.
	ReadyTimeout time.Duration
	// ConfigFile, when set, is a nats-server configuration file parsed as
	// `nats-server -c` would (authorization, accounts, resolver, TLS);
	// the fields above override its listen address, JetStream store and
	// name. `keyward dev` writes one from pkg/access.
	ConfigFile string
	// TLS, when set, makes the server serve TLS with this configuration
	// (its Certificates) and require it of every client: there is no
	// plaintext fallback (nats-server's allow_non_tls stays off) and no
	// client certificate is asked for (TLSVerify false; clients
	// authenticate with their credentials). MinVersion is raised to TLS
	// 1.2 when lower, as nats-server's own TLS blocks set it. It overrides
	// any tls block of ConfigFile; nil keeps ConfigFile's.
	TLS *tls.Config
	// TLSTimeout bounds a client's TLS handshake; default 2s (nats-server's
	// TLS_TIMEOUT). Used only with TLS.
	TLSTimeout time.Duration
}

// Server is a running embedded nats-server.
type Server struct {
	srv         *server.Server
	opts        Options
	tlsRequired bool
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("natsembed: store dir: %w", err)
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	sopts := &server.Options{}
	if o.ConfigFile != "" {
		parsed, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("natsembed: %w", err)
		}
		sopts = parsed
	}
	sopts.ServerName = o.ServerName
	sopts.Host = o.Host
	sopts.Port = port
	sopts.JetStream = true
	sopts.StoreDir = o.StoreDir
	sopts.JetStreamMaxStore = o.MaxStore
	sopts.NoSigs = true
	sopts.NoLog = o.Logs == nil
	sopts.MaxPayload = server.MAX_PAYLOAD_SIZE
	sopts.DisableShortFirstPing = true
	if o.TLS != nil {
		applyTLS(sopts, o.TLS, o.TLSTimeout)
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if o.Logs != nil {
		srv.SetLoggerV2(o.Logs, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
		return nil, fmt.Errorf("natsembed: server on %s not ready after %s (is the port in use?)", addr, o.ReadyTimeout)
	}
	o.Port = srv.Addr().(*net.TCPAddr).Port
	return &Server{srv: srv, opts: o, tlsRequired: sopts.TLSConfig != nil && !sopts.AllowNonTLS}, nil
}

// applyTLS makes the server require TLS with cfg.
func applyTLS(sopts *server.Options, cfg *tls.Config, timeout time.Duration) {
	cfg = cfg.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if timeout <= 0 {
		timeout = server.TLS_TIMEOUT
	}
	sopts.TLSConfig = cfg
	sopts.TLS = true
	sopts.TLSVerify = false
	sopts.TLSMap = false
	sopts.AllowNonTLS = false
	sopts.TLSTimeout = timeout.Seconds()
}

// TLS reports whether the server requires TLS of its clients (Options.TLS
// or a tls block of ConfigFile without allow_non_tls).
func (s *Server) TLS() bool { return s.tlsRequired }

// URL is the client URL, e.g. nats://127.0.0.1:4222, or tls://… when the
// server requires TLS.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.opts.Port }

// StoreDir is the JetStream data directory.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Shutdown stops the server and waits for it to finish.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Restart shuts the server down and starts a new one on the same port with
// the same data, as an operator restarting NATS would. Clients reconnect.
func (s *Server) Restart() error {
	s.Shutdown()
	n, err := Start(s.opts)
	if err != nil {
		return err
	}
	*s = *n
	return nil
}

// Inner exposes the nats-server for tests that need its monitoring API.
func (s *Server) Inner() *server.Server { return s.srv }
