// Package kmstest holds what tests of KMS providers share: the conformance
// suite every kms.Provider (and kms.Client) must pass, RunConformance, and
// (later) protocol emulators for the cloud providers.
//
// RunConformance checks: GenerateDataKey→Decrypt and Encrypt→Decrypt round
// trips; 32-byte, distinct data keys and randomised wrapping; a non-empty key
// version stable across calls; two keys not interchangeable and a wrong
// encryption context refused (kms.CodeInvalidCiphertext); truncated, flipped,
// extended and random ciphertexts refused (kms.CodeInvalidCiphertext); a
// cancelled or expired context returning promptly with an error matching it;
// empty plaintext refused (kms.CodeInvalidArgument); a disabled key
// (kms.CodeKeyDisabled, kms.ErrKeyUnusable) and a missing key
// (kms.CodeKeyNotFound); errors typed as *kms.Error that never contain secret
// or ciphertext bytes; and concurrent use.
package kmstest
