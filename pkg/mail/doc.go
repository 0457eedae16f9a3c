// Package mail sends Keyward's outgoing email (the notifier's alerts).
//
// # Configuration
//
// KEYWARD_SMTP_URL is parsed by ParseURL:
//
//	smtp://user:password@host:587                  STARTTLS (required), AUTH PLAIN
//	smtp://user:password@host:587?tls=starttls     the same, explicit
//	smtps://user:password@host:465                 implicit TLS (also ?tls=tls, or smtp:// on port 465)
//	smtp://127.0.0.1:1025?tls=none                 no TLS: with credentials loopback only; without, any host (a local relay such as mailpit)
//	...?auth=login | auth=cram-md5 | auth=none      AUTH mechanism (default plain when a user is given)
//	...?pool=4                                     connections kept open and reused (default 2, max 32)
//
// Reserved characters in the user or password are percent-encoded (@ is
// %40); the host is a DNS name or an IP address (IPv6 in brackets). Errors from ParseURL name the part of the URL and the fix, and never
// contain the password; Config prints itself Redacted
// (smtp://user:xxxxx@host:587?tls=starttls) through String, GoString and
// slog's LogValue.
//
// # Messages
//
// A Message goes to exactly one recipient, so a bad address fails alone. It
// carries a caller-chosen MessageID (e.g. kw.<event id>.<recipient hash>@keyward)
// that receiving systems can use to deduplicate a retried send, extra headers
// such as X-Keyward-Event, and a text and/or HTML body
// (multipart/alternative when both are set). The MIME is built with
// github.com/wneessen/go-mail.
//
// # Senders
//
// NewSMTP returns a Sender over a pool of Config.PoolSize SMTP connections
// that are reused between messages, checked (NOOP) before reuse, and
// redialed after a failure. NewFileSink returns a Sender that writes each
// message to <dir>/<MessageID>.eml for development.
//
// # Errors
//
// Callers decide between retrying and dead-lettering with IsPermanent:
//
//   - ErrInvalidMessage (permanent): empty or unparsable From/To, more than one
//     To address, CR/LF or other control characters in the Subject, an address,
//     the MessageID or an extra header (header injection), a reserved extra
//     header, no body. Nothing was sent.
//   - ErrRejected (permanent), in a *DeliveryError: the server answered 5xx to
//     MAIL FROM, RCPT TO or the end of DATA — e.g. 550 5.1.1 unknown user.
//     The connection stays in the pool; other messages are unaffected.
//   - ErrAuth (transient), in a *DeliveryError: the credentials were refused
//     (535) or the mechanism is not offered. Retrying will not help until the
//     configuration is fixed; alert an operator.
//   - Everything else is transient: connection refused, timeouts, TLS
//     handshake failures, 4xx replies (451 4.3.0, 421), a cancelled context.
//     Retry later; the pool redials.
//   - ErrClosed: Send after Close.
//
// A *DeliveryError carries the step (Op), the SMTP reply Code and
// EnhancedCode, so a dead letter can say why.
//
// Package smtptest runs a real in-process SMTP server (STARTTLS, implicit TLS
// or plain text; AUTH PLAIN; injectable rejections and outages) for tests.
package mail
