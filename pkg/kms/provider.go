package kms

import "context"

// Operation names, used in Error.Op, span names ("kms.<Op>") and the "op"
// metric label.
const (
	OpGenerateDataKey = "GenerateDataKey"
	OpEncrypt         = "Encrypt"
	OpDecrypt         = "Decrypt"
)

// DataKeySize is the size in bytes of every data key and seed.
const DataKeySize = 32

// DataKey is a fresh key and its ciphertext under a key-encryption key.
type DataKey struct {
	Plaintext  *Secret // DataKeySize bytes; the receiver owns it and must Destroy it
	Ciphertext []byte  // opaque, provider-specific; store it next to the data
	KeyVersion string  // version of the key-encryption key that wrapped it; never empty
}

// Destroy destroys the plaintext. It is safe on nil.
func (d *DataKey) Destroy() {
	if d != nil {
		d.Plaintext.Destroy()
	}
}

// Wrapped is a plaintext wrapped under a key-encryption key.
type Wrapped struct {
	Ciphertext []byte
	KeyVersion string // version of the key-encryption key that wrapped it; never empty
}

// Provider is the driver for one KMS: it makes the SDK calls and maps the
// SDK's errors to *Error with a Code, nothing else. Tracing, metrics, timeouts
// and input validation are done once, in Client. Providers are registered
// explicitly by key URI scheme (WithProvider); there is no global registry.
//
// Every implementation must pass kmstest.RunConformance. In particular it:
//   - honours ctx: a cancelled or expired ctx makes the call return promptly
//     with an error matching ctx.Err();
//   - binds ec: unwrapping with a different context fails with
//     CodeInvalidCiphertext (a provider whose KMS cannot bind a context says
//     so in its documentation and binds it itself where it can);
//   - returns the version of the key-encryption key that wrapped, non-empty
//     and stable until the key is rotated;
//   - never puts plaintext, key bytes or ciphertext bytes in an error;
//   - is safe for concurrent use.
type Provider interface {
	// GenerateDataKey returns a fresh DataKeySize-byte key and its ciphertext under key.
	GenerateDataKey(ctx context.Context, key KeyURI, ec EncryptionContext) (*DataKey, error)
	// Encrypt wraps plaintext under key, bound to ec.
	Encrypt(ctx context.Context, key KeyURI, plaintext *Secret, ec EncryptionContext) (*Wrapped, error)
	// Decrypt unwraps ciphertext produced by GenerateDataKey or Encrypt under
	// key (any version of it) with the same ec.
	Decrypt(ctx context.Context, key KeyURI, ciphertext []byte, ec EncryptionContext) (*Secret, error)
}
