package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keyward/keyward/pkg/events"
)

// Mode is the key an encrypted asset's seed is wrapped under: the contract's
// mode (customer, fallback or platform), shared with the events.
type Mode = events.Mode

// The encryption modes (see the encryption decision in ARCHITECTURE.md).
const (
	// ModeCustomer: the tenant's own KMS key.
	ModeCustomer = events.ModeCustomer
	// ModeFallback: the platform backup key, used while the customer key is
	// unreachable; such records carry Reencrypt=true until healed.
	ModeFallback = events.ModeFallback
	// ModePlatform: the platform key, for assets the tenant's key does not cover.
	ModePlatform = events.ModePlatform
)

func Modes() []Mode { return []Mode{ModeCustomer, ModeFallback, ModePlatform} }

// State is the terminal state of an asset.
type State string

// The terminal states of an asset.
const (
	StateEncrypted State = "encrypted"
	StateRejected  State = "rejected"
)

// Valid reports whether s is StateEncrypted or StateRejected.
func (s State) Valid() bool { return s == StateEncrypted || s == StateRejected }

// Record is the ledger's entry for one asset. Its JSON form (snake_case tags)
// is both the stored value (after one version byte, see doc.go) and the
// external representation; field names are stable.
//
// Record's String, GoString and LogValue never print WrappedSeed, SHA256 or
// HeaderSHA256, only their lengths.
type Record struct {
	TenantID string `json:"tenant_id"`
	AssetID  string `json:"asset_id"`
	Service  string `json:"service,omitempty"`
	State    State  `json:"state"`
	// Mode is empty when State is StateRejected.
	Mode Mode `json:"mode,omitempty"`
	// KeyURI is the key the asset's seed is wrapped under. Required when
	// encrypted. A rejected record may name the key that was unusable; it is
	// stored but not indexed.
	KeyURI string `json:"key_uri,omitempty"`
	// KeyVersion is the provider's key version used for the wrap.
	KeyVersion string `json:"key_version,omitempty"`
	// WrappedSeed is the KMS ciphertext of the seed. Not secret, but never
	// logged in full.
	WrappedSeed []byte `json:"wrapped_seed,omitempty"`
	// HeaderSHA256 is the digest of the asset's envelope header.
	HeaderSHA256 []byte `json:"header_sha256,omitempty"`
	// Bucket and Object locate the ciphertext in the object store.
	Bucket string `json:"bucket,omitempty"`
	Object string `json:"object,omitempty"`
	// Size is the plaintext size in bytes.
	Size           int64 `json:"size"`
	CiphertextSize int64 `json:"ciphertext_size"`
	// SHA256 is the digest of the stored ciphertext object. (No plaintext
	// digest is kept anywhere: for a short chat message it would let anyone
	// holding the ledger confirm a guess of the content.)
	SHA256 []byte `json:"sha256,omitempty"`
	// Coverage says why the asset is (or is not) under the customer key
	// (tenant.Coverage: "covered", "service_not_selected", ...).
	Coverage string `json:"coverage,omitempty"`
	// Reencrypt is true while the asset is stored under the fallback key and
	// waits to be healed.
	Reencrypt    bool   `json:"reencrypt,omitempty"`
	RejectReason string `json:"reject_reason,omitempty"`
	RejectDetail string `json:"reject_detail,omitempty"`
	// EventID is the id of the AssetCreated event that produced the record.
	EventID string `json:"event_id,omitempty"`
	// StreamSeq is the KW_ASSETS sequence of the published outcome event; 0
	// until projected.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// EncryptedAt is the time of encryption, or of rejection. Stored in UTC.
	EncryptedAt time.Time `json:"encrypted_at,omitzero"`
	// ReencryptedAt is the time the asset was last re-encrypted or rewrapped
	// (AssetReencrypted: heal, rotation, deprovision); zero if never. Stored
	// in UTC.
	ReencryptedAt time.Time `json:"reencrypted_at,omitzero"`
	// UpdatedAt is set by the Store (its clock, UTC) on every write.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// String prints the identity and state of r; digests and the wrapped seed are
// shown only by length.
func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ledger.Record{tenant_id=%q asset_id=%q state=%s", r.TenantID, r.AssetID, r.State)
	if r.Mode != "" {
		fmt.Fprintf(&b, " mode=%s", r.Mode)
	}
	if r.KeyURI != "" {
		fmt.Fprintf(&b, " key_uri=%q", r.KeyURI)
	}
	if r.KeyVersion != "" {
		fmt.Fprintf(&b, " key_version=%q", r.KeyVersion)
	}
	fmt.Fprintf(&b, " wrapped_seed=[%d bytes]", len(r.WrappedSeed))
	if r.Reencrypt {
		b.WriteString(" reencrypt=true")
	}
	if r.RejectReason != "" {
		fmt.Fprintf(&b, " reject_reason=%q", r.RejectReason)
	}
	fmt.Fprintf(&b, " stream_seq=%d}", r.StreamSeq)
	return b.String()
}

// GoString is String, so that %#v does not print the wrapped seed either.
func (r Record) GoString() string { return r.String() }

// LogValue implements slog.LogValuer with the same redaction as String.
func (r Record) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("tenant_id", r.TenantID),
		slog.String("asset_id", r.AssetID),
		slog.String("state", string(r.State)),
	}
	if r.Service != "" {
		attrs = append(attrs, slog.String("service", r.Service))
	}
	if r.Mode != "" {
		attrs = append(attrs, slog.String("mode", string(r.Mode)))
	}
	if r.KeyURI != "" {
		attrs = append(attrs, slog.String("key_uri", r.KeyURI))
	}
	if r.KeyVersion != "" {
		attrs = append(attrs, slog.String("key_version", r.KeyVersion))
	}
	attrs = append(attrs, slog.Int("wrapped_seed_len", len(r.WrappedSeed)))
	if r.Reencrypt {
		attrs = append(attrs, slog.Bool("reencrypt", true))
	}
	if r.RejectReason != "" {
		attrs = append(attrs, slog.String("reject_reason", r.RejectReason))
	}
	attrs = append(attrs, slog.Uint64("stream_seq", r.StreamSeq))
	return slog.GroupValue(attrs...)
}

// InvalidRecordError says which field of a record (or which identifier
// argument) is invalid. It unwraps to ErrInvalidRecord. Its text names the
// field and never contains wrapped seeds or digests.
type InvalidRecordError struct {
	Field  string // JSON name of the field: "tenant_id", "mode", "key_uri", ...
	Reason string
}

func (e *InvalidRecordError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalidRecord.
func (e *InvalidRecordError) Unwrap() error { return ErrInvalidRecord }

func invalid(field, format string, args ...any) error {
	return &InvalidRecordError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// checkID validates an identifier that becomes part of a bbolt key.
func checkID(field, v string) error {
	if v == "" {
		return invalid(field, "must not be empty")
	}
	if strings.IndexByte(v, sep) >= 0 {
		return invalid(field, "must not contain a 0x00 byte")
	}
	if len(v) > bbolt.MaxKeySize/2 {
		return invalid(field, "is %d bytes, longer than %d", len(v), bbolt.MaxKeySize/2)
	}
	return nil
}

func checkIDs(tenantID, assetID string) error {
	if err := checkID("tenant_id", tenantID); err != nil {
		return err
	}
	if err := checkID("asset_id", assetID); err != nil {
		return err
	}
	if n := len(tenantID) + 1 + len(assetID); n > bbolt.MaxKeySize {
		return invalid("asset_id", "record key would be %d bytes, longer than %d", n, bbolt.MaxKeySize)
	}
	return nil
}

// validate checks what the store relies on; it does not enforce the event
// contract's id syntax (pkg/events does).
func (r *Record) validate() error {
	if err := checkIDs(r.TenantID, r.AssetID); err != nil {
		return err
	}
	switch r.State {
	case StateEncrypted:
		if !r.Mode.Valid() {
			return invalid("mode", "%q is not customer, fallback or platform", r.Mode)
		}
		if err := checkID("key_uri", r.KeyURI); err != nil {
			return err
		}
		if n := len(byModeKey(r.TenantID, r.Mode, r.AssetID)); n > bbolt.MaxKeySize {
			return invalid("asset_id", "mode index key would be %d bytes, longer than %d", n, bbolt.MaxKeySize)
		}
		if n := len(byKeyKey(r.TenantID, r.KeyURI, r.AssetID)); n > bbolt.MaxKeySize {
			return invalid("key_uri", "key index key would be %d bytes, longer than %d", n, bbolt.MaxKeySize)
		}
	case StateRejected:
		if r.Mode != "" {
			return invalid("mode", "must be empty when state is rejected, got %q", r.Mode)
		}
		if strings.IndexByte(r.KeyURI, sep) >= 0 {
			return invalid("key_uri", "must not contain a 0x00 byte")
		}
	default:
		return invalid("state", "%q is not encrypted or rejected", r.State)
	}
	if r.Size < 0 {
		return invalid("size", "is negative (%d)", r.Size)
	}
	if r.CiphertextSize < 0 {
		return invalid("ciphertext_size", "is negative (%d)", r.CiphertextSize)
	}
	return nil
}

// encodeRecord returns the stored value: the schema version byte, then JSON.
func encodeRecord(r *Record) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(256 + len(r.WrappedSeed)*2)
	buf.WriteByte(SchemaVersion)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	v := buf.Bytes()
	return v[:len(v)-1], nil // drop Encode's trailing newline
}

// decodeRecord decodes a stored value. The result shares no memory with v,
// so it stays valid after the transaction ends.
func decodeRecord(key, v []byte) (Record, error) {
	var r Record
	if err := checkVersionByte(key, v); err != nil {
		return r, err
	}
	if err := json.Unmarshal(v[1:], &r); err != nil {
		return Record{}, fmt.Errorf("record %q: %w: %w", printableKey(key), ErrCorrupt, err)
	}
	if !bytes.Equal(key, assetKey(r.TenantID, r.AssetID)) {
		return Record{}, fmt.Errorf("record %q: %w: value names tenant %q asset %q",
			printableKey(key), ErrCorrupt, r.TenantID, r.AssetID)
	}
	return r, nil
}

// indexInfo is the part of a stored value the indexes depend on.
type indexInfo struct {
	State  State  `json:"state"`
	Mode   Mode   `json:"mode"`
	KeyURI string `json:"key_uri"`
}

func decodeIndexInfo(key, v []byte) (indexInfo, error) {
	var ii indexInfo
	if err := checkVersionByte(key, v); err != nil {
		return ii, err
	}
	if err := json.Unmarshal(v[1:], &ii); err != nil {
		return ii, fmt.Errorf("record %q: %w: %w", printableKey(key), ErrCorrupt, err)
	}
	return ii, nil
}

func checkVersionByte(key, v []byte) error {
	switch {
	case len(v) < 2:
		return fmt.Errorf("record %q: %w: value is %d bytes", printableKey(key), ErrCorrupt, len(v))
	case v[0] > SchemaVersion:
		return fmt.Errorf("record %q: value version %d, this build reads %d: %w",
			printableKey(key), v[0], SchemaVersion, ErrSchemaTooNew)
	case v[0] != SchemaVersion:
		return fmt.Errorf("record %q: %w: value version %d, want %d", printableKey(key), ErrCorrupt, v[0], SchemaVersion)
	}
	return nil
}

// printableKey renders a bbolt key with its 0x00 separators as "/".
func printableKey(k []byte) string {
	return string(bytes.ReplaceAll(k, []byte{sep}, []byte{'/'}))
}
