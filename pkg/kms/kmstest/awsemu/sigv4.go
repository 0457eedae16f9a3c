package awsemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// authFailure is an AWS authentication error response.
type authFailure struct {
	status    int
	code, msg string
}

const (
	msgBadToken     = "The security token included in the request is invalid."
	msgBadSignature = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

// verify checks a request's SigV4 signature as AWS does (local-kms checks
// none): a known access key id (and its session token), a credential scope
// of this region and of kms, and the signature itself, recomputed with the
// SDK's signer over the headers the client signed. It records the access key
// id. It returns nil when the request is authentic.
func (e *Emulator) verify(r *http.Request, body []byte) *authFailure {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &authFailure{http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token"}
	}
	alg, rest, _ := strings.Cut(auth, " ")
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if alg != "AWS4-HMAC-SHA256" || len(scope) != 5 || scope[4] != "aws4_request" ||
		fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return &authFailure{http.StatusBadRequest, "IncompleteSignatureException", "The Authorization header is not a complete AWS4-HMAC-SHA256 signature."}
	}
	akid, region, service := scope[0], scope[2], scope[3]

	e.mu.Lock()
	e.signers = append(e.signers, akid)
	creds, known := e.creds[akid]
	e.mu.Unlock()

	switch {
	case !known || creds.SessionToken != r.Header.Get("X-Amz-Security-Token"):
		return &authFailure{http.StatusBadRequest, "UnrecognizedClientException", msgBadToken}
	case region != e.Region:
		return &authFailure{http.StatusBadRequest, "InvalidSignatureException", "Credential should be scoped to a valid region."}
	case service != "kms":
		return &authFailure{http.StatusBadRequest, "InvalidSignatureException", "Credential should be scoped to correct service: 'kms'."}
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || scope[1] != signedAt.Format("20060102") {
		return &authFailure{http.StatusBadRequest, "IncompleteSignatureException", "X-Amz-Date is missing or does not match the credential scope."}
	}

	// Re-sign a copy holding only what the client signed.
	signed := strings.Split(fields["SignedHeaders"], ";")
	cp := &http.Request{
		Method: r.Method,
		URL:    &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Host:   r.Host,
		Header: http.Header{},
	}
	if slices.Contains(signed, "content-length") {
		cp.ContentLength = r.ContentLength
	}
	for _, h := range signed {
		if h == "host" || h == "content-length" {
			continue
		}
		cp.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, cp, hex.EncodeToString(sum[:]), service, region, signedAt); err != nil {
		return &authFailure{http.StatusBadRequest, "InvalidSignatureException", msgBadSignature}
	}
	_, want, _ := strings.Cut(cp.Header.Get("Authorization"), "Signature=")
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return &authFailure{http.StatusBadRequest, "InvalidSignatureException", msgBadSignature}
	}
	return nil
}
