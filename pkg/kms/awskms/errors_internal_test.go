package awskms

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keyward/keyward/pkg/kms"
)

// sdkError wraps err as the SDK returns it: an OperationError around an
// HTTP response error with status (0: no response).
func sdkError(op string, status int, err error) error {
	if status != 0 {
		err = &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      err,
			},
			RequestID: "00000000-0000-4000-8000-000000000000",
		}
	}
	return &smithy.OperationError{ServiceID: "KMS", OperationName: op, Err: err}
}

func api(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }

// TestErrorTable maps one error per AWS error code (and per non-API failure)
// and checks the code, the reason, and that the SDK error stays reachable.
// Every code of errorTable must have a row here (checked at the end).
func TestErrorTable(t *testing.T) {
	gen, enc, dec := kms.OpGenerateDataKey, kms.OpEncrypt, kms.OpDecrypt
	cases := []struct {
		awsCode string // the AWS error code the row tests ("" for non-API failures)
		name    string
		op      string
		err     error
		want    kms.Code
		reason  Reason
	}{
		// endpoint unreachable
		{"KMSInternalException", "typed", gen, sdkError(gen, 500, &kmstypes.KMSInternalException{Message: aws.String("internal")}), kms.CodeEndpointUnreachable, ""},
		{"DependencyTimeoutException", "typed", dec, sdkError(dec, 503, &kmstypes.DependencyTimeoutException{}), kms.CodeEndpointUnreachable, ""},
		{"InternalFailure", "generic", enc, sdkError(enc, 500, api("InternalFailure", "")), kms.CodeEndpointUnreachable, ""},
		{"ServiceUnavailable", "generic", enc, sdkError(enc, 503, api("ServiceUnavailable", "")), kms.CodeEndpointUnreachable, ""},
		{"RequestTimeoutException", "generic", enc, sdkError(enc, 408, api("RequestTimeoutException", "")), kms.CodeEndpointUnreachable, ""},
		// throttled
		{"ThrottlingException", "generic", gen, sdkError(gen, 400, api("ThrottlingException", "Rate exceeded")), kms.CodeThrottled, ""},
		{"Throttling", "STS", gen, sdkError(gen, 400, api("Throttling", "Rate exceeded")), kms.CodeThrottled, ""},
		{"LimitExceededException", "typed", gen, sdkError(gen, 400, &kmstypes.LimitExceededException{}), kms.CodeThrottled, ""},
		// key disabled
		{"DisabledException", "typed", enc, sdkError(enc, 400, &kmstypes.DisabledException{Message: aws.String("arn:... is disabled.")}), kms.CodeKeyDisabled, ReasonKeyDisabled},
		{"KMSInvalidStateException", "pending deletion", gen, sdkError(gen, 400, &kmstypes.KMSInvalidStateException{Message: aws.String("arn:aws:kms:eu-west-2:111122223333:key/x is pending deletion.")}), kms.CodeKeyDisabled, ReasonKeyPendingDeletion},
		{"KMSInvalidStateException", "pending import", dec, sdkError(dec, 400, &kmstypes.KMSInvalidStateException{Message: aws.String("arn:... is pending import.")}), kms.CodeKeyDisabled, ReasonKeyState},
		{"KeyUnavailableException", "typed", dec, sdkError(dec, 500, &kmstypes.KeyUnavailableException{}), kms.CodeKeyDisabled, ReasonKeyUnavailable},
		// access denied: policy
		{"AccessDeniedException", "generic", dec, sdkError(dec, 400, api("AccessDeniedException", "User: ... is not authorized to perform: kms:Decrypt")), kms.CodeAccessDenied, ReasonNotAllowed},
		{"NotAuthorized", "generic", gen, sdkError(gen, 400, api("NotAuthorized", "")), kms.CodeAccessDenied, ReasonNotAllowed},
		{"AccessDenied", "STS", gen, sdkError(gen, 403, api("AccessDenied", "not authorized to perform: sts:AssumeRole")), kms.CodeAccessDenied, ReasonNotAllowed},
		{"InvalidGrantTokenException", "typed", gen, sdkError(gen, 400, &kmstypes.InvalidGrantTokenException{}), kms.CodeAccessDenied, ReasonNotAllowed},
		// access denied: credentials
		{"UnrecognizedClientException", "generic", gen, sdkError(gen, 400, api("UnrecognizedClientException", "The security token included in the request is invalid.")), kms.CodeAccessDenied, ReasonCredentials},
		{"InvalidSignatureException", "generic", gen, sdkError(gen, 400, api("InvalidSignatureException", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"IncompleteSignature", "generic", gen, sdkError(gen, 400, api("IncompleteSignature", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"IncompleteSignatureException", "generic", gen, sdkError(gen, 400, api("IncompleteSignatureException", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"ExpiredTokenException", "generic", gen, sdkError(gen, 400, api("ExpiredTokenException", "The security token included in the request is expired")), kms.CodeAccessDenied, ReasonCredentials},
		{"ExpiredToken", "STS", gen, sdkError(gen, 400, api("ExpiredToken", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"InvalidClientTokenId", "generic", gen, sdkError(gen, 403, api("InvalidClientTokenId", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"MissingAuthenticationToken", "generic", gen, sdkError(gen, 403, api("MissingAuthenticationToken", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"MissingAuthenticationTokenException", "generic", gen, sdkError(gen, 400, api("MissingAuthenticationTokenException", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"SignatureDoesNotMatch", "generic", gen, sdkError(gen, 403, api("SignatureDoesNotMatch", "")), kms.CodeAccessDenied, ReasonCredentials},
		{"RequestExpired", "generic", gen, sdkError(gen, 400, api("RequestExpired", "")), kms.CodeAccessDenied, ReasonCredentials},
		// key not found
		{"NotFoundException", "typed", gen, sdkError(gen, 400, &kmstypes.NotFoundException{Message: aws.String("Key 'arn:...' does not exist")}), kms.CodeKeyNotFound, ReasonKeyNotFound},
		// invalid ciphertext
		{"InvalidCiphertextException", "typed", dec, sdkError(dec, 400, &kmstypes.InvalidCiphertextException{}), kms.CodeInvalidCiphertext, ""},
		{"IncorrectKeyException", "typed", dec, sdkError(dec, 400, &kmstypes.IncorrectKeyException{}), kms.CodeInvalidCiphertext, ""},
		{"InvalidKeyUsageException", "on Decrypt", dec, sdkError(dec, 400, &kmstypes.InvalidKeyUsageException{}), kms.CodeInvalidCiphertext, ReasonNotSymmetricKey},
		// invalid argument
		{"InvalidKeyUsageException", "on GenerateDataKey", gen, sdkError(gen, 400, &kmstypes.InvalidKeyUsageException{}), kms.CodeInvalidArgument, ReasonNotSymmetricKey},
		{"ValidationException", "generic", enc, sdkError(enc, 400, api("ValidationException", "")), kms.CodeInvalidArgument, ""},
		{"ValidationError", "generic", enc, sdkError(enc, 400, api("ValidationError", "")), kms.CodeInvalidArgument, ""},
		{"InvalidArnException", "typed", enc, sdkError(enc, 400, &kmstypes.InvalidArnException{}), kms.CodeInvalidArgument, ""},
		{"UnsupportedOperationException", "typed", enc, sdkError(enc, 400, &kmstypes.UnsupportedOperationException{}), kms.CodeInvalidArgument, ""},
		{"SerializationException", "generic", enc, sdkError(enc, 400, api("SerializationException", "")), kms.CodeInvalidArgument, ""},

		// Without a known AWS error code: the HTTP status.
		{"", "unknown code, HTTP 500", gen, sdkError(gen, 500, api("SomethingNew", "")), kms.CodeEndpointUnreachable, ""},
		{"", "non-JSON HTTP 502", gen, sdkError(gen, 502, &smithy.DeserializationError{Err: errors.New("invalid character '<'")}), kms.CodeEndpointUnreachable, ""},
		{"", "HTTP 429", gen, sdkError(gen, 429, api("TooManyRequests", "")), kms.CodeThrottled, ""},
		{"", "HTTP 403", gen, sdkError(gen, 403, api("Forbidden", "")), kms.CodeAccessDenied, ReasonNotAllowed},
		{"", "unknown code, HTTP 400", gen, sdkError(gen, 400, api("SomethingNew", "")), kms.CodeInternal, ""},
		// The SDK's own validation.
		{"", "invalid params", gen, sdkError(gen, 0, smithy.InvalidParamsError{Context: "GenerateDataKeyInput"}), kms.CodeInvalidArgument, ""},
		// Network failures.
		{"", "connection refused", gen, sdkError(gen, 0, &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}), kms.CodeEndpointUnreachable, ""},
		{"", "DNS", gen, sdkError(gen, 0, &smithyhttp.RequestSendError{Err: &url.Error{Op: "Post", URL: "http://keyward-test.invalid", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "keyward-test.invalid", IsNotFound: true}}}}), kms.CodeEndpointUnreachable, ""},
		{"", "connection reset, no wrapper", gen, sdkError(gen, 0, syscall.ECONNRESET), kms.CodeEndpointUnreachable, ""},
		{"", "network timeout", gen, sdkError(gen, 0, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}), kms.CodeEndpointUnreachable, ""},
		{"", "truncated response", dec, sdkError(dec, 200, &smithy.DeserializationError{Err: io.ErrUnexpectedEOF}), kms.CodeEndpointUnreachable, ""},
		// Credentials that could not be obtained.
		{"", "no credentials", gen, sdkError(gen, 0, &credentialsError{errors.New("no EC2 IMDS role found")}), kms.CodeAccessDenied, ReasonCredentials},
		{"", "role not assumable", gen, sdkError(gen, 0, &credentialsError{sdkError("AssumeRole", 403, api("AccessDenied", ""))}), kms.CodeAccessDenied, ReasonCredentials},
		{"", "STS unreachable", gen, sdkError(gen, 0, &credentialsError{sdkError("AssumeRole", 0, &smithyhttp.RequestSendError{Err: syscall.ECONNREFUSED})}), kms.CodeEndpointUnreachable, ""},
		{"", "STS throttled", gen, sdkError(gen, 0, &credentialsError{sdkError("AssumeRole", 400, api("Throttling", ""))}), kms.CodeThrottled, ""},
		// Anything else.
		{"", "unexpected", gen, errors.New("something unexpected"), kms.CodeInternal, ""},
	}
	tested := map[string]bool{}
	for _, tc := range cases {
		name := tc.awsCode + " " + tc.name
		tested[tc.awsCode] = true
		t.Run(name, func(t *testing.T) {
			key := kms.MustParseKeyURI("awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
			err := mapError(context.Background(), tc.op, key, tc.err)
			if got := kms.CodeOf(err); got != tc.want {
				t.Errorf("code = %s, want %s (err %v)", got, tc.want, err)
			}
			if err.Provider != kms.SchemeAWS || err.Op != tc.op || err.Key != key.String() {
				t.Errorf("error names %q %q %q, want %q %q %q", err.Provider, err.Op, err.Key, kms.SchemeAWS, tc.op, key.String())
			}
			if got := ReasonOf(err); got != tc.reason {
				t.Errorf("reason = %q, want %q (err %v)", got, tc.reason, err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("the SDK error is not in the chain of %v", err)
			}
			if kms.IsCanceled(err) {
				t.Errorf("IsCanceled = true without a done context: %v", err)
			}
			if tc.awsCode != "" {
				var apiErr smithy.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.awsCode {
					t.Errorf("errors.As(err, smithy.APIError) does not reach %s: %v", tc.awsCode, err)
				}
			}
		})
	}
	for _, row := range errorTable {
		for _, c := range row.awsCodes {
			if !tested[c] {
				t.Errorf("errorTable maps %s but TestErrorTable has no case for it", c)
			}
		}
	}
}

// A done context wins over whatever the SDK returned: the error matches the
// context's error and is no endpoint failure.
func TestErrorCallerContext(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -1)
	defer cancel2()
	key := kms.MustParseKeyURI("awskms://alias/x?region=eu-west-2")
	for name, tc := range map[string]struct {
		ctx  context.Context
		want error
	}{"canceled": {canceled, context.Canceled}, "expired": {expired, context.DeadlineExceeded}} {
		sdkErr := sdkError(kms.OpDecrypt, 0, &smithyhttp.RequestSendError{Err: tc.ctx.Err()})
		err := mapError(tc.ctx, kms.OpDecrypt, key, sdkErr)
		if !errors.Is(err, tc.want) || kms.CodeOf(err) != kms.CodeInternal || !kms.IsCanceled(err) || kms.IsEndpointFailure(err) {
			t.Errorf("%s: err = %v (code %s), want internal matching %v", name, err, kms.CodeOf(err), tc.want)
		}
	}
}

// The pending-deletion message says so (the contract asks the message to
// name it for operators; code paths use ReasonOf).
func TestPendingDeletionMessage(t *testing.T) {
	err := mapError(context.Background(), kms.OpEncrypt, kms.KeyURI{Scheme: kms.SchemeAWS},
		sdkError(kms.OpEncrypt, 400, &kmstypes.KMSInvalidStateException{Message: aws.String("arn:x is pending deletion.")}))
	var re *ReasonError
	if !errors.As(err, &re) || re.Message != "the key is pending deletion (the tenant can cancel the deletion in AWS KMS and enable the key)" {
		t.Errorf("message = %v", err)
	}
}
