package ocikms

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/oracle/oci-go-sdk/v65/common"
)

// fakeServiceError is a common.ServiceError as the SDK returns for an HTTP
// error answer.
type fakeServiceError struct {
	status  int
	code    string
	message string
}

func (e fakeServiceError) GetHTTPStatusCode() int  { return e.status }
func (e fakeServiceError) GetMessage() string      { return e.message }
func (e fakeServiceError) GetCode() string         { return e.code }
func (e fakeServiceError) GetOpcRequestID() string { return "REQ1" }
func (e fakeServiceError) Error() string {
	return fmt.Sprintf("Error returned by KmsCrypto Service. Http Status Code: %d. Error Code: %s. Message: %s", e.status, e.code, e.message)
}

func svc(status int, code string) error {
	return fakeServiceError{status: status, code: code, message: "service says no."}
}

func dialErr(err error) error {
	return &url.Error{Op: "Post", URL: "https://v-crypto.kms.us-ashburn-1.oraclecloud.com/20180608/encrypt",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: err}}
}

// TestErrorTable is the table test of the error mapping: one group of cases
// per kms code, every row of errorTable exercised.
func TestErrorTable(t *testing.T) {
	cases := map[kms.Code][]struct {
		name  string
		ociOp string
		err   error
		hint  string // the row's hint, for service errors
	}{
		kms.CodeEndpointUnreachable: {
			{"500 InternalServerError", opOCIEncrypt, svc(500, "InternalServerError"), hintServer},
			{"502", opOCIDecrypt, svc(502, "BadGateway"), hintServer},
			{"503 ServiceUnavailable", opOCIEncrypt, svc(503, "ServiceUnavailable"), hintServer},
			{"504", opOCIEncrypt, svc(504, ""), hintServer},
			{"connection refused", opOCIEncrypt, dialErr(os.NewSyscallError("connect", syscall.ECONNREFUSED)), ""},
			{"DNS not found", opOCIEncrypt, dialErr(&net.DNSError{Err: "no such host", Name: "v-crypto.kms.us-ashburn-1.oraclecloud.com", IsNotFound: true}), ""},
			{"connection reset", opOCIDecrypt, fmt.Errorf("read: %w", syscall.ECONNRESET), ""},
			{"unexpected EOF", opOCIDecrypt, io.ErrUnexpectedEOF, ""},
			{"TLS unknown authority", opOCIEncrypt, &url.Error{Op: "Post", URL: "https://x", Err: x509.UnknownAuthorityError{}}, ""},
			{"HTTP client timeout", opOCIEncrypt, &url.Error{Op: "Post", URL: "https://x", Err: context.DeadlineExceeded}, ""},
			{"SDK backoff past deadline", opOCIEncrypt, common.DeadlineExceededByBackoff, ""},
		},
		kms.CodeThrottled: {
			{"429 TooManyRequests", opOCIEncrypt, svc(429, "TooManyRequests"), hintThrottled},
			{"429 other code", opOCIDecrypt, svc(429, "RateLimited"), hintThrottled},
			{"409 LockConflict", opOCIEncrypt, svc(409, "LockConflict"), hintLocked},
		},
		kms.CodeKeyDisabled: {
			{"409 IncorrectState (DISABLED)", opOCIEncrypt, svc(409, "IncorrectState"), hintDisabled},
			{"409 Conflict (PENDING_DELETION)", opOCIDecrypt, svc(409, "Conflict"), hintDisabled},
			{"400 ResourceDisabled", opOCIEncrypt, svc(400, "ResourceDisabled"), hintDisabled},
		},
		kms.CodeAccessDenied: {
			{"401 NotAuthenticated", opOCIEncrypt, svc(401, "NotAuthenticated"), hintAuth},
			{"403 NotAuthorized", opOCIDecrypt, svc(403, "NotAuthorized"), hintForbidden},
			{"403 NotAllowed", opOCIDecrypt, svc(403, "NotAllowed"), hintForbidden},
			{"400 InsufficientServicePermissions", opOCIEncrypt, svc(400, "InsufficientServicePermissions"), hintForbidden},
		},
		kms.CodeKeyNotFound: {
			{"404 NotAuthorizedOrNotFound", opOCIEncrypt, svc(404, "NotAuthorizedOrNotFound"), hintNotFound},
			{"404 NotAuthorizedOrNotFound on Decrypt", opOCIDecrypt, svc(404, "NotAuthorizedOrNotFound"), hintNotFound},
			{"400 RelatedResourceNotAuthorizedOrNotFound", opOCIEncrypt, svc(400, "RelatedResourceNotAuthorizedOrNotFound"), hintNotFound},
			{"404 other code", opOCIEncrypt, svc(404, "KeyNotFound"), hintNotFound},
		},
		kms.CodeInvalidCiphertext: {
			{"400 InvalidParameter on Decrypt", opOCIDecrypt, svc(400, "InvalidParameter"), hintCiphertext},
		},
		kms.CodeInvalidArgument: {
			{"400 InvalidParameter on Encrypt", opOCIEncrypt, svc(400, "InvalidParameter"), hintInvalid},
			{"400 MissingParameter", opOCIEncrypt, svc(400, "MissingParameter"), hintInvalid},
			{"400 CannotParseRequest", opOCIDecrypt, svc(400, "CannotParseRequest"), hintInvalid},
			{"413", opOCIEncrypt, svc(413, "PayloadTooLarge"), hintInvalid},
			{"404 NotFound (management endpoint)", opOCIEncrypt, svc(404, "NotFound"), hintWrongEndpoint},
			{"405 MethodNotAllowed", opOCIEncrypt, svc(405, "MethodNotAllowed"), hintWrongEndpoint},
		},
		kms.CodeInternal: {
			{"501 MethodNotImplemented", opOCIEncrypt, svc(501, "MethodNotImplemented"), hintUnsupported},
			{"unexpected status 302", opOCIEncrypt, svc(302, "Found"), ""},
			{"signing failed", opOCIEncrypt, errors.New("can not compute signature"), ""},
		},
	}
	used := map[*mapping]bool{}
	for _, code := range kms.Codes() {
		if len(cases[code]) == 0 {
			t.Errorf("no error table case for code %s", code)
		}
		t.Run(string(code), func(t *testing.T) {
			for _, tc := range cases[code] {
				got, err := classify(tc.ociOp, "https://v-crypto.kms.us-ashburn-1.oraclecloud.com", tc.err)
				if got != code {
					t.Errorf("%s: classify(%v) = %s, want %s", tc.name, tc.err, got, code)
				}
				if !errors.Is(err, tc.err) {
					t.Errorf("%s: the SDK error is not reachable from %v", tc.name, err)
				}
				if se, ok := serviceError(tc.err); ok {
					if m := lookup(tc.ociOp, se.GetHTTPStatusCode(), se.GetCode()); m != nil {
						used[m] = true
						if m.hint != tc.hint {
							t.Errorf("%s: row hint = %q, want %q", tc.name, m.hint, tc.hint)
						}
					} else if tc.hint != "" {
						t.Errorf("%s: no table row, want one with hint %q", tc.name, tc.hint)
					}
				}
				// As a *kms.Error it unwraps to the code's sentinel and to the SDK error.
				ke := newError(got, kms.OpEncrypt, kms.KeyURI{}, err)
				if !errors.Is(ke, code.Sentinel()) {
					t.Errorf("%s: errors.Is(err, %v) = false", tc.name, code.Sentinel())
				}
				var sdk common.ServiceError
				if _, isSvc := serviceError(tc.err); isSvc && !errors.As(ke, &sdk) {
					t.Errorf("%s: errors.As(err, *common.ServiceError) = false", tc.name)
				}
			}
		})
	}
	for i := range errorTable {
		if !used[&errorTable[i]] {
			t.Errorf("errorTable row %d (%d-%d %v → %s) has no test case", i, errorTable[i].minStatus, errorTable[i].maxStatus, errorTable[i].codes, errorTable[i].code)
		}
	}
}

// TestNotFoundSaysAmbiguous: OCI answers NotAuthorizedOrNotFound for a
// missing key and for a missing policy alike; the mapping is key_not_found
// and its hint names both causes.
func TestNotFoundSaysAmbiguous(t *testing.T) {
	m := lookup(opOCIDecrypt, 404, "NotAuthorizedOrNotFound")
	if m == nil || m.code != kms.CodeKeyNotFound || m.hint != hintNotFound {
		t.Fatalf("lookup(404 NotAuthorizedOrNotFound) = %+v, want key_not_found with hintNotFound", m)
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"500", svc(500, "InternalServerError"), true},
		{"503", svc(503, "ServiceUnavailable"), true},
		{"501", svc(501, "MethodNotImplemented"), false},
		{"429", svc(429, "TooManyRequests"), false},
		{"409", svc(409, "IncorrectState"), false},
		{"404", svc(404, "NotAuthorizedOrNotFound"), false},
		{"refused", dialErr(os.NewSyscallError("connect", syscall.ECONNREFUSED)), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unknown host", dialErr(&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}), false},
		{"DNS timeout", dialErr(&net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}), true},
		{"other", errors.New("boom"), false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBadErrorResponseNotEchoed: when the SDK cannot parse an error body it
// puts the raw body in the message; that body is not repeated.
func TestBadErrorResponseNotEchoed(t *testing.T) {
	const body = "SECRETBODYBYTES-0123456789abcdef"
	_, err := classify(opOCIEncrypt, "https://x", fakeServiceError{status: 502, code: "BadErrorResponse", message: body})
	var ce *callError
	if !errors.As(err, &ce) {
		t.Fatalf("classify err = %T, want *callError", err)
	}
	if got := ce.msg; len(got) == 0 || strings.Contains(got, body) {
		t.Fatalf("message %q repeats the unparsed body", got)
	}
}
