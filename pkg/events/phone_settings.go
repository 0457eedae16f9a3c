package events

import (
	"strconv"
	"time"
)

// TypePhoneSettingsChanged is the type of PhoneSettingsChanged.
const TypePhoneSettingsChanged = "dev.keyward.lifecycle.phone_settings_changed.v1"

const prefixPhoneSettingsChanged = "keyward.lifecycle.phone_settings_changed."

// SubjectPhoneSettingsChanged is where PhoneSettingsChanged is published
// (stream KW_LIFECYCLE, which captures keyward.lifecycle.*.*).
func SubjectPhoneSettingsChanged(tenant string) string { return prefixPhoneSettingsChanged + tenant }

// PhoneSettingsChangedMsgID is the Nats-Msg-Id of a PhoneSettingsChanged:
// phone_settings_changed.<tenant>.<KW_TENANTS revision of the change>.
func PhoneSettingsChangedMsgID(tenant string, revision uint64) string {
	return "phone_settings_changed." + tenant + "." + strconv.FormatUint(revision, 10)
}

// PhoneSettingsChanged is the audit event of a change to a tenant's phone
// settings (tenant.Config.Phone), published by `keyward tenant phone` on
// keyward.lifecycle.phone_settings_changed.<tenant> once the change is
// stored in KW_TENANTS. It is published only when a setting changed, so
// DropCalls and Previous differ.
type PhoneSettingsChanged struct {
	TenantID string `json:"tenant_id"`
	// DropCalls is the new drop_calls setting, Previous the one it
	// replaced.
	DropCalls bool      `json:"drop_calls"`
	Previous  bool      `json:"previous"`
	ChangedAt time.Time `json:"changed_at"`
}

// Validate checks a PhoneSettingsChanged.
func (e *PhoneSettingsChanged) Validate() error {
	var v validator
	v.add(ValidateTenantID(e.TenantID))
	if e.DropCalls == e.Previous {
		v.add(fieldErr("drop_calls", "equals previous", "publish a PhoneSettingsChanged only when the setting changed"))
	}
	v.time("changed_at", e.ChangedAt)
	return v.err()
}

// DecodePhoneSettingsChanged decodes and validates a PhoneSettingsChanged.
// The error matches ErrUndecodable or ErrInvalid.
func DecodePhoneSettingsChanged(data []byte) (*PhoneSettingsChanged, error) {
	return decodeValidated[PhoneSettingsChanged](TypePhoneSettingsChanged, data)
}
