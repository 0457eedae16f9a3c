package kmstest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Server is an emulator's HTTP(S) server on a fixed loopback port: the
// Faults in front of the emulator's handler, and a listener that can be
// closed (FaultRefuse) and reopened on the same port.
type Server struct {
	// URL is the base URL (http://127.0.0.1:port or https://…).
	URL string
	// Addr is host:port.
	Addr string
	// Faults controls the failures the server produces.
	Faults *Faults

	handler http.Handler
	tls     *tls.Config
	certPEM []byte
	pool    *x509.CertPool

	mu  sync.Mutex
	srv *http.Server
}

// ServerOption tunes NewServer.
type ServerOption func(*serverOptions)

type serverOptions struct {
	tls  bool
	addr string
}

// WithTLS serves HTTPS with a fresh self-signed certificate for 127.0.0.1
// and localhost; clients trust it through CertPool or Client.
func WithTLS() ServerOption { return func(o *serverOptions) { o.tls = true } }

// WithAddr listens on addr instead of a free loopback port.
func WithAddr(addr string) ServerOption { return func(o *serverOptions) { o.addr = addr } }

// NewServer starts an emulator server. Close it when done.
func NewServer(h http.Handler, classify Classifier, render Renderer, opts ...ServerOption) (*Server, error) {
	var o serverOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	s := &Server{Faults: NewFaults()}
	s.handler = s.Faults.Middleware(h, classify, render)
	if o.tls {
		// httptest's certificate is valid for 127.0.0.1 and example.com;
		// borrow it rather than hand-rolling a CA.
		ts := httptest.NewUnstartedServer(nil)
		ts.StartTLS()
		s.tls = ts.TLS.Clone()
		cert := ts.Certificate()
		ts.Close()
		s.pool = x509.NewCertPool()
		s.pool.AddCert(cert)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("kmstest: listen: %w", err)
	}
	s.Addr = ln.Addr().String()
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	s.URL = scheme + "://" + s.Addr
	s.serve(ln)
	s.Faults.mu.Lock()
	s.Faults.onRefuse = s.refuse
	s.Faults.mu.Unlock()
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.tls}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() {
		if s.tls != nil {
			_ = srv.ServeTLS(ln, "", "")
			return
		}
		_ = srv.Serve(ln)
	}()
}

// refuse closes the listener (and every connection) or reopens it.
func (s *Server) refuse(on bool) {
	if on {
		s.mu.Lock()
		srv := s.srv
		s.srv = nil
		s.mu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
		return
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		panic(fmt.Sprintf("kmstest: reopening %s: %v", s.Addr, err))
	}
	s.serve(ln)
}

// CertPool trusts the server's certificate (TLS servers only).
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Client is an HTTP client that trusts the server's certificate and does
// not keep connections alive across a refused period.
func (s *Server) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}
}

// Close stops the server and releases hanging requests.
func (s *Server) Close() {
	s.Faults.Set(FaultNone)
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// readBody reads a request body and puts it back for the next handler.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
