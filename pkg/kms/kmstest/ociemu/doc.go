// Package ociemu emulates the cryptographic endpoint of an OCI Vault for
// tests and `keyward dev`: the REST API the OCI Go SDK's KmsCryptoClient
// calls, on a kmstest.Server (fixed loopback port, fault injection, request
// log).
//
// # What it serves
//
//	POST /20180608/generateDataEncryptionKey   GenerateDataEncryptionKey (AES keys of 16, 24 or 32 bytes)
//	POST /20180608/encrypt                     Encrypt (AES_256_GCM, plaintext of 1 to 4096 bytes)
//	POST /20180608/decrypt                     Decrypt (any version of the key)
//
// with the SDK's JSON field names. Request bodies are parsed strictly (an
// unknown field is 400 CannotParseRequest), so a change in what the SDK
// sends shows in tests. Anything else is 404 NotFound and is logged as
// "<METHOD> <path>", so a least-privilege test sees a management call.
//
// # Request signatures
//
// Every request must carry the OCI HTTP signature (draft-cavage, "Signature
// version=\"1\",headers=...,keyId=...,algorithm=\"rsa-sha256\",signature=...")
// of the test user whose API key pair Start generates (TenancyOCID,
// UserOCID, Fingerprint, PrivateKeyPEM). The emulator checks, as OCI does:
// keyId is "<tenancy>/<user>/<fingerprint>" of that user; the signed headers
// include date (or x-date), (request-target) and host, and for POST, PUT and
// PATCH content-length, content-type and x-content-sha256; the RSA PKCS #1
// v1.5 SHA-256 signature over the signing string verifies with the user's
// public key; x-content-sha256 and content-length match the body received;
// the date is within MaxClockSkew (5 minutes) of the emulator's clock
// (WithClock). Anything else is 401 NotAuthenticated; AuthFailures says why
// (ErrUnsigned, ErrMalformedAuth, ErrUnknownKeyID, ErrMissingHeaders,
// ErrBadSignature, ErrBodyHash, ErrStaleDate).
//
// # Keys
//
// CreateKey makes an enabled key with one version and returns its URI,
// ocikms://ocid1.key.oc1.<region key>.<vault>.<id>?endpoint=<URL>&region=<region>.
// Each version has its own random AES-256 key; RotateKey adds a version that
// wraps from then on, and every version keeps decrypting (the ciphertext
// names its version, as OCI's does). Ciphertexts are bound by AES-GCM to the
// key, the version and the associated data: wrong associated data, another
// key's ciphertext or a modified ciphertext is 400 InvalidParameter.
// DisableKey and ScheduleDeletion make every operation on the key 409
// IncorrectState; EnableKey undoes either. An unknown key is 404
// NotAuthorizedOrNotFound.
//
// # Faults
//
// Renderer answers the kmstest faults as OCI would: FaultThrottle is 429
// TooManyRequests, FaultServerError 500 InternalServerError, and Deny(op) 404
// NotAuthorizedOrNotFound (OCI's answer to a policy that lacks the
// operation, indistinguishable from a missing key). Every error is OCI's JSON
// {"code": "...", "message": "..."} with an opc-request-id header.
// Classifier names requests Encrypt, Decrypt or GenerateDataEncryptionKey
// and reads their keyId for the request log.
package ociemu
