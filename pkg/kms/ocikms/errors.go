package ocikms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/oracle/oci-go-sdk/v65/common"
)

// Hints appended to error messages: what the status means and what to check.
const (
	hintThrottled = "OCI Vault is throttling requests to this vault; back off and retry"
	hintAuth      = "OCI could not authenticate the request: check the platform's credentials " +
		"(API key tenancy, user, fingerprint and private key, or the instance/resource principal) and the host clock"
	hintForbidden = "the platform's principal may not use this key: check the tenant's policy " +
		"(ocikms.PolicyStatements) admits the Keyward group to use key-family in the key's compartment"
	hintNotFound = "OCI does not distinguish a missing key from one the platform is not authorized to use " +
		"(NotAuthorizedOrNotFound): check the key OCID names an existing key in this vault and region, " +
		"and that the tenant's policy admits the Keyward group to use key-family with Encrypt, Decrypt " +
		"and GenerateDataEncryptionKey in the key's compartment"
	hintWrongEndpoint = "the endpoint does not serve this operation: use the vault's cryptographic endpoint " +
		"(https://<vault>-crypto.kms.<region>.oraclecloud.com), not its management endpoint"
	hintLocked   = "the key is locked by a concurrent operation; retry later"
	hintDisabled = "the key is not enabled (disabled, or scheduled or pending deletion): " +
		"the tenant must enable it or cancel its deletion"
	hintCiphertext = "OCI could not decrypt: the ciphertext was modified, truncated or made under another key, " +
		"or the encryption context (associated data) differs"
	hintInvalid     = "OCI refused the request as invalid"
	hintServer      = "OCI Vault answered with a server error"
	hintUnsupported = "OCI Vault does not implement this operation at this endpoint"
)

// mapping is one row of the error table: a service error whose HTTP status
// is in [minStatus, maxStatus] and whose OCI error code is one of codes (any
// code when codes is empty), for one of ops (any operation when empty), maps
// to code.
type mapping struct {
	minStatus, maxStatus int
	codes                []string // OCI error codes (common.ServiceError.GetCode); empty: any
	ops                  []string // OCI operations; empty: any
	code                 kms.Code
	hint                 string
}

// errorTable maps OCI service errors to kms codes; the first matching row
// wins. It is the only place where OCI status codes and error codes are
// interpreted (see the package documentation for the same table in prose).
// Transport errors (no HTTP answer) are classified by classify below.
var errorTable = []mapping{
	{429, 429, nil, nil, kms.CodeThrottled, hintThrottled},
	{401, 401, nil, nil, kms.CodeAccessDenied, hintAuth},
	{403, 403, nil, nil, kms.CodeAccessDenied, hintForbidden},
	{400, 400, []string{"InsufficientServicePermissions"}, nil, kms.CodeAccessDenied, hintForbidden},
	{404, 404, []string{"NotAuthorizedOrNotFound"}, nil, kms.CodeKeyNotFound, hintNotFound},
	{400, 400, []string{"RelatedResourceNotAuthorizedOrNotFound"}, nil, kms.CodeKeyNotFound, hintNotFound},
	{404, 404, []string{"NotFound"}, nil, kms.CodeInvalidArgument, hintWrongEndpoint},
	{404, 404, nil, nil, kms.CodeKeyNotFound, hintNotFound},
	{405, 405, nil, nil, kms.CodeInvalidArgument, hintWrongEndpoint},
	{409, 409, []string{"LockConflict"}, nil, kms.CodeThrottled, hintLocked},
	{409, 409, nil, nil, kms.CodeKeyDisabled, hintDisabled},
	{400, 400, []string{"ResourceDisabled"}, nil, kms.CodeKeyDisabled, hintDisabled},
	{400, 400, []string{"InvalidParameter"}, []string{opOCIDecrypt}, kms.CodeInvalidCiphertext, hintCiphertext},
	{400, 499, nil, nil, kms.CodeInvalidArgument, hintInvalid},
	{501, 501, nil, nil, kms.CodeInternal, hintUnsupported},
	{500, 599, nil, nil, kms.CodeEndpointUnreachable, hintServer},
}

// The OCI operations this package calls, as OCI names them (audit logs,
// policy conditions request.operation). GenerateDataEncryptionKey is listed
// for policies and the emulator; see the package documentation for why
// GenerateDataKey uses Encrypt.
const (
	opOCIGenerateDataEncryptionKey = "GenerateDataEncryptionKey"
	opOCIEncrypt                   = "Encrypt"
	opOCIDecrypt                   = "Decrypt"
)

// lookup returns the row of errorTable for a service error, or nil.
func lookup(ociOp string, status int, code string) *mapping {
	for i := range errorTable {
		m := &errorTable[i]
		if status < m.minStatus || status > m.maxStatus {
			continue
		}
		if len(m.codes) > 0 && !slices.Contains(m.codes, code) {
			continue
		}
		if len(m.ops) > 0 && !slices.Contains(m.ops, ociOp) {
			continue
		}
		return m
	}
	return nil
}

// callError is the underlying error of a failed OCI call: a short message
// (status, OCI code, request id, service message, what to check) over the
// SDK error, which stays reachable with errors.As (common.ServiceError,
// *url.Error, *net.OpError, ...).
type callError struct {
	msg string
	err error
}

func (e *callError) Error() string { return e.msg }
func (e *callError) Unwrap() error { return e.err }

// classify maps an error of an OCI call to a kms code and a message. The
// caller has already checked that its context is not done.
func classify(ociOp, endpoint string, err error) (kms.Code, error) {
	var se common.ServiceError
	if errors.As(err, &se) {
		status, code := se.GetHTTPStatusCode(), se.GetCode()
		msg := strings.TrimSuffix(se.GetMessage(), ".")
		if code == "BadErrorResponse" || len(msg) > 300 {
			// The SDK could not parse the error body and put the raw
			// body in the message; do not repeat unknown bytes.
			msg = "(error body not shown)"
		}
		m := lookup(ociOp, status, code)
		kcode, hint := kms.CodeInternal, "unexpected answer from OCI Vault"
		if m != nil {
			kcode, hint = m.code, m.hint
		}
		return kcode, &callError{
			msg: fmt.Sprintf("OCI %s returned HTTP %d %s (opc-request-id %s): %s: %s",
				ociOp, status, code, se.GetOpcRequestID(), msg, hint),
			err: err,
		}
	}
	if errors.Is(err, common.DeadlineExceededByBackoff) {
		return kms.CodeEndpointUnreachable, &callError{
			msg: fmt.Sprintf("OCI %s: no answer before the call's deadline: %v", ociOp, err),
			err: err,
		}
	}
	if isTransportError(err) {
		return kms.CodeEndpointUnreachable, &callError{
			msg: fmt.Sprintf("cannot reach the OCI Vault crypto endpoint %s: %v", endpoint, err),
			err: err,
		}
	}
	return kms.CodeInternal, &callError{msg: fmt.Sprintf("OCI %s: %v", ociOp, err), err: err}
}

// isTransportError reports whether err means the endpoint gave no usable
// HTTP answer: DNS failure, refused or reset connection, TLS failure,
// timeout, connection closed mid-answer.
func isTransportError(err error) bool {
	var (
		ue  *url.Error
		ne  net.Error
		de  *net.DNSError
		ce  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		rhe tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &ue), errors.As(err, &ne), errors.As(err, &de),
		errors.As(err, &ce), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &rhe):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.Is(err, context.DeadlineExceeded):
		// A timeout of the HTTP client itself (the caller's context is
		// still live, or classify would not be called).
		return true
	}
	return false
}

// isDNSNotFound reports whether err is a DNS answer that the host does not
// exist: retrying at once cannot help.
func isDNSNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
