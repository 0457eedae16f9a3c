package enroll

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/platform"
)

// ProbeResult is a successful round trip.
type ProbeResult struct {
	KeyVersion string
	Millis     map[string]float64
}

// Probe runs the round trip Keyward needs a customer key for, with the
// platform's identity and the tenant's encryption context (purpose
// key-probe): GenerateDataKey → Decrypt → compare (what the encryptor and
// the key broker do), then Encrypt → Decrypt → compare (what rotation and
// deprovisioning rewraps do). Nothing is kept: the probe's keys are
// destroyed.
func Probe(ctx context.Context, p kms.Provider, key kms.KeyURI, tenantID string, plat platform.Config) (*ProbeResult, *Error) {
	ec := kms.NewEncryptionContext(tenantID, kms.PurposeProbe)
	res := &ProbeResult{Millis: map[string]float64{}}
	// seen: the key has answered an operation. A later "not found" is then
	// a policy that admits one operation and not this one (OCI answers 404
	// NotAuthorizedOrNotFound for both).
	seen := false
	timed := func(op string, f func() error) *Error {
		start := time.Now()
		err := f()
		res.Millis[op] = float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			if seen && kms.CodeOf(err) == kms.CodeKeyNotFound {
				err = &kms.Error{Code: kms.CodeAccessDenied, Provider: key.Scheme, Op: op, Key: key.String(), Err: err}
			}
			return explain(op, key, err, plat)
		}
		seen = true
		return nil
	}

	var dk *kms.DataKey
	if e := timed(kms.OpGenerateDataKey, func() (err error) { dk, err = p.GenerateDataKey(ctx, key, ec); return }); e != nil {
		return nil, e
	}
	defer dk.Destroy()
	res.KeyVersion = dk.KeyVersion
	var back *kms.Secret
	if e := timed(kms.OpDecrypt, func() (err error) { back, err = p.Decrypt(ctx, key, dk.Ciphertext, ec); return }); e != nil {
		return nil, e
	}
	same := subtle.ConstantTimeCompare(back.Bytes(), dk.Plaintext.Bytes()) == 1
	back.Destroy()
	if !same {
		return nil, &Error{Code: CodeRoundTrip, Op: kms.OpDecrypt, Message: "Decrypt returned a different key than GenerateDataKey made: the key or its endpoint is not behaving as a KMS"}
	}

	mine := make([]byte, kms.DataKeySize)
	rand.Read(mine)
	secret := kms.NewSecret(mine)
	defer secret.Destroy()
	var wrapped *kms.Wrapped
	if e := timed(kms.OpEncrypt, func() (err error) { wrapped, err = p.Encrypt(ctx, key, secret, ec); return }); e != nil {
		return nil, e
	}
	if e := timed(kms.OpDecrypt+"(encrypted)", func() (err error) { back, err = p.Decrypt(ctx, key, wrapped.Ciphertext, ec); return }); e != nil {
		return nil, e
	}
	same = subtle.ConstantTimeCompare(back.Bytes(), secret.Bytes()) == 1
	back.Destroy()
	if !same {
		return nil, &Error{Code: CodeRoundTrip, Op: kms.OpDecrypt, Message: "Decrypt did not return what Encrypt wrapped"}
	}
	return res, nil
}

// explain turns a KMS failure during op into what the tenant must change.
func explain(op string, key kms.KeyURI, err error, plat platform.Config) *Error {
	op = strings.TrimSuffix(op, "(encrypted)")
	who := identities(key, plat)
	switch kms.CodeOf(err) {
	case kms.CodeAccessDenied:
		return &Error{Code: CodePermissionMissing, Op: op, Message: fmt.Sprintf(
			"the key's policy does not let the platform (%s) call %s: grant %s (see `keyward tenant key policy --provider %s`)",
			who, op, permissionName(key.Scheme, op), providerName(key.Scheme))}
	case kms.CodeKeyDisabled:
		return &Error{Code: CodeKeyUnusable, Op: op, Message: fmt.Sprintf("the key is disabled or pending deletion: enable it (or cancel the deletion) and enroll again (%v)", kms.CodeOf(err))}
	case kms.CodeKeyNotFound:
		msg := "no such key, or it is not visible to the platform: check the key id and its region or endpoint"
		if key.Scheme == kms.SchemeOCI {
			msg += "; OCI answers the same for a missing key and for a policy that does not admit the platform's group (" + who + ")"
		}
		return &Error{Code: CodeKeyUnusable, Op: op, Message: msg}
	case kms.CodeEndpointUnreachable:
		return &Error{Code: CodeUnreachable, Op: op, Message: fmt.Sprintf("the KMS endpoint %s could not be reached: check the URI's region and endpoint, then try again", key.EndpointID())}
	case kms.CodeThrottled:
		return &Error{Code: CodeThrottled, Op: op, Message: "the KMS throttled the probe: try again in a moment"}
	case kms.CodeInvalidCiphertext:
		return &Error{Code: CodeRoundTrip, Op: op, Message: "the KMS refused to decrypt what it just produced: a key policy condition on the encryption context (keyward:tenant, keyward:purpose) may not match this tenant"}
	case kms.CodeInvalidArgument:
		return &Error{Code: CodeUnsupportedProvider, Op: op, Message: err.Error()}
	}
	return &Error{Code: CodeInternal, Op: op, Message: fmt.Sprintf("%s failed: %v", op, kms.CodeOf(err))}
}

func identities(key kms.KeyURI, plat platform.Config) string {
	ids := plat.Identities(key)
	if len(ids) == 0 {
		return "the platform's identity"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.ID
	}
	return strings.Join(s, ", ")
}

func permissionName(scheme, op string) string {
	switch scheme {
	case kms.SchemeAWS:
		return "kms:" + op
	case kms.SchemeOCI:
		if op == kms.OpGenerateDataKey {
			op = kms.OpEncrypt // the OCI provider wraps its own random data keys
		}
		return "request.operation='" + op + "'"
	case kms.SchemeAzure:
		if op == kms.OpDecrypt {
			return "the unwrapKey key permission (Microsoft.KeyVault/vaults/keys/unwrap/action)"
		}
		return "the wrapKey key permission (Microsoft.KeyVault/vaults/keys/wrap/action)"
	}
	return op
}

func providerName(scheme string) string {
	switch scheme {
	case kms.SchemeAWS:
		return "aws"
	case kms.SchemeOCI:
		return "oci"
	case kms.SchemeAzure:
		return "azure"
	}
	return scheme
}
