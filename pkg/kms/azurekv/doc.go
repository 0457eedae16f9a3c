// Package azurekv is the kms.Provider for keys in Azure Key Vault and Azure
// Key Vault Managed HSM (azurekv:// key URIs), built on azkeys, azidentity
// and azcore.
//
//	p, err := azurekv.New(azurekv.WithWorkloadIdentity(tenantID, clientID, tokenFile))
//	client := kms.NewClient(kms.WithProvider(kms.SchemeAzure, p))
//
// # Key Vault operations: wrapKey and unwrapKey, nothing else
//
// Data keys (Keyward's seeds) are made locally from crypto/rand and wrapped
// by Key Vault's wrapKey; Decrypt calls unwrapKey. The provider never calls
// any other operation — not get-key either — so a grant of wrap and unwrap
// on the one key is all it needs (AccessInstructions prints it). Because
// it never reads the key, the wrapping algorithm comes from the key URI's
// vault kind, or from configuration:
//
//	vault host                                    key type           algorithm
//	<name>.vault.azure.net (and .azure.cn,        RSA / RSA-HSM      RSA-OAEP-256 (AlgorithmRSAOAEP256)
//	  .usgovcloudapi.net)
//	<name>.managedhsm.azure.net (and sovereign)   oct-HSM (256-bit)  A256KW, AES key wrap (AlgorithmA256KW)
//
// WithAlgorithm overrides the choice for every key (e.g. a Managed HSM
// holding RSA-HSM keys). Decrypt never consults it: it unwraps with the
// algorithm recorded in the ciphertext, so changing the configuration never
// strands old ciphertexts.
//
// # Binding the encryption context
//
// Key Vault's wrapKey has no associated data, so the provider binds the
// encryption context itself. It wraps
//
//	message = random(16) || plaintext || SHA-256(ec.Canonical())
//
// and after unwrapKey checks the digest in constant time: a different
// context fails with kms.CodeInvalidCiphertext (Key Vault's audit log then
// shows a successful unwrapKey; Keyward refuses the result and destroys
// it). The random prefix makes wraps of the same plaintext distinct, which
// AES key wrap alone is not (it is deterministic). For a 32-byte seed the
// message is 80 bytes: a multiple of 8, as A256KW requires, and within
// RSA-OAEP-256's 190-byte limit on 2048-bit keys. Encrypt accepts up to 142
// bytes under a 2048-bit RSA key (more under larger keys; Key Vault refuses
// what does not fit, as kms.CodeInvalidArgument) and multiples of 8 under
// A256KW.
//
// # Ciphertext format
//
// Key Vault's wrapped value is stored behind a small self-describing header,
// so Decrypt knows which key version and algorithm wrapped it:
//
//	"KWAZ" (Magic) || u8 format version (1) || u8 algorithm (1 = RSA-OAEP-256, 2 = A256KW)
//	       || u16 big-endian len(kid) || kid || wrapped value
//
// kid is Key Vault's key identifier from the wrapKey answer,
// https://<vault host>/keys/<name>/<version> (at most 512 bytes, checked
// strictly: https, host, /keys/, a name of letters, digits and '-', a
// 32-hex-digit version). The wrapped value is 256 bytes under RSA 2048 and
// 88 bytes under A256KW for a seed; at most 8192 bytes are accepted. A
// malformed header is kms.CodeInvalidCiphertext without a call to Key
// Vault. The format is pinned by a known-answer test
// (testdata/known_answer_a256kw.hex) and fuzzed (FuzzParseCiphertext).
//
// # Key versions
//
// A key URI without a version (azurekv://<vault>/keys/<name>) wraps with
// the key's current version; one with a version pins it. The returned
// KeyVersion is the version in the kid of Key Vault's answer, so after a
// rotation new seeds report the new version. Unwrapping always uses the
// version recorded in the ciphertext, whatever the URI pins, so every
// version keeps unwrapping while it is enabled.
//
// A ciphertext whose kid names another key or vault cannot unwrap under the
// URI's key; so Keyward can still tell a missing, disabled or denied key
// from a foreign ciphertext, it makes one unwrapKey with the URI's key and
// reports that key's error — or kms.CodeInvalidCiphertext when the key
// answers. Likewise a 404 for the recorded version is confirmed by one
// unwrapKey with the current version: Key Vault deletes whole keys, never
// single versions, so if the key answers, the ciphertext named a version it
// never had (a modified ciphertext must not mark the tenant's key
// unusable).
//
// # Credentials
//
// Exactly one of:
//
//   - WithCredential(cred): any azcore.TokenCredential;
//   - WithClientSecret(tenant, client, secret): a Microsoft Entra
//     application with a client secret (azidentity.NewClientSecretCredential);
//   - WithManagedIdentity(clientID): the host's managed identity, "" for
//     system-assigned (azidentity.NewManagedIdentityCredential);
//   - WithWorkloadIdentity(tenant, client, tokenFile): a federated token, as
//     on AKS (azidentity.NewWorkloadIdentityCredential).
//
// The library reads no environment variables: the service passes the
// values from its configuration. Credentials built by the provider share
// WithClientOptions (transport, Cloud for sovereign clouds) and the retry
// budget. A customer's vault lives in the customer's tenant, named by Key
// Vault's authentication challenge; client-secret and workload-identity
// credentials may therefore get tokens in any tenant where Keyward's
// multi-tenant application is consented (WithAllowedTenants pins the list).
//
// Tokens come from the challenge flow azkeys runs: the first request of a
// client is sent without a token, Key Vault answers 401 with
// WWW-Authenticate: Bearer authorization="<authority>/<tenant>",
// resource="https://vault.azure.net" (or scope=...), and the request is
// sent again with a token for that resource and tenant. There is one
// azkeys.Client per vault, created on first use and cached (safe for
// concurrent use), so each vault costs one challenge round. When ?endpoint=
// overrides the vault URL (an emulator on 127.0.0.1),
// DisableChallengeResourceVerification is set for that client: the SDK
// otherwise requires the request host to end in the challenge's resource
// host (vault.azure.net), which 127.0.0.1 never does. Endpoints must be
// https: bearer tokens are never sent in clear.
//
// # Retries and timeouts
//
// Keyward's retry layer is JetStream redelivery. The SDK retries at most
// WithMaxRetries times (default 1; 0 disables) — connection failures, 408,
// 429, 5xx — after about 100 ms, and never waits out a Retry-After longer
// than 200 ms: the call fails as throttled instead, within kms.Client's
// 500 ms call timeout, so it is not mistaken for an unreachable endpoint.
// Per-call timeouts come from kms.Client through ctx.
//
// # Errors
//
// Every error is a *kms.Error whose chain holds the SDK's error
// (*azcore.ResponseError, *azidentity.AuthenticationFailedError in a
// *TokenError, *url.Error, *net.DNSError, ...) for errors.As, behind a
// one-line message. SDK errors are classified in one table (errorTable),
// first match wins, on HTTP status and Key Vault or OAuth error codes —
// never on message text:
//
//	caller's context ended                                   internal, matching ctx.Err() (checked first)
//	HTTP 429 (Key Vault or Entra ID)                         throttled
//	HTTP 5xx or 408 (Key Vault or Entra ID)                  endpoint_unreachable
//	no HTTP answer: DNS, refused/reset connection, TLS, I/O  endpoint_unreachable
//	token request got no HTTP answer from Entra ID           endpoint_unreachable
//	token refused by Entra ID (4xx: invalid_client,          access_denied (the message names Keyward's
//	  unauthorized_client, ...) or credential unusable         credential, not the tenant's key)
//	HTTP 403/400 with code or inner code KeyDisabled         key_disabled
//	HTTP 401 (token refused) or other 403 (Forbidden:        access_denied
//	  AccessDenied, ForbiddenByPolicy, ForbiddenByRbac,
//	  ForbiddenByFirewall)
//	HTTP 404 (KeyNotFound)                                   key_not_found
//	HTTP 400 (BadParameter) answering unwrapKey              invalid_ciphertext
//	HTTP 400 (BadParameter) answering wrapKey                invalid_argument
//	anything else                                            internal
//
// Checked by the provider itself:
//
//	malformed or unknown ciphertext header                   invalid_ciphertext (no call)
//	context digest mismatch after unwrapKey                  invalid_ciphertext
//	ciphertext of another key or a version the key never had invalid_ciphertext (after one confirming call)
//	invalid context, empty or oversized plaintext, non-https invalid_argument (no call)
//	  endpoint, non-azurekv URI
//
// Key Vault answers a disabled key with 403, code Forbidden and inner error
// KeyDisabled ("Operation unwrapKey is not allowed on a disabled key.");
// the kmstest emulator mirrors it for wrapKey and unwrapKey alike. Should
// the service ever omit the inner code, the answer is classified
// access_denied — the key is unusable either way. A third-party report
// (azure-sdk-for-python#45342) says the service accepts wrapKey, a
// public-key operation, on a disabled RSA key, refusing only unwrapKey; a
// key health probe should therefore wrap and then unwrap, which detects a
// disabled key either way.
//
// # Least privilege
//
// AccessInstructions prints what a customer grants Keyward's service
// principal: a custom Azure RBAC role whose dataActions are exactly
// Microsoft.KeyVault/vaults/keys/wrap/action and
// Microsoft.KeyVault/vaults/keys/unwrap/action, assigned at the key's scope
// (or the access-policy alternative, --key-permissions wrapKey unwrapKey,
// which covers every key of the vault); for a Managed HSM, the local RBAC
// equivalent with Microsoft.KeyVault/managedHsm/keys/{wrap,unwrap}/action at
// scope /keys/<name>. The emulator's request log verifies in tests that
// nothing else is ever called.
//
// # Testing
//
// Package kmstest/azureemu emulates the Key Vault data plane (real
// RSA-OAEP-256 and RFC 3394 key wrap), the bearer challenge and a minimal
// Microsoft Entra ID, over TLS, so the real azkeys and azidentity code runs
// in tests; the provider passes kmstest.RunConformance against it for RSA
// and oct keys, directly and through a kms.Client.
package azurekv
