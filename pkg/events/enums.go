package events

// Mode says which key an asset is encrypted under.
type Mode string

const (
	// ModeCustomer: under the tenant's own key (AWS KMS, OCI Vault, Azure Key Vault).
	ModeCustomer Mode = "customer"
	// ModeFallback: under the platform's fallback key because the tenant's
	// key was unreachable and the tenant allows fallback; healed later.
	ModeFallback Mode = "fallback"
	// ModePlatform: under the platform key because the asset is not covered
	// by the tenant's customer-managed-key selection.
	ModePlatform Mode = "platform"
)

// Valid reports whether m is one of the defined modes.
func (m Mode) Valid() bool {
	return m == ModeCustomer || m == ModeFallback || m == ModePlatform
}

// KeyStatus is the health of one enrolled customer key.
type KeyStatus string

const (
	// KeyStatusUnknown: never probed or observed; treated as usable.
	KeyStatusUnknown KeyStatus = ""
	// KeyStatusAvailable: probes and live calls succeed.
	KeyStatusAvailable KeyStatus = "available"
	// KeyStatusDegraded: slow or throttled, but working.
	KeyStatusDegraded KeyStatus = "degraded"
	// KeyStatusUnavailable: the key's endpoint cannot be reached (outage).
	KeyStatusUnavailable KeyStatus = "unavailable"
	// KeyStatusRevoked: the key is disabled, access is denied, or it no
	// longer exists. A revocation is the customer's decision.
	KeyStatusRevoked KeyStatus = "revoked"
)

// Valid reports whether s is a defined status (the empty Unknown included).
func (s KeyStatus) Valid() bool {
	switch s {
	case KeyStatusUnknown, KeyStatusAvailable, KeyStatusDegraded, KeyStatusUnavailable, KeyStatusRevoked:
		return true
	}
	return false
}

// Usable reports whether a key in status s should be tried for new assets.
func (s KeyStatus) Usable() bool {
	return s == KeyStatusUnknown || s == KeyStatusAvailable || s == KeyStatusDegraded
}

// Origin says where an asset came from.
type Origin string

const (
	// OriginCloud: produced by the platform (cloud recordings, chat, ...).
	OriginCloud Origin = "cloud"
	// OriginLocalUpload: a local recording uploaded by a user; never
	// covered by customer-managed keys.
	OriginLocalUpload Origin = "local_upload"
)

// Valid reports whether o is a defined origin.
func (o Origin) Valid() bool { return o == OriginCloud || o == OriginLocalUpload }
