package mail

import (
	"strings"
	"testing"
)

// FuzzParseURL: ParseURL never panics, never puts the password in an error
// or in Redacted, and Redacted parses back to the same Config.
func FuzzParseURL(f *testing.F) {
	f.Add("keyward", "secret", "mail.example.com:587?tls=starttls")
	f.Add("a%40b", "p%40ss", "[::1]:25?tls=none&pool=3")
	f.Add("u", "p@q", "h?auth=login")
	f.Add("", "", "h:0")
	f.Add("u", "%zz", "h?pool=x")
	f.Fuzz(func(t *testing.T, user, pass, rest string) {
		const marker = "Zq9PwMark"
		secret := marker + pass
		raw := "smtp://" + user + ":" + secret + "@" + rest
		c, err := ParseURL(raw)
		leaks := func(s string) bool {
			return strings.Contains(s, marker) && !strings.Contains(user+rest, marker)
		}
		if err != nil {
			if leaks(err.Error()) {
				t.Fatalf("ParseURL(%q) err = %q contains the password", raw, err)
			}
			return
		}
		red := c.Redacted()
		if leaks(red) {
			t.Fatalf("Redacted() = %q contains the password", red)
		}
		back, err := ParseURL(red)
		if err != nil {
			t.Fatalf("ParseURL(Redacted() = %q) err = %v (from %q)", red, err, raw)
		}
		want := c
		if want.Password != "" {
			want.Password = "xxxxx"
		}
		if back != want {
			t.Fatalf("ParseURL(%q) = %#v, want %#v", red, back, want)
		}
	})
}

// FuzzMessageHeaders: whatever the Subject, To and extra header value, a
// message either fails with ErrInvalidMessage or renders to a message whose
// header fields are exactly the ones we set (no injected Bcc or others).
func FuzzMessageHeaders(f *testing.F) {
	f.Add("Key disabled", "ops@example.com", "dev.keyward.key.status.changed.v1")
	f.Add("hi\r\nBcc: evil@example.com", "ops@example.com", "x")
	f.Add("hi", "ops@example.com\nBcc: evil@example.com", "x")
	f.Add("hi", "\"a\r\nb\"@example.com", "x\r\n\r\nbody")
	f.Add("ä\x85ö\u2028", "ops@example.com", "v")
	f.Fuzz(func(t *testing.T, subject, to, value string) {
		m := &Message{
			MessageID: "kw.1@keyward", From: "keyward@example.com", To: to, Subject: subject,
			Text: "t", Headers: map[string]string{"X-Keyward-Event": value},
		}
		var buf strings.Builder
		_, err := m.WriteTo(&buf)
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("WriteTo err = %v, want ErrInvalidMessage", err)
			}
			return
		}
		got, err := netmailRead(buf.String())
		if err != nil {
			t.Fatalf("rendered message does not parse: %v\n%s", err, buf.String())
		}
		allowed := map[string]bool{
			"Date": true, "From": true, "To": true, "Subject": true, "Message-Id": true,
			"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true, "X-Keyward-Event": true,
		}
		for k := range got {
			if !allowed[k] {
				t.Fatalf("rendered message has header %q (injected?)\n%s", k, buf.String())
			}
		}
		if n := len(got["To"]); n != 1 {
			t.Fatalf("rendered message has %d To headers", n)
		}
	})
}
