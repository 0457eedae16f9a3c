package mail

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// TLSMode says how the connection to the SMTP server is encrypted.
type TLSMode string

const (
	// TLSStartTLS connects in plain text and requires the server to offer
	// STARTTLS before anything else is said (mandatory, not opportunistic).
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS, usually port 465).
	TLSImplicit TLSMode = "tls"
	// TLSNone never encrypts. ParseURL allows it with credentials only for
	// a loopback host; without credentials, for any host (a local relay).
	TLSNone TLSMode = "none"
)

// Auth mechanisms accepted in Config.Auth and in ?auth=.
const (
	AuthPlain   = "plain"
	AuthLogin   = "login"
	AuthCRAMMD5 = "cram-md5"
)

// Defaults used by ParseURL.
const (
	DefaultPoolSize = 2
	// MaxPoolSize bounds ?pool=N: more parallel connections than this to one
	// relay only earns rate limiting.
	MaxPoolSize = 32
)

// Config is a parsed KEYWARD_SMTP_URL.
//
// Its String, GoString and LogValue methods print Redacted, so a Config can be
// logged or formatted with %v, %+v or %#v without revealing the password.
type Config struct {
	Host string
	Port int

	// Username and Password for SMTP AUTH. Password is never printed.
	Username, Password string

	// TLS: TLSStartTLS (default for smtp://), TLSImplicit (smtps://,
	// ?tls=tls, or smtp:// on port 465), TLSNone (?tls=none; with credentials, loopback only).
	TLS TLSMode

	// Auth is "plain" (default when a user is given), "login", "cram-md5", or
	// "" for no authentication.
	Auth string

	// PoolSize is how many connections are kept open and reused (default 2,
	// ?pool=N, 1..MaxPoolSize). It also bounds concurrent sends.
	PoolSize int
}

// ParseURL parses an SMTP URL:
//
//	smtp://[user[:password]@]host[:port][?tls=starttls|tls|none][&auth=plain|login|cram-md5|none][&pool=N]
//	smtps://[user[:password]@]host[:port][?auth=...][&pool=N]
//
// Reserved characters in the user or password are percent-encoded (an "@"
// in a password is written %40). Without a port, smtp:// uses 587 (25 with
// tls=none) and smtps:// uses 465. smtp:// on port 465 means implicit TLS
// unless ?tls= says otherwise.
//
// Errors name the part of the URL that is wrong and how to fix it; they never
// contain the password.
func ParseURL(raw string) (Config, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Config{}, errors.New("mail: SMTP URL is empty: want smtp://user:password@host:587")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Config{}, errors.New("mail: SMTP URL has no scheme: want smtp://host:587 or smtps://host:465")
	}
	var c Config
	switch strings.ToLower(scheme) {
	case "smtp":
	case "smtps":
		c.TLS = TLSImplicit
	default:
		return Config{}, fmt.Errorf("mail: SMTP URL scheme %q: want smtp:// (STARTTLS) or smtps:// (implicit TLS)", scheme)
	}

	if strings.Contains(rest, "#") {
		return Config{}, errors.New("mail: SMTP URL has a #fragment: remove it (percent-encode # in a password as %23)")
	}
	// The userinfo ends at the last "@" (no option value contains one), and
	// is cut off before anything else: an unencoded "@", "?" or "/" in a
	// password must not move password text into a part an error quotes.
	var userinfo string
	hasUser := false
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		userinfo, rest, hasUser = rest[:i], rest[i+1:], true
	}
	rest, query, _ := strings.Cut(rest, "?")
	hostport, path, _ := strings.Cut(rest, "/")
	if path != "" {
		return Config{}, fmt.Errorf("mail: SMTP URL path %q: remove it, an SMTP URL ends after host:port (options go in ?tls=, ?auth=, ?pool=)", "/"+path)
	}

	if hasUser {
		user, pass, hasPass := strings.Cut(userinfo, ":")
		u, err := url.PathUnescape(user)
		if err != nil {
			return Config{}, errors.New("mail: SMTP URL user: invalid percent-encoding: encode reserved characters, e.g. @ as %40")
		}
		if u == "" {
			return Config{}, errors.New("mail: SMTP URL user is empty: write smtp://user:password@host, or drop the @ for no authentication")
		}
		c.Username = u
		if hasPass {
			p, err := url.PathUnescape(pass)
			if err != nil {
				return Config{}, errors.New("mail: SMTP URL password: invalid percent-encoding: encode reserved characters, e.g. @ as %40, % as %25")
			}
			c.Password = p
		}
	}

	if err := c.parseHostPort(hostport); err != nil {
		return Config{}, err
	}
	if err := c.parseQuery(query); err != nil {
		return Config{}, err
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) parseHostPort(hostport string) error {
	if hostport == "" {
		return errors.New("mail: SMTP URL host is empty: want smtp://host:587")
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") || strings.Count(hostport, ":") == 1 {
		h, p, err := net.SplitHostPort(hostport)
		if err != nil {
			// An IPv6 literal without a port: [::1]
			if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
				h, p = hostport[1:len(hostport)-1], ""
			} else {
				return fmt.Errorf("mail: SMTP URL host %q: want host, host:port or [ipv6]:port", hostport)
			}
		}
		if p == "" && strings.HasSuffix(hostport, ":") {
			return fmt.Errorf("mail: SMTP URL port is empty: write host:587 or drop the colon")
		}
		host, port = h, p
	} else if strings.Contains(hostport, ":") {
		return fmt.Errorf("mail: SMTP URL host %q: write an IPv6 address in brackets, e.g. [::1]:587", hostport)
	}
	if host == "" {
		return errors.New("mail: SMTP URL host is empty: want smtp://host:587")
	}
	if _, err := netip.ParseAddr(host); err != nil || strings.Contains(host, "%") {
		if !validHostname(host) {
			return fmt.Errorf("mail: SMTP URL host %q: want a DNS name (letters, digits, '-', '.') or an IP address", host)
		}
	} else if strings.Contains(host, ":") && !strings.HasPrefix(hostport, "[") {
		return fmt.Errorf("mail: SMTP URL host %q: write an IPv6 address in brackets, e.g. [::1]:587", hostport)
	}
	c.Host = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("mail: SMTP URL port %q: want a number from 1 to 65535, e.g. 587", port)
		}
		c.Port = n
	}
	return nil
}

func (c *Config) parseQuery(query string) error {
	if query == "" {
		return nil
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return errors.New("mail: SMTP URL query: invalid encoding: want ?tls=starttls&pool=2")
	}
	for key, vals := range values {
		if len(vals) != 1 {
			return fmt.Errorf("mail: SMTP URL option %q is given %d times: give it once", key, len(vals))
		}
		v := strings.ToLower(strings.TrimSpace(vals[0]))
		switch key {
		case "tls":
			switch TLSMode(v) {
			case TLSStartTLS, TLSNone:
				if c.TLS == TLSImplicit {
					return fmt.Errorf("mail: SMTP URL tls=%s contradicts smtps://: use smtp:// with tls=%s, or drop tls=", v, v)
				}
				c.TLS = TLSMode(v)
			case TLSImplicit:
				c.TLS = TLSImplicit
			default:
				return fmt.Errorf("mail: SMTP URL tls=%q: want starttls, tls or none", vals[0])
			}
		case "auth":
			switch v {
			case AuthPlain, AuthLogin, AuthCRAMMD5:
				c.Auth = v
			case "none":
				c.Auth = "none" // resolved in setDefaults
			default:
				return fmt.Errorf("mail: SMTP URL auth=%q: want plain, login, cram-md5 or none", vals[0])
			}
		case "pool":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxPoolSize {
				return fmt.Errorf("mail: SMTP URL pool=%q: want a number of connections from 1 to %d", vals[0], MaxPoolSize)
			}
			c.PoolSize = n
		default:
			return fmt.Errorf("mail: SMTP URL option %q is unknown: the options are tls, auth and pool", key)
		}
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.TLS == "" {
		c.TLS = TLSStartTLS
		if c.Port == 465 {
			c.TLS = TLSImplicit
		}
	}
	if c.Port == 0 {
		switch c.TLS {
		case TLSImplicit:
			c.Port = 465
		case TLSNone:
			c.Port = 25
		default:
			c.Port = 587
		}
	}
	switch c.Auth {
	case "":
		if c.Username != "" {
			c.Auth = AuthPlain
		}
	case "none":
		c.Auth = ""
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
}

// Validate reports what is wrong with a Config built by hand (ParseURL
// returns only valid ones). Every problem is named, joined into one error.
func (c Config) Validate() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("mail: SMTP host is empty"))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("mail: SMTP port %d: want 1 to 65535", c.Port))
	}
	switch c.TLS {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		// Credentials never cross the network in plain text; an
		// unauthenticated relay on a private network (mailpit in
		// docker-compose) may be reached without TLS.
		if !isLoopback(c.Host) && (c.Username != "" || c.Auth != "") {
			errs = append(errs, fmt.Errorf("mail: SMTP URL tls=none for host %q with credentials: a password goes in plain text only to localhost; use tls=starttls or smtps://", c.Host))
		}
	default:
		errs = append(errs, fmt.Errorf("mail: SMTP TLS mode %q: want starttls, tls or none", string(c.TLS)))
	}
	switch c.Auth {
	case "":
	case AuthPlain, AuthLogin, AuthCRAMMD5:
		if c.Username == "" {
			errs = append(errs, fmt.Errorf("mail: SMTP auth=%s needs a user: write smtp://user:password@host", c.Auth))
		}
	default:
		errs = append(errs, fmt.Errorf("mail: SMTP auth %q: want plain, login, cram-md5 or none", c.Auth))
	}
	if c.PoolSize < 1 || c.PoolSize > MaxPoolSize {
		errs = append(errs, fmt.Errorf("mail: SMTP pool size %d: want 1 to %d", c.PoolSize, MaxPoolSize))
	}
	return errors.Join(errs...)
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Redacted returns the URL with the password replaced by xxxxx, e.g.
// smtp://user:xxxxx@host:587?tls=starttls. Options that differ from their
// defaults are appended, so the result parses back to the same Config (but
// for the password).
func (c Config) Redacted() string {
	var b strings.Builder
	if c.TLS == TLSImplicit {
		b.WriteString("smtps://")
	} else {
		b.WriteString("smtp://")
	}
	if c.Username != "" {
		b.WriteString(url.User(c.Username).String())
		if c.Password != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	b.WriteString("?tls=")
	b.WriteString(string(c.TLS))
	if c.Auth != "" && c.Auth != AuthPlain {
		b.WriteString("&auth=" + url.QueryEscape(c.Auth))
	} else if c.Auth == "" && c.Username != "" {
		b.WriteString("&auth=none")
	}
	if c.PoolSize != DefaultPoolSize && c.PoolSize != 0 {
		b.WriteString("&pool=" + strconv.Itoa(c.PoolSize))
	}
	return b.String()
}

// String returns Redacted.
func (c Config) String() string { return c.Redacted() }

// GoString returns Redacted, so %#v does not print the password either.
func (c Config) GoString() string { return "mail.Config(" + c.Redacted() + ")" }

// LogValue makes slog print Redacted.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.Redacted()) }

// server returns "smtp://host:port" (for every TLS mode), the destination
// reported by SMTP.Send.
func (c Config) server() string {
	return "smtp://" + net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}
