package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrUndecodable is matched by errors from Decode when the bytes are not a
// JSON document of the expected shape (as opposed to ErrInvalid: the shape is
// right but a field's value is not).
var ErrUndecodable = errors.New("undecodable")

// DecodeError says why bytes could not be decoded into an event.
type DecodeError struct {
	Type string // the event type expected
	Err  error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("decoding %s: %v", e.Type, e.Err) }

// Unwrap yields ErrUndecodable and the JSON error.
func (e *DecodeError) Unwrap() []error { return []error{ErrUndecodable, e.Err} }

// Decode strictly decodes one JSON document into v: unknown fields, trailing
// data and type mismatches are errors naming the field.
func Decode(typ string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &DecodeError{Type: typ, Err: explainJSON(err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &DecodeError{Type: typ, Err: errors.New("trailing data after the JSON document")}
	}
	return nil
}

// assetCreatedWire is AssetCreated as it is decoded on the hot path: the
// content is decoded by the same decoder (no nested decoder rescanning the
// inline base64), with unknown fields refused at every level.
type assetCreatedWire struct {
	TenantID    string            `json:"tenant_id"`
	AssetID     string            `json:"asset_id"`
	Service     string            `json:"service"`
	OwnerUserID string            `json:"owner_user_id"`
	Origin      Origin            `json:"origin"`
	CreatedAt   time.Time         `json:"created_at"`
	Content     contentJSON       `json:"content"`
	Size        *int64            `json:"size,omitempty"`
	SHA256      string            `json:"sha256,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// DecodeAssetCreated decodes and validates an AssetCreated event. The error
// matches ErrUndecodable or ErrInvalid.
func DecodeAssetCreated(data []byte) (*AssetCreated, error) {
	var w assetCreatedWire
	if err := Decode(TypeAssetCreated, data, &w); err != nil {
		return nil, err
	}
	e := &AssetCreated{
		TenantID: w.TenantID, AssetID: w.AssetID, Service: w.Service, OwnerUserID: w.OwnerUserID,
		Origin: w.Origin, CreatedAt: w.CreatedAt, Size: w.Size, SHA256: w.SHA256,
		ContentType: w.ContentType, Metadata: w.Metadata,
		Content: Content{Bucket: w.Content.Bucket, Object: w.Content.Object},
	}
	if w.Content.Inline != nil {
		e.Content.Inline = *w.Content.Inline
		if e.Content.Inline == nil {
			e.Content.Inline = []byte{}
		}
	}
	if err := e.Validate(); err != nil {
		return e, err
	}
	return e, nil
}

// DecodeAssetEncrypted decodes and validates an AssetEncrypted event.
func DecodeAssetEncrypted(data []byte) (*AssetEncrypted, error) {
	var e AssetEncrypted
	if err := Decode(TypeAssetEncrypted, data, &e); err != nil {
		return nil, err
	}
	return &e, e.Validate()
}

// DecodeAssetReencrypted decodes and validates an AssetReencrypted event.
// The error matches ErrUndecodable or ErrInvalid.
func DecodeAssetReencrypted(data []byte) (*AssetReencrypted, error) {
	var e AssetReencrypted
	if err := Decode(TypeAssetReencrypted, data, &e); err != nil {
		return nil, err
	}
	return &e, e.Validate()
}

// DecodeAssetRejected decodes and validates an AssetRejected event.
func DecodeAssetRejected(data []byte) (*AssetRejected, error) {
	var e AssetRejected
	if err := Decode(TypeAssetRejected, data, &e); err != nil {
		return nil, err
	}
	return &e, e.Validate()
}

// explainJSON turns encoding/json errors into messages naming the field.
func explainJSON(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "document"
		}
		return fmt.Errorf("field %s: got a JSON %s, want %s", field, te.Value, jsonKind(te.Type.Kind().String()))
	case errors.As(err, &se):
		return fmt.Errorf("not valid JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return errors.New("empty message: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s: check the spelling against the schema in schemas/", f)
	}
	return err
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "uint64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array (or base64 string for bytes)"
	case "bool":
		return "true or false"
	}
	return k
}
