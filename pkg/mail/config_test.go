package mail

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw  string
		want Config
	}{
		{"smtp://user:pw@mail.example.com", Config{Host: "mail.example.com", Port: 587, Username: "user", Password: "pw", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://user:pw@mail.example.com:587?tls=starttls", Config{Host: "mail.example.com", Port: 587, Username: "user", Password: "pw", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://mail.example.com:25", Config{Host: "mail.example.com", Port: 25, TLS: TLSStartTLS, PoolSize: 2}},
		{"smtps://user:pw@mail.example.com", Config{Host: "mail.example.com", Port: 465, Username: "user", Password: "pw", TLS: TLSImplicit, Auth: AuthPlain, PoolSize: 2}},
		{"smtps://user:pw@mail.example.com?tls=tls", Config{Host: "mail.example.com", Port: 465, Username: "user", Password: "pw", TLS: TLSImplicit, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://user:pw@mail.example.com:465", Config{Host: "mail.example.com", Port: 465, Username: "user", Password: "pw", TLS: TLSImplicit, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://user:pw@mail.example.com:465?tls=starttls", Config{Host: "mail.example.com", Port: 465, Username: "user", Password: "pw", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://user:pw@mail.example.com:2525?tls=tls", Config{Host: "mail.example.com", Port: 2525, Username: "user", Password: "pw", TLS: TLSImplicit, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://127.0.0.1:1025?tls=none", Config{Host: "127.0.0.1", Port: 1025, TLS: TLSNone, PoolSize: 2}},
		{"smtp://localhost?tls=none", Config{Host: "localhost", Port: 25, TLS: TLSNone, PoolSize: 2}},
		{"smtp://[::1]:1025?tls=none", Config{Host: "::1", Port: 1025, TLS: TLSNone, PoolSize: 2}},
		{"smtp://mailpit:1025?tls=none", Config{Host: "mailpit", Port: 1025, TLS: TLSNone, PoolSize: 2}},
		{"smtp://u:p@[2001:db8::1]", Config{Host: "2001:db8::1", Port: 587, Username: "u", Password: "p", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://u:p@h?auth=login&pool=5", Config{Host: "h", Port: 587, Username: "u", Password: "p", TLS: TLSStartTLS, Auth: AuthLogin, PoolSize: 5}},
		{"smtp://u:p@h?auth=cram-md5", Config{Host: "h", Port: 587, Username: "u", Password: "p", TLS: TLSStartTLS, Auth: AuthCRAMMD5, PoolSize: 2}},
		{"smtp://u:p@h?auth=none", Config{Host: "h", Port: 587, Username: "u", Password: "p", TLS: TLSStartTLS, PoolSize: 2}},
		{"SMTP://u@h", Config{Host: "h", Port: 587, Username: "u", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		// Percent-encoded and unencoded "@" in the password.
		{"smtp://a%40b.c:p%40ss%3Aw%2Fd@h", Config{Host: "h", Port: 587, Username: "a@b.c", Password: "p@ss:w/d", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://u:p@ss@h", Config{Host: "h", Port: 587, Username: "u", Password: "p@ss", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
		{"smtp://u:p+q@h/", Config{Host: "h", Port: 587, Username: "u", Password: "p+q", TLS: TLSStartTLS, Auth: AuthPlain, PoolSize: 2}},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.raw)
		if err != nil {
			t.Errorf("ParseURL(%q) err = %v", tt.raw, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseURL(%q) = %#v, want %#v (password %q, want %q)", tt.raw, got, tt.want, got.Password, tt.want.Password)
		}
		// Redacted parses back to the same Config, but for the password.
		back, err := ParseURL(got.Redacted())
		if err != nil {
			t.Errorf("ParseURL(Redacted() = %q) err = %v", got.Redacted(), err)
			continue
		}
		want := got
		if want.Password != "" {
			want.Password = "xxxxx"
		}
		if back != want {
			t.Errorf("ParseURL(%q) = %v, want %v", got.Redacted(), back, want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	const pw = "hunter2SECRET"
	tests := []struct {
		raw  string
		part string // the error must name it
	}{
		{"", "empty"},
		{"mail.example.com:587", "scheme"},
		{"http://u:" + pw + "@h", "scheme"},
		{"smtp://u:" + pw + "@", "host"},
		{"smtp://u:" + pw + "@h:0", "port"},
		{"smtp://u:" + pw + "@h:65536", "port"},
		{"smtp://u:" + pw + "@h:smtp", "port"},
		{"smtp://u:" + pw + "@h:", "port"},
		{"smtp://u:" + pw + "@h?tls=ssl", "tls"},
		{"smtps://u:" + pw + "@h?tls=starttls", "tls"},
		{"smtp://u:" + pw + "@mail.example.com?tls=none", "tls=none"},
		{"smtp://u:" + pw + "@h?pool=0", "pool"},
		{"smtp://u:" + pw + "@h?pool=many", "pool"},
		{"smtp://u:" + pw + "@h?pool=1000", "pool"},
		{"smtp://u:" + pw + "@h?auth=xoauth", "auth"},
		{"smtp://h?auth=plain", "user"},
		{"smtp://u:" + pw + "@h?timeout=5s", "timeout"},
		{"smtp://u:" + pw + "@h?pool=1&pool=2", "pool"},
		{"smtp://u:" + pw + "@h/path", "path"},
		{"smtp://:" + pw + "@h", "user"},
		{"smtp://u:" + pw + "%zz@h", "password"},
		{"smtp://u:" + pw + "@::1", "IPv6"},
		{"smtp://u:" + pw + "@h#frag", "fragment"},
	}
	for _, tt := range tests {
		_, err := ParseURL(tt.raw)
		if err == nil {
			t.Errorf("ParseURL(%q) err = nil, want an error naming %q", tt.raw, tt.part)
			continue
		}
		if !strings.Contains(err.Error(), tt.part) {
			t.Errorf("ParseURL(%q) err = %q, want it to name %q", tt.raw, err, tt.part)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("ParseURL(%q) err = %q contains the password", tt.raw, err)
		}
	}
}

func TestConfigNeverPrintsPassword(t *testing.T) {
	c, err := ParseURL("smtp://keyward:hunter2@mail.example.com:587?pool=3&auth=login")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Redacted(), "smtp://keyward:xxxxx@mail.example.com:587?tls=starttls&auth=login&pool=3"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("smtp", "config", c)
	for _, s := range []string{
		c.String(), c.Redacted(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c),
		fmt.Sprintf("%v", &c), fmt.Sprintf("%+v", []Config{c}), logged.String(),
	} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("printed config %q contains the password", s)
		}
	}
	// Without user, no userinfo; with auth=none, the option survives.
	c2, _ := ParseURL("smtp://u:p@h?auth=none")
	if got, want := c2.Redacted(), "smtp://u:xxxxx@h:587?tls=starttls&auth=none"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{Port: 70000, TLS: "ssl", Auth: "plain", PoolSize: 0}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	for _, part := range []string{"host", "port", "TLS", "user", "pool"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("Validate() = %q, want it to name %q", err, part)
		}
	}
}
