// Package awsemu is an AWS KMS emulator for tests and dev mode: local-kms
// (github.com/nsmithuk/local-kms) running in process behind a
// kmstest.Server, reached with the real aws-sdk-go-v2 over loopback HTTP.
//
//	emu := awsemu.StartT(t)                        // eu-west-2, account 111122223333
//	key, _ := emu.CreateKey(ctx)                    // awskms://arn:aws:kms:eu-west-2:111122223333:key/<id>?endpoint=http://127.0.0.1:<port>
//	p, _ := emu.Provider(ctx)                       // an awskms.Provider with the emulator's credentials
//	emu.Server.Faults.Set(kmstest.FaultThrottle)    // faults, request log: see kmstest
//	emu.DisableKey(ctx, key)                        // admin operations
//
// # How local-kms is run
//
// The emulator opens local-kms's key database (LevelDB, in a temporary
// directory removed by Close, or WithDataDir) and dispatches requests by
// X-Amz-Target to local-kms's handler methods itself, with a logrus logger
// writing to io.Discard (local-kms's own dispatch, src.HandleRequest, logs
// every call to stderr). Unknown operations get AWS's
// UnknownOperationException; a panic in local-kms becomes
// InvalidCiphertextException for Decrypt (local-kms panics on blobs too short
// for a nonce) and KMSInternalException otherwise.
//
// # Regions and accounts
//
// local-kms keeps its region and account in package globals
// (config.AWSRegion, config.AWSAccountId) read on every request to build
// ARNs. This package sets them once per process to an internal region
// ("zz-emulated-1") and account (111122223333) and owns them: nothing else in
// the process may run local-kms. Each emulator then rewrites ARNs between
// its own region and account (WithRegion, WithAccount) and the internal ones
// in every request and response, and has its own database, so emulators of
// several regions (say eu-west-2 and a replica in eu-west-1) and accounts
// coexist in one process. An ARN of another region or account names no key
// in an emulator (NotFoundException), as in AWS. Only the aws partition is
// emulated.
//
// # Data plane and admin operations
//
// The data plane is the kmstest.Server at URL: faults, the request log
// (Faults.Requests, Faults.Ops; operations named without the "TrentService."
// prefix, like kms.OpDecrypt, keys as the client sent them), and a SigV4
// check local-kms does not do: the access key id must be known (the
// emulator's test credentials, or AllowCredentials), a session token must
// match, the credential scope must be this region and kms, and the
// signature must verify (recomputed with the SDK's signer); failures are
// AWS's UnrecognizedClientException, InvalidSignatureException,
// IncompleteSignatureException and MissingAuthenticationTokenException.
// AccessKeyIDs lists who signed each data-plane request.
//
// Admin operations (CreateKey, CreateAlias, DisableKey, EnableKey,
// ScheduleDeletion, CancelDeletion) use the real SDK client too, but its
// HTTP client hands requests straight to the handlers: no faults, no log, no
// signature check. So tests can change keys while the data plane fails, and
// the request log holds only what the code under test sent.
//
// # Ciphertexts
//
// local-kms's ciphertext names its key by ARN in ASCII and does not
// authenticate that reference (Decrypt with a KeyId ignores it). The
// emulator hands out 0x01 || 16-byte key id || local-kms's version, nonce and
// sealed bytes instead, restores local-kms's form on the way in, and refuses
// a Decrypt whose blob names another key than the one that decrypted it
// (IncorrectKeyException), as AWS does.
//
// # Faults
//
// Renderer writes AWS's JSON errors for the kmstest faults: FaultThrottle →
// 400 ThrottlingException, FaultServerError → 503 ServiceUnavailable,
// Faults.Deny(op) → 400 AccessDeniedException naming kms:<op>. FaultHang and
// FaultRefuse are kmstest's. Classify reads the operation from X-Amz-Target
// and the key from the body's KeyId (or TargetKeyId).
//
// # What is not emulated
//
//   - STS and IAM: credentials are checked (above) but no policy is
//     evaluated — key policies are stored, not enforced; use Faults.Deny for
//     a denied operation. Tests of assumed roles need an STS stand-in.
//   - Throttling and quotas (FaultThrottle only), grants, multi-region
//     (mrk-) keys, custom key stores, partitions other than aws, on-demand
//     rotation (RotateKeyOnDemand is unknown); automatic rotation happens only
//     a year after EnableKeyRotation.
//   - CancelDeletion leaves the key enabled (AWS leaves it disabled), and
//     ScheduleDeletion's deletion happens for real only after the window.
package awsemu
