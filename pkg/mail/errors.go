package mail

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// The closed set of errors a Sender returns, to match with errors.Is.
var (
	// ErrInvalidMessage: the Message cannot be sent as it is (empty or
	// unparsable address, CR/LF in a header, no body). Permanent.
	ErrInvalidMessage = errors.New("mail: invalid message")

	// ErrRejected: the server refused this message or recipient for good
	// (a 5xx reply to MAIL FROM, RCPT TO or DATA). Permanent: retrying the
	// same message will fail the same way. Matched by IsPermanent.
	ErrRejected = errors.New("mail: rejected by the SMTP server")

	// ErrAuth: the server refused our credentials, or does not offer the
	// configured mechanism. Transient for the message (it can go once the
	// configuration is fixed) but worth an operator's attention.
	ErrAuth = errors.New("mail: SMTP authentication failed")

	// ErrClosed: Send was called after Close.
	ErrClosed = errors.New("mail: sender is closed")
)

// IsPermanent reports whether err means this message will never be
// delivered as it is: ErrInvalidMessage, or ErrRejected (SMTP 5xx on
// MAIL FROM, RCPT TO or DATA). Do not retry it; dead-letter it with err as
// the reason.
//
// Everything else — connection refused, timeouts, TLS handshake failures,
// authentication failures, 4xx replies, a cancelled context — is transient:
// retry later. IsPermanent(nil) is false.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrInvalidMessage) || errors.Is(err, ErrRejected)
}

// DeliveryError is a failed SMTP delivery. It wraps the underlying error
// (a *gomail.SendError for replies, a network or TLS error for dials) and,
// for errors.Is, the matching sentinel: ErrRejected when Permanent, ErrAuth
// for authentication failures.
type DeliveryError struct {
	// Server is "smtp://host:port".
	Server string
	// Op is the step that failed: "dial", "connection check", "mail from",
	// "rcpt to", "data", "reset" or "send".
	Op string
	// Code is the SMTP reply code (e.g. 550), 0 when there was no reply.
	Code int
	// EnhancedCode is the RFC 3463 status (e.g. "5.1.1") when the server
	// sent one.
	EnhancedCode string
	// Permanent is true when the server refused the message for good.
	Permanent bool
	// Err is the underlying error.
	Err error

	sentinel error // ErrRejected, ErrAuth or nil
}

func (e *DeliveryError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("mail: %s %s failed (%s): %v", e.Server, e.Op, kind, e.Err)
}

// Unwrap returns the underlying error and the sentinel, if any.
func (e *DeliveryError) Unwrap() []error {
	if e.sentinel != nil {
		return []error{e.Err, e.sentinel}
	}
	return []error{e.Err}
}

// authErrors are go-mail's errors for a mechanism the server does not offer.
var authErrors = []error{
	gomail.ErrPlainAuthNotSupported,
	gomail.ErrLoginAuthNotSupported,
	gomail.ErrCramMD5AuthNotSupported,
	gomail.ErrNoSupportedAuthDiscovered,
}

// classifyDial turns an error from dialing (connect, greeting, EHLO,
// STARTTLS, AUTH) into a transient *DeliveryError.
func classifyDial(server string, err error) *DeliveryError {
	de := &DeliveryError{Server: server, Op: "dial", Err: err}
	var tpe *textproto.Error
	if errors.As(err, &tpe) {
		de.Code = tpe.Code
		de.EnhancedCode = enhancedCode(tpe.Msg)
		if tpe.Code == 535 || tpe.Code == 534 || tpe.Code == 454 && strings.HasPrefix(de.EnhancedCode, "4.7.") {
			de.sentinel = ErrAuth
		}
	}
	for _, ae := range authErrors {
		if errors.Is(err, ae) {
			de.sentinel = ErrAuth
		}
	}
	return de
}

// classifySend turns an error from go-mail's SendWithSMTPClient into a
// *DeliveryError. Only a 5xx reply to MAIL FROM, RCPT TO or the end of DATA
// is permanent; 530 ("authentication required") is a configuration problem
// and stays transient.
func classifySend(server string, err error) *DeliveryError {
	de := &DeliveryError{Server: server, Op: "send", Err: err}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return de
	}
	de.Code = se.ErrorCode()
	de.EnhancedCode = se.EnhancedStatusCode()
	switch se.Reason {
	case gomail.ErrConnCheck:
		de.Op = "connection check"
	case gomail.ErrSMTPMailFrom:
		de.Op = "mail from"
	case gomail.ErrSMTPRcptTo:
		de.Op = "rcpt to"
	case gomail.ErrSMTPData, gomail.ErrSMTPDataClose, gomail.ErrWriteContent:
		de.Op = "data"
	case gomail.ErrSMTPReset:
		de.Op = "reset"
	case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
		// Caught by Message.Validate before we get here; kept for safety.
		de.Permanent = true
		de.sentinel = ErrRejected
		return de
	}
	switch se.Reason {
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo, gomail.ErrSMTPData, gomail.ErrSMTPDataClose:
		if !se.IsTemp() && de.Code >= 500 && de.Code <= 599 {
			if de.Code == 530 {
				de.sentinel = ErrAuth
				return de
			}
			de.Permanent = true
			de.sentinel = ErrRejected
		}
	}
	return de
}

// keepsConnection reports whether the connection is still in a known state
// after err: the server answered with a reply code other than 421 (closing).
func (e *DeliveryError) keepsConnection() bool {
	return e.Op != "dial" && e.Op != "connection check" && e.Op != "reset" &&
		e.Code >= 400 && e.Code <= 599 && e.Code != 421
}

// enhancedCode returns the RFC 3463 status code at the start of an SMTP reply
// text ("5.7.8 Authentication failed" → "5.7.8"), or "".
func enhancedCode(msg string) string {
	first, _, _ := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0][:1], "245") {
		return ""
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return first
}
