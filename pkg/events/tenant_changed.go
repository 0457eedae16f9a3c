package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// TypeTenantChanged is the type of TenantChanged.
const TypeTenantChanged = "dev.keyward.lifecycle.tenant_changed.v1"

// TenantChangedMsgID is the Nats-Msg-Id of a TenantChanged:
// tenant_changed.<tenant>.<KW_TENANTS revision of the change>.
func TenantChangedMsgID(tenant string, revision uint64) string {
	return "tenant_changed." + tenant + "." + strconv.FormatUint(revision, 10)
}

// The operations that change a tenant (TenantChanged.Op): a closed set, one
// per request of the enrollment service.
const (
	TenantOpApply                = "apply"
	TenantOpRecipients           = "recipients"
	TenantOpPhoneSettings        = "phone_settings"
	TenantOpKeyEnrolled          = "key_enrolled"
	TenantOpRotation             = "rotation"
	TenantOpDeprovisionScheduled = "deprovision_scheduled"
	TenantOpDeprovisionCancelled = "deprovision_cancelled"
)

// TenantOps are the values of TenantChanged.Op.
var TenantOps = []string{
	TenantOpApply, TenantOpRecipients, TenantOpPhoneSettings, TenantOpKeyEnrolled,
	TenantOpRotation, TenantOpDeprovisionScheduled, TenantOpDeprovisionCancelled,
}

// MaxTenantChangedFields bounds TenantChanged.Fields.
const MaxTenantChangedFields = 64

// TenantChanged is the audit record of every change to a tenant's
// configuration in KW_TENANTS, published by the enrollment service (the one
// writer of tenant changes) on keyward.lifecycle.tenant_changed.<tenant>
// (stream KW_LIFECYCLE) once the change is stored, with Nats-Msg-Id
// tenant_changed.<tenant>.<revision>. It says who made the change, as NATS
// authenticated the caller, and the document before and after.
type TenantChanged struct {
	TenantID string `json:"tenant_id"`
	// Revision is the KW_TENANTS revision the change stored.
	Revision uint64 `json:"revision"`
	// Op is the operation, one of TenantOps.
	Op string `json:"op"`
	// ChangedBy is the caller as NATS authenticated it (the server-set
	// Nats-Request-Info); required, and empty ({}) in a deployment without
	// authentication.
	ChangedBy *ChangedBy `json:"changed_by"`
	// Fields are the top-level fields of the tenant document that changed
	// (updated_at aside), sorted; empty when the document stayed the same.
	Fields []string `json:"fields"`
	// Before is the document replaced (absent for a creation), After the
	// document stored: both JSON objects as in KW_TENANTS.
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after"`
	At     time.Time       `json:"at"`
}

// ChangedBy is who made a change: the name, user nkey, account and role of
// the caller's credential.
type ChangedBy struct {
	Name    string `json:"name,omitempty"`
	User    string `json:"user,omitempty"`
	Account string `json:"account,omitempty"`
	Role    string `json:"role,omitempty"`
}

// Validate checks a TenantChanged: a known op, a revision, sorted distinct
// field names, and before (when present) and after as JSON objects.
func (e *TenantChanged) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	if e.Revision == 0 {
		v.add(fieldErr("revision", "is required", "give the KW_TENANTS revision the change stored (from 1)"))
	}
	if !slices.Contains(TenantOps, e.Op) {
		v.add(fieldErr("op", fmt.Sprintf("%q is not an operation on a tenant", clip(e.Op)), "use one of apply, recipients, phone_settings, key_enrolled, rotation, deprovision_scheduled, deprovision_cancelled"))
	}
	if by := e.ChangedBy; by == nil {
		v.add(fieldErr("changed_by", "is required", "give the caller, or {} without authentication"))
	} else {
		v.add(validateText("changed_by.name", by.Name, 255, false))
		v.add(validateText("changed_by.user", by.User, 255, false))
		v.add(validateText("changed_by.account", by.Account, 255, false))
		v.add(validateText("changed_by.role", by.Role, 64, false))
	}
	switch {
	case e.Fields == nil:
		v.add(fieldErr("fields", "is required", "list the changed fields ([] when none)"))
	case len(e.Fields) > MaxTenantChangedFields:
		v.add(fieldErr("fields", fmt.Sprintf("has %d names, more than %d", len(e.Fields), MaxTenantChangedFields), "name the top-level fields of the tenant document"))
	}
	for i, f := range e.Fields {
		if i >= MaxTenantChangedFields {
			break
		}
		name := fmt.Sprintf("fields[%d]", i)
		if !isFieldName(f) {
			v.add(fieldErr(name, fmt.Sprintf("%q is not a field name", clip(f)), "use the tenant document's JSON field names (lower case and _)"))
		} else if i > 0 && f <= e.Fields[i-1] {
			v.add(fieldErr(name, "is out of order or repeated", "sort the field names, each once"))
		}
	}
	if e.Before != nil {
		v.add(jsonObject("before", e.Before))
	}
	if e.After == nil {
		v.add(fieldErr("after", "is required", "give the stored tenant document"))
	} else {
		v.add(jsonObject("after", e.After))
	}
	v.time("at", e.At)
	return v.err()
}

func isFieldName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

func jsonObject(field string, raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &m) != nil {
		return fieldErr(field, "is not a JSON object", "give the tenant document as a JSON object")
	}
	return nil
}

// DecodeTenantChanged decodes and validates a TenantChanged. The error
// matches ErrUndecodable or ErrInvalid.
func DecodeTenantChanged(data []byte) (*TenantChanged, error) {
	return decodeValidated[TenantChanged](TypeTenantChanged, data)
}
