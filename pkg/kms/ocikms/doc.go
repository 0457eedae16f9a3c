// Package ocikms is the kms.Provider for keys a customer owns in Oracle OCI
// Vault (ocikms:// key URIs), over the OCI Go SDK's KMS crypto client.
//
//	p, err := ocikms.New(ocikms.WithInstancePrincipal())
//	client := kms.NewClient(kms.WithProvider(kms.SchemeOCI, p))
//
// # Key URIs and endpoints
//
//	ocikms://ocid1.key.oc1.iad.<vault>.<id>?endpoint=https://<vault>-crypto.kms.us-ashburn-1.oraclecloud.com
//
// A vault has two endpoints: the management endpoint
// (<vault>-management.kms.<region>.oraclecloud.com: create, rotate, disable,
// delete keys) and the cryptographic endpoint
// (<vault>-crypto.kms.<region>.oraclecloud.com: Encrypt, Decrypt,
// GenerateDataEncryptionKey). Keyward only ever talks to the cryptographic
// endpoint, which the key URI must name (?endpoint=, required). The region
// comes from that host, or from ?region= for an endpoint elsewhere (an
// emulator). The key id must have the shape of a key OCID (ValidateKeyOCID).
// One SDK crypto client is created per endpoint on first use and cached.
//
// # Region allowlist
//
// Keyward serves OCI customers from a fixed set of regions
// (DefaultAllowedRegions: us-ashburn-1, us-phoenix-1, us-sanjose-1,
// eu-amsterdam-1; WithAllowedRegions replaces it). A key in another region
// fails every call with kms.CodeInvalidArgument, naming its region and the
// allowed ones, before any request is sent. CheckRegion makes the same check
// for the enrollment CLI.
//
// # Authentication
//
// Exactly one of:
//
//   - WithAPIKey: an OCI user's API signing key (tenancy OCID, user OCID,
//     fingerprint, RSA private key PEM and passphrase), through
//     common.NewRawConfigurationProvider; the key is parsed once, by New.
//   - WithInstancePrincipal: the compute instance's identity
//     (auth.InstancePrincipalConfigurationProvider). The platform's
//     principal is then a dynamic group, while PolicyStatements admits IAM
//     groups (the users of WithAPIKey).
//   - WithResourcePrincipal: the identity of the function or container
//     instance Keyward runs as (auth.ResourcePrincipalConfigurationProvider,
//     configured by the OCI_RESOURCE_PRINCIPAL_* variables).
//   - WithConfigurationProvider: any SDK configuration provider.
//
// Instance and resource principals are created on the first call, not by
// New (they fetch certificates); failing that is kms.CodeInternal (the
// platform's configuration, not the tenant's key nor the endpoint). Every
// request carries the SDK's HTTP signature; the SDK's User-Agent is
// suffixed with "keyward-ocikms".
//
// # Operations and least privilege
//
// The provider calls only Encrypt and Decrypt on the crypto endpoint, never
// a management operation (no GetKey, no ListKeyVersions):
//
//   - Encrypt: kms Encrypt, and kms GenerateDataKey, which draws 32 bytes
//     from crypto/rand and wraps them with Encrypt. OCI's
//     GenerateDataEncryptionKey is not used: its response (GeneratedKey:
//     ciphertext, plaintext, plaintextChecksum) carries no key version,
//     while EncryptedData carries keyVersionId, and Keyward records the
//     version of every wrap to find data to rewrap after a rotation. The
//     cost is the same (one call), and the tenant's audit log shows Encrypt.
//   - Decrypt: kms Decrypt. OCI's symmetric ciphertext names the key
//     version that made it, so Decrypt sends only the key id and every
//     version keeps decrypting after rotation.
//
// Both use AES_256_GCM in the vault and send the encryption context (tenant
// and purpose) as associatedData, so OCI binds the ciphertext to it
// (Decrypt with another context fails), and as loggingContext, so it shows
// in the tenant's audit log. OCI limits associated data to fewer than 4096
// characters in its string (JSON) form; a longer context is
// kms.CodeInvalidArgument. The ciphertext OCI returns (base64 text) is
// stored verbatim, never re-encoded. Plaintexts travel base64-encoded in the
// SDK's JSON, as Go strings that cannot be zeroed; the Secrets the provider
// returns can.
//
// The tenant's policy therefore needs nothing beyond two cryptographic
// operations on their keys: PolicyStatements writes it (Define/Admit
// cross-tenancy statements, use key-family restricted by request.operation
// to Encrypt and Decrypt).
//
// # Key versions
//
// Wrapped.KeyVersion and DataKey.KeyVersion are the key version OCID of the
// Encrypt response (keyVersionId), which changes when the key is rotated
// (a new version becomes current) and is stable until then.
//
// # Errors
//
// Every error is a *kms.Error whose Err keeps the SDK error reachable with
// errors.As (common.ServiceError for an HTTP error answer, *url.Error,
// *net.DNSError, ... for a transport failure); messages name the HTTP
// status, OCI's error code and opc-request-id, and what to check. Status
// and OCI error code (common.ServiceError GetHTTPStatusCode and GetCode;
// message text is never matched) map in one table, first match wins:
//
//	HTTP status / OCI code                         kms code               why, what to check
//	429 (any code)                                 throttled              OCI rate limit; back off
//	401 NotAuthenticated                           access_denied          our credentials or clock
//	403 (any), 400 InsufficientServicePermissions  access_denied          the tenant's policy
//	404 NotAuthorizedOrNotFound,                   key_not_found          OCI does not distinguish "missing" from
//	400 RelatedResourceNotAuthorizedOrNotFound                            "not authorized": check the key OCID
//	                                                                      and the tenant's policy
//	404 NotFound, 405 (any)                        invalid_argument       not a crypto endpoint (management?)
//	404 (other codes)                              key_not_found          as NotAuthorizedOrNotFound
//	409 LockConflict                               throttled              the key is busy; retry later
//	409 (other codes: IncorrectState, Conflict)    key_disabled           DISABLED, SCHEDULING_DELETION,
//	400 ResourceDisabled                           key_disabled           PENDING_DELETION: the tenant must act
//	400 InvalidParameter on Decrypt                invalid_ciphertext     modified, foreign or truncated
//	                                                                      ciphertext, or other associated data
//	400-499 (other)                                invalid_argument       a request OCI calls invalid
//	501 (any)                                      internal               not implemented at this endpoint
//	500-599 (other)                                endpoint_unreachable   the vault's server failed
//	no HTTP answer: DNS failure, refused or reset  endpoint_unreachable   counts against the endpoint's breaker
//	connection, TLS failure, timeout
//	anything else                                  internal
//
// Before any request: a non-ocikms URI, a malformed key OCID, a missing
// endpoint, a region outside the allowlist, an invalid or oversized
// encryption context or an empty plaintext is kms.CodeInvalidArgument; an
// empty or non-text ciphertext is kms.CodeInvalidCiphertext. A call whose
// context ends is kms.CodeInternal matching ctx.Err() (kms.IsCanceled).
//
// # Retries, timeouts and the SDK's circuit breaker
//
// Keyward retries through JetStream redelivery and keeps its own breaker per
// endpoint, so the SDK's are tamed: the KmsCrypto client's default circuit
// breaker is turned off, and every request carries its own retry policy
// (whatever OCI_SDK_DEFAULT_RETRY_ENABLED or common.GlobalRetry say): at
// most WithMaxAttempts attempts (DefaultMaxAttempts = 2: one quick retry),
// retrying only a failure without a useful answer (transport errors other
// than an unknown host, 5xx other than 501) after 50-100 ms, and only while
// the context's deadline leaves room (a context cancelled during that pause
// is noticed when it ends). Throttling (429) is never retried by the SDK. Per-call timeouts come from kms.Client through ctx; the provider
// never makes a context of its own. One SDK behaviour is outside its
// control: with instance or resource principals, the SDK retries a 401
// itself (up to 3 times, 1 s apart, to ride out token refreshes); the
// kms.Client's per-call timeout still bounds the call.
package ocikms
