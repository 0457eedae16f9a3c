package awskms

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keyward/keyward/pkg/kms"
)

// Reason refines a kms.Code with what AWS said, where AWS said more than
// the code: the key-health monitor and the notifier can tell a tenant "your
// key is pending deletion" rather than "unavailable". ReasonOf reads it.
type Reason string

// The reasons.
const (
	ReasonKeyDisabled        Reason = "key_disabled"         // DisabledException
	ReasonKeyPendingDeletion Reason = "key_pending_deletion" // KMSInvalidStateException, pending deletion
	ReasonKeyState           Reason = "key_state"            // KMSInvalidStateException, another state
	ReasonKeyUnavailable     Reason = "key_unavailable"      // KeyUnavailableException
	ReasonNotAllowed         Reason = "not_allowed"          // key policy, grant or IAM denies the operation
	ReasonCredentials        Reason = "credentials"          // AWS rejects Keyward's credentials, or there are none
	ReasonKeyNotFound        Reason = "key_not_found"        // NotFoundException
	ReasonNotSymmetricKey    Reason = "not_symmetric_key"    // InvalidKeyUsageException
)

// ReasonError is the Err of a *kms.Error whose cause AWS explained: the
// Reason, a message for operators, and the SDK error.
type ReasonError struct {
	Reason  Reason
	Message string
	Err     error
}

func (e *ReasonError) Error() string { return e.Message + ": " + e.Err.Error() }

// Unwrap returns the SDK error.
func (e *ReasonError) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of the first *ReasonError in err's chain, or
// "" if there is none.
func ReasonOf(err error) Reason {
	var re *ReasonError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// errorRow is one row of the error table: the AWS error codes
// (smithy.APIError.ErrorCode(), the "__type" of a JSON error) that map to one
// kms.Code.
type errorRow struct {
	awsCodes []string
	code     kms.Code
	// decrypt, when set, is the code for Decrypt calls.
	decrypt kms.Code
	// explain, when set, says what the error means for Keyward and what to
	// do; the message prefixes the SDK's.
	explain func(op string, e smithy.APIError) (Reason, string)
}

// codeOf returns the error code of one of the SDK's typed exceptions, so the
// table names them through the SDK rather than by hand.
func codeOf(e smithy.APIError) string { return e.ErrorCode() }

// errorTable is the one table mapping AWS KMS errors onto kms codes. Typed
// exceptions of the KMS API are named through the SDK types; the others are
// AWS's common errors, which the SDK reports as smithy.GenericAPIError with
// the same code. Errors without an AWS error code are classified after the
// table (see classify): the HTTP status, then network errors.
var errorTable = []errorRow{
	{
		// The service failed or a dependency timed out: retry, count
		// against the endpoint.
		awsCodes: []string{
			codeOf(&kmstypes.KMSInternalException{}), codeOf(&kmstypes.DependencyTimeoutException{}),
			"InternalFailure", "ServiceUnavailable", "RequestTimeoutException",
		},
		code: kms.CodeEndpointUnreachable,
	},
	{
		// Rate limits (LimitExceededException: a request quota, e.g. the
		// cryptographic-operations quota shared by the tenant's account).
		awsCodes: []string{"ThrottlingException", "Throttling", codeOf(&kmstypes.LimitExceededException{})},
		code:     kms.CodeThrottled,
	},
	{
		awsCodes: []string{codeOf(&kmstypes.DisabledException{})},
		code:     kms.CodeKeyDisabled,
		explain: func(string, smithy.APIError) (Reason, string) {
			return ReasonKeyDisabled, "the key is disabled (the tenant can enable it in AWS KMS)"
		},
	},
	{
		// Any key state other than Enabled: PendingDeletion,
		// PendingImport, Unavailable (disconnected custom key store),
		// Creating, Updating, PendingReplicaDeletion.
		awsCodes: []string{codeOf(&kmstypes.KMSInvalidStateException{})},
		code:     kms.CodeKeyDisabled,
		explain: func(_ string, e smithy.APIError) (Reason, string) {
			// AWS gives no signal but the message for the state the key
			// is in; it says "<key ARN> is pending deletion.".
			if strings.Contains(strings.ToLower(e.ErrorMessage()), "pending deletion") {
				return ReasonKeyPendingDeletion, "the key is pending deletion (the tenant can cancel the deletion in AWS KMS and enable the key)"
			}
			return ReasonKeyState, "the key is not in the Enabled state"
		},
	},
	{
		// The key's material is temporarily unavailable (e.g. its custom
		// key store is disconnected). Key-level, so one tenant's key store
		// cannot trip the breaker of a whole region; the key-health
		// monitor's probes notice when it comes back.
		awsCodes: []string{codeOf(&kmstypes.KeyUnavailableException{})},
		code:     kms.CodeKeyDisabled,
		explain: func(string, smithy.APIError) (Reason, string) {
			return ReasonKeyUnavailable, "the key's material is unavailable (e.g. its custom key store is disconnected)"
		},
	},
	{
		// Policy, grant or IAM denial of this operation on this key
		// (NotAuthorized: AWS's common 400 for an action the caller is not
		// authorized to perform; AccessDenied: STS's code, e.g. a role
		// whose trust policy does not let Keyward assume it).
		awsCodes: []string{"AccessDeniedException", "NotAuthorized", "AccessDenied", codeOf(&kmstypes.InvalidGrantTokenException{})},
		code:     kms.CodeAccessDenied,
		explain: func(op string, _ smithy.APIError) (Reason, string) {
			return ReasonNotAllowed, fmt.Sprintf("the key policy or Keyward's IAM role does not allow kms:%s on this key", op)
		},
	},
	{
		// AWS does not accept Keyward's credentials at all: a problem of
		// the platform's credentials (or clock), not of the key policy.
		awsCodes: []string{
			"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature",
			"IncompleteSignatureException", "ExpiredTokenException", "ExpiredToken", "InvalidClientTokenId",
			"MissingAuthenticationToken", "MissingAuthenticationTokenException",
			"SignatureDoesNotMatch", "RequestExpired",
		},
		code: kms.CodeAccessDenied,
		explain: func(string, smithy.APIError) (Reason, string) {
			return ReasonCredentials, "AWS rejected Keyward's credentials (check the configured credentials or role, and the host clock)"
		},
	},
	{
		awsCodes: []string{codeOf(&kmstypes.NotFoundException{})},
		code:     kms.CodeKeyNotFound,
		explain: func(string, smithy.APIError) (Reason, string) {
			return ReasonKeyNotFound, "the key does not exist in this account and region (deleted, or a wrong key URI)"
		},
	},
	{
		// IncorrectKeyException: the ciphertext was wrapped under another
		// key than the KeyId sent.
		awsCodes: []string{codeOf(&kmstypes.InvalidCiphertextException{}), codeOf(&kmstypes.IncorrectKeyException{})},
		code:     kms.CodeInvalidCiphertext,
	},
	{
		// The key is not a symmetric encryption key. On Decrypt that means
		// the ciphertext is not for this key; on Encrypt/GenerateDataKey
		// the enrolled key is of the wrong kind.
		awsCodes: []string{codeOf(&kmstypes.InvalidKeyUsageException{})},
		code:     kms.CodeInvalidArgument,
		decrypt:  kms.CodeInvalidCiphertext,
		explain: func(string, smithy.APIError) (Reason, string) {
			return ReasonNotSymmetricKey, "the key is not a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT)"
		},
	},
	{
		awsCodes: []string{
			"ValidationException", "ValidationError", codeOf(&kmstypes.InvalidArnException{}),
			codeOf(&kmstypes.UnsupportedOperationException{}), "SerializationException",
		},
		code: kms.CodeInvalidArgument,
	},
}

// errorIndex is errorTable by AWS error code.
var errorIndex = func() map[string]*errorRow {
	m := map[string]*errorRow{}
	for i := range errorTable {
		for _, c := range errorTable[i].awsCodes {
			if m[c] != nil {
				panic("awskms: error code " + c + " appears twice in errorTable")
			}
			m[c] = &errorTable[i]
		}
	}
	return m
}()

// mapError turns an SDK error of op into a *kms.Error.
func mapError(ctx context.Context, op string, key kms.KeyURI, err error) *kms.Error {
	code, detail := classify(ctx, op, err)
	return newError(code, op, key, detail)
}

// classify maps an SDK error onto a kms code, in this order:
//
//  1. the caller's ctx is done → CodeInternal matching ctx.Err() (the
//     kms.Client turns its own per-call timeout into
//     CodeEndpointUnreachable);
//  2. an AWS error code in errorTable → that row's code;
//  3. an HTTP status without a known code: 429 → throttled, 5xx →
//     endpoint unreachable, 401/403 → access denied;
//  4. the SDK's own parameter validation → invalid argument;
//  5. a network failure (dial, DNS, refused or reset connection, TLS,
//     timeout, truncated response) → endpoint unreachable;
//  6. no credentials could be obtained → access denied;
//  7. anything else → internal.
//
// The returned error wraps err, so errors.As reaches the SDK's types.
func classify(ctx context.Context, op string, err error) (kms.Code, error) {
	if ctx.Err() != nil {
		return kms.CodeInternal, fmt.Errorf("%w: %w", kms.CanceledCause(ctx), err)
	}
	var credErr *credentialsError
	creds := errors.As(err, &credErr)
	explained := func(reason Reason, msg string) error {
		if creds {
			reason, msg = ReasonCredentials, "could not obtain AWS credentials: "+msg
		}
		return &ReasonError{Reason: reason, Message: msg, Err: err}
	}

	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if row := errorIndex[apiErr.ErrorCode()]; row != nil {
			code := row.code
			if op == kms.OpDecrypt && row.decrypt != "" {
				code = row.decrypt
			}
			if row.explain != nil {
				return code, explained(row.explain(op, apiErr))
			}
			return code, err
		}
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		switch s := respErr.HTTPStatusCode(); {
		case s == http.StatusTooManyRequests:
			return kms.CodeThrottled, err
		case s >= 500:
			return kms.CodeEndpointUnreachable, fmt.Errorf("HTTP %d: %w", s, err)
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return kms.CodeAccessDenied, explained(ReasonNotAllowed, fmt.Sprintf("HTTP %d: access denied", s))
		}
	}
	var paramsErr smithy.InvalidParamsError
	if errors.As(err, &paramsErr) {
		return kms.CodeInvalidArgument, err
	}
	if isNetworkError(err) {
		return kms.CodeEndpointUnreachable, err
	}
	if creds {
		return kms.CodeAccessDenied, &ReasonError{Reason: ReasonCredentials,
			Message: "no usable AWS credentials (check the credential chain or the role to assume)", Err: err}
	}
	return kms.CodeInternal, err
}

// isNetworkError reports whether err says the endpoint could not be reached
// or did not answer completely.
func isNetworkError(err error) bool {
	var sendErr *smithyhttp.RequestSendError
	var netErr net.Error
	return errors.As(err, &sendErr) ||
		errors.As(err, &netErr) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF)
}
