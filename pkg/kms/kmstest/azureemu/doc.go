// Package azureemu emulates Azure Key Vault and Managed HSM — the wrapKey
// and unwrapKey operations of the data plane — and the part of Microsoft
// Entra ID the azidentity client-secret and workload-identity flows need,
// on one TLS server (kmstest.NewServer with kmstest.WithTLS: loopback port,
// faults, request log). Tests run the real azkeys and azidentity code
// against it; `keyward dev` can use it as the customer's vault.
//
//	e := azureemu.StartT(t)
//	key := e.CreateRSAKey("acme-kv", "tenant-key") // azurekv://acme-kv.vault.azure.net/keys/tenant-key?endpoint=<e.URL>
//	p, err := e.Provider()                          // azurekv.Provider with e.Credential()
//
// # Key Vault
//
//	POST /keys/{name}/wrapkey, /keys/{name}//wrapkey (current version),
//	     /keys/{name}/{version}/wrapkey, and the same for unwrapkey
//	     ?api-version=<any, required>, {"alg": ..., "value": <base64url>}
//	  → 200 {"kid": "https://<vault host>/keys/<name>/<version>", "value": <base64url>}
//
// The cryptography is real: RSA-OAEP-256 with the key version's RSA 2048
// key (CreateRSAKey, Key Vault), RFC 3394 AES key wrap with its 256-bit
// key (CreateOctKey, Managed HSM; A256KW), implemented here from the RFC
// and tested with its published vectors. Keys have versions (RotateKey adds
// a current one; ImportOctKey fixes one for known-answer tests), can be
// disabled and enabled per version or as a whole, and deleted.
// MissingVaultKey and MissingHSMKey name a key that does not exist in a
// given vault. Key names are case-insensitive and, since every vault is
// served at one URL, unique across vaults: the name is how the emulator
// knows a request's vault.
//
// Answers mirror Key Vault's, {"error": {"code", "message", "innererror":
// {"code"}}}:
//
//	no, foreign, expired token, or one for another resource   401 Unauthorized + bearer challenge
//	unknown key or version                                    404 KeyNotFound
//	disabled key version                                      403 Forbidden / KeyDisabled,
//	                                                           "Operation wrapKey is not allowed on a disabled key."
//	algorithm not for the key type, value that does not       400 BadParameter
//	  wrap or unwrap, malformed body, no api-version
//	any other path (get key, encrypt, ...)                    404 NotFound (logged as "Unknown")
//
// # The bearer challenge
//
// Every data-plane request must carry a token the emulator issued, unexpired
// and for the resource of the key's vault (https://vault.azure.net or
// https://managedhsm.azure.net), whether or not the key exists: a key
// deleted from a Managed HSM, or named by MissingHSMKey, needs a Managed
// HSM token, as on a real Managed HSM. (A challenge for another resource
// would switch the client's token scope, and azcore's bearer policy keeps
// one token whatever scope it was got for: concurrent calls could then
// carry the wrong vault's token.) A key name the emulator was never told
// of names no vault: a token for either resource gets its 404, and a
// request without one is challenged for Key Vault's resource — so name a
// missing Managed HSM key with MissingHSMKey, not a hand-written URI.
// Otherwise the emulator answers 401 with the challenge azkeys' policy
// parses:
//
//	WWW-Authenticate: Bearer authorization="<URL>/<tenant>", resource="https://vault.azure.net"
//	WWW-Authenticate: Bearer authorization="<URL>/<tenant>", scope="https://vault.azure.net/.default"   (WithScopeChallenge)
//
// Challenges counts these answers, so tests can check that a fresh client
// costs exactly one challenge round.
//
// # Microsoft Entra ID
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration   (MSAL's tenant discovery)
//	POST /{tenant}/oauth2/v2.0/token                       (client_credentials grant)
//
// The token endpoint checks the tenant, the client ID and either the client
// secret or, for workload identity, a client assertion equal to
// FederatedToken, and issues an opaque token for the one resource named in
// scope; failures are OAuth error bodies with Entra's AADSTS codes
// (invalid_client 7000215 for a wrong secret, unauthorized_client 700016 for
// an unknown application, ...). Credential returns the real azidentity
// client-secret credential pointed at it (authority = URL, instance
// discovery off); ClientOptions returns the matching azcore options.
//
// # Faults and the request log
//
// Server.Faults produces kmstest's faults (refuse, hang, 5xx, throttle,
// Deny(op)) in front of every request, rendered as Key Vault's errors by
// Renderer: 429 Throttled with Retry-After: 1, 503 ServiceUnavailable, 403
// Forbidden/AccessDenied. Faults apply before authentication, so Deny
// answers 403 even to a request that would first have been challenged.
// Classify names each request for the log: "WrapKey" and "UnwrapKey" with
// the key name, "Token" and "Discovery" with the tenant, "Unknown" for
// anything else — least-privilege tests assert that only the first two
// reach the data plane.
package azureemu
