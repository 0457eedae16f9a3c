package mail

import (
	"fmt"
	"io"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Message is one email to ONE recipient, so a bad address fails alone.
type Message struct {
	// MessageID without angle brackets, e.g.
	// "kw.<event id>.<recipient hash>@keyward"; set as the Message-ID header.
	// Empty: a random one is generated. It must contain "@" and no spaces,
	// angle brackets or control characters.
	MessageID string
	// From is a bare address or "Name <addr>"; the envelope sender is addr.
	From string
	// To is one address (a bare address; "Name <addr>" is accepted too).
	To string
	// Subject may contain any Unicode; it is MIME-encoded as needed.
	Subject string
	// Text is the text/plain part.
	Text string
	// HTML is the text/html part; with Text the message is
	// multipart/alternative. At least one of Text and HTML is required.
	HTML string
	// Headers are extra headers, e.g. "X-Keyward-Event":
	// "dev.keyward.key.status.changed.v1". They may not replace the headers
	// this type sets (From, To, Subject, Message-ID, Date, MIME and
	// Content-* headers, Cc, Bcc).
	Headers map[string]string
	// Date is the Date header; zero means now.
	Date time.Time
}

// reservedHeaders are set from Message fields or by the MIME writer.
var reservedHeaders = []string{
	"Bcc", "Cc", "Content-Disposition", "Content-Id", "Content-Transfer-Encoding",
	"Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Return-Path",
	"Sender", "Subject", "To",
}

// Validate reports why the message cannot be sent, as an error wrapping
// ErrInvalidMessage, or nil.
func (m *Message) Validate() error {
	_, _, err := m.parse()
	return err
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMessage}, args...)...)
}

// hasControl reports whether s contains CR, LF or another control character
// (tab is allowed): the way a header is injected.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return (r < 0x20 && r != '\t') || r == 0x7f
	})
}

// parse validates m and returns the parsed sender and recipient.
func (m *Message) parse() (from, to *mail.Address, err error) {
	if m == nil {
		return nil, nil, invalid("nil message")
	}
	if strings.TrimSpace(m.To) == "" {
		return nil, nil, invalid("To is empty")
	}
	if hasControl(m.To) {
		return nil, nil, invalid("To contains a line break or control character")
	}
	to, err = mail.ParseAddress(m.To)
	if err != nil {
		return nil, nil, invalid("To %q: %v (want one address, e.g. ops@example.com)", m.To, err)
	}
	if strings.TrimSpace(m.From) == "" {
		return nil, nil, invalid("From is empty")
	}
	if hasControl(m.From) {
		return nil, nil, invalid("From contains a line break or control character")
	}
	from, err = mail.ParseAddress(m.From)
	if err != nil {
		return nil, nil, invalid("From %q: %v (want keyward@example.com or \"Keyward <keyward@example.com>\")", m.From, err)
	}
	if hasControl(m.Subject) {
		return nil, nil, invalid("Subject contains a line break or control character")
	}
	if m.MessageID != "" {
		id := m.messageID()
		if id == "" || !strings.Contains(id, "@") || strings.ContainsAny(id, " \t<>\"\\") || hasControl(id) ||
			strings.ContainsFunc(id, func(r rune) bool { return r > 0x7e }) {
			return nil, nil, invalid("MessageID %q: want left@right in printable ASCII without spaces or angle brackets", m.MessageID)
		}
	}
	for k, v := range m.Headers {
		if !validHeaderName(k) {
			return nil, nil, invalid("header name %q: want printable ASCII without spaces or colon", k)
		}
		if slices.Contains(reservedHeaders, textproto.CanonicalMIMEHeaderKey(k)) {
			return nil, nil, invalid("header %q is set from the Message fields; use them instead", k)
		}
		if hasControl(v) {
			return nil, nil, invalid("header %q contains a line break or control character", k)
		}
	}
	if m.Text == "" && m.HTML == "" {
		return nil, nil, invalid("no body: set Text, HTML or both")
	}
	return from, to, nil
}

func (m *Message) messageID() string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(m.MessageID), "<"), ">")
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// build validates m and returns the go-mail Msg and the envelope recipient.
func (m *Message) build(now time.Time) (*gomail.Msg, string, error) {
	from, to, err := m.parse()
	if err != nil {
		return nil, "", err
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(from)
	msg.ToMailAddress(to)
	msg.Subject(m.Subject)
	if id := m.messageID(); id != "" {
		msg.SetMessageIDWithValue(id)
	} else {
		msg.SetMessageID()
	}
	date := m.Date
	if date.IsZero() {
		date = now
	}
	msg.SetDateWithValue(date)
	keys := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		msg.SetGenHeader(gomail.Header(k), m.Headers[k])
	}
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	case m.Text != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	default:
		msg.SetBodyString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, to.Address, nil
}

// WriteTo writes m as an RFC 5322 message (what the SMTP sender transmits
// and FileSink stores). Invalid messages fail with ErrInvalidMessage.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	msg, _, err := m.build(time.Now())
	if err != nil {
		return 0, err
	}
	return msg.WriteTo(w)
}
