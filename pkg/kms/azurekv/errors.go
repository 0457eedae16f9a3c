package azurekv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/keyward/keyward/pkg/kms"
)

// Key Vault operation names, as in its REST API and audit log.
const (
	opWrapKey   = "wrapKey"
	opUnwrapKey = "unwrapKey"
)

// facts is what the error table looks at, extracted once from an SDK error.
type facts struct {
	op        string   // opWrapKey or opUnwrapKey
	token     bool     // getting a Microsoft Entra token failed (a *TokenError)
	authFail  bool     // ... with an *azidentity.AuthenticationFailedError (a token request was made)
	status    int      // HTTP status of the answer (Key Vault's, or Entra ID's for token), 0 if none
	code      string   // Key Vault error code (ResponseError.ErrorCode) or the OAuth "error"
	inner     []string // Key Vault inner error codes, outermost first
	transport bool     // no HTTP answer: DNS, refused or reset connection, TLS, I/O timeout
}

func (f facts) has(code string) bool {
	return strings.EqualFold(f.code, code) || slices.ContainsFunc(f.inner, func(c string) bool { return strings.EqualFold(c, code) })
}

// errorTable maps an SDK failure to a kms.Code: the first matching row wins.
// It is the only place Azure errors are classified (the caller's own ended
// context is checked before it; local checks — malformed header, context
// digest, bad input — set their codes directly). Codes are matched on HTTP
// status and Key Vault / OAuth error codes, never on message text.
var errorTable = [...]struct {
	code  kms.Code
	when  string
	match func(f facts) bool
}{
	{kms.CodeThrottled, "HTTP 429 from Key Vault or Microsoft Entra ID",
		func(f facts) bool { return f.status == http.StatusTooManyRequests }},
	{kms.CodeEndpointUnreachable, "HTTP 5xx or 408 from Key Vault or Microsoft Entra ID",
		func(f facts) bool { return f.status >= 500 || f.status == http.StatusRequestTimeout }},
	{kms.CodeEndpointUnreachable, "no HTTP answer: DNS failure, refused or reset connection, TLS failure, I/O timeout",
		func(f facts) bool { return f.transport }},
	{kms.CodeEndpointUnreachable, "no token: the token request got no HTTP answer from Microsoft Entra ID",
		func(f facts) bool { return f.authFail && f.status == 0 }},
	{kms.CodeAccessDenied, "no token: Microsoft Entra ID refused Keyward's credential (HTTP 4xx: invalid_client, unauthorized_client, invalid_tenant, ...), or the credential is unusable here (e.g. no managed identity)",
		func(f facts) bool { return f.token }},
	{kms.CodeKeyDisabled, "HTTP 403 or 400 with code or inner code KeyDisabled",
		func(f facts) bool {
			return (f.status == http.StatusForbidden || f.status == http.StatusBadRequest) && f.has("KeyDisabled")
		}},
	{kms.CodeAccessDenied, "HTTP 401 (token refused) or 403 (Forbidden: AccessDenied, ForbiddenByPolicy, ForbiddenByRbac, ForbiddenByFirewall)",
		func(f facts) bool { return f.status == http.StatusUnauthorized || f.status == http.StatusForbidden }},
	{kms.CodeKeyNotFound, "HTTP 404 (KeyNotFound): no such key or version",
		func(f facts) bool { return f.status == http.StatusNotFound }},
	{kms.CodeInvalidCiphertext, "HTTP 400 (BadParameter) answering unwrapKey: the value does not unwrap under this key",
		func(f facts) bool { return f.status == http.StatusBadRequest && f.op == opUnwrapKey }},
	{kms.CodeInvalidArgument, "HTTP 400 (BadParameter) answering wrapKey: algorithm or value refused",
		func(f facts) bool { return f.status == http.StatusBadRequest && f.op == opWrapKey }},
	{kms.CodeInternal, "anything else",
		func(facts) bool { return true }},
}

// classify returns the code of err (from the azkeys call op) per errorTable,
// and a one-line description of the failure.
func classify(op string, err error) (kms.Code, string) {
	f := facts{op: op}
	var desc string
	var te *TokenError
	var re *azcore.ResponseError
	var ae *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &te):
		f.token = true
		desc = te.Error()
		if errors.As(te.Err, &ae) {
			f.authFail = true
			if ae.RawResponse != nil {
				f.status = ae.RawResponse.StatusCode
				f.code, _ = oauthError(ae.RawResponse)
			}
		}
	case errors.As(err, &re):
		f.status = re.StatusCode
		f.code = re.ErrorCode
		var msg string
		msg, f.inner = kvError(re.RawResponse)
		if f.code == "" && len(f.inner) > 0 {
			f.code, f.inner = f.inner[0], f.inner[1:]
		}
		desc = describeResponse(op, re, f, msg)
	default:
		f.transport = isTransport(err)
		desc = op + ": " + err.Error()
	}
	for _, row := range errorTable {
		if row.match(f) {
			return row.code, desc
		}
	}
	return kms.CodeInternal, desc // unreachable: the last row matches everything
}

// sdkError turns an error of the azkeys call kvOp into a *kms.Error: the
// caller's ended context first, then errorTable. The SDK error stays
// reachable with errors.As.
func (p *Provider) sdkError(ctx context.Context, op, kvOp string, key kms.KeyURI, err error) *kms.Error {
	if ctx.Err() != nil {
		return newError(kms.CodeInternal, op, key, &sdkError{msg: kms.CanceledCause(ctx).Error(), err: errors.Join(kms.CanceledCause(ctx), err)})
	}
	code, desc := classify(kvOp, err)
	return newError(code, op, key, &sdkError{msg: desc, err: err})
}

// sdkError keeps the SDK error reachable (errors.As) behind a one-line
// message: azcore's own messages span many lines.
type sdkError struct {
	msg string
	err error
}

func (e *sdkError) Error() string { return e.msg }
func (e *sdkError) Unwrap() error { return e.err }

// isTransport reports whether err is a failure to get any HTTP answer.
func isTransport(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// kvError reads Key Vault's error body, {"error": {"code", "message",
// "innererror": {"code", "innererror": ...}}}, returning the message and the
// inner codes.
func kvError(resp *http.Response) (msg string, inner []string) {
	if resp == nil {
		return "", nil
	}
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return "", nil
	}
	type innerError struct {
		Code       string          `json:"code"`
		InnerError json.RawMessage `json:"innererror"`
	}
	var e struct {
		Error *struct {
			Message    string          `json:"message"`
			InnerError json.RawMessage `json:"innererror"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return "", nil
	}
	raw := e.Error.InnerError
	for depth := 0; len(raw) > 0 && depth < 8; depth++ {
		var ie innerError
		if json.Unmarshal(raw, &ie) != nil {
			break
		}
		if ie.Code != "" {
			inner = append(inner, ie.Code)
		}
		raw = ie.InnerError
	}
	return e.Error.Message, inner
}

// oauthError reads an OAuth 2.0 error body from Microsoft Entra ID:
// {"error": "invalid_client", "error_description": "AADSTS7000215: ..."}.
func oauthError(resp *http.Response) (code, desc string) {
	body, err := runtime.Payload(resp)
	if err != nil {
		return "", ""
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	return e.Error, e.Description
}

// summarizeTokenError describes a credential failure on one line.
func summarizeTokenError(err error) string {
	var ae *azidentity.AuthenticationFailedError
	if errors.As(err, &ae) && ae.RawResponse != nil {
		code, desc := oauthError(ae.RawResponse)
		s := fmt.Sprintf("HTTP %d", ae.RawResponse.StatusCode)
		if code != "" {
			s += " " + code
		}
		if desc != "" {
			s += ": " + firstLine(desc)
		}
		return s
	}
	return firstLine(err.Error())
}

func describeResponse(op string, re *azcore.ResponseError, f facts, msg string) string {
	var b strings.Builder
	b.WriteString(op)
	if re.RawResponse != nil && re.RawResponse.Request != nil {
		b.WriteByte(' ')
		b.WriteString(re.RawResponse.Request.URL.Path)
	}
	fmt.Fprintf(&b, ": HTTP %d", f.status)
	if f.code != "" {
		b.WriteByte(' ')
		b.WriteString(f.code)
	}
	for _, c := range f.inner {
		b.WriteByte('/')
		b.WriteString(c)
	}
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(firstLine(msg))
	}
	return b.String()
}

// firstLine keeps the first line of s, at most 300 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
