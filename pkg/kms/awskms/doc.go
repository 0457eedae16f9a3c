// Package awskms is the kms.Provider for AWS KMS (awskms:// key URIs): the
// customer's symmetric KMS key is the key-encryption key (KEK) that wraps
// Keyward's seeds. It makes the SDK calls and maps the SDK's errors, nothing
// else; timeouts, tracing, metrics and rate limits are kms.Client's.
//
//	p, err := awskms.New(ctx)                       // standard credential chain
//	p, err := awskms.New(ctx, awskms.WithAssumeRole("arn:aws:iam::111122223333:role/keyward", ""))
//	client := kms.NewClient(kms.WithProvider(kms.SchemeAWS, p))
//
// # Least privilege
//
// The provider calls GenerateDataKey (KeySpec AES_256), Encrypt and Decrypt —
// only these three operations, ever — so a key policy allowing kms:Encrypt,
// kms:Decrypt and kms:GenerateDataKey to the platform's role is enough.
// KeyPolicyStatement returns that statement for a tenant; it also requires
// the encryption context to name the tenant and allows no context keys but
// keyward:tenant and keyward:purpose.
//
// Every call carries the kms.EncryptionContext it is given
// ({"keyward:tenant": <tenant>, "keyward:purpose": <purpose>}): AWS binds the
// ciphertext to it and writes it to the tenant's CloudTrail, which shows who
// used the key and why. The User-Agent names the application (app/keyward)
// and an assumed role's session is named "keyward". Decrypt always sends the
// KeyId, so KMS refuses a ciphertext of another key and aliases work.
//
// # Key URIs and endpoints
//
//	awskms://arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
//	awskms://arn:aws:kms:eu-west-2:111122223333:alias/keyward
//	awskms://alias/keyward?region=eu-west-2
//	awskms://1234abcd-12ab-34cd-56ef-1234567890ab?region=eu-west-2
//	...?endpoint=http://127.0.0.1:8080               (emulators, VPC endpoints)
//
// The region comes from the ARN or ?region=. ?endpoint= overrides the KMS
// endpoint for that key (kms.KeyURI.Endpoint → the SDK's BaseEndpoint);
// without it the SDK resolves the regional endpoint (honouring
// AWS_ENDPOINT_URL_KMS and AWS_USE_FIPS_ENDPOINT). One SDK client is created
// per (region, endpoint) on first use and cached; the provider is safe for
// concurrent use.
//
// # Credentials
//
// New loads the standard configuration (config.LoadDefaultConfig):
// environment, shared config and credentials files, web identity (EKS),
// ECS and EC2 instance roles. WithCredentials replaces the chain.
// WithAssumeRole assumes a role with those base credentials through STS
// (stscreds, with an optional external id), per KMS region from that
// region's STS endpoint (WithSTSEndpoint overrides it), and caches the
// temporary credentials until shortly before they expire. WithHTTPClient
// replaces the HTTP client of KMS and STS calls (set after loading, so it
// works alongside AWS_CA_BUNDLE; the client then brings its own TLS roots).
//
// # Key versions and rotation
//
// KeyVersion (of kms.DataKey and kms.Wrapped) is the KeyId AWS returns: the
// ARN of the key that wrapped — also when the URI names an alias, so a
// re-pointed alias shows up as a new version. AWS does not expose the
// versions of a key's backing material: with automatic (or on-demand)
// rotation AWS keeps every old backing key and Decrypt picks the right one
// from the ciphertext, so rotation needs nothing from Keyward and no rewrap.
// Moving to another key is a new key URI (a new enrollment).
//
// # Retry budget
//
// Keyward's own retries are JetStream redeliveries with backoff, so the SDK's
// are kept small: DefaultMaxAttempts (2: one quick retry of a retryable
// error — connection failures, 5xx, throttling), jittered exponential
// backoff from 50 ms (1 s for throttling) capped at DefaultRetryMaxBackoff
// (100 ms, well under the kms.Client's 500 ms call timeout, so a throttled
// call ends as throttled rather than as a timeout that would count against
// the endpoint's circuit breaker), and no
// client-side retry quota (Keyward rate-limits per endpoint itself, and an
// exhausted quota would hide the service's error). WithMaxAttempts and
// WithRetryMaxBackoff change them.
//
// # Errors
//
// Every error is a *kms.Error whose Err wraps the SDK error (errors.As
// reaches smithy.APIError and the SDK's typed exceptions). Where AWS says
// more than a code, Err is a *ReasonError (ReasonOf): e.g. a key pending
// deletion is kms.CodeKeyDisabled with ReasonKeyPendingDeletion and a message
// saying "pending deletion". The mapping is one table (errorTable), by AWS
// error code:
//
//	KMSInternalException, DependencyTimeoutException,        endpoint_unreachable
//	  InternalFailure, ServiceUnavailable, RequestTimeoutException
//	ThrottlingException, Throttling, LimitExceededException  throttled
//	DisabledException                                        key_disabled        (ReasonKeyDisabled)
//	KMSInvalidStateException                                 key_disabled        (ReasonKeyPendingDeletion or ReasonKeyState)
//	KeyUnavailableException                                  key_disabled        (ReasonKeyUnavailable)
//	AccessDeniedException, NotAuthorized, AccessDenied (STS),
//	  InvalidGrantTokenException                             access_denied       (ReasonNotAllowed)
//	UnrecognizedClientException, InvalidSignatureException,
//	  IncompleteSignature(Exception), ExpiredToken(Exception),
//	  InvalidClientTokenId, MissingAuthenticationToken(Exception),
//	  SignatureDoesNotMatch, RequestExpired                  access_denied       (ReasonCredentials)
//	NotFoundException                                        key_not_found       (ReasonKeyNotFound)
//	InvalidCiphertextException, IncorrectKeyException        invalid_ciphertext
//	InvalidKeyUsageException                                 invalid_ciphertext on Decrypt, else invalid_argument (ReasonNotSymmetricKey)
//	ValidationException, ValidationError, InvalidArnException,
//	  UnsupportedOperationException, SerializationException  invalid_argument
//
// Without a known code: HTTP 429 → throttled, 5xx → endpoint_unreachable,
// 401/403 → access_denied; the SDK's parameter validation →
// invalid_argument; network failures (dial, DNS, refused or reset
// connections, TLS, timeouts, truncated responses) → endpoint_unreachable;
// credentials that cannot be obtained (empty chain, a role that cannot be
// assumed) → access_denied (ReasonCredentials); anything else → internal.
// A call abandoned because the caller's ctx ended is internal and matches
// ctx.Err() (kms.IsCanceled); the kms.Client reports its own per-call
// timeout as endpoint_unreachable. Input that cannot be sent is refused
// without a call: another scheme, no region or an invalid context
// (invalid_argument), an empty or over-4096-byte plaintext
// (invalid_argument), an empty or over-6144-byte ciphertext
// (invalid_ciphertext).
//
// Error text is matched in one place only, where AWS gives nothing else:
// KMSInvalidStateException's message is the only signal that a key is
// pending deletion. Messages never contain plaintext, key bytes or
// ciphertext bytes.
//
// # Testing
//
// kmstest/awsemu runs AWS KMS (local-kms) in process; the tests of this
// package run the conformance suite and every failure class against it with
// the real SDK over HTTP.
package awskms
