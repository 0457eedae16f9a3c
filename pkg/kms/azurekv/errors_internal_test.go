package azurekv

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/keyward/keyward/pkg/kms"
)

// kvResponse builds the *azcore.ResponseError azkeys returns for a Key Vault
// error answer, the way runtime.NewResponseError does (ErrorCode from the
// body's error.code).
func kvResponse(status int, code, inner string) error {
	body := `{"error":{"code":"` + code + `","message":"msg"`
	if inner != "" {
		body += `,"innererror":{"code":"` + inner + `"}`
	}
	body += `}}`
	req, _ := http.NewRequest(http.MethodPost, "https://v.vault.azure.net/keys/k/wrapkey", nil)
	return &azcore.ResponseError{
		StatusCode: status,
		ErrorCode:  code,
		RawResponse: &http.Response{
			StatusCode: status, Status: http.StatusText(status), Request: req,
			Body: io.NopCloser(strings.NewReader(body)),
		},
	}
}

// tokenFailure builds what the credential wrapper returns when azidentity
// fails: a *TokenError around an *azidentity.AuthenticationFailedError,
// with Entra ID's answer (status 0: none).
func tokenFailure(status int, oauthCode string) error {
	afe := &azidentity.AuthenticationFailedError{}
	if status != 0 {
		afe.RawResponse = &http.Response{
			StatusCode: status, Status: http.StatusText(status),
			Body: io.NopCloser(strings.NewReader(`{"error":"` + oauthCode + `","error_description":"AADSTS0: d"}`)),
		}
	}
	return &TokenError{Scopes: []string{"https://vault.azure.net/.default"}, Err: afe}
}

// TestErrorTable has at least one row per kms.Code (checked at the end):
// SDK errors as azkeys and azidentity return them, and the code each must
// map to.
func TestErrorTable(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "https://v.vault.azure.net", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	dns := &url.Error{Op: "Post", URL: "https://v.vault.azure.net", Err: &net.DNSError{Err: "no such host", Name: "v.vault.azure.net", IsNotFound: true}}
	tests := []struct {
		name string
		op   string
		err  error
		want kms.Code
	}{
		{"429 Throttled", opWrapKey, kvResponse(429, "Throttled", ""), kms.CodeThrottled},
		{"token endpoint 429", opWrapKey, tokenFailure(429, "temporarily_unavailable"), kms.CodeThrottled},

		{"503", opWrapKey, kvResponse(503, "ServiceUnavailable", ""), kms.CodeEndpointUnreachable},
		{"500", opUnwrapKey, kvResponse(500, "InternalServerError", ""), kms.CodeEndpointUnreachable},
		{"408", opUnwrapKey, kvResponse(408, "RequestTimeout", ""), kms.CodeEndpointUnreachable},
		{"connection refused", opWrapKey, dial, kms.CodeEndpointUnreachable},
		{"DNS failure", opUnwrapKey, dns, kms.CodeEndpointUnreachable},
		{"bare net.Error", opWrapKey, &net.DNSError{Err: "timeout", IsTimeout: true}, kms.CodeEndpointUnreachable},
		{"connection reset mid-answer", opWrapKey, io.ErrUnexpectedEOF, kms.CodeEndpointUnreachable},
		{"token endpoint 503", opWrapKey, tokenFailure(503, "temporarily_unavailable"), kms.CodeEndpointUnreachable},
		{"token endpoint unreachable", opWrapKey, tokenFailure(0, ""), kms.CodeEndpointUnreachable},

		{"403 Forbidden/KeyDisabled", opWrapKey, kvResponse(403, "Forbidden", "KeyDisabled"), kms.CodeKeyDisabled},
		{"403 Forbidden/KeyDisabled on unwrap", opUnwrapKey, kvResponse(403, "Forbidden", "KeyDisabled"), kms.CodeKeyDisabled},
		{"400 BadParameter/KeyDisabled", opUnwrapKey, kvResponse(400, "BadParameter", "KeyDisabled"), kms.CodeKeyDisabled},
		{"403 KeyDisabled as top-level code", opWrapKey, kvResponse(403, "KeyDisabled", ""), kms.CodeKeyDisabled},

		{"401 token refused", opWrapKey, kvResponse(401, "Unauthorized", ""), kms.CodeAccessDenied},
		{"403 Forbidden/AccessDenied (access policy)", opUnwrapKey, kvResponse(403, "Forbidden", "AccessDenied"), kms.CodeAccessDenied},
		{"403 Forbidden/ForbiddenByPolicy", opUnwrapKey, kvResponse(403, "Forbidden", "ForbiddenByPolicy"), kms.CodeAccessDenied},
		{"403 Forbidden/ForbiddenByRbac", opWrapKey, kvResponse(403, "Forbidden", "ForbiddenByRbac"), kms.CodeAccessDenied},
		{"403 Forbidden/ForbiddenByFirewall", opWrapKey, kvResponse(403, "Forbidden", "ForbiddenByFirewall"), kms.CodeAccessDenied},
		{"403 without inner code", opWrapKey, kvResponse(403, "Forbidden", ""), kms.CodeAccessDenied},
		{"token: invalid_client (wrong secret)", opWrapKey, tokenFailure(401, "invalid_client"), kms.CodeAccessDenied},
		{"token: unauthorized_client", opUnwrapKey, tokenFailure(400, "unauthorized_client"), kms.CodeAccessDenied},
		{"token: credential unavailable", opWrapKey, &TokenError{Err: errors.New("no managed identity endpoint is available")}, kms.CodeAccessDenied},

		{"404 KeyNotFound", opWrapKey, kvResponse(404, "KeyNotFound", ""), kms.CodeKeyNotFound},
		{"404 KeyNotFound on unwrap", opUnwrapKey, kvResponse(404, "KeyNotFound", ""), kms.CodeKeyNotFound},

		{"400 BadParameter on unwrap", opUnwrapKey, kvResponse(400, "BadParameter", ""), kms.CodeInvalidCiphertext},

		{"400 BadParameter on wrap", opWrapKey, kvResponse(400, "BadParameter", ""), kms.CodeInvalidArgument},

		{"409 Conflict", opWrapKey, kvResponse(409, "Conflict", ""), kms.CodeInternal},
		{"unexpected error", opUnwrapKey, errors.New("json: cannot unmarshal"), kms.CodeInternal},
	}
	seen := map[kms.Code]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, desc := classify(tt.op, tt.err)
			if got != tt.want {
				t.Errorf("classify(%s, %v) = %s, want %s", tt.op, tt.err, got, tt.want)
			}
			if desc == "" || strings.Contains(desc, "\n") {
				t.Errorf("classify description %q is empty or spans lines", desc)
			}
			// Through sdkError: a *kms.Error whose chain still holds the SDK error.
			p := &Provider{}
			key := kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")
			kerr := p.sdkError(context.Background(), kms.OpEncrypt, tt.op, key, tt.err)
			if kms.CodeOf(kerr) != tt.want || !errors.Is(kerr, tt.want.Sentinel()) || !errors.Is(kerr, tt.err) {
				t.Errorf("sdkError = %v (code %s), want code %s wrapping the SDK error", kerr, kms.CodeOf(kerr), tt.want)
			}
		})
		seen[tt.want] = true
	}
	for _, c := range kms.Codes() {
		if !seen[c] {
			t.Errorf("no row for code %s", c)
		}
	}
}

// TestErrorTableCancellation: the caller's ended context wins over the
// table, whatever the SDK said.
func TestErrorTableCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := &Provider{}
	key := kms.MustParseKeyURI("azurekv://v.vault.azure.net/keys/k")
	err := p.sdkError(ctx, kms.OpDecrypt, opUnwrapKey, key, kvResponse(503, "ServiceUnavailable", ""))
	if kms.CodeOf(err) != kms.CodeInternal || !errors.Is(err, context.Canceled) || kms.IsEndpointFailure(err) {
		t.Fatalf("sdkError with a cancelled context = %v, want internal matching context.Canceled", err)
	}
}

func TestErrorTableRowsDocumented(t *testing.T) {
	for i, row := range errorTable {
		if row.when == "" || !row.code.Valid() {
			t.Errorf("row %d: code %q, description %q", i, row.code, row.when)
		}
	}
	if last := errorTable[len(errorTable)-1]; last.code != kms.CodeInternal || !last.match(facts{}) {
		t.Error("the last row must match everything as internal")
	}
}
