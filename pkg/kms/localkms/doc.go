// Package localkms is the kms.Provider for key-encryption keys kept in local
// files (localkms://<path> key URIs): platform and fallback keys in dev and
// tests, and the stand-in for a customer's KMS in `keyward dev`. It is not a
// hardware-backed KMS; production customer keys live in AWS, OCI or Azure.
//
// # Key files
//
// A key file is a JSON document, mode 0600:
//
//	{
//	  "format": "keyward-localkms/v1",
//	  "key_id": "<32 lowercase hex digits: 16 random bytes>",
//	  "disabled": false,
//	  "versions": [
//	    {"id": "1", "created_at": "2025-01-02T03:04:05Z", "material": "<base64 of 32 random bytes>"}
//	  ]
//	}
//
// Version ids are decimal numbers from 1; the last version is the newest and
// wraps, every version unwraps. CreateKeyFile writes a new file (refusing to
// overwrite one), RotateKeyFile appends a version, SetDisabled flips
// "disabled"; all three write atomically (temporary file, fsync, rename) and
// are serialised within the process. Unknown fields are refused, so a typo
// such as "disable" cannot silently leave a key enabled.
//
// The provider re-reads the file on every call (calls are amortised by the
// kms.SeedCache), so disabling, rotating or deleting a key takes effect at
// once. Relative key paths resolve against WithBaseDir, or the working
// directory. WithCreate creates a missing key file on first wrap (file 0600,
// parent directories 0700).
//
// # Wrap format
//
// AES-256-GCM under the newest version's material, with a random 12-byte
// nonce:
//
//	ciphertext = "KWL1" || u8 len(version id) || version id || nonce[12] || sealed (plaintext + 16-byte tag)
//	AAD        = "keyward-localkms/v1 wrap\x00" || key_id (32 hex) || u8 len(version id) || version id || ec.Canonical()
//
// The AAD binds the key file's identity, the version and the encryption
// context: a ciphertext unwraps only with the same key file (or a copy of it),
// the same version and the same context.
//
// # Errors
//
// Every error is a *kms.Error:
//
//	missing key file (without WithCreate)                  kms.CodeKeyNotFound
//	file unreadable, or readable by group or others        kms.CodeAccessDenied (the message says: chmod 600 <file>)
//	"disabled": true                                        kms.CodeKeyDisabled
//	malformed key file (message names the file)            kms.CodeInternal
//	wrong key, wrong context, modified or truncated input  kms.CodeInvalidCiphertext
//	non-localkms URI, invalid context, empty plaintext     kms.CodeInvalidArgument
//	caller's context done                                   kms.CodeInternal, matching ctx.Err()
//
// Messages name the file but never contain key material, plaintext or
// ciphertext bytes.
package localkms
