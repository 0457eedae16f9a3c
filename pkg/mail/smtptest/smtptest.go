// Package smtptest runs a real SMTP server in the test process, for tests of
// code that sends mail (pkg/mail and the services built on it).
//
// The server listens on 127.0.0.1 on a random port, offers STARTTLS with a
// fresh self-signed certificate (valid for 127.0.0.1, ::1 and localhost),
// requires AUTH PLAIN after TLS, and keeps every accepted message. Tests can
// make it reject a recipient (550 5.1.1), fail temporarily (451 4.3.0), go
// down (Stop: connections refused) and come back on the same port (Restart).
//
//	srv := smtptest.Start(t)
//	cfg, _ := mail.ParseURL(srv.URL())
//	s, _ := mail.NewSMTP(cfg, mail.WithTLSConfig(srv.TLSConfig()))
//	...
//	got := srv.WaitMessages(t, 1, 5*time.Second)
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// DefaultUser and DefaultPassword are the credentials the server accepts
// unless WithUser or WithPassword say otherwise.
const (
	DefaultUser     = "keyward"
	DefaultPassword = "secret"
)

type config struct {
	user, password string
	implicitTLS    bool
	noTLS          bool
}

// Option configures Start.
type Option func(*config)

// WithPassword sets the password the server accepts (default "secret").
func WithPassword(p string) Option { return func(c *config) { c.password = p } }

// WithUser sets the user name the server accepts (default "keyward").
func WithUser(u string) Option { return func(c *config) { c.user = u } }

// WithImplicitTLS makes the server speak TLS from the first byte (SMTPS)
// instead of offering STARTTLS; URL then returns an smtps:// URL.
func WithImplicitTLS() Option { return func(c *config) { c.implicitTLS = true } }

// WithoutTLS makes the server offer no STARTTLS and accept AUTH PLAIN in
// plain text; URL then ends in ?tls=none (allowed for 127.0.0.1 only).
func WithoutTLS() Option { return func(c *config) { c.noTLS = true } }

// Received is one message the server accepted.
type Received struct {
	// From is the envelope sender (MAIL FROM).
	From string
	// To are the envelope recipients (RCPT TO).
	To []string
	// Data is the message exactly as transmitted (after dot-unstuffing).
	Data []byte
	// Header is the parsed header; nil if Data did not parse.
	Header mail.Header
	// Subject is the decoded (RFC 2047) Subject header.
	Subject string
	// MessageID is the Message-ID header without angle brackets.
	MessageID string
	// Date is the parsed Date header, zero if absent or invalid.
	Date time.Time
	// Text and HTML are the decoded text/plain and text/html parts, with
	// CRLF line ends turned back into LF.
	Text, HTML string
	// ParseErr is why Data could not be parsed into the fields above.
	ParseErr error
}

// Server is a running in-process SMTP server.
type Server struct {
	// Addr is host:port, 127.0.0.1 and the port the server got.
	Addr string

	cfg       config
	tlsConfig *tls.Config // server side
	roots     *x509.CertPool

	mu       sync.Mutex
	srv      *smtp.Server
	msgs     []Received
	changed  chan struct{} // closed and replaced when msgs grows
	reject   map[string]bool
	tempFail bool
	running  bool
	conns    map[*smtp.Conn]bool
}

// Start starts a server and registers its Stop with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config{user: DefaultUser, password: DefaultPassword}
	for _, o := range opts {
		o(&cfg)
	}
	cert, roots, err := selfSigned()
	if err != nil {
		t.Fatalf("smtptest: certificate: %v", err)
	}
	s := &Server{
		cfg:       cfg,
		tlsConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		roots:     roots,
		changed:   make(chan struct{}),
		reject:    map[string]bool{},
		conns:     map[*smtp.Conn]bool{},
	}
	ln, err := s.listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.Addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// URL returns the URL to reach the server with the configured credentials,
// e.g. "smtp://keyward:secret@127.0.0.1:PORT?tls=starttls".
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", User: url.UserPassword(s.cfg.user, s.cfg.password), Host: s.Addr, RawQuery: "tls=starttls"}
	switch {
	case s.cfg.implicitTLS:
		u.Scheme, u.RawQuery = "smtps", ""
	case s.cfg.noTLS:
		u.RawQuery = "tls=none"
	}
	return u.String()
}

// TLSConfig returns a client configuration that trusts the server's
// certificate (RootCAs), for mail.WithTLSConfig.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
}

// Messages returns every message accepted so far, oldest first.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// WaitMessages waits until at least n messages were accepted and returns
// them all; it fails the test after timeout.
func (s *Server) WaitMessages(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.msgs), s.changed
		if got >= n {
			msgs := append([]Received(nil), s.msgs...)
			s.mu.Unlock()
			return msgs
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("smtptest: got %d messages after %v, want %d", got, timeout, n)
			return nil
		}
	}
}

// RejectRecipient makes RCPT TO for addr fail with 550 5.1.1 (permanent).
func (s *Server) RejectRecipient(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject[strings.ToLower(addr)] = true
}

// FailTemporarily makes MAIL FROM fail with 451 4.3.0 while on.
func (s *Server) FailTemporarily(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tempFail = on
}

// Connections returns how many client connections have said EHLO so far,
// to check that connections are reused.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Stop closes the listener and every open connection: the server is down
// and new connections are refused. Stop is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv, s.running = nil, false
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Restart listens again on the same port with the same certificate,
// credentials, messages and failure settings. It panics if the port cannot
// be bound again within a few seconds.
func (s *Server) Restart() {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return
	}
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = s.listen(s.Addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		panic(fmt.Sprintf("smtptest: restart on %s: %v", s.Addr, err))
	}
	s.serve(ln)
}

func (s *Server) listen(addr string) (net.Listener, error) {
	if s.cfg.implicitTLS {
		return tls.Listen("tcp", addr, s.tlsConfig)
	}
	return net.Listen("tcp", addr)
}

func (s *Server) serve(ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "localhost"
	if s.cfg.noTLS {
		srv.AllowInsecureAuth = true
	} else {
		srv.TLSConfig = s.tlsConfig
	}
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.MaxRecipients = 50
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.mu.Lock()
	s.srv, s.running = srv, true
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	return &session{srv: s}, nil
}

type session struct {
	srv    *Server
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		if username != ss.srv.cfg.user || password != ss.srv.cfg.password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.srv.mu.Lock()
	temp := ss.srv.tempFail
	ss.srv.mu.Unlock()
	if temp {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.srv.mu.Lock()
	rejected := ss.srv.reject[strings.ToLower(to)]
	ss.srv.mu.Unlock()
	if rejected {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	rec := parse(data)
	rec.From, rec.To = ss.from, append([]string(nil), ss.to...)
	s := ss.srv
	s.mu.Lock()
	s.msgs = append(s.msgs, rec)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// parse fills the header fields and decoded parts of a Received.
func parse(data []byte) Received {
	rec := Received{Data: data}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		rec.ParseErr = err
		return rec
	}
	rec.Header = m.Header
	dec := new(mime.WordDecoder)
	if rec.Subject, err = dec.DecodeHeader(m.Header.Get("Subject")); err != nil {
		rec.ParseErr = fmt.Errorf("subject: %w", err)
	}
	rec.MessageID = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(m.Header.Get("Message-ID")), "<"), ">")
	if d, err := m.Header.Date(); err == nil {
		rec.Date = d
	}
	if err := rec.walk(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, 0); err != nil {
		rec.ParseErr = errors.Join(rec.ParseErr, err)
	}
	return rec
}

func (rec *Received) walk(contentType, cte string, body io.Reader, depth int) error {
	if depth > 5 {
		return errors.New("MIME nesting too deep")
	}
	if contentType == "" {
		contentType = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content-type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("multipart: %w", err)
			}
			if err := rec.walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, &crlfStripper{r: body})
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("%s body: %w", mt, err)
	}
	// Text travels with CRLF line ends; give tests the LF the sender wrote.
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch mt {
	case "text/plain":
		rec.Text += text
	case "text/html":
		rec.HTML += text
	}
	return nil
}

// crlfStripper drops CR and LF so base64 lines decode as one stream.
type crlfStripper struct{ r io.Reader }

func (c *crlfStripper) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		j := 0
		for _, b := range p[:n] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1, ::1 and
// localhost, valid for a day, and a pool that trusts it.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
