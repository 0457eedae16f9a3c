// Package keybroker is the read path's protocol: a reader asks the key
// broker (served by the encryptor on keyward.key.unwrap.<tenant>) for the
// key of ONE asset and gets it sealed with HPKE (RFC 9180, crypto/hpke) to a
// fresh ephemeral public key of its own, so no key travels in the clear even
// over an unencrypted NATS connection, and the reader never holds the
// tenant's seed — only the 44-byte per-asset key (AES-256 key and base
// nonce) that opens that one ciphertext.
//
// The exchange:
//
//	reader → broker  UnwrapRequest{tenant_id, asset_id, prefix, recipient_public_key}
//	broker           ledger lookup; prefix consistent with the ledger; KMS unwrap of
//	                 the seed (cached); key commitment checked for the asset's identity
//	broker → reader  UnwrapResponse{suite, sealed_key, key_uri, mode} or {error{code, message}}
//
// # Who may ask
//
// Only identities whose permissions allow keyward.key.unwrap.<tenant>
// (readers, pkg/access) can send a request at all. The broker serves from
// the account KEYWARD_SERVICES, which exports the subject; the KEYWARD
// account imports it with share, so every request reaches the broker with
// the server-set Nats-Request-Info naming the requesting user and its
// credential's tags. With authorisation on (the default wherever NATS
// authenticates), the broker releases a key only when that caller is a
// reader whose services cover the asset's service and whose purposes cover
// the request's Purpose, and the tenant does not deny that purpose
// (tenant configuration denied_purposes): otherwise CodeNotAuthorized or
// CodePurposeDenied. The caller is never taken from the request body.
// Every release and refusal of a known tenant's asset is recorded as a
// KeyAccess event on keyward.audit.key_access.<tenant> (stream KW_AUDIT);
// a release is answered only after its record is stored.
//
// # Objects replaced while reading
//
// A re-encryptor rotating or healing an asset replaces its vault object
// (an Object Store Put of the same name: new chunks, then the new metadata,
// then the old chunks are purged) and only then publishes the event that
// updates the broker's ledger. A reader in that window may send a prefix
// the ledger does not describe yet (or any longer) and be refused with
// prefix_mismatch, or lose the chunks of the object it opened. Client.Open
// and Asset's reads handle both: they re-open the object (compared by NUID
// and digest), re-read the prefix and ask the broker again, up to 5 attempts
// with backoff from 50 ms and at most 3 s in all (WithReopens), then fail
// with the last error as before: a *Error with CodePrefixMismatch for a
// prefix the broker keeps refusing, such as a tampered one. A read that
// resumes on the new object returns the same plaintext, since
// re-encryption and rewrap keep it; an object replaced by one of another
// plaintext size fails the read.
package keybroker

import (
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"

	"github.com/keyward/keyward/pkg/envelope/cobblestone"
)

// Suite names the HPKE ciphersuite of version 1 of the protocol:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
const Suite = "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-256-GCM"

// UnwrapRequest asks for the key of one asset.
type UnwrapRequest struct {
	TenantID string `json:"tenant_id"`
	AssetID  string `json:"asset_id"`
	// Prefix is the start of the asset's ciphertext: the envelope header
	// and the payload's salt and commitment (envelope.Prefix).
	Prefix []byte `json:"prefix"`
	// RecipientPublicKey is the reader's ephemeral X25519 public key.
	RecipientPublicKey []byte `json:"recipient_public_key"`
	// Purpose is why the reader asks (events.Purposes: playback,
	// transcription, export, support, legal_hold). Required where the
	// broker authorises callers.
	Purpose string `json:"purpose,omitempty"`
}

// UnwrapResponse carries the sealed key, or an error.
type UnwrapResponse struct {
	Suite string `json:"suite,omitempty"`
	// SealedKey is HPKE enc ‖ ciphertext of the 44-byte message key.
	SealedKey []byte `json:"sealed_key,omitempty"`
	KeyURI    string `json:"key_uri,omitempty"`
	Mode      string `json:"mode,omitempty"`
	Error     *Error `json:"error,omitempty"`
}

// Error codes of the broker.
const (
	CodeInvalidRequest = "invalid_request" // malformed request; fix the client
	CodeTenantMismatch = "tenant_mismatch" // subject and request name different tenants
	CodeAssetNotFound  = "asset_not_found" // no such asset (or the broker's ledger has not caught up: retry)
	CodeAssetRejected  = "asset_rejected"  // the asset was never stored
	CodePrefixMismatch = "prefix_mismatch" // the prefix is not this asset's ciphertext
	CodeKeyUnavailable = "key_unavailable" // the KMS refused or could not be reached
	CodeKeyRevoked     = "key_revoked"     // the key is disabled, denied or deleted
	CodeNotAuthorized  = "not_authorized"  // the caller may not read this asset (role, service or purpose outside its grant)
	CodePurposeDenied  = "purpose_denied"  // the tenant denies this purpose for its content
	CodeInternal       = "internal"
)

// Error is a broker refusal. Messages name the asset and the problem, never
// key material.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("key broker: %s: %s", e.Code, e.Message) }

// Retryable reports whether asking again later with the same request may
// succeed.
func (e *Error) Retryable() bool {
	return e.Code == CodeAssetNotFound || e.Code == CodeKeyUnavailable || e.Code == CodeInternal
}

// RetryAfterReopen reports whether asking again may succeed after the
// reader re-reads the prefix: a prefix_mismatch is what a reader gets while
// the object is being replaced (re-encrypted or rewrapped) and the broker's
// ledger does not describe the object it read yet, or any longer. A
// tampered prefix gets it too, every time.
func (e *Error) RetryAfterReopen() bool { return e.Code == CodePrefixMismatch }

// ErrBroker is matched by every *Error.
var ErrBroker = errors.New("key broker refused")

// Is reports whether target is ErrBroker.
func (e *Error) Is(target error) bool { return target == ErrBroker }

// info binds a sealed key to the asset it opens.
func info(tenantID, assetID string) []byte {
	b := []byte("keyward.dev/keybroker/v1\x00")
	b = append(b, tenantID...)
	b = append(b, 0)
	return append(b, assetID...)
}

// Seal seals the message key for the recipient (the broker's side).
func Seal(recipientPublicKey []byte, tenantID, assetID string, key *cobblestone.MessageKey) ([]byte, error) {
	kem := hpke.DHKEM(ecdh.X25519())
	pk, err := kem.NewPublicKey(recipientPublicKey)
	if err != nil {
		return nil, fmt.Errorf("recipient_public_key is not an X25519 public key: %w", err)
	}
	kb := key.Bytes()
	defer clear(kb)
	return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info(tenantID, assetID), kb)
}

// Recipient is a reader's ephemeral HPKE key pair, for one request.
type Recipient struct {
	priv hpke.PrivateKey
}

// NewRecipient generates an ephemeral key pair.
func NewRecipient() (*Recipient, error) {
	priv, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		return nil, err
	}
	return &Recipient{priv: priv}, nil
}

// PublicKey is what goes in UnwrapRequest.RecipientPublicKey.
func (r *Recipient) PublicKey() []byte { return r.priv.PublicKey().Bytes() }

// Open unseals a message key for tenantID/assetID.
func (r *Recipient) Open(sealed []byte, tenantID, assetID string) (*cobblestone.MessageKey, error) {
	kb, err := hpke.Open(r.priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info(tenantID, assetID), sealed)
	if err != nil {
		return nil, fmt.Errorf("key broker: the sealed key does not open for %s/%s: %w", tenantID, assetID, err)
	}
	defer clear(kb)
	return cobblestone.MessageKeyFromBytes(kb)
}
