package ociemu

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxClockSkew is how far a request's date may be from the emulator's clock,
// as OCI allows.
const MaxClockSkew = 5 * time.Minute

// Why a request was refused with 401 NotAuthenticated (AuthFailures).
var (
	ErrUnsigned       = errors.New("ociemu: request is not signed (no Authorization: Signature header)")
	ErrMalformedAuth  = errors.New("ociemu: malformed Authorization header")
	ErrUnknownKeyID   = errors.New("ociemu: signature keyId names no known API key")
	ErrMissingHeaders = errors.New("ociemu: signature does not cover the required headers")
	ErrBadSignature   = errors.New("ociemu: signature does not verify")
	ErrBodyHash       = errors.New("ociemu: x-content-sha256 or content-length does not match the body")
	ErrStaleDate      = errors.New("ociemu: request date is missing or outside the allowed clock skew")
)

// signature is a parsed draft-cavage Authorization header.
type signature struct {
	version, keyID, algorithm string
	headers                   []string
	sig                       []byte
}

// parseAuthorization parses
//
//	Signature version="1",headers="date (request-target) host ...",keyId="t/u/fp",algorithm="rsa-sha256",signature="<base64>"
func parseAuthorization(h string) (*signature, error) {
	rest, ok := strings.CutPrefix(h, "Signature ")
	if !ok {
		return nil, ErrUnsigned
	}
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		name, after, ok := strings.Cut(rest, "=")
		if !ok || !strings.HasPrefix(after, `"`) {
			return nil, fmt.Errorf("%w: parameter %q has no quoted value", ErrMalformedAuth, name)
		}
		end := strings.IndexByte(after[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated value of %q", ErrMalformedAuth, name)
		}
		name = strings.TrimSpace(name)
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("%w: parameter %q repeated", ErrMalformedAuth, name)
		}
		params[name] = after[1 : 1+end]
		rest = strings.TrimSpace(after[2+end:])
		rest = strings.TrimSpace(strings.TrimPrefix(rest, ","))
	}
	s := &signature{version: params["version"], keyID: params["keyId"], algorithm: params["algorithm"]}
	if s.version != "1" {
		return nil, fmt.Errorf("%w: version %q, want \"1\"", ErrMalformedAuth, s.version)
	}
	if s.algorithm != "rsa-sha256" {
		return nil, fmt.Errorf("%w: algorithm %q, want rsa-sha256", ErrMalformedAuth, s.algorithm)
	}
	if s.keyID == "" {
		return nil, fmt.Errorf("%w: no keyId", ErrMalformedAuth)
	}
	if params["headers"] == "" {
		return nil, fmt.Errorf("%w: no headers", ErrMalformedAuth)
	}
	s.headers = strings.Fields(strings.ToLower(params["headers"]))
	sig, err := base64.StdEncoding.DecodeString(params["signature"])
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("%w: signature is not base64", ErrMalformedAuth)
	}
	s.sig = sig
	return s, nil
}

// authenticate verifies the OCI request signature of r (whose body is
// body) the way OCI does for API keys: keyId "<tenancy>/<user>/<fingerprint>"
// of the emulator's user; rsa-sha256 (PKCS #1 v1.5) over the signing string
// of the signed headers, which must include date (or x-date),
// (request-target) and host, and for POST, PUT and PATCH also
// content-length, content-type and x-content-sha256; x-content-sha256 and
// content-length must match the body; the date must be within
// MaxClockSkew of the emulator's clock.
func (e *Emulator) authenticate(r *http.Request, body []byte) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return ErrUnsigned
	}
	s, err := parseAuthorization(h)
	if err != nil {
		return err
	}
	if s.keyID != e.TenancyOCID+"/"+e.UserOCID+"/"+e.Fingerprint {
		return fmt.Errorf("%w: %q", ErrUnknownKeyID, s.keyID)
	}
	required := []string{"(request-target)", "host"}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		required = append(required, "content-length", "content-type", "x-content-sha256")
	}
	for _, name := range required {
		if !slices.Contains(s.headers, name) {
			return fmt.Errorf("%w: %s is not signed", ErrMissingHeaders, name)
		}
	}
	dateHeader := "date"
	if !slices.Contains(s.headers, "date") {
		if !slices.Contains(s.headers, "x-date") {
			return fmt.Errorf("%w: neither date nor x-date is signed", ErrMissingHeaders)
		}
		dateHeader = "x-date"
	}

	lines := make([]string, len(s.headers))
	for i, name := range s.headers {
		var v string
		switch name {
		case "(request-target)":
			v = strings.ToLower(r.Method) + " " + r.URL.RequestURI()
		case "host":
			v = r.Host
		case "content-length":
			v = r.Header.Get("Content-Length")
			if v == "" && r.ContentLength >= 0 {
				v = strconv.FormatInt(r.ContentLength, 10)
			}
		default:
			vals := r.Header.Values(name)
			if len(vals) != 1 {
				return fmt.Errorf("%w: signed header %s appears %d times", ErrMissingHeaders, name, len(vals))
			}
			v = vals[0]
		}
		lines[i] = name + ": " + v
	}
	digest := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	if err := rsa.VerifyPKCS1v15(e.publicKey, crypto.SHA256, digest[:], s.sig); err != nil {
		return ErrBadSignature
	}

	// The signature holds; now what it vouches for must be true.
	if slices.Contains(s.headers, "x-content-sha256") {
		sum := sha256.Sum256(body)
		if r.Header.Get("X-Content-Sha256") != base64.StdEncoding.EncodeToString(sum[:]) {
			return fmt.Errorf("%w: x-content-sha256 differs from the SHA-256 of the body", ErrBodyHash)
		}
	}
	if slices.Contains(s.headers, "content-length") {
		if n, err := strconv.Atoi(r.Header.Get("Content-Length")); err == nil && n != len(body) {
			return fmt.Errorf("%w: content-length %d, body is %d bytes", ErrBodyHash, n, len(body))
		}
	}
	t, err := http.ParseTime(r.Header.Get(dateHeader))
	if err != nil {
		return fmt.Errorf("%w: %s is not an HTTP date", ErrStaleDate, dateHeader)
	}
	if skew := e.now().Sub(t); skew > MaxClockSkew || skew < -MaxClockSkew {
		return fmt.Errorf("%w: %s is %v from the server's clock", ErrStaleDate, dateHeader, skew.Round(time.Second))
	}
	return nil
}
