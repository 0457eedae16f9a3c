package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Sender delivers messages.
type Sender interface {
	// Send delivers m and returns where it went: "smtp://host:port" for
	// SMTP, the .eml path for a FileSink. Errors are classified by
	// IsPermanent; see the package documentation.
	Send(ctx context.Context, m *Message) (string, error)
	// Close releases the connections; Send after Close returns ErrClosed.
	Close() error
}

// DefaultTimeout bounds dialing (connect, TLS, EHLO, AUTH) and each SMTP
// command.
const DefaultTimeout = 10 * time.Second

type options struct {
	tlsConfig *tls.Config
	timeout   time.Duration
	helo      string
}

// Option configures NewSMTP.
type Option func(*options)

// WithTLSConfig sets the TLS configuration, e.g. RootCAs for a test server.
// An empty ServerName is filled with Config.Host.
func WithTLSConfig(t *tls.Config) Option { return func(o *options) { o.tlsConfig = t } }

// WithTimeout sets the dial and command timeout (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithHELO sets the name sent in EHLO (default: the machine's hostname).
func WithHELO(name string) Option { return func(o *options) { o.helo = name } }

// SMTP is a Sender over a pool of Config.PoolSize reused SMTP connections.
// At most PoolSize messages are sent at once; more Sends wait (honouring
// their context). A connection that fails is closed and dialed again by the
// next Send; a pooled connection the server has dropped meanwhile is
// detected (NOOP) before anything is sent and replaced at once.
//
// SMTP is safe for concurrent use.
type SMTP struct {
	cfg     Config
	server  string
	timeout time.Duration
	client  *gomail.Client // configuration shared by all connections

	slots     chan *slot
	done      chan struct{}
	closeOnce sync.Once
}

// slot is one pooled connection; c is nil until dialed or after a failure.
type slot struct{ c *smtp.Client }

var _ Sender = (*SMTP)(nil)

// NewSMTP returns a Sender over a pool of reused SMTP connections,
// reconnecting after errors. It does not dial: the first Send does, so a
// server that is down at start-up is a transient Send error, not a
// start-up failure.
func NewSMTP(c Config, opts ...Option) (*SMTP, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("mail: SMTP timeout %v: want > 0", o.timeout)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.tlsConfig != nil {
		tlsConfig = o.tlsConfig.Clone()
	}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = c.Host
	}
	if tlsConfig.MinVersion == 0 {
		tlsConfig.MinVersion = tls.VersionTLS12
	}

	gopts := []gomail.Option{
		gomail.WithPort(c.Port),
		gomail.WithTimeout(o.timeout),
		gomail.WithTLSConfig(tlsConfig),
		gomail.WithDialContextFunc(dialFunc(c.TLS == TLSImplicit, tlsConfig)),
	}
	switch c.TLS {
	case TLSImplicit:
		// The dial function speaks TLS; WithSSL stops go-mail from trying
		// STARTTLS inside it.
		gopts = append(gopts, gomail.WithSSL())
	case TLSNone:
		gopts = append(gopts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		gopts = append(gopts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	switch c.Auth {
	case AuthPlain:
		gopts = append(gopts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain))
	case AuthLogin:
		gopts = append(gopts, gomail.WithSMTPAuth(gomail.SMTPAuthLogin))
	case AuthCRAMMD5:
		gopts = append(gopts, gomail.WithSMTPAuth(gomail.SMTPAuthCramMD5))
	}
	if c.Auth != "" {
		gopts = append(gopts, gomail.WithUsername(c.Username), gomail.WithPassword(c.Password))
	}
	if o.helo != "" {
		gopts = append(gopts, gomail.WithHELO(o.helo))
	}
	client, err := gomail.NewClient(c.Host, gopts...)
	if err != nil {
		return nil, fmt.Errorf("mail: SMTP client for %s: %w", c.Redacted(), err)
	}

	s := &SMTP{
		cfg:     c,
		server:  c.server(),
		timeout: o.timeout,
		client:  client,
		slots:   make(chan *slot, c.PoolSize),
		done:    make(chan struct{}),
	}
	for range c.PoolSize {
		s.slots <- &slot{}
	}
	return s, nil
}

// Config returns the configuration the sender was built with.
func (s *SMTP) Config() Config { return s.cfg }

// Send delivers m over a pooled connection and returns "smtp://host:port".
//
// Errors: ErrInvalidMessage (permanent) before anything is sent; a
// *DeliveryError otherwise, permanent (ErrRejected) for a 5xx reply to
// MAIL FROM, RCPT TO or DATA, transient for everything else (ErrAuth among
// them); ErrClosed after Close; the context's error, transient, when ctx
// ends first. A message whose DATA the server accepted is reported as sent
// even if a later RSET fails.
func (s *SMTP) Send(ctx context.Context, m *Message) (string, error) {
	msg, _, err := m.build(time.Now())
	if err != nil {
		return "", err
	}
	var sl *slot
	select {
	case <-s.done:
		return "", ErrClosed
	case <-ctx.Done():
		return "", &DeliveryError{Server: s.server, Op: "wait for connection", Err: context.Cause(ctx)}
	case sl = <-s.slots:
	}
	defer func() { s.slots <- sl }()
	select {
	case <-s.done:
		return "", ErrClosed
	default:
	}

	for attempt := 0; ; attempt++ {
		fresh := false
		if sl.c == nil || !sl.c.HasConnection() {
			c, err := s.dial(ctx)
			if err != nil {
				return "", err
			}
			sl.c, fresh = c, true
		}
		c := sl.c
		if err := c.UpdateDeadline(s.timeout); err != nil {
			sl.drop()
			if attempt == 0 {
				continue
			}
			return "", &DeliveryError{Server: s.server, Op: "connection check", Err: err}
		}
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		err := s.client.SendWithSMTPClient(c, msg)
		cancelled := !stop()
		if msg.IsDelivered() {
			// DATA was accepted: a failure after that (RSET, or a cancel
			// racing the reply) must not make the caller send it twice.
			if err != nil || cancelled {
				sl.drop()
			}
			return s.server, nil
		}
		if cancelled {
			sl.drop()
			return "", &DeliveryError{Server: s.server, Op: "send", Err: errors.Join(context.Cause(ctx), err)}
		}
		de := classifySend(s.server, err)
		if !de.keepsConnection() {
			sl.drop()
		}
		if de.Op == "connection check" && !fresh && attempt == 0 {
			// The pooled connection died while idle; nothing was sent yet.
			continue
		}
		return "", de
	}
}

// dial opens one connection: connect, greeting, EHLO, STARTTLS, AUTH.
// go-mail leaves the socket open when a step after connect fails, and does
// not watch ctx after connect; the conn holder closes it in both cases.
func (s *SMTP) dial(ctx context.Context) (*smtp.Client, error) {
	h := &connHolder{}
	stop := context.AfterFunc(ctx, h.close)
	defer stop()
	c, err := s.client.DialToSMTPClientWithContext(context.WithValue(ctx, connHolderKey{}, h))
	if err != nil {
		h.close()
		if ctx.Err() != nil {
			return nil, &DeliveryError{Server: s.server, Op: "dial", Err: errors.Join(context.Cause(ctx), err)}
		}
		return nil, classifyDial(s.server, err)
	}
	return c, nil
}

func (sl *slot) drop() {
	if sl.c != nil {
		_ = sl.c.Close()
		sl.c = nil
	}
}

// Close waits for the Sends in flight, says QUIT on every pooled connection
// and closes it. Send after Close returns ErrClosed. Close is idempotent.
func (s *SMTP) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		close(s.done)
		for range s.cfg.PoolSize {
			sl := <-s.slots
			if sl.c == nil {
				continue
			}
			_ = sl.c.UpdateDeadline(s.timeout)
			if err := sl.c.Quit(); err != nil {
				errs = append(errs, err)
			}
			sl.drop()
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mail: closing SMTP connections to %s: %w", s.server, err)
	}
	return nil
}

type connHolderKey struct{}

// connHolder remembers the socket a dial opened so it can be closed if the
// SMTP handshake fails or the context ends.
type connHolder struct {
	mu     sync.Mutex
	conn   net.Conn
	closed bool
}

func (h *connHolder) set(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.conn = c
	return true
}

func (h *connHolder) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.conn != nil {
		_ = h.conn.Close()
	}
}

// dialFunc dials TCP, or TLS for implicit TLS, and registers the socket with
// the connHolder in ctx.
func dialFunc(implicitTLS bool, tlsConfig *tls.Config) gomail.DialContextFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := &net.Dialer{}
		var c net.Conn
		var err error
		if implicitTLS {
			c, err = (&tls.Dialer{NetDialer: nd, Config: tlsConfig}).DialContext(ctx, network, addr)
		} else {
			c, err = nd.DialContext(ctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		if h, ok := ctx.Value(connHolderKey{}).(*connHolder); ok && !h.set(c) {
			_ = c.Close()
			return nil, context.Cause(ctx)
		}
		return c, nil
	}
}
