package events

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Event type names, used in the ce-type header (CloudEvents style) and in
// schemas/. The trailing version changes only with an incompatible change.
const (
	TypeAssetCreated     = "dev.keyward.asset.created.v1"
	TypeAssetEncrypted   = "dev.keyward.asset.encrypted.v1"
	TypeAssetRejected    = "dev.keyward.asset.rejected.v1"
	TypeAssetReencrypted = "dev.keyward.asset.reencrypted.v1"
	TypeDeadLetter       = "dev.keyward.dlq.v1"
)

// Limits on producer-supplied fields. A producer exceeding one gets a
// FieldError naming the field and the limit.
const (
	MaxServiceLen     = 64
	MaxUserIDLen      = 256
	MaxObjectNameLen  = 1024
	MaxContentTypeLen = 255
	MaxMetadataKeys   = 32
	MaxMetadataKeyLen = 64
	MaxMetadataValLen = 1024
	MaxDetailLen      = 1024
)

// Content says where an asset's plaintext is: staged in an Object Store
// bucket, or inline (base64 in JSON) for small assets. Exactly one of the two.
type Content struct {
	Bucket string `json:"bucket,omitempty"`
	Object string `json:"object,omitempty"`
	// Inline is the plaintext itself. nil means absent; an empty non-nil
	// slice is a valid zero-byte asset ("inline": "").
	Inline []byte `json:"-"`
}

type contentJSON struct {
	Bucket string  `json:"bucket,omitempty"`
	Object string  `json:"object,omitempty"`
	Inline *[]byte `json:"inline,omitempty"`
}

// MarshalJSON keeps "inline": "" for a zero-byte inline asset.
func (c Content) MarshalJSON() ([]byte, error) {
	j := contentJSON{Bucket: c.Bucket, Object: c.Object}
	if c.Inline != nil {
		j.Inline = &c.Inline
	}
	return json.Marshal(j)
}

// UnmarshalJSON is strict: unknown fields are refused.
func (c *Content) UnmarshalJSON(b []byte) error {
	var j contentJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*c = Content{Bucket: j.Bucket, Object: j.Object}
	if j.Inline != nil {
		c.Inline = *j.Inline
		if c.Inline == nil {
			c.Inline = []byte{}
		}
	}
	return nil
}

// IsInline reports whether the content is carried in the event.
func (c Content) IsInline() bool { return c.Inline != nil }

// Location names an object in an Object Store bucket.
type Location struct {
	Bucket string `json:"bucket"`
	Object string `json:"object"`
}

// AssetCreated is published by a producer on keyward.asset.created.<tenant>
// once the asset's plaintext is staged (or inline).
type AssetCreated struct {
	TenantID    string            `json:"tenant_id"`
	AssetID     string            `json:"asset_id"`
	Service     string            `json:"service"`
	OwnerUserID string            `json:"owner_user_id"`
	Origin      Origin            `json:"origin"`
	CreatedAt   time.Time         `json:"created_at"`
	Content     Content           `json:"content"`
	Size        *int64            `json:"size,omitempty"`
	SHA256      string            `json:"sha256,omitempty"` // hex digest of the plaintext, checked when present
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// AssetEncrypted is published by the encryptor on
// keyward.asset.encrypted.<tenant> once the ciphertext is in KW_VAULT. It
// carries everything a ledger needs to be rebuilt from KW_ASSETS, and no
// secret: the seed is wrapped by the KMS, and no digest of the plaintext is
// published (a digest of a short chat message would let anyone confirm a
// guess of its content).
type AssetEncrypted struct {
	TenantID string `json:"tenant_id"`
	AssetID  string `json:"asset_id"`
	Service  string `json:"service"`
	Mode     Mode   `json:"mode"`
	// Coverage says why the asset is (not) covered by the tenant's key, e.g.
	// "covered", "service_not_selected", "not_enrolled".
	Coverage string `json:"coverage"`
	KeyURI   string `json:"key_uri"`
	// KeyVersion is the provider key version that wrapped the seed.
	KeyVersion string `json:"key_version"`
	// WrappedSeed is the KMS ciphertext of the seed (base64 in JSON).
	WrappedSeed []byte   `json:"wrapped_seed"`
	Location    Location `json:"location"`
	// Size is the plaintext size in bytes.
	Size int64 `json:"size"`
	// CiphertextSize is the size of the stored object.
	CiphertextSize int64 `json:"ciphertext_size"`
	// CiphertextSHA256 is the hex SHA-256 of the stored object.
	CiphertextSHA256 string `json:"ciphertext_sha256"`
	// HeaderSHA256 is the hex SHA-256 of the envelope header, bound into the
	// ciphertext's key derivation.
	HeaderSHA256 string `json:"header_sha256"`
	// PendingReencryption is true for fallback assets until the re-encryptor
	// heals them under the customer key.
	PendingReencryption bool `json:"pending_reencryption"`
	// SourceEventID is the id of the AssetCreated event (its Nats-Msg-Id).
	SourceEventID string    `json:"source_event_id"`
	EncryptedAt   time.Time `json:"encrypted_at"`
}

// AssetRejected is published on keyward.asset.rejected.<tenant> when an
// asset is not stored. Its content is gone: the staging copy is deleted.
type AssetRejected struct {
	TenantID      string    `json:"tenant_id"`
	AssetID       string    `json:"asset_id"`
	Service       string    `json:"service,omitempty"`
	Reason        Reason    `json:"reason"`
	Detail        string    `json:"detail"`
	SourceEventID string    `json:"source_event_id,omitempty"`
	RejectedAt    time.Time `json:"rejected_at"`
}

// ReencryptPurpose says why an asset was re-encrypted (a closed set).
type ReencryptPurpose string

const (
	// PurposeHeal: a fallback copy re-encrypted under the customer key once
	// that key is back (from_mode fallback, to_mode customer).
	PurposeHeal ReencryptPurpose = "heal"
	// PurposeRotation: moved from the tenant's old key to its new key
	// (from_mode and to_mode customer).
	PurposeRotation ReencryptPurpose = "rotation"
	// PurposeDeprovision: moved to the platform key when the tenant is
	// deprovisioned (from_mode customer or fallback, to_mode platform).
	PurposeDeprovision ReencryptPurpose = "deprovision"
)

// Valid reports whether p is one of the defined purposes.
func (p ReencryptPurpose) Valid() bool {
	return p == PurposeHeal || p == PurposeRotation || p == PurposeDeprovision
}

// AssetReencrypted is published by the re-encryptor on
// keyward.asset.reencrypted.<tenant> (stream KW_ASSETS) once an asset's new
// ciphertext has replaced the old one in KW_VAULT. Like AssetEncrypted it
// carries everything a ledger record needs (the new key, key version,
// wrapped seed, location, sizes and digests), so a ledger applies it without
// reading anything else, and no secret.
type AssetReencrypted struct {
	TenantID string `json:"tenant_id"`
	AssetID  string `json:"asset_id"`
	Service  string `json:"service"`
	// FromMode and FromKeyURI are what the asset was stored under before.
	FromMode   Mode   `json:"from_mode"`
	ToMode     Mode   `json:"to_mode"`
	FromKeyURI string `json:"from_key_uri"`
	// KeyURI, KeyVersion and WrappedSeed are the new key and the new
	// wrapped seed (base64 in JSON).
	KeyURI      string   `json:"key_uri"`
	KeyVersion  string   `json:"key_version"`
	WrappedSeed []byte   `json:"wrapped_seed"`
	Location    Location `json:"location"`
	// Size is the plaintext size in bytes.
	Size int64 `json:"size"`
	// CiphertextSize, CiphertextSHA256 and HeaderSHA256 describe the new
	// stored object, as in AssetEncrypted.
	CiphertextSize   int64            `json:"ciphertext_size"`
	CiphertextSHA256 string           `json:"ciphertext_sha256"`
	HeaderSHA256     string           `json:"header_sha256"`
	Purpose          ReencryptPurpose `json:"purpose"`
	// JobID names the re-encryption job that moved the asset.
	JobID         string    `json:"job_id"`
	ReencryptedAt time.Time `json:"reencrypted_at"`
}

var (
	serviceRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	sha256Re  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidateService checks a service name: [a-z][a-z0-9_]{0,63}.
func ValidateService(s string) error { return validateServiceField("service", s) }

func validateServiceField(field, s string) error {
	if s == "" {
		return fieldErr(field, "is required", "name the service, e.g. cloud_recording")
	}
	if !serviceRe.MatchString(s) {
		return fieldErr(field, fmt.Sprintf("%q is not a service name", clip(s)), "use a-z, 0-9 and '_', starting with a letter, at most 64 characters")
	}
	return nil
}

// Validate checks every field of the event and returns all problems joined.
// Every error matches ErrInvalid and is a *FieldError.
func (e *AssetCreated) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(ValidateTenantID(e.TenantID))
	add(ValidateAssetID(e.AssetID))
	add(validateServiceField("service", e.Service))
	add(validateText("owner_user_id", e.OwnerUserID, MaxUserIDLen, true))
	if !e.Origin.Valid() {
		add(fieldErr("origin", fmt.Sprintf("%q is not an origin", clip(string(e.Origin))), `use "cloud" or "local_upload"`))
	}
	if e.CreatedAt.IsZero() {
		add(fieldErr("created_at", "is required", "give the asset's creation time in RFC 3339, e.g. 2026-01-02T15:04:05Z"))
	}
	c := e.Content
	staged := c.Bucket != "" || c.Object != ""
	switch {
	case staged && c.IsInline():
		add(fieldErr("content", "has both an object and inline data", "give either bucket+object or inline, not both"))
	case !staged && !c.IsInline():
		add(fieldErr("content", "is empty", `give {"bucket": "KW_STAGING", "object": "<name>"} or {"inline": "<base64>"}`))
	case staged:
		if c.Bucket != BucketStaging {
			add(fieldErr("content.bucket", fmt.Sprintf("%q is not the staging bucket", clip(c.Bucket)), "stage content in "+BucketStaging))
		}
		if err := validateText("content.object", c.Object, MaxObjectNameLen, true); err != nil {
			add(err)
		} else if strings.HasPrefix(c.Object, ".") || strings.HasSuffix(c.Object, ".") {
			add(fieldErr("content.object", "starts or ends with '.'", "use the name the object was staged under"))
		} else if e.TenantID != "" && !strings.HasPrefix(c.Object, e.TenantID+"/") {
			// A tenant can only hand over its own staged content: without
			// this, one tenant could have another's plaintext encrypted
			// under its own key.
			add(fieldErr("content.object", fmt.Sprintf("%q is not under the tenant's prefix %q", clip(c.Object), e.TenantID+"/"), "stage the object as <tenant_id>/<name>"))
		}
	}
	if e.Size != nil {
		switch {
		case *e.Size < 0:
			add(fieldErr("size", "is negative", "give the plaintext size in bytes, or omit it"))
		case c.IsInline() && *e.Size != int64(len(c.Inline)):
			add(fieldErr("size", fmt.Sprintf("is %d but the inline content has %d bytes", *e.Size, len(c.Inline)), "fix the size or omit it"))
		}
	}
	if e.SHA256 != "" && !sha256Re.MatchString(e.SHA256) {
		add(fieldErr("sha256", "is not 64 lowercase hex digits", "give the hex SHA-256 of the plaintext, or omit it"))
	}
	add(validateText("content_type", e.ContentType, MaxContentTypeLen, false))
	if len(e.Metadata) > MaxMetadataKeys {
		add(fieldErr("metadata", fmt.Sprintf("has %d entries, more than %d", len(e.Metadata), MaxMetadataKeys), "keep metadata small; it is not encrypted"))
	}
	for k, v := range e.Metadata {
		if err := validateText("metadata key", k, MaxMetadataKeyLen, true); err != nil {
			add(err)
			continue
		}
		add(validateText("metadata."+k, v, MaxMetadataValLen, false))
	}
	return errors.Join(errs...)
}

// SHA256Bytes returns the declared plaintext digest, or nil when absent.
func (e *AssetCreated) SHA256Bytes() []byte {
	if e.SHA256 == "" {
		return nil
	}
	b, err := hex.DecodeString(e.SHA256)
	if err != nil {
		return nil
	}
	return b
}

// Validate checks an AssetEncrypted (the encryptor's own output, and input of
// ledger projections).
func (e *AssetEncrypted) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(ValidateTenantID(e.TenantID))
	add(ValidateAssetID(e.AssetID))
	add(validateServiceField("service", e.Service))
	if !e.Mode.Valid() {
		add(fieldErr("mode", fmt.Sprintf("%q is not a mode", clip(string(e.Mode))), "customer, fallback or platform"))
	}
	add(validateText("key_uri", e.KeyURI, 1024, true))
	add(validateText("key_version", e.KeyVersion, 255, true))
	if len(e.WrappedSeed) == 0 {
		add(fieldErr("wrapped_seed", "is required", ""))
	}
	if e.Location.Bucket == "" || e.Location.Object == "" {
		add(fieldErr("location", "needs bucket and object", ""))
	}
	if e.Size < 0 || e.CiphertextSize < e.Size {
		add(fieldErr("size", "is inconsistent with ciphertext_size", ""))
	}
	if !sha256Re.MatchString(e.CiphertextSHA256) {
		add(fieldErr("ciphertext_sha256", "is not 64 lowercase hex digits", ""))
	}
	if !sha256Re.MatchString(e.HeaderSHA256) {
		add(fieldErr("header_sha256", "is not 64 lowercase hex digits", ""))
	}
	if e.EncryptedAt.IsZero() {
		add(fieldErr("encrypted_at", "is required", ""))
	}
	return errors.Join(errs...)
}

// Validate checks an AssetReencrypted: the fields AssetEncrypted has are
// checked the same way, and the modes must fit the purpose (heal: fallback
// to customer; rotation: customer to customer; deprovision: customer or
// fallback to platform), with a key different from the one before.
func (e *AssetReencrypted) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(ValidateTenantID(e.TenantID))
	add(ValidateAssetID(e.AssetID))
	add(validateServiceField("service", e.Service))
	fromOK, toOK := e.FromMode.Valid(), e.ToMode.Valid()
	if !fromOK {
		add(fieldErr("from_mode", fmt.Sprintf("%q is not a mode", clip(string(e.FromMode))), "customer, fallback or platform"))
	}
	if !toOK {
		add(fieldErr("to_mode", fmt.Sprintf("%q is not a mode", clip(string(e.ToMode))), "customer or platform"))
	}
	switch e.Purpose {
	case PurposeHeal:
		if fromOK && e.FromMode != ModeFallback {
			add(fieldErr("from_mode", fmt.Sprintf("is %q but a heal starts from fallback", e.FromMode), ""))
		}
		if toOK && e.ToMode != ModeCustomer {
			add(fieldErr("to_mode", fmt.Sprintf("is %q but a heal ends under the customer key", e.ToMode), ""))
		}
	case PurposeRotation:
		if fromOK && e.FromMode != ModeCustomer {
			add(fieldErr("from_mode", fmt.Sprintf("is %q but a rotation starts from the customer key", e.FromMode), ""))
		}
		if toOK && e.ToMode != ModeCustomer {
			add(fieldErr("to_mode", fmt.Sprintf("is %q but a rotation ends under the customer key", e.ToMode), ""))
		}
	case PurposeDeprovision:
		if fromOK && e.FromMode == ModePlatform {
			add(fieldErr("from_mode", `is "platform" but a deprovisioning starts from the customer or fallback key`, ""))
		}
		if toOK && e.ToMode != ModePlatform {
			add(fieldErr("to_mode", fmt.Sprintf("is %q but a deprovisioning ends under the platform key", e.ToMode), ""))
		}
	default:
		add(fieldErr("purpose", fmt.Sprintf("%q is not a purpose", clip(string(e.Purpose))), "heal, rotation or deprovision"))
	}
	add(validateText("from_key_uri", e.FromKeyURI, 1024, true))
	add(validateText("key_uri", e.KeyURI, 1024, true))
	if e.KeyURI != "" && e.KeyURI == e.FromKeyURI {
		add(fieldErr("key_uri", "is the same as from_key_uri", "a re-encryption moves an asset to another key"))
	}
	add(validateText("key_version", e.KeyVersion, 255, true))
	if len(e.WrappedSeed) == 0 {
		add(fieldErr("wrapped_seed", "is required", ""))
	}
	if e.Location.Bucket != BucketVault || e.Location.Object == "" {
		add(fieldErr("location", "needs bucket "+BucketVault+" and an object", ""))
	}
	if e.Size < 0 || e.CiphertextSize < e.Size {
		add(fieldErr("size", "is inconsistent with ciphertext_size", ""))
	}
	if !sha256Re.MatchString(e.CiphertextSHA256) {
		add(fieldErr("ciphertext_sha256", "is not 64 lowercase hex digits", ""))
	}
	if !sha256Re.MatchString(e.HeaderSHA256) {
		add(fieldErr("header_sha256", "is not 64 lowercase hex digits", ""))
	}
	add(validateText("job_id", e.JobID, 255, true))
	if e.ReencryptedAt.IsZero() {
		add(fieldErr("reencrypted_at", "is required", ""))
	}
	return errors.Join(errs...)
}

// Validate checks an AssetRejected.
func (e *AssetRejected) Validate() error {
	var errs []error
	if err := ValidateTenantID(e.TenantID); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateAssetID(e.AssetID); err != nil {
		errs = append(errs, err)
	}
	if !validToken(string(e.Reason)) {
		errs = append(errs, fieldErr("reason", "is not a reason code", ""))
	}
	if e.RejectedAt.IsZero() {
		errs = append(errs, fieldErr("rejected_at", "is required", ""))
	}
	return errors.Join(errs...)
}

// validateText checks a free-text field: valid UTF-8, no control characters,
// at most max bytes, and present when required.
func validateText(field, s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return fieldErr(field, "is required", "")
	case len(s) > max:
		return fieldErr(field, fmt.Sprintf("is %d bytes long, more than %d", len(s), max), "shorten it")
	case !utf8.ValidString(s):
		return fieldErr(field, "is not valid UTF-8", "")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fieldErr(field, "contains a control character", "remove it")
		}
	}
	return nil
}

// clip shortens producer-supplied text before it is quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
